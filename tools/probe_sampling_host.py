"""Where the host time of ``top_k_top_p_sampling_from_logits`` goes, stage by stage, on a GPU:
the composed call against its three kernels called one by one and the scratch allocations
it makes (``DeviceArray.empty`` + release on the stream). A diagnosis, not a benchmark:
tools/bench_decode_step.py is the side-by-side table.

Host µs per call: bursts of BURST calls right after a synchronize, median over bursts (the
GPU never falls far enough behind to block the host within a burst). Each row also gives the
first call of a burst alone ("1st"): a synchronize lets the device's memory pool hand its
free memory back (its release threshold is 0 by default), so the first stream-ordered
allocation after one maps memory again -- a cost tools/bench_decode_step.py spreads over a
burst. The table is taken twice: with the pool as found, then with its release threshold
raised (``--no-threshold`` skips that), which removes exactly that cost if it is the one.

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
    ap.add_argument("--no-threshold", action="store_true",
                    help="leave the memory pool's release threshold alone")
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
        "composed, ids given (out=)":
            lambda: fc.top_k_top_p_sampling_from_logits(logits, 50, 0.9, seed=0, offset=0,
                                                        out=ids),
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
    table(stages, args, torch.cuda.synchronize, "pool as found: release threshold "
          f"{pool_release_threshold()} bytes")
    if not args.no_threshold:
        pool_release_threshold(2**64 - 1)
        table(stages, args, torch.cuda.synchronize, "release threshold raised to 2**64 - 1")
    return 0


def table(stages, args, sync, title):
    print(f"## {title}")
    print(f"{'':48s} {'burst':>8s} {'1st':>9s}")
    for name, fn in stages.items():
        per, first = [], []
        for _ in range(args.bursts):
            sync()
            t = time.perf_counter()
            fn()
            first.append((time.perf_counter() - t) * 1e6)
            sync()
            t = time.perf_counter()
            for _ in range(args.burst):
                fn()
            per.append((time.perf_counter() - t) / args.burst * 1e6)
        print(f"{name:48s} {statistics.median(per):8.2f} {statistics.median(first):9.2f} us")


def pool_release_threshold(value: int | None = None, device: int = 0) -> int:
    """The release threshold of ``device``'s default memory pool (set to ``value`` first,
    when given), through the libcudart.so.13 the kernels use."""
    import ctypes

    rt = ctypes.CDLL("libcudart.so.13")
    pool, threshold = ctypes.c_void_p(), ctypes.c_uint64(value or 0)
    attr = 4  # cudaMemPoolAttrReleaseThreshold

    def ok(rc, what):
        if rc:
            raise RuntimeError(f"{what} failed: cuda error {rc}")

    ok(rt.cudaDeviceGetDefaultMemPool(ctypes.byref(pool), device), "cudaDeviceGetDefaultMemPool")
    if value is not None:
        ok(rt.cudaMemPoolSetAttribute(pool, attr, ctypes.byref(threshold)),
           "cudaMemPoolSetAttribute")
    ok(rt.cudaMemPoolGetAttribute(pool, attr, ctypes.byref(threshold)),
       "cudaMemPoolGetAttribute")
    return threshold.value


if __name__ == "__main__":
    sys.exit(main())
