"""Batched MLA test data and its float64 reference (absorbed form), shared by the GPU tests
(tests/gpu/test_mla.py) and the CPU stand-in scenarios (tests/cpu/fake_kernel_driver.py).

A batch: ``qo_lens[i]`` query rows and ``kv_lens[i]`` cache entries per request, in shuffled
pages of a larger pool; every cache slot no request owns holds large garbage, so a wrong
page, slot or length shows."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from attention_refs import GARBAGE, rand, shuffled_pages, softmax_apply


@dataclass
class MLABatch:
    q_nope: np.ndarray      # float64 [rows, heads, ckv], values of the dtype
    q_pe: np.ndarray        # [rows, heads, kpe]
    ckv_cache: np.ndarray   # [pool, page_size, ckv]
    kpe_cache: np.ndarray   # [pool, page_size, kpe]
    qo_indptr: np.ndarray   # int32 [batch+1]
    kv_indptr: np.ndarray   # int32 [batch+1], pages
    kv_indices: np.ndarray  # int32 [kv_indptr[-1]]
    kv_lens: np.ndarray     # int32 [batch]
    page_size: int

    def sequence(self, i):
        """(ckv [kv_len, ckv], kpe [kv_len, kpe]) of request i."""
        pages = self.kv_indices[self.kv_indptr[i]:self.kv_indptr[i + 1]]
        n = int(self.kv_lens[i])
        return (self.ckv_cache[pages].reshape(-1, self.ckv_cache.shape[2])[:n],
                self.kpe_cache[pages].reshape(-1, self.kpe_cache.shape[2])[:n])

    def rows(self, i):
        return slice(int(self.qo_indptr[i]), int(self.qo_indptr[i + 1]))


def mla_batch(rng, qo_lens, kv_lens, page_size, num_heads, dtype, ckv=512, kpe=64,
              spare_pages=3) -> MLABatch:
    _, pool, indices, kv_indptr = shuffled_pages(rng, kv_lens, page_size, spare_pages)
    qo_indptr = np.concatenate([[0], np.cumsum(qo_lens)]).astype(np.int32)
    ckv_cache = rand(rng, (pool, page_size, ckv), dtype, GARBAGE)
    kpe_cache = rand(rng, (pool, page_size, kpe), dtype, GARBAGE)
    for i, n in enumerate(kv_lens):  # real values in the owned slots
        for j, page in enumerate(indices[kv_indptr[i]:kv_indptr[i + 1]]):
            used = min(page_size, n - j * page_size)
            ckv_cache[page, :used] = rand(rng, (used, ckv), dtype)
            kpe_cache[page, :used] = rand(rng, (used, kpe), dtype)
    rows = int(qo_indptr[-1])
    return MLABatch(rand(rng, (rows, num_heads, ckv), dtype), rand(rng, (rows, num_heads, kpe),
                                                                   dtype),
                    ckv_cache, kpe_cache, qo_indptr, kv_indptr, indices,
                    np.asarray(kv_lens, np.int32), page_size)


def mla_ref(q_nope, q_pe, ckv, kpe, sm_scale, causal=False):
    """float64 absorbed MLA of one request: ``q_* [qo_len, heads, *]``, ``ckv [kv_len,
    ckv]``, ``kpe [kv_len, kpe]``. scores = (q_nope . ckv + q_pe . kpe) * sm_scale, causal
    rows aligned to the end (row r sees keys < kv_len - qo_len + r + 1); out = softmax .
    ckv, lse base 2 (-inf for a row without keys, out 0 there)."""
    qo_len, kv_len = q_nope.shape[0], ckv.shape[0]
    # matmul (BLAS), not einsum: a 30-row x 128-head x 1500-key request is ~3 GFLOP
    s = np.swapaxes(q_nope @ ckv.T + q_pe @ kpe.T, 0, 1) * sm_scale   # [heads, rows, keys]
    if causal:
        allowed = np.arange(kv_len)[None, :] < (kv_len - qo_len + np.arange(qo_len) + 1)[:, None]
        s = np.where(allowed[None], s, -np.inf)
    return softmax_apply(s, lambda p: np.swapaxes(p @ ckv, 0, 1))
