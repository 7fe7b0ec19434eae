"""Decode loops: prepared launches (rebinding after replans), CUDA-graph capture and replay
with replanning between replays, plan() refused during capture, the page-locked ring under
a GPU that lags behind, and plan/run on different streams. Against the numpy reference."""

from __future__ import annotations

import numpy as np
import pytest

import flashinfer_cy as fc
from flashinfer_cy.errors import PlanMismatchError, StreamCaptureError
from attention_io import dev, host, need, poison, rng, torch  # noqa: F401 (fixtures)
from attention_refs import assert_close, attention_ref, paged_batch, rand

D, HQ, HKV, PS = 128, 16, 4, 16
DT = "float16"


def _refs(batch, q64, window_left=-1, cap=0.0):
    out = np.zeros_like(q64)
    for i, n in enumerate(batch.kv_lens):
        ks, vs = batch.sequence(i)
        out[i] = attention_ref(q64[i:i + 1], ks, vs, window_left=window_left,
                               logits_soft_cap=cap)[0][0]
    return out


def _plan(w, batch, **kw):
    return w.plan(batch.indptr, batch.indices, batch.last_page_len, HQ, HKV, D, PS, **kw)


def _batch_in_pool(rng, lens, pool_k, pool_v, torch):
    """A random batch written into existing device caches (same pool, fresh contents)."""
    spare = pool_k.shape[0] - sum((n + PS - 1) // PS for n in lens)
    assert spare >= 0, (lens, pool_k.shape)
    b = paged_batch(rng, lens, PS, HKV, D, DT, spare_pages=spare)
    pool_k.copy_(dev(torch, b.k_cache, DT))
    pool_v.copy_(dev(torch, b.v_cache, DT))
    return b


def test_prepared_launch_rebinds_after_replan(torch, rng):
    need("batch_decode", DT)
    pool = 64
    k = torch.empty((pool, PS, HKV, D), dtype=torch.float16, device="cuda")
    v = torch.empty_like(k)
    w = fc.BatchDecodeWithPagedKVCache(float_workspace_bytes=32 << 20)
    b1 = _batch_in_pool(rng, [40, 3, 300, 16], k, v, torch)
    _plan(w, b1)
    q64 = rand(rng, (4, HQ, D), DT)
    q = dev(torch, q64, DT)
    out = poison(torch, (4, HQ, D), DT)
    step = w.prepare(q, (k, v), out)
    assert step.launch() is out
    assert_close(host(torch, out), _refs(b1, q64), DT, "prepared launch, first plan")

    # new lengths and page table, same batch: the next launch rebinds
    b2 = _batch_in_pool(rng, [1, 120, 17, 250], k, v, torch)
    _plan(w, b2)
    q64b = rand(rng, (4, HQ, D), DT)
    q.copy_(dev(torch, q64b, DT))  # same storage: the prepared pointers still hold
    out.fill_(float("nan"))
    step.launch()
    assert_close(host(torch, out), _refs(b2, q64b), DT, "prepared launch after replan")

    # repoint the output
    out2 = poison(torch, (4, HQ, D), DT)
    step.repoint(out=out2.data_ptr())
    assert step.launch() is None and step.out is None  # out is no longer what gets written
    assert_close(host(torch, out2), _refs(b2, q64b), DT, "prepared launch after repoint")

    # a plan for another batch size no longer fits the prepared tensors
    b3 = _batch_in_pool(rng, [5, 6, 7], k, v, torch)
    _plan(w, b3)
    with pytest.raises(PlanMismatchError, match="batch_size"):
        step.launch()


def test_prepared_launch_needs_new_prepare_for_other_variant(torch, rng):
    need("batch_decode", DT)
    need("batch_decode", DT, window_left=8, cap=20.0)
    batch = paged_batch(rng, [30, 60], PS, HKV, D, DT)
    w = fc.BatchDecodeWithPagedKVCache(float_workspace_bytes=16 << 20)
    _plan(w, batch)
    kv = (dev(torch, batch.k_cache, DT), dev(torch, batch.v_cache, DT))
    q64 = rand(rng, (2, HQ, D), DT)
    step = w.prepare(dev(torch, q64, DT), kv)
    step.launch()
    _plan(w, batch, window_left=8, logits_soft_cap=20.0)
    with pytest.raises(PlanMismatchError, match="prepare"):
        step.launch()
    step = w.prepare(dev(torch, q64, DT), kv)
    got = np.asarray(torch.from_dlpack(step.launch()).double().cpu())
    assert_close(got, _refs(batch, q64, 8, 20.0), DT, "re-prepared swa+cap launch")


@pytest.mark.parametrize("prepared", [False, True], ids=["run", "prepared"])
def test_cuda_graph_decode_replay_after_new_data_and_replan(torch, rng, prepared):
    """Capture one decode step, then change q, the KV contents and the plan (same batch);
    the replay must give what an eager run gives on the new inputs."""
    need("batch_decode", DT)
    pool, bs = 160, 5
    k = torch.empty((pool, PS, HKV, D), dtype=torch.float16, device="cuda")
    v = torch.empty_like(k)
    q = torch.empty((bs, HQ, D), dtype=torch.float16, device="cuda")
    out = torch.empty_like(q)
    w = fc.BatchDecodeWithPagedKVCache(use_cuda_graph=True, max_num_pages=pool,
                                       float_workspace_bytes=32 << 20)
    b1 = _batch_in_pool(rng, [10, 200, 33, 1, 64], k, v, torch)
    q64 = rand(rng, (bs, HQ, D), DT)
    q.copy_(dev(torch, q64, DT))
    _plan(w, b1)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up off the default stream, as torch advises
        step = w.prepare(q, (k, v), out, stream=side) if prepared else None
        (step.launch() if prepared else w.run(q, (k, v), out=out))
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    assert_close(host(torch, out), _refs(b1, q64), DT, "eager step before capture")

    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g, stream=side):
        if prepared:
            step.launch()
        else:
            w.run(q, (k, v), out=out)
    for round_ in range(2):
        b2 = _batch_in_pool(rng, [int(x) for x in rng.integers(1, 400, bs)], k, v, torch)
        q64 = rand(rng, (bs, HQ, D), DT)
        q.copy_(dev(torch, q64, DT))
        _plan(w, b2)  # same batch size: updates the captured buffers in place
        out.fill_(float("nan"))
        g.replay()
        torch.cuda.synchronize()
        assert_close(host(torch, out), _refs(b2, q64), DT,
                     f"graph replay {round_} after replan (lens {b2.kv_lens})")
        eager = fc.BatchDecodeWithPagedKVCache(float_workspace_bytes=32 << 20)
        _plan(eager, b2)
        ref = eager.run(q, (k, v))
        np.testing.assert_allclose(host(torch, out), np.asarray(torch.from_dlpack(ref).double().cpu()),
                                   rtol=2e-3, atol=2e-3, err_msg="graph replay vs eager run")

    with pytest.raises(ValueError, match="CUDA-graph"):  # batch size is frozen
        b3 = _batch_in_pool(rng, [5, 6], k, v, torch)
        _plan(w, b3)


def test_plan_during_capture_raises(torch, rng):
    need("batch_decode", DT)
    batch = paged_batch(rng, [10, 20], PS, HKV, D, DT)
    w = fc.BatchDecodeWithPagedKVCache(use_cuda_graph=True, max_num_pages=64,
                                       float_workspace_bytes=16 << 20)
    _plan(w, batch)
    g = torch.cuda.CUDAGraph()
    s = torch.cuda.Stream()
    with pytest.raises(StreamCaptureError, match="capture"):
        with torch.cuda.graph(g, stream=s):
            _plan(w, batch, stream=torch.cuda.current_stream())
    # nothing was corrupted: plan and run still work eagerly
    _plan(w, batch)
    q64 = rand(rng, (2, HQ, D), DT)
    out = w.run(dev(torch, q64, DT), (dev(torch, batch.k_cache, DT), dev(torch, batch.v_cache, DT)))
    assert_close(np.asarray(torch.from_dlpack(out).double().cpu()), _refs(batch, q64), DT,
                 "after the refused capture")


def test_pinned_ring_with_gpu_lagging_behind(torch, rng):
    """Eight plan+run pairs enqueued behind a long GPU sleep: every plan's H2D copy is still
    pending when the next plan runs on the host, so the page-locked mirrors must rotate (or
    wait) instead of being overwritten. Each run writes its own output."""
    need("batch_decode", DT)
    pool, bs = 128, 3
    k = torch.empty((pool, PS, HKV, D), dtype=torch.float16, device="cuda")
    v = torch.empty_like(k)
    # contents fixed, only page tables and lengths vary per step
    kc, vc = rand(rng, k.shape, DT), rand(rng, v.shape, DT)
    k.copy_(dev(torch, kc, DT))
    v.copy_(dev(torch, vc, DT))
    w = fc.BatchDecodeWithPagedKVCache(float_workspace_bytes=16 << 20, pinned_slots=3)
    q64 = rand(rng, (bs, HQ, D), DT)
    q = dev(torch, q64, DT)
    torch.cuda.synchronize()
    torch.cuda._sleep(200_000_000)  # ~0.1 s of GPU time ahead of everything below
    outs, batches = [], []
    for _ in range(8):
        lens = [int(x) for x in rng.integers(1, 300, bs)]
        pages = [(n + PS - 1) // PS for n in lens]
        idx = rng.permutation(pool)[:sum(pages)].astype(np.int32)
        indptr = np.concatenate([[0], np.cumsum(pages)]).astype(np.int32)
        last = np.array([n - (p - 1) * PS for n, p in zip(lens, pages)], dtype=np.int32)
        w.plan(indptr, idx, last, HQ, HKV, D, PS)
        outs.append(w.run(q, (k, v)))
        batches.append((lens, indptr, idx))
    torch.cuda.synchronize()
    assert w.pinned_ring_size == 3
    print(f"ring waits: {w.pinned_ring_waits}")
    for j, ((lens, indptr, idx), o) in enumerate(zip(batches, outs)):
        got = np.asarray(torch.from_dlpack(o).double().cpu())
        for i, n in enumerate(lens):
            pages = idx[indptr[i]:indptr[i + 1]]
            ks = kc[pages].reshape(-1, HKV, D)[:n]
            vs = vc[pages].reshape(-1, HKV, D)[:n]
            ref = attention_ref(q64[i:i + 1], ks, vs)[0][0]
            assert_close(got[i], ref, DT, f"step {j} request {i} (kv_len {n})")


def test_plan_and_run_on_different_streams(torch, rng):
    """plan() on the default stream while it is busy, run() on a side stream right away:
    the run must wait for the plan's copies; the next plan must wait for that run."""
    need("batch_decode", DT)
    w = fc.BatchDecodeWithPagedKVCache(float_workspace_bytes=16 << 20)
    b1 = paged_batch(rng, [50, 400], PS, HKV, D, DT)
    kv = (dev(torch, b1.k_cache, DT), dev(torch, b1.v_cache, DT))
    q64 = rand(rng, (2, HQ, D), DT)
    q = dev(torch, q64, DT)
    side = torch.cuda.Stream()
    torch.cuda.synchronize()
    torch.cuda._sleep(100_000_000)  # the plan's copy queues behind this
    _plan(w, b1)
    with torch.cuda.stream(side):
        o1 = w.run(q, kv)
        torch.cuda._sleep(100_000_000)  # and the next plan's copies must wait for this
    b2 = paged_batch(rng, [7, 90], PS, HKV, D, DT)
    _plan(w, b2)
    kv2 = (dev(torch, b2.k_cache, DT), dev(torch, b2.v_cache, DT))
    o2 = w.run(q, kv2)
    torch.cuda.synchronize()
    assert_close(np.asarray(torch.from_dlpack(o1).double().cpu()), _refs(b1, q64), DT,
                 "run on a side stream")
    assert_close(np.asarray(torch.from_dlpack(o2).double().cpu()), _refs(b2, q64), DT,
                 "replan after a side-stream run")
