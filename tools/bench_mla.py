"""Host and GPU cost of batched MLA decode, flashinfer_cy next to flashinfer-python 0.6.3
and the C floor, on the same batch_mla_attention module.

Rows (--dtype, default bfloat16 as DeepSeek serves it; decode: one query row per request,
every request --kv-len tokens, shuffled page table, 512/64 head dims, non-causal):
  run     w.run(q_nope, q_pe, ckv, kpe, o) with torch tensors (the kept frame's steady
          state); the prepared launch; flashinfer-python BatchMLAPagedAttentionWrapper.run;
          C floor (tools/c_floor/mla_floor.c: the run export packed once, called from C)
  plan    w.plan(...) from host numpy (page table on the host / on the device);
          flashinfer-python plan() (device indptrs / lengths / page table, as its API
          takes them); C floor: the plan export alone, and plus the staging copy and event
          any plan that moves the page table needs
  GPU us  CUDA events around bursts of back-to-back runs (ours, prepared, peer)

Timing is tools/bench_norm.py's (median over interleaved bursts started after a
synchronize; "vs floor" = row - C floor). A missing peer or floor is reported in its row.

    python tools/bench_mla.py [--batch 32 --kv-len 4096 --heads 128 --page 64 --json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_norm import CBurst, LoopBurst, gpu_us, host_us_interleaved, plan_run_floors  # noqa: E402

CKV, KPE = 512, 64


def mla_floor(uri: str, batch: int, kv_len: int, page: int, heads: int,
              dtype: str) -> dict[str, CBurst]:
    """tools/c_floor/mla_floor.c as a library on module ``uri``: its floors as CBurst rows."""
    from flashinfer_cy.artifacts import locate_module

    return plan_run_floors("mla_floor", locate_module(uri), batch, kv_len, page, heads, CKV,
                           KPE, int(dtype == "bfloat16"))[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--kv-len", type=int, default=4096)
    ap.add_argument("--heads", type=int, default=128)
    ap.add_argument("--page", type=int, default=64)
    ap.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16"),
                    help="q/kv/o dtype; the module batch_mla_attention_dtype_q_<bf16|f16>_... "
                         "must exist (default %(default)s)")
    ap.add_argument("--backend", default="auto", choices=("auto", "fa2", "fa3"))
    ap.add_argument("--bursts", type=int, default=100)
    ap.add_argument("--burst", type=int, default=50)
    ap.add_argument("--json", help="write the rows here too")
    args = ap.parse_args()

    import numpy as np
    import torch

    import flashinfer_cy as fc

    b, n, ps, h = args.batch, args.kv_len, args.page, args.heads
    pages = -(-n // ps)
    pool = b * pages
    rng = np.random.default_rng(0)
    qo = np.arange(b + 1, dtype=np.int32)
    kv_indptr = (np.arange(b + 1) * pages).astype(np.int32)
    indices = rng.permutation(pool).astype(np.int32)
    kv_len = np.full(b, n, np.int32)
    scale = 1.0 / (128 + 64) ** 0.5
    tdt = getattr(torch, args.dtype)
    on_gpu = dict(dtype=tdt, device="cuda")
    qn, qp = torch.randn(b, h, CKV, **on_gpu), torch.randn(b, h, KPE, **on_gpu)
    ckv, kpe = torch.randn(pool, ps, CKV, **on_gpu), torch.randn(pool, ps, KPE, **on_gpu)
    o = torch.empty_like(qn)
    d_indices = torch.from_numpy(indices).cuda()

    w = fc.BatchMLAPagedAttention(backend=args.backend)
    plan_args = (qo, kv_indptr, indices, kv_len, h, CKV, KPE, ps, False, scale, args.dtype)
    p = w.plan(*plan_args)
    w.run(qn, qp, ckv, kpe, o)
    step = w.prepare(qn, qp, ckv, kpe, o)
    notes: dict[str, str] = {}
    rows: dict = {"run: flashinfer_cy run()": LoopBurst("w.run(qn, qp, ckv, kpe, o)", w=w, qn=qn,
                                                         qp=qp, ckv=ckv, kpe=kpe, o=o),
                  "run: flashinfer_cy prepared launch": LoopBurst("launch()", launch=step.launch)}
    plan_rows: dict = {
        "plan: flashinfer_cy (host page table)": lambda: w.plan(*plan_args),
        "plan: flashinfer_cy (device page table)":
            lambda: w.plan(qo, kv_indptr, d_indices, *plan_args[3:]),
    }
    try:
        import flashinfer

        pw = flashinfer.mla.BatchMLAPagedAttentionWrapper(
            torch.empty(128 << 20, dtype=torch.int8, device="cuda"), backend=p.backend)
        dev = [torch.from_numpy(x).cuda() for x in (qo, kv_indptr, indices, kv_len)]
        peer_plan = (*dev, h, CKV, KPE, ps, False, scale, tdt, tdt)
        pw.plan(*peer_plan)
        pw.run(qn, qp, ckv, kpe, out=o)
        rows["run: flashinfer-python run()"] = LoopBurst("pw.run(qn, qp, ckv, kpe, out=o)",
                                                         pw=pw, qn=qn, qp=qp, ckv=ckv,
                                                         kpe=kpe, o=o)
        plan_rows["plan: flashinfer-python plan()"] = lambda: pw.plan(*peer_plan)
    except Exception as exc:  # noqa: BLE001 - reported, not fatal
        pw = None
        notes["flashinfer-python"] = f"unavailable: {type(exc).__name__}: {exc}"
    try:
        floors = mla_floor(p.uri, b, n, ps, h, args.dtype)
        rows["run: C floor (run export, packed once)"] = floors["run"]
        plan_rows["plan: C floor, the plan export alone"] = floors["plan_kernel"]
        plan_rows["plan: C floor (staging copy + plan + event)"] = floors["plan"]
    except Exception as exc:  # noqa: BLE001
        notes["C floor"] = f"error: {type(exc).__name__}: {exc}"

    sync = torch.cuda.synchronize
    w.plan(*plan_args)  # the run rows run the same plan
    host = host_us_interleaved(rows, sync, args.bursts, args.burst)
    host.update(host_us_interleaved(plan_rows, sync, max(args.bursts // 4, 5),
                                    max(args.burst // 10, 2)))
    w.plan(*plan_args)
    gpu = {"run: flashinfer_cy run()": gpu_us(torch, lambda: w.run(qn, qp, ckv, kpe, o), 20, 20),
           "run: flashinfer_cy prepared launch": gpu_us(torch, step.launch, 20, 20)}
    if pw is not None:
        gpu["run: flashinfer-python run()"] = gpu_us(
            torch, lambda: pw.run(qn, qp, ckv, kpe, out=o), 20, 20)

    floor_of = {"run": host.get("run: C floor (run export, packed once)"),
                "plan": host.get("plan: C floor (staging copy + plan + event)")}
    print(f"# MLA decode: batch {b}, kv {n}, heads {h}, page {ps}, {p.backend} ({p.uri}); "
          f"{torch.cuda.get_device_name()}")
    print(f"{'row':52s} {'host us':>9s} {'vs floor':>9s} {'GPU us':>9s}")
    out = {}
    for name, us in host.items():
        floor = floor_of[name.split(":")[0]]
        vs = None if floor is None or "C floor" in name else us - floor
        out[name] = {"host_us": us, "vs_floor_us": vs, "gpu_us": gpu.get(name)}
        print(f"{name:52s} {us:9.2f} {'' if vs is None else f'{vs:+9.2f}':>9s} "
              f"{'' if name not in gpu else f'{gpu[name]:9.2f}':>9s}")
    for k, v in notes.items():
        print(f"# {k}: {v}")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": out, "notes": notes, "device":
                                               torch.cuda.get_device_name(), "uri": p.uri},
                                              indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
