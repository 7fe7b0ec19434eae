# Stub for the compiled module flashinfer_cy/kernels/norm.pyx.
"""RMSNorm family from FlashInfer's ``norm`` module: float16/bfloat16, asynchronous on the
call's stream, every argument checked before the kernel is touched."""

from typing import Final, TypeVar, overload

from flashinfer_cy._core.array import DeviceArray
from flashinfer_cy._core.binding import Binding
from flashinfer_cy._typing import StreamLike, TensorLike

_Out = TypeVar("_Out", bound=TensorLike)

RMSNORM: Final[Binding]
GEMMA_RMSNORM: Final[Binding]
FUSED_ADD_RMSNORM: Final[Binding]
GEMMA_FUSED_ADD_RMSNORM: Final[Binding]

# ``out`` omitted: a new DeviceArray (stream-ordered allocation on the call's stream);
# ``out`` given: that very object is returned.
@overload
def rmsnorm(
    input: TensorLike,
    weight: TensorLike,
    eps: float = 1e-6,
    out: None = None,
    enable_pdl: bool | None = None,
    stream: StreamLike | None = None,
) -> DeviceArray: ...
@overload
def rmsnorm(
    input: TensorLike,
    weight: TensorLike,
    eps: float,
    out: _Out,
    enable_pdl: bool | None = None,
    stream: StreamLike | None = None,
) -> _Out: ...
@overload
def rmsnorm(
    input: TensorLike,
    weight: TensorLike,
    eps: float = 1e-6,
    *,
    out: _Out,
    enable_pdl: bool | None = None,
    stream: StreamLike | None = None,
) -> _Out: ...
@overload
def gemma_rmsnorm(
    input: TensorLike,
    weight: TensorLike,
    eps: float = 1e-6,
    out: None = None,
    enable_pdl: bool | None = None,
    stream: StreamLike | None = None,
) -> DeviceArray: ...
@overload
def gemma_rmsnorm(
    input: TensorLike,
    weight: TensorLike,
    eps: float,
    out: _Out,
    enable_pdl: bool | None = None,
    stream: StreamLike | None = None,
) -> _Out: ...
@overload
def gemma_rmsnorm(
    input: TensorLike,
    weight: TensorLike,
    eps: float = 1e-6,
    *,
    out: _Out,
    enable_pdl: bool | None = None,
    stream: StreamLike | None = None,
) -> _Out: ...
def fused_add_rmsnorm(
    input: TensorLike,
    residual: TensorLike,
    weight: TensorLike,
    eps: float = 1e-6,
    enable_pdl: bool | None = None,
    stream: StreamLike | None = None,
) -> None:
    """In place: ``residual += input``, then ``input = residual / rms(residual) * weight``."""

def gemma_fused_add_rmsnorm(
    input: TensorLike,
    residual: TensorLike,
    weight: TensorLike,
    eps: float = 1e-6,
    enable_pdl: bool | None = None,
    stream: StreamLike | None = None,
) -> None:
    """In place: ``residual += input``, then ``input = residual / rms(residual) * (1 + w)``."""

# The 3-D ([tokens, heads, head_dim]) form of rmsnorm under the name other libraries use.
qk_rmsnorm = rmsnorm
