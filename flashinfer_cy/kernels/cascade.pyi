# Stub for the compiled module flashinfer_cy/kernels/cascade.pyx.
"""Attention-state merging from FlashInfer's ``cascade`` module: float16/bfloat16 outputs
with float32 base-2 log-sum-exp, asynchronous on the call's stream, every argument checked
before the kernel is touched."""

from typing import Final

from flashinfer_cy._core.array import DeviceArray
from flashinfer_cy._core.binding import Binding
from flashinfer_cy._typing import StreamLike, TensorLike

MERGE_STATE: Final[Binding]
MERGE_STATE_IN_PLACE: Final[Binding]
MERGE_STATES: Final[Binding]
HEAD_DIMS: Final[tuple[int, ...]]

def merge_state(
    v_a: TensorLike,
    s_a: TensorLike,
    v_b: TensorLike,
    s_b: TensorLike,
    v_merged: TensorLike | None = None,
    s_merged: TensorLike | None = None,
    stream: StreamLike | None = None,
) -> tuple[TensorLike | DeviceArray, TensorLike | DeviceArray]:
    """Merge two attention states ``[seq_len, num_heads, head_dim]`` + ``[seq_len,
    num_heads]``; returns ``(v_merged, s_merged)`` (new DeviceArrays where omitted)."""

def merge_state_in_place(
    v: TensorLike,
    s: TensorLike,
    v_other: TensorLike,
    s_other: TensorLike,
    mask: TensorLike | None = None,
    stream: StreamLike | None = None,
) -> None:
    """``(v, s)`` becomes the merge of ``(v, s)`` and ``(v_other, s_other)``, in place, on
    the rows where ``mask`` (bool/uint8 ``[seq_len]``) is set (all rows without one)."""

def merge_states(
    v: TensorLike,
    s: TensorLike,
    v_merged: TensorLike | None = None,
    s_merged: TensorLike | None = None,
    stream: StreamLike | None = None,
) -> tuple[TensorLike | DeviceArray, TensorLike | DeviceArray]:
    """Merge ``[seq_len, num_states, num_heads, head_dim]`` states into one per row;
    returns ``(v_merged, s_merged)`` (new DeviceArrays where omitted)."""
