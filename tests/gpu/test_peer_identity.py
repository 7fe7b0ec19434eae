"""RMSNorm, batch decode and batch prefill (paged and ragged, FA2 and FA3) bit for bit against
flashinfer-python calling the same modules (tests/gpu/peer.py): a differing bit means a wrong
argument. The float64 checks of these families are in test_norm.py, test_attention_decode.py
and test_attention_prefill.py; this file is the release check of issue 19, run on 0.6.3's
modules and, in tools/gpu_session.sh's 0.7.4 pass, on 0.7.4's against 0.7.4's
flashinfer-python. Both sides get the same workspace size and the same plan inputs; outputs
start NaN on both sides. Random data each run (seed printed)."""

from __future__ import annotations

import numpy as np
import pytest

import flashinfer_cy as fc
from attention_io import (DTYPES, dev, need, poison, prefill_lens,  # noqa: F401
                          prefill_matrix, rng, torch)  # (rng, torch: fixtures)
from attention_refs import paged_batch, rand
from gpu_env import require_module
from peer import assert_bits_equal, flashinfer_peer

D = 128
WORKSPACE = 32 << 20


def _peer_workspace(torch):
    return torch.empty(WORKSPACE, dtype=torch.uint8, device="cuda")


def _dev_i32(torch, a):
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.int32)).cuda()


# ------------------------------------------------------------------------------ RMSNorm
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["rmsnorm", "gemma_rmsnorm", "fused_add_rmsnorm",
                                  "gemma_fused_add_rmsnorm"])
def test_norm_matches_the_peer(torch, rng, monkeypatch, dtype, name):
    require_module("norm")
    fi = flashinfer_peer()
    # 0.7.x runs a CuTe-DSL kernel unless told to use the CUDA (TVM-FFI) module we share
    monkeypatch.setattr(fi.norm, "_USE_CUDA_NORM", True, raising=False)
    rows, hidden, eps = 37, 4096, 1e-5
    x = dev(torch, rand(rng, (rows, hidden), dtype), dtype)
    w = dev(torch, rand(rng, (hidden,), dtype), dtype)
    ours_fn, peer_fn = getattr(fc, name), getattr(fi.norm, name)
    if "fused_add" in name:  # in place on input and residual
        r = dev(torch, rand(rng, (rows, hidden), dtype), dtype)
        xs, rs = (x.clone(), x.clone()), (r.clone(), r.clone())
        ours_fn(xs[0], rs[0], w, eps)
        peer_fn(xs[1], rs[1], w, eps)
        torch.cuda.synchronize()
        assert_bits_equal(xs[0], xs[1], f"{name} {dtype} input (normed)")
        assert_bits_equal(rs[0], rs[1], f"{name} {dtype} residual (sum)")
        assert not torch.equal(xs[0], x)  # it did write
    else:
        o0, o1 = poison(torch, (rows, hidden), dtype), poison(torch, (rows, hidden), dtype)
        ours_fn(x, w, eps, out=o0)
        peer_fn(x, w, eps, out=o1)
        torch.cuda.synchronize()
        assert not torch.isnan(o0).any()
        assert_bits_equal(o0, o1, f"{name} {dtype}")


# ------------------------------------------------------------------------- batch decode
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["NHD", "HND"])
@pytest.mark.parametrize("hq,hkv,page_size", [(32, 8, 16), (16, 16, 7)], ids=["gqa4-p16",
                                                                               "mha-p7"])
def test_batch_decode_matches_the_peer(torch, rng, dtype, layout, hq, hkv, page_size):
    need("batch_decode", dtype)
    fi = flashinfer_peer()
    lens = [33, 1, 3 * page_size, 701, page_size + 1, 2048]  # no empty request: undefined
    b = paged_batch(rng, lens, page_size, hkv, D, dtype, layout)
    q = dev(torch, rand(rng, (len(lens), hq, D), dtype), dtype)
    k, v = dev(torch, b.k_cache, dtype), dev(torch, b.v_cache, dtype)

    w = fc.BatchDecodeWithPagedKVCache(layout, float_workspace_bytes=WORKSPACE)
    w.plan(b.indptr, b.indices, b.last_page_len, hq, hkv, D, page_size, q_data_type=dtype)
    out, lse = poison(torch, (len(lens), hq, D), dtype), poison(torch, (len(lens), hq), "float32")
    w.run(q, (k, v), out=out, lse=lse)

    tdt = getattr(torch, dtype)
    pw = fi.BatchDecodeWithPagedKVCacheWrapper(_peer_workspace(torch), layout)
    pw.plan(_dev_i32(torch, b.indptr), _dev_i32(torch, b.indices),
            _dev_i32(torch, b.last_page_len), hq, hkv, D, page_size, q_data_type=tdt,
            kv_data_type=tdt)
    p_out, p_lse = pw.run(q, (k, v), return_lse=True)
    torch.cuda.synchronize()
    ctx = f"decode {dtype} {layout} heads {hq}/{hkv} page {page_size}"
    assert not torch.isnan(out).any()
    assert_bits_equal(out, p_out, ctx + " out")
    assert_bits_equal(lse, p_lse, ctx + " lse")


# ------------------------------------------------------------------------ batch prefill
HQ, HKV = 16, 4
QO_LENS = [5, 0, 17, 1, 40, 130]
PREFIX = [12, 9, 0, 30, 3, 400]


def _check_prefill(torch, out, lse, p_out, p_lse, ctx):
    torch.cuda.synchronize()
    assert not torch.isnan(out).any(), ctx
    assert_bits_equal(out, p_out, ctx + " out")
    assert_bits_equal(lse, p_lse, ctx + " lse")


@prefill_matrix
def test_batch_prefill_paged_matches_the_peer(torch, rng, dtype, layout, causal, backend):
    need("batch_prefill", dtype, backend=backend)
    fi = flashinfer_peer()
    qo, kv, qo_indptr = prefill_lens(QO_LENS, PREFIX)
    b = paged_batch(rng, list(kv), 16, HKV, D, dtype, layout)
    rows = int(qo_indptr[-1])
    q = dev(torch, rand(rng, (rows, HQ, D), dtype), dtype)
    k, v = dev(torch, b.k_cache, dtype), dev(torch, b.v_cache, dtype)

    w = fc.BatchPrefillWithPagedKVCache(layout, backend=backend, float_workspace_bytes=WORKSPACE)
    plan = w.plan(qo_indptr, b.indptr, b.indices, b.last_page_len, HQ, HKV, D, 16,
                  causal=causal, q_data_type=dtype)
    assert plan.backend == backend
    out, lse = poison(torch, (rows, HQ, D), dtype), poison(torch, (rows, HQ), "float32")
    w.run(q, (k, v), out=out, lse=lse)

    tdt = getattr(torch, dtype)
    pw = fi.BatchPrefillWithPagedKVCacheWrapper(_peer_workspace(torch), layout, backend=backend)
    pw.plan(_dev_i32(torch, qo_indptr), _dev_i32(torch, b.indptr), _dev_i32(torch, b.indices),
            _dev_i32(torch, b.last_page_len), HQ, HKV, D, 16, causal=causal, q_data_type=tdt,
            kv_data_type=tdt)
    p_out, p_lse = pw.run(q, (k, v), return_lse=True)
    _check_prefill(torch, out, lse, p_out, p_lse,
                   f"paged prefill {backend} {dtype} {layout} causal={causal}")


@prefill_matrix
def test_batch_prefill_ragged_matches_the_peer(torch, rng, dtype, layout, causal, backend):
    need("batch_prefill", dtype, backend=backend)
    fi = flashinfer_peer()
    qo, kv, qo_indptr = prefill_lens(QO_LENS, PREFIX)
    kv_indptr = np.concatenate([[0], np.cumsum(kv)]).astype(np.int32)
    rows, kv_rows = int(qo_indptr[-1]), int(kv_indptr[-1])
    q = dev(torch, rand(rng, (rows, HQ, D), dtype), dtype)
    shape = (kv_rows, HKV, D) if layout == "NHD" else (HKV, kv_rows, D)
    k, v = (dev(torch, rand(rng, shape, dtype), dtype) for _ in range(2))

    w = fc.BatchPrefillWithRaggedKVCache(layout, backend=backend,
                                         float_workspace_bytes=WORKSPACE)
    plan = w.plan(qo_indptr, kv_indptr, HQ, HKV, D, causal=causal, q_data_type=dtype)
    assert plan.backend == backend
    out, lse = poison(torch, (rows, HQ, D), dtype), poison(torch, (rows, HQ), "float32")
    w.run(q, k, v, out=out, lse=lse)

    tdt = getattr(torch, dtype)
    peer_layout, pk, pv = layout, k, v
    if backend == "fa3" and layout == "HND":
        # flashinfer-python's FA3 ragged run reads k.size(1) as the KV heads whatever the
        # layout (0.6.3 and 0.7.4 batch_prefill_sm90.cu): HND k/v make its group size 0 and
        # the process dies of SIGFPE (seen on the H100). Ours passes HND as an NHD view;
        # the peer gets the same view, declared NHD.
        peer_layout, pk, pv = "NHD", k.transpose(0, 1), v.transpose(0, 1)
    pw = fi.BatchPrefillWithRaggedKVCacheWrapper(_peer_workspace(torch), peer_layout,
                                                 backend=backend)
    pw.plan(_dev_i32(torch, qo_indptr), _dev_i32(torch, kv_indptr), HQ, HKV, D, causal=causal,
            q_data_type=tdt, kv_data_type=tdt)
    p_out, p_lse = pw.run(q, pk, pv, return_lse=True)
    _check_prefill(torch, out, lse, p_out, p_lse,
                   f"ragged prefill {backend} {dtype} {layout} causal={causal}")
