"""BatchMLAPagedAttention's refusals of input on which FlashInfer's MLA planner or kernels
give a silently wrong answer (flashinfer_cy/kernels/mla_limits.pyx), against the CPU
stand-ins: scenario ``mla_limits`` of fake_kernel_driver.py (which imports it), run by
test_mla_call_path.py in a kernel dir of one release, with the stand-in libcudart's shared
memory per SM set (FAKE_CUDART_SMEM_PER_SM) to pick the FA2 kernel's KV tile.

The causal tile boundary is checked against ``missing_keys``: a model of what FlashInfer's
planner hands each work item (scheduler.cuh MLAPlan: query tiles, their key bound, KV
splits) and which keys the kernels' tile loop then reads (mla.cuh / mla_hopper.cuh), written
from those sources independently of the rule flashinfer_cy implements: plan() must refuse
exactly the batches where a key a query row sees is read by no work item. The stand-in
computes every key, so only the refusal is under test here."""

from __future__ import annotations

import os

import numpy as np

import flashinfer_cy as fc
from flashinfer_cy._core import runtime

SMS = 132                      # the stand-in libcudart's SM count
PTR = 0x7F0000000000           # a cache that is never dereferenced (prepare() only)
U32 = 2**32
HUGE_PAGE = 2**30              # one or two pages hold 2**31 - 1 keys


def fa2_kv_tile():
    """FA2's KV tile on the stand-in device (mla.cuh DISPATCH_SMEM_CONFIG)."""
    smem = int(os.environ.get("FAKE_CUDART_SMEM_PER_SM") or 233472)
    return 64 if smem >= 221696 else 32 if smem >= 147968 else 16


def _ceil(a, b):
    return -(-a // b)


def _split_limit(avg):
    if avg <= 64:
        return 32 if avg <= 8 else 64 if avg <= 16 else 128 if avg <= 32 else 192
    return _ceil(avg, 256) * 256


def missing_keys(qo_lens, kv_lens, heads, kv_tile, causal=True):
    """(request, key) pairs some query row attends to that no work item's tile loop reads."""
    cluster = 2 if sum(q * heads for q in qo_lens) // len(qo_lens) > 64 else 1
    tile_q = 64 * cluster
    items = []   # (request, query tile, keys the planner gives it)
    for i, (q, kv) in enumerate(zip(qo_lens, kv_lens)):
        tiles = _ceil(q * heads, tile_q)
        for t in range(tiles):
            end = kv
            if causal and t + 1 < tiles:
                end = max(min(kv - q + _ceil((t + 1) * tile_q, heads), kv), 0)
            items.append((i, t, end))
    limit = _split_limit(max(_ceil(sum(e for *_, e in items), SMS // cluster), 1))
    missing = set()
    for i, t, end in items:
        q, kv = qo_lens[i], kv_lens[i]
        bound = kv - q + ((t + 1) * tile_q) // heads if causal else kv   # the kernels' floor
        read = set()
        for start in range(0, end, limit) if end else [0]:   # KV splits of this tile
            stop = min(start + limit, end)
            n = _ceil(min(stop, bound), kv_tile) - start // kv_tile   # tiles it loops over
            read.update(range(start, min(start + n * kv_tile, stop)))
        last_row = (min((t + 1) * tile_q, q * heads) - 1) // heads
        sees = kv - q + last_row + 1 if causal else kv
        missing.update((i, k) for k in range(sees) if k not in read)
    return missing


def _plan(w, qo_lens, kv_lens, heads, causal, page_size=16, table=None, dtype="float16"):
    pages = [max(_ceil(n, page_size), 1) for n in kv_lens]
    kv_indptr = np.concatenate([[0], np.cumsum(pages)]).astype(np.int32)
    if table is None:
        table = np.arange(kv_indptr[-1], dtype=np.int32)
    qo_indptr = np.concatenate([[0], np.cumsum(qo_lens)]).astype(np.int32)
    return w.plan(qo_indptr, kv_indptr, table, np.asarray(kv_lens, np.int32), heads, 512, 64,
                  page_size, causal, 0.1, dtype)


def _refused(call, *words):
    try:
        call()
    except ValueError as exc:
        assert all(w in str(exc) for w in words), (words, exc)
        return str(exc)
    raise AssertionError(f"accepted; expected a ValueError naming {words}")


def check_causal_tiles():
    """plan() refuses a causal batch iff the model finds a key no tile reads, for the FA3
    kernel (64-key tiles) and the FA2 one (its tile from the device's shared memory)."""
    rng = np.random.default_rng(31)
    ws = {b: fc.BatchMLAPagedAttention(backend=b) for b in ("fa2", "fa3")}
    tiles = {"fa2": fa2_kv_tile(), "fa3": 64}
    # 3 heads, 50 rows: a 128-row tile ends inside row 42, key kv - 8 (kv 72: key 64)
    # (drops key 48: FA2 tile 16 only; 64: every tile; 65: none; 96: tiles 16 and 32)
    cases = [([50], [kv], 3) for kv in (56, 72, 73, 104)]
    # 128 heads averaging half a row per request: 64-row tiles end mid-row (decode), key
    # kv - 1 (16, 32, 64 and 65 as above)
    cases += [([1, 0], [kv, 5], 128) for kv in (17, 33, 65, 66)]
    for _ in range(400):
        heads = int(rng.choice([1, 2, 3, 5, 6, 7, 10, 12, 20, 24, 48, 96, 128]))
        qo = [int(rng.integers(0, 40)) for _ in range(int(rng.integers(1, 4)))]
        kv = [q + int(rng.integers(0, 150)) for q in qo]
        cases.append((qo, kv, heads))
    hits = {b: 0 for b in ws}
    for qo, kv, heads in cases:
        for backend, w in ws.items():
            lost = missing_keys(qo, kv, heads, tiles[backend])
            call = lambda: _plan(w, qo, kv, heads, True)   # noqa: E731
            what = f"{backend} qo {qo} kv {kv} heads {heads}"
            if lost:
                hits[backend] += 1
                request, key = min(lost)
                msg = _refused(call, "causal", f"num_heads={heads}", f"{tiles[backend]}-key")
                assert f"request {request} " in msg and f"key {key}," in msg, (what, msg)
            else:
                try:
                    call()
                except ValueError as exc:
                    raise AssertionError(f"{what}: refused, but no key is lost: {exc}")
            assert missing_keys(qo, kv, heads, tiles[backend], causal=False) == set(), what
    assert min(hits.values()) >= 10 and max(hits.values()) < len(cases) - 100, hits  # both
    # Non-causal plans of the same shapes are never refused for this.
    _plan(ws["fa3"], [50], [72], 3, False)


def _release(p):
    return runtime.load_module(p.uri).flashinfer_version


def check_page_offsets():
    """0.6.3's kernels add page id x page stride in 32-bit unsigned ints (FA3 with the row
    and lane offsets): run() and prepare() refuse caches whose pages this batch reads end
    past that; 0.7.4's take them. The row offset is 32-bit in both."""
    from devdata import upload

    heads = 4
    qn = upload(np.zeros((1, heads, 512)), "float16")
    qp = upload(np.zeros((1, heads, 64)), "float16")

    def cache(pages, strides=None):
        return fc.TensorDesc(PTR, (pages, 16, 512), "float16", strides=strides)

    top = U32 // (16 * 512)                     # 524288: the first page past 2**32
    lane_page = U32 - (15 * 512 + 7 * 8)        # FA3 0.6.3: page 1 of this stride wraps
    row = 286331160                             # x 15 rows > 2**32 - 1
    for backend in ("fa2", "fa3"):
        w = fc.BatchMLAPagedAttention(backend=backend)
        # (page the table names, ckv cache, kpe cache, which releases/backends refuse, words)
        cases = [
            (top, cache(top + 1), fc.TensorDesc(PTR, (top + 1, 16, 64), "float16"),
             {"0.6.3"}, ["ckv_cache", f"page {top} "]),
            (top - 1, cache(top), fc.TensorDesc(PTR, (top, 16, 64), "float16"), set(), []),
            (1, cache(2, (lane_page, 512, 1)), None, {"0.6.3"} if backend == "fa3" else set(),
             ["ckv_cache", "page 1 ", "row and lane"]),
            (1, cache(2, (lane_page - 8, 512, 1)), None, set(), []),
            (0, cache(1, (U32 - 8, row, 1)), None, {"0.6.3", "0.7.4"}, ["ckv_cache", "row"]),
            (0, cache(1, (U32 - 8, row - 8, 1)), None,
             {"0.6.3"} if backend == "fa3" else set(), ["ckv_cache", "row"]),
        ]
        for page, ckv, kpe, refusing, words in cases:
            p = _plan(w, [1], [1], heads, False, table=np.array([page], np.int32))
            release = _release(p)
            kpe = kpe or fc.TensorDesc(PTR, (ckv.shape[0], 16, 64), "float16")
            if release in refusing:
                _refused(lambda: w.prepare(qn, qp, ckv, kpe), *words)
                _refused(lambda: w.run(qn, qp, ckv, kpe), *words)   # never launched
            else:
                w.prepare(qn, qp, ckv, kpe)   # accepted (not launched: the cache is fake)
        # A CUDA page table is not read on the host: the cache's last page counts.
        big = cache(top + 1)
        kpe = fc.TensorDesc(PTR, (top + 1, 16, 64), "float16")
        p = _plan(w, [1], [1], heads, False, table=upload(np.zeros(1), "int32"))
        if _release(p) == "0.6.3":
            _refused(lambda: w.prepare(qn, qp, big, kpe), "ckv_cache", f"page {top} ")
        else:
            w.prepare(qn, qp, big, kpe)
        _plan(w, [1], [1], heads, False, table=np.zeros(1, np.int32))
        w.prepare(qn, qp, big, kpe)   # a host table naming page 0 only: fine in both


def check_row_offsets():
    """q_nope / q_pe views whose last element lies 2**32 or more elements past their start
    (the kernels' row and head offsets are 32-bit, both releases): refused by run() and
    prepare(); one element less is taken."""
    from devdata import upload

    heads = 4
    w = fc.BatchMLAPagedAttention(backend="fa2")
    _plan(w, [2], [2], heads, False)
    qn = upload(np.zeros((2, heads, 512)), "float16")
    qp = upload(np.zeros((2, heads, 64)), "float16")
    ckv = upload(np.zeros((1, 16, 512)), "float16")
    kpe = upload(np.zeros((1, 16, 64)), "float16")
    top = U32 - 1                                 # the last offset a 32-bit int holds
    head = (top - 511 - 2048) // 3 // 8 * 8       # q_nope: row stride 2048, head stride
    row = (top - 63 - 3 * 64) // 8 * 8            # q_pe: row stride, head stride 64
    for name, ok, bad in (
            ("q_nope", fc.TensorDesc(PTR, (2, heads, 512), "float16", strides=(2048, head, 1)),
             fc.TensorDesc(PTR, (2, heads, 512), "float16", strides=(2048, head + 8, 1))),
            ("q_pe", fc.TensorDesc(PTR, (2, heads, 64), "float16", strides=(row, 64, 1)),
             fc.TensorDesc(PTR, (2, heads, 64), "float16", strides=(row + 8, 64, 1)))):
        args = (ok, qp, ckv, kpe) if name == "q_nope" else (qn, ok, ckv, kpe)
        w.prepare(*args)   # accepted (not launched: the view is fake)
        args = (bad, qp, ckv, kpe) if name == "q_nope" else (qn, bad, ckv, kpe)
        _refused(lambda: w.prepare(*args), name, "32-bit", "wrong rows")
        _refused(lambda: w.run(*args), name, "32-bit", "wrong rows")   # never launched


def check_planner_int32():
    """The planner's int32 KV-split arithmetic (both releases): the per-cluster average
    rounded up to 256, and a split tile's keys x cluster size and keys + limit."""
    w = fc.BatchMLAPagedAttention(backend="fa2")

    def plan(qo, kv, heads):
        return lambda: _plan(w, qo, kv, heads, False, page_size=HUGE_PAGE)

    # 132 rows x 64 heads: 66 tiles of 128 over 66 clusters, the average is kv itself
    plan([132], [2**31 - 1 - 256], 64)()
    _refused(plan([132], [2**31 - 256], 64), "kv_len_arr", "multiple of 256")
    _refused(plan([264], [2**30 + 1], 64), "kv_len_arr", "multiple of 256")   # twice that
    # one 128-head row (a cluster of 2): split, keys x 2 must fit
    plan([1], [2**30 - 1], 128)()
    _refused(plan([1], [2**30], 128), "kv_len_arr", "x 2")
    # one 16-head row (a cluster of 1): keys + limit must fit
    plan([1], [2**31 - 2**24 - 1], 16)()
    _refused(plan([1], [2**31 - 1], 16), "kv_len_arr", "keys +")


def scenario_mla_limits():
    check_causal_tiles()
    check_page_offsets()
    check_row_offsets()
    check_planner_int32()
