"""Host and GPU cost of the decode-step kernels, flashinfer_cy side by side with
flashinfer-python and the C floor, in one run (issue 16's benchmark).

Per op (decode shapes: one token, Llama-3-8B-like sizes), every row launches the identical
kernel configuration (enable_pdl=False where the export takes it):
  C floor               the recorded call's exports called from a C loop
                        (PreparedCall._c_burst_us: the same fcy_call sequence, no Python)
  C floor + torch       the same, each call first describing every torch tensor through
                        torch's DLPack exchange API and asking it for the current stream:
                        what any consumer of torch tensors pays. "vs torch floor" is
                        measured from here: the part that is ours to remove
  flashinfer_cy         the general API with torch tensors, written in the timed loop
  prepared launch       fc.prepare(...) once, then p.launch() in the loop
  flashinfer-python     the same op through flashinfer 0.6.3 on the same module

Host time per call: bursts of BURST calls right after a synchronize, rows interleaved burst
by burst in a new order each round, median over rounds (tools/bench_norm.py). GPU time: CUDA
events around BURST back-to-back calls, median per call.

    python tools/bench_decode_step.py [--bursts 300 --burst 50 --json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_norm import CBurst, LoopBurst, gpu_us, host_us_interleaved  # noqa: E402

FLOOR, TORCH_FLOOR, OURS, PREPARED, PEER = ("C floor", "C floor + torch exchange",
                                            "flashinfer_cy (torch tensors)",
                                            "flashinfer_cy prepared launch",
                                            "flashinfer-python")


def ops(torch, fc, fi):
    """name -> (our call as a loop expression, its names, the prepared call, the peer's call
    or None, the torch tensors the call takes)."""
    dev, f16 = "cuda", torch.float16
    out = {}

    # rope: one decode token, 32 q / 8 k heads of 128, positions on the device, in place
    q = torch.randn(1, 32, 128, device=dev, dtype=f16)
    k = torch.randn(1, 8, 128, device=dev, dtype=f16)
    pos = torch.tensor([1000], device=dev, dtype=torch.int32)
    out["rope pos_ids 1x32/8x128 (in place)"] = (
        "fc.apply_rope_pos_ids_inplace(q, k, pos)", dict(fc=fc, q=q, k=k, pos=pos),
        fc.prepare(fc.apply_rope_pos_ids_inplace, q, k, pos),
        (lambda: fi.rope.apply_rope_pos_ids_inplace(q, k, pos)) if fi else None, (q, k, pos))

    # gated activation: one token of Llama-3-8B's MLP (intermediate 14336)
    x = torch.randn(1, 2 * 14336, device=dev, dtype=f16)
    o = torch.empty(1, 14336, device=dev, dtype=f16)
    out["silu_and_mul 1x14336"] = (
        "fc.silu_and_mul(x, out=o, enable_pdl=False)", dict(fc=fc, x=x, o=o),
        fc.prepare(fc.silu_and_mul, x, out=o, enable_pdl=False),
        (lambda: fi.activation.silu_and_mul(x, out=o, enable_pdl=False)) if fi else None,
        (x, o))

    if hasattr(fc, "top_k_top_p_sampling_from_logits"):
        logits = torch.randn(1, 151936, device=dev, dtype=torch.float32)
        out["top_k_top_p_sampling_from_logits 1x151936"] = (
            "fc.top_k_top_p_sampling_from_logits(logits, 50, 0.9, seed=0, offset=0)",
            dict(fc=fc, logits=logits),
            fc.prepare(fc.top_k_top_p_sampling_from_logits, logits, 50, 0.9, seed=0, offset=0),
            (lambda: fi.sampling.top_k_top_p_sampling_from_logits(logits, 50, 0.9, seed=0,
                                                                  offset=0)) if fi else None,
            (logits,))

    if hasattr(fc, "merge_state"):
        va = torch.randn(1, 32, 128, device=dev, dtype=f16)
        vb = torch.randn(1, 32, 128, device=dev, dtype=f16)
        sa = torch.randn(1, 32, device=dev, dtype=torch.float32)
        sb = torch.randn(1, 32, device=dev, dtype=torch.float32)
        vo, so = torch.empty_like(va), torch.empty_like(sa)
        out["merge_state 1x32x128"] = (
            "fc.merge_state(va, sa, vb, sb, v_merged=vo, s_merged=so)",
            dict(fc=fc, va=va, sa=sa, vb=vb, sb=sb, vo=vo, so=so),
            fc.prepare(fc.merge_state, va, sa, vb, sb, v_merged=vo, s_merged=so),
            (lambda: fi.cascade.merge_state(va, sa, vb, sb)) if fi else None,
            (va, sa, vb, sb, vo, so))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bursts", type=int, default=300)
    ap.add_argument("--burst", type=int, default=50)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    import torch

    import flashinfer_cy as fc

    try:
        import flashinfer as fi
    except Exception as exc:  # noqa: BLE001 - the peer's columns are then left out
        print(f"# flashinfer-python unavailable: {exc!r}")
        fi = None
    sync = torch.cuda.synchronize
    report = {}
    print(f"# decode-step kernels, {torch.cuda.get_device_name()}, torch {torch.__version__}, "
          f"python {platform.python_version()}, bursts {args.bursts}x{args.burst}")
    print(f"{'op / path':58s} {'host us':>8s} {'vs floor':>9s} {'vs torch fl':>11s} "
          f"{'GPU us':>8s}")
    for name, (expr, names, prepared, peer, tensors) in ops(torch, fc, fi).items():
        ours = LoopBurst(expr, **names)
        rows = {FLOOR: CBurst(lambda n, p=prepared: p._c_burst_us(n)),
                TORCH_FLOOR: CBurst(lambda n, p=prepared, t=tensors: p._c_burst_us(n, t)),
                OURS: ours, PREPARED: LoopBurst("p.launch()", p=prepared)}
        if peer is not None:
            rows[PEER] = peer
        for fn in rows.values():  # every row runs once before timing (module loads, JIT)
            fn.fn(1) if isinstance(fn, CBurst) else fn()
        sync()
        per = host_us_interleaved(rows, sync, args.bursts, args.burst, raw=True)
        med = {r: statistics.median(v) for r, v in per.items()}
        rel = {r: {b: statistics.median([a - f for a, f in zip(per[r], per[b])])
                   for b in (FLOOR, TORCH_FLOOR)} for r in per}
        gpu = {OURS: gpu_us(torch, ours, 30, args.burst)}
        if peer is not None:
            gpu[PEER] = gpu_us(torch, peer, 30, args.burst)
        print(f"## {name}")
        for r in rows:
            vs = "" if r == FLOOR else f"{rel[r][FLOOR]:+.2f}"
            vt = "" if r in (FLOOR, TORCH_FLOOR) else f"{rel[r][TORCH_FLOOR]:+.2f}"
            g = f"{gpu[r]:.2f}" if r in gpu else ""
            print(f"  {r:56s} {med[r]:8.2f} {vs:>9s} {vt:>11s} {g:>8s}")
        verdict = dict(
            torch_target=rel[OURS][TORCH_FLOOR] <= 0.3,
            prepared_target=rel[PREPARED][FLOOR] <= 0.5,
            gpu_vs_peer=(gpu[OURS] / gpu[PEER] - 1) if PEER in gpu else None)
        print(f"  targets: torch tensors <= torch floor + 0.3 us: {verdict['torch_target']}; "
              f"prepared <= C floor + 0.5 us: {verdict['prepared_target']}"
              + (f"; GPU vs peer {verdict['gpu_vs_peer']:+.1%}"
                 if verdict["gpu_vs_peer"] is not None else ""))
        report[name] = dict(host_us=med, vs=rel, gpu_us=gpu, targets=verdict)
    if args.json:
        args.json.write_text(json.dumps(dict(ops=report, device=torch.cuda.get_device_name()),
                                        indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
