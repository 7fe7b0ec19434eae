# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Batched MLA (multi-head latent attention, DeepSeek-V2/V3 style, absorbed form) over a
paged latent cache: flashinfer's ``batch_mla_attention_*`` modules, FA2 and FA3 (``_sm90``),
what flashinfer-python's ``BatchMLAPagedAttentionWrapper`` calls; 0.6.3's, and 0.7.4's
(named ``..._planabi2``: its plan returns the staged byte count and leaves the schedule's
copy to us, its run takes fp8-cache scales, passed as "none" through a layout).

    w = BatchMLAPagedAttention()
    w.plan(qo_indptr, kv_indptr, kv_indices, kv_len_arr, num_heads, 512, 64, page_size,
           causal, sm_scale, "bfloat16")           # host arrays; no sync, no D->H copy
    out = w.run(q_nope, q_pe, ckv_cache, kpe_cache)  # [rows, heads, 512]

Scores are ``(q_nope . ckv + q_pe . kpe) * sm_scale`` over the request's first
``kv_len_arr[i]`` cache entries (pages ``kv_indices[kv_indptr[i]:kv_indptr[i+1]]``), causal
rows aligned to the end; out = softmax . ckv. Caches: ``ckv_cache [num_pages, page_size,
head_dim_ckv]``, ``kpe_cache [num_pages, page_size, head_dim_kpe]`` (what
append_paged_mla_kv_cache writes).

This module is the wrapper's use of the ABI (attention.SIGNATURES "batch_mla", and
RELEASE_SIGNATURES / LAYOUTS for 0.7.4), its argument checks and packing; plan()'s staging,
workspaces and stream ordering are batch_plan.pyx's, run()'s kept frame and
prepare()/launch() batch_run.pyx's. Input FlashInfer's MLA would get silently wrong (causal
tile boundaries, 0.6.3's 32-bit page offsets, the planner's int32 arithmetic) is refused by
mla_limits.pyx's rules, applied here.
"""

from cpython.ref cimport PyObject
from libc.stdint cimport int64_t, uint32_t

from flashinfer_cy._abi.dlpack cimport kDLCUDA, kDLCPU
from flashinfer_cy._core.binding cimport (Binding, CallFrame, frame_init, set_float, set_int,
                                          set_bool)
from flashinfer_cy._core.runtime cimport compute_capability_major, multiprocessor_count
from flashinfer_cy._core.tensor cimport (TensorSlot, TensorDesc, dtype_key, describe,
                                         check_cuda, check_ndim, check_same_device, as_bool)
from flashinfer_cy._core.pinned cimport PinnedSlot
from flashinfer_cy.kernels.attention cimport load_binding, check_qkv_tensor, dtype_key_of, _A
from flashinfer_cy.kernels.batch_plan cimport (
    HostI32, Staging, RunLayout, PlanBase, hosts, host_i32, read_indptrs, same_args,
    stream_arg, staging_init, table_seg, at_word, pack_i32)
from flashinfer_cy.kernels.batch_run cimport CheckedRunner
from flashinfer_cy.kernels cimport mla_limits as _lim

from flashinfer_cy import errors as _errors
from flashinfer_cy.errors import PlanMismatchError
from flashinfer_cy.kernels import attention_uri as _uri

# FlashInfer's MLA planner (scheduler.cuh MLAPlan, 0.6.3 and 0.7.4 alike) sizes its work
# lists for 16384 entries and does not check: more would overflow them (host and device).
# Its work count is at most (clusters <= SMs) + sum over requests of
# ceil(qo_len * num_heads / 64).
MLA_MAX_WORKS = 16384
_MLA_TILE = 64
# The releases whose MLA plan returns (plan info, staged bytes) and leaves the copy of the
# schedule from the page-locked mirror to its caller (their attention.RELEASE_SIGNATURES
# line); 0.6.3's plan enqueues that copy itself.
_STAGING_PLAN_RELEASES = ("0.7.4",)
# The releases whose MLA kernels widen page id x page stride to 64 bits (0.7.4's load_kv /
# prefetch_offset cast the page id to int64_t); 0.6.3's multiply in 32-bit unsigned ints.
_WIDE_PAGE_OFFSET_RELEASES = ("0.7.4",)

_INPUT_NAMES = ("q_nope", "q_pe", "ckv_cache", "kpe_cache")
_FROZEN_NAMES = ("uri", "num_heads", "head_dim_ckv", "head_dim_kpe", "page_size", "causal",
                 "sm_scale", "planned_num_rows")

cdef dict _fa3_usable = {}   # (FA3 module URI, device) -> bool


cdef class MLAPlan(PlanBase):
    """The result of ``BatchMLAPagedAttention.plan()``: what was planned and the kernel's
    plan-info Array (released with the plan). Immutable; valid for ``run()`` until its
    wrapper plans again (``generation``)."""

    cdef readonly int num_heads
    cdef readonly int head_dim_ckv
    cdef readonly int head_dim_kpe
    cdef bint page_offset32    # its module computes page offsets in 32 bits (0.6.3)
    cdef bint table_on_device  # page ids unknown here: any page of the cache may be read

    def frozen_key(self):
        """What a CUDA graph bakes in: replans in graph mode must keep it."""
        return (self.uri, self.num_heads, self.head_dim_ckv, self.head_dim_kpe,
                self.page_size, self.causal, self.sm_scale, self.planned_num_rows)

    def __repr__(self):
        return (f"<MLAPlan {self.backend} gen={self.generation} batch={self.batch_size} "
                f"heads={self.num_heads} ckv/kpe={self.head_dim_ckv}/{self.head_dim_kpe} "
                f"page_size={self.page_size} rows={self.total_num_rows} {self.dtype}"
                f"{' causal' if self.causal else ''}>")


cdef class _MLAConfig:
    """plan()'s validated scalars and, once resolved, the module's bindings (the wrapper
    keeps the last one: a decode loop plans the same configuration every step)."""
    cdef tuple key
    cdef str dtype
    cdef int heads, ckv, kpe, page_size
    cdef bint causal
    cdef double sm_scale
    cdef object variant
    cdef str backend
    cdef Binding plan_b
    cdef Binding run_b
    cdef bint staged     # plan_b's release leaves the schedule's copy to us


cdef class BatchMLAPagedAttention(CheckedRunner):
    """Batched MLA paged attention with a plan/run split.

    ``BatchMLAPagedAttention(*, use_cuda_graph=False, backend="auto", device=0,
    float_workspace_buffer=None, int_workspace_buffer=None, float_workspace_bytes=128 MiB,
    int_workspace_bytes=8 MiB, max_num_pages=None, max_total_num_rows=None,
    pinned_slots=4)``: as the MHA wrappers. ``backend``: "auto" (FA3 on sm_90 when its
    module is available, else FA2), "fa2", "fa3". Graph mode needs ``max_num_pages``
    (page-table capacity); q's rows are fixed at ``max_total_num_rows`` (default: the first
    plan's), the batch may change between replans.
    """

    cdef _MLAConfig _cfg
    cdef list _frozen_info             # graph mode: the first plan's plan info

    def __cinit__(self, *args, **kwargs):
        self.q_name = "q_nope"

    # -- plan ----------------------------------------------------------------------------

    cdef _MLAConfig _config(self, tuple key):
        cdef _MLAConfig c = self._cfg
        if c is not None and same_args(key, c.key):
            return c
        dtype, heads, ckv, kpe, page, causal, scale = _A().mla_plan_config(*key)
        c = _MLAConfig.__new__(_MLAConfig)
        c.key, c.dtype, c.heads, c.ckv, c.kpe = key, dtype, heads, ckv, kpe
        c.page_size, c.causal, c.sm_scale = page, causal, scale
        self._cfg = c
        return c

    cdef int _resolve(self, _MLAConfig c) except -1:
        """Pick the backend and load the plan/run bindings of ``c`` (once per config)."""
        cdef str backend = self.backend
        if c.run_b is not None:
            return 0
        if backend == "auto":
            fa3 = _uri.mla_variant(c.dtype, c.ckv, c.kpe, "fa3")
            key = (fa3.uri, self.device)
            usable = _fa3_usable.get(key)
            if usable is None:
                usable = False
                if compute_capability_major(self.device) == 9:
                    try:
                        load_binding(fa3, "plan")
                        usable = True
                    except _errors.KernelNotFoundError:
                        pass
                _fa3_usable[key] = usable
            backend = "fa3" if usable else "fa2"
        elif backend == "fa3" and compute_capability_major(self.device) != 9:
            raise _errors.UnsupportedDeviceError(
                f"backend 'fa3': FlashInfer's MLA FA3 (_sm90) kernels run on sm_90 only, "
                f"cuda:{self.device} is sm_{compute_capability_major(self.device)}x; use "
                f"backend='fa2' or 'auto'")
        # named for the release the modules are expected to be of; the loaded module's
        # release must then be the one its plan line is written for (KernelVersionError)
        variant = _uri.mla_variant(c.dtype, c.ckv, c.kpe, backend)
        plan_b = load_binding(variant, "plan")
        c.run_b = load_binding(variant, "run")
        c.staged = plan_b.written_for in _STAGING_PLAN_RELEASES
        c.plan_b, c.variant, c.backend = plan_b, variant, backend
        return 0

    def plan(self, qo_indptr, kv_indptr, kv_indices, kv_len_arr, num_heads, head_dim_ckv,
             head_dim_kpe, page_size, causal, sm_scale, q_data_type="float16",
             kv_data_type=None, *, stream=None):
        """Plan a batch (upstream's argument order). Host int32 arrays: ``qo_indptr``
        ``[batch+1]`` (rows of q, from 0), ``kv_indptr`` ``[batch+1]`` (offsets into the
        page table, from 0), ``kv_len_arr`` ``[batch]`` (cache entries per request, at
        most its pages x page_size); ``kv_indices`` (the page table) host or a CUDA int32
        tensor (read in place by run(): keep it unchanged until this plan's runs are done;
        graph mode copies it). ``causal`` aligns rows to the end (needs qo_len <= kv_len).
        ``sm_scale`` is required. Returns the :class:`MLAPlan` (also ``current_plan``)."""
        cdef CallFrame f
        cdef PinnedSlot slot
        cdef Staging st
        cdef HostI32 qo, kv, kl, ix
        cdef void* stream_h
        cdef void* given_h
        cdef int64_t batch, rows, planned, need, min_pages, tiles, sms, cluster
        cdef _lim.CausalDrop drops[_lim.N_KV_TILES]
        cdef bint given = stream_arg(stream, &given_h)
        cdef _MLAConfig c = self._config((q_data_type, kv_data_type, num_heads, head_dim_ckv,
                                          head_dim_kpe, page_size, causal, sm_scale))
        hosts(True, &qo, &kv, &kl, &ix)
        try:
            read_indptrs(qo_indptr, kv_indptr, "kv_indptr", &qo, &kv)
            batch = kv.n - 1
            host_i32(kv_len_arr, "kv_len_arr", &kl)
            tiles = _check_kv_len(&qo, &kv, &kl, c.page_size, c.heads, c.causal)
            if tiles + 1 > MLA_MAX_WORKS:
                _too_many_works(tiles, 1)
            rows = qo.p[batch]
            if <int64_t>rows * c.heads > 2147483647:
                raise ValueError(f"qo_indptr: {rows} rows x {c.heads} heads exceed int32")
            _lim.check_packed_positions(&qo, &kv, &kl, c.page_size)
            cluster = _lim.cluster_size(&qo, c.heads)
            if c.causal:
                _lim.causal_tile_drops(&qo, &kl, c.heads, 64 * cluster, drops)
            need = kv.p[batch]
            staging_init(&st)
            min_pages = self._page_table(&st, kv_indices, &kv, &ix, "kv_indices",
                                         "kv_indices", "kv_indptr")
            table_seg(&st, ix.p, need)
            planned = self._graph_caps(&st, rows, need)
            # ---- CUDA from here on (backend "auto" asks the device, loads modules)
            self._resolve(c)
            if c.causal:   # which keys are dropped depends on the kernel's KV tile
                _lim.refuse_causal_drop(drops, c.heads, 64 * cluster, c.backend, self.device)
            if self.use_cuda_graph:
                self._check_frozen((c.variant.uri, c.heads, c.ckv, c.kpe, c.page_size,
                                    c.causal, c.sm_scale, planned), _FROZEN_NAMES)
            sms = multiprocessor_count(self.device)
            if tiles + sms > MLA_MAX_WORKS:
                _too_many_works(tiles, sms)
            _lim.check_split_arithmetic(&qo, &kl, c.heads, c.causal, cluster, sms)
            slot = self._open_plan(given, given_h, &st, &stream_h)
            frame_init(&f, c.plan_b.n)  # (nothing here raises before _plan_call)
            pack_i32(&f, 3, <void*>qo.p, batch + 1, kDLCPU, 0)   # the planner reads these
            pack_i32(&f, 4, <void*>kv.p, batch + 1, kDLCPU, 0)   # host arrays in place
            pack_i32(&f, 5, <void*>kl.p, batch, kDLCPU, 0)
            set_int(&f, 6, c.heads)
            set_int(&f, 7, c.ckv)       # head_dim_o
            set_bool(&f, 8, c.causal)
            info = self._plan_call(c.plan_b, &f, slot, stream_h, c.staged)
        finally:
            hosts(False, &qo, &kv, &kl, &ix)
        if self.use_cuda_graph:
            self._check_frozen_info(info)
        return self._finish_plan(c, info, &st, stream_h, slot, batch, rows, planned, need,
                                 min_pages)

    cdef int64_t _graph_caps(self, Staging* st, int64_t rows, int64_t need) except -1:
        """The rows q must have: the plan's, or in graph mode the fixed maximum; graph mode
        also fixes the page table's capacity (its buffer must not move between replays)."""
        if self.use_cuda_graph:
            self._graph_pages(need, "kv_indices")
            st.cap[0] = self._max_pages
        return self._graph_rows(rows)

    cdef int _check_frozen_info(self, object info) except -1:
        """A captured run baked in the plan info's grid and workspace offsets (the
        planner picks 1 or 2 CTAs per cluster from the average qo_len x num_heads). The
        whole Array is compared; the message names entries 0 and 1 the grid, as
        scheduler.cuh MLAPlanInfo lays them out in 0.6.3 and 0.7.4 alike."""
        values = info.tolist()
        if self._frozen_info is None:
            self._frozen_info = values
        elif values != self._frozen_info:
            raise ValueError(
                f"in CUDA-graph mode every plan must keep the launch the captured graph "
                f"baked in: the planner chose grid {values[0]}x{values[1]} and workspace "
                f"offsets {values[2:]}, the first plan {self._frozen_info[0]}x"
                f"{self._frozen_info[1]} / {self._frozen_info[2:]} (keep the average qo_len "
                f"x num_heads on the same side of 64, or re-capture). No plan is current: "
                f"plan() again")
        return 0

    cdef object _finish_plan(self, _MLAConfig c, object info, Staging* st, void* stream,
                             PinnedSlot slot, int64_t batch, int64_t rows, int64_t planned,
                             int64_t need, int64_t min_pages):
        cdef MLAPlan p = MLAPlan.__new__(MLAPlan)
        p.kind = "mla"
        p.kind_code = 0
        p.backend = c.backend
        p.uri = c.variant.uri
        p.dtype = p.kv_dtype = c.dtype
        p.device = self.device
        p.batch_size = batch
        p.num_heads = c.heads
        p.head_dim_ckv = c.ckv
        p.head_dim_kpe = c.kpe
        p.page_size = c.page_size
        p.causal = c.causal
        p.sm_scale = c.sm_scale
        p.use_cuda_graph = self.use_cuda_graph
        p.total_num_rows = rows
        p.planned_num_rows = planned
        p.min_num_pages = min_pages
        p.run_b = c.run_b
        p.page_offset32 = c.run_b.release not in _WIDE_PAGE_OFFSET_RELEASES
        p.table_on_device = st.table_owner != NULL
        p.n_indices = need
        if st.table_in_place:
            p.d_indices = st.dev_table
            p.page_table_ref = <object>st.table_owner
        else:
            p.d_indices = at_word((<TensorDesc>self._meta).dl.data, st.off[0])
        self._commit_plan(p, info, stream, slot,
                          p.frozen_key() if self.use_cuda_graph else None)
        return p

    # -- run hooks (batch_run.CheckedRunner) -----------------------------------------------

    cdef int _flags(self, PlanBase p, object return_lse_base_on_e) except -1:
        return as_bool(return_lse_base_on_e, "return_lse_base_on_e", "True or False")

    cdef int _pack_inputs(self, CallFrame* f, PlanBase p, object q_nope, object q_pe,
                          object ckv, object kpe) except -1:
        """q_nope, q_pe, ckv_cache, kpe_cache: CUDA, the plan's dtype, 3-D, last dim
        contiguous, 16-byte aligned (the kernels' vector loads), on q_nope's device."""
        cdef RunLayout* L = &p.L
        cdef int which[4]
        cdef int j
        cdef uint32_t dt = dtype_key_of(p.dtype)
        p.run_b.tensor(f, L.q, q_nope)
        p.run_b.tensor(f, L.q_pe, q_pe)
        p.run_b.tensor(f, L.k, ckv)
        p.run_b.tensor(f, L.kpe, kpe)
        which[0], which[1], which[2], which[3] = L.q, L.q_pe, L.k, L.kpe
        for j in range(4):
            name = _INPUT_NAMES[j]
            check_cuda(&f.slots[which[j]], name)
            if dtype_key(f.slots[which[j]].dl.dtype) != dt:
                raise PlanMismatchError(f"{name}: dtype {describe(&f.slots[which[j]])} but "
                                        f"the plan is for {p.dtype}")
            check_qkv_tensor(&f.slots[which[j]], name, dt)
            check_ndim(&f.slots[which[j]], name, 3)
            if j:
                check_same_device(&f.slots[which[j]], name, &f.slots[L.q], "q_nope")
        return 0

    cdef int _check_against_plan(self, CallFrame* f, PlanBase pb) except -1:
        cdef MLAPlan p = <MLAPlan>pb
        cdef RunLayout* L = &p.L
        cdef TensorSlot* qn = &f.slots[L.q]
        cdef TensorSlot* qp = &f.slots[L.q_pe]
        cdef TensorSlot* ck = &f.slots[L.k]
        cdef TensorSlot* kp = &f.slots[L.kpe]
        cdef int64_t rows = p.planned_num_rows
        M = PlanMismatchError
        if qn.dl.device.device_id != p.device:
            raise M(f"q_nope: on cuda:{qn.dl.device.device_id}, the plan is for cuda:{p.device}")
        what = "the planned rows (max_total_num_rows)" if p.use_cuda_graph else "qo_indptr[-1]"
        if qn.dl.shape[0] != rows or qn.dl.shape[1] != p.num_heads or \
                qn.dl.shape[2] != p.head_dim_ckv:
            raise M(f"q_nope: expected shape ({rows}, {p.num_heads}, {p.head_dim_ckv}) "
                    f"({what}, num_heads, head_dim_ckv of the plan), got {describe(qn)}")
        if qp.dl.shape[0] != rows or qp.dl.shape[1] != p.num_heads or \
                qp.dl.shape[2] != p.head_dim_kpe:
            raise M(f"q_pe: expected shape ({rows}, {p.num_heads}, {p.head_dim_kpe}) "
                    f"({what}, num_heads, head_dim_kpe of the plan), got {describe(qp)}")
        _check_cache(ck, "ckv_cache", p.head_dim_ckv, p)
        _check_cache(kp, "kpe_cache", p.head_dim_kpe, p)
        _check_u32_strides(qn, "q_nope")
        _check_u32_strides(qp, "q_pe")
        _check_u32_strides(ck, "ckv_cache")
        _check_u32_strides(kp, "kpe_cache")
        _lim.check_row_offsets(qn, "q_nope")
        _lim.check_row_offsets(qp, "q_pe")
        _check_page_offsets(ck, "ckv_cache", p)
        _check_page_offsets(kp, "kpe_cache", p)
        return 0

    cdef int _pack_plan_args(self, CallFrame* f, PlanBase pb, int flags) except -1:
        """Workspaces, plan info, the page table, mask mode, heads, page size, scale."""
        cdef MLAPlan p = <MLAPlan>pb
        cdef RunLayout* L = &p.L
        self._pack_plan_common(f, p)
        pack_i32(f, L.indices, p.d_indices, p.n_indices, kDLCUDA, p.device)
        set_int(f, L.mask, 1 if p.causal else 0)   # MaskMode kCausal / kNone
        set_int(f, L.num_heads, p.num_heads)
        set_int(f, L.page_size, p.page_size)
        set_float(f, L.sm_scale, p.sm_scale)
        set_bool(f, L.lse_base_e, flags & 1)
        return 0

    cdef bint _caller_objects(self, PyObject** objs, PlanBase p, object q_nope, object q_pe,
                              object ckv, object kpe, object out, object lse) noexcept:
        cdef RunLayout* L = &p.L
        objs[L.q] = <PyObject*>q_nope
        objs[L.q_pe] = <PyObject*>q_pe
        objs[L.k] = <PyObject*>ckv
        objs[L.kpe] = <PyObject*>kpe
        objs[L.o] = <PyObject*>out
        objs[L.lse] = <PyObject*>lse
        return True

    cdef int _describe_unpaired(self, CallFrame* f, PlanBase p, object a, object b,
                                object c, object d) except -1:
        return 0  # every input is one object

    # -- public run ----------------------------------------------------------------------

    def run(self, q_nope, q_pe, ckv_cache, kpe_cache, out=None, lse=None, return_lse=False,
            *, return_lse_base_on_e=False, plan=None, stream=None):
        """MLA attention for ``q_nope [rows, num_heads, head_dim_ckv]`` and ``q_pe [rows,
        num_heads, head_dim_kpe]`` (rows: ``qo_indptr[-1]``; graph mode the planned
        maximum) against the planned pages of ``ckv_cache`` / ``kpe_cache``. Returns
        ``out`` ([rows, num_heads, head_dim_ckv], q's dtype; allocated when omitted) or
        ``(out, lse)`` (float32 [rows, num_heads], base 2, or e with
        ``return_lse_base_on_e``). Asynchronous on ``stream`` (default: the producer's
        or the thread's stream)."""
        return self._run(q_nope, q_pe, ckv_cache, kpe_cache, out, lse, return_lse,
                         return_lse_base_on_e, stream, plan)

    def prepare(self, q_nope, q_pe, ckv_cache, kpe_cache, out=None, *, lse=None,
                return_lse_base_on_e=False, stream=None):
        """A :class:`~flashinfer_cy.PreparedRun` of ``run(q_nope, q_pe, ckv_cache,
        kpe_cache, out, lse)``: ``launch()`` is one GIL-free call, rebinding itself after a
        replan; ``repoint(q=..., q_pe=...)`` moves q_nope / q_pe."""
        return self._prepare(q_nope, q_pe, ckv_cache, kpe_cache, out, lse,
                             return_lse_base_on_e, stream)


# ------------------------------------------------------------------------------ helpers

cdef int64_t _check_kv_len(HostI32* qo, HostI32* kv, HostI32* kl, int64_t page_size,
                           int64_t heads, bint causal) except -1:
    """``kv_len_arr``: one entry per request, >= 0, within the request's pages
    (``kv_indptr``), >= its qo_len when causal. Returns the planner's qo tile count
    (sum of ceil(qo_len * heads / 64)) for the work-list bound."""
    cdef Py_ssize_t i, batch = kv.n - 1
    cdef int64_t pages, n, rows, tiles = 0
    if kl.n != batch:
        raise ValueError(f"kv_len_arr: expected {batch} entries (batch_size), got {kl.n}")
    for i in range(batch):
        n = kl.p[i]
        pages = <int64_t>kv.p[i + 1] - kv.p[i]
        rows = <int64_t>qo.p[i + 1] - qo.p[i]
        if n < 0 or n > pages * page_size:
            raise ValueError(f"kv_len_arr[{i}] = {n} is invalid for a request with {pages} "
                             f"page(s) of page_size {page_size} (kv_indptr): expected "
                             f"0..{pages * page_size}")
        if causal and rows > n:
            raise ValueError(f"causal: request {i} has {rows} query rows but {n} keys; "
                             f"causal attention aligns rows to the end and needs "
                             f"qo_len <= kv_len")
        tiles += (rows * heads + _MLA_TILE - 1) // _MLA_TILE
    return tiles


cdef int _too_many_works(int64_t tiles, int64_t sms) except -1:
    raise ValueError(
        f"MLA plan: up to {tiles + sms} work items ({tiles} query tiles of 64 rows x heads, "
        f"{sms} SM clusters) exceed the {MLA_MAX_WORKS} FlashInfer's MLA planner has "
        f"room for (it would overflow its work lists); plan fewer query rows per batch")


cdef int _check_cache(TensorSlot* s, str name, int64_t dim, MLAPlan p) except -1:
    if s.dl.shape[1] != p.page_size or s.dl.shape[2] != dim:
        raise PlanMismatchError(
            f"{name}: expected [num_pages, {p.page_size}, {dim}] (page_size and head dim of "
            f"the plan), got {describe(s)}")
    if s.dl.shape[0] < p.min_num_pages:
        raise PlanMismatchError(f"{name}: has {s.dl.shape[0]} pages but the plan's page "
                                f"table uses page {p.min_num_pages - 1}")
    return 0


cdef int _check_page_offsets(TensorSlot* s, str name, MLAPlan p) except -1:
    """The largest page run() may read: the page table's largest id, or with a CUDA page
    table (not read on the host) the cache's last page."""
    cdef int64_t last = s.dl.shape[0] - 1 if p.table_on_device else p.min_num_pages - 1
    return _lim.check_page_offsets(s, name, p.page_size, last, p.page_offset32,
                                   p.backend == "fa3")


cdef int _check_u32_strides(TensorSlot* s, str name) except -1:
    """The kernels keep the first two strides in 32-bit unsigned ints."""
    if s.dl.strides[0] < 0 or s.dl.strides[1] < 0 or s.dl.strides[0] > 4294967295 \
            or s.dl.strides[1] > 4294967295:
        raise ValueError(f"{name}: strides must be in [0, 2**32) elements (the kernel keeps "
                         f"them in 32-bit ints), got {describe(s)}")
    return 0
