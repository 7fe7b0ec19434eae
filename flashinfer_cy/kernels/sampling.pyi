# Stub for the compiled module flashinfer_cy/kernels/sampling.pyx.
"""Sampling family from FlashInfer's ``sampling`` module (flashinfer 0.6.3, and 0.7.4's
argument lists where they changed: the ``valid`` flags, device seed/offset tensors): names
and argument order of ``flashinfer.sampling``; asynchronous on the call's stream; every argument
checked before the kernel is touched. Each function has two forms: ``out`` omitted returns
a new DeviceArray (stream-ordered allocation); ``out`` given returns that very object."""

from typing import Any, Final, Literal, Protocol, TypeVar, overload, type_check_only

from flashinfer_cy._core.array import DeviceArray
from flashinfer_cy._core.binding import Binding
from flashinfer_cy._typing import StreamLike, TensorLike
from flashinfer_cy.kernels.sampling_rng import SamplingGenerator

_Out = TypeVar("_Out", bound=TensorLike)

@type_check_only
class _TorchLikeGenerator(Protocol):
    def get_state(self) -> Any: ...
    def set_state(self, new_state: Any, /) -> Any: ...

_Generator = SamplingGenerator | _TorchLikeGenerator
_Order = Literal["top_k_first", "joint"]

SOFTMAX: Final[Binding]
SAMPLING_FROM_PROBS: Final[Binding]
SAMPLING_FROM_LOGITS: Final[Binding]
TOP_P_SAMPLING_FROM_PROBS: Final[Binding]
TOP_K_SAMPLING_FROM_PROBS: Final[Binding]
MIN_P_SAMPLING_FROM_PROBS: Final[Binding]
TOP_K_TOP_P_SAMPLING_FROM_PROBS: Final[Binding]
TOP_P_RENORM_PROBS: Final[Binding]
TOP_K_RENORM_PROBS: Final[Binding]
TOP_K_MASK_LOGITS: Final[Binding]
CHAIN_SPECULATIVE_SAMPLING: Final[Binding]
# flashinfer 0.7.4's lines of the exports it changed (written_for="0.7.4")
SAMPLING_FROM_PROBS_074: Final[Binding]
SAMPLING_FROM_LOGITS_074: Final[Binding]
TOP_P_SAMPLING_FROM_PROBS_074: Final[Binding]
TOP_K_SAMPLING_FROM_PROBS_074: Final[Binding]
MIN_P_SAMPLING_FROM_PROBS_074: Final[Binding]
TOP_K_TOP_P_SAMPLING_FROM_PROBS_074: Final[Binding]
TOP_P_RENORM_PROBS_074: Final[Binding]
CHAIN_SPECULATIVE_SAMPLING_074: Final[Binding]
SOFTMAX_WORKSPACE_BYTES: Final[int]
ROW_STATES_BYTES: Final[int]

@overload
def softmax(
    logits: TensorLike,
    temperature: float | TensorLike | None = None,
    enable_pdl: bool | None = None,
    *,
    out: None = None,
    workspace_buffer: TensorLike | None = None,
    stream: StreamLike | None = None,
) -> DeviceArray: ...
@overload
def softmax(
    logits: TensorLike,
    temperature: float | TensorLike | None = None,
    enable_pdl: bool | None = None,
    *,
    out: _Out,
    workspace_buffer: TensorLike | None = None,
    stream: StreamLike | None = None,
) -> _Out: ...
@overload
def sampling_from_probs(
    probs: TensorLike,
    indices: TensorLike | None = None,
    deterministic: bool = True,
    generator: _Generator | None = None,
    check_nan: bool = False,
    seed: int | TensorLike | None = None,
    offset: int | TensorLike | None = None,
    return_valid: Literal[False] = False,
    *,
    out: None = None,
    valid: TensorLike | None = None,
    stream: StreamLike | None = None,
) -> DeviceArray: ...
@overload
def sampling_from_probs(
    probs: TensorLike,
    indices: TensorLike | None = None,
    deterministic: bool = True,
    generator: _Generator | None = None,
    check_nan: bool = False,
    seed: int | TensorLike | None = None,
    offset: int | TensorLike | None = None,
    return_valid: Literal[False] = False,
    *,
    out: _Out,
    valid: TensorLike | None = None,
    stream: StreamLike | None = None,
) -> _Out: ...
@overload
def sampling_from_probs(
    probs: TensorLike,
    indices: TensorLike | None = None,
    deterministic: bool = True,
    generator: _Generator | None = None,
    check_nan: bool = False,
    seed: int | TensorLike | None = None,
    offset: int | TensorLike | None = None,
    return_valid: Literal[True] = ...,
    *,
    out: TensorLike | None = None,
    valid: TensorLike | None = None,
    stream: StreamLike | None = None,
) -> tuple[Any, Any]: ...
@overload
def sampling_from_logits(
    logits: TensorLike,
    indices: TensorLike | None = None,
    deterministic: bool = True,
    generator: _Generator | None = None,
    check_nan: bool = False,
    seed: int | TensorLike | None = None,
    offset: int | TensorLike | None = None,
    *,
    out: None = None,
    stream: StreamLike | None = None,
) -> DeviceArray: ...
@overload
def sampling_from_logits(
    logits: TensorLike,
    indices: TensorLike | None = None,
    deterministic: bool = True,
    generator: _Generator | None = None,
    check_nan: bool = False,
    seed: int | TensorLike | None = None,
    offset: int | TensorLike | None = None,
    *,
    out: _Out,
    stream: StreamLike | None = None,
) -> _Out: ...
@overload
def top_p_sampling_from_probs(
    probs: TensorLike,
    top_p: float | TensorLike,
    indices: TensorLike | None = None,
    deterministic: bool = True,
    generator: _Generator | None = None,
    check_nan: bool = False,
    seed: int | TensorLike | None = None,
    offset: int | TensorLike | None = None,
    return_valid: Literal[False] = False,
    *,
    out: None = None,
    valid: TensorLike | None = None,
    stream: StreamLike | None = None,
) -> DeviceArray: ...
@overload
def top_p_sampling_from_probs(
    probs: TensorLike,
    top_p: float | TensorLike,
    indices: TensorLike | None = None,
    deterministic: bool = True,
    generator: _Generator | None = None,
    check_nan: bool = False,
    seed: int | TensorLike | None = None,
    offset: int | TensorLike | None = None,
    return_valid: Literal[False] = False,
    *,
    out: _Out,
    valid: TensorLike | None = None,
    stream: StreamLike | None = None,
) -> _Out: ...
@overload
def top_p_sampling_from_probs(
    probs: TensorLike,
    top_p: float | TensorLike,
    indices: TensorLike | None = None,
    deterministic: bool = True,
    generator: _Generator | None = None,
    check_nan: bool = False,
    seed: int | TensorLike | None = None,
    offset: int | TensorLike | None = None,
    return_valid: Literal[True] = ...,
    *,
    out: TensorLike | None = None,
    valid: TensorLike | None = None,
    stream: StreamLike | None = None,
) -> tuple[Any, Any]: ...
@overload
def top_k_sampling_from_probs(
    probs: TensorLike,
    top_k: int | TensorLike,
    indices: TensorLike | None = None,
    deterministic: bool = True,
    generator: _Generator | None = None,
    check_nan: bool = False,
    seed: int | TensorLike | None = None,
    offset: int | TensorLike | None = None,
    return_valid: Literal[False] = False,
    *,
    out: None = None,
    valid: TensorLike | None = None,
    stream: StreamLike | None = None,
) -> DeviceArray: ...
@overload
def top_k_sampling_from_probs(
    probs: TensorLike,
    top_k: int | TensorLike,
    indices: TensorLike | None = None,
    deterministic: bool = True,
    generator: _Generator | None = None,
    check_nan: bool = False,
    seed: int | TensorLike | None = None,
    offset: int | TensorLike | None = None,
    return_valid: Literal[False] = False,
    *,
    out: _Out,
    valid: TensorLike | None = None,
    stream: StreamLike | None = None,
) -> _Out: ...
@overload
def top_k_sampling_from_probs(
    probs: TensorLike,
    top_k: int | TensorLike,
    indices: TensorLike | None = None,
    deterministic: bool = True,
    generator: _Generator | None = None,
    check_nan: bool = False,
    seed: int | TensorLike | None = None,
    offset: int | TensorLike | None = None,
    return_valid: Literal[True] = ...,
    *,
    out: TensorLike | None = None,
    valid: TensorLike | None = None,
    stream: StreamLike | None = None,
) -> tuple[Any, Any]: ...
@overload
def min_p_sampling_from_probs(
    probs: TensorLike,
    min_p: float | TensorLike,
    indices: TensorLike | None = None,
    deterministic: bool = True,
    generator: _Generator | None = None,
    check_nan: bool = False,
    seed: int | TensorLike | None = None,
    offset: int | TensorLike | None = None,
    return_valid: Literal[False] = False,
    *,
    out: None = None,
    valid: TensorLike | None = None,
    stream: StreamLike | None = None,
) -> DeviceArray: ...
@overload
def min_p_sampling_from_probs(
    probs: TensorLike,
    min_p: float | TensorLike,
    indices: TensorLike | None = None,
    deterministic: bool = True,
    generator: _Generator | None = None,
    check_nan: bool = False,
    seed: int | TensorLike | None = None,
    offset: int | TensorLike | None = None,
    return_valid: Literal[False] = False,
    *,
    out: _Out,
    valid: TensorLike | None = None,
    stream: StreamLike | None = None,
) -> _Out: ...
@overload
def min_p_sampling_from_probs(
    probs: TensorLike,
    min_p: float | TensorLike,
    indices: TensorLike | None = None,
    deterministic: bool = True,
    generator: _Generator | None = None,
    check_nan: bool = False,
    seed: int | TensorLike | None = None,
    offset: int | TensorLike | None = None,
    return_valid: Literal[True] = ...,
    *,
    out: TensorLike | None = None,
    valid: TensorLike | None = None,
    stream: StreamLike | None = None,
) -> tuple[Any, Any]: ...
@overload
def top_k_top_p_sampling_from_probs(
    probs: TensorLike,
    top_k: int | TensorLike,
    top_p: float | TensorLike,
    indices: TensorLike | None = None,
    filter_apply_order: _Order = "top_k_first",
    deterministic: bool = True,
    generator: _Generator | None = None,
    check_nan: bool = False,
    seed: int | TensorLike | None = None,
    offset: int | TensorLike | None = None,
    return_valid: Literal[False] = False,
    *,
    out: None = None,
    valid: TensorLike | None = None,
    stream: StreamLike | None = None,
) -> DeviceArray: ...
@overload
def top_k_top_p_sampling_from_probs(
    probs: TensorLike,
    top_k: int | TensorLike,
    top_p: float | TensorLike,
    indices: TensorLike | None = None,
    filter_apply_order: _Order = "top_k_first",
    deterministic: bool = True,
    generator: _Generator | None = None,
    check_nan: bool = False,
    seed: int | TensorLike | None = None,
    offset: int | TensorLike | None = None,
    return_valid: Literal[False] = False,
    *,
    out: _Out,
    valid: TensorLike | None = None,
    stream: StreamLike | None = None,
) -> _Out: ...
@overload
def top_k_top_p_sampling_from_probs(
    probs: TensorLike,
    top_k: int | TensorLike,
    top_p: float | TensorLike,
    indices: TensorLike | None = None,
    filter_apply_order: _Order = "top_k_first",
    deterministic: bool = True,
    generator: _Generator | None = None,
    check_nan: bool = False,
    seed: int | TensorLike | None = None,
    offset: int | TensorLike | None = None,
    return_valid: Literal[True] = ...,
    *,
    out: TensorLike | None = None,
    valid: TensorLike | None = None,
    stream: StreamLike | None = None,
) -> tuple[Any, Any]: ...
@overload
def top_k_top_p_sampling_from_logits(
    logits: TensorLike,
    top_k: int | TensorLike,
    top_p: float | TensorLike,
    indices: TensorLike | None = None,
    filter_apply_order: _Order = "top_k_first",
    deterministic: bool = True,
    generator: _Generator | None = None,
    check_nan: bool = False,
    seed: int | TensorLike | None = None,
    offset: int | TensorLike | None = None,
    *,
    out: None = None,
    stream: StreamLike | None = None,
) -> DeviceArray: ...
@overload
def top_k_top_p_sampling_from_logits(
    logits: TensorLike,
    top_k: int | TensorLike,
    top_p: float | TensorLike,
    indices: TensorLike | None = None,
    filter_apply_order: _Order = "top_k_first",
    deterministic: bool = True,
    generator: _Generator | None = None,
    check_nan: bool = False,
    seed: int | TensorLike | None = None,
    offset: int | TensorLike | None = None,
    *,
    out: _Out,
    stream: StreamLike | None = None,
) -> _Out: ...
@overload
def top_p_renorm_probs(
    probs: TensorLike,
    top_p: float | TensorLike,
    is_deterministic: bool = False,
    *,
    out: None = None,
    stream: StreamLike | None = None,
) -> DeviceArray: ...
@overload
def top_p_renorm_probs(
    probs: TensorLike,
    top_p: float | TensorLike,
    is_deterministic: bool = False,
    *,
    out: _Out,
    stream: StreamLike | None = None,
) -> _Out: ...
@overload
def top_k_renorm_probs(
    probs: TensorLike,
    top_k: int | TensorLike,
    *,
    out: None = None,
    row_states_buffer: TensorLike | None = None,
    stream: StreamLike | None = None,
) -> DeviceArray: ...
@overload
def top_k_renorm_probs(
    probs: TensorLike,
    top_k: int | TensorLike,
    *,
    out: _Out,
    row_states_buffer: TensorLike | None = None,
    stream: StreamLike | None = None,
) -> _Out: ...
@overload
def top_k_mask_logits(
    logits: TensorLike,
    top_k: int | TensorLike,
    *,
    out: None = None,
    row_states_buffer: TensorLike | None = None,
    stream: StreamLike | None = None,
) -> DeviceArray: ...
@overload
def top_k_mask_logits(
    logits: TensorLike,
    top_k: int | TensorLike,
    *,
    out: _Out,
    row_states_buffer: TensorLike | None = None,
    stream: StreamLike | None = None,
) -> _Out: ...
# returns (out, accepted counters, emitted counters); a counter passed in is returned as is
def chain_speculative_sampling(
    draft_probs: TensorLike,
    draft_token_ids: TensorLike,
    target_probs: TensorLike,
    maybe_output_accepted_token_num: TensorLike | None = None,
    maybe_output_emitted_draft_token_num: TensorLike | None = None,
    deterministic: bool = True,
    generator: _Generator | None = None,
    seed: int | TensorLike | None = None,
    offset: int | TensorLike | None = None,
    *,
    out: TensorLike | None = None,
    stream: StreamLike | None = None,
) -> tuple[Any, Any, Any]: ...

# upstream's singular aliases
top_p_renorm_prob = top_p_renorm_probs
top_k_renorm_prob = top_k_renorm_probs
