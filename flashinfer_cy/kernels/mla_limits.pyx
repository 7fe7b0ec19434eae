# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Where FlashInfer's batched MLA gives a silently wrong answer, as host-side rules that
BatchMLAPagedAttention (batch_mla.pyx) applies before the planner or a kernel sees the
input. Read from the 0.6.3 and 0.7.4 wheels' include/flashinfer/attention/scheduler.cuh
(MLAPlan, the same code in both but for the staged copy), mla.cuh (FA2) and mla_hopper.cuh
(FA3); line numbers are 0.6.3's / 0.7.4's.

**Causal tile boundary** (both releases). The planner gives each query tile (64 packed rows
``row * num_heads + head``, 128 when the batch's average ``qo_len * num_heads`` is over 64:
MLAPlan's cluster size, scheduler.cuh:1469-1481 / 1652-1664) the keys up to
``kv_len - qo_len + ceil(tile_end / num_heads)`` (packed_causal_kv_end, :811 / :993); the
kernels bound their KV tiles with ``floor`` instead (mla.cuh:861-866 / 1065-1070,
mla_hopper.cuh:703-708 and 825-830 / 914-919 and 1072-1077). For a tile that is not the
request's last and ends inside a query row (``tile_end % num_heads != 0``), that row's last
visible key ``kv_len - qo_len + tile_end // num_heads`` is then one past the kernel's bound,
and the kernel leaves it out exactly when it starts a KV tile (``key % kv_tile == 0``). KV
splits do not move that: the tile's last split starts at ``limit * (key // limit)`` with a
limit of 32, 64, 128, 192 or a multiple of 256, which for such a key is a multiple of the
KV tile too (limit 32 with 64-key tiles: the key itself). KV tiles: FA3 64
(mla_hopper.cuh:988 / 1298); FA2 by shared memory per SM (DISPATCH_SMEM_CONFIG,
mla.cuh:991 / 1216): >= 221696 bytes 64, >= 147968 32, else 16. Never when ``num_heads``
divides the query tile.

**Page offsets** (0.6.3). Its FA2 load_kv (mla.cuh:204-209, 237-242) adds ``page_id *
page_stride`` to the cache pointer as a 32-bit unsigned product (int32 id times uint32
stride), its FA3 prefetch_offset (mla_hopper.cuh:190-195) the 32-bit unsigned sum ``page_id
* page_stride + row * row_stride + (lane % 8) * 8``: past 2**32 elements a page is read
from the wrong address. 0.7.4 widens the page id to int64 first (mla.cuh:230-239, 272-281,
mla_hopper.cuh:264-271). ``row * row_stride`` stays a 32-bit product in both.

**Planner int32** (both releases). MLAPlan (scheduler.cuh:1483-1565 / 1666-1748) sums the
keys every query tile reads (int64), then takes the per-cluster average into an ``int`` and
rounds it up to a multiple of 256 in int arithmetic (``kv_len_limit``): the average must
stay <= 2**31 - 1 - 256. A tile with more keys than that limit is split, computing ``keys *
cluster_size`` and ``keys + limit`` in int: both must fit. 0.7.4's flashinfer-python
refuses the same (mla/_batch_mla/_backends/_fa_common.py, _fa_plan_work_count).

**Query offsets** (both releases). The kernels address q_nope, q_pe and the output at
``q_indptr * stride_n`` from the start and ``row * stride_n + head * stride_h + lane`` within
a request, each a 32-bit unsigned expression (load_q: mla.cuh:153-155, 856-857 / 1048,
mla_hopper.cuh:144-147, 734-735 / 947; the output: mla.cuh:662, 765, 973,
mla_hopper.cuh:523, 799): a tensor whose last element lies 2**32 or more elements into it is
read or written at the wrong rows. Contiguous tensors never get there: the planner's 16384
work items of at most 128 packed rows bound ``rows x heads x 512`` to 2**30, and ``out`` must
be contiguous. A strided q_nope / q_pe view can (a row stride over 4x ``heads x dim``).

**Packed KV positions** (both releases). The kernels address a request's keys by the
position ``kv_indptr[i] * page_size + k`` in uint32 (``packed_kv_bound``, mla.cuh:873-876 /
1077-1080, mla_hopper.cuh:702, 712 / 913, 923), up to two KV tiles past ``kv_len``.
"""

from libc.stdint cimport int64_t

from flashinfer_cy._core.runtime cimport max_shared_memory_per_multiprocessor
from flashinfer_cy._core.tensor cimport describe

cdef int64_t _U32_MAX = 4294967295
cdef int64_t _I32_MAX = 2147483647
cdef int64_t _CTA_TILE_Q = 64
cdef int64_t _KV_READ_AHEAD = 128   # two 64-key tiles past kv_len
# FA3's lane offset in prefetch_offset: (lane % 8) x 8 elements (16 bytes of a 16-bit cache)
cdef int64_t _FA3_LANE_SPAN = 7 * 8


cdef int cluster_size(HostI32* qo, int64_t heads) except -1:
    """The planner's CTAs per cluster: 2 when the batch's average packed query length
    (integer division) is over 64, else 1."""
    cdef int64_t batch = qo.n - 1
    if batch <= 0:
        return 1
    return 2 if (<int64_t>qo.p[batch] - qo.p[0]) * heads // batch > 64 else 1


cdef int causal_tile_drops(HostI32* qo, HostI32* kl, int64_t heads, int64_t tile_q,
                           CausalDrop* drops) except -1:
    """The first key (request, row) the kernels would leave out, for each KV tile 16, 32,
    64 (``drops[j]``: tile ``16 << j``; request < 0: none). Causal plans only; qo_len <=
    kv_len was checked."""
    cdef Py_ssize_t i, j
    cdef int64_t rows, kv, end, row, key
    for j in range(N_KV_TILES):
        drops[j].request = -1
    if tile_q % heads == 0:
        return 0   # every tile ends on a row boundary
    for i in range(kl.n):
        rows = <int64_t>qo.p[i + 1] - qo.p[i]
        kv = kl.p[i]
        end = tile_q
        while end < rows * heads:   # the ends of the request's tiles but its last
            if end % heads:
                row = end // heads
                key = kv - rows + row
                for j in range(N_KV_TILES):
                    if drops[j].request < 0 and key % (16 << j) == 0:
                        drops[j].request, drops[j].qo_len, drops[j].kv_len = i, rows, kv
                        drops[j].row, drops[j].key = row, key
                if drops[N_KV_TILES - 1].request >= 0:
                    return 0   # a 64-key start is a 32- and 16-key one: all found
            end += tile_q
    return 0


cdef int kv_tile(str backend, int device) except -1:
    """Keys per KV tile of the 16-bit-cache kernels: FA3 64; FA2 by shared memory per SM
    (below 92672 bytes the kernel refuses to launch)."""
    cdef int smem
    if backend == "fa3":
        return 64
    smem = max_shared_memory_per_multiprocessor(device)
    return 64 if smem >= 221696 else 32 if smem >= 147968 else 16


cdef int refuse_causal_drop(CausalDrop* drops, int64_t heads, int64_t tile_q, str backend,
                            int device) except -1:
    """ValueError if a causal tile boundary drops a key with this backend's KV tile."""
    cdef int tile
    cdef CausalDrop* d
    if drops[0].request < 0:
        return 0   # not even a 16-key tile start: no device query needed
    tile = kv_tile(backend, device)
    d = &drops[0 if tile == 16 else 1 if tile == 32 else 2]
    if d.request < 0:
        return 0
    raise ValueError(
        f"causal: request {d.request} (qo_indptr: {d.qo_len} query rows, kv_len_arr: "
        f"{d.kv_len} keys) with num_heads={heads}: FlashInfer's MLA {backend} kernel "
        f"(0.6.3 and 0.7.4) would leave out key {d.key}, the last key query row {d.row} "
        f"sees: a {tile_q}-row query tile (rows x heads, packed) ends inside that row, and "
        f"where the planner's key bound for the tile rounds up, the kernel's rounds down, "
        f"which loses the key when it starts a {tile}-key KV tile. Split that request's "
        f"query rows over several requests (one row each, kv_len its last visible key + 1: "
        f"never a hit with num_heads <= 64), or use a num_heads that divides {tile_q}")


cdef int64_t _kv_split_limit(int64_t avg) noexcept:
    """MLAPlan's kv_len_limit from the per-cluster average (fits int32: checked first)."""
    if avg <= 8:
        return 32
    if avg <= 16:
        return 64
    if avg <= 32:
        return 128
    if avg <= 64:
        return 192
    return (avg + 255) // 256 * 256


cdef int check_split_arithmetic(HostI32* qo, HostI32* kl, int64_t heads, bint causal,
                                int64_t cluster, int64_t sms) except -1:
    """ValueError where MLAPlan's int32 KV-split arithmetic would overflow."""
    cdef Py_ssize_t i
    cdef int64_t rows, kv, tiles, t, eff, avg, limit
    cdef int64_t tile_q = _CTA_TILE_Q * cluster
    cdef int64_t clusters = max(sms // cluster, 1)
    cdef int64_t total = 0, longest = 0
    for i in range(kl.n):
        rows = <int64_t>qo.p[i + 1] - qo.p[i]
        kv = kl.p[i]
        tiles = (rows * heads + tile_q - 1) // tile_q
        if tiles == 0:
            continue
        longest = max(longest, kv)   # its last tile reads all its keys
        if not causal:
            total += tiles * kv
            continue
        total += kv
        for t in range(tiles - 1):
            eff = kv - rows + ((t + 1) * tile_q + heads - 1) // heads
            total += min(max(eff, 0), kv)
    avg = max((total + clusters - 1) // clusters, 1)
    if avg > _I32_MAX - 256:
        raise ValueError(
            f"kv_len_arr: the batch's query tiles read {total} keys in all, {avg} per SM "
            f"cluster ({clusters}); FlashInfer's MLA planner (0.6.3 and 0.7.4) rounds that "
            f"average up to a multiple of 256 in int32 arithmetic, which overflows (it must "
            f"stay <= {_I32_MAX - 256}): plan fewer or shorter requests per batch")
    limit = _kv_split_limit(avg)
    if longest > limit and (longest * cluster > _I32_MAX or longest + limit > _I32_MAX):
        raise ValueError(
            f"kv_len_arr: a request of {longest} keys is split into chunks of {limit}, and "
            f"FlashInfer's MLA planner (0.6.3 and 0.7.4) computes keys x {cluster} (CTAs "
            f"per cluster) and keys + {limit} in int32, which overflow (both must stay <= "
            f"{_I32_MAX}): use shorter requests")
    return 0


cdef int check_row_offsets(TensorSlot* s, str name) except -1:
    """ValueError where ``s`` ([rows, heads, dim], last dim contiguous) has an element
    2**32 or more elements past its start: the kernels' row and head offsets are 32-bit."""
    cdef int64_t last = 0
    cdef int i
    for i in range(3):
        if s.dl.shape[i] == 0:
            return 0   # nothing addressed
        last += (s.dl.shape[i] - 1) * s.dl.strides[i]
    if last <= _U32_MAX:
        return 0
    raise ValueError(
        f"{name}: its last element is {last} elements past its start ({describe(s)}); "
        f"FlashInfer's MLA kernels (0.6.3 and 0.7.4) compute row x row stride + head x "
        f"head stride in 32-bit unsigned ints, so past {_U32_MAX} they address the wrong "
        f"rows. Use a view with smaller strides (a contiguous copy always fits)")


cdef int check_packed_positions(HostI32* qo, HostI32* kv, HostI32* kl,
                                int64_t page_size) except -1:
    """ValueError where a request's packed KV positions pass 2**32."""
    cdef Py_ssize_t i
    cdef int64_t end
    for i in range(kl.n):
        if qo.p[i + 1] == qo.p[i]:
            continue   # no query rows: the kernels never read its keys
        end = <int64_t>kv.p[i] * page_size + kl.p[i] + _KV_READ_AHEAD
        if end > _U32_MAX:
            raise ValueError(
                f"kv_indptr: request {i} starts at page-table entry {kv.p[i]}, and "
                f"FlashInfer's MLA kernels (0.6.3 and 0.7.4) address its keys at "
                f"kv_indptr[{i}] x page_size ({page_size}) + key (+{_KV_READ_AHEAD} read "
                f"ahead) in 32-bit unsigned ints: {end} does not fit. Plan fewer pages per "
                f"batch (the page table's length x page_size must stay below 2**32)")
    return 0


cdef int check_page_offsets(TensorSlot* s, str name, int64_t page_size, int64_t last_page,
                            bint offset32, bint fa3) except -1:
    """ValueError where the kernel's 32-bit cache offsets wrap for cache ``s``, whose
    largest page read is ``last_page``. ``offset32``: the module multiplies page id x page
    stride in 32 bits (0.6.3); ``fa3``: its FA3 sums the row and lane offsets in too."""
    cdef int64_t stride = s.dl.strides[0]
    cdef int64_t row = (page_size - 1) * s.dl.strides[1]
    cdef int64_t lane = _FA3_LANE_SPAN if fa3 and offset32 else 0
    cdef int64_t extra = row + lane if fa3 else 0
    if row > _U32_MAX - lane:
        raise ValueError(
            f"{name}: the last row of a page is {row} elements into it (row stride "
            f"{s.dl.strides[1]} x {page_size - 1}, {describe(s)}); FlashInfer's MLA kernels "
            f"compute that offset in 32-bit unsigned ints: use a smaller row stride")
    if not offset32 or stride == 0 or last_page <= (_U32_MAX - extra) // stride:
        return 0   # (a negative last_page: no page read)
    raise ValueError(
        f"{name}: page {last_page} begins {last_page} x {stride} elements into the cache "
        f"({describe(s)}); FlashInfer 0.6.3's MLA {'fa3' if fa3 else 'fa2'} kernel "
        f"computes page id x page stride{' + row and lane offsets' if fa3 else ''} in "
        f"32-bit unsigned ints, so past {_U32_MAX} elements it reads the wrong page. Keep "
        f"the pages this batch reads below page {(_U32_MAX - extra) // stride + 1} (a "
        f"cache of at most that many pages, or a page table naming no later page), or use "
        f"FlashInfer 0.7.4 modules (64-bit offsets)")
