"""float64 numpy attention reference and random paged/ragged batches for the attention tests.

Semantics are FlashInfer's: GQA (query head h reads kv head h // group), causal rows aligned
bottom-right (query row i of a request sees keys j <= i + kv_len - qo_len), a sliding window
keeping keys j >= i + kv_len - qo_len - window_left, a logits soft cap
``cap * tanh(score / cap)`` applied to the scaled score, and a base-2 log-sum-exp.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from refs import round_to

# A kernel computing in float32 with P (softmax weights) rounded to the input type before
# P @ V, against an exact reference, on outputs of magnitude ~1.
TOL = {"float16": dict(rtol=1e-2, atol=1e-2), "bfloat16": dict(rtol=4e-2, atol=4e-2)}
LSE_TOL = dict(rtol=1e-2, atol=3e-2)
GARBAGE = 50.0  # scale of the values written into cache slots no request owns


def attention_ref(q, k, v, *, causal=False, window_left=-1, logits_soft_cap=0.0, sm_scale=None):
    """q [Lq, Hq, D], k/v [Lkv, Hkv, D] (float64) -> (out [Lq, Hq, D], lse2 [Lq, Hq]).
    Rows that see no key get out 0 and lse -inf."""
    lq, hq, d = q.shape
    lkv, hkv = k.shape[0], k.shape[1]
    group = hq // hkv
    scale = 1.0 / math.sqrt(d) if sm_scale is None else sm_scale
    kk = np.repeat(k, group, axis=1)
    vv = np.repeat(v, group, axis=1)
    s = np.einsum("qhd,khd->hqk", q, kk) * scale
    if logits_soft_cap > 0:
        s = logits_soft_cap * np.tanh(s / logits_soft_cap)
    row = np.arange(lq)[:, None] + (lkv - lq)
    col = np.arange(lkv)[None, :]
    mask = np.ones((lq, lkv), dtype=bool)
    if causal:
        mask &= col <= row
    if window_left >= 0:
        mask &= col >= row - window_left
    s = np.where(mask[None], s, -np.inf)
    return softmax_apply(s, lambda p: np.einsum("hqk,khd->qhd", p, vv))


def softmax_apply(s, apply):
    """Softmax over the last axis of the scores ``s [heads, rows, keys]`` (-inf: masked
    out), the weights then given to ``apply`` (-> out). Returns (out, base-2 lse [rows,
    heads]); a row without keys gets out 0 and lse -inf."""
    m = s.max(axis=-1, keepdims=True) if s.shape[-1] else np.full(s.shape[:-1] + (1,), -np.inf)
    m_safe = np.where(np.isfinite(m), m, 0.0)
    p = np.exp(s - m_safe)
    denom = p.sum(axis=-1, keepdims=True)
    out = apply(p / np.where(denom > 0, denom, 1.0))
    with np.errstate(divide="ignore"):
        lse = (m_safe + np.log(denom))[..., 0] / math.log(2.0)
    lse = np.where(denom[..., 0] > 0, lse, -np.inf)
    return out, lse.T


def rand(rng, shape, dtype, scale=1.0):
    return round_to(rng.standard_normal(shape) * scale, dtype)


@dataclass
class PagedBatch:
    """A paged KV cache holding ``len(kv_lens)`` sequences in shuffled pages of a larger
    pool; every slot no sequence owns holds large garbage."""
    k_cache: np.ndarray       # float64, layout as requested
    v_cache: np.ndarray
    indptr: np.ndarray        # int32 [batch+1]
    indices: np.ndarray       # int32 [nnz_pages]
    last_page_len: np.ndarray  # int32 [batch]
    kv_lens: list
    page_size: int
    layout: str

    def sequence(self, i):
        """(k, v) of request i as [kv_len, Hkv, D] (NHD) float64."""
        pages = self.indices[self.indptr[i]:self.indptr[i + 1]]
        out = []
        for cache in (self.k_cache, self.v_cache):
            sel = cache[pages]
            if self.layout == "HND":
                sel = sel.transpose(0, 2, 1, 3)
            out.append(sel.reshape(-1, sel.shape[2], sel.shape[3])[: self.kv_lens[i]])
        return out


def shuffled_pages(rng, kv_lens, page_size, spare_pages):
    """(pages per request, pool size, page table, its indptr): every request's pages drawn
    at random from a pool ``spare_pages`` larger than needed."""
    pages = [(n + page_size - 1) // page_size for n in kv_lens]
    total = sum(pages)
    pool = total + spare_pages
    indices = rng.permutation(pool)[:total].astype(np.int32)
    return pages, pool, indices, np.concatenate([[0], np.cumsum(pages)]).astype(np.int32)


def paged_batch(rng, kv_lens, page_size, num_kv_heads, head_dim, dtype, layout="NHD",
                spare_pages=3) -> PagedBatch:
    pages, pool, indices, indptr = shuffled_pages(rng, kv_lens, page_size, spare_pages)
    last = np.array([(n - (p - 1) * page_size) if p else 0 for n, p in zip(kv_lens, pages)],
                    dtype=np.int32)
    shape = ((pool, page_size, num_kv_heads, head_dim) if layout == "NHD"
             else (pool, num_kv_heads, page_size, head_dim))
    caches = []
    for _ in range(2):
        c = rand(rng, shape, dtype, GARBAGE)  # garbage everywhere first
        caches.append(c)
    batch = PagedBatch(caches[0], caches[1], indptr, indices, last, list(kv_lens), page_size,
                       layout)
    for i, n in enumerate(kv_lens):  # then real values in the owned slots
        for c in caches:
            for j, page in enumerate(indices[indptr[i]:indptr[i + 1]]):
                used = min(page_size, n - j * page_size)
                if layout == "NHD":
                    c[page, :used] = rand(rng, (used, num_kv_heads, head_dim), dtype)
                else:
                    c[page, :, :used] = rand(rng, (num_kv_heads, used, head_dim), dtype)
    return batch


def describe_mismatch(got, ref, what=""):
    """A one-line account of the worst element, for assertion messages."""
    diff = np.abs(got - ref)
    diff = np.where(np.isnan(diff), np.inf, diff)
    idx = np.unravel_index(int(np.argmax(diff)), diff.shape)
    return (f"{what}: max |err| {diff[idx]:.4g} at {tuple(int(i) for i in idx)} "
            f"(got {got[idx]!r}, ref {ref[idx]!r}); NaNs: {int(np.isnan(got).sum())}")


def assert_close(got, ref, dtype, what, tol=None):
    tol = tol or TOL[dtype]
    ok = np.allclose(got, ref, equal_nan=False, **tol)
    assert ok, describe_mismatch(got, ref, what)
