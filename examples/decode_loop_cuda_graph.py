"""A decode loop captured once in a CUDA graph and replayed every step, with the batch's page
table replanned between replays. Per layer of a toy decoder (random weights, real shapes):

    rmsnorm -> q/k/v projections -> rope (q, k in place) -> append_paged_kv_cache
            -> batch decode attention -> o projection -> fused_add_rmsnorm
            -> gate/up projection -> silu_and_mul -> down projection -> fused_add_rmsnorm

then the LM head and a top-k/top-p sampler. The sampler is a prepared launch *outside* the
graph: FlashInfer 0.6.3 takes the philox seed and offset as scalars, so a captured sampler
would replay the same random numbers every step; ``PreparedCall.set(philox_offset=...)``
moves them on per step for the cost of one GIL-free call.

The rules that make this work (docs/api.md, "CUDA graphs"):

* the wrapper is built with ``use_cuda_graph=True`` and ``max_num_pages``: its buffers never
  move, so a replay reads whatever the latest ``plan()`` wrote there;
* ``plan()`` runs on the host *between* replays, on the stream the graph is replayed on
  (here torch's current stream); inside a capture it raises ``StreamCaptureError``;
* every tensor the graph touches is a static buffer: new data is copied into it before
  each replay (the token's hidden state, the append positions and page table);
* the captured calls are given the capture stream explicitly (``stream=``), which also
  works with PyTorch versions whose tensors do not announce their current stream.

Needs a CUDA GPU, torch, and the ``norm``, ``page``, ``rope``, ``silu_and_mul`` and
batch-decode kernel modules (float16, head_dim 128: all in the prebuilt wheel).

    python examples/decode_loop_cuda_graph.py
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import torch

import flashinfer_cy as fc
from _reference import check, decode_attention_ref

LAYERS, BATCH, STEPS = 4, 8, 16
HQ, HKV, D, PAGE = 32, 8, 128, 16
HIDDEN = HQ * D
INTER = 2 * HIDDEN  # the MLP's intermediate size
VOCAB = 32000
PAGES_PER_REQ = 64  # each request owns a fixed range of pages (a toy allocator)
POOL = BATCH * PAGES_PER_REQ
I32 = npt.NDArray[np.int32]


def page_table(lens: I32) -> tuple[I32, I32, I32, list[I32]]:
    """(kv_indptr, kv_indices, kv_last_page_len, pages of each request) for these lengths."""
    pages = [np.arange(b * PAGES_PER_REQ, b * PAGES_PER_REQ + (int(n) + PAGE - 1) // PAGE,
                       dtype=np.int32) for b, n in enumerate(lens)]
    indptr = np.zeros(BATCH + 1, dtype=np.int32)
    indptr[1:] = np.cumsum([len(p) for p in pages])
    indices = np.concatenate(pages).astype(np.int32)
    last = (lens - (indptr[1:] - indptr[:-1] - 1) * PAGE).astype(np.int32)
    return indptr, indices, last, pages


def main() -> None:
    if not torch.cuda.is_available():
        raise SystemExit("this example needs a CUDA GPU")
    torch.manual_seed(0)
    dev, f16 = "cuda", torch.float16

    def rand(*shape: int, scale: float = 1.0) -> Any:
        return (torch.randn(*shape, device=dev) * scale).to(f16)

    # Weights, one KV cache per layer ([pages, 2, page, Hkv, D]: k and v in one tensor).
    w_in, w_post = rand(LAYERS, HIDDEN), rand(LAYERS, HIDDEN)
    wk = rand(LAYERS, HIDDEN, HKV * D, scale=HIDDEN ** -0.5)
    wv = rand(LAYERS, HIDDEN, HKV * D, scale=HIDDEN ** -0.5)
    wo = rand(LAYERS, HIDDEN, HIDDEN, scale=HIDDEN ** -0.5)
    w_gate_up = rand(LAYERS, HIDDEN, 2 * INTER, scale=HIDDEN ** -0.5)
    w_down = rand(LAYERS, INTER, HIDDEN, scale=INTER ** -0.5)
    w_mlp = rand(LAYERS, HIDDEN)
    w_head = rand(HIDDEN, VOCAB, scale=HIDDEN ** -0.5)
    kv = rand(LAYERS, POOL, 2, PAGE, HKV, D)

    # Static buffers: everything the graph reads or writes.
    h = torch.zeros(BATCH, HIDDEN, device=dev, dtype=f16)         # layer input / output
    residual = torch.zeros_like(h)
    x = torch.empty_like(h)                                        # normed; q is a view
    k_new = torch.empty(BATCH, HKV, D, device=dev, dtype=f16)
    v_new = torch.empty_like(k_new)
    attn = torch.empty(BATCH, HQ, D, device=dev, dtype=f16)
    delta = torch.empty_like(h)
    gate_up = torch.empty(BATCH, 2 * INTER, device=dev, dtype=f16)
    act = torch.empty(BATCH, INTER, device=dev, dtype=f16)
    logits16 = torch.empty(BATCH, VOCAB, device=dev, dtype=f16)
    logits = torch.empty(BATCH, VOCAB, device=dev, dtype=torch.float32)  # the sampler's input
    tokens = torch.empty(BATCH, device=dev, dtype=torch.int32)
    batch_indices = torch.arange(BATCH, device=dev, dtype=torch.int32)  # one token each
    positions = torch.zeros(BATCH, device=dev, dtype=torch.int32)
    kv_indptr = torch.zeros(BATCH + 1, device=dev, dtype=torch.int32)
    kv_indices = torch.zeros(POOL, device=dev, dtype=torch.int32)      # capacity: the pool
    kv_last = torch.zeros(BATCH, device=dev, dtype=torch.int32)

    wrapper = fc.BatchDecodeWithPagedKVCache("NHD", use_cuda_graph=True, max_num_pages=POOL)

    def decode_step() -> None:
        s = torch.cuda.current_stream()  # the capture stream while capturing
        residual.copy_(h)
        for layer in range(LAYERS):
            fc.rmsnorm(h, w_in[layer], out=x, stream=s)
            q = x.view(BATCH, HQ, D)
            torch.matmul(x, wk[layer], out=k_new.view(BATCH, HKV * D))
            torch.matmul(x, wv[layer], out=v_new.view(BATCH, HKV * D))
            # the new token's position is positions[b]: rotate q and k where they lie
            fc.apply_rope_pos_ids_inplace(q, k_new, positions, stream=s)
            fc.append_paged_kv_cache(k_new, v_new, batch_indices, positions,
                                     kv[layer][:, 0], kv[layer][:, 1], kv_indices, kv_indptr,
                                     kv_last, "NHD", stream=s)
            wrapper.run(q, kv[layer], out=attn, stream=s)
            torch.matmul(attn.view(BATCH, HIDDEN), wo[layer], out=delta)
            fc.fused_add_rmsnorm(delta, residual, w_post[layer], stream=s)  # residual += delta
            torch.matmul(delta, w_gate_up[layer], out=gate_up)
            fc.silu_and_mul(gate_up, out=act, stream=s)
            torch.matmul(act, w_down[layer], out=delta)
            fc.fused_add_rmsnorm(delta, residual, w_mlp[layer], stream=s)  # residual += mlp
            h.copy_(delta)
        torch.matmul(h, w_head, out=logits16)  # LM head (h is the final-normed hidden state)
        logits.copy_(logits16)

    rng = np.random.default_rng(0)
    lens = rng.integers(1, PAGES_PER_REQ * PAGE // 2, BATCH).astype(np.int32)  # prompt lengths

    def prepare_step() -> list[I32]:
        """Host side of one step: the new token goes at position lens-1 (lens already
        counts it); copy the append metadata, replan the decode on the replay stream."""
        indptr, indices, last, pages = page_table(lens)
        positions.copy_(torch.from_numpy(lens - 1))
        kv_indptr.copy_(torch.from_numpy(indptr))
        kv_indices[:indices.size].copy_(torch.from_numpy(indices))
        kv_last.copy_(torch.from_numpy(last))
        wrapper.plan(indptr, indices, last, HQ, HKV, D, PAGE, q_data_type="float16",
                     stream=torch.cuda.current_stream())
        h.copy_(torch.randn(BATCH, HIDDEN, device=dev).to(f16))  # the next token's embedding
        return pages

    # Warm up eagerly on a side stream (as torch advises before capturing), then capture.
    lens += 1
    prepare_step()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        decode_step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        decode_step()

    # The sampler: checked and packed once; each step moves the philox offset on (by 4 per
    # row, as flashinfer-python's generator would) and launches it right after the replay.
    sampler = fc.prepare(fc.top_k_top_p_sampling_from_logits, logits, 50, 0.9, seed=2024,
                         offset=0, out=tokens)
    drawn = []
    for step in range(STEPS):
        lens += 1
        pages = prepare_step()
        graph.replay()
        sampler.set(philox_offset=4 * BATCH * step)
        sampler.launch()
        drawn.append(tokens.clone())
    torch.cuda.synchronize()
    assert all(((t >= 0) & (t < VOCAB)).all() for t in drawn), "a token id out of range"
    print("tokens of the last step:", drawn[-1].tolist())

    # The last layer's attention of the last step against a float64 reference.
    k_last, v_last = kv[LAYERS - 1][:, 0].float().cpu(), kv[LAYERS - 1][:, 1].float().cpu()
    want = decode_attention_ref(x.view(BATCH, HQ, D).float().cpu(), k_last, v_last, pages,
                                [int(n) for n in lens])
    check(f"decode attention after {STEPS} graph replays", attn.float().cpu(), want)
    print("final KV lengths:", lens.tolist())


if __name__ == "__main__":
    main()
