"""Host and GPU cost of attention calls, flashinfer_cy next to flashinfer-python 0.6.3.

Rows (same shapes, same kernel modules, float16, NHD, PDL on sm90 for both):
  decode run      w.run(q, (k, v), out=o) with torch tensors; the prepared launch;
                  flashinfer-python BatchDecodeWithPagedKVCacheWrapper.run; each written in
                  the timed loop itself as a decode loop would, and (rows "through a
                  lambda") behind one more Python call, which shows what a frame costs
  decode plan     w.plan(...) from host numpy (page table on the device / on the host);
                  flashinfer-python plan() from CPU indptr/lengths, device page table
  C floor         tools/c_floor/decode_floor.c: the same batch_decode module's run and plan
                  exports called from C (run packed once; plan alone; plan plus the staging
                  copy and event any plan that moves the metadata needs), loaded into this
                  process; its bursts alternate with the Python rows' bursts
  C floor, torch  the run export from C after describing q, k, v and out through torch's
  exchange calls  DLPack exchange API and asking it for its current stream, each call: the
                  least any consumer of torch tensors pays per run. "vs torch floor" is a
                  row's paired difference from it, the cost of the Python layer alone; that
                  plus the prepared launch's own cost (one GIL-releasing Python call) is the
                  least any Python run() taking torch tensors can add (note "least ...")
  prefill run     paged prefill, causal, backend "auto" (FA3 on sm90 where available)
  32-layer step   per layer: rmsnorm -> append_paged_kv_cache -> decode -> rmsnorm; eager
                  (run / prepared launches; flashinfer-python) and replayed from a CUDA
                  graph, one interleaved group

Timing is tools/bench_norm.py's: host time = median over bursts of calls started right
after a synchronize; GPU time = CUDA events around a burst of back-to-back calls. The decode
run rows and the decode plan rows are two interleaved groups (floor, ours, peer, burst by
burst); "vs floor" = median over rounds of (row - floor) in the same round.
A missing peer (or any failing row) is reported in its row, never fatal.

    python tools/bench_attention.py [--batch 32 --kv-len 1024 --json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_norm import (CBurst, LoopBurst, gpu_us, host_us,  # noqa: E402
                        host_us_interleaved, plan_run_floors)

HQ, HKV, D, PS = 32, 8, 128, 16


def decode_floor(batch: int, kv_len: int, exchange=None) -> dict[str, CBurst]:
    """tools/c_floor/decode_floor.c built as a library and loaded into this process, on the
    module flashinfer_cy's decode uses: its run / plan-alone / plan floors as CBurst rows,
    to be interleaved with the Python rows. ``exchange`` (torch tensors q, k, v, out) adds
    the "run_exchange" floor, which describes them through torch's exchange API."""
    import ctypes

    from flashinfer_cy.artifacts import locate_module
    from flashinfer_cy.kernels.attention_uri import variant

    so = locate_module(variant("batch_decode", "float16", D, -1, 0.0).uri)
    floors, lib_path, lib = plan_run_floors("decode_floor", so, batch, kv_len, PS, HQ, HKV, D)
    if exchange is not None:
        # The same library again, through PyDLL: these calls keep the GIL, which the
        # exchange API's calls into Python objects need.
        plib = ctypes.PyDLL(str(lib_path))
        get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
        get_pointer.restype = ctypes.c_void_p
        get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
        xapi = get_pointer(type(exchange[0]).__dlpack_c_exchange_api__, b"dlpack_exchange_api")
        plib.fcy_decode_floor_set_exchange.argtypes = [ctypes.c_void_p] + [ctypes.py_object] * 4
        if plib.fcy_decode_floor_set_exchange(xapi, *exchange) != 0:
            raise RuntimeError(lib.fcy_decode_floor_error().decode())
        plib.fcy_decode_floor_burst.argtypes = [ctypes.c_int, ctypes.c_int]
        plib.fcy_decode_floor_burst.restype = ctypes.c_double
        # The C side borrows the four tensors: the row holds them for as long as it lives
        # (a temporary ``out`` given here crashed the first burst once it was collected).
        floors["run_exchange"] = CBurst(lambda n, held=tuple(exchange):
                                        plib.fcy_decode_floor_burst(3, n))
    return floors


def paged_layout(np, rng, batch, kv_len, pool):
    pages = (kv_len + PS - 1) // PS
    indices = rng.permutation(pool)[: batch * pages].astype(np.int32)
    indptr = (np.arange(batch + 1) * pages).astype(np.int32)
    last = np.full(batch, kv_len - (pages - 1) * PS, dtype=np.int32)
    return indptr, indices, last


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--kv-len", type=int, default=1024)
    ap.add_argument("--prefill-len", type=int, default=512)
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--bursts", type=int, default=100)
    ap.add_argument("--burst", type=int, default=50)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--decode-run-only", action="store_true",
                    help="only the decode run rows against the C floor, host time, no peer: "
                         "for comparing two builds (tools/ab_decode_overhead.sh)")
    args = ap.parse_args()

    import numpy as np
    import torch

    import flashinfer_cy as fc

    rng = np.random.default_rng(0)
    sync = torch.cuda.synchronize
    rows: dict[str, dict] = {}
    notes: dict[str, object] = {}

    def add(name, fn, *, gpu=True, bursts=args.bursts, burst=args.burst):
        try:
            fn()
            sync()
            row = dict(host_us=host_us(fn, sync, bursts, burst))
            if gpu:
                row["gpu_us"] = gpu_us(torch, fn, 20, burst)
            rows[name] = row
        except Exception as exc:  # noqa: BLE001 - a failing row is reported, not fatal
            rows[name] = dict(error=f"{type(exc).__name__}: {exc}")

    try:
        if args.decode_run_only:
            raise ImportError("not asked for (--decode-run-only)")
        import flashinfer
    except Exception as exc:  # noqa: BLE001
        flashinfer = None
        notes["peer"] = f"flashinfer-python unavailable: {type(exc).__name__}: {exc}"

    # ------------------------------------------------------------------ decode
    # Run and plan rows are timed in two interleaved groups (burst by burst, one process):
    # the C floor's bursts alternate with ours and the peer's, and "vs floor" is the
    # median of the per-round differences, so host drift cannot favour either side.
    b, n = args.batch, args.kv_len
    pool = b * ((n + PS - 1) // PS) + 8
    indptr, indices, last = paged_layout(np, rng, b, n, pool)
    k = torch.randn(pool, PS, HKV, D, device="cuda", dtype=torch.float16)
    v = torch.randn_like(k)
    q = torch.randn(b, HQ, D, device="cuda", dtype=torch.float16)
    o, o_peer = torch.empty_like(q), torch.empty_like(q)
    indices_dev = torch.from_numpy(indices).cuda()
    w = fc.BatchDecodeWithPagedKVCache("NHD")
    plan_args = (HQ, HKV, D, PS)
    w.plan(indptr, indices_dev, last, *plan_args)
    step = w.prepare(q, (k, v), o)
    dq, dk, dv, do = (fc.TensorDesc(t.data_ptr(), tuple(t.shape), "float16") for t in (q, k, v, o))
    s0 = torch.cuda.current_stream().cuda_stream
    o_floor = torch.empty_like(q)  # run_exchange's output: o stays the rows' own
    try:
        floors = decode_floor(b, n, exchange=(q, k, v, o_floor))
    except Exception as exc:  # noqa: BLE001
        floors = {}
        notes["C floor"] = f"error: {type(exc).__name__}: {exc}"
    # Each call is written in its row's timed loop, as a decode loop calls it (LoopBurst);
    # the rows "through a lambda" show what one Python frame between loop and call costs.
    run_group = {"decode run: C floor (run export, packed once)": floors.get("run"),
                 TORCH_FLOOR: floors.get("run_exchange"),
                 RUN: LoopBurst("w.run(q, (k, v), out=o)", w=w, q=q, k=k, v=v, o=o),
                 PREPARED: LoopBurst("step.launch()", step=step),
                 "  run(), raw TensorDesc tensors":
                     LoopBurst("w.run(q, (k, v), out=o)", w=w, q=dq, k=dk, v=dv, o=do),
                 "  run(), torch tensors, explicit stream":
                     LoopBurst("w.run(q, (k, v), out=o, stream=s)", w=w, q=q, k=k, v=v, o=o,
                               s=s0),
                 "  run() through a lambda": lambda: w.run(q, (k, v), out=o),
                 "  prepared launch() through a lambda": lambda: step.launch()}
    plan_group = {"decode plan: C floor (staging copy + plan + event)": floors.get("plan"),
                  "decode plan: C floor, the plan export alone": floors.get("plan_kernel"),
                  "decode plan: flashinfer_cy (host indptr, device page table)":
                      lambda: w.plan(indptr, indices_dev, last, *plan_args),
                  "decode plan: flashinfer_cy (host indptr and page table)":
                      lambda: w.plan(indptr, indices, last, *plan_args)}
    ws = torch.empty(128 << 20, dtype=torch.uint8, device="cuda")
    if flashinfer is not None:
        try:
            pw = flashinfer.BatchDecodeWithPagedKVCacheWrapper(ws, "NHD")
            indptr_t, last_t = torch.from_numpy(indptr), torch.from_numpy(last)
            pw.plan(indptr_t, indices_dev, last_t, *plan_args, q_data_type=torch.float16)
            run_group[f"decode run: flashinfer-python {flashinfer.__version__}"] = LoopBurst(
                "pw.run(q, (k, v), out=o)", pw=pw, q=q, k=k, v=v, o=o_peer)
            run_group["  flashinfer-python run() through a lambda"] = (
                lambda: pw.run(q, (k, v), out=o_peer))
            plan_group["decode plan: flashinfer-python (CPU indptr, device page table)"] = (
                lambda: pw.plan(indptr_t, indices_dev, last_t, *plan_args,
                                q_data_type=torch.float16))
            w.run(q, (k, v), out=o)
            pw.run(q, (k, v), out=o_peer)
            sync()
            notes["decode max |ours - peer|"] = (o.float() - o_peer.float()).abs().max().item()
        except Exception as exc:  # noqa: BLE001
            rows["decode: flashinfer-python"] = dict(error=f"{type(exc).__name__}: {exc}")
    for group in (run_group,) if args.decode_run_only else (run_group, plan_group):
        group = {name: fn for name, fn in group.items() if fn is not None}
        try:
            per = host_us_interleaved(group, sync, args.bursts, args.burst, raw=True)
        except Exception as exc:  # noqa: BLE001
            rows[next(iter(group))] = dict(error=f"{type(exc).__name__}: {exc}")
            continue
        floor = next((per[name] for name in group if "C floor" in name), None)
        torch_floor = per.get(TORCH_FLOOR)
        for name, fn in group.items():
            row = dict(host_us=statistics.median(per[name]))
            if floor is not None and ("C floor" not in name or name == TORCH_FLOOR):
                row["vs_floor_us"] = statistics.median([a - f for a, f in zip(per[name], floor)])
            if torch_floor is not None and "C floor" not in name:
                row["vs_torch_floor_us"] = statistics.median(
                    [a - f for a, f in zip(per[name], torch_floor)])
            if not isinstance(fn, CBurst) and not args.decode_run_only:
                row["gpu_us"] = gpu_us(torch, fn, 20, args.burst)
            rows[name] = row
        if floor is not None and torch_floor is not None and PREPARED in per and RUN in per:
            # The least any run() taking torch tensors can add to the C floor: torch's own
            # describe/stream calls plus one GIL-releasing Python call with nothing to check
            # (the prepared launch). run() minus that is what its argument handling costs.
            least = [(t - f) + (p - f) for t, p, f in zip(torch_floor, per[PREPARED], floor)]
            own = [r - f - x for r, f, x in zip(per[RUN], floor, least)]
            notes[LEAST] = f"{statistics.median(least):+.2f} us"
            notes[OWN] = f"{statistics.median(own):+.2f} us"
        peer = next((per[name] for name in group if "flashinfer-python" in name), None)
        ours = per.get("decode plan: flashinfer_cy (host indptr, device page table)")
        if peer is not None and ours is not None:  # the plan group
            notes["decode plan / flashinfer-python plan, median of rounds (target <= 0.25)"] = (
                f"{statistics.median([a / p for a, p in zip(ours, peer)]):.3f}")
    notes["pinned ring: slots, waits"] = (w.pinned_ring_size, w.pinned_ring_waits)
    if args.decode_run_only:
        return report(args, rows, notes, f"decode batch {b} kv_len {n}", torch)

    # ------------------------------------------------------------------ prefill
    pb, pl = 4, args.prefill_len
    ppool = pb * ((pl + PS - 1) // PS) + 8
    p_indptr, p_indices, p_last = paged_layout(np, rng, pb, pl, ppool)
    qo_indptr = (np.arange(pb + 1) * pl).astype(np.int32)
    pk = torch.randn(ppool, PS, HKV, D, device="cuda", dtype=torch.float16)
    pv = torch.randn_like(pk)
    pq = torch.randn(pb * pl, HQ, D, device="cuda", dtype=torch.float16)
    po, po_peer = torch.empty_like(pq), torch.empty_like(pq)
    try:
        pw_ours = fc.BatchPrefillWithPagedKVCache("NHD")
        plan = pw_ours.plan(qo_indptr, p_indptr, p_indices, p_last, HQ, HKV, D, PS, causal=True)
        notes["prefill backend (ours)"] = plan.backend
        add(f"prefill run: flashinfer_cy run() [{plan.backend}]",
            LoopBurst("w.run(q, (k, v), out=o)", w=pw_ours, q=pq, k=pk, v=pv, o=po),
            bursts=30, burst=10)
    except Exception as exc:  # noqa: BLE001
        rows["prefill run: flashinfer_cy"] = dict(error=f"{type(exc).__name__}: {exc}")
    if flashinfer is not None:
        try:
            ppw = flashinfer.BatchPrefillWithPagedKVCacheWrapper(ws, "NHD")
            ppw.plan(torch.from_numpy(qo_indptr), torch.from_numpy(p_indptr),
                     torch.from_numpy(p_indices).cuda(), torch.from_numpy(p_last), HQ, HKV, D,
                     PS, causal=True, q_data_type=torch.float16)
            notes["prefill backend (peer)"] = getattr(ppw, "_backend", "?")
            add("prefill run: flashinfer-python",
                LoopBurst("w.run(q, (k, v), out=o)", w=ppw, q=pq, k=pk, v=pv, o=po_peer),
                bursts=30, burst=10)
            sync()
            notes["prefill max |ours - peer|"] = (po.float() - po_peer.float()).abs().max().item()
        except Exception as exc:  # noqa: BLE001
            rows["prefill run: flashinfer-python"] = dict(error=f"{type(exc).__name__}: {exc}")

    # ------------------------------------------------------------------ 32-layer decode step
    # Interleaved like the decode rows: timed one after another, whichever ran later (after
    # more GPU work) looked slower, e.g. prepared launches 1604 us vs run() 1057 us.
    try:
        group = layer_rows(args, np, rng, torch, fc, flashinfer, rows)
        host = host_us_interleaved(group, sync, 20, 5)
        for name, fn in group.items():
            rows[name] = dict(host_us=host[name], gpu_us=gpu_us(torch, fn, 20, 5))
    except Exception as exc:  # noqa: BLE001
        rows["32-layer step"] = dict(error=f"{type(exc).__name__}: {exc}")

    return report(args, rows, notes, f"decode batch {b} kv_len {n}; prefill {pb}x{pl} causal",
                  torch)


def report(args, rows, notes, shapes, torch) -> int:
    print(f"# attention f16 NHD, heads {HQ}/{HKV}, head_dim {D}, page {PS}; {shapes}; "
          f"{torch.cuda.get_device_name()}, torch {torch.__version__}, python "
          f"{platform.python_version()}")
    print(f"{'path':66s} {'host us/call':>12s} {'vs floor':>9s} {'vs torch floor':>14s} "
          f"{'GPU us/call':>11s}")
    for name, r in rows.items():
        if "error" in r:
            print(f"{name:66s} error: {r['error']}")
            continue
        g = f"{r['gpu_us']:.2f}" if r.get("gpu_us") is not None else "-"
        f, t = (f"{r[key]:+.2f}" if r.get(key) is not None else ""
                for key in ("vs_floor_us", "vs_torch_floor_us"))
        print(f"{name:66s} {r['host_us']:12.2f} {f:>9s} {t:>14s} {g:>11s}")
    summary(rows, notes)
    for key, val in notes.items():
        print(f"# {key}: {val}")
    if args.json:
        args.json.write_text(json.dumps(dict(rows=rows, notes=notes,
                                             device=torch.cuda.get_device_name()), indent=1))
    return 0


TORCH_FLOOR = "decode run: C floor, torch tensors described each call"
RUN = "decode run: flashinfer_cy run() (torch tensors)"
PREPARED = "decode run: flashinfer_cy prepared launch()"
LEAST = ("least a run() with torch tensors can add to the C floor "
         "(torch's exchange calls + prepared launch's Python call)")
OWN = "decode run - that least (run()'s argument handling)"


def summary(rows, notes):
    """The issue's run targets from the paired differences above."""
    def delta(name, key="vs_floor_us"):
        return rows.get(name, {}).get(key)

    for name, target, what in ((RUN, "+1", "decode run"), (PREPARED, "+0.5", "prepared launch"),
                               ("  run() through a lambda", "+1", "decode run, lambda")):
        if delta(name) is not None:
            notes[f"{what} - C floor (target <= {target})"] = f"{delta(name):+.2f} us"
    if delta(TORCH_FLOOR) is not None:
        notes["torch's exchange calls alone (C floor, torch tensors - C floor)"] = (
            f"{delta(TORCH_FLOOR):+.2f} us")
    if delta(RUN, "vs_torch_floor_us") is not None:
        notes["decode run - C floor with torch's exchange calls (the Python layer alone)"] = (
            f"{delta(RUN, 'vs_torch_floor_us'):+.2f} us")


def layer_rows(args, np, rng, torch, fc, flashinfer, rows) -> dict:
    """rmsnorm -> append KV -> decode -> rmsnorm, ``args.layers`` times per step: the rows
    (name -> one step) to time together; a variant that fails is reported in ``rows``."""
    b, layers, n = args.batch, args.layers, 256
    hidden = HQ * D
    pages = (n + PS - 1) // PS
    pool = b * pages
    indptr, indices, last = paged_layout(np, rng, b, n, pool)
    kv = [torch.randn(pool, 2, PS, HKV, D, device="cuda", dtype=torch.float16)
          for _ in range(layers)]
    x = torch.randn(b, hidden, device="cuda", dtype=torch.float16)
    h = torch.empty_like(x)
    att = torch.empty(b, HQ, D, device="cuda", dtype=torch.float16)
    w1 = torch.randn(hidden, device="cuda", dtype=torch.float16)
    k_new = torch.randn(b, HKV, D, device="cuda", dtype=torch.float16)
    v_new = torch.randn_like(k_new)
    batch_idx = torch.arange(b, dtype=torch.int32, device="cuda")
    pos = torch.full((b,), n - 1, dtype=torch.int32, device="cuda")
    t_indptr, t_indices, t_last = (torch.from_numpy(a).cuda() for a in (indptr, indices, last))
    w = fc.BatchDecodeWithPagedKVCache("NHD", use_cuda_graph=True, max_num_pages=pool)
    w.plan(indptr, indices, last, HQ, HKV, D, PS)
    q = h.view(b, HQ, D)
    steps = [w.prepare(q, kv[i], att) for i in range(layers)]

    def step_ours(prepared):
        for i in range(layers):
            fc.rmsnorm(x, w1, 1e-6, out=h)
            fc.append_paged_kv_cache(k_new, v_new, batch_idx, pos, kv[i][:, 0], kv[i][:, 1],
                                     t_indices, t_indptr, t_last)
            if prepared:
                steps[i].launch()
            else:
                w.run(q, kv[i], out=att)
            fc.rmsnorm(att.view(b, hidden), w1, 1e-6, out=x)

    group = {f"{layers}-layer step: flashinfer_cy eager run()": lambda: step_ours(False),
             f"{layers}-layer step: flashinfer_cy eager prepared launch()":
                 lambda: step_ours(True)}
    try:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            step_ours(False)
        torch.cuda.current_stream().wait_stream(side)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            step_ours(False)
        group[f"{layers}-layer step: flashinfer_cy CUDA graph replay"] = g.replay
    except Exception as exc:  # noqa: BLE001
        rows[f"{layers}-layer step: graph"] = dict(error=f"{type(exc).__name__}: {exc}")
    if flashinfer is None:
        return group
    try:
        ws = torch.empty(128 << 20, dtype=torch.uint8, device="cuda")
        pw = flashinfer.BatchDecodeWithPagedKVCacheWrapper(ws, "NHD")
        pw.plan(torch.from_numpy(indptr), t_indices, torch.from_numpy(last), HQ, HKV, D, PS,
                q_data_type=torch.float16)

        def step_peer():
            for i in range(layers):
                flashinfer.norm.rmsnorm(x, w1, 1e-6, out=h)
                flashinfer.page.append_paged_kv_cache(k_new, v_new, batch_idx, pos, kv[i],
                                                      t_indices, t_indptr, t_last, "NHD")
                pw.run(q, kv[i], out=att)
                flashinfer.norm.rmsnorm(att.view(b, hidden), w1, 1e-6, out=x)

        pw.run(q, kv[0], out=att)
        group[f"{layers}-layer step: flashinfer-python eager"] = step_peer
    except Exception as exc:  # noqa: BLE001
        rows[f"{layers}-layer step: flashinfer-python"] = dict(error=f"{type(exc).__name__}: {exc}")
    return group


if __name__ == "__main__":
    sys.exit(main())
