"""Attention APIs on a machine without a GPU: every bad plan()/single-op argument raises the
named TypeError/ValueError before a kernel module is loaded or CUDA is touched (the
``no_cuda`` fixture turns either into a ``TouchedCuda`` failure), and every good one gets as
far as that point. Also: URI naming against tools/kernel_uris.py (the builder), the wheel's
variant grid, and the ABI tables against FlashInfer 0.6.3's bindings and doc §6."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import flashinfer_cy as fc
from flashinfer_cy._core import runtime
from flashinfer_cy.kernels import attention_args, attention_uri
from flashinfer_cy.kernels.attention import SIGNATURES

ROOT = Path(__file__).resolve().parents[2]
PTR = 0x7F0000000000  # 64-byte aligned, never dereferenced
D = 128


class TouchedCuda(AssertionError):
    """Validation let the call through to the module loader or the CUDA runtime."""


@pytest.fixture(autouse=True)
def no_cuda(monkeypatch):
    def refuse(*args, **kwargs):
        raise TouchedCuda("reached the kernel module / CUDA runtime")

    # Once an attention module is loaded in this process (GPU tests that ran first), the
    # wrappers' cached bindings never reach load_module again: this guard could not see a
    # kernel call coming. `pytest tests` runs tests/cpu first; other orders skip here.
    loaded = [k[1] for k in runtime._modules if isinstance(k, tuple) and k[0] == "uri"
              and k[1].startswith(("batch_", "single_"))]
    if loaded:
        pytest.skip(f"attention modules already loaded in this process ({loaded[0]}, ...): "
                    f"run tests/cpu before tests/gpu, or on its own")
    monkeypatch.setattr(runtime, "load_module", refuse)
    monkeypatch.setattr(runtime, "_load_cudart", refuse)


def T(shape, dtype="float16", strides=None, offset=0):
    return fc.TensorDesc(PTR + offset, shape, dtype, strides=strides)


def reaches_cuda(call):
    with pytest.raises(TouchedCuda):
        call()


def raises(call, exc, words):
    with pytest.raises(exc, match=words):
        call()


# ------------------------------------------------------------------------------ decode plan

INDPTR, INDICES, LAST = np.array([0, 2, 2, 5]), np.array([4, 1, 0, 3, 2]), np.array([7, 0, 16])


def decode_plan(w=None, **over):
    args = dict(indptr=INDPTR, indices=INDICES, last_page_len=LAST, num_qo_heads=32,
                num_kv_heads=8, head_dim=D, page_size=16)
    args.update(over)
    w = w or fc.BatchDecodeWithPagedKVCache()
    return lambda: w.plan(**args)


def test_decode_plan_good_input_reaches_the_module():
    reaches_cuda(decode_plan())
    reaches_cuda(decode_plan(indptr=[0, 2, 2, 5], indices=list(INDICES), last_page_len=[7, 0, 16]))
    reaches_cuda(decode_plan(q_data_type="bfloat16", window_left=100, logits_soft_cap=30.0))
    reaches_cuda(decode_plan(indptr=np.array([0, 2, 2, 5], dtype=np.int64)))
    for q_type in ("float16", "bfloat16"):  # fp8 KV cache, by name or alias
        for kv_type in ("float8_e4m3fn", "e4m3"):
            reaches_cuda(decode_plan(q_data_type=q_type, kv_data_type=kv_type))


@pytest.mark.parametrize("over, exc, words", [
    (dict(indptr=np.array([0, 3, 2, 5])), ValueError, "non-decreasing"),
    (dict(indptr=np.array([0])), ValueError, "batch_size \\+ 1 >= 2"),
    (dict(indptr=np.array([[0, 2, 2, 5]])), ValueError, "1-D"),
    (dict(indptr=np.array([0.0, 2, 2, 5])), TypeError, "integer"),
    (dict(indptr=np.array([-1, 2, 2, 5])), ValueError, "start at 0"),
    (dict(indptr=np.array([1, 2, 2, 5])), ValueError, "start at 0"),
    (dict(indptr=np.array([0, 2, 2, 2**40])), ValueError, "int32"),
    (dict(indptr=None), TypeError, "None"),
    (dict(indices=np.array([4, 1, 0, 3])), ValueError, "at least"),
    (dict(indices=np.array([4, 1, 0, -3, 2])), ValueError, ">= 0"),
    (dict(last_page_len=np.array([7, 0])), ValueError, "3 entries"),
    (dict(last_page_len=np.array([0, 0, 16])), ValueError, "last_page_len\\[0\\] = 0"),
    (dict(last_page_len=np.array([7, 1, 16])), ValueError, "0 when it has none"),
    (dict(last_page_len=np.array([7, 0, 17])), ValueError, "1..page_size"),
    (dict(num_qo_heads=30), ValueError, "multiple of num_kv_heads"),
    (dict(num_qo_heads=48, num_kv_heads=4), ValueError, "group sizes"),
    (dict(num_qo_heads=0), ValueError, "num_qo_heads"),
    (dict(num_kv_heads=2.0), TypeError, "num_kv_heads"),
    (dict(head_dim=96), ValueError, "head dims"),
    (dict(page_size=0), ValueError, "page_size"),
    (dict(window_left=-2), ValueError, "window_left"),
    (dict(window_left=True), TypeError, "window_left"),
    (dict(logits_soft_cap=-1.0), ValueError, "logits_soft_cap"),
    (dict(logits_soft_cap=float("nan")), ValueError, "finite"),
    (dict(sm_scale=0.0), ValueError, "sm_scale"),
    (dict(rope_theta=-1.0), ValueError, "rope"),
    (dict(q_data_type="float32"), TypeError, "q_data_type"),
    (dict(kv_data_type="bfloat16"), TypeError, "kv_data_type"),
    (dict(kv_data_type="float8_e5m2"), TypeError, "kv_data_type"),
    (dict(q_data_type="float8_e4m3fn"), TypeError, "q_data_type"),
    (dict(q_data_type="float8_e4m3fn", kv_data_type="float8_e4m3fn"), TypeError, "q_data_type"),
])
def test_decode_plan_rejects(over, exc, words):
    raises(decode_plan(**over), exc, words)


@pytest.mark.parametrize("form", ["list", "tuple", "int64", "uint32", "big-endian", "strided",
                                  "read-only"])
def test_decode_plan_takes_any_host_integer_vector(form):
    """int32 C-contiguous numpy is read in place; every other host form is converted."""
    def conv(a):
        if form == "list":
            return a.tolist()
        if form == "tuple":
            return tuple(a.tolist())
        if form == "strided":
            wide = np.zeros(2 * len(a), dtype=np.int32)
            wide[::2] = a
            return wide[::2]
        if form == "read-only":
            b = a.astype(np.int32)
            b.flags.writeable = False
            return b
        return a.astype({"int64": np.int64, "uint32": np.uint32, "big-endian": ">i4"}[form])

    reaches_cuda(decode_plan(indptr=conv(INDPTR), indices=conv(INDICES),
                             last_page_len=conv(LAST)))
    raises(decode_plan(indptr=conv(np.array([0, 3, 2, 5]))), ValueError, "non-decreasing")


def test_plan_takes_a_cuda_page_table_checked_on_the_host():
    """A CUDA int32 page table is described (not copied, not read) and checked before any
    module loads; a host one of another form still goes the host way."""
    reaches_cuda(decode_plan(indices=T((5,), "int32")))
    reaches_cuda(paged_plan(paged_kv_indices=T((8,), "int32")))
    raises(decode_plan(indices=T((5,), "float16")), TypeError, "paged_kv_indices")
    raises(decode_plan(indices=T((5, 1), "int32")), ValueError, "paged_kv_indices")
    raises(decode_plan(indices=T((4,), "int32")), ValueError, "at least")
    raises(decode_plan(indices=fc.TensorDesc(PTR, (5,), "int32", device=1)), ValueError,
           "cuda:1")
    raises(decode_plan(indices=None), TypeError, "indices")


def test_repeated_plan_revalidates_changed_scalars():
    """A wrapper reuses the last plan's validated configuration only for arguments of the
    same value and type: 8.0 / True / NaN after a good plan are still refused."""
    w = fc.BatchDecodeWithPagedKVCache()
    reaches_cuda(decode_plan(w))
    reaches_cuda(decode_plan(w))
    raises(decode_plan(w, num_kv_heads=8.0), TypeError, "num_kv_heads")
    raises(decode_plan(w, window_left=True), TypeError, "window_left")
    raises(decode_plan(w, logits_soft_cap=float("nan")), ValueError, "finite")
    raises(decode_plan(w, page_size=np.int64(0)), ValueError, "page_size")
    raises(decode_plan(w, last_page_len=np.array([7, 0, 17])), ValueError, "1..page_size")
    reaches_cuda(decode_plan(w, num_kv_heads=np.int64(8)))
    reaches_cuda(decode_plan(w))


def test_plan_refuses_device_host_arrays():
    """plan() reads indptr/lengths on the host and never copies from the device."""
    class FakeCudaArray:
        __cuda_array_interface__ = {"shape": (4,), "typestr": "<i4", "data": (PTR, False),
                                    "version": 3}

    raises(decode_plan(indptr=FakeCudaArray()), TypeError, "host")


def test_decode_has_no_fa3():
    raises(decode_plan(fc.BatchDecodeWithPagedKVCache(backend="fa3")), ValueError, "no FA3")
    reaches_cuda(decode_plan(fc.BatchDecodeWithPagedKVCache(backend="fa2")))


def test_graph_mode_needs_page_capacity():
    w = fc.BatchDecodeWithPagedKVCache(use_cuda_graph=True)
    raises(decode_plan(w), ValueError, "max_num_pages")
    w = fc.BatchDecodeWithPagedKVCache(use_cuda_graph=True, max_num_pages=4)
    raises(decode_plan(w), ValueError, "exceed max_num_pages")
    reaches_cuda(decode_plan(fc.BatchDecodeWithPagedKVCache(use_cuda_graph=True,
                                                            max_num_pages=5)))


@pytest.mark.parametrize("kwargs, exc, words", [
    (dict(kv_layout="NDH"), ValueError, "kv_layout"),
    (dict(backend="fa4"), ValueError, "backend"),
    (dict(device=-1), ValueError, "device"),
    (dict(float_workspace_bytes=0), ValueError, "float_workspace_bytes"),
    (dict(pinned_slots=0), ValueError, "pinned_slots"),
])
def test_constructor_rejects(kwargs, exc, words):
    for cls in (fc.BatchDecodeWithPagedKVCache, fc.BatchPrefillWithPagedKVCache,
                fc.BatchPrefillWithRaggedKVCache):
        raises(lambda: cls(**kwargs), exc, words)


def test_run_before_plan():
    w = fc.BatchDecodeWithPagedKVCache()
    raises(lambda: w.run(T((3, 32, D)), (T((5, 16, 8, D)), T((5, 16, 8, D)))), RuntimeError,
           "plan\\(\\) before run")
    raises(lambda: w.prepare(T((3, 32, D)), (T((5, 16, 8, D)), T((5, 16, 8, D)))),
           RuntimeError, "plan\\(\\) before run")


# ----------------------------------------------------------------------------- prefill plans

QO = np.array([0, 3, 3, 10])


def paged_plan(w=None, **over):
    args = dict(qo_indptr=QO, paged_kv_indptr=INDPTR, paged_kv_indices=INDICES,
                paged_kv_last_page_len=LAST, num_qo_heads=16, num_kv_heads=4, head_dim=D,
                page_size=16)
    args.update(over)
    w = w or fc.BatchPrefillWithPagedKVCache(backend="fa2")
    return lambda: w.plan(**args)


def ragged_plan(w=None, **over):
    args = dict(qo_indptr=QO, kv_indptr=np.array([0, 5, 9, 20]), num_qo_heads=16,
                num_kv_heads=4, head_dim=D)
    args.update(over)
    w = w or fc.BatchPrefillWithRaggedKVCache(backend="fa2")
    return lambda: w.plan(**args)


def test_prefill_plans_good_input_reaches_the_module():
    reaches_cuda(paged_plan())
    reaches_cuda(paged_plan(causal=True, num_qo_heads=12, num_kv_heads=4))  # group 3 is fine
    reaches_cuda(ragged_plan())
    reaches_cuda(ragged_plan(causal=True))
    reaches_cuda(paged_plan(kv_data_type="float8_e4m3fn"))  # fp8 KV: FA2
    reaches_cuda(ragged_plan(kv_data_type="float8_e4m3fn", q_data_type="bfloat16"))
    # "auto" with an fp8 KV cache picks FA2 without asking the device
    reaches_cuda(paged_plan(fc.BatchPrefillWithPagedKVCache(), kv_data_type="float8_e4m3fn"))
    # "auto" asks the device (compute capability) before anything else
    reaches_cuda(ragged_plan(fc.BatchPrefillWithRaggedKVCache()))


@pytest.mark.parametrize("make, over, exc, words", [
    (paged_plan, dict(qo_indptr=np.array([0, 3, 10])), ValueError, "4 entries"),
    (paged_plan, dict(qo_indptr=np.array([1, 3, 3, 10])), ValueError, "start at 0"),
    (paged_plan, dict(causal=True, qo_indptr=np.array([0, 3, 3, 60])), ValueError,
     "qo_len <= kv_len"),
    (paged_plan, dict(num_qo_heads=10), ValueError, "multiple"),
    (paged_plan, dict(paged_kv_last_page_len=np.array([7, 0])), ValueError, "3 entries"),
    (ragged_plan, dict(kv_indptr=np.array([0, 5, 4, 20])), ValueError, "non-decreasing"),
    (ragged_plan, dict(kv_indptr=np.array([2, 5, 9, 20])), ValueError, "start at 0"),
    (ragged_plan, dict(causal=True, kv_indptr=np.array([0, 2, 9, 20])), ValueError,
     "request 0 has 3 query rows but 2 keys"),
    (ragged_plan, dict(q_data_type="float8_e4m3fn"), TypeError, "q_data_type"),
    (ragged_plan, dict(head_dim=512), ValueError, "head dims"),
    (lambda **o: paged_plan(fc.BatchPrefillWithPagedKVCache(backend="fa3"), **o),
     dict(kv_data_type="float8_e4m3fn"), ValueError, "fp8 KV"),
])
def test_prefill_plan_rejects(make, over, exc, words):
    raises(make(**over), exc, words)


# -------------------------------------------------------------------------------- single ops

def test_single_decode_validation():
    q, k = T((32, D)), T((100, 8, D))
    reaches_cuda(lambda: fc.single_decode(q, k, k))
    reaches_cuda(lambda: fc.single_decode(q, T((8, 100, D)), T((8, 100, D)), kv_layout="HND"))
    raises(lambda: fc.single_decode(T((1, 32, D)), k, k), ValueError, "2 dimensions")
    raises(lambda: fc.single_decode(T((32, D), "float32"), k, k), TypeError, "float16")
    raises(lambda: fc.single_decode(T((32, 96)), T((100, 8, 96)), T((100, 8, 96))), ValueError,
           "head dims")
    raises(lambda: fc.single_decode(q, k, T((100, 8, D), "bfloat16")), TypeError, "dtype")
    raises(lambda: fc.single_decode(q, k, T((99, 8, D))), ValueError, "shape")
    raises(lambda: fc.single_decode(T((48, D)), T((100, 4, D)), T((100, 4, D))), ValueError,
           "group sizes")
    raises(lambda: fc.single_decode(q, T((0, 8, D)), T((0, 8, D))), ValueError, "kv_len")
    raises(lambda: fc.single_decode(q, k, k, kv_layout="HND"), ValueError, "multiple")
    raises(lambda: fc.single_decode(q, k, k, window_left=-3), ValueError, "window_left")
    raises(lambda: fc.single_decode(T((32, D), offset=2), k, k), ValueError, "aligned")
    strided = T((100, 8, D), strides=(16 * D, D, 1))
    raises(lambda: fc.single_decode(q, strided, strided), ValueError, "contiguous")
    host_q = fc.TensorDesc(PTR, (32, D), "float16", device_type="cpu")
    raises(lambda: fc.single_decode(host_q, k, k), ValueError, "CUDA")
    raises(lambda: fc.single_decode(np.zeros((32, D), np.float16), k, k), ValueError, "CUDA")


def test_single_prefill_validation():
    q, k = T((10, 16, D)), T((40, 4, D))
    reaches_cuda(lambda: fc.single_prefill(q, k, k, causal=True, backend="fa2"))
    reaches_cuda(lambda: fc.single_prefill(q, k, k))  # auto: asks the device first
    strided_k = T((40, 4, D), strides=(8 * D, D, 1))  # views with non-packed strides are fine
    reaches_cuda(lambda: fc.single_prefill(q, strided_k, strided_k, backend="fa2"))
    raises(lambda: fc.single_prefill(q, k, k, backend="fa4"), ValueError, "backend")
    raises(lambda: fc.single_prefill(T((50, 16, D)), k, k, causal=True), ValueError,
           "qo_len <= kv_len")
    raises(lambda: fc.single_prefill(q, T((40, 4, D), strides=(4 * D + 4, D, 1)),
                                     T((40, 4, D), strides=(4 * D + 4, D, 1))),
           ValueError, "multiple of 8")
    raises(lambda: fc.single_prefill(q, k, k, out=T((10, 16, D), "bfloat16"), backend="fa2"),
           TypeError, "out")


def test_single_ops_refuse_read_only_outputs_and_take_read_only_inputs():
    """out/lse are written: a producer that exported them read-only (JAX, a numpy array
    with writeable=False) is refused; read-only q/k/v are fine."""
    from producers import ReadOnly

    q, k = T((10, 16, D)), T((40, 4, D))
    ro = ReadOnly
    reaches_cuda(lambda: fc.single_prefill(ro(q), ro(k), ro(k), backend="fa2"))
    raises(lambda: fc.single_prefill(q, k, k, out=ro(T((10, 16, D))), backend="fa2"),
           ValueError, "out: the kernel writes")
    raises(lambda: fc.single_prefill(q, k, k, lse=ro(T((10, 16), "float32")), backend="fa2"),
           ValueError, "lse: the kernel writes")
    raises(lambda: fc.single_decode(T((32, D)), k, k, out=ro(T((32, D)))), ValueError,
           "out: the kernel writes")


def test_single_ops_take_an_fp8_kv_cache(monkeypatch):
    asked = []

    def record(uri):
        asked.append(uri)
        raise TouchedCuda(uri)

    monkeypatch.setattr(runtime, "load_module", record)
    k8 = T((40, 4, D), "float8_e4m3fn")
    for q_dtype in ("float16", "bfloat16"):
        reaches_cuda(lambda: fc.single_decode(T((16, D), q_dtype), k8, k8))
        reaches_cuda(lambda: fc.single_prefill(T((10, 16, D), q_dtype), k8, k8, causal=True))
    # fp8 KV has FA2 kernels only: "auto" goes there without asking for an FA3 module
    assert [u.split("_dtype_kv_")[1][:4] for u in asked] == ["e4m3"] * 4, asked
    assert not any(u.endswith("_sm90") for u in asked), asked
    raises(lambda: fc.single_prefill(T((10, 16, D)), k8, k8, backend="fa3"), ValueError, "fa3")
    raises(lambda: fc.single_decode(T((16, D)), k8, T((40, 4, D))), TypeError,
           "v: expected dtype float8_e4m3fn")
    raises(lambda: fc.single_decode(T((16, D)), T((40, 4, D)), k8), TypeError,
           "v: expected dtype float16")
    raises(lambda: fc.single_decode(T((16, D), "float8_e4m3fn"), k8, k8), TypeError, "q")
    # 16-byte rows of one-byte elements: strides in multiples of 16
    odd = T((40, 4, D), "float8_e4m3fn", strides=(4 * D + 8, D, 1))
    raises(lambda: fc.single_prefill(T((10, 16, D)), odd, odd), ValueError, "multiple of 16")


# ------------------------------------------------------------------------------ URIs and ABI

def _kernel_uris():
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import kernel_uris
    finally:
        sys.path.pop(0)
    return kernel_uris


@pytest.mark.parametrize("release", ["0.6.3", "0.7.4"])
@pytest.mark.parametrize("family", attention_uri.FAMILIES)
def test_uris_agree_with_the_builder(family, release):
    ku = _kernel_uris()
    backends = ("fa2", "fa3") if family == "batch_prefill" else ("fa2",)
    for dtype, hd, win, cap, backend in itertools.product(
            ("float16", "bfloat16"), (64, 128, 256), (-1, 0, 64), (0.0, 30.0), backends):
        v = attention_uri.variant(family, dtype, hd, win, cap, backend, release=release)
        spec = ku.parse_uri(v.uri, release)  # the builder can build what we ask for
        assert spec.family.name == family
        assert spec.kwargs["use_sliding_window"] == (win >= 0)
        assert spec.kwargs["use_logits_soft_cap"] == (cap > 0)
        assert spec.kwargs.get("backend", "fa2") == backend
        tok = attention_uri.DTYPE_TOKENS[dtype]
        assert ku.attention_uri(family, tok, hd, win >= 0, cap > 0, backend,
                                version=release) == v.uri
        # 0.7.x's FA2 batch prefill is the module its wheel ships: "_kv_stride_equal"
        renamed = release == "0.7.4" and family == "batch_prefill" and backend == "fa2"
        assert v.uri.endswith("_kv_stride_equal") == renamed
        assert v.release == (release if renamed else "0.6.3")
        if backend == "fa2":  # and with an fp8 (e4m3) KV cache
            v8 = attention_uri.variant(family, dtype, hd, win, cap, backend, "float8_e4m3fn",
                                       release=release)
            spec = ku.parse_uri(v8.uri, release)
            assert spec.kwargs["dtype_kv"] == "e4m3" and spec.kwargs["dtype_q"] == tok
            assert ku.attention_uri(family, tok, hd, win >= 0, cap > 0, backend,
                                    kv="e4m3", version=release) == v8.uri
            assert v8.in_prebuilt_wheel == (not renamed)  # the pinned wheel is 0.6.3's


def test_fa2_batch_prefill_name_follows_the_expected_release(monkeypatch):
    """Without release=, the name is that of the release the modules are expected to be of
    (here FLASHINFER_CY_FLASHINFER_VERSION); the missing-module message then names that
    release's build command, and the 0.7.4 wheel (when the wheel steps use it) holds it."""
    monkeypatch.setenv("FLASHINFER_CY_FLASHINFER_VERSION", "0.7.4")
    v = attention_uri.variant("batch_prefill", "bfloat16", 128, -1, 0.0)
    assert v.uri.endswith("_f16qk_False_kv_stride_equal") and v.release == "0.7.4"
    assert v.in_prebuilt_wheel
    msg = attention_uri.missing_module_message(v, "not on disk")
    assert "--flashinfer-version 0.7.4" in msg and v.uri in msg
    d = attention_uri.variant("batch_decode", "bfloat16", 128, -1, 0.0)  # kept its name
    assert d.release == "0.6.3" and d.uri == attention_uri.variant(
        "batch_decode", "bfloat16", 128, -1, 0.0, release="0.6.3").uri
    monkeypatch.setenv("FLASHINFER_CY_FLASHINFER_VERSION", "0.6.3")
    v = attention_uri.variant("batch_prefill", "bfloat16", 128, -1, 0.0)
    assert v.uri.endswith("_f16qk_False") and v.in_prebuilt_wheel


def test_doc_example_uris():
    v = attention_uri.variant("batch_decode", "bfloat16", 256, 10, 30.0)
    assert v.uri == ("batch_decode_with_kv_cache_dtype_q_bf16_dtype_kv_bf16_dtype_o_bf16_dtype_idx_"
                     "i32_head_dim_qk_256_head_dim_vo_256_posenc_0_use_swa_True_use_logits_cap_True")
    v = attention_uri.variant("batch_prefill", "bfloat16", 128, -1, 0.0, "fa3")
    assert v.uri.endswith("_f16qk_False_sm90") and v.in_prebuilt_wheel


def test_prebuilt_wheel_grid():
    ok = attention_uri.in_prebuilt_wheel
    V = attention_uri.Variant
    assert ok(V("single_prefill", "float16", 128, True, True, "fa2"))
    assert not ok(V("single_prefill", "float16", 128, False, False, "fa3"))
    assert ok(V("batch_prefill", "bfloat16", 64, False, True, "fa3"))
    assert not ok(V("batch_decode", "float16", 96, False, False, "fa2"))
    with pytest.raises(ValueError, match="no FA3"):
        attention_uri.variant("batch_decode", "float16", 128, -1, 0.0, "fa3")
    # fp8 KV with 16-bit q: FA2 only (FA3's fp8 kernels take fp8 q too)
    with pytest.raises(ValueError, match="kv_data_type"):
        attention_uri.variant("batch_prefill", "float16", 128, -1, 0.0, "fa3", "float8_e4m3fn")
    with pytest.raises(ValueError, match="kv_data_type"):
        attention_uri.variant("batch_prefill", "float16", 128, -1, 0.0, "fa2", "bfloat16")
    msg = attention_uri.missing_module_message(V("single_prefill", "float16", 128, False, False,
                                                 "fa3"), "why")
    assert "not in the prebuilt" in msg and "python tools/build_kernels.py --out .kernels single_" in msg


# Arity from doc §6.6-6.11 (exact: C++ defaults do not apply through the C ABI).
ARITY = {("single_decode", "fa2", "run"): 13, ("single_prefill", "fa2", "run"): 15,
         ("single_prefill", "fa3", "run"): 13, ("batch_decode", "fa2", "plan"): 15,
         ("batch_decode", "fa2", "run"): 19, ("batch_prefill", "fa2", "plan"): 19,
         ("batch_prefill", "fa3", "plan"): 16, ("batch_prefill", "fa2", "ragged_run"): 25,
         ("batch_prefill", "fa3", "ragged_run"): 22, ("batch_prefill", "fa2", "paged_run"): 27,
         ("batch_prefill", "fa3", "paged_run"): 24, ("batch_mla", "fa2", "plan"): 9,
         ("batch_mla", "fa3", "plan"): 9, ("batch_mla", "fa2", "run"): 15,
         ("batch_mla", "fa3", "run"): 15}


@pytest.mark.parametrize("key", sorted(ARITY))
def test_signature_arity(key):
    sig, device = SIGNATURES[key]
    names = [item.split(":")[0] for item in sig.split()]
    assert len(names) == ARITY[key]
    assert device in names
    # every generated optional tensor extra is a maybe_* (passed as None, doc P1); what the
    # kernel writes (outputs, workspaces) is marked "!" so a read-only tensor is refused there
    written = {"o", "maybe_lse", "tmp", "float_workspace_buffer", "int_workspace_buffer"}
    for item in sig.split():
        name, kind = item.split(":")
        if name.startswith("maybe_"):
            assert kind.rstrip("!") == "T?", item
        assert kind.endswith("!") == (name in written), item


def test_import_touches_nothing(tmp_path):
    code = ("import sys, flashinfer_cy as fc\n"
            "from flashinfer_cy._core import runtime\n"
            "assert runtime._state['tvm_ffi_path'] is None and runtime._state['cudart_path'] is None\n"
            "assert runtime._state['cudart_error'] is None and not runtime._modules\n"
            "assert 'torch' not in sys.modules\n"
            "fc.BatchDecodeWithPagedKVCache(); fc.BatchPrefillWithRaggedKVCache()\n"
            "assert runtime._state['cudart_error'] is None and not runtime._modules\n")
    # cwd outside the checkout: "-c" puts the cwd first on sys.path
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)
