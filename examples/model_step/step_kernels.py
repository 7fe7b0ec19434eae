"""The FlashInfer calls of one forward pass, behind one small interface so that the model's
loop is written once:

* :class:`EagerOps` -- plain flashinfer_cy calls on the step's stream;
* :class:`PreparedOps` -- the same calls, checked and packed once by ``fc.prepare`` (and the
  attention wrapper's own ``prepare()``) on the first pass, then replayed as GIL-free
  ``launch()`` calls in the same order on every later pass;
* :class:`FlashInferPythonOps` -- flashinfer-python's functions (torch only), for comparison.

Each method is one kernel call; the GEMMs are not here (they belong to the array library).
"""

from __future__ import annotations

from typing import Any

import flashinfer_cy as fc
from hf_config import ModelConfig


def rope_function(lib: Any, cfg: ModelConfig) -> tuple[Any, dict[str, Any]]:
    """The in-place RoPE of ``lib`` (flashinfer_cy or flashinfer: the same names) for this
    config, with its keyword arguments: Llama-3 scaling or plain."""
    r = cfg.rope_llama3
    if r is None:
        return lib.apply_rope_pos_ids_inplace, {"rope_theta": cfg.rope_theta}
    return lib.apply_llama31_rope_pos_ids_inplace, {
        "rope_scale": r.factor, "rope_theta": cfg.rope_theta,
        "low_freq_factor": r.low_freq_factor, "high_freq_factor": r.high_freq_factor,
        "old_context_len": float(r.original_max_position_embeddings)}


class EagerOps:
    def __init__(self, cfg: ModelConfig, attention: Any) -> None:
        self.cfg = cfg
        self.eps = cfg.rms_norm_eps
        self.attention_wrapper = attention  # a planned Batch{Prefill,Decode} wrapper
        self.s: Any = None
        self._rope, self._rope_kw = rope_function(fc, cfg)

    def plan_decode(self, indptr: Any, indices: Any, last_page_len: Any, page_size: int,
                    dtype: str, stream: Any) -> None:
        """Re-plan the decode wrapper for this step's page table (host arrays)."""
        c = self.cfg
        self.attention_wrapper.plan(indptr, indices, last_page_len, c.num_heads,
                                    c.num_kv_heads, c.head_dim, page_size, q_data_type=dtype,
                                    stream=stream)

    def begin(self, stream: Any) -> None:
        """A forward pass starts: its calls go to ``stream``."""
        self.s = stream

    def rmsnorm(self, x: Any, w: Any, out: Any) -> None:
        fc.rmsnorm(x, w, self.eps, out=out, stream=self.s)

    def fused_add_rmsnorm(self, x: Any, residual: Any, w: Any) -> None:
        fc.fused_add_rmsnorm(x, residual, w, self.eps, stream=self.s)

    def rope(self, q: Any, k: Any, positions: Any) -> None:
        self._rope(q, k, positions, stream=self.s, **self._rope_kw)

    def append_kv(self, k: Any, v: Any, batch_indices: Any, positions: Any, k_cache: Any,
                  v_cache: Any, kv_indices: Any, kv_indptr: Any, kv_last: Any) -> None:
        fc.append_paged_kv_cache(k, v, batch_indices, positions, k_cache, v_cache, kv_indices,
                                 kv_indptr, kv_last, "NHD", stream=self.s)

    def attention(self, q: Any, kv: Any, out: Any) -> None:
        self.attention_wrapper.run(q, kv, out=out, stream=self.s)

    def silu_and_mul(self, x: Any, out: Any) -> None:
        fc.silu_and_mul(x, out=out, stream=self.s)


class PreparedOps(EagerOps):
    """First pass: record a PreparedCall per kernel call. Later passes: launch them in
    order. The arguments must be the same buffers every pass (the model's static decode
    buffers are); the attention PreparedRun follows the wrapper's re-plans by itself."""

    def __init__(self, cfg: ModelConfig, attention: Any) -> None:
        super().__init__(cfg, attention)
        self.calls: list[Any] = []
        self.i = 0

    def begin(self, stream: Any) -> None:
        super().begin(stream)
        self.i = 0

    def _next(self, fn: Any, *args: Any, **kwargs: Any) -> None:
        if self.i == len(self.calls):
            self.calls.append(fc.prepare(fn, *args, stream=self.s, **kwargs))
        self.calls[self.i].launch()
        self.i += 1

    def rmsnorm(self, x: Any, w: Any, out: Any) -> None:
        self._next(fc.rmsnorm, x, w, self.eps, out=out)

    def fused_add_rmsnorm(self, x: Any, residual: Any, w: Any) -> None:
        self._next(fc.fused_add_rmsnorm, x, residual, w, self.eps)

    def rope(self, q: Any, k: Any, positions: Any) -> None:
        self._next(self._rope, q, k, positions, **self._rope_kw)

    def append_kv(self, k: Any, v: Any, batch_indices: Any, positions: Any, k_cache: Any,
                  v_cache: Any, kv_indices: Any, kv_indptr: Any, kv_last: Any) -> None:
        self._next(fc.append_paged_kv_cache, k, v, batch_indices, positions, k_cache,
                   v_cache, kv_indices, kv_indptr, kv_last, "NHD")

    def attention(self, q: Any, kv: Any, out: Any) -> None:
        if self.i == len(self.calls):
            self.calls.append(self.attention_wrapper.prepare(q, kv, out, stream=self.s))
        self.calls[self.i].launch()
        self.i += 1

    def silu_and_mul(self, x: Any, out: Any) -> None:
        self._next(fc.silu_and_mul, x, out=out)


class FlashInferPythonOps:
    """flashinfer-python 0.6.x on torch tensors (its calls use torch's current stream)."""

    def __init__(self, cfg: ModelConfig, attention: Any) -> None:
        import flashinfer

        self.fi = flashinfer
        self.cfg = cfg
        self.eps = cfg.rms_norm_eps
        self.attention_wrapper = attention  # a planned flashinfer.BatchDecodeWithPagedKVCacheWrapper
        self._rope, self._rope_kw = rope_function(flashinfer, cfg)

    def plan_decode(self, indptr: Any, indices: Any, last_page_len: Any, page_size: int,
                    dtype: str, stream: Any) -> None:
        import torch

        c = self.cfg
        self.attention_wrapper.plan(
            torch.from_numpy(indptr), torch.from_numpy(indices).cuda(),
            torch.from_numpy(last_page_len), c.num_heads, c.num_kv_heads, c.head_dim,
            page_size, q_data_type=getattr(torch, dtype))

    def begin(self, stream: Any) -> None:
        pass

    def rmsnorm(self, x: Any, w: Any, out: Any) -> None:
        self.fi.rmsnorm(x, w, self.eps, out=out)

    def fused_add_rmsnorm(self, x: Any, residual: Any, w: Any) -> None:
        self.fi.fused_add_rmsnorm(x, residual, w, self.eps)

    def rope(self, q: Any, k: Any, positions: Any) -> None:
        self._rope(q, k, positions, **self._rope_kw)

    def append_kv(self, k: Any, v: Any, batch_indices: Any, positions: Any, k_cache: Any,
                  v_cache: Any, kv_indices: Any, kv_indptr: Any, kv_last: Any) -> None:
        self.fi.append_paged_kv_cache(k, v, batch_indices, positions, (k_cache, v_cache),
                                      kv_indices, kv_indptr, kv_last, "NHD")

    def attention(self, q: Any, kv: Any, out: Any) -> None:
        self.attention_wrapper.run(q, kv, out=out)

    def silu_and_mul(self, x: Any, out: Any) -> None:
        self.fi.silu_and_mul(x, out=out)
