# Stub for the compiled module flashinfer_cy/kernels/rope.pyx.
"""Rotary position embedding (FlashInfer's ``rope`` module): float16/bfloat16 q and k
``[nnz, heads, head_dim]``, head_dim 64/128/256/512, asynchronous on the call's stream."""

from typing import Any, Final

from flashinfer_cy._core.binding import Binding
from flashinfer_cy._typing import StreamLike, TensorLike

APPLY_ROPE: Final[Binding]
APPLY_LLAMA31_ROPE: Final[Binding]
APPLY_ROPE_POS_IDS: Final[Binding]
APPLY_LLAMA31_ROPE_POS_IDS: Final[Binding]
APPLY_ROPE_POS_IDS_COS_SIN_CACHE: Final[Binding]

def apply_rope(q: TensorLike, k: TensorLike, indptr: TensorLike, offsets: TensorLike,
               rotary_dim: int | None = None, interleave: bool = False,
               rope_scale: float = 1, rope_theta: float = 1e4, *,
               q_rope: TensorLike | None = None, k_rope: TensorLike | None = None,
               stream: StreamLike | None = None) -> tuple[Any, Any]: ...
def apply_rope_inplace(q: TensorLike, k: TensorLike, indptr: TensorLike, offsets: TensorLike,
                       rotary_dim: int | None = None, interleave: bool = False,
                       rope_scale: float = 1, rope_theta: float = 1e4, *,
                       stream: StreamLike | None = None) -> None: ...
def apply_rope_pos_ids(q: TensorLike, k: TensorLike, pos_ids: TensorLike,
                       rotary_dim: int | None = None, interleave: bool = False,
                       rope_scale: float = 1, rope_theta: float = 1e4, *,
                       q_rope: TensorLike | None = None, k_rope: TensorLike | None = None,
                       stream: StreamLike | None = None) -> tuple[Any, Any]: ...
def apply_rope_pos_ids_inplace(q: TensorLike, k: TensorLike, pos_ids: TensorLike,
                               rotary_dim: int | None = None, interleave: bool = False,
                               rope_scale: float = 1, rope_theta: float = 1e4, *,
                               stream: StreamLike | None = None) -> None: ...
def apply_llama31_rope(q: TensorLike, k: TensorLike, indptr: TensorLike, offsets: TensorLike,
                       rotary_dim: int | None = None, interleave: bool = False,
                       rope_scale: float = 8, rope_theta: float = 5e5,
                       low_freq_factor: float = 1, high_freq_factor: float = 4,
                       old_context_len: float = 8192, *, q_rope: TensorLike | None = None,
                       k_rope: TensorLike | None = None,
                       stream: StreamLike | None = None) -> tuple[Any, Any]: ...
def apply_llama31_rope_inplace(q: TensorLike, k: TensorLike, indptr: TensorLike,
                               offsets: TensorLike, rotary_dim: int | None = None,
                               interleave: bool = False, rope_scale: float = 8,
                               rope_theta: float = 5e5, low_freq_factor: float = 1,
                               high_freq_factor: float = 4, old_context_len: float = 8192, *,
                               stream: StreamLike | None = None) -> None: ...
def apply_llama31_rope_pos_ids(q: TensorLike, k: TensorLike, pos_ids: TensorLike,
                               rotary_dim: int | None = None, interleave: bool = False,
                               rope_scale: float = 8, rope_theta: float = 5e5,
                               low_freq_factor: float = 1, high_freq_factor: float = 4,
                               old_context_len: float = 8192, *,
                               q_rope: TensorLike | None = None,
                               k_rope: TensorLike | None = None,
                               stream: StreamLike | None = None) -> tuple[Any, Any]: ...
def apply_llama31_rope_pos_ids_inplace(q: TensorLike, k: TensorLike, pos_ids: TensorLike,
                                       rotary_dim: int | None = None,
                                       interleave: bool = False, rope_scale: float = 8,
                                       rope_theta: float = 5e5, low_freq_factor: float = 1,
                                       high_freq_factor: float = 4,
                                       old_context_len: float = 8192, *,
                                       stream: StreamLike | None = None) -> None: ...
def apply_rope_with_cos_sin_cache(positions: TensorLike, query: TensorLike, key: TensorLike,
                                  head_size: int, cos_sin_cache: TensorLike,
                                  is_neox: bool = True, *,
                                  query_out: TensorLike | None = None,
                                  key_out: TensorLike | None = None,
                                  stream: StreamLike | None = None) -> tuple[Any, Any]: ...
def apply_rope_with_cos_sin_cache_inplace(positions: TensorLike, query: TensorLike,
                                          key: TensorLike, head_size: int,
                                          cos_sin_cache: TensorLike, is_neox: bool = True, *,
                                          stream: StreamLike | None = None) -> None: ...
