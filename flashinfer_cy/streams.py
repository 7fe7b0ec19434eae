"""Which CUDA stream a call runs on.

Every kernel API takes ``stream=``. Accepted forms: an int handle (0 = legacy default
stream), objects with ``__cuda_stream__`` (cuda.core ``Stream``), ``torch.cuda.Stream``,
CuPy streams, ``cuda.bindings.driver.CUstream``.

``stream=None`` resolves, in order, to:

1. the *producer's current stream* when a tensor argument says which one it is: PyTorch
   tensors (DLPack C exchange API) give ``torch.cuda.current_stream()`` -- so code inside
   ``with torch.cuda.stream(s):`` just works, as DLPack asks of library calls; CUDA Array
   Interface v3 producers give their ``stream`` entry;
2. otherwise the thread's current stream for that device, set with :func:`use_stream`
   (the TVM-FFI environment stream, which tvm_ffi's own ``use_raw_stream`` also sets);
3. otherwise the legacy default stream (0).

Calls never synchronize and never copy device memory to the host.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

from flashinfer_cy._core.stream import as_stream_handle

__all__ = ["as_stream_handle", "use_stream", "current_stream"]

_KDL_CUDA = 2
# TVM-FFI's per-thread stream table is a vector indexed by the ordinal (grown to fit, never
# bounds-checked for negatives): a negative ordinal is an out-of-bounds write, a huge one a
# huge allocation. No machine has this many devices.
_MAX_DEVICES = 1 << 16


def _device_ordinal(device: Any) -> int:
    if isinstance(device, bool) or not hasattr(type(device), "__index__"):
        raise TypeError(f"device: expected a CUDA device ordinal (int), got {device!r}")
    ordinal = device.__index__()
    if not 0 <= ordinal < _MAX_DEVICES:
        raise ValueError(f"device: expected a CUDA device ordinal 0 <= device < {_MAX_DEVICES}, "
                         f"got {ordinal}")
    return ordinal


@contextlib.contextmanager
def use_stream(stream: Any, device: int = 0) -> Iterator[int]:
    """Within the block, calls on CUDA ``device`` whose tensors name no stream of their own
    run on ``stream``. Thread-local; restores the previous stream on exit."""
    from flashinfer_cy._core.runtime import _env_set_stream

    device = _device_ordinal(device)
    handle = as_stream_handle(stream)
    if handle is None:
        raise TypeError("stream: expected a stream, got None")
    prev = _env_set_stream(_KDL_CUDA, device, handle)
    try:
        yield handle
    finally:
        _env_set_stream(_KDL_CUDA, device, prev)


def current_stream(device: int = 0) -> int:
    """The thread's current TVM-FFI stream handle for CUDA ``device`` (0 when unset)."""
    from flashinfer_cy._core.runtime import _env_get_stream

    return _env_get_stream(_KDL_CUDA, _device_ordinal(device))
