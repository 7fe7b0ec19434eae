# Stub for the compiled module flashinfer_cy/kernels/gdn.pyx.
"""Gated Delta Net chunked prefill (FlashInfer's ``gdn_prefill_sm90``); sm_90 only."""

from typing import Final, TypeVar, overload

from flashinfer_cy._core.array import DeviceArray
from flashinfer_cy._core.binding import Binding
from flashinfer_cy._typing import StreamLike, TensorLike

_Out = TypeVar("_Out", bound=TensorLike)
_State = TypeVar("_State", bound=TensorLike)

GDN_PREFILL: Final[Binding]
HEAD_SIZE: Final[int]
WORKSPACE_BYTES_PER_SM: Final[int]
WORKSPACE_ALIGN: Final[int]
TMA_ALIGN: Final[int]

# Returns (output, output_state): the objects passed, or new DeviceArrays for those omitted.
@overload
def gdn_prefill(
    q: TensorLike,
    k: TensorLike,
    v: TensorLike,
    cu_seqlens: TensorLike,
    *,
    initial_state: TensorLike | None = None,
    alpha: TensorLike | None = None,
    beta: TensorLike | None = None,
    scale: float = 0.0,
    output: None = None,
    output_state: None = None,
    workspace: TensorLike | None = None,
    stream: StreamLike | None = None,
) -> tuple[DeviceArray, DeviceArray]: ...
@overload
def gdn_prefill(
    q: TensorLike,
    k: TensorLike,
    v: TensorLike,
    cu_seqlens: TensorLike,
    *,
    initial_state: TensorLike | None = None,
    alpha: TensorLike | None = None,
    beta: TensorLike | None = None,
    scale: float = 0.0,
    output: _Out,
    output_state: None = None,
    workspace: TensorLike | None = None,
    stream: StreamLike | None = None,
) -> tuple[_Out, DeviceArray]: ...
@overload
def gdn_prefill(
    q: TensorLike,
    k: TensorLike,
    v: TensorLike,
    cu_seqlens: TensorLike,
    *,
    initial_state: TensorLike | None = None,
    alpha: TensorLike | None = None,
    beta: TensorLike | None = None,
    scale: float = 0.0,
    output: None = None,
    output_state: _State,
    workspace: TensorLike | None = None,
    stream: StreamLike | None = None,
) -> tuple[DeviceArray, _State]: ...
@overload
def gdn_prefill(
    q: TensorLike,
    k: TensorLike,
    v: TensorLike,
    cu_seqlens: TensorLike,
    *,
    initial_state: TensorLike | None = None,
    alpha: TensorLike | None = None,
    beta: TensorLike | None = None,
    scale: float = 0.0,
    output: _Out,
    output_state: _State,
    workspace: TensorLike | None = None,
    stream: StreamLike | None = None,
) -> tuple[_Out, _State]: ...
