# Stub for the compiled module flashinfer_cy/kernels/attention.pyx.
"""Single-request attention (flashinfer 0.6.3 single decode / single prefill modules) and the
ABI table of every attention export."""

from typing import Any, Final, Literal, overload

from flashinfer_cy._core.array import DeviceArray
from flashinfer_cy._core.binding import Binding
from flashinfer_cy._typing import StreamLike, TensorLike

SIGNATURES: Final[dict[tuple[str, str, str], tuple[str, str]]]
SINGLE_TMP_BYTES: Final[int]

def binding_for(variant: Any, symbol: str) -> Binding:
    """The Binding of ``variant``'s export ``symbol`` (not loaded)."""

def choose_backend(
    requested: str,
    family: str,
    dtype: str,
    head_dim: int,
    window_left: int,
    logits_soft_cap: float,
    device: int,
) -> Literal["fa2", "fa3"]:
    """"fa2" or "fa3"; "auto" follows upstream (FA3 on sm90 when its module exists)."""

@overload
def single_decode(
    q: TensorLike, k: TensorLike, v: TensorLike, *, kv_layout: str = "NHD",
    window_left: int = -1, logits_soft_cap: float = 0.0, sm_scale: float | None = None,
    rope_scale: float = 1.0, rope_theta: float = 1e4, out: TensorLike | None = None,
    lse: TensorLike | None = None, return_lse: Literal[False] = False,
    stream: StreamLike | None = None,
) -> TensorLike | DeviceArray: ...
@overload
def single_decode(
    q: TensorLike, k: TensorLike, v: TensorLike, *, kv_layout: str = "NHD",
    window_left: int = -1, logits_soft_cap: float = 0.0, sm_scale: float | None = None,
    rope_scale: float = 1.0, rope_theta: float = 1e4, out: TensorLike | None = None,
    lse: TensorLike | None = None, return_lse: Literal[True],
    stream: StreamLike | None = None,
) -> tuple[TensorLike | DeviceArray, TensorLike | DeviceArray]: ...
@overload
def single_prefill(
    q: TensorLike, k: TensorLike, v: TensorLike, *, causal: bool = False,
    kv_layout: str = "NHD", window_left: int = -1, logits_soft_cap: float = 0.0,
    sm_scale: float | None = None, rope_scale: float = 1.0, rope_theta: float = 1e4,
    out: TensorLike | None = None, lse: TensorLike | None = None,
    return_lse: Literal[False] = False, backend: str = "auto", stream: StreamLike | None = None,
) -> TensorLike | DeviceArray: ...
@overload
def single_prefill(
    q: TensorLike, k: TensorLike, v: TensorLike, *, causal: bool = False,
    kv_layout: str = "NHD", window_left: int = -1, logits_soft_cap: float = 0.0,
    sm_scale: float | None = None, rope_scale: float = 1.0, rope_theta: float = 1e4,
    out: TensorLike | None = None, lse: TensorLike | None = None, return_lse: Literal[True],
    backend: str = "auto", stream: StreamLike | None = None,
) -> tuple[TensorLike | DeviceArray, TensorLike | DeviceArray]: ...
