"""RMSNorm on CuPy arrays (float16: CuPy has no bfloat16). CuPy does not tell DLPack
consumers its current stream, so pass it explicitly (``stream=``) or set it for a block
with ``fc.use_stream``. Needs a CUDA GPU, cupy and the ``norm`` kernel module.

    python examples/rmsnorm_cupy.py
"""

from __future__ import annotations

import cupy as cp

import flashinfer_cy as fc
from _reference import check, rmsnorm_ref


def main() -> None:
    if cp.cuda.runtime.getDeviceCount() == 0:
        raise SystemExit("this example needs a CUDA GPU")
    rng = cp.random.default_rng(0)
    tokens, hidden = 64, 4096
    x = rng.standard_normal((tokens, hidden), dtype=cp.float32).astype(cp.float16)
    w = rng.standard_normal(hidden, dtype=cp.float32).astype(cp.float16)

    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        # out omitted: a DeviceArray allocated on `stream`; CuPy views it without a copy.
        res = fc.rmsnorm(x, w, stream=cp.cuda.get_current_stream())
        y = cp.from_dlpack(res)
        # out given, stream for the whole block through fc.use_stream:
        out = cp.empty_like(x)
        with fc.use_stream(stream):
            fc.rmsnorm(x, w, out=out)
    stream.synchronize()
    want = rmsnorm_ref(cp.asnumpy(x), cp.asnumpy(w))
    check("rmsnorm f16 (DeviceArray -> cupy)", cp.asnumpy(y), want)
    check("rmsnorm f16 (out=, use_stream)", cp.asnumpy(out), want)

    # In place, on CuPy's (legacy default) stream.
    r = rng.standard_normal((tokens, hidden), dtype=cp.float32).astype(cp.float16)
    want_r = cp.asnumpy(x).astype("float64") + cp.asnumpy(r).astype("float64")
    fc.fused_add_rmsnorm(x, r, w, stream=cp.cuda.get_current_stream())
    cp.cuda.get_current_stream().synchronize()
    check("fused_add_rmsnorm: residual", cp.asnumpy(r), want_r)
    check("fused_add_rmsnorm: output", cp.asnumpy(x), rmsnorm_ref(cp.asnumpy(r), cp.asnumpy(w)))


if __name__ == "__main__":
    main()
