# Stub for the compiled module flashinfer_cy/_core/array.pyx.
"""``DeviceArray``: the library's own stream-ordered device allocation."""

from collections.abc import Iterable
from typing import Any, SupportsIndex

import numpy as np
import numpy.typing as npt

from flashinfer_cy._core.tensor import TensorDesc
from flashinfer_cy._typing import DTypeLike, StreamLike

class DeviceArray(TensorDesc):
    """A device allocation owned by flashinfer_cy (what kernels return when ``out`` is not
    given). ``cudaMallocAsync`` on the stream it was made for; freed (``cudaFreeAsync``, same
    stream) when the last reference, DLPack consumers included, goes away."""

    @property
    def allocated_bytes(self) -> int: ...
    _keep_host: Any
    @staticmethod
    def empty(
        shape: Iterable[SupportsIndex],
        dtype: DTypeLike,
        device: int = 0,
        stream: StreamLike | None = None,
    ) -> DeviceArray:
        """Uninitialised array; ``stream`` orders the allocation (None: stream 0)."""
    @staticmethod
    def zeros(
        shape: Iterable[SupportsIndex],
        dtype: DTypeLike,
        device: int = 0,
        stream: StreamLike | None = None,
    ) -> DeviceArray:
        """Zero-filled array: allocated and cleared in order on ``stream`` (no sync)."""
    @staticmethod
    def from_numpy(
        arr: npt.ArrayLike,
        device: int = 0,
        stream: StreamLike | None = None,
        dtype: DTypeLike | None = None,
    ) -> DeviceArray:
        """Copy a host array to a new DeviceArray (asynchronous on ``stream``). ``dtype``
        reinterprets same-size items, e.g. uint16 bits as ``"bfloat16"``."""
    def copy_from_host(self, arr: npt.ArrayLike, stream: StreamLike | None = None) -> None:
        """Asynchronous host->device copy of an array of the same byte size."""
    def numpy(
        self, stream: StreamLike | None = None, dtype: npt.DTypeLike | None = None
    ) -> np.ndarray[Any, np.dtype[Any]]:
        """Copy to a new host array; synchronizes ``stream`` (the one call that does).
        bfloat16 comes back as uint16 bits, float8 as uint8, unless ``dtype`` says."""


def stream_scratch(what: str, device: int, stream: int | None, nbytes: int, zero: bool = False,
                   instead: str = "") -> DeviceArray:
    """A kernel's scratch buffer of at least ``nbytes``, kept per (what, device, stream);
    refused (StreamCaptureError) when it must be allocated during a CUDA graph capture."""
