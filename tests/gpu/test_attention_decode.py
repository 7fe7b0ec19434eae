"""Decode attention on the GPU against a float64 numpy reference: single_decode and the
batch decode wrapper (plan/run), GQA, both KV layouts, shuffled page tables, ragged lengths
(page multiples, one-token tails, a long split-KV request, an empty request), sliding
window + soft cap, head dim 64, LSE, plan mismatches. Fresh random data every run (the seed
is printed); outputs start as NaN."""

from __future__ import annotations

import gc
import os
from dataclasses import replace
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import flashinfer_cy as fc
from flashinfer_cy.errors import PlanMismatchError
from attention_io import DTYPES, dev, host, need, poison, rng, torch  # noqa: F401 (fixtures)
from attention_refs import LSE_TOL, assert_close, attention_ref, paged_batch, rand

D = 128


def _decode_case(torch, rng, dtype, layout, hq, hkv, page_size, kv_lens, head_dim=D,
                 window_left=-1, cap=0.0, combined=False, strided_q=False):
    need("batch_decode", dtype, head_dim, window_left, cap)
    batch = paged_batch(rng, kv_lens, page_size, hkv, head_dim, dtype, layout)
    q64 = rand(rng, (len(kv_lens), hq, head_dim), dtype)
    if strided_q:  # q as a view with a non-packed batch stride
        big = dev(torch, np.zeros((len(kv_lens), hq + 8, head_dim)), dtype)
        q = big[:, 4:4 + hq]
        q.copy_(dev(torch, q64, dtype))
    else:
        q = dev(torch, q64, dtype)
    k, v = dev(torch, batch.k_cache, dtype), dev(torch, batch.v_cache, dtype)
    kv = torch.stack([k, v], dim=1) if combined else (k, v)
    w = fc.BatchDecodeWithPagedKVCache(layout, float_workspace_bytes=32 << 20)
    plan = w.plan(batch.indptr, batch.indices, batch.last_page_len, hq, hkv, head_dim,
                  page_size, window_left=window_left, logits_soft_cap=cap, q_data_type=dtype)
    assert plan.batch_size == len(kv_lens) and plan.uri.startswith("batch_decode")
    out = poison(torch, (len(kv_lens), hq, head_dim), dtype)
    lse = torch.full((len(kv_lens), hq), float("nan"), dtype=torch.float32, device="cuda")
    ret = w.run(q, kv, out=out, lse=lse)
    assert ret is out
    got, got_lse = host(torch, out), host(torch, lse)
    for i, n in enumerate(kv_lens):
        if n == 0:  # a request without KV: its row is undefined upstream; others must hold
            print(f"request {i} (kv_len 0): out[{i}] finite={np.isfinite(got[i]).all()} "
                  f"max |out| {np.nanmax(np.abs(got[i])) if np.isfinite(got[i]).any() else 'nan'}")
            continue
        ks, vs = batch.sequence(i)
        ref, ref_lse = attention_ref(q64[i:i + 1], ks, vs, window_left=window_left,
                                     logits_soft_cap=cap)
        ctx = (f"request {i} kv_len {n} ({dtype} {layout} heads {hq}/{hkv} page_size "
               f"{page_size} window {window_left} cap {cap})")
        assert_close(got[i], ref[0], dtype, "out " + ctx)
        assert_close(got_lse[i], ref_lse[0], dtype, "lse " + ctx, LSE_TOL)
    return w, plan


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["NHD", "HND"])
@pytest.mark.parametrize("hq,hkv,page_size", [(8, 8, 16), (32, 8, 1), (16, 2, 7)],
                         ids=["mha-p16", "gqa4-p1", "gqa8-p7"])
def test_batch_decode(torch, rng, dtype, layout, hq, hkv, page_size):
    lens = [33, 1, 3 * page_size, 70, 701, page_size + 1]
    _decode_case(torch, rng, dtype, layout, hq, hkv, page_size, lens)


def test_batch_decode_combined_cache_and_strided_q(torch, rng):
    _decode_case(torch, rng, "float16", "NHD", 16, 4, 16, [5, 300, 16], combined=True,
                 strided_q=True)


def test_batch_decode_head_dim_64(torch, rng):
    _decode_case(torch, rng, "float16", "HND", 16, 4, 16, [40, 17, 200], head_dim=64)


@pytest.mark.parametrize("layout", ["NHD", "HND"])
def test_batch_decode_repeated_runs_read_each_calls_tensors(torch, rng, layout):
    """A decode loop's steady state: a run whose tensors look like the last run's reuses its
    checks and packed arguments (the kept frame). Every step must still read that step's q,
    cache and out: layers alternate (another cache of the same shape, here with k and v
    swapped), as a (k, v) tuple and as one 5-D tensor, each form twice in a row."""
    dtype, hq, hkv, ps = "float16", 16, 4, 16
    need("batch_decode", dtype)
    lens = [37, 5, 64, 300]
    b0 = paged_batch(rng, lens, ps, hkv, D, dtype, layout)
    b1 = replace(b0, k_cache=b0.v_cache, v_cache=b0.k_cache)
    w = fc.BatchDecodeWithPagedKVCache(layout, float_workspace_bytes=32 << 20)
    w.plan(b0.indptr, b0.indices, b0.last_page_len, hq, hkv, D, ps, q_data_type=dtype)
    forms = []
    for combined in (False, True):
        for b in (b0, b1):
            k, v = dev(torch, b.k_cache, dtype), dev(torch, b.v_cache, dtype)
            forms.append((b, torch.stack([k, v], dim=1) if combined else (k, v)))
    for step in range(2 * len(forms)):
        b, kv = forms[step % len(forms)]
        q64 = rand(rng, (len(lens), hq, D), dtype)
        out = poison(torch, (len(lens), hq, D), dtype)
        assert w.run(dev(torch, q64, dtype), kv, out=out) is out
        got = host(torch, out)
        for i in range(len(lens)):
            ref, _ = attention_ref(q64[i:i + 1], *b.sequence(i))
            assert_close(got[i], ref[0], dtype, f"step {step} ({layout}, "
                         f"{'5-D' if step % 4 >= 2 else 'tuple'}, layer {step % 2}) request {i}")


@pytest.mark.parametrize("layout", ["NHD", "HND"])
def test_batch_decode_sliding_window_soft_cap(torch, rng, layout):
    _decode_case(torch, rng, "float16", layout, 32, 8, 16, [100, 7, 33, 500], window_left=31,
                 cap=30.0)


def test_batch_decode_custom_sm_scale_allocated_out(torch, rng):
    need("batch_decode", "bfloat16")
    batch = paged_batch(rng, [3, 50, 9], 8, 2, D, "bfloat16")
    q64 = rand(rng, (3, 8, D), "bfloat16")
    w = fc.BatchDecodeWithPagedKVCache(float_workspace_bytes=32 << 20)
    w.plan(batch.indptr, batch.indices, batch.last_page_len, 8, 2, D, 8, sm_scale=0.3,
           q_data_type="bfloat16")
    out = w.run(dev(torch, q64, "bfloat16"), (dev(torch, batch.k_cache, "bfloat16"),
                                               dev(torch, batch.v_cache, "bfloat16")))
    assert isinstance(out, fc.DeviceArray)
    got = np.asarray(torch.from_dlpack(out).double().cpu())
    for i in range(3):
        ks, vs = batch.sequence(i)
        ref, _ = attention_ref(q64[i:i + 1], ks, vs, sm_scale=0.3)
        assert_close(got[i], ref[0], "bfloat16", f"request {i}, sm_scale 0.3, out allocated")


def _device_table_case(torch, rng, use_cuda_graph):
    need("batch_decode", "float16")
    lens = [40, 17, 200, 1]
    batch = paged_batch(rng, lens, 16, 2, D, "float16")
    q64 = rand(rng, (len(lens), 8, D), "float16")
    kw = dict(use_cuda_graph=True, max_num_pages=len(batch.indices) + 3) if use_cuda_graph \
        else {}
    w = fc.BatchDecodeWithPagedKVCache(float_workspace_bytes=32 << 20, **kw)
    table = torch.from_numpy(batch.indices).cuda()
    w.plan(batch.indptr, table, batch.last_page_len, 8, 2, D, 16)
    return w, batch, q64, table, lens


def _check_decode(torch, w, batch, q64, lens, what):
    out = poison(torch, (len(lens), 8, D), "float16")
    w.run(dev(torch, q64, "float16"), (dev(torch, batch.k_cache, "float16"),
                                       dev(torch, batch.v_cache, "float16")), out=out)
    got = host(torch, out)
    for i in range(len(lens)):
        ks, vs = batch.sequence(i)
        ref, _ = attention_ref(q64[i:i + 1], ks, vs)
        assert_close(got[i], ref[0], "float16", f"request {i}, {what}")


def test_batch_decode_device_page_table_kept_alive(torch, rng):
    """A CUDA page table is read in place by run(): the Plan holds it, so dropping the
    caller's name and reusing freed memory must not change the result."""
    w, batch, q64, table, lens = _device_table_case(torch, rng, False)
    del table
    gc.collect()
    torch.cuda.empty_cache()
    _ = torch.full((len(batch.indices) + 64,), -1, dtype=torch.int32, device="cuda")
    _check_decode(torch, w, batch, q64, lens, "device page table, caller's name dropped")


def test_batch_decode_device_page_table_copied_in_graph_mode(torch, rng):
    """Graph mode copies a CUDA page table into the wrapper's fixed buffer at plan time:
    overwriting the caller's table afterwards (same stream) must not reach run()."""
    w, batch, q64, table, lens = _device_table_case(torch, rng, True)
    table.fill_(-1)
    _check_decode(torch, w, batch, q64, lens, "graph mode, caller's table overwritten")


def _empty_request_child():
    """Run in a child process by the test below."""
    import torch as torch_mod

    seed = int(np.random.SeedSequence().entropy % 2**32)
    print(f"seed={seed}", flush=True)
    rng_ = np.random.default_rng(seed)
    _decode_case(torch_mod, rng_, "float16", "HND", 32, 8, 16, [33, 0, 701, 5])
    _decode_case(torch_mod, rng_, "bfloat16", "NHD", 8, 2, 8, [0, 50, 9])
    torch_mod.cuda.synchronize()
    print("ok", flush=True)


def test_batch_decode_with_empty_requests_in_a_child_process():
    """Requests with no KV at all (page count 0, last_page_len 0): the planners count them as
    one chunk; the other requests must be exact. Run in a child process, so that a device
    fault there could not poison the rest of the session."""
    need("batch_decode", "float16")
    need("batch_decode", "bfloat16")
    here = Path(__file__).resolve().parent
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(here), str(here.parents[1]),
                                         env.get("PYTHONPATH", "")])
    res = subprocess.run([sys.executable, "-c",
                          "import test_attention_decode as t; t._empty_request_child()"],
                         cwd=here, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and res.stdout.strip().endswith("ok"), (
        f"child exited {res.returncode}\n--- stdout\n{res.stdout}\n--- stderr\n{res.stderr[-4000:]}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["NHD", "HND"])
def test_single_decode(torch, rng, dtype, layout):
    need("single_decode", dtype)
    hq, hkv, n = 32, 8, 333
    q64 = rand(rng, (hq, D), dtype)
    k64, v64 = rand(rng, (n, hkv, D), dtype), rand(rng, (n, hkv, D), dtype)
    lay = (lambda x: x) if layout == "NHD" else (lambda x: x.transpose(1, 0, 2))
    out = poison(torch, (hq, D), dtype)
    _, lse = fc.single_decode(dev(torch, q64, dtype), dev(torch, lay(k64), dtype),
                              dev(torch, lay(v64), dtype), kv_layout=layout, out=out,
                              return_lse=True)
    ref, ref_lse = attention_ref(q64[None], k64, v64)
    assert_close(host(torch, out), ref[0], dtype, f"single_decode {dtype} {layout}")
    got_lse = np.asarray(torch.from_dlpack(lse).double().cpu())
    assert_close(got_lse, ref_lse[0], dtype, "single_decode lse", LSE_TOL)


def test_single_decode_window_needs_its_module(torch, rng, monkeypatch):
    """A variant the build set lacks is a clear KernelNotFoundError naming the URI and the
    build command (or, when it exists, a correct result). Offline: no wheel download."""
    monkeypatch.setenv("FLASHINFER_CY_OFFLINE", "1")
    hq, hkv, n = 8, 8, 50
    q64 = rand(rng, (hq, D), "bfloat16")
    k64 = rand(rng, (n, hkv, D), "bfloat16")
    args = [dev(torch, x, "bfloat16") for x in (q64, k64, k64)]
    try:
        out = fc.single_decode(*args, window_left=10)
    except fc.KernelNotFoundError as exc:
        assert "build_kernels.py --out .kernels single_decode_with_kv_cache" in str(exc)
        assert "use_swa_True" in str(exc)
        return
    ref, _ = attention_ref(q64[None], k64, k64, window_left=10)
    assert_close(np.asarray(torch.from_dlpack(out).double().cpu()), ref[0], "bfloat16", "swa")


class TestPlanMismatch:
    """run() checks its tensors against the plan before touching the kernel."""

    @pytest.fixture
    def setup(self, torch, rng):
        need("batch_decode", "float16")
        batch = paged_batch(rng, [20, 5, 40], 16, 2, D, "float16")
        w = fc.BatchDecodeWithPagedKVCache(float_workspace_bytes=16 << 20)
        plan = w.plan(batch.indptr, batch.indices, batch.last_page_len, 8, 2, D, 16)
        k = dev(torch, batch.k_cache, "float16")
        v = dev(torch, batch.v_cache, "float16")
        q = dev(torch, rand(rng, (3, 8, D), "float16"), "float16")
        return w, plan, batch, q, k, v

    def test_batch_size(self, torch, setup):
        w, _, _, q, k, v = setup
        with pytest.raises(PlanMismatchError, match="batch_size"):
            w.run(torch.cat([q, q[:1]]), (k, v))

    def test_heads(self, torch, setup):
        w, _, _, q, k, v = setup
        with pytest.raises(PlanMismatchError, match="num_qo_heads"):
            w.run(torch.cat([q, q], dim=1), (k, v))

    def test_dtype(self, torch, setup):
        w, _, _, q, k, v = setup
        with pytest.raises(PlanMismatchError, match="float16"):
            w.run(q.to(torch.bfloat16), (k.to(torch.bfloat16), v.to(torch.bfloat16)))

    def test_page_size(self, torch, setup):
        w, _, _, q, k, v = setup
        with pytest.raises(PlanMismatchError, match="page_size"):
            w.run(q, (k[:, :8].contiguous(), v[:, :8].contiguous()))

    def test_too_few_pages(self, torch, setup):
        w, plan, _, q, k, v = setup
        with pytest.raises(PlanMismatchError, match="pages"):
            w.run(q, (k[: plan.min_num_pages - 1], v[: plan.min_num_pages - 1]))

    def test_stale_plan(self, setup):
        w, plan, batch, q, k, v = setup
        w.plan(batch.indptr, batch.indices, batch.last_page_len, 8, 2, D, 16)
        with pytest.raises(PlanMismatchError, match="stale"):
            w.run(q, (k, v), plan=plan)

    def test_kv_strides_must_match(self, torch, setup):
        w, _, _, q, k, v = setup
        v2 = torch.empty((v.shape[0] + 1,) + tuple(v.shape[1:]), dtype=v.dtype, device="cuda")[1:]
        v2.copy_(v)
        wide = torch.empty(k.shape[:-1] + (2 * D,), dtype=k.dtype, device="cuda")[..., :D]
        with pytest.raises(ValueError, match="strides"):
            w.run(q, (wide, v2))

    def test_plan_info_released_once(self, setup):
        """The Plan owns one reference to its plan-info Array; dropping the Plan (and the
        wrapper's hold on it) releases it."""
        w, plan, batch, q, k, v = setup
        info = plan.plan_info
        assert info.refcount == 1
        assert len(info) == 10  # DecodePlanInfo
