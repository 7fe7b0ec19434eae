"""flashinfer_cy's own host work per call -- checks, packing, the TVM-FFI typed call -- on a
machine without a GPU: each API is called with raw-pointer descriptors (never dereferenced)
against no-op exports with FlashInfer 0.6.3's exact signatures (tools/noop_ops.py), next to
the same call prepared (``fc.prepare(...).launch()``) and the bare Binding (no checks).

What it shows: the cost of the Python/Cython layer alone, comparable between commits on one
machine (median of repeats, same process). It is not a GPU benchmark: a real call adds the
export's own launcher work and the CUDA launch (tools/bench_decode_step.py, on a GPU). On a
loaded machine wall clock is noisy; tools/host_overhead_instr.py counts instructions.

    python tools/host_overhead_cpu.py [--number 20000 --repeat 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import noop_ops  # noqa: E402


def measure(args) -> int:
    print(f"# host us per call (median of {args.repeat} x {args.number}), no-op exports")
    print(f"{'op':36s} {'API':>7s} {'prepared':>9s} {'Binding':>8s}")
    for name, op in noop_ops.decode_step_ops().items():
        rows = [statistics.median(timeit.repeat(call, number=args.number,
                                                repeat=args.repeat)) / args.number * 1e6
                for call in (op.api, op.prepared, op.bare)]
        print(f"{name:36s} {rows[0]:7.2f} {rows[1]:9.2f} {rows[2]:8.2f}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--number", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    if noop_ops.NOOP_ENV in os.environ:
        return measure(args)
    with tempfile.TemporaryDirectory() as tmp:
        return noop_ops.run_with_stand_ins(Path(tmp), sys.argv).returncode


if __name__ == "__main__":
    sys.exit(main())
