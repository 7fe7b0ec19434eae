"""Host and GPU cost of paged-KV append (MHA, MLA) and gdn_prefill calls, flashinfer_cy side by
side with flashinfer-python 0.6.3, in one run. Same method as tools/bench_norm.py (whose
timing helpers are reused): host time per call from short bursts started after a
synchronize, the rows of one table interleaved burst by burst (so host drift hits ours and
the peer's alike), GPU time from CUDA events around back-to-back calls; medians.

Rows per workload:
  flashinfer_cy torch          the typed API with torch tensors (outputs passed in)
  flashinfer_cy raw            the same with TensorDesc raw-pointer descriptors
  flashinfer_cy torch, allocs  gdn only: output, state and workspace allocated per call
  flashinfer-python            flashinfer.page.append_paged_*_kv_cache /
                               flashinfer.gdn_prefill.chunk_gated_delta_rule

A missing peer, module or an unsupported GPU (gdn needs sm_90) is reported in its row, never
fatal.

    python tools/bench_page_gdn.py [--bursts 200 --json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_norm import gpu_us, host_us_interleaved  # noqa: E402

DECODE = dict(batch=64, append=1, heads=8, head_dim=128, page_size=16, cached=1000)
PREFILL = dict(batch=4, append=512, heads=8, head_dim=128, page_size=16, cached=0)
GDN = dict(seq_lens=[512, 512, 512, 512], heads=(16, 16, 32))  # Qwen3-Next linear attention


def paged_batch(torch, batch, append, page_size, cached, **_):
    """Int32 device index arrays for ``batch`` requests appending ``append`` tokens each."""
    from flashinfer_cy import get_batch_indices_positions

    final = np.full(batch, cached + append)
    pages = -(-final // page_size)
    indptr = np.concatenate([[0], np.cumsum(pages)])
    indices = np.random.default_rng(0).permutation(int(indptr[-1]))
    last = final - (pages - 1) * page_size
    bi, pos = get_batch_indices_positions(np.arange(batch + 1) * append, final)
    dev = lambda a: torch.tensor(np.asarray(a, np.int32), device="cuda")  # noqa: E731
    return dict(num_pages=int(indptr[-1]), batch_indices=dev(bi), positions=dev(pos),
                kv_indices=dev(indices), kv_indptr=dev(indptr), kv_last_page_len=dev(last))


def desc(fc, t):
    """A TensorDesc over a torch tensor (the raw-pointer path)."""
    return fc.TensorDesc(t.data_ptr(), tuple(t.shape), str(t.dtype).split(".")[-1],
                         strides=tuple(t.stride()), device=t.device.index or 0)


def measure(torch, rows, name, fn, args):
    """Check that ``fn`` runs and register it; time_rows() times a table's rows together."""
    try:
        fn()
        torch.cuda.synchronize()
        rows[name] = dict(fn=fn)
    except Exception as exc:  # noqa: BLE001 - reported, not fatal
        rows[name] = dict(error=f"{type(exc).__name__}: {exc}")


def time_rows(torch, rows, args):
    """Host time of a table's rows interleaved burst by burst (ours and the peer's alike),
    then each row's GPU time."""
    fns = {name: r.pop("fn") for name, r in rows.items() if "fn" in r}
    if not fns:
        return
    for name, us in host_us_interleaved(fns, torch.cuda.synchronize, args.bursts,
                                         args.burst).items():
        rows[name].update(host_us=us, gpu_us=gpu_us(torch, fns[name], 30, args.burst))


def peer_row(torch, rows, call, args):
    """The flashinfer-python row: ``call(flashinfer)`` timed, or why it cannot be."""
    try:
        import flashinfer
    except Exception as exc:  # noqa: BLE001
        rows["flashinfer-python"] = dict(error=f"{type(exc).__name__}: {exc}")
        return
    measure(torch, rows, f"flashinfer-python {flashinfer.__version__}",
            lambda: call(flashinfer), args)


def bench_append(torch, fc, args, cfg):
    rows = {}
    b = paged_batch(torch, **cfg)
    h, d, p, nnz = cfg["heads"], cfg["head_dim"], cfg["page_size"], cfg["batch"] * cfg["append"]
    f16 = dict(device="cuda", dtype=torch.float16)
    kc, vc = (torch.zeros(b["num_pages"], p, h, d, **f16) for _ in range(2))
    k, v = torch.randn(nnz, h, d, **f16), torch.randn(nnz, h, d, **f16)
    idx = [b[n] for n in ("kv_indices", "kv_indptr", "kv_last_page_len")]
    bp = [b["batch_indices"], b["positions"]]
    measure(torch, rows, "flashinfer_cy torch",
            lambda: fc.append_paged_kv_cache(k, v, *bp, kc, vc, *idx), args)
    raw = [desc(fc, t) for t in (k, v, *bp, kc, vc, *idx)]
    measure(torch, rows, "flashinfer_cy raw", lambda: fc.append_paged_kv_cache(*raw), args)
    peer_row(torch, rows,
             lambda fi: fi.page.append_paged_kv_cache(k, v, *bp, (kc, vc), *idx, "NHD"), args)
    return rows


def bench_append_mla(torch, fc, args, cfg):
    rows = {}
    b = paged_batch(torch, **cfg)
    p, nnz = cfg["page_size"], cfg["batch"] * cfg["append"]
    bf16 = dict(device="cuda", dtype=torch.bfloat16)
    ckv, kpe = torch.zeros(b["num_pages"], p, 512, **bf16), torch.zeros(b["num_pages"], p, 64, **bf16)
    a_ckv, a_kpe = torch.randn(nnz, 512, **bf16), torch.randn(nnz, 64, **bf16)
    args_t = [a_ckv, a_kpe, b["batch_indices"], b["positions"], ckv, kpe,
              b["kv_indices"], b["kv_indptr"], b["kv_last_page_len"]]
    measure(torch, rows, "flashinfer_cy torch", lambda: fc.append_paged_mla_kv_cache(*args_t),
            args)
    raw = [desc(fc, t) for t in args_t]
    measure(torch, rows, "flashinfer_cy raw", lambda: fc.append_paged_mla_kv_cache(*raw), args)
    peer_row(torch, rows, lambda fi: fi.page.append_paged_mla_kv_cache(*args_t), args)
    return rows


def bench_gdn(torch, fc, args):
    rows = {}
    from flashinfer_cy._core.runtime import (device_compute_capability_major,
                                             device_multiprocessor_count)

    major = device_compute_capability_major(0)
    if major != 9:
        return dict(skipped=dict(error=f"gdn_prefill needs sm_90, device 0 is sm_{major}x"))
    hq, hk, hv = GDN["heads"]
    n, s, h = sum(GDN["seq_lens"]), len(GDN["seq_lens"]), max(hq, hv)
    bf16 = dict(device="cuda", dtype=torch.bfloat16)
    q, k, v = (torch.randn(n, x, 128, **bf16) * 0.25 for x in (hq, hk, hv))
    k = torch.nn.functional.normalize(k.float(), dim=-1).to(torch.bfloat16)
    cu = torch.tensor(np.concatenate([[0], np.cumsum(GDN["seq_lens"])]), device="cuda")
    alpha = torch.rand(n, h, device="cuda") * 0.5 + 0.5
    beta = torch.rand(n, h, device="cuda")
    out, state = torch.empty(n, h, 128, **bf16), torch.empty(s, h, 128, 128, device="cuda")
    ws = torch.empty(device_multiprocessor_count(0) * 128, device="cuda", dtype=torch.uint8)
    measure(torch, rows, "flashinfer_cy torch",
            lambda: fc.gdn_prefill(q, k, v, cu, alpha=alpha, beta=beta, output=out,
                                   output_state=state, workspace=ws), args)
    measure(torch, rows, "flashinfer_cy torch, allocs",
            lambda: fc.gdn_prefill(q, k, v, cu, alpha=alpha, beta=beta), args)
    raw = {n_: desc(fc, t) for n_, t in dict(q=q, k=k, v=v, cu=cu, alpha=alpha, beta=beta,
                                              out=out, state=state, ws=ws).items()}
    measure(torch, rows, "flashinfer_cy raw",
            lambda: fc.gdn_prefill(raw["q"], raw["k"], raw["v"], raw["cu"], alpha=raw["alpha"],
                                   beta=raw["beta"], output=raw["out"],
                                   output_state=raw["state"], workspace=raw["ws"]), args)
    try:
        from flashinfer.gdn_prefill import chunk_gated_delta_rule

        ref_out, ref_state = out.clone(), state.clone()
        chunk_gated_delta_rule(q, k, v, g=alpha, beta=beta, output_final_state=True,
                               cu_seqlens=cu, output=ref_out, output_state=ref_state)
        fc.gdn_prefill(q, k, v, cu, alpha=alpha, beta=beta, output=out, output_state=state,
                       workspace=ws)
        torch.cuda.synchronize()
        rows["agreement"] = dict(max_abs_diff_output=(out.float() - ref_out.float()).abs()
                                 .max().item(),
                                 max_abs_diff_state=(state - ref_state).abs().max().item())
    except Exception as exc:  # noqa: BLE001 - the peer is optional
        rows["flashinfer-python"] = dict(error=f"{type(exc).__name__}: {exc}")
        return rows
    peer_row(torch, rows,
             lambda fi: chunk_gated_delta_rule(q, k, v, g=alpha, beta=beta,
                                               output_final_state=True, cu_seqlens=cu,
                                               output=out, output_state=state), args)
    return rows


def print_table(title, rows):
    print(f"## {title}")
    print(f"{'path':40s} {'host us/call':>12s} {'GPU us/call':>11s}")
    for name, r in rows.items():
        if "error" in r:
            print(f"{name:40s} error: {r['error']}")
        elif "host_us" in r:
            print(f"{name:40s} {r['host_us']:12.2f} {r['gpu_us']:11.2f}")
        else:
            print(f"{name:40s} {r}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bursts", type=int, default=200)
    ap.add_argument("--burst", type=int, default=50)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    try:
        import torch

        import flashinfer_cy as fc
    except Exception as exc:  # noqa: BLE001
        print(f"cannot benchmark: {type(exc).__name__}: {exc}")
        if args.json:
            args.json.write_text(json.dumps(dict(error=str(exc))))
        return 0
    if not torch.cuda.is_available():
        print("cannot benchmark: no CUDA device visible to torch")
        return 0

    results = {}
    for title, fn in (
            (f"append_paged_kv_cache decode {DECODE}", lambda: bench_append(torch, fc, args, DECODE)),
            (f"append_paged_kv_cache prefill {PREFILL}",
             lambda: bench_append(torch, fc, args, PREFILL)),
            (f"append_paged_mla_kv_cache decode (bf16, 512+64) batch {DECODE['batch']}",
             lambda: bench_append_mla(torch, fc, args, DECODE)),
            (f"gdn_prefill bf16 seqs {GDN['seq_lens']} q/k/v heads {GDN['heads']} alpha+beta",
             lambda: bench_gdn(torch, fc, args))):
        try:
            results[title] = fn()
            time_rows(torch, results[title], args)
        except Exception as exc:  # noqa: BLE001 - e.g. a missing kernel module
            results[title] = dict(setup=dict(error=f"{type(exc).__name__}: {exc}"))
    print(f"# {torch.cuda.get_device_name()}, torch {torch.__version__}, python "
          f"{platform.python_version()}, bursts {args.bursts}x{args.burst}")
    for title, rows in results.items():
        print_table(title, rows)
    if args.json:
        args.json.write_text(json.dumps(dict(results=results,
                                             device=torch.cuda.get_device_name()), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
