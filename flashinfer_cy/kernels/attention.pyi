# Stub for the compiled module flashinfer_cy/kernels/attention.pyx.
"""Single-request attention (flashinfer 0.6.3 single decode / single prefill modules) and the
ABI table of every attention export. float16/bfloat16, head_dim 64/128/256."""

from typing import Any, Final, Literal, TypeVar, overload

from flashinfer_cy._core.array import DeviceArray
from flashinfer_cy._core.binding import Binding
from flashinfer_cy._typing import Backend, KVLayout, StreamLike, TensorLike

_Out = TypeVar("_Out", bound=TensorLike)
_Lse = TypeVar("_Lse", bound=TensorLike)

# (family, backend, export) -> (Binding signature, the tensor giving device and stream)
SIGNATURES: Final[dict[tuple[str, str, str], tuple[str, str]]]
LAYOUTS: Final[dict[tuple[str, str, str], dict[str, str]]]
# (family, backend, export, release) -> the line written for that release (signature, device)
RELEASE_SIGNATURES: Final[dict[tuple[str, str, str, str], tuple[str, str]]]
SINGLE_TMP_BYTES: Final[int]

def binding_for(variant: Any, symbol: str) -> Binding:
    """The Binding of ``variant``'s export ``symbol`` (an attention_uri.Variant or MLAVariant;
    the line of the release an MLAVariant is named for where it has one; not loaded)."""

def choose_backend(
    requested: str,
    family: str,
    dtype: str,
    head_dim: int,
    window_left: int,
    logits_soft_cap: float,
    device: int,
    kv_dtype: str | None = None,
) -> Literal["fa2", "fa3"]:
    """"fa2" or "fa3"; "auto" follows upstream (FA3 on sm90 when its module exists; FA2
    for decode and for an fp8 KV cache)."""

# Overloads: the result is ``out`` (the object passed, or a new DeviceArray), or
# ``(out, lse)`` with ``return_lse=True`` (lse float32, base-2 log-sum-exp, passed or new).
@overload
def single_decode(
    q: TensorLike,
    k: TensorLike,
    v: TensorLike,
    *,
    kv_layout: KVLayout = "NHD",
    window_left: int = -1,
    logits_soft_cap: float = 0.0,
    sm_scale: float | None = None,
    rope_scale: float = 1.0,
    rope_theta: float = 1e4,
    out: None = None,
    lse: TensorLike | None = None,
    return_lse: Literal[False] = False,
    stream: StreamLike | None = None,
) -> DeviceArray: ...
@overload
def single_decode(
    q: TensorLike,
    k: TensorLike,
    v: TensorLike,
    *,
    kv_layout: KVLayout = "NHD",
    window_left: int = -1,
    logits_soft_cap: float = 0.0,
    sm_scale: float | None = None,
    rope_scale: float = 1.0,
    rope_theta: float = 1e4,
    out: _Out,
    lse: TensorLike | None = None,
    return_lse: Literal[False] = False,
    stream: StreamLike | None = None,
) -> _Out: ...
@overload
def single_decode(
    q: TensorLike,
    k: TensorLike,
    v: TensorLike,
    *,
    kv_layout: KVLayout = "NHD",
    window_left: int = -1,
    logits_soft_cap: float = 0.0,
    sm_scale: float | None = None,
    rope_scale: float = 1.0,
    rope_theta: float = 1e4,
    out: None = None,
    lse: None = None,
    return_lse: Literal[True],
    stream: StreamLike | None = None,
) -> tuple[DeviceArray, DeviceArray]: ...
@overload
def single_decode(
    q: TensorLike,
    k: TensorLike,
    v: TensorLike,
    *,
    kv_layout: KVLayout = "NHD",
    window_left: int = -1,
    logits_soft_cap: float = 0.0,
    sm_scale: float | None = None,
    rope_scale: float = 1.0,
    rope_theta: float = 1e4,
    out: _Out,
    lse: None = None,
    return_lse: Literal[True],
    stream: StreamLike | None = None,
) -> tuple[_Out, DeviceArray]: ...
@overload
def single_decode(
    q: TensorLike,
    k: TensorLike,
    v: TensorLike,
    *,
    kv_layout: KVLayout = "NHD",
    window_left: int = -1,
    logits_soft_cap: float = 0.0,
    sm_scale: float | None = None,
    rope_scale: float = 1.0,
    rope_theta: float = 1e4,
    out: None = None,
    lse: _Lse,
    return_lse: Literal[True],
    stream: StreamLike | None = None,
) -> tuple[DeviceArray, _Lse]: ...
@overload
def single_decode(
    q: TensorLike,
    k: TensorLike,
    v: TensorLike,
    *,
    kv_layout: KVLayout = "NHD",
    window_left: int = -1,
    logits_soft_cap: float = 0.0,
    sm_scale: float | None = None,
    rope_scale: float = 1.0,
    rope_theta: float = 1e4,
    out: _Out,
    lse: _Lse,
    return_lse: Literal[True],
    stream: StreamLike | None = None,
) -> tuple[_Out, _Lse]: ...
@overload
def single_decode(
    q: TensorLike,
    k: TensorLike,
    v: TensorLike,
    *,
    kv_layout: KVLayout = "NHD",
    window_left: int = -1,
    logits_soft_cap: float = 0.0,
    sm_scale: float | None = None,
    rope_scale: float = 1.0,
    rope_theta: float = 1e4,
    out: TensorLike | None = None,
    lse: TensorLike | None = None,
    return_lse: bool = False,
    stream: StreamLike | None = None,
) -> DeviceArray | TensorLike | tuple[TensorLike, TensorLike]: ...
@overload
def single_prefill(
    q: TensorLike,
    k: TensorLike,
    v: TensorLike,
    *,
    causal: bool = False,
    kv_layout: KVLayout = "NHD",
    window_left: int = -1,
    logits_soft_cap: float = 0.0,
    sm_scale: float | None = None,
    rope_scale: float = 1.0,
    rope_theta: float = 1e4,
    out: None = None,
    lse: TensorLike | None = None,
    return_lse: Literal[False] = False,
    backend: Backend = "auto",
    stream: StreamLike | None = None,
) -> DeviceArray: ...
@overload
def single_prefill(
    q: TensorLike,
    k: TensorLike,
    v: TensorLike,
    *,
    causal: bool = False,
    kv_layout: KVLayout = "NHD",
    window_left: int = -1,
    logits_soft_cap: float = 0.0,
    sm_scale: float | None = None,
    rope_scale: float = 1.0,
    rope_theta: float = 1e4,
    out: _Out,
    lse: TensorLike | None = None,
    return_lse: Literal[False] = False,
    backend: Backend = "auto",
    stream: StreamLike | None = None,
) -> _Out: ...
@overload
def single_prefill(
    q: TensorLike,
    k: TensorLike,
    v: TensorLike,
    *,
    causal: bool = False,
    kv_layout: KVLayout = "NHD",
    window_left: int = -1,
    logits_soft_cap: float = 0.0,
    sm_scale: float | None = None,
    rope_scale: float = 1.0,
    rope_theta: float = 1e4,
    out: None = None,
    lse: None = None,
    return_lse: Literal[True],
    backend: Backend = "auto",
    stream: StreamLike | None = None,
) -> tuple[DeviceArray, DeviceArray]: ...
@overload
def single_prefill(
    q: TensorLike,
    k: TensorLike,
    v: TensorLike,
    *,
    causal: bool = False,
    kv_layout: KVLayout = "NHD",
    window_left: int = -1,
    logits_soft_cap: float = 0.0,
    sm_scale: float | None = None,
    rope_scale: float = 1.0,
    rope_theta: float = 1e4,
    out: _Out,
    lse: None = None,
    return_lse: Literal[True],
    backend: Backend = "auto",
    stream: StreamLike | None = None,
) -> tuple[_Out, DeviceArray]: ...
@overload
def single_prefill(
    q: TensorLike,
    k: TensorLike,
    v: TensorLike,
    *,
    causal: bool = False,
    kv_layout: KVLayout = "NHD",
    window_left: int = -1,
    logits_soft_cap: float = 0.0,
    sm_scale: float | None = None,
    rope_scale: float = 1.0,
    rope_theta: float = 1e4,
    out: None = None,
    lse: _Lse,
    return_lse: Literal[True],
    backend: Backend = "auto",
    stream: StreamLike | None = None,
) -> tuple[DeviceArray, _Lse]: ...
@overload
def single_prefill(
    q: TensorLike,
    k: TensorLike,
    v: TensorLike,
    *,
    causal: bool = False,
    kv_layout: KVLayout = "NHD",
    window_left: int = -1,
    logits_soft_cap: float = 0.0,
    sm_scale: float | None = None,
    rope_scale: float = 1.0,
    rope_theta: float = 1e4,
    out: _Out,
    lse: _Lse,
    return_lse: Literal[True],
    backend: Backend = "auto",
    stream: StreamLike | None = None,
) -> tuple[_Out, _Lse]: ...
@overload
def single_prefill(
    q: TensorLike,
    k: TensorLike,
    v: TensorLike,
    *,
    causal: bool = False,
    kv_layout: KVLayout = "NHD",
    window_left: int = -1,
    logits_soft_cap: float = 0.0,
    sm_scale: float | None = None,
    rope_scale: float = 1.0,
    rope_theta: float = 1e4,
    out: TensorLike | None = None,
    lse: TensorLike | None = None,
    return_lse: bool = False,
    backend: Backend = "auto",
    stream: StreamLike | None = None,
) -> DeviceArray | TensorLike | tuple[TensorLike, TensorLike]: ...
