# Stub for the compiled module flashinfer_cy/kernels/page.pyx.
"""Paged KV-cache append from FlashInfer's ``page`` module (in place, asynchronous)."""

from typing import Final

from flashinfer_cy._core.binding import Binding
from flashinfer_cy._typing import KVLayout, StreamLike, TensorLike

APPEND_PAGED_KV_CACHE: Final[Binding]
APPEND_PAGED_MLA_KV_CACHE: Final[Binding]
LAYOUTS: Final[dict[str, int]]
MHA_HEAD_DIMS: Final[tuple[int, ...]]
MLA_CKV_DIM: Final[int]
MLA_KPE_DIM: Final[int]

def append_paged_kv_cache(
    append_key: TensorLike,
    append_value: TensorLike,
    batch_indices: TensorLike,
    positions: TensorLike,
    paged_k_cache: TensorLike,
    paged_v_cache: TensorLike,
    kv_indices: TensorLike,
    kv_indptr: TensorLike,
    kv_last_page_len: TensorLike,
    kv_layout: KVLayout = "NHD",
    stream: StreamLike | None = None,
) -> None:
    """Append ``nnz`` key/value rows ``[nnz, num_kv_heads, head_dim]`` to paged K/V caches."""

def append_paged_mla_kv_cache(
    append_ckv: TensorLike,
    append_kpe: TensorLike,
    batch_indices: TensorLike,
    positions: TensorLike,
    ckv_cache: TensorLike,
    kpe_cache: TensorLike,
    kv_indices: TensorLike,
    kv_indptr: TensorLike,
    kv_last_page_len: TensorLike,
    stream: StreamLike | None = None,
) -> None:
    """Append ``nnz`` rows (``[nnz, 512]`` compressed KV, ``[nnz, 64]`` rope keys) to paged
    MLA caches."""
