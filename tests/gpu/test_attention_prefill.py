"""Prefill attention on the GPU against a float64 numpy reference: single_prefill and the
batch prefill wrappers over ragged and paged KV, FA2 and FA3 (``_sm90``), causal (aligned
bottom-right when qo_len < kv_len) or not, GQA, both layouts, ragged lengths with an empty
request, shuffled page tables, LSE. Random data each run (seed printed); outputs start NaN."""

from __future__ import annotations

import gc
import numpy as np
import pytest

import flashinfer_cy as fc
from attention_io import (DTYPES, dev, host, need, poison, prefill_lens,  # noqa: F401
                          prefill_matrix, rng, torch)  # (rng, torch: fixtures)
from attention_refs import LSE_TOL, assert_close, attention_ref, paged_batch, rand

D = 128
HQ, HKV = 16, 4
QO_LENS = [5, 0, 17, 1, 40]
PREFIX = [12, 9, 0, 30, 3]        # kv_len = qo_len + prefix: causal rows align bottom-right
BACKENDS = ["fa2", "fa3"]


def _check_rows(torch, out, lse, q64, qo_indptr, seqs, dtype, causal, ctx, window_left=-1,
                cap=0.0):
    got, got_lse = host(torch, out), host(torch, lse)
    for i, (ks, vs) in enumerate(seqs):
        a, b = qo_indptr[i], qo_indptr[i + 1]
        if a == b:
            continue
        ref, ref_lse = attention_ref(q64[a:b], ks, vs, causal=causal, window_left=window_left,
                                     logits_soft_cap=cap)
        what = f"{ctx} request {i} (qo_len {b - a}, kv_len {ks.shape[0]})"
        assert_close(got[a:b], ref, dtype, "out " + what)
        assert_close(got_lse[a:b], ref_lse, dtype, "lse " + what, LSE_TOL)


def _lens():
    return prefill_lens(QO_LENS, PREFIX)


def _run_checked(torch, w, plan, uri, q64, kv_args, qo_indptr, seqs, dtype, causal, ctx):
    assert plan.uri == uri, (plan.uri, uri)
    rows = q64.shape[0]
    out = poison(torch, (rows, HQ, D), dtype)
    lse = torch.full((rows, HQ), float("nan"), dtype=torch.float32, device="cuda")
    w.run(dev(torch, q64, dtype), *kv_args, out=out, lse=lse)
    _check_rows(torch, out, lse, q64, qo_indptr, seqs, dtype, causal, ctx)


@prefill_matrix
def test_batch_prefill_ragged(torch, rng, dtype, layout, causal, backend):
    uri = need("batch_prefill", dtype, backend=backend)
    qo, kv, qo_indptr = _lens()
    kv_indptr = np.concatenate([[0], np.cumsum(kv)]).astype(np.int32)
    k64, v64 = (rand(rng, (int(kv_indptr[-1]), HKV, D), dtype) for _ in range(2))
    lay = (lambda x: x) if layout == "NHD" else (lambda x: x.transpose(1, 0, 2))
    w = fc.BatchPrefillWithRaggedKVCache(layout, backend=backend, float_workspace_bytes=32 << 20)
    plan = w.plan(qo_indptr, kv_indptr, HQ, HKV, D, causal=causal, q_data_type=dtype)
    seqs = [(k64[kv_indptr[i]:kv_indptr[i + 1]], v64[kv_indptr[i]:kv_indptr[i + 1]])
            for i in range(len(qo))]
    _run_checked(torch, w, plan, uri, rand(rng, (int(qo_indptr[-1]), HQ, D), dtype),
                 (dev(torch, lay(k64), dtype), dev(torch, lay(v64), dtype)), qo_indptr, seqs,
                 dtype, causal, f"ragged {backend} {dtype} {layout} causal={causal}")


@prefill_matrix
def test_batch_prefill_paged(torch, rng, dtype, layout, causal, backend):
    uri = need("batch_prefill", dtype, backend=backend)
    qo, kv, qo_indptr = _lens()
    batch = paged_batch(rng, list(kv), 16, HKV, D, dtype, layout)
    w = fc.BatchPrefillWithPagedKVCache(layout, backend=backend, float_workspace_bytes=32 << 20)
    plan = w.plan(qo_indptr, batch.indptr, batch.indices, batch.last_page_len, HQ, HKV, D, 16,
                  causal=causal, q_data_type=dtype)
    seqs = [batch.sequence(i) for i in range(len(qo))]
    _run_checked(torch, w, plan, uri, rand(rng, (int(qo_indptr[-1]), HQ, D), dtype),
                 ((dev(torch, batch.k_cache, dtype), dev(torch, batch.v_cache, dtype)),),
                 qo_indptr, seqs, dtype, causal, f"paged {backend} {dtype} {layout} causal={causal}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_prefill_paged_device_page_table_page_size_1(torch, rng, backend):
    """Page table handed over as a CUDA int32 tensor (read in place by run; the local name
    is dropped before run(): the Plan must keep the tensor alive)."""
    need("batch_prefill", "float16", backend=backend)
    qo, kv, qo_indptr = _lens()
    batch = paged_batch(rng, list(kv), 1, HKV, D, "float16")
    q64 = rand(rng, (int(qo_indptr[-1]), HQ, D), "float16")
    w = fc.BatchPrefillWithPagedKVCache(backend=backend, float_workspace_bytes=32 << 20)
    indices = torch.from_numpy(batch.indices).cuda()
    w.plan(qo_indptr, batch.indptr, indices, batch.last_page_len, HQ, HKV, D, 1, causal=True)
    del indices
    gc.collect()
    torch.cuda.empty_cache()
    _ = torch.full((len(batch.indices) + 64,), -1, dtype=torch.int32, device="cuda")
    out, lse = w.run(dev(torch, q64, "float16"), (dev(torch, batch.k_cache, "float16"),
                                                  dev(torch, batch.v_cache, "float16")),
                     return_lse=True)
    seqs = [batch.sequence(i) for i in range(len(qo))]
    _check_rows(torch, torch.from_dlpack(out), torch.from_dlpack(lse), q64, qo_indptr, seqs,
                "float16", True, f"paged {backend} page_size 1, device page table")


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_prefill_window_soft_cap(torch, rng, backend):
    """Needs the swa+cap batch-prefill module (skips with the build command otherwise)."""
    need("batch_prefill", "float16", window_left=20, cap=25.0, backend=backend)
    qo, kv, qo_indptr = _lens()
    kv_indptr = np.concatenate([[0], np.cumsum(kv)]).astype(np.int32)
    q64 = rand(rng, (int(qo_indptr[-1]), HQ, D), "float16")
    k64 = rand(rng, (int(kv_indptr[-1]), HKV, D), "float16")
    v64 = rand(rng, (int(kv_indptr[-1]), HKV, D), "float16")
    w = fc.BatchPrefillWithRaggedKVCache(backend=backend, float_workspace_bytes=32 << 20)
    w.plan(qo_indptr, kv_indptr, HQ, HKV, D, causal=True, window_left=20, logits_soft_cap=25.0)
    out, lse = w.run(*(dev(torch, x, "float16") for x in (q64, k64, v64)), return_lse=True)
    seqs = [(k64[kv_indptr[i]:kv_indptr[i + 1]], v64[kv_indptr[i]:kv_indptr[i + 1]])
            for i in range(len(qo))]
    _check_rows(torch, torch.from_dlpack(out), torch.from_dlpack(lse), q64, qo_indptr, seqs,
                "float16", True, f"ragged {backend} window 20 cap 25", window_left=20, cap=25.0)


def test_auto_backend_matches_upstream_rule(torch):
    need("batch_prefill", "float16")
    w = fc.BatchPrefillWithRaggedKVCache(float_workspace_bytes=16 << 20)
    plan = w.plan(np.array([0, 4]), np.array([0, 9]), 8, 8, D)
    sm90 = torch.cuda.get_device_capability()[0] == 9
    from gpu_env import module_unavailable_reason
    fa3_uri = plan.uri if plan.backend == "fa3" else plan.uri + "_sm90"
    expect = "fa3" if sm90 and module_unavailable_reason(fa3_uri) is None else "fa2"
    assert plan.backend == expect, (plan, sm90)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["NHD", "HND"])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_single_prefill(torch, rng, dtype, layout, causal, backend):
    """FA3 reads the KV length and heads from dims 0 and 1 whatever the layout: HND must
    reach it as an NHD-shaped view (a plain HND k would mean 2 keys and 100 heads here)."""
    need("single_prefill", dtype, backend=backend)
    qo_len, kv_len, hq, hkv = 37, 100, 16, 4
    q64 = rand(rng, (qo_len, hq, D), dtype)
    k64, v64 = rand(rng, (kv_len, hkv, D), dtype), rand(rng, (kv_len, hkv, D), dtype)
    lay = (lambda x: x) if layout == "NHD" else (lambda x: x.transpose(1, 0, 2))
    out = poison(torch, (qo_len, hq, D), dtype)
    _, lse = fc.single_prefill(dev(torch, q64, dtype), dev(torch, lay(k64), dtype),
                               dev(torch, lay(v64), dtype), causal=causal, kv_layout=layout,
                               out=out, return_lse=True, backend=backend)
    ref, ref_lse = attention_ref(q64, k64, v64, causal=causal)
    ctx = f"single_prefill {backend} {dtype} {layout} causal={causal}"
    assert_close(host(torch, out), ref, dtype, ctx)
    assert_close(np.asarray(torch.from_dlpack(lse).double().cpu()), ref_lse, dtype,
                 "lse " + ctx, LSE_TOL)


def test_single_prefill_fa3_is_reported_or_works(torch, rng):
    """The prebuilt wheel has no FA3 single prefill: asking for it names the URI and the
    build command; if it was built locally, it must be right."""
    hq, n = 8, 64
    q64 = rand(rng, (n, hq, D), "float16")
    args = [dev(torch, q64, "float16")] * 3
    try:
        out = fc.single_prefill(*args, causal=True, backend="fa3")
    except fc.KernelNotFoundError as exc:
        msg = str(exc)
        assert "_sm90" in msg and "not in the prebuilt" in msg
        assert "python tools/build_kernels.py --out .kernels single_prefill" in msg
        return
    ref, _ = attention_ref(q64, q64, q64, causal=True)
    assert_close(np.asarray(torch.from_dlpack(out).double().cpu()), ref, "float16", "fa3 single")
