"""Where the host time of a decode plan() (or run()) goes: loop it under a sampling profiler.

    py-spy record --native --nonblocking -r 1000 -f raw -o plan.txt -- \
        python tools/profile_plan.py [--what run]
    python tools/profile_plan.py --summarize plan.txt    # inclusive share per function

Shapes as tools/bench_attention.py's decode rows (f16 NHD, 32/8 heads, d 128, page 16).
"""

from __future__ import annotations

import argparse
import collections
import re
import sys
import time
from pathlib import Path


def summarize(path: Path, top: int, under: str | None) -> None:
    """Inclusive sample share of every function (counted once per stack, lines merged);
    with ``under``, the share of each direct callee of the functions whose name starts
    with it, relative to those functions' own samples."""
    incl: collections.Counter[str] = collections.Counter()
    children: collections.Counter[str] = collections.Counter()
    total = inside = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
        for frame in set(frames):
            incl[frame] += n
        if under:
            hits = [i for i, f in enumerate(frames) if f.startswith(under)]
            if hits:
                inside += n
                i = hits[-1]
                children[frames[i + 1] if i + 1 < len(frames) else "(self)"] += n
    print(f"{total} samples")
    if under:
        print(f"{inside} samples in {under}*; its direct callees:")
        for frame, n in children.most_common(top):
            print(f"{100 * n / max(inside, 1):6.1f}%  {frame[:150]}")
        return
    for frame, n in incl.most_common(top):
        print(f"{100 * n / total:6.1f}%  {frame[:150]}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--kv-len", type=int, default=1024)
    ap.add_argument("--host-page-table", action="store_true")
    ap.add_argument("--what", choices=("plan", "run"), default="plan")
    ap.add_argument("--raw", action="store_true", help="run(): TensorDesc instead of torch")
    ap.add_argument("--summarize", type=Path, help="print a py-spy raw profile's summary")
    ap.add_argument("--top", type=int, default=60)
    ap.add_argument("--under", help="with --summarize: break down this function's callees")
    args = ap.parse_args()
    if args.summarize:
        summarize(args.summarize, args.top, args.under)
        return 0

    import numpy as np
    import torch

    import flashinfer_cy as fc

    hq, hkv, d, ps = 32, 8, 128, 16
    pages = (args.kv_len + ps - 1) // ps
    rng = np.random.default_rng(0)
    indices = rng.permutation(args.batch * pages).astype(np.int32)
    indptr = (np.arange(args.batch + 1) * pages).astype(np.int32)
    last = np.full(args.batch, args.kv_len - (pages - 1) * ps, dtype=np.int32)
    table = indices if args.host_page_table else torch.from_numpy(indices).cuda()
    w = fc.BatchDecodeWithPagedKVCache("NHD")
    w.plan(indptr, table, last, hq, hkv, d, ps)
    if args.what == "plan":
        def call():
            w.plan(indptr, table, last, hq, hkv, d, ps)
    else:
        k = torch.randn(args.batch * pages, ps, hkv, d, device="cuda", dtype=torch.float16)
        v = torch.randn_like(k)
        q = torch.randn(args.batch, hq, d, device="cuda", dtype=torch.float16)
        o = torch.empty_like(q)
        if args.raw:
            q, k, v, o = (fc.TensorDesc(t.data_ptr(), tuple(t.shape), "float16")
                          for t in (q, k, v, o))

        def call():
            w.run(q, (k, v), out=o)
    torch.cuda.synchronize()
    n, end = 0, time.perf_counter() + args.seconds
    while time.perf_counter() < end:
        for _ in range(200):
            call()
        torch.cuda.synchronize()  # bursts after a synchronize, like the benchmark's
        n += 200
    print(f"{n} calls of {args.what}(), {args.seconds * 1e6 / n:.2f} us each "
          f"(incl. profiler overhead)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
