# Stub for the compiled module flashinfer_cy/kernels/topk.pyx.
"""Row-wise top-k from FlashInfer's ``topk`` module (float32/float16/bfloat16 scores, int32
indices), asynchronous on the call's stream, every argument checked before the kernel is
touched."""

from typing import Final, Literal

from flashinfer_cy._core.array import DeviceArray
from flashinfer_cy._core.binding import Binding
from flashinfer_cy._typing import StreamLike, TensorLike

RADIX_TOPK: Final[Binding]
RADIX_TOPK_PAGE_TABLE_TRANSFORM: Final[Binding]
RADIX_TOPK_RAGGED_TRANSFORM: Final[Binding]
CAN_IMPLEMENT_FILTERED_TOPK: Final[Binding]
RADIX_ROW_STATE_BYTES: Final[int]
ROW_STATES_MIN_BYTES: Final[int]

def top_k(
    input: TensorLike,
    k: int,
    sorted: Literal[False] = False,
    *,
    values: TensorLike | None = None,
    indices: TensorLike | None = None,
    row_states_buffer: TensorLike | None = None,
    stream: StreamLike | None = None,
) -> tuple[TensorLike | DeviceArray, TensorLike | DeviceArray]:
    """The ``k`` largest entries of each row, unordered: ``(values, int32 indices)``."""

# flashinfer-python's alias
topk = top_k

def top_k_page_table_transform(
    input: TensorLike,
    src_page_table: TensorLike,
    lengths: TensorLike,
    k: int,
    row_to_batch: TensorLike | None = None,
    *,
    out: TensorLike | None = None,
    row_states_buffer: TensorLike | None = None,
    stream: StreamLike | None = None,
) -> TensorLike | DeviceArray:
    """Top-k columns of each row's first ``lengths[i]`` scores, through the page table."""

def top_k_ragged_transform(
    input: TensorLike,
    offsets: TensorLike,
    lengths: TensorLike,
    k: int,
    *,
    out: TensorLike | None = None,
    row_states_buffer: TensorLike | None = None,
    stream: StreamLike | None = None,
) -> TensorLike | DeviceArray:
    """Top-k columns of each row's first ``lengths[i]`` scores, plus ``offsets[i]``."""

def can_implement_filtered_topk() -> bool:
    """Whether the current CUDA device can run the FilteredTopK algorithm."""
