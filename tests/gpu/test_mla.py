"""Batched MLA paged attention on the GPU: BatchMLAPagedAttention against a float64
reference of absorbed MLA (tests/gpu/mla_refs.py) and bit for bit against flashinfer-python's
BatchMLAPagedAttentionWrapper on the same module, FA2 and FA3 (``_sm90``, skipped without its
module or an sm90 GPU); decode and causal prefill (qo_len != kv_len), ragged kv lengths up
to ~4000, page sizes 1/16/64, shuffled page tables, 16 and 128 heads, lse; CUDA-graph
capture and replay with a replan between replays; a prepared launch with repointed q; a
run on another stream than the plan's; append_paged_mla_kv_cache then attend. Random data
each run (seed printed); outputs start NaN.

Release-agnostic: the modules asked for are named for the release the kernel dir is marked
with (0.7.4's ``_planabi2`` in tools/gpu_session.sh's 0.7.4 pass, where the peer is 0.7.4's
flashinfer-python); a module that is not there skips its test. test_module_release checks
which release ran and with which argument list."""

from __future__ import annotations

import numpy as np
import pytest

import flashinfer_cy as fc
from attention_io import DTYPES, dev, host, need_uri, poison, rng, torch  # noqa: F401 (fixtures)
from attention_refs import LSE_TOL, assert_close, rand
from flashinfer_cy.kernels.attention_uri import mla_variant
from gpu_env import module_unavailable_reason, require_module
from mla_refs import mla_batch, mla_ref
from peer import assert_bits_equal, flashinfer_peer

CKV, KPE = 512, 64
BACKENDS = ["fa2", "fa3"]
SCALE = 1.0 / (128 + 64) ** 0.5  # DeepSeek: the head dim before absorption


def need_mla(dtype, backend):
    """Skip unless the module is on disk (never starts a download) and, for FA3, the GPU is
    sm90; returns its URI."""
    return need_uri(mla_variant(dtype, CKV, KPE, backend).uri, backend)


def upload(torch, b, dtype):
    """(q_nope, q_pe, ckv_cache, kpe_cache) of a batch as CUDA tensors."""
    return tuple(dev(torch, x, dtype) for x in (b.q_nope, b.q_pe, b.ckv_cache, b.kpe_cache))


def plan(w, b, heads, causal, dtype, **kw):
    return w.plan(b.qo_indptr, b.kv_indptr, b.kv_indices, b.kv_lens, heads, CKV, KPE,
                  b.page_size, causal, SCALE, dtype, **kw)


def check(torch, b, out, lse, dtype, causal, what, requests=None):
    """out / lse of ``requests`` (default all) against the float64 reference."""
    got = host(torch, out)
    got_lse = None if lse is None else host(torch, lse)
    for i in range(len(b.kv_lens)) if requests is None else requests:
        r = b.rows(i)
        if r.start == r.stop:
            continue
        ref, ref_lse = mla_ref(b.q_nope[r], b.q_pe[r], *b.sequence(i), SCALE, causal)
        ctx = f"{what} request {i} (qo_len {r.stop - r.start}, kv_len {b.kv_lens[i]})"
        assert_close(got[r], ref, dtype, "out " + ctx)
        if got_lse is not None:
            assert_close(got_lse[r], ref_lse, dtype, "lse " + ctx, LSE_TOL)


def peer_run(torch, b, tensors, heads, causal, dtype, backend):
    """flashinfer-python's wrapper on the same module: (out, lse)."""
    fi = flashinfer_peer()
    ws = torch.empty(128 << 20, dtype=torch.int8, device="cuda")
    w = fi.mla.BatchMLAPagedAttentionWrapper(ws, backend=backend)
    cuda = lambda x: torch.from_numpy(np.asarray(x, np.int32)).cuda()  # noqa: E731
    tdt = getattr(torch, dtype)
    w.plan(cuda(b.qo_indptr), cuda(b.kv_indptr), cuda(b.kv_indices), cuda(b.kv_lens), heads,
           CKV, KPE, b.page_size, causal, SCALE, tdt, tdt)
    return w.run(*tensors, return_lse=True)


# (name, batch qo lens, kv lens, page size, heads, causal); kv lens ragged up to ~4000
def cases(rng):
    decode_kv = np.concatenate([rng.integers(1, 400, 61), [4000, 1, 2777]])
    prefill_qo = rng.integers(1, 40, 7)
    return {
        "decode64": ([1] * 64, list(rng.permutation(decode_kv)), 64, 128, False),
        "prefill7": (list(prefill_qo), list(prefill_qo + rng.integers(0, 300, 7)), 16, 16,
                     True),
        "single": ([1], [3001], 1, 16, False),
        "chunk": ([9, 1, 30], [9, 700, 1500], 16, 128, True),
    }


def test_module_release(torch, rng):
    """The module asked for is the kernel dir's release's, and is called with that release's
    plan line and run argument list (0.7.4: the tuple-returning plan, whose schedule we copy,
    and the run's three fp8-cache scale arguments passed as "none")."""
    from flashinfer_cy._core import runtime
    from flashinfer_cy.abi.match import abi_version
    from flashinfer_cy.kernels.attention import binding_for

    dtype = "bfloat16"
    uri = need_mla(dtype, "fa2")
    release = abi_version(runtime.load_module(uri).flashinfer_version)
    print(f"MLA modules of flashinfer {release}: {uri}")
    assert uri.endswith("_planabi2") == (release == "0.7.4"), (uri, release)
    b = mla_batch(rng, [1, 1], [30, 200], 16, 16, dtype)
    w = fc.BatchMLAPagedAttention(backend="fa2")
    plan(w, b, 16, False, dtype)
    out = torch.from_dlpack(w.run(*upload(torch, b, dtype)))
    check(torch, b, out, None, dtype, False, f"flashinfer {release} module")
    variant = mla_variant(dtype, CKV, KPE, "fa2")
    run, plan_line = binding_for(variant, "run"), binding_for(variant, "plan")
    assert run.release == plan_line.release == plan_line.written_for == release
    assert run.module_signature.endswith(
        "ckv_scale:F kpe_scale:F maybe_ckv_scale_arr:T?" if release == "0.7.4" else
        "return_lse_base_on_e:B"), run.module_signature


@pytest.mark.parametrize("case", ["decode64", "prefill7", "single", "chunk"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_mla_against_reference_and_peer(torch, rng, dtype, backend, case):
    uri = need_mla(dtype, backend)
    qo_lens, kv_lens, ps, heads, causal = cases(rng)[case]
    b = mla_batch(rng, qo_lens, kv_lens, ps, heads, dtype)
    tensors = upload(torch, b, dtype)
    w = fc.BatchMLAPagedAttention(backend=backend)
    p = plan(w, b, heads, causal, dtype)
    assert p.uri == uri and p.backend == backend
    rows = int(b.qo_indptr[-1])
    out = poison(torch, (rows, heads, CKV), dtype)
    lse = torch.full((rows, heads), float("nan"), dtype=torch.float32, device="cuda")
    assert w.run(*tensors, out, lse, True) == (out, lse)
    # the reference on a few requests (the long ones included); the peer on all of them
    few = sorted({int(np.argmax(b.kv_lens)), 0, len(kv_lens) - 1,
                  *rng.integers(0, len(kv_lens), 3).tolist()})
    check(torch, b, out, lse, dtype, causal, f"{case} {backend} {dtype}", few)
    peer_out, peer_lse = peer_run(torch, b, tensors, heads, causal, dtype, backend)
    assert_bits_equal(out, peer_out, f"{case} {backend} {dtype} out")
    assert_bits_equal(lse, peer_lse, f"{case} {backend} {dtype} lse")


@pytest.mark.parametrize("backend", BACKENDS)
def test_lse_base_e_allocated_outputs_and_auto_backend(torch, rng, backend):
    dtype = "bfloat16"
    need_mla(dtype, backend)
    b = mla_batch(rng, [3, 1], [50, 9], 16, 16, dtype)
    tensors = upload(torch, b, dtype)
    w = fc.BatchMLAPagedAttention(backend=backend)
    plan(w, b, 16, True, dtype)
    out, lse = w.run(*tensors, return_lse=True, return_lse_base_on_e=True)
    got = host(torch, torch.from_dlpack(out))
    got_lse = host(torch, torch.from_dlpack(lse))
    for i in range(2):
        ref, ref_lse = mla_ref(b.q_nope[b.rows(i)], b.q_pe[b.rows(i)], *b.sequence(i), SCALE,
                               True)
        assert_close(got[b.rows(i)], ref, dtype, f"out {i}")
        assert_close(got_lse[b.rows(i)], ref_lse * np.log(2.0), dtype, f"lse (base e) {i}",
                     LSE_TOL)
    auto = fc.BatchMLAPagedAttention()
    p = plan(auto, b, 16, True, dtype)
    fa3 = torch.cuda.get_device_capability()[0] == 9 and module_unavailable_reason(
        mla_variant(dtype, CKV, KPE, "fa3").uri) is None
    assert p.backend == ("fa3" if fa3 else "fa2"), p.backend  # upstream's auto, with fallback


def _fill_pool(torch, rng, ckv, kpe, kv_lens, heads, qo_lens, dtype):
    """A new batch in the same fixed cache tensors (graph mode: buffers never move)."""
    b = mla_batch(rng, qo_lens, kv_lens, ckv.shape[1], heads, dtype,
                  spare_pages=ckv.shape[0] - sum(-(-n // ckv.shape[1]) for n in kv_lens))
    ckv.copy_(dev(torch, b.ckv_cache, dtype))
    kpe.copy_(dev(torch, b.kpe_cache, dtype))
    return b


@pytest.mark.parametrize("prepared", [False, True], ids=["run", "prepared"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_cuda_graph_replay_after_replan(torch, rng, backend, prepared):
    """Capture one decode step; new q, cache contents and plan (same batch, heads) between
    replays: each replay gives what the reference and an eager run give."""
    dtype, heads, bs, ps, pool = "float16", 128, 6, 16, 600  # 6 x ceil(1499 / 16) fit
    need_mla(dtype, backend)
    ckv = torch.empty((pool, ps, CKV), dtype=torch.float16, device="cuda")
    kpe = torch.empty((pool, ps, KPE), dtype=torch.float16, device="cuda")
    qn = torch.empty((bs, heads, CKV), dtype=torch.float16, device="cuda")
    qp = torch.empty((bs, heads, KPE), dtype=torch.float16, device="cuda")
    out = torch.empty_like(qn)
    w = fc.BatchMLAPagedAttention(backend=backend, use_cuda_graph=True, max_num_pages=pool)
    b = _fill_pool(torch, rng, ckv, kpe, [30, 400, 1, 77, 1000, 16], heads, [1] * bs, dtype)
    qn.copy_(dev(torch, b.q_nope, dtype))
    qp.copy_(dev(torch, b.q_pe, dtype))
    plan(w, b, heads, False, dtype)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up off the default stream, as torch advises
        step = w.prepare(qn, qp, ckv, kpe, out, stream=side) if prepared else None
        (step.launch() if prepared else w.run(qn, qp, ckv, kpe, out))
    torch.cuda.current_stream().wait_stream(side)
    check(torch, b, out, None, dtype, False, "eager step before capture")
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g, stream=side):
        step.launch() if prepared else w.run(qn, qp, ckv, kpe, out)
    for round_ in range(2):
        kv = [int(x) for x in rng.integers(1, 1500, bs)]
        b = _fill_pool(torch, rng, ckv, kpe, kv, heads, [1] * bs, dtype)
        qn.copy_(dev(torch, b.q_nope, dtype))
        qp.copy_(dev(torch, b.q_pe, dtype))
        plan(w, b, heads, False, dtype)  # same buffers, new schedule and page table
        out.fill_(float("nan"))
        g.replay()
        check(torch, b, out, None, dtype, False, f"graph replay {round_} (kv {kv})")
        eager = fc.BatchMLAPagedAttention(backend=backend)
        plan(eager, b, heads, False, dtype)
        ref = torch.from_dlpack(eager.run(qn, qp, ckv, kpe))
        assert_bits_equal(out, ref, f"graph replay {round_} vs eager run")
    with pytest.raises(ValueError, match="CUDA-graph"):
        plan(w, b, 16, False, dtype)  # num_heads is baked into the graph


def test_prepared_launch_with_repointed_q(torch, rng):
    dtype = "bfloat16"
    need_mla(dtype, "fa2")
    b = mla_batch(rng, [1, 1, 1], [100, 2000, 5], 64, 16, dtype)
    qn, qp, ckv, kpe = upload(torch, b, dtype)
    w = fc.BatchMLAPagedAttention(backend="fa2")
    plan(w, b, 16, False, dtype)
    out = poison(torch, (3, 16, CKV), dtype)
    step = w.prepare(qn, qp, ckv, kpe, out)
    assert step.launch() is out
    check(torch, b, out, None, dtype, False, "prepared")
    b.q_nope, b.q_pe = rand(rng, b.q_nope.shape, dtype), rand(rng, b.q_pe.shape, dtype)
    qn2, qp2 = dev(torch, b.q_nope, dtype), dev(torch, b.q_pe, dtype)
    step.repoint(q=qn2.data_ptr(), q_pe=qp2.data_ptr())
    out.fill_(float("nan"))
    step.launch()
    check(torch, b, out, None, dtype, False, "prepared, q_nope and q_pe repointed")


def test_run_on_another_stream_than_the_plan(torch, rng):
    """The second plan's copies queue behind GPU work on the plan stream; a run on a side
    stream must wait for them (or it reads the first plan's schedule and page table)."""
    dtype, heads = "float16", 16
    need_mla(dtype, "fa2")
    b1 = mla_batch(rng, [1, 1], [900, 40], 16, heads, dtype)
    b2 = mla_batch(rng, [1, 1], [50, 1200], 16, heads, dtype)
    w = fc.BatchMLAPagedAttention(backend="fa2")
    plan(w, b1, heads, False, dtype)
    w.run(*upload(torch, b1, dtype))
    t2 = upload(torch, b2, dtype)
    # Poisoned before the sleep: a fill queued after it on the plan stream would land after
    # the side stream's kernel (it waits for the plan's copies, not for later work).
    out = poison(torch, (2, heads, CKV), dtype)
    torch.cuda.synchronize()
    torch.cuda._sleep(100_000_000)  # the next plan's copies queue behind this
    plan(w, b2, heads, False, dtype, stream=torch.cuda.current_stream())
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        w.run(*t2, out)
    torch.cuda.synchronize()
    check(torch, b2, out, None, dtype, False, "run on a side stream")


def test_append_then_attend(torch, rng):
    """Chunked prefill over the cache append_paged_mla_kv_cache writes: the new tokens'
    ckv / kpe rows appended into shuffled pages, then causal attention of those tokens."""
    dtype, heads, ps = "bfloat16", 16, 16
    need_mla(dtype, "fa2")
    require_module("page")
    qo_lens, kv_lens = [5, 1, 12], [40, 17, 12]
    b = mla_batch(rng, qo_lens, kv_lens, ps, heads, dtype)  # the cache after the append
    ckv0, kpe0 = b.ckv_cache.copy(), b.kpe_cache.copy()
    rows_ckv, rows_kpe = [], []
    for i, (n_new, n) in enumerate(zip(qo_lens, kv_lens)):
        pages = b.kv_indices[b.kv_indptr[i]:b.kv_indptr[i + 1]]
        for pos in range(n - n_new, n):  # before the append: garbage where they go
            page, slot = pages[pos // ps], pos % ps
            rows_ckv.append(b.ckv_cache[page, slot].copy())
            rows_kpe.append(b.kpe_cache[page, slot].copy())
            ckv0[page, slot] = rand(rng, (CKV,), dtype, 50.0)
            kpe0[page, slot] = rand(rng, (KPE,), dtype, 50.0)
    ckv, kpe = dev(torch, ckv0, dtype), dev(torch, kpe0, dtype)
    last = np.array([n - (-(-n // ps) - 1) * ps for n in kv_lens], np.int32)
    bi, pos = fc.get_batch_indices_positions(b.qo_indptr, b.kv_lens)
    i32 = lambda x: torch.from_numpy(np.asarray(x, np.int32)).cuda()  # noqa: E731
    fc.append_paged_mla_kv_cache(dev(torch, np.array(rows_ckv), dtype),
                                 dev(torch, np.array(rows_kpe), dtype), i32(bi), i32(pos),
                                 ckv, kpe, i32(b.kv_indices), i32(b.kv_indptr), i32(last))
    np.testing.assert_array_equal(host(torch, ckv), b.ckv_cache, err_msg="appended ckv")
    np.testing.assert_array_equal(host(torch, kpe), b.kpe_cache, err_msg="appended kpe")
    w = fc.BatchMLAPagedAttention(backend="fa2")
    plan(w, b, heads, True, dtype)
    out = poison(torch, (int(b.qo_indptr[-1]), heads, CKV), dtype)
    w.run(dev(torch, b.q_nope, dtype), dev(torch, b.q_pe, dtype), ckv, kpe, out)
    check(torch, b, out, None, dtype, True, "attend after append")
