# Stub for the compiled module flashinfer_cy/_core/tensor.pyx.
"""Zero-copy views of framework tensors as DLTensors, and the raw-pointer descriptor."""

from collections.abc import Iterable
from typing import Any, SupportsIndex, SupportsInt

from flashinfer_cy._typing import DeviceType, DTypeLike

class TensorDesc:
    """A tensor described by a raw pointer; the fastest argument form. ``strides`` are in
    elements (default: row-major contiguous); ``owner`` is kept alive with the descriptor.
    Exposes ``__dlpack__`` and ``__cuda_array_interface__``."""

    def __init__(
        self,
        ptr: SupportsInt,
        shape: Iterable[SupportsIndex],
        dtype: DTypeLike,
        strides: Iterable[SupportsIndex] | None = None,
        device: int = 0,
        device_type: DeviceType = "cuda",
        owner: object = None,
    ) -> None: ...
    @property
    def owner(self) -> Any: ...
    def set_ptr(self, ptr: SupportsInt) -> None:
        """Point the descriptor at another buffer of the same shape and dtype."""
    @property
    def ptr(self) -> int: ...
    @property
    def shape(self) -> tuple[int, ...]: ...
    @property
    def strides(self) -> tuple[int, ...]:
        """Strides in elements."""
    @property
    def ndim(self) -> int: ...
    @property
    def dtype(self) -> str:
        """Canonical name: "float16", "bfloat16", "float32", "int32", "float8_e4m3fn"..."""
    @property
    def device(self) -> tuple[str | None, int]:
        """``("cuda", ordinal)``, ``("cpu", 0)``, ``("cuda_host", 0)``..."""
    @property
    def itemsize(self) -> int: ...
    @property
    def size(self) -> int: ...
    @property
    def nbytes(self) -> int: ...
    def __dlpack_device__(self) -> tuple[int, int]: ...
    def __dlpack__(
        self,
        *,
        stream: Any = None,
        max_version: tuple[int, int] | None = None,
        dl_device: tuple[int, int] | None = None,
        copy: bool | None = None,
    ) -> Any:
        """A DLPack capsule viewing the same memory (BufferError for copy=True or another
        device)."""
    @property
    def __cuda_array_interface__(self) -> dict[str, Any]:
        """CUDA Array Interface v3 (AttributeError for non-CUDA tensors and for dtypes
        without a typestr: bfloat16, float8)."""

def check_native_order(dtype: object, name: str) -> int:
    """TypeError naming ``name`` when ``dtype`` (a numpy dtype) is not in this machine's
    byte order; 0 otherwise."""
