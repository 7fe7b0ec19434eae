# Stub for the compiled module flashinfer_cy/kernels/activation.pyx.
"""Gated activations (SiLU, GELU, GELU-tanh) times the second half: ``[..., 2*d] ->
[..., d]``, float16/bfloat16, asynchronous on the call's stream."""

from typing import Final, TypeVar, overload

from flashinfer_cy._core.array import DeviceArray
from flashinfer_cy._core.binding import Binding
from flashinfer_cy._typing import StreamLike, TensorLike

_Out = TypeVar("_Out", bound=TensorLike)

SILU_AND_MUL: Final[Binding]
GELU_AND_MUL: Final[Binding]
GELU_TANH_AND_MUL: Final[Binding]

@overload
def silu_and_mul(input: TensorLike, out: None = None, enable_pdl: bool | None = None,
                 stream: StreamLike | None = None) -> DeviceArray: ...
@overload
def silu_and_mul(input: TensorLike, out: _Out, enable_pdl: bool | None = None,
                 stream: StreamLike | None = None) -> _Out: ...
@overload
def gelu_and_mul(input: TensorLike, out: None = None, enable_pdl: bool | None = None,
                 stream: StreamLike | None = None) -> DeviceArray: ...
@overload
def gelu_and_mul(input: TensorLike, out: _Out, enable_pdl: bool | None = None,
                 stream: StreamLike | None = None) -> _Out: ...
@overload
def gelu_tanh_and_mul(input: TensorLike, out: None = None, enable_pdl: bool | None = None,
                      stream: StreamLike | None = None) -> DeviceArray: ...
@overload
def gelu_tanh_and_mul(input: TensorLike, out: _Out, enable_pdl: bool | None = None,
                      stream: StreamLike | None = None) -> _Out: ...
