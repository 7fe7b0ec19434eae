"""Where the host time of ``top_k_top_p_sampling_from_logits`` goes, stage by stage, on a GPU:
the composed call against its three kernels called one by one and the scratch allocations
it makes (``DeviceArray.empty`` + release on the stream). A diagnosis, not a benchmark:
tools/bench_decode_step.py is the side-by-side table.

Host µs per call: bursts of BURST calls right after a synchronize, median over bursts (the
GPU never falls far enough behind to block the host within a burst).

    python tools/probe_sampling_host.py [--vocab 151936 --bursts 200 --burst 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vocab", type=int, default=151936)
    ap.add_argument("--bursts", type=int, default=200)
    ap.add_argument("--burst", type=int, default=20)
    args = ap.parse_args()

    import torch

    import flashinfer_cy as fc

    stream = torch.cuda.current_stream().cuda_stream
    logits = torch.randn(1, args.vocab, device="cuda")
    masked = torch.empty_like(logits)
    probs = torch.empty_like(logits)
    ids = torch.empty(1, device="cuda", dtype=torch.int32)
    stages = {
        "composed top_k_top_p_sampling_from_logits":
            lambda: fc.top_k_top_p_sampling_from_logits(logits, 50, 0.9, seed=0, offset=0),
        "  DeviceArray.empty f32 [1, vocab] + release":
            lambda: fc.DeviceArray.empty((1, args.vocab), "float32", 0, stream),
        "  DeviceArray.empty i32 [1] + release":
            lambda: fc.DeviceArray.empty((1,), "int32", 0, stream),
        "  top_k_mask_logits (out=)": lambda: fc.top_k_mask_logits(logits, 50, out=masked),
        "  top_k_mask_logits (allocating)": lambda: fc.top_k_mask_logits(logits, 50),
        "  softmax (out=)": lambda: fc.softmax(masked, out=probs),
        "  softmax (allocating)": lambda: fc.softmax(masked),
        "  top_p_sampling_from_probs (out=)":
            lambda: fc.top_p_sampling_from_probs(probs, 0.9, seed=0, offset=0, out=ids),
    }
    for fn in stages.values():
        fn()
    torch.cuda.synchronize()
    print(f"# {torch.cuda.get_device_name()}, vocab {args.vocab}, "
          f"{args.bursts} bursts x {args.burst}")
    for name, fn in stages.items():
        per = []
        for _ in range(args.bursts):
            torch.cuda.synchronize()
            t = time.perf_counter()
            for _ in range(args.burst):
                fn()
            per.append((time.perf_counter() - t) / args.burst * 1e6)
        print(f"{name:48s} {statistics.median(per):8.2f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
