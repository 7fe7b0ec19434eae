# Type aliases shared by the stubs of the compiled modules. Stub-only: nothing imports this at
# run time. Users may use the aliases in annotations behind ``typing.TYPE_CHECKING``:
#
#     if TYPE_CHECKING:
#         from flashinfer_cy._typing import TensorLike, StreamLike
from collections.abc import Mapping
from typing import Any, Literal, Protocol, SupportsIndex, SupportsInt, TypeAlias, type_check_only

import numpy as np
import numpy.typing as npt

from flashinfer_cy._core.tensor import TensorDesc

@type_check_only
class SupportsDLPack(Protocol):
    """A DLPack producer (PyTorch, CuPy, JAX, NumPy, ...). Viewed, never copied."""

    def __dlpack__(self) -> object: ...

@type_check_only
class SupportsCudaArrayInterface(Protocol):
    """A CUDA Array Interface producer (Numba, older CuPy, ...)."""

    @property
    def __cuda_array_interface__(self) -> Mapping[str, Any]: ...

# Any tensor argument: a raw-pointer descriptor (TensorDesc / DeviceArray), a DLPack producer
# or a CUDA Array Interface producer.
TensorLike: TypeAlias = TensorDesc | SupportsDLPack | SupportsCudaArrayInterface

@type_check_only
class SupportsCudaStream(Protocol):
    """The CUDA stream protocol: ``__cuda_stream__() -> (version, handle)`` (cuda.core)."""

    def __cuda_stream__(self) -> tuple[int, int]: ...

@type_check_only
class HasCudaStreamAttr(Protocol):
    """``torch.cuda.Stream``: the handle is ``.cuda_stream``."""

    @property
    def cuda_stream(self) -> int: ...

@type_check_only
class HasPtrAttr(Protocol):
    """CuPy streams: the handle is ``.ptr``."""

    @property
    def ptr(self) -> int: ...

@type_check_only
class CudaBindingsHandle(SupportsInt, Protocol):
    """``cuda.bindings.driver.CUstream`` / ``cuda.bindings.runtime.cudaStream_t``:
    ``int()`` is the handle."""

    def getPtr(self) -> int: ...

# Any ``stream=`` argument: an int handle (0 = legacy default stream; numpy integers too), a
# stream-protocol object, a torch or CuPy stream, a cuda.bindings stream handle.
StreamLike: TypeAlias = (
    SupportsIndex | SupportsCudaStream | HasCudaStreamAttr | HasPtrAttr | CudaBindingsHandle
)

# A dtype: a name ("float16", "bf16", "float8_e4m3fn", ...), a numpy dtype, or any object
# whose ``.name`` or ``str()`` ends in one (``torch.bfloat16``).
DTypeLike: TypeAlias = str | np.dtype[Any] | Any

KVLayout: TypeAlias = Literal["NHD", "HND"]
DeviceType: TypeAlias = Literal["cuda", "cpu", "cuda_host", "cuda_managed"]

# Attention: which kernel generation to use ("auto": FA3 on sm_90 when its module exists).
Backend: TypeAlias = Literal["auto", "fa2", "fa3"]
# Paged k and v caches as a pair, or one [num_pages, 2, ...] tensor (split without a copy).
PagedKVCache: TypeAlias = tuple[TensorLike, TensorLike] | TensorLike
# plan() inputs: host integer arrays (numpy arrays, lists...).
HostIndices: TypeAlias = npt.ArrayLike
