"""Eight Python threads, each with its own CUDA stream, calling kernels concurrently for ~2 s.

* Every checked result is right: at checkpoints a thread poisons its output with NaN on its
  own stream, launches, waits for *its own stream only* and compares with a float64
  reference. A launch that went to another thread's stream (or the legacy stream) would
  race with the check; data of another thread would not match.
* Calls overlap (the GIL is released inside them): each call is timed on the host, and the
  time spent inside calls, summed over threads, is compared with the wall time. With the
  GIL held through a call, at most one thread could be inside one at a time (ratio <= ~1);
  the norm inputs are large enough that the GPU falls behind, so launches block in the
  driver until the stream's queue drains, which makes the released GIL visible as a ratio
  well above 1.

Inputs are DeviceArray/TensorDesc (no torch needed); streams come from cuda.bindings.
"""

from __future__ import annotations

import gc
import threading
import time
import traceback

import numpy as np
import pytest

import flashinfer_cy as fc
from devdata import BITS, upload
from gpu_env import require_module
from refs import TOL, from_storage, rmsnorm_ref, round_to, to_storage

THREADS = 8
SECONDS = 2.0
CHECK_EVERY = 40  # launches between two checked results, per thread (append, decode)


def _stream():
    """A non-blocking stream (no implicit ordering with the legacy default stream)."""
    from cuda.bindings import runtime as rt

    err, s = rt.cudaStreamCreateWithFlags(rt.cudaStreamNonBlocking)
    assert int(err) == 0, f"cudaStreamCreateWithFlags: {err!r}"
    return int(s)


def _destroy(s):
    from cuda.bindings import runtime as rt

    rt.cudaStreamSynchronize(s)
    rt.cudaStreamDestroy(s)


def run_threads(body, n=THREADS):
    """Run ``body(i, stream, timer)`` in ``n`` threads started together; ``timer(fn)`` times
    one call. Returns (per-thread results, seconds inside calls summed over threads, wall
    seconds). The first exception of any thread fails the test with its thread named."""
    barrier = threading.Barrier(n)
    results, errors, inside = [None] * n, [], [0.0] * n
    streams = [_stream() for _ in range(n)]

    def worker(i):
        def timer(fn, *args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                inside[i] += time.perf_counter() - t
        timer.inside = lambda: inside[i]
        try:
            barrier.wait()
            results[i] = body(i, streams[i], timer)
        except BaseException:  # noqa: BLE001 - reported below with the thread
            # Text only: a traceback would keep the thread's DeviceArrays alive past the
            # destruction of the stream they are freed on.
            errors.append((i, traceback.format_exc()))
            barrier.abort()

    threads = [threading.Thread(target=worker, args=(i,), name=f"fcy-{i}") for i in range(n)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    wall = time.perf_counter() - t0
    assert not any(t.is_alive() for t in threads), "a thread did not finish within 120 s"
    gc.collect()  # every DeviceArray freed (stream-ordered) before its stream goes
    for s in streams:
        _destroy(s)
    if errors:
        # the thread that failed first, not those its barrier.abort() woke
        i, tb = ([e for e in errors if "BrokenBarrierError" not in e[1]] or errors)[0]
        raise AssertionError(f"thread {i} failed:\n{tb}")
    return results, sum(inside), wall


# ------------------------------------------------------------------------------- norm

NAN_BITS = {"float16": 0x7E00, "bfloat16": 0x7FC0}


def test_rmsnorm_from_eight_threads_is_correct_and_overlaps():
    """Phase 1 (1.5 s): launches only, so each stream's queue fills and launches block in the
    driver; the time inside calls is measured. Phase 2: checked launches."""
    require_module("norm")
    rows, hidden = 8192, 8192  # 128 MiB per tensor: the GPU, not the host, is the bottleneck

    def body(i, s, timer):
        rng = np.random.default_rng(1000 + i)
        dtype = ("float16", "bfloat16")[i % 2]
        tile = round_to(rng.standard_normal((64, hidden)) * (1 + i), dtype)  # rows repeat
        w64 = round_to(rng.standard_normal(hidden), dtype)
        x = fc.DeviceArray.from_numpy(np.tile(to_storage(tile, dtype), (rows // 64, 1)),
                                      stream=s, dtype=dtype)
        w = upload(w64, dtype, stream=s)
        ref = rmsnorm_ref(tile, w64, 1e-6)  # of the 64 distinct rows
        out = fc.DeviceArray.empty((rows, hidden), dtype, stream=s)
        nan = np.full((rows, hidden), NAN_BITS[dtype], dtype=np.uint16)
        launches, longest = 0, 0.0
        deadline = time.perf_counter() + 1.5
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            timer(fc.rmsnorm, x, w, 1e-6, out=out, stream=s)
            longest = max(longest, time.perf_counter() - t)
            launches += 1
        phase1 = timer.inside()
        checks = 0
        for _ in range(3):  # poisoned, launched, waited for on this stream only, compared
            out.copy_from_host(nan, stream=s)
            fc.rmsnorm(x, w, 1e-6, out=out, stream=s)
            bits = out.numpy(stream=s, dtype=np.uint16).reshape(rows // 64, 64, hidden)
            assert (bits == bits[0]).all(), (
                f"thread {i} ({dtype}): rows that hold the same input differ (unwritten or "
                f"written by another thread's launch)")
            tile_bits = bits[rng.integers(rows // 64)]
            got = from_storage(tile_bits.view(np.float16) if dtype == "float16" else tile_bits,
                               dtype)
            np.testing.assert_allclose(got, ref, err_msg=f"thread {i} ({dtype})", **TOL[dtype])
            checks += 1
        return launches, checks, phase1, longest

    results, inside, wall = run_threads(body)
    phase1 = sum(r[2] for r in results)
    ratio = phase1 / 1.5
    print(f"{THREADS} threads, phase 1: {[r[0] for r in results]} rmsnorm launches, longest "
          f"call {max(r[3] for r in results) * 1e3:.1f} ms; time inside calls {phase1:.2f} s "
          f"over 1.5 s = {ratio:.2f} threads inside a call on average; "
          f"{sum(r[1] for r in results)} results checked")
    assert ratio > 2.0, (
        f"on average only {ratio:.2f} of {THREADS} threads were inside rmsnorm at once while "
        f"their launches were GPU-bound (longest call {max(r[3] for r in results) * 1e3:.1f} "
        f"ms): the GIL looks held during the call")


def report(what, results, inside, wall):
    """Print the counts; every thread must have checked at least two results."""
    print(f"{THREADS} threads: {sum(r[0] for r in results)} {what}, "
          f"{sum(r[1] for r in results)} checked; {inside / wall:.2f} threads inside a call "
          f"on average")
    assert all(r[1] >= 2 for r in results), f"(launches, checks) per thread: {results}"


def _download_on(a, dtype, stream):
    """float64 copy of ``a``, waiting for ``stream`` only (not the whole device)."""
    return from_storage(a.numpy(stream=stream), dtype)  # float16, or bfloat16 bits


# ------------------------------------------------------------------------------- page append

def test_append_paged_kv_cache_from_eight_threads():
    require_module("page")
    pages, page, heads, hd, dtype = 12, 16, 4, 128, "float16"
    lens = np.array([20, 37, 5])                 # tokens per request after the append
    new = np.array([3, 8, 5])                    # the last ones are appended
    npg = -(-lens // page)

    def body(i, s, timer):
        rng = np.random.default_rng(2000 + i)
        indices = rng.permutation(pages)[:npg.sum()].astype(np.int32)
        indptr = np.concatenate([[0], np.cumsum(npg)]).astype(np.int32)
        last = (lens - (npg - 1) * page).astype(np.int32)
        bi, pos = fc.get_batch_indices_positions(np.concatenate([[0], np.cumsum(new)]),
                                                 fc.get_seq_lens(indptr, last, page))
        slot_page = indices[indptr[bi] + pos // page]
        shape = (pages, page, heads, hd)
        base = rng.integers(0, 2**16, size=shape, dtype=np.uint16)
        rows = [rng.integers(0, 2**16, size=(int(new.sum()), heads, hd), dtype=np.uint16)
                for _ in range(2)]
        expect = []
        for r in rows:
            e = base.copy()
            e[slot_page, pos % page] = r
            expect.append(e)
        k, v = upload(base, dtype, stream=s), upload(base, dtype, stream=s)
        dev_rows = [upload(r, dtype, stream=s) for r in rows]
        idx = [upload(a, "int32", stream=s) for a in (bi, pos, indices, indptr, last)]
        launches = checks = 0
        deadline = time.perf_counter() + SECONDS
        while time.perf_counter() < deadline:
            j = launches % 2
            timer(fc.append_paged_kv_cache, dev_rows[j], dev_rows[1 - j], *idx[:2], k, v,
                  *idx[2:], stream=s)
            launches += 1
            if launches % CHECK_EVERY == 0:
                got_k = k.numpy(stream=s, dtype=BITS[dtype])
                got_v = v.numpy(stream=s, dtype=BITS[dtype])
                assert (got_k == expect[j]).all() and (got_v == expect[1 - j]).all(), (
                    f"thread {i}, launch {launches}: the cache does not hold the rows this "
                    f"thread appended last")
                checks += 1
        return launches, checks

    report("appends", *run_threads(body))


# ------------------------------------------------------------------------------- decode

def test_batch_decode_from_eight_threads():
    if not hasattr(fc, "BatchDecodeWithPagedKVCache"):
        pytest.skip("batch decode API not present")
    from attention_io import need
    from attention_refs import TOL as ATOL, attention_ref, paged_batch, rand

    dtype, hq, hkv, hd, page = "float16", 8, 2, 128, 16
    need("batch_decode", dtype, hd)
    kv_lens = [33, 1, 70, 16]

    def body(i, s, timer):
        rng = np.random.default_rng(3000 + i)
        batch = paged_batch(rng, kv_lens, page, hkv, hd, dtype)
        q64 = rand(rng, (len(kv_lens), hq, hd), dtype)
        refs = [attention_ref(q64[r:r + 1], *batch.sequence(r))[0][0]
                for r in range(len(kv_lens))]
        q = upload(q64, dtype, stream=s)
        kv = (upload(batch.k_cache, dtype, stream=s), upload(batch.v_cache, dtype, stream=s))
        out = fc.DeviceArray.empty((len(kv_lens), hq, hd), dtype, stream=s)
        nan = np.full(out.shape, NAN_BITS[dtype], dtype=np.uint16)
        w = fc.BatchDecodeWithPagedKVCache("NHD", float_workspace_bytes=16 << 20)
        launches = checks = 0
        deadline = time.perf_counter() + SECONDS
        while time.perf_counter() < deadline:
            if launches % CHECK_EVERY == 0:  # re-plan too: plan() is per wrapper, per thread
                timer(w.plan, batch.indptr, batch.indices, batch.last_page_len, hq, hkv, hd,
                      page, q_data_type=dtype, stream=s)
                out.copy_from_host(nan, stream=s)
            timer(w.run, q, kv, out=out, stream=s)
            if launches % CHECK_EVERY == 0:
                got = _download_on(out, dtype, s)
                for r, ref in enumerate(refs):
                    np.testing.assert_allclose(got[r], ref, err_msg=f"thread {i} request {r}",
                                               **ATOL[dtype])
                checks += 1
            launches += 1
        return launches, checks

    report("decode runs", *run_threads(body))
