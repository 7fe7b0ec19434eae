"""BatchMLAPagedAttention: every bad plan() argument is refused with a clear error before a
kernel module is loaded or CUDA touched (the ``no_cuda`` fixture turns either into a
``TouchedCuda`` failure), and good input gets as far as the module. run()'s checks against a
plan are exercised through the stand-in module (test_mla_call_path.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import flashinfer_cy as fc
from cuda_guard import TouchedCuda, no_cuda as _no_cuda, raises, reaches_cuda
from flashinfer_cy._core import runtime
from flashinfer_cy.kernels import attention_uri

ROOT = Path(__file__).resolve().parents[2]
PTR = 0x7F0000000000  # 64-byte aligned, never dereferenced


@pytest.fixture(autouse=True)
def no_cuda(monkeypatch):
    loaded = [k[1] for k in runtime._modules if isinstance(k, tuple) and k[0] == "uri"
              and k[1].startswith("batch_mla")]
    if loaded:  # a cached binding would never reach load_module: the guard could not see it
        pytest.skip(f"MLA modules already loaded in this process ({loaded[0]})")
    _no_cuda(monkeypatch)


QO = np.array([0, 1, 3, 4], np.int32)           # rows 1, 2, 1
KV_INDPTR = np.array([0, 2, 3, 6], np.int32)    # pages 2, 1, 3
KV_INDICES = np.array([5, 0, 2, 1, 4, 3], np.int32)
KV_LEN = np.array([20, 16, 33], np.int32)       # page_size 16: within 32, 16, 48


def plan(w=None, **over):
    args = dict(qo_indptr=QO, kv_indptr=KV_INDPTR, kv_indices=KV_INDICES, kv_len_arr=KV_LEN,
                num_heads=16, head_dim_ckv=512, head_dim_kpe=64, page_size=16, causal=False,
                sm_scale=0.07, q_data_type="bfloat16")
    args.update(over)
    w = w or fc.BatchMLAPagedAttention()
    return lambda: w.plan(**args)


def test_good_input_reaches_the_module():
    reaches_cuda(plan())
    reaches_cuda(plan(causal=True))          # every qo_len <= kv_len
    reaches_cuda(plan(kv_indices=fc.TensorDesc(PTR, (6,), "int32")))  # a CUDA page table
    reaches_cuda(plan(kv_indices=list(KV_INDICES), qo_indptr=[0, 1, 3, 4],
                      kv_len_arr=KV_LEN.astype(np.int64), q_data_type="float16",
                      kv_data_type="float16"))
    reaches_cuda(plan(kv_len_arr=np.array([0, 0, 0], np.int32)))   # empty caches
    reaches_cuda(plan(stream=0))


@pytest.mark.parametrize("over,exc,words", [
    (dict(qo_indptr=np.array([0, 1, 3], np.int32)), ValueError, "qo_indptr: expected 4 entries"),
    (dict(qo_indptr=np.array([1, 1, 3, 4], np.int32)), ValueError, "qo_indptr: must start at 0"),
    (dict(qo_indptr=np.array([0, 2, 1, 4], np.int32)), ValueError, "non-decreasing"),
    (dict(kv_indptr=np.array([0], np.int32)), ValueError, "kv_indptr: expected batch_size"),
    (dict(kv_len_arr=np.array([20, 16], np.int32)), ValueError, "kv_len_arr: expected 3"),
    (dict(kv_len_arr=np.array([20, -1, 33], np.int32)), ValueError, r"kv_len_arr\[1\] = -1"),
    (dict(kv_len_arr=np.array([33, 16, 33], np.int32)), ValueError,
     r"kv_len_arr\[0\] = 33 is invalid for a request with 2 page"),
    (dict(kv_len_arr=np.array([20, 16, 33], np.float32)), TypeError, "kv_len_arr"),
    (dict(kv_indices=KV_INDICES[:5]), ValueError, r"kv_indices: expected at least kv_indptr\[-1\] = 6"),
    (dict(kv_indices=np.array([5, 0, 2, -1, 4, 3], np.int32)), ValueError, "page ids must be >= 0"),
    (dict(kv_indices=fc.TensorDesc(PTR, (5,), "int32")), ValueError, r"kv_indices: expected at least"),
    (dict(kv_indices=fc.TensorDesc(PTR, (6,), "int64")), TypeError, "kv_indices"),
    (dict(qo_indptr=fc.TensorDesc(PTR, (4,), "int32")), TypeError, "qo_indptr: plan\\(\\) takes host"),
    (dict(kv_len_arr=None), TypeError, "kv_len_arr"),
    (dict(num_heads=0), ValueError, "num_heads"),
    (dict(num_heads=True), TypeError, "num_heads"),
    (dict(head_dim_ckv=500), ValueError, "head_dim_ckv: expected a multiple of 8"),
    (dict(head_dim_kpe=0), ValueError, "head_dim_kpe"),
    (dict(page_size=0), ValueError, "page_size"),
    (dict(causal=1), TypeError, "causal"),
    (dict(causal=True, kv_len_arr=np.array([20, 1, 33], np.int32)), ValueError,
     "causal: request 1 has 2 query rows but 1 keys"),
    (dict(sm_scale=None), TypeError, "sm_scale: expected a float"),
    (dict(sm_scale=float("nan")), ValueError, "sm_scale: expected a finite"),
    (dict(sm_scale=-0.1), ValueError, "sm_scale: expected > 0"),
    (dict(sm_scale=True), TypeError, "sm_scale"),
    (dict(q_data_type="float32"), TypeError, "q_data_type"),
    (dict(kv_data_type="float8_e4m3fn"), TypeError, "kv_data_type: MLA modules read a cache"),
    (dict(stream="not a stream"), TypeError, "stream"),
])
def test_plan_rejects(over, exc, words):
    raises(plan(**over), exc, words)


def test_too_many_query_tiles_for_the_planner():
    """0.6.3's MLA planner has room for 16384 work items and does not check (its lists would
    overflow): ceil(rows x heads / 64) over the batch beyond that is refused."""
    rows = 8192  # x 128 heads / 64 = 16384 tiles (+ the SM clusters): too many
    raises(plan(qo_indptr=np.array([0, rows], np.int32), kv_indptr=np.array([0, 1], np.int32),
                kv_indices=np.array([0], np.int32), kv_len_arr=np.array([16], np.int32),
                num_heads=128), ValueError, "16384 FlashInfer's MLA planner has room")
    reaches_cuda(plan(qo_indptr=np.array([0, 8000], np.int32),
                      kv_indptr=np.array([0, 1], np.int32), kv_indices=np.array([0], np.int32),
                      kv_len_arr=np.array([16], np.int32), num_heads=128))


def test_packed_kv_positions_past_32_bits():
    """FlashInfer's MLA kernels (0.6.3 and 0.7.4) address request i's keys at
    kv_indptr[i] x page_size + key in 32-bit unsigned ints (and read up to 128 past
    kv_len): refused where that passes 2**32, before CUDA."""
    ps = 2**20   # request 1 starts at entry 4095: 4095 x 2**20 = 2**32 - 2**20
    room = 2**32 - 1 - 4095 * ps - 128

    def case(kv1, qo=(0, 1, 2)):
        return plan(qo_indptr=np.array(qo, np.int32), kv_indptr=np.array([0, 4095, 4096],
                    np.int32), kv_indices=np.arange(4096, dtype=np.int32),
                    kv_len_arr=np.array([16, kv1], np.int32), page_size=ps)
    reaches_cuda(case(room))
    raises(case(room + 1), ValueError, r"kv_indptr: request 1 starts at page-table entry 4095")
    reaches_cuda(case(room + 1, qo=(0, 1, 1)))   # no query rows: its keys are never read


def test_graph_mode_capacities():
    raises(plan(fc.BatchMLAPagedAttention(use_cuda_graph=True)), ValueError,
           "needs max_num_pages")
    raises(plan(fc.BatchMLAPagedAttention(use_cuda_graph=True, max_num_pages=5)), ValueError,
           "6 pages exceed max_num_pages 5")
    raises(plan(fc.BatchMLAPagedAttention(use_cuda_graph=True, max_num_pages=8,
                                          max_total_num_rows=3)), ValueError,
           "4 rows exceed the CUDA-graph capacity 3")
    reaches_cuda(plan(fc.BatchMLAPagedAttention(use_cuda_graph=True, max_num_pages=8)))


def test_repeated_plan_revalidates_changed_scalars():
    w = fc.BatchMLAPagedAttention()
    reaches_cuda(plan(w))
    raises(plan(w, sm_scale=float("inf")), ValueError, "sm_scale")
    raises(plan(w, head_dim_kpe=60), ValueError, "head_dim_kpe")
    reaches_cuda(plan(w))


@pytest.mark.parametrize("kwargs,exc,words", [
    (dict(backend="fa4"), ValueError, "backend"),
    (dict(device=-1), ValueError, "device"),
    (dict(float_workspace_bytes=64), ValueError, "float_workspace_bytes"),
    (dict(use_cuda_graph="yes"), TypeError, "use_cuda_graph"),
])
def test_constructor_rejects(kwargs, exc, words):
    raises(lambda: fc.BatchMLAPagedAttention(**kwargs), exc, words)


def test_run_and_prepare_before_plan():
    w = fc.BatchMLAPagedAttention()
    q = fc.TensorDesc(PTR, (4, 16, 512), "bfloat16")
    args = (q, fc.TensorDesc(PTR, (4, 16, 64), "bfloat16"),
            fc.TensorDesc(PTR, (6, 16, 512), "bfloat16"), fc.TensorDesc(PTR, (6, 16, 64),
                                                                     "bfloat16"))
    raises(lambda: w.run(*args), fc.PlanNotReadyError, "plan\\(\\) before run")
    raises(lambda: w.prepare(*args), fc.PlanNotReadyError, "plan\\(\\) before run")


def test_uris_agree_with_the_builder():
    sys.path.insert(0, str(ROOT / "tools"))
    import kernel_uris as ku

    assert attention_uri.MLA_RELEASES == ("0.6.3", "0.7.4")
    for release in attention_uri.MLA_RELEASES:
        for dtype, tok in (("float16", "f16"), ("bfloat16", "bf16")):
            for backend in ("fa2", "fa3"):
                v = attention_uri.mla_variant(dtype, 512, 64, backend, release)
                assert v.release == release
                assert v.uri == ku.mla_uri(tok, backend, version=release)
                assert ku.parse_uri(v.uri, release).family.name == "batch_mla"
                assert v.uri in ku.expand(["@mla"], release)
    assert not attention_uri.mla_variant("float16", 256, 64, "fa2", "0.6.3").in_prebuilt_wheel
    with pytest.raises(ValueError, match="MLA modules are float16 or bfloat16"):
        attention_uri.mla_variant("float32", 512, 64)


def test_mla_names_follow_the_expected_release(tmp_path, monkeypatch):
    """The name asked for is the expected release's: the setting, else the kernel dir's
    marker, else the pinned release; a release that kept 0.6.3's name (or one we have no
    ABI of) asks for 0.6.3's. In the wheel only where the wheel steps supply that release."""
    from flashinfer_cy.artifacts import settings

    monkeypatch.delenv(settings.FLASHINFER_VERSION_ENV, raising=False)
    monkeypatch.delenv(settings.KERNEL_DIR_ENV, raising=False)

    def named():
        v = attention_uri.mla_variant("bfloat16", 512, 64, "fa3")
        return v.release, v.uri.endswith("_planabi2_sm90"), v.in_prebuilt_wheel

    assert named() == ("0.6.3", False, True)
    (tmp_path / "flashinfer_version.txt").write_text("0.7.4\n")
    monkeypatch.setenv(settings.KERNEL_DIR_ENV, str(tmp_path))
    assert named() == ("0.7.4", True, False)  # the pinned 0.6.3 wheel has no such module
    monkeypatch.setenv(settings.FLASHINFER_VERSION_ENV, "0.7.4")
    assert named() == ("0.7.4", True, True)   # the wheel steps serve 0.7.4's wheel
    monkeypatch.setenv(settings.FLASHINFER_VERSION_ENV, "0.6.3.post1")
    assert named() == ("0.6.3", False, True)  # the setting wins over the marker
    monkeypatch.setenv(settings.FLASHINFER_VERSION_ENV, "0.8.0")
    assert named()[:2] == ("0.6.3", False)
    monkeypatch.delenv(settings.FLASHINFER_VERSION_ENV)
    (tmp_path / "flashinfer_version.txt").unlink()  # unmarked: its modules are refused anyway
    assert named()[:2] == ("0.6.3", False)


def test_a_missing_074_module_names_its_build():
    v = attention_uri.mla_variant("float16", 512, 64, "fa2", "0.7.4")
    msg = attention_uri.missing_module_message(v, "why")
    assert "--flashinfer-version 0.7.4" in msg and v.uri in msg and "why" in msg, msg


def test_construction_touches_nothing():
    w = fc.BatchMLAPagedAttention(use_cuda_graph=True, max_num_pages=6)
    assert w.current_plan is None and w.generation == 0
    with pytest.raises(TouchedCuda):
        plan(w)()
