"""RMSNorm with no array library at all: memory and streams from cuda.core (cuda-python),
tensors described by raw pointers with ``fc.TensorDesc``. Needs a CUDA GPU, cuda-core and
the ``norm`` kernel module.

    python examples/rmsnorm_raw_cuda_python.py
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np
import numpy.typing as npt
from cuda.core import Device, LegacyPinnedMemoryResource

import flashinfer_cy as fc
from _reference import check, rmsnorm_ref


def host_view(buf: Any, count: int) -> npt.NDArray[np.float16]:
    """A float16 NumPy view of a page-locked host buffer (no copy)."""
    raw = (ctypes.c_uint16 * count).from_address(int(buf.handle))
    view: npt.NDArray[np.float16] = np.frombuffer(memoryview(raw), dtype=np.float16)
    return view


def main() -> None:
    dev = Device(0)
    dev.set_current()
    stream = dev.create_stream()
    pinned = LegacyPinnedMemoryResource()
    tokens, hidden = 64, 4096
    n, nbytes = tokens * hidden, tokens * hidden * 2

    # Host staging (page-locked) and device buffers, allocated stream-ordered on `stream`.
    h_x, h_w, h_o = pinned.allocate(nbytes), pinned.allocate(hidden * 2), pinned.allocate(nbytes)
    rng = np.random.default_rng(0)
    host_view(h_x, n)[:] = rng.standard_normal(n).astype(np.float16)
    host_view(h_w, hidden)[:] = rng.standard_normal(hidden).astype(np.float16)
    d_x = dev.allocate(nbytes, stream=stream)
    d_w = dev.allocate(hidden * 2, stream=stream)
    ring = [dev.allocate(nbytes, stream=stream) for _ in range(2)]
    d_x.copy_from(h_x, stream=stream)
    d_w.copy_from(h_w, stream=stream)

    # Descriptors: pointer, shape, dtype (strides default to row-major); `owner` keeps the
    # allocation alive as long as the descriptor.
    x = fc.TensorDesc(int(d_x.handle), (tokens, hidden), "float16", owner=d_x)
    w = fc.TensorDesc(int(d_w.handle), (hidden,), "float16", owner=d_w)
    o = fc.TensorDesc(int(ring[0].handle), (tokens, hidden), "float16")

    # Any object with __cuda_stream__ is a stream; the call is asynchronous on it.
    for step in range(4):
        o.set_ptr(int(ring[step % 2].handle))  # re-point at the next ring buffer, no rebuild
        fc.rmsnorm(x, w, out=o, stream=stream)
    h_o.copy_from(ring[1], stream=stream)
    stream.sync()

    check("rmsnorm f16 (TensorDesc, cuda.core)", host_view(h_o, n).reshape(tokens, hidden),
          rmsnorm_ref(host_view(h_x, n).reshape(tokens, hidden), host_view(h_w, hidden)))

    # A DeviceArray result needs no allocator of yours; .numpy() is the one synchronizing call.
    res = fc.rmsnorm(x, w, stream=stream)
    check("rmsnorm f16 (DeviceArray.numpy())", res.numpy(stream=stream),
          rmsnorm_ref(host_view(h_x, n).reshape(tokens, hidden), host_view(h_w, hidden)))
    for buf in (d_x, d_w, *ring):
        buf.close(stream)


if __name__ == "__main__":
    main()
