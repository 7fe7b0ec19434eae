"""Where decode run()'s host time above the C floor goes, on the GPU machine.

Times, interleaved burst by burst in one process (tools/bench_norm.py's method), the C floor,
the C floor that also describes torch tensors through torch's exchange API, run() and the
prepared launch, and two rows that put a no-op call of the same shape before the prepared
launch (tools/c_floor/call_shape.pyx, same Cython): run()'s shape (two positional tensors,
a (k, v) tuple, out=) and launch()'s. Per round:

  torch    torch floor - C floor                   torch's describe + stream calls
  launch   prepared launch - C floor               a bare GIL-releasing Python call
  shape    (no-op run shape + launch) - launch     run()'s call shape, argument parsing
  logic    run - C floor - torch - launch - shape  run()'s own checks, reuse and stream

    python tools/probe_call_shape.py [--repeats 3]     (after tools/gpu_session.sh's setup)
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))
from bench_attention import D, HKV, HQ, PS, decode_floor, paged_layout  # noqa: E402
from bench_norm import LoopBurst, host_us_interleaved  # noqa: E402


def build_call_shape():
    """tools/c_floor/call_shape.pyx compiled into a temporary directory, imported."""
    out = Path(tempfile.mkdtemp())
    src = out / "call_shape.pyx"
    src.write_text((TOOLS / "c_floor" / "call_shape.pyx").read_text())
    subprocess.run([sys.executable, "-c",
                    "from setuptools import setup; from Cython.Build import cythonize; "
                    "setup(ext_modules=cythonize('call_shape.pyx', quiet=True), "
                    "script_args=['-q', 'build_ext', '--inplace'])"],
                   cwd=out, check=True, capture_output=True)
    sys.path.insert(0, str(out))
    import call_shape
    return call_shape


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--bursts", type=int, default=100)
    ap.add_argument("--burst", type=int, default=50)
    args = ap.parse_args()
    import numpy as np
    import torch

    import flashinfer_cy as fc

    nop = build_call_shape().NoOp()
    b, n = 32, 1024
    pool = b * ((n + PS - 1) // PS) + 8
    indptr, indices, last = paged_layout(np, np.random.default_rng(0), b, n, pool)
    k = torch.randn(pool, PS, HKV, D, device="cuda", dtype=torch.float16)
    v = torch.randn_like(k)
    q = torch.randn(b, HQ, D, device="cuda", dtype=torch.float16)
    o, o_floor = torch.empty_like(q), torch.empty_like(q)
    w = fc.BatchDecodeWithPagedKVCache("NHD")
    w.plan(indptr, torch.from_numpy(indices).cuda(), last, HQ, HKV, D, PS)
    step = w.prepare(q, (k, v), o)
    floors = decode_floor(b, n, exchange=(q, k, v, o_floor))
    names = dict(w=w, nop=nop, step=step, q=q, k=k, v=v, o=o)
    group = {"floor": floors["run"], "torch": floors["run_exchange"],
             "run": LoopBurst("w.run(q, (k, v), out=o)", **names),
             "launch": LoopBurst("step.launch()", **names),
             "shape": LoopBurst("nop.run(q, (k, v), out=o); step.launch()", **names),
             "launch shape": LoopBurst("nop.launch(); step.launch()", **names)}
    print(f"# {torch.cuda.get_device_name()}, torch {torch.__version__}; decode B {b} kv {n}; "
          "medians over rounds of per-round differences, us/call")
    for _ in range(args.repeats):
        per = host_us_interleaved(group, torch.cuda.synchronize, args.bursts, args.burst,
                                  raw=True)
        rounds = list(zip(*(per[name] for name in group)))
        med = lambda f: statistics.median(f(*r) for r in rounds)  # noqa: E731
        parts = dict(
            torch=med(lambda f, t, r, l, s, ls: t - f),
            launch=med(lambda f, t, r, l, s, ls: l - f),
            shape=med(lambda f, t, r, l, s, ls: s - l),
            launch_shape=med(lambda f, t, r, l, s, ls: ls - l),
            logic=med(lambda f, t, r, l, s, ls: r - f - (t - f) - (s - f)),
            run=med(lambda f, t, r, l, s, ls: r - f))
        print(f"floor {statistics.median(per['floor']):6.2f} | run {parts['run']:+.2f} = "
              f"torch {parts['torch']:+.2f} + launch {parts['launch']:+.2f} + shape "
              f"{parts['shape']:+.2f} + logic {parts['logic']:+.2f} | (a no-arg call: "
              f"{parts['launch_shape']:+.2f})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
