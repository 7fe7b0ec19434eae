"""An fp8 (float8_e4m3fn) KV cache with float16/bfloat16 q (FlashInfer's FA2 variants with
``dtype_kv_e4m3``): batch decode, batch prefill (paged and ragged), single decode and single
prefill, against a float64 reference computed on the same e4m3-rounded keys and values.
Fresh random data every run; outputs start as NaN."""

from __future__ import annotations

import numpy as np
import pytest

import flashinfer_cy as fc
from flashinfer_cy.errors import PlanMismatchError
from attention_io import dev, host, need, poison, rng, torch  # noqa: F401 (fixtures)
from attention_refs import LSE_TOL, assert_close, attention_ref, paged_batch, rand

D, FP8 = 128, "float8_e4m3fn"
FP8_MAX = 440.0  # below e4m3fn's 448: nothing saturates to NaN


def fp8(torch, x64):
    """float64 numpy -> (CUDA float8_e4m3fn tensor, the float64 values it holds)."""
    t = torch.from_numpy(np.clip(x64, -FP8_MAX, FP8_MAX).astype(np.float32)).cuda()
    t8 = t.to(torch.float8_e4m3fn)
    return t8, t8.float().cpu().double().numpy()


def fp8_paged(torch, rng, lens, page_size, hkv, layout, dtype):
    batch = paged_batch(rng, lens, page_size, hkv, D, dtype, layout)
    k8, batch.k_cache = fp8(torch, batch.k_cache)
    v8, batch.v_cache = fp8(torch, batch.v_cache)
    return batch, k8, v8


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("layout", ["NHD", "HND"])
def test_batch_decode_fp8_kv(torch, rng, dtype, layout):
    need("batch_decode", dtype, kv_dtype=FP8)
    lens, hq, hkv, page = [33, 1, 48, 701, 17], 32, 8, 16
    batch, k8, v8 = fp8_paged(torch, rng, lens, page, hkv, layout, dtype)
    q64 = rand(rng, (len(lens), hq, D), dtype)
    w = fc.BatchDecodeWithPagedKVCache(layout, float_workspace_bytes=32 << 20)
    plan = w.plan(batch.indptr, batch.indices, batch.last_page_len, hq, hkv, D, page,
                  q_data_type=dtype, kv_data_type=FP8)
    assert plan.kv_dtype == FP8 and "dtype_kv_e4m3" in plan.uri
    out = poison(torch, (len(lens), hq, D), dtype)
    w.run(dev(torch, q64, dtype), (k8, v8), out=out)
    got = host(torch, out)
    for i in range(len(lens)):
        ks, vs = batch.sequence(i)
        ref, _ = attention_ref(q64[i:i + 1], ks, vs)
        assert_close(got[i], ref[0], dtype, f"request {i} kv_len {lens[i]} ({dtype} q, fp8 "
                                            f"KV, {layout})")
    # the plan is for fp8: a 16-bit cache is refused, naming it
    with pytest.raises(PlanMismatchError, match="k_cache"):
        w.run(dev(torch, q64, dtype), (dev(torch, batch.k_cache, dtype),
                                        dev(torch, batch.v_cache, dtype)), out=out)


def test_batch_prefill_paged_fp8_kv_causal(torch, rng):
    need("batch_prefill", "float16", kv_dtype=FP8)
    qo, kv, page, hq, hkv = [5, 1, 40], [70, 16, 40], 16, 16, 4
    batch, k8, v8 = fp8_paged(torch, rng, kv, page, hkv, "NHD", "float16")
    qo_indptr = np.concatenate([[0], np.cumsum(qo)]).astype(np.int32)
    q64 = rand(rng, (int(qo_indptr[-1]), hq, D), "float16")
    w = fc.BatchPrefillWithPagedKVCache(float_workspace_bytes=32 << 20)  # "auto" -> FA2
    plan = w.plan(qo_indptr, batch.indptr, batch.indices, batch.last_page_len, hq, hkv, D,
                  page, causal=True, kv_data_type=FP8)
    assert plan.backend == "fa2" and plan.kv_dtype == FP8
    out = poison(torch, (int(qo_indptr[-1]), hq, D), "float16")
    w.run(dev(torch, q64, "float16"), (k8, v8), out=out)
    got = host(torch, out)
    for i in range(len(qo)):
        ks, vs = batch.sequence(i)
        rows = slice(qo_indptr[i], qo_indptr[i + 1])
        ref, _ = attention_ref(q64[rows], ks, vs, causal=True)
        assert_close(got[rows], ref, "float16", f"request {i} ({qo[i]} rows, {kv[i]} keys), "
                                                f"paged fp8 KV")


def test_batch_prefill_ragged_fp8_kv(torch, rng):
    need("batch_prefill", "bfloat16", kv_dtype=FP8)
    qo, kv, hq, hkv = [3, 17, 1], [40, 17, 9], 8, 2
    qo_indptr = np.concatenate([[0], np.cumsum(qo)]).astype(np.int32)
    kv_indptr = np.concatenate([[0], np.cumsum(kv)]).astype(np.int32)
    q64 = rand(rng, (int(qo_indptr[-1]), hq, D), "bfloat16")
    k8, k64 = fp8(torch, rand(rng, (int(kv_indptr[-1]), hkv, D), "float16"))
    v8, v64 = fp8(torch, rand(rng, (int(kv_indptr[-1]), hkv, D), "float16"))
    w = fc.BatchPrefillWithRaggedKVCache(backend="fa2", float_workspace_bytes=32 << 20)
    w.plan(qo_indptr, kv_indptr, hq, hkv, D, q_data_type="bfloat16", kv_data_type=FP8)
    out = poison(torch, (int(qo_indptr[-1]), hq, D), "bfloat16")
    w.run(dev(torch, q64, "bfloat16"), k8, v8, out=out)
    got = host(torch, out)
    for i in range(len(qo)):
        rows, keys = slice(qo_indptr[i], qo_indptr[i + 1]), slice(kv_indptr[i], kv_indptr[i + 1])
        ref, _ = attention_ref(q64[rows], k64[keys], v64[keys])
        assert_close(got[rows], ref, "bfloat16", f"request {i}, ragged fp8 KV")


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_single_decode_fp8_kv(torch, rng, dtype):
    need("single_decode", dtype, kv_dtype=FP8)
    kv_len, hq, hkv = 777, 32, 8
    k8, k64 = fp8(torch, rand(rng, (kv_len, hkv, D), "float16"))
    v8, v64 = fp8(torch, rand(rng, (kv_len, hkv, D), "float16"))
    q64 = rand(rng, (hq, D), dtype)
    out, lse = poison(torch, (hq, D), dtype), poison(torch, (hq,), "float32")
    fc.single_decode(dev(torch, q64, dtype), k8, v8, out=out, lse=lse)
    ref, ref_lse = attention_ref(q64[None], k64, v64)
    assert_close(host(torch, out), ref[0], dtype, f"single decode, {dtype} q, fp8 KV")
    assert_close(host(torch, lse), ref_lse[0], dtype, "single decode lse", LSE_TOL)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_single_prefill_fp8_kv_causal_hnd(torch, rng, dtype):
    need("single_prefill", dtype, kv_dtype=FP8)
    qo_len, kv_len, hq, hkv = 37, 300, 16, 4
    k8, k64 = fp8(torch, rand(rng, (hkv, kv_len, D), "float16"))  # HND
    v8, v64 = fp8(torch, rand(rng, (hkv, kv_len, D), "float16"))
    q64 = rand(rng, (qo_len, hq, D), dtype)
    out = poison(torch, (qo_len, hq, D), dtype)
    fc.single_prefill(dev(torch, q64, dtype), k8, v8, causal=True, kv_layout="HND",
                      out=out)  # "auto": fp8 KV runs on FA2
    ref, _ = attention_ref(q64, k64.transpose(1, 0, 2), v64.transpose(1, 0, 2), causal=True)
    assert_close(host(torch, out), ref, dtype, f"single prefill, causal, HND fp8 KV, {dtype} q")
