"""Run flashinfer_cy's page and gdn APIs against the CPU stand-in kernels (fake_page_gdn.cc).

Executed in a subprocess by test_page_gdn_call_path.py (registering a stand-in under the real
module URIs must not leak into other tests' processes):

    python fake_kernel_driver.py <kernel dir> <scenario>

(``<kernel dir>/<uri>/<uri>.so`` for uri ``page`` and ``gdn_prefill_sm90``, both the stand-in.)

Host numpy buffers are described to flashinfer_cy as CUDA tensors; the stand-ins work on them
in place. Page scenarios reuse the GPU test's page-table builder and expectations
(tests/gpu/test_page.py), so those are checked here too.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "gpu"))

import flashinfer_cy as fc  # noqa: E402
from flashinfer_cy._core import runtime  # noqa: E402


def aligned(shape, np_dtype, align=64):
    """A C-contiguous host array whose data is ``align``-byte aligned (kernels' rule)."""
    n = int(np.prod(shape)) * np.dtype(np_dtype).itemsize
    raw = np.zeros(n + align, np.uint8)
    start = -raw.ctypes.data % align
    return raw[start:start + n].view(np_dtype).reshape(shape)


def cuda_view(arr, dtype, shape=None, strides=None, byte_offset=0):
    """``arr``'s memory described as a CUDA tensor (strides in elements)."""
    item = arr.dtype.itemsize
    return fc.TensorDesc(arr.ctypes.data + byte_offset, arr.shape if shape is None else shape,
                         dtype, strides=strides or tuple(s // item for s in arr.strides),
                         device_type="cuda", owner=arr)


def put(x):
    out = aligned(x.shape, x.dtype)
    out[...] = x
    return out


def index_views(batch):
    return [cuda_view(put(batch[n]), "int32") for n in
            ("batch_indices", "positions", "kv_indices", "kv_indptr", "kv_last_page_len")]


def scenario_page_mha():
    from test_page import build_batch, page_shape, random_bits, scatter

    rng = np.random.default_rng(7)
    for layout in ("NHD", "HND"):
        for dtype in ("float16", "bfloat16", "float8_e4m3fn"):
            for head_dim, heads, page_size in ((64, 8, 1), (128, 4, 5), (256, 2, 16)):
                batch = build_batch(rng, page_size)
                shape = (batch["num_pages"],) + page_shape(layout, page_size, heads, head_dim)
                k0, v0 = random_bits(rng, shape, dtype), random_bits(rng, shape, dtype)
                rows = random_bits(rng, (batch["nnz"], 2 * heads, head_dim), dtype)
                kc, vc, r = put(k0), put(v0), put(rows)
                item = rows.dtype.itemsize
                row_strides = (2 * heads * head_dim, head_dim, 1)  # K | V column halves
                key = cuda_view(r, dtype, (batch["nnz"], heads, head_dim), row_strides)
                value = cuda_view(r, dtype, (batch["nnz"], heads, head_dim), row_strides,
                                  heads * head_dim * item)
                idx = index_views(batch)
                fc.append_paged_kv_cache(key, value, idx[0], idx[1], cuda_view(kc, dtype),
                                         cuda_view(vc, dtype), *idx[2:], kv_layout=layout)
                what = f"{layout} {dtype} {heads}x{head_dim} page {page_size}"
                np.testing.assert_array_equal(kc, scatter(k0, rows[:, :heads], batch, layout),
                                              err_msg=what)
                np.testing.assert_array_equal(vc, scatter(v0, rows[:, heads:], batch, layout),
                                              err_msg=what)


def scenario_page_mla():
    from test_page import build_batch, random_bits

    rng = np.random.default_rng(8)
    for dtype in ("float16", "bfloat16"):
        for page_size in (1, 7, 64):
            batch = build_batch(rng, page_size)
            n = batch["num_pages"]
            ckv0 = random_bits(rng, (n, page_size, 512), dtype)
            kpe0 = random_bits(rng, (n, page_size, 64), dtype)
            fused = random_bits(rng, (batch["nnz"], 576), dtype)
            ckv, kpe, f = put(ckv0), put(kpe0), put(fused)
            rows_ckv = cuda_view(f, dtype, (batch["nnz"], 512), (576, 1))
            rows_kpe = cuda_view(f, dtype, (batch["nnz"], 64), (576, 1), 512 * 2)
            idx = index_views(batch)
            fc.append_paged_mla_kv_cache(rows_ckv, rows_kpe, idx[0], idx[1],
                                         cuda_view(ckv, dtype), cuda_view(kpe, dtype), *idx[2:])
            ckv0[batch["page"], batch["slot"]] = fused[:, :512]
            kpe0[batch["page"], batch["slot"]] = fused[:, 512:]
            np.testing.assert_array_equal(ckv, ckv0, err_msg=f"ckv {dtype} page {page_size}")
            np.testing.assert_array_equal(kpe, kpe0, err_msg=f"kpe {dtype} page {page_size}")


def _gdn_call_arrives(heads, options):
    """One gdn_prefill call with every buffer given; the stand-in records what arrived in
    the workspace, checked here against the buffers (0.6.3's argument order)."""
    n, seqs = 10, 2
    hq, hk, hv = heads
    h = max(hq, hv)
    bufs = dict(q=aligned((n, hq, 128), np.uint16), k=aligned((n, hk, 128), np.uint16),
                v=aligned((n, hv, 128), np.uint16), cu_seqlens=aligned((seqs + 1,), np.int64),
                output=aligned((n, h, 128), np.uint16),
                output_state=aligned((seqs, h, 128, 128), np.float32),
                workspace=aligned((4 * 128,), np.uint8))
    dtypes = dict(q="bfloat16", k="bfloat16", v="bfloat16", output="bfloat16",
                  cu_seqlens="int64", workspace="uint8")
    if options:
        bufs.update(initial_state=aligned((seqs, h, 128, 128), np.float32),
                    alpha=aligned((n, h), np.float32), beta=aligned((n, h), np.float32))
    views = {k: cuda_view(b, dtypes.get(k, "float32")) for k, b in bufs.items()}
    scale = 0.3 if options else 0.0
    out = fc.gdn_prefill(views.pop("q"), views.pop("k"), views.pop("v"),
                         views.pop("cu_seqlens"), scale=scale, **views)
    assert out[0] is not None and out[1] is not None
    record = bufs["workspace"][:96].view(np.int64)
    order = ("output", "output_state", "q", "k", "v", "cu_seqlens", "initial_state",
             "alpha", "beta")
    for slot, name in enumerate(order):
        want = bufs[name].ctypes.data if name in bufs else 0
        assert record[slot] == want, f"{heads}: argument {slot} is not {name}"
    assert record[9:10].view(np.float64)[0] == scale, f"scale arrived as {record[9:10]}"
    assert record[10] == bufs["workspace"].ctypes.data and record[11] == 4 * 128


def _sm90_with_4_sms():
    # Stand in for an sm_90 device with 4 SMs: the workspace must be >= 4 * 128 bytes.
    runtime.device_compute_capability_major = lambda device: 9
    runtime.device_multiprocessor_count = lambda device: 4


def scenario_gdn():
    _sm90_with_4_sms()
    for heads, options in (((4, 4, 4), False), ((6, 2, 2), True), ((2, 2, 4), True)):
        _gdn_call_arrives(heads, options)


def scenario_kernel_set_074_gdn_from_the_pinned_wheel():
    """A kernel dir marked 0.7.4 (tools/build_kernels.py --flashinfer-version 0.7.4 builds
    no gdn_prefill_sm90) and the pinned 0.6.3 wheel in the cache: gdn_prefill is served by
    0.6.3's module, checked as 0.6.3, its calls arriving in 0.6.3's order."""
    _sm90_with_4_sms()
    _gdn_call_arrives((6, 2, 2), True)
    mod = fc.load_module("gdn_prefill_sm90")
    assert mod.flashinfer_version == "0.6.3" and "wheel" in mod.version_from, \
        (mod.flashinfer_version, mod.version_from)
    assert fc.load_module("norm").flashinfer_version == "0.7.4"  # the kernel dir's own


def scenario_kernel_set_074_gdn_missing():
    """FLASHINFER_CY_FLASHINFER_VERSION=0.7.4 with nothing that has the module: the typed
    call's error says why 0.7.4 has no gdn_prefill_sm90, not only where it looked."""
    _sm90_with_4_sms()
    try:
        _gdn_call_arrives((4, 4, 4), False)
    except fc.KernelNotFoundError as exc:
        msg = str(exc)
        for part in ("flashinfer 0.7.4, the release these modules are expected to be of, "
                     "builds no module gdn_prefill_sm90; flashinfer 0.6.3 does",
                     "CuTe-DSL kernel", "delta_rule_sm90.py", "sm_100a/sm_103a/sm_107a only",
                     "GDN prefill and 0.7.4"):
            assert part in msg, (part, msg)
    else:
        raise AssertionError("gdn_prefill ran on a 0.7.4 kernel set without its module")


def scenario_gdn_workspace_too_small():
    runtime.device_compute_capability_major = lambda device: 9
    runtime.device_multiprocessor_count = lambda device: 132
    q = cuda_view(aligned((4, 1, 128), np.uint16), "float16")
    cu = cuda_view(aligned((2,), np.int64), "int64")
    try:
        fc.gdn_prefill(q, q, q, cu, output=q,
                       output_state=cuda_view(aligned((1, 1, 128, 128), np.float32), "float32"),
                       workspace=cuda_view(aligned((132 * 128 - 64,), np.uint8), "uint8"))
    except ValueError as exc:
        assert "at least 16896 bytes" in str(exc), exc
    else:
        raise AssertionError("an undersized workspace was accepted")


def scenario_gdn_other_arch():
    runtime.device_compute_capability_major = lambda device: 10
    q = cuda_view(aligned((4, 1, 128), np.uint16), "float16")
    cu = cuda_view(aligned((2,), np.int64), "int64")
    try:
        fc.gdn_prefill(q, q, q, cu)
    except fc.UnsupportedDeviceError as exc:
        assert "sm_90" in str(exc) and "sm_10x" in str(exc), exc
    else:
        raise AssertionError("sm_100 was accepted")


# ------------------------------------------------------------------- batch decode
# Against fake_batch_decode.cc (the module) and fake_cudart.c (libcudart.so.13 first on
# LD_LIBRARY_PATH): plan() stages through the pinned ring, run() packs the plan's device
# metadata; the stand-in computes the attention on the host, checked against float64.

DECODE_VARIANTS = [(dtype, window, cap) for dtype in ("float16", "bfloat16")
                   for window, cap in ((-1, 0.0), (5, 0.0), (-1, 20.0))]


def decode_uris():
    from flashinfer_cy.kernels import attention_uri

    return [attention_uri.variant("batch_decode", dtype, 128, window, cap, "fa2").uri
            for dtype, window, cap in DECODE_VARIANTS]


def cudart_counts():
    import ctypes

    counts = (ctypes.c_long * 8)()
    ctypes.CDLL("libcudart.so.13").fake_cudart_counts(counts)
    names = ("host_alloc", "malloc", "memcpy", "event_record", "event_query", "event_sync",
             "stream_wait", "stream_sync")
    return dict(zip(names, counts))


def scenario_decode():
    from attention_refs import LSE_TOL, assert_close, attention_ref, paged_batch
    from devdata import download, poison, upload

    rng = np.random.default_rng(11)
    hq, hkv, d = 8, 2, 128
    for dtype, window, cap in DECODE_VARIANTS:
        for layout, page_size in (("NHD", 4), ("HND", 5)):
            kv_lens = list(rng.permutation([1, 7, 0, 12, page_size, 2 * page_size + 1]))
            b = paged_batch(rng, kv_lens, page_size, hkv, d, dtype, layout)
            q64 = rng.standard_normal((len(kv_lens), hq, d))
            q, kc, vc = upload(q64, dtype), upload(b.k_cache, dtype), upload(b.v_cache, dtype)
            w = fc.BatchDecodeWithPagedKVCache(layout)
            before = cudart_counts()
            w.plan(b.indptr, b.indices, b.last_page_len, hq, hkv, d, page_size,
                   q_data_type=dtype, window_left=window, logits_soft_cap=cap)
            out, lse = poison(q64.shape, dtype), poison(q64.shape[:2], "float32")
            w.run(q, (kc, vc), out=out, lse=lse)
            w.prepare(q, (kc, vc), out).launch()
            # one [pages, 2, ...] tensor: k = [:, 0], v = [:, 1]
            out5 = poison(q64.shape, dtype)
            w.run(q, upload(np.stack([b.k_cache, b.v_cache], axis=1), dtype), out=out5)
            after = cudart_counts()
            what = f"{dtype} {layout} window {window} cap {cap}"
            assert after["stream_sync"] == before["stream_sync"], f"{what}: a synchronize"
            assert after["event_sync"] == before["event_sync"], f"{what}: an event wait"
            qr = download(q, dtype)
            for i in range(len(kv_lens)):
                got, got_lse = download(out, dtype)[i], download(lse, "float32")[i]
                assert np.array_equal(download(out5, dtype)[i], got), f"{what}: 5-D cache"
                if kv_lens[i] == 0:  # no key: out 0, lse -inf (FlashInfer's convention)
                    assert np.all(got == 0) and np.all(got_lse == -np.inf), what
                    continue
                k, v = b.sequence(i)  # values already rounded to dtype
                ref, ref_lse = attention_ref(qr[i:i + 1], k, v, window_left=window,
                                             logits_soft_cap=cap)
                assert_close(got, ref[0], dtype, f"{what} out[{i}]")
                assert_close(got_lse, ref_lse[0], dtype, f"{what} lse[{i}]", LSE_TOL)
            stale = w.current_plan
            w.plan(b.indptr, b.indices, b.last_page_len, hq, hkv, d, page_size,
                   q_data_type=dtype, window_left=window, logits_soft_cap=cap)
            try:
                w.run(q, (kc, vc), out=out, plan=stale)
            except fc.PlanMismatchError as exc:
                assert "stale plan" in str(exc), exc
            else:
                raise AssertionError("a stale plan was run")


def scenario_decode_repeated_runs():
    """run() keeps its last checked frame: later runs with tensors that look the same reuse
    it, so new data pointers must reach the kernel and anything that no longer fits the
    plan must still be refused."""
    from dataclasses import replace

    from attention_refs import assert_close, attention_ref, paged_batch
    from devdata import OnlyDLPack, download, poison, upload
    from refs import from_storage, to_storage

    rng = np.random.default_rng(12)
    dtype, hq, hkv, d, ps = "float16", 4, 2, 128, 4
    b = paged_batch(rng, [3, 9, 5], ps, hkv, d, dtype)
    kc, vc = upload(b.k_cache, dtype), upload(b.v_cache, dtype)
    w = fc.BatchDecodeWithPagedKVCache()
    w.plan(b.indptr, b.indices, b.last_page_len, hq, hkv, d, ps)

    def expect(q, out, what, batch=b):
        qr = download(q, dtype) if isinstance(q, fc.DeviceArray) else from_storage(
            q.owner, dtype)
        for i in range(3):
            ref, _ = attention_ref(qr[i:i + 1], *batch.sequence(i))
            assert_close(download(out, dtype)[i], ref[0], dtype, f"{what} out[{i}]")

    for step in range(3):  # new q and out buffers each step, same shapes
        q = upload(rng.standard_normal((3, hq, d)), dtype)
        out = poison((3, hq, d), dtype)
        w.run(q, (kc, vc), out=out)
        expect(q, out, f"step {step}")
    # The same q described by another producer type (a TensorDesc, not a DeviceArray):
    # still reused, and the kernel reads the new pointer.
    q_desc = cuda_view(put(to_storage(rng.standard_normal((3, hq, d)), dtype)), dtype)
    w.run(q_desc, (kc, vc), out=out)
    expect(q_desc, out, "q as a TensorDesc")
    # A producer known only through __dlpack__ is described the long way (a capsule held
    # for the call) inside the reuse of the kept frame.
    q = upload(rng.standard_normal((3, hq, d)), dtype)
    refs = sys.getrefcount(q)
    for step in range(4):  # each call's capsule (which holds q) is released after it
        out = poison((3, hq, d), dtype)
        w.run(OnlyDLPack(q), (kc, vc), out=out)
        expect(q, out, f"q through __dlpack__ only, step {step}")
    assert sys.getrefcount(q) == refs, (refs, sys.getrefcount(q))
    # One 5-D cache [pages, 2, ...] split into k and v views, then another of that shape
    # (another layer's; here with k and v swapped): each run reads the cache it is given.
    for name, batch in (("5-D cache", b), ("5-D cache, swapped",
                                          replace(b, k_cache=b.v_cache, v_cache=b.k_cache))):
        kv5 = upload(np.stack([batch.k_cache, batch.v_cache], axis=1), dtype)
        for step in range(2):
            q = upload(rng.standard_normal((3, hq, d)), dtype)
            out = poison((3, hq, d), dtype)
            w.run(q, kv5, out=out)
            expect(q, out, f"{name}, step {step}", batch)
    lse = poison((3, hq), "float32")
    w.run(q, (kc, vc), out=out, lse=lse)  # lse given: another frame
    assert np.all(np.isfinite(download(lse, "float32"))), "lse not written"
    w.run(q, (kc, vc), out=out)

    def refused(exc_type, words, **tensors):
        args = dict(q=q, kv=(kc, vc), out=out) | tensors
        try:
            w.run(args["q"], args["kv"], out=args["out"])
        except exc_type as exc:
            assert all(word in str(exc) for word in words), exc
        else:
            raise AssertionError(f"accepted: {tensors}")

    raw_q = download(q, dtype)
    spare = aligned((3 * hq * d + 8,), np.uint16)
    shifted = cuda_view(spare, dtype, (3, hq, d), (hq * d, d, 1), byte_offset=2)
    refused(ValueError, ["q", "16-byte aligned"], q=shifted)
    refused(fc.PlanMismatchError, ["q", "bfloat16"],
            q=cuda_view(spare, "bfloat16", (3, hq, d), (hq * d, d, 1)))
    refused(ValueError, ["out", "shape"], out=poison((3, hq, 64), dtype))
    from producers import ReadOnly

    refused(ValueError, ["out: the kernel writes"], out=ReadOnly(out))  # e.g. a JAX array
    refused(fc.PlanMismatchError, ["k_cache"], kv=(upload(b.k_cache[:2], dtype),
                                                   upload(b.v_cache[:2], dtype)))
    w.run(q, (kc, vc), out=out)  # and the good call still works after each refusal
    expect(q, out, "after the refusals")
    assert np.array_equal(download(q, dtype), raw_q)
    w.plan(b.indptr[:3], b.indices[:b.indptr[2]], b.last_page_len[:2], hq, hkv, d, ps)
    refused(fc.PlanMismatchError, ["batch_size"])  # a new plan: the kept frame is stale


def scenario_decode_plan_failure_and_streams():
    """A plan() that fails inside the planner, after it began to overwrite the metadata,
    leaves no plan current (run() and launch() refuse until a plan succeeds, instead of
    reading the failed plan's data with the old plan's info); a plan on another stream than
    the last plan's waits for that stream (its copies and runs may still read the buffers);
    repoint(out=) makes launch() stop returning the old out."""
    from attention_refs import assert_close, attention_ref, paged_batch
    from devdata import download, poison, upload
    from refs import to_storage

    rng = np.random.default_rng(13)
    dtype, hq, hkv, d, ps = "float16", 4, 2, 128, 4
    b = paged_batch(rng, [3, 9, 5], ps, hkv, d, dtype)
    kc, vc = upload(b.k_cache, dtype), upload(b.v_cache, dtype)
    q64 = rng.standard_normal((3, hq, d))
    q = upload(q64, dtype)
    # A float workspace that holds this batch's split-KV partial outputs and no more.
    w = fc.BatchDecodeWithPagedKVCache(float_workspace_bytes=hq * 3 * d * 2)

    def plan(stream=None):
        return w.plan(b.indptr, b.indices, b.last_page_len, hq, hkv, d, ps, stream=stream)

    def expect(out, what):
        qr = download(q, dtype)
        for i in range(3):
            ref, _ = attention_ref(qr[i:i + 1], *b.sequence(i))
            assert_close(download(out, dtype)[i], ref[0], dtype, f"{what} out[{i}]")

    def refused(call, what):
        try:
            call()
        except fc.PlanNotReadyError as exc:
            assert "failed" in str(exc) and "plan() again" in str(exc), exc
        else:
            raise AssertionError(f"{what} ran on the data of a failed plan")

    plan(0xA000)
    out = poison((3, hq, d), dtype)
    step = w.prepare(q, (kc, vc), out)
    w.run(q, (kc, vc), out=out)
    expect(out, "first plan")
    # One request more overflows the workspace inside the planner (plan() cannot know).
    grown = np.append(b.indptr, b.indptr[-1] + 1).astype(np.int32)
    try:
        w.plan(grown, np.zeros(grown[-1], np.int32), np.append(b.last_page_len, 1), hq, hkv,
               d, ps)
    except fc.errors.KernelError:
        pass
    else:
        raise AssertionError("the stand-in planner accepted an overflowing workspace")
    assert w.current_plan is None
    refused(lambda: w.run(q, (kc, vc), out=out), "run()")
    refused(step.launch, "launch()")
    waits = cudart_counts()["stream_wait"]
    plan(0xB000)  # another stream than the last plan's
    assert cudart_counts()["stream_wait"] > waits, "plan on a new stream did not wait"
    waits = cudart_counts()["stream_wait"]
    plan(0xB000)  # the same stream again, no run elsewhere since: nothing to wait for
    assert cudart_counts()["stream_wait"] == waits, "plan on the same stream waited"
    out.copy_from_host(to_storage(np.full((3, hq, d), np.nan), dtype))  # poisoned again
    assert step.launch() is out
    expect(out, "prepared launch after the failed plan and a new one")
    out2 = poison((3, hq, d), dtype)
    step.repoint(out=out2.ptr)
    assert step.launch() is None and step.out is None
    expect(out2, "launch after repoint(out=)")


# ---------------------------------------------------------------------- batched MLA
# Against fake_batch_mla.cc under the FA2 and FA3 URIs of both dtypes (512/64) and
# fake_cudart.c (an sm_90 device with 132 SMs): host checks, pinned staging of the page
# table, the arguments the binding hands plan and run (RunRecord), outputs against the
# float64 reference of tests/gpu/mla_refs.py. The kernel dir is of one release: 0.6.3's
# stand-in, or 0.7.4's (built with -DFAKE_MLA_074, under the _planabi2 names), whose plan
# leaves the schedule's copy to flashinfer_cy and whose run takes 0.7.4's 18 arguments.

def mla_uris(release="0.6.3"):
    from flashinfer_cy.kernels import attention_uri

    return [attention_uri.mla_variant(dtype, 512, 64, backend, release).uri
            for dtype in ("float16", "bfloat16") for backend in ("fa2", "fa3")]


def run_record(w):
    """What the stand-in's last run() was handed (the start of the float workspace)."""
    import ctypes

    ptr = w.workspace_buffers()[0].ptr
    ints = np.ctypeslib.as_array((ctypes.c_int64 * 7).from_address(ptr)).copy()
    scales = np.ctypeslib.as_array((ctypes.c_double * 3).from_address(ptr + 56)).copy()
    keys = ("magic", "mask_mode_code", "num_heads", "page_size", "has_lse", "lse_base_e",
            "kv_indices_len")
    return dict(zip(keys, ints.tolist()), sm_scale=float(scales[0]),
                ckv_scale=float(scales[1]), kpe_scale=float(scales[2]),
                has_ckv_scale_arr=ctypes.c_int64.from_address(ptr + 80).value)


def mla_release(uri):
    """The release of the loaded MLA module ``uri``, and what its run must have been
    handed besides 0.6.3's arguments (RunRecord's scale fields)."""
    release = runtime.load_module(uri).flashinfer_version
    if release == "0.7.4":  # 0.7.4's run: the layout's constants, f16/bf16 caches' values
        return release, dict(ckv_scale=1.0, kpe_scale=1.0, has_ckv_scale_arr=0)
    assert release == "0.6.3", release
    return release, dict(has_ckv_scale_arr=-1)  # 0.6.3's stand-in: NaN scales, not passed


def check_mla_release(w, p):
    """The plan's module is of the kernel dir's release, called with that release's run
    arguments (through the 0.7.4 layout when it is 0.7.4)."""
    from flashinfer_cy.kernels import attention, attention_uri

    release, extra = mla_release(p.uri)
    rec = run_record(w)
    assert {k: rec[k] for k in extra} == extra, (p.uri, rec)
    if release == "0.6.3":
        assert np.isnan(rec["ckv_scale"]) and np.isnan(rec["kpe_scale"]), rec
    assert p.uri.endswith(("_planabi2", "_planabi2_sm90")) == (release == "0.7.4"), p.uri
    variant = attention_uri.mla_variant(p.dtype, 512, 64, p.backend, release)
    run = attention.binding_for(variant, "run")     # the loaded lines of this module
    plan = attention.binding_for(variant, "plan")
    assert run.release == plan.release == release, (run.release, plan.release)
    assert plan.written_for == release, plan.written_for
    expect = run.signature + ("" if release == "0.6.3" else
                              " ckv_scale:F kpe_scale:F maybe_ckv_scale_arr:T?")
    assert run.module_signature == expect, run.module_signature
    return release


def _mla_check(b, out, lse, dtype, scale, causal, what, base_e=False):
    from attention_refs import LSE_TOL, assert_close
    from devdata import download
    from mla_refs import mla_ref

    got, got_lse = download(out, dtype), None if lse is None else download(lse, "float32")
    for i in range(len(b.kv_lens)):
        ckv, kpe = b.sequence(i)
        r = b.rows(i)
        ref, ref_lse = mla_ref(b.q_nope[r], b.q_pe[r], ckv, kpe, scale, causal)
        assert_close(got[r], ref, dtype, f"{what} out[{i}]")
        if got_lse is not None:
            assert_close(got_lse[r], ref_lse * (np.log(2.0) if base_e else 1.0), dtype,
                         f"{what} lse[{i}]", LSE_TOL)


def _mla_tensors(b, dtype):
    from devdata import upload

    return (upload(b.q_nope, dtype), upload(b.q_pe, dtype), upload(b.ckv_cache, dtype),
            upload(b.kpe_cache, dtype))


def scenario_mla():
    from devdata import poison, upload
    from mla_refs import mla_batch

    rng = np.random.default_rng(21)
    cases = [  # (dtype, causal, page_size, heads, qo_lens, kv_lens, backend)
        ("float16", False, 1, 4, [1, 1, 1], [5, 1, 9], "fa2"),
        ("bfloat16", True, 3, 4, [2, 4, 1], [7, 4, 10], "fa2"),
        ("float16", True, 16, 16, [5, 6], [20, 6], "auto"),   # 2 CTAs per cluster
        ("bfloat16", False, 4, 2, [3, 0, 2], [9, 3, 0], "fa3"),  # empty query / cache
    ]
    for dtype, causal, ps, heads, qo_lens, kv_lens, backend in cases:
        what = f"{dtype} causal={causal} page {ps} heads {heads} {backend}"
        b = mla_batch(rng, qo_lens, kv_lens, ps, heads, dtype, spare_pages=2)
        qn, qp, ckv, kpe = _mla_tensors(b, dtype)
        scale = float(rng.uniform(0.05, 0.2))
        w = fc.BatchMLAPagedAttention(backend=backend)
        rows = int(b.qo_indptr[-1])
        out, lse = poison((rows, heads, 512), dtype), poison((rows, heads), "float32")
        out4 = poison((rows, heads, 512), dtype)
        before = cudart_counts()  # from the plan to the last launch: no synchronize
        p = w.plan(b.qo_indptr, b.kv_indptr, b.kv_indices, b.kv_lens, heads, 512, 64, ps,
                   causal, scale, dtype)
        # one copy: the staged page table / lengths; 0.7.4 also the schedule's (the stand-in
        # "copies" 0.6.3's itself)
        copies = cudart_counts()["memcpy"] - before["memcpy"]
        assert copies == (2 if mla_release(p.uri)[0] == "0.7.4" else 1), (what, copies)
        assert w.run(qn, qp, ckv, kpe, out, lse, True) == (out, lse)
        rec = run_record(w)
        out2 = w.run(qn, qp, ckv, kpe)                # no lse: None reaches the kernel
        rec2 = run_record(w)
        out3, lse3 = w.run(qn, qp, ckv, kpe, return_lse=True, return_lse_base_on_e=True)
        rec3 = run_record(w)
        w.prepare(qn, qp, ckv, kpe, out4).launch()
        after = cudart_counts()
        assert after["stream_sync"] == before["stream_sync"], f"{what}: a synchronize"
        assert after["event_sync"] == before["event_sync"], f"{what}: an event wait"
        assert p.backend == ("fa3" if backend == "auto" else backend), (what, p.backend)
        assert p.uri.endswith("_sm90") == (p.backend == "fa3"), p.uri
        assert {k: rec[k] for k in ("magic", "mask_mode_code", "num_heads", "page_size",
                                    "has_lse", "lse_base_e", "kv_indices_len", "sm_scale")} \
            == dict(magic=0x3A1A, mask_mode_code=int(causal), num_heads=heads, page_size=ps,
                    has_lse=1, lse_base_e=0, kv_indices_len=int(b.kv_indptr[-1]),
                    sm_scale=scale), (what, rec)
        assert (rec2["has_lse"], rec2["lse_base_e"]) == (0, 0), (what, rec2)
        assert (rec3["has_lse"], rec3["lse_base_e"]) == (1, 1), (what, rec3)
        check_mla_release(w, p)  # the prepared launch's record
        _mla_check(b, out, lse, dtype, scale, causal, what)
        _mla_check(b, out2, None, dtype, scale, causal, f"{what} (allocated out)")
        _mla_check(b, out3, lse3, dtype, scale, causal, f"{what} base e", base_e=True)
        _mla_check(b, out4, None, dtype, scale, causal, f"{what} prepared")
        # the page table as a CUDA tensor, read in place
        w.plan(b.qo_indptr, b.kv_indptr, upload(b.kv_indices, "int32"), b.kv_lens, heads, 512,
               64, ps, causal, scale, dtype)
        out5 = poison((rows, heads, 512), dtype)
        w.run(qn, qp, ckv, kpe, out5)
        _mla_check(b, out5, None, dtype, scale, causal, f"{what} CUDA page table")


def scenario_mla_checks():
    """run()'s checks against the plan, the kept frame with new pointers, prepared
    repointing and rebinding, CUDA-graph replans."""
    from devdata import download, poison, upload
    from mla_refs import mla_batch
    from refs import to_storage

    rng = np.random.default_rng(22)
    dtype, heads, ps, scale = "float16", 4, 4, 0.1
    b = mla_batch(rng, [2, 1], [6, 9], ps, heads, dtype, spare_pages=1)
    qn, qp, ckv, kpe = _mla_tensors(b, dtype)
    w = fc.BatchMLAPagedAttention(backend="fa2")
    w.plan(b.qo_indptr, b.kv_indptr, b.kv_indices, b.kv_lens, heads, 512, 64, ps, True, scale,
           dtype)
    out = poison((3, heads, 512), dtype)
    good = dict(q_nope=qn, q_pe=qp, ckv_cache=ckv, kpe_cache=kpe, out=out)

    def refused(exc_type, words, **bad):
        args = good | bad
        try:
            w.run(args["q_nope"], args["q_pe"], args["ckv_cache"], args["kpe_cache"],
                  args["out"], args.get("lse"), "lse" in args)
        except exc_type as exc:
            assert all(word in str(exc) for word in words), exc
        else:
            raise AssertionError(f"accepted: {list(bad)}")

    for step in range(2):  # the kept frame: new q buffers reach the kernel
        fresh = mla_batch(rng, [2, 1], [6, 9], ps, heads, dtype, spare_pages=1)
        b.q_nope, b.q_pe = fresh.q_nope, fresh.q_pe
        qn, qp = upload(b.q_nope, dtype), upload(b.q_pe, dtype)
        good.update(q_nope=qn, q_pe=qp)
        out = good["out"] = poison((3, heads, 512), dtype)
        w.run(qn, qp, ckv, kpe, out)
        _mla_check(b, out, None, dtype, scale, True, f"step {step}")
        check_mla_release(w, w.current_plan)  # the kept frame's run
    refused(fc.PlanMismatchError, ["q_nope", "(3, 4, 512)"], q_nope=poison((3, heads, 256), dtype))
    refused(fc.PlanMismatchError, ["q_pe", "head_dim_kpe"], q_pe=poison((3, heads, 32), dtype))
    refused(fc.PlanMismatchError, ["q_nope", "num_heads"], q_nope=poison((3, 8, 512), dtype),
            q_pe=poison((3, 8, 64), dtype), out=poison((3, 8, 512), dtype))
    refused(fc.PlanMismatchError, ["q_pe", "bfloat16", "float16"],
            q_pe=poison((3, heads, 64), "bfloat16"))
    refused(fc.PlanMismatchError, ["ckv_cache", "page_size"],
            ckv_cache=upload(b.ckv_cache.reshape(-1, 2, 512), dtype))
    small = int(b.kv_indices.max())  # the largest page id is out of range
    refused(fc.PlanMismatchError, ["kpe_cache", "pages", f"page {small}"],
            kpe_cache=upload(b.kpe_cache[:small], dtype))
    refused(fc.PlanMismatchError, ["ckv_cache", "pages"], ckv_cache=upload(b.ckv_cache[:small],
                                                                          dtype))
    refused(ValueError, ["out", "shape"], out=poison((3, heads, 64), dtype))
    refused(TypeError, ["out", "float16"], out=poison((3, heads, 512), "bfloat16"))
    refused(ValueError, ["lse", "shape"], lse=poison((3, heads, 1), "float32"))
    refused(TypeError, ["lse", "float32"], lse=poison((3, heads), "float16"))
    spare = aligned((3 * heads * 512 + 8,), np.uint16)
    refused(ValueError, ["q_nope", "16-byte aligned"],
            q_nope=cuda_view(spare, dtype, (3, heads, 512), (heads * 512, 512, 1), 2))
    refused(ValueError, ["q_nope"], q_nope=cuda_view(spare, dtype, (3, heads, 512),
                                                     (1, 3, 3 * heads)))
    w.run(qn, qp, ckv, kpe, out)  # the good call still works after each refusal
    _mla_check(b, out, None, dtype, scale, True, "after the refusals")
    # prepared: repoint q_nope and q_pe, then rebind after a replan (same kernel)
    step = w.prepare(qn, qp, ckv, kpe, out)
    fresh = mla_batch(rng, [2, 1], [6, 9], ps, heads, dtype, spare_pages=1)
    b.q_nope, b.q_pe = fresh.q_nope, fresh.q_pe
    qn2, qp2 = upload(b.q_nope, dtype), upload(b.q_pe, dtype)
    step.repoint(q=qn2.ptr, q_pe=qp2.ptr)
    out.copy_from_host(np.full((3, heads, 512), 0x7E00, np.uint16))  # NaN again
    assert step.launch() is out
    _mla_check(b, out, None, dtype, scale, True, "prepared, repointed q_nope and q_pe")
    stale = w.current_plan
    w.plan(b.qo_indptr, b.kv_indptr, b.kv_indices[::-1].copy(), b.kv_lens, heads, 512, 64, ps,
           True, scale, dtype)
    b.kv_indices = b.kv_indices[::-1].copy()
    try:
        w.run(qn2, qp2, ckv, kpe, out, plan=stale)
    except fc.PlanMismatchError as exc:
        assert "stale plan" in str(exc), exc
    else:
        raise AssertionError("a stale plan was run")
    out.copy_from_host(np.full((3, heads, 512), 0x7E00, np.uint16))
    step.launch()  # rebinds to the new page table
    _mla_check(b, out, None, dtype, scale, True, "prepared after a replan")
    check_mla_release(w, w.current_plan)
    # CUDA-graph mode: fixed rows and page capacity; the plan info must not change
    g = fc.BatchMLAPagedAttention(backend="fa2", use_cuda_graph=True, max_num_pages=32,
                                  max_total_num_rows=4)
    g.plan(b.qo_indptr, b.kv_indptr, b.kv_indices, b.kv_lens, heads, 512, 64, ps, False,
           scale, dtype)
    q4n, q4p = upload(np.vstack([b.q_nope, b.q_nope[:1]]), dtype), upload(
        np.vstack([b.q_pe, b.q_pe[:1]]), dtype)
    out4 = poison((4, heads, 512), dtype)
    launch = g.prepare(q4n, q4p, ckv, kpe, out4)
    launch.launch()
    assert np.isnan(download(out4, dtype)[3]).all(), "a row no request owns was written"
    _mla_check(b, out4, None, dtype, scale, False, "graph mode")
    try:
        g.plan(b.qo_indptr, b.kv_indptr, b.kv_indices, b.kv_lens, 8, 512, 64, ps, False, scale,
               dtype)
    except ValueError as exc:
        assert "num_heads: 4 -> 8" in str(exc), exc
    else:
        raise AssertionError("graph mode accepted another num_heads")
    # Another batch composition with the same launch: fine, and the replay reads it.
    b2 = mla_batch(rng, [1, 1, 2], [3, 8, 5], ps, heads, dtype, spare_pages=1)
    g.plan(b2.qo_indptr, b2.kv_indptr, b2.kv_indices, b2.kv_lens, heads, 512, 64, ps, False,
           scale, dtype)
    ckv2, kpe2 = upload(b2.ckv_cache, dtype), upload(b2.kpe_cache, dtype)
    q4n.copy_from_host(to_storage(b2.q_nope, dtype))
    q4p.copy_from_host(to_storage(b2.q_pe, dtype))
    launch2 = g.prepare(q4n, q4p, ckv2, kpe2, out4)
    launch2.launch()
    _mla_check(b2, out4, None, dtype, scale, False, "graph mode, replanned")
    check_mla_release(g, g.current_plan)
    # 16 heads: 1 row per request plans 1 CTA per cluster, one request of 5 rows plans 2
    # (5 x 16 > 64): another grid than a graph captured with the first.
    h = fc.BatchMLAPagedAttention(backend="fa2", use_cuda_graph=True, max_num_pages=32,
                                  max_total_num_rows=8)
    h.plan(b.qo_indptr, b.kv_indptr, b.kv_indices, b.kv_lens, 16, 512, 64, ps, False, scale,
           dtype)
    try:
        h.plan(np.array([0, 5], np.int32), b.kv_indptr[:2], b.kv_indices, b.kv_lens[:1], 16,
               512, 64, ps, False, scale, dtype)
    except ValueError as exc:
        assert "grid 2x" in str(exc) and "plan() again" in str(exc), exc
    else:
        raise AssertionError("graph mode accepted a plan with another grid")
    assert h.current_plan is None


from mla_limits_driver import scenario_mla_limits  # noqa: E402,F401  (refusals)


def scenario_mla_not_its_release():
    """0.6.3's stand-in under 0.7.4's names in a dir marked 0.7.4 (a mislabelled build): the
    0.7.4 plan line matches 0.7.4's ABI, so the plan is called, but what it returns is not
    0.7.4's (plan info, staged bytes): refused, nothing copied, no plan current."""
    from mla_refs import mla_batch

    rng = np.random.default_rng(23)
    b = mla_batch(rng, [1, 2], [5, 9], 4, 4, "float16", spare_pages=1)
    w = fc.BatchMLAPagedAttention(backend="fa2")
    before = cudart_counts()["memcpy"]
    try:
        w.plan(b.qo_indptr, b.kv_indptr, b.kv_indices, b.kv_lens, 4, 512, 64, 4, False, 0.1,
               "float16")
    except fc.KernelVersionError as exc:
        assert "returned Array([" in str(exc) and "not the release it is taken for" in str(exc), exc
        assert "_planabi2" in str(exc), exc
    else:
        raise AssertionError("a plan returning 0.6.3's plan info was taken for 0.7.4's")
    assert cudart_counts()["memcpy"] == before + 1, "more than the staging copy was enqueued"
    assert w.current_plan is None


def _layout_probe():
    """FAKE_LAYOUT_PROBE=1: the stand-in's decode run takes one more argument (a release
    that added one); give the run Binding a layout that appends it, so that every run
    path -- run() with a new or kept frame, prepared launches -- must go through
    Binding.call_args for the calls to arrive."""
    from flashinfer_cy.abi import layouts
    from flashinfer_cy.kernels import attention
    key = ("batch_decode", "fa2", "run")
    attention.LAYOUTS[key] = {"0.6.3": layouts.append(attention.SIGNATURES[key][0],
                                                      "layout_probe:B=True")}


if __name__ == "__main__":
    kernel_dir, scenario = Path(sys.argv[1]), sys.argv[2]
    if os.environ.get("FAKE_LAYOUT_PROBE") == "1":
        _layout_probe()
    if not scenario.startswith(("decode", "mla")):  # those run on the stand-in libcudart
        # No CUDA runtime: calls then leave the current device alone (none to set).
        runtime._load_cudart = lambda: None
    # decode, mla, kernel_set: their modules are found through FLASHINFER_CY_KERNEL_DIR
    # (and the cache)
    if not scenario.startswith(("decode", "mla", "kernel_set")):
        for uri in ("page", "gdn_prefill_sm90"):
            fc.load_module_path(kernel_dir / uri / f"{uri}.so", uri=uri,
                                flashinfer_version="0.6.3")  # the stand-ins' signatures
    globals()[f"scenario_{scenario}"]()
    print("ok")
