"""A Llama-3 / Qwen3 forward pass over a paged KV cache: ragged batch prefill, then batch
decode steps in three modes that give bit-identical logits:

* ``"eager"``    -- plain flashinfer_cy calls (:class:`kernels.EagerOps`);
* ``"prepared"`` -- the same calls as prepared launches (:class:`kernels.PreparedOps`);
* ``"graph"``    -- the eager step captured once in a CUDA graph, replayed every step with
  the decode wrapper re-planned between replays (on the replay stream).

Per layer (HF's LlamaDecoderLayer / Qwen3DecoderLayer, vLLM's residual folding)::

    x = rmsnorm(residual)                  (layer 0; later layers: fused_add_rmsnorm)
    qkv = x @ Wqkv.T                       one GEMM, q | k | v heads side by side
    q, k = q_norm(q), k_norm(k)            Qwen3 only: per head, over head_dim, before RoPE
    rope(q, k, positions)                  HF's rotate_half convention (non-interleaved)
    append k, v to the paged cache; attention (causal prefill / decode), scale 1/sqrt(d)
    x = attn @ Wo.T; x = fused_add_rmsnorm(x, residual)     residual += attention output
    x = silu_and_mul(x @ Wgate_up.T) @ Wdown.T
    next layer's fused_add_rmsnorm adds x to the residual; the last one uses model.norm

One decode wrapper (``use_cuda_graph=True``) serves all three modes: the same split-KV
schedule in each is what makes their logits bit-identical.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

import flashinfer_cy as fc
from hf_config import ModelConfig, read_config
from step_kernels import EagerOps, PreparedOps
from pages import PageAllocator
from weights import Weights, load_weights

MODES = ("eager", "prepared", "graph")


class StepBuffers:
    """Everything one forward pass over ``rows`` tokens reads and writes (``logit_rows`` of
    logits), allocated once: the decode step's are static, so graphs and prepared launches
    can hold them. ``k``/``kv`` names are kernel views (``backend.kernel_view``)."""

    def __init__(self, be: Any, cfg: ModelConfig, rows: int, logit_rows: int,
                 max_pages: int) -> None:
        h, d = cfg.hidden_size, cfg.head_dim
        heads = cfg.num_heads + 2 * cfg.num_kv_heads
        self.rows = rows
        self.batch_indices_host = np.arange(rows, dtype=np.int32)  # decode: row b is request b
        self.ids = be.empty((rows,), "int64")
        self.positions = be.empty((rows,), "int32")
        self.batch_indices = be.empty((rows,), "int32")
        self.kv_indptr = be.empty((rows + 1,), "int32")       # at most one request per row
        self.kv_indices = be.empty((max_pages,), "int32")
        self.kv_last = be.empty((rows,), "int32")
        self.residual = be.empty((rows, h))
        self.x = be.empty((rows, h))
        self.qkv = be.empty((rows, heads * d))
        self.attn = be.empty((rows, cfg.q_size))
        self.gate_up = be.empty((rows, 2 * cfg.intermediate_size))
        self.act = be.empty((rows, cfg.intermediate_size))
        self.last_rows = be.empty((logit_rows,), "int64")      # prefill: each prompt's last token
        self.x_last = be.empty((logit_rows, h))
        self.logits = be.empty((logit_rows, cfg.vocab_size))
        self.logits_f32 = be.empty((logit_rows, cfg.vocab_size), "float32")
        qkv3 = self.qkv.reshape(rows, heads, d)  # a view: q | k | v heads
        nq, nkv = cfg.num_heads, cfg.num_kv_heads
        views = {"q": qkv3[:, :nq], "k": qkv3[:, nq:nq + nkv], "v": qkv3[:, nq + nkv:],
                 "attn3": self.attn.reshape(rows, nq, d)}
        if cfg.qk_norm:  # normalised copies: the norm's output must not alias its input
            self.q_normed, self.k_normed = be.empty((rows, nq, d)), be.empty((rows, nkv, d))
            views.update(qn=self.q_normed, kn=self.k_normed)
        kv = {name: be.kernel_view(a) for name, a in views.items()}
        self.k_q, self.k_k, self.k_v, self.k_attn3 = kv["q"], kv["k"], kv["v"], kv["attn3"]
        self.k_qn: Any = kv.get("qn")  # None without q/k norm
        self.k_kn: Any = kv.get("kn")
        kview = be.kernel_view
        self.k_positions, self.k_batch_indices = kview(self.positions), kview(self.batch_indices)
        self.k_kv_indptr, self.k_kv_indices = kview(self.kv_indptr), kview(self.kv_indices)
        self.k_kv_last, self.k_residual = kview(self.kv_last), kview(self.residual)
        self.k_x = kview(self.x)
        self.k_gate_up, self.k_act = kview(self.gate_up), kview(self.act)


class Model:
    def __init__(self, cfg: ModelConfig, weights: Weights[Any], backend: Any, *,
                 max_pages: int, page_size: int = 16, prefill_backend: str = "fa2") -> None:
        self.cfg, self.w, self.be = cfg, weights, backend
        self.page_size, self.max_pages = page_size, max_pages
        self.alloc = PageAllocator(max_pages, page_size)
        # One KV cache per layer, k and v of a page side by side: [pages, 2, page, kv_heads, d]
        self.kv = [backend.empty((max_pages, 2, page_size, cfg.num_kv_heads, cfg.head_dim))
                   for _ in range(cfg.num_layers)]
        self.k_kv = [backend.kernel_view(c) for c in self.kv]
        self.k_kv_split = [(backend.kernel_view(c[:, 0]), backend.kernel_view(c[:, 1]))
                           for c in self.kv]
        kw = weights
        self.k_w = [{name: (backend.kernel_view(getattr(lw, name))
                            if getattr(lw, name) is not None else None)
                     for name in ("input_norm", "q_norm", "k_norm", "post_norm")}
                    for lw in kw.layers]
        self.k_final_norm = backend.kernel_view(kw.final_norm)
        self.prefill_wrapper = fc.BatchPrefillWithPagedKVCache("NHD", backend=prefill_backend)
        # Sized for the whole pool; graph-safe: its buffers never move.
        self.decode_wrapper = fc.BatchDecodeWithPagedKVCache(
            "NHD", use_cuda_graph=True, max_num_pages=max_pages)
        self.seqs: list[int] = []
        self.dec: StepBuffers | None = None
        self._ops: dict[str, Any] = {"eager": EagerOps(cfg, self.decode_wrapper),
                                     "prepared": PreparedOps(cfg, self.decode_wrapper)}
        # A graph mode replays the step captured with another mode's ops: "graph" captures
        # the eager flashinfer_cy calls; add_decode_ops(..., graph=True) adds "<mode> graph".
        self._graph_of: dict[str, str] = {"graph": "eager"}
        self._replays: dict[str, Any] = {}
        self._prefill_buffers: StepBuffers | None = None

    @classmethod
    def from_pretrained(cls, path: str | Path, backend: Any, **kwargs: Any) -> Model:
        cfg = read_config(path)
        return cls(cfg, load_weights(path, cfg, backend.upload), backend, **kwargs)

    # ------------------------------------------------------------------ the forward pass
    def forward(self, ops: Any, buf: StepBuffers, logits_of_all_rows: bool) -> Any:
        """Embedding -> layers -> final norm -> LM head -> float32 logits, for the tokens in
        ``buf.ids`` at ``buf.positions`` (the cache metadata already in ``buf``, the
        attention wrapper already planned). Only device work: capturable."""
        be, cfg, w = self.be, self.cfg, self.w
        ops.begin(be.stream())
        be.gather_rows(w.embed, buf.ids, buf.residual)
        for n, lw in enumerate(w.layers):
            kw = self.k_w[n]
            if n == 0:
                ops.rmsnorm(buf.k_residual, kw["input_norm"], buf.k_x)
            else:
                ops.fused_add_rmsnorm(buf.k_x, buf.k_residual, kw["input_norm"])
            be.matmul(buf.x, lw.qkv, buf.qkv)
            q, k = buf.k_q, buf.k_k
            if cfg.qk_norm:
                ops.rmsnorm(q, kw["q_norm"], buf.k_qn)
                ops.rmsnorm(k, kw["k_norm"], buf.k_kn)
                q, k = buf.k_qn, buf.k_kn
            ops.rope(q, k, buf.k_positions)
            k_cache, v_cache = self.k_kv_split[n]
            ops.append_kv(k, buf.k_v, buf.k_batch_indices, buf.k_positions, k_cache, v_cache,
                          buf.k_kv_indices, buf.k_kv_indptr, buf.k_kv_last)
            ops.attention(q, self.k_kv[n], buf.k_attn3)
            be.matmul(buf.attn, lw.o, buf.x)
            ops.fused_add_rmsnorm(buf.k_x, buf.k_residual, kw["post_norm"])
            be.matmul(buf.x, lw.gate_up, buf.gate_up)
            ops.silu_and_mul(buf.k_gate_up, buf.k_act)
            be.matmul(buf.act, lw.down, buf.x)
        ops.fused_add_rmsnorm(buf.k_x, buf.k_residual, self.k_final_norm)
        if logits_of_all_rows:
            be.matmul(buf.x, w.lm_head, buf.logits)
        else:
            be.gather_rows(buf.x, buf.last_rows, buf.x_last)
            be.matmul(buf.x_last, w.lm_head, buf.logits)
        be.copy(buf.logits_f32, buf.logits)
        return buf.logits_f32

    def _write_cache_metadata(self, buf: StepBuffers, positions: npt.NDArray[np.int32],
                              batch_indices: npt.NDArray[np.int32]) -> tuple[Any, ...]:
        indptr, indices, last = self.alloc.layout(self.seqs)
        for dst, host in ((buf.positions, positions), (buf.batch_indices, batch_indices),
                          (buf.kv_indptr, indptr), (buf.kv_indices, indices),
                          (buf.kv_last, last)):
            self.be.copy_from_host(dst, host)
        return indptr, indices, last

    # ------------------------------------------------------------------ prefill
    def prefill(self, prompts: list[npt.NDArray[np.integer[Any]]],
                logits_of_all_tokens: bool = False) -> Any:
        """A ragged batch of new sequences (positions from 0 each). Returns float32 logits
        ``[len(prompts), vocab]`` of each prompt's last token (or ``[tokens, vocab]``)."""
        if self.seqs:
            raise RuntimeError("prefill: this example runs one batch at a time; start_over() first")
        cfg, be = self.cfg, self.be
        lens = np.array([len(p) for p in prompts], dtype=np.int32)
        if len(prompts) == 0 or (lens <= 0).any():
            raise ValueError("prompts: expected a non-empty list of non-empty token arrays")
        self.seqs = list(range(len(prompts)))
        for s, n in zip(self.seqs, lens):
            self.alloc.allocate(s, int(n))
        qo_indptr = np.zeros(len(prompts) + 1, dtype=np.int32)
        np.cumsum(lens, out=qo_indptr[1:])
        tokens = int(qo_indptr[-1])
        buf = StepBuffers(be, cfg, tokens, tokens if logits_of_all_tokens else len(prompts),
                          self.max_pages)
        batch_indices, positions = fc.get_batch_indices_positions(qo_indptr, lens, tokens)
        indptr, indices, last = self._write_cache_metadata(buf, positions, batch_indices)
        be.copy_from_host(buf.ids, np.concatenate(prompts).astype(np.int64))
        be.copy_from_host(buf.last_rows, (qo_indptr[1:] - 1).astype(np.int64))
        self.prefill_wrapper.plan(qo_indptr, indptr, indices, last, cfg.num_heads,
                                  cfg.num_kv_heads, cfg.head_dim, self.page_size, causal=True,
                                  q_data_type=be.dtype, stream=be.stream())
        ops = EagerOps(cfg, self.prefill_wrapper)
        self._prefill_buffers = buf  # alive until the stream has used it
        return self.forward(ops, buf, logits_of_all_tokens)

    # ------------------------------------------------------------------ decode
    def decode(self, tokens: Any, mode: str = "eager") -> Any:
        """One token per sequence (``tokens``: a device int array ``[batch]``, e.g. the
        sampler's output): float32 logits ``[batch, vocab]`` (a static buffer, overwritten
        by the next step)."""
        be = self.be
        buf = self.decode_buffers()
        if mode not in self._ops and mode not in self._graph_of:
            raise ValueError(f"mode: one of {sorted([*self._ops, *self._graph_of])}, "
                             f"got {mode!r}")
        # Host side, the same in every mode: grow each sequence by its new token, copy the
        # cache metadata into the static buffers, re-plan on the stream the step runs on.
        for s in self.seqs:
            self.alloc.grow(s)
        positions = np.array([self.alloc.length(s) - 1 for s in self.seqs], dtype=np.int32)
        indptr, indices, last = self._write_cache_metadata(buf, positions,
                                                           buf.batch_indices_host)
        ops = self._ops[self._graph_of.get(mode, mode)]
        ops.plan_decode(indptr, indices, last, self.page_size, be.dtype, be.stream())
        be.copy(buf.ids, tokens)
        if mode not in self._graph_of:
            return self.forward(ops, buf, True)
        replay = self._replays.get(mode)
        if replay is None:  # this step runs eagerly (the warm-up), then is captured
            out = self.forward(ops, buf, True)
            self._replays[mode] = be.capture(lambda: self.forward(ops, buf, True))
            return out
        replay()
        return buf.logits_f32

    def replay_of(self, mode: str = "graph") -> Any:
        """The captured step of a graph mode (None before its first decode)."""
        return self._replays.get(mode)

    def decode_buffers(self) -> StepBuffers:
        """The decode step's static buffers (made on the first decode, for this batch)."""
        if self.dec is None:
            batch = len(self.seqs)
            self.dec = StepBuffers(self.be, self.cfg, batch, batch, self.max_pages)
        return self.dec

    def add_decode_ops(self, mode: str, ops: Any, graph: bool = False) -> None:
        """Another set of kernels for ``decode(mode=...)`` (e.g. flashinfer-python's); with
        ``graph``, also the mode ``f"{mode} graph"`` that replays a step captured with them."""
        self._ops[mode] = ops
        if graph:
            self._graph_of[f"{mode} graph"] = mode

    def start_over(self) -> None:
        """Free every sequence's pages (the buffers and graph stay)."""
        for s in self.seqs:
            self.alloc.free(s)
        self.seqs = []
