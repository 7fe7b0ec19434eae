"""flashinfer_cy's own host work per call -- checks, packing, the TVM-FFI typed call -- on a
machine without a GPU: each API is called with raw-pointer descriptors (never dereferenced)
against no-op exports with FlashInfer 0.6.3's exact signatures (tools/c_floor/noop_exports.cc),
next to the same call prepared (``fc.prepare(...).launch()``) and the bare Binding (no checks).

What it shows: the cost of the Python/Cython layer alone, comparable between commits on one
machine (median of repeats, same process). It is not a GPU benchmark: a real call adds the
export's own launcher work and the CUDA launch (tools/bench_decode_step.py, on a GPU).

    python tools/host_overhead_cpu.py [--number 20000 --repeat 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "cpu"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--number", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()

    from testmod_build import compile_module  # the tests' compile rule for TVM-FFI modules

    import flashinfer_cy as fc
    from flashinfer_cy._core import runtime
    from flashinfer_cy.kernels.activation import SILU_AND_MUL
    from flashinfer_cy.kernels.cascade import MERGE_STATE
    from flashinfer_cy.kernels.norm import RMSNORM
    from flashinfer_cy.kernels.rope import APPLY_ROPE_POS_IDS
    from flashinfer_cy.kernels.sampling import SAMPLING_FROM_PROBS

    so = compile_module(ROOT / "tools/c_floor/noop_exports.cc",
                        Path(tempfile.mkdtemp()) / "noop_exports.so")
    runtime._load_cudart = lambda: None  # no CUDA runtime: the device is left alone
    for uri in ("cascade", "sampling", "rope", "silu_and_mul", "norm"):
        fc.load_module_path(so, uri=uri, flashinfer_version="0.6.3")

    base, mb = 0x7F0000000000, 1 << 20

    def T(shape, dtype="float16", i=0):  # a descriptor of never-dereferenced device memory
        return fc.TensorDesc(base + i * mb, shape, dtype, device_type="cuda")

    va, vb, vo = T((1, 32, 128)), T((1, 32, 128), i=1), T((1, 32, 128), i=2)
    sa, sb, so_ = T((1, 32), "float32", 3), T((1, 32), "float32", 4), T((1, 32), "float32", 5)
    probs, ids = T((1, 151936), "float32", 6), T((1,), "int32", 8)
    q, k, pos = T((1, 32, 128), i=9), T((1, 8, 128), i=10), T((1,), "int32", 11)
    x, act = T((1, 28672), i=12), T((1, 14336), i=13)
    h, w, hn = T((1, 4096), i=14), T((4096,), i=15), T((1, 4096), i=16)

    ops = {
        "rmsnorm 1x4096": ((fc.rmsnorm, (h, w), dict(out=hn, enable_pdl=False)),
                           lambda: RMSNORM(hn, h, w, 1e-6, False)),
        "rope pos_ids 1x32/8x128 in place": (
            (fc.apply_rope_pos_ids_inplace, (q, k, pos), {}),
            lambda: APPLY_ROPE_POS_IDS(q, k, q, k, pos, 128, False, 1.0, 1e4)),
        "silu_and_mul 1x14336": ((fc.silu_and_mul, (x,), dict(out=act, enable_pdl=False)),
                                 lambda: SILU_AND_MUL(act, x, False)),
        "sampling_from_probs 1x151936": (
            (fc.sampling_from_probs, (probs,), dict(seed=0, offset=0, out=ids)),
            lambda: SAMPLING_FROM_PROBS(probs, ids, None, True, 0, 0)),
        "merge_state 1x32x128": ((fc.merge_state, (va, sa, vb, sb),
                                  dict(v_merged=vo, s_merged=so_)),
                                 lambda: MERGE_STATE(va, sa, vb, sb, vo, so_)),
    }
    print(f"# host us per call (median of {args.repeat} x {args.number}), no-op exports")
    print(f"{'op':36s} {'API':>7s} {'prepared':>9s} {'Binding':>8s}")
    for name, ((fn, a, kw), bare) in ops.items():
        prepared = fc.prepare(fn, *a, **kw)
        rows = []
        for call in (lambda: fn(*a, **kw), prepared.launch, bare):
            call()
            times = timeit.repeat(call, number=args.number, repeat=args.repeat)
            rows.append(statistics.median(times) / args.number * 1e6)
        print(f"{name:36s} {rows[0]:7.2f} {rows[1]:9.2f} {rows[2]:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
