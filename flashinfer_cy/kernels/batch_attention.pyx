# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Batched MHA attention with a plan/run split (flashinfer 0.6.3 batch decode and batch
prefill modules, FA2 and FA3 ``_sm90``):

    w = BatchDecodeWithPagedKVCache(kv_layout="NHD")
    plan = w.plan(indptr, indices, last_page_len, num_qo_heads, num_kv_heads, head_dim,
                  page_size)                      # host numpy arrays; once per step
    out = w.run(q, (k_cache, v_cache))            # once per layer
    step = w.prepare(q, (k_cache, v_cache), out)  # or: pre-packed, one nogil call per
    step.launch()                                 # launch, rebinds itself after a replan

This module is the three wrappers' ABI tables (attention.SIGNATURES), their argument checks
and the packing of their exports' arguments. What they share with every plan/run wrapper
lives beside it:

* batch_plan.pyx -- **plan()** machinery: host index arrays read in place, staging through
  the page-locked ring, workspaces, stream ordering, PlanBase. plan() validates everything
  on the host, schedules with the kernel's own planner and enqueues the host->device copies
  on the plan stream; it never copies device->host and never synchronizes. It returns an
  immutable :class:`Plan` owning the kernel's plan-info Array, valid until the wrapper's
  next plan() (both share the wrapper's workspaces).
* batch_run.pyx -- **run()**: tensors checked against the current plan
  (:class:`~flashinfer_cy.errors.PlanMismatchError`), one GIL-free call on the caller's
  stream, the kept frame of the last run, :class:`PreparedRun`. Runs on a stream other than
  the plan's wait (GPU-side) for the plan's copies, and the next plan() waits for them.

**CUDA graphs**: build the wrapper with ``use_cuda_graph=True`` (fixed batch size, fixed
buffers; decode also ``max_num_pages``). run() and launch() can then be captured; plan()
between replays updates the same buffers in place (same batch size and variant), and a
replay uses the new schedule and page table. Replays are invisible to the wrapper: order
them with plan() yourself (same stream, or synchronize). plan() during a capture raises
:class:`~flashinfer_cy.errors.StreamCaptureError` instead of corrupting the capture.
"""

from cpython.ref cimport PyObject
from libc.stdint cimport int32_t, int64_t, uint32_t

from flashinfer_cy._abi.dlpack cimport kDLCUDA, kDLCPU
from flashinfer_cy._core.binding cimport (Binding, CallFrame, frame_init, set_float, set_int,
                                          set_bool)
from flashinfer_cy._core.tensor cimport (TensorSlot, TensorDesc, dtype_key, describe,
                                         check_cuda, check_ndim,
                                         check_same_device, check_same_shape, as_bool)
from flashinfer_cy._core.pinned cimport PinnedSlot
from flashinfer_cy.kernels.attention cimport (load_binding, pack_extras, check_qkv_tensor,
                                              split_kv_pair, pdl_default, dtype_key_of,
                                              hnd_as_nhd, _A)
from flashinfer_cy.kernels.batch_plan cimport (
    HostI32, Staging, RunLayout, PlanBase, hosts, host_i32, check_indptr, read_indptrs,
    check_last_page_len, check_causal, same_args, stream_arg, kv_len_of, staging_init, seg,
    table_seg, at_word, pack_i32)
from flashinfer_cy.kernels.batch_run cimport CheckedRunner

from flashinfer_cy import errors as _errors
from flashinfer_cy.errors import PlanMismatchError
from flashinfer_cy.kernels.attention import choose_backend
from flashinfer_cy.kernels import attention_uri as _uri
# The shared machinery's public names, where they have always been importable from.
from flashinfer_cy.kernels.batch_plan import (DEFAULT_FLOAT_WORKSPACE_BYTES,
                                              DEFAULT_INT_WORKSPACE_BYTES, MIN_WORKSPACE_BYTES)
from flashinfer_cy.kernels.batch_run import PreparedRun

cdef enum Kind:
    DECODE = 0
    PAGED_PREFILL = 1
    RAGGED_PREFILL = 2

_KIND_NAMES = ("decode", "paged_prefill", "ragged_prefill")
cdef tuple _QKV_NAMES = ("q", "k_cache", "v_cache")

_FROZEN_NAMES = ("kind", "uri", "batch_size", "num_qo_heads", "num_kv_heads", "head_dim",
                 "page_size", "window_left", "logits_soft_cap", "sm_scale", "rope_scale",
                 "rope_theta", "causal", "planned_num_rows")


def _frozen_key(kind, uri, batch, hq, hkv, hd, page_size, sc, causal, planned):
    return (kind, uri, batch, hq, hkv, hd, page_size) + tuple(sc) + (bool(causal), planned)


# ------------------------------------------------------------------------------------ Plan

cdef class Plan(PlanBase):
    """The result of ``plan()``: what was planned, and the kernel's plan-info Array
    (``plan_info``, released exactly once when the Plan is dropped). Immutable. Valid for
    ``run()`` until its wrapper plans again (``generation`` tells them apart)."""

    cdef readonly str kv_layout
    cdef readonly int num_qo_heads
    cdef readonly int num_kv_heads
    cdef readonly int head_dim
    cdef readonly int window_left
    cdef readonly double logits_soft_cap
    cdef readonly double rope_scale
    cdef readonly double rope_theta
    cdef readonly int64_t total_kv_rows       # ragged: kv_indptr[-1]
    cdef int layout_code
    cdef bint pdl_auto                        # enable_pdl=None: FlashInfer's default here
    cdef double rope_rcp_scale
    cdef double rope_rcp_theta
    cdef void* d_qo_indptr
    cdef void* d_kv_indptr
    cdef void* d_lpl

    def frozen_key(self):
        """What a CUDA graph bakes in: replans in graph mode must keep it."""
        return _frozen_key(self.kind, self.uri, self.batch_size, self.num_qo_heads,
                           self.num_kv_heads, self.head_dim, self.page_size,
                           (self.window_left, self.logits_soft_cap, self.sm_scale,
                            self.rope_scale, self.rope_theta), self.causal,
                           self.planned_num_rows)

    def __repr__(self):
        return (f"<Plan {self.kind} {self.backend} gen={self.generation} batch={self.batch_size} "
                f"heads={self.num_qo_heads}/{self.num_kv_heads} head_dim={self.head_dim} "
                f"page_size={self.page_size} rows={self.total_num_rows} {self.dtype} "
                f"kv {self.kv_dtype} {self.kv_layout}>")


# ------------------------------------------------------------------------------- wrappers

cdef class _BatchAttention(CheckedRunner):
    cdef readonly str kv_layout
    cdef int layout_code
    cdef int kind
    cdef _PlanConfig _cfg              # the last plan()'s scalar configuration

    def __init__(self, kv_layout="NHD", *, use_cuda_graph=False, backend="auto", device=0,
                 float_workspace_buffer=None, int_workspace_buffer=None,
                 float_workspace_bytes=DEFAULT_FLOAT_WORKSPACE_BYTES,
                 int_workspace_bytes=DEFAULT_INT_WORKSPACE_BYTES, max_num_pages=None,
                 max_total_num_rows=None, pinned_slots=4):
        self.layout_code = _A().layout_code(kv_layout)
        self.kv_layout = kv_layout
        self.q_name = "q"
        CheckedRunner.__init__(
            self, use_cuda_graph=use_cuda_graph, backend=backend, device=device,
            float_workspace_buffer=float_workspace_buffer,
            int_workspace_buffer=int_workspace_buffer,
            float_workspace_bytes=float_workspace_bytes,
            int_workspace_bytes=int_workspace_bytes, max_num_pages=max_num_pages,
            max_total_num_rows=max_total_num_rows, pinned_slots=pinned_slots)

    # -- plan ----------------------------------------------------------------------------

    cdef _PlanConfig _config(self, tuple key, bint decode):
        """The validated configuration for plan()'s scalar arguments ``key`` = (q dtype,
        kv dtype, qo heads, kv heads, head dim, page size, window_left, soft cap, sm_scale,
        rope scale, rope theta): the last one again when ``key`` is the same."""
        cdef _PlanConfig c = self._cfg
        if c is not None and same_args(key, c.key):
            return c
        dtype, kv_dtype, hq, hkv, hd, sc = _A().plan_config(*key[:5], *key[6:], decode=decode)
        c = _PlanConfig.__new__(_PlanConfig)
        c.page_size = _A().positive_int(key[5], "page_size")
        c.key, c.dtype, c.kv_dtype, c.hq, c.hkv, c.hd, c.sc = key, dtype, kv_dtype, hq, hkv, hd, sc
        self._cfg = c
        return c

    cdef int _resolve(self, _PlanConfig c, str run_symbol) except -1:
        """Pick the backend and load the plan/run bindings of ``c`` (once per config)."""
        if c.run_b is not None:
            return 0
        family = "batch_decode" if self.kind == DECODE else "batch_prefill"
        backend = choose_backend(self.backend, family, c.dtype, c.hd, c.sc[0], c.sc[1],
                                 self.device, c.kv_dtype)
        variant = _uri.variant(family, c.dtype, c.hd, c.sc[0], c.sc[1], backend, c.kv_dtype)
        plan_b = load_binding(variant, "plan")
        c.run_b = load_binding(variant, run_symbol)
        c.plan_b, c.variant, c.backend = plan_b, variant, backend
        return 0

    cdef PinnedSlot _open_mha_plan(self, _PlanConfig c, str run_symbol, str kind_name,
                                   int64_t batch, bint causal, int64_t planned, bint given,
                                   void* given_h, Staging* st, void** stream):
        """Load the bindings, keep what a captured graph baked in (graph mode), then the
        shared part (BatchPlanner._open_plan: plan stream, ordering, staging)."""
        self._resolve(c, run_symbol)
        if self.use_cuda_graph:
            self._check_frozen(_frozen_key(kind_name, c.variant.uri, batch, c.hq, c.hkv, c.hd,
                                           c.page_size, c.sc, causal, planned), _FROZEN_NAMES)
        return self._open_plan(given, given_h, st, stream)

    cdef Plan _new_plan(self, int kind, _PlanConfig c, int64_t batch, bint causal,
                        int64_t rows, int64_t planned_rows, int64_t kv_rows,
                        int64_t min_pages):
        cdef Plan p = Plan.__new__(Plan)
        p.kind_code = kind
        p.kind = _KIND_NAMES[kind]
        p.backend = c.backend
        p.uri = c.variant.uri
        p.dtype = c.dtype
        p.kv_dtype = c.kv_dtype
        p.kv_layout = self.kv_layout
        p.layout_code = self.layout_code
        p.device = self.device
        p.batch_size = batch
        p.num_qo_heads = c.hq
        p.num_kv_heads = c.hkv
        p.head_dim = c.hd
        p.page_size = c.page_size
        p.window_left = c.sc[0]
        p.logits_soft_cap = c.sc[1]
        p.sm_scale = c.sc[2]
        p.rope_scale = c.sc[3]
        p.rope_theta = c.sc[4]
        p.rope_rcp_scale = 1.0 / p.rope_scale   # the kernels take reciprocals (doc P5)
        p.rope_rcp_theta = 1.0 / p.rope_theta
        p.causal = causal
        p.use_cuda_graph = self.use_cuda_graph
        p.total_num_rows = rows
        p.planned_num_rows = planned_rows
        p.total_kv_rows = kv_rows
        p.min_num_pages = min_pages
        p.pdl_auto = pdl_default(self.device)
        # FA3's ragged run reads HND k/v only through an NHD view (hnd_as_nhd).
        p.rewrites_inputs = (kind == RAGGED_PREFILL and self.layout_code == 1
                             and c.backend == "fa3")
        return p

    cdef int _finish_plan(self, Plan p, _PlanConfig c, object info, Staging* st,
                          void* stream, PinnedSlot slot, int64_t n_indices) except -1:
        """Point the plan at its segments of the metadata buffer (or the caller's CUDA page
        table) and make it current."""
        cdef void* meta = (<TensorDesc>self._meta).dl.data
        cdef int k = 0
        p.n_indices = n_indices
        p.run_b = c.run_b
        if p.kind_code != DECODE:
            p.d_qo_indptr = at_word(meta, st.off[k])
            k += 1
        p.d_kv_indptr = at_word(meta, st.off[k])
        k += 1
        if p.kind_code != RAGGED_PREFILL:
            p.d_lpl = at_word(meta, st.off[k])
            p.d_indices = at_word(meta, st.off[k + 1])
            if st.table_in_place:
                p.d_indices = st.dev_table
                p.page_table_ref = <object>st.table_owner
        return self._commit_plan(p, info, stream, slot,
                                 p.frozen_key() if self.use_cuda_graph else None)

    # -- run hooks (batch_run.CheckedRunner) -----------------------------------------------

    cdef int _flags(self, PlanBase p, object enable_pdl) except -1:
        """run()'s / prepare()'s ``enable_pdl``: None is the plan's device default."""
        if enable_pdl is None:
            return (<Plan>p).pdl_auto
        return as_bool(enable_pdl, "enable_pdl", "True, False or None (the device's default)")

    cdef int _pack_inputs(self, CallFrame* f, PlanBase pb, object q, object kv, object k,
                          object v) except -1:
        """q, k, v into their slots (a 5-D paged cache split into k and v views), checked
        on their own (device, dtype, rank, layout)."""
        cdef Plan p = <Plan>pb
        cdef RunLayout* L = &p.L
        p.run_b.tensor(f, L.q, q)
        if p.kind_code == RAGGED_PREFILL:
            p.run_b.tensor(f, L.k, k)
            p.run_b.tensor(f, L.v, v)
        else:
            split_kv_pair(f, L.k, L.v, kv, p.run_b)
        cdef TensorSlot* qs = &f.slots[L.q]
        cdef TensorSlot* ks = &f.slots[L.k]
        cdef TensorSlot* vs = &f.slots[L.v]
        cdef uint32_t dts[3]
        dts[0] = dtype_key_of(p.dtype)
        dts[1] = dts[2] = dtype_key_of(p.kv_dtype)
        cdef int i, j, kv_ndim = 3 if p.kind_code == RAGGED_PREFILL else 4
        cdef int which[3]
        which[0], which[1], which[2] = L.q, L.k, L.v
        for j in range(3):
            i = which[j]
            name = _QKV_NAMES[j]
            check_cuda(&f.slots[i], name)
            if dtype_key(f.slots[i].dl.dtype) != dts[j]:
                raise _errors.PlanMismatchError(
                    f"{name}: dtype {describe(&f.slots[i])} but the plan is for "
                    f"{p.dtype if j == 0 else p.kv_dtype}")
            check_qkv_tensor(&f.slots[i], name, dts[j])
        check_ndim(qs, "q", 3)
        check_ndim(ks, "k_cache", kv_ndim)
        check_same_device(ks, "k_cache", qs, "q")
        check_same_device(vs, "v_cache", qs, "q")
        check_same_shape(vs, "v_cache", ks, "k_cache")
        for i in range(kv_ndim):  # the kernels read one stride array for both
            if ks.dl.strides[i] != vs.dl.strides[i]:
                raise ValueError(f"v_cache: strides must equal k_cache's, got {describe(vs)} vs "
                                 f"{describe(ks)}")
        return 0

    cdef int _check_against_plan(self, CallFrame* f, PlanBase pb) except -1:
        cdef Plan p = <Plan>pb
        cdef RunLayout* L = &p.L
        cdef TensorSlot* qs = &f.slots[L.q]
        cdef TensorSlot* ks = &f.slots[L.k]
        cdef int64_t rows, pages, page, heads, dim, kv_rows
        M = PlanMismatchError
        if qs.dl.device.device_id != p.device:
            raise M(f"q: on cuda:{qs.dl.device.device_id}, the plan is for cuda:{p.device}")
        rows = p.batch_size if p.kind_code == DECODE else p.planned_num_rows
        if qs.dl.shape[0] != rows or qs.dl.shape[1] != p.num_qo_heads or qs.dl.shape[2] != p.head_dim:
            what = "batch_size" if p.kind_code == DECODE else (
                "the planned rows (max_total_num_rows)" if p.use_cuda_graph else "qo_indptr[-1]")
            raise M(f"q: expected shape ({rows}, {p.num_qo_heads}, {p.head_dim}) "
                    f"({what}, num_qo_heads, head_dim of the plan), got {describe(qs)}")
        dim = ks.dl.shape[ks.dl.ndim - 1]
        if p.kind_code == RAGGED_PREFILL:
            kv_rows, heads = (ks.dl.shape[0], ks.dl.shape[1]) if p.layout_code == 0 else (
                ks.dl.shape[1], ks.dl.shape[0])
            if heads != p.num_kv_heads or dim != p.head_dim or kv_rows < p.total_kv_rows:
                raise M(f"k: expected {p.kv_layout} with >= {p.total_kv_rows} rows "
                        f"(kv_indptr[-1]), {p.num_kv_heads} heads, head_dim {p.head_dim}; got "
                        f"{describe(ks)}")
            return 0
        pages = ks.dl.shape[0]
        page, heads = (ks.dl.shape[1], ks.dl.shape[2]) if p.layout_code == 0 else (
            ks.dl.shape[2], ks.dl.shape[1])
        if page != p.page_size or heads != p.num_kv_heads or dim != p.head_dim:
            raise M(f"k_cache: expected page_size {p.page_size}, {p.num_kv_heads} kv heads, "
                    f"head_dim {p.head_dim} in {p.kv_layout} layout (the plan's), got "
                    f"{describe(ks)}")
        if pages < p.min_num_pages:
            raise M(f"k_cache: has {pages} pages but the plan's page table uses page "
                    f"{p.min_num_pages - 1}")
        return 0

    cdef int _pack_plan_args(self, CallFrame* f, PlanBase pb, int pdl) except -1:
        """Everything that comes from the plan: workspaces, plan info, device metadata,
        mask / layout / window / scalars."""
        cdef Plan p = <Plan>pb
        cdef RunLayout* L = &p.L
        cdef Binding b = p.run_b
        self._pack_plan_common(f, p)
        if L.qo_indptr >= 0:
            pack_i32(f, L.qo_indptr, p.d_qo_indptr, p.batch_size + 1, kDLCUDA, p.device)
        pack_i32(f, L.kv_indptr, p.d_kv_indptr, p.batch_size + 1, kDLCUDA, p.device)
        if L.indices >= 0:
            pack_i32(f, L.indices, p.d_indices, p.n_indices, kDLCUDA, p.device)
            pack_i32(f, L.lpl, p.d_lpl, p.batch_size, kDLCUDA, p.device)
        if L.mask >= 0:
            set_int(f, L.mask, 1 if p.causal else 0)
        set_int(f, L.layout, p.layout_code)
        set_int(f, L.window, p.window_left)
        set_bool(f, L.pdl, pdl)
        pack_extras(b, f, L.extras, p.backend, p.logits_soft_cap, p.sm_scale,
                    p.rope_rcp_scale, p.rope_rcp_theta)
        if p.rewrites_inputs:
            hnd_as_nhd(f, L.k)
            hnd_as_nhd(f, L.v)
            set_int(f, L.layout, 0)
        return 0

    cdef bint _caller_objects(self, PyObject** objs, PlanBase p, object q, object kv,
                              object k, object v, object out, object lse) noexcept:
        """A single 5-D paged cache is split into k and v views by split_kv_pair: their
        slots get NULL, and False is returned."""
        cdef RunLayout* L = &p.L
        cdef bint pair = True
        objs[L.q] = <PyObject*>q
        objs[L.o] = <PyObject*>out
        objs[L.lse] = <PyObject*>lse
        if p.kind_code == RAGGED_PREFILL:
            objs[L.k] = <PyObject*>k
            objs[L.v] = <PyObject*>v
        elif type(kv) is tuple and len(<tuple>kv) == 2:
            objs[L.k] = tuple_item(kv, 0)
            objs[L.v] = tuple_item(kv, 1)
        else:
            objs[L.k] = objs[L.v] = NULL
            pair = False
        return pair

    cdef int _describe_unpaired(self, CallFrame* f, PlanBase p, object q, object kv,
                                object k, object v) except -1:
        return split_kv_pair(f, p.L.k, p.L.v, kv, p.run_b)


cdef extern from "Python.h":
    PyObject* tuple_item "PyTuple_GET_ITEM"(object t, Py_ssize_t i)  # borrowed, unchecked


# ----------------------------------------------------------------------------- wrappers

cdef class BatchDecodeWithPagedKVCache(_BatchAttention):
    """Batched decode (one query token per request) over a paged KV cache.

    ``BatchDecodeWithPagedKVCache(kv_layout="NHD", *, use_cuda_graph=False, device=0,
    float_workspace_buffer=None, int_workspace_buffer=None, float_workspace_bytes=128 MiB,
    int_workspace_bytes=8 MiB, max_num_pages=None, pinned_slots=4)``. Workspaces are
    allocated on the first plan unless given (u8, 1-D, on ``device``, at least
    ``MIN_WORKSPACE_BYTES``; checked here). Graph mode needs
    ``max_num_pages`` (page-table capacity) and keeps the first plan's batch size.
    Paged caches: NHD ``[num_pages, page_size, num_kv_heads, head_dim]``, HND ``[num_pages,
    num_kv_heads, page_size, head_dim]``; k and v as a tuple or one ``[num_pages, 2, ...]``
    tensor.
    """

    def __init__(self, kv_layout="NHD", **kwargs):
        _BatchAttention.__init__(self, kv_layout, **kwargs)
        self.kind = DECODE

    def plan(self, indptr, indices, last_page_len, num_qo_heads, num_kv_heads, head_dim,
             page_size, *, window_left=-1, logits_soft_cap=0.0, sm_scale=None,
             rope_scale=1.0, rope_theta=1e4, q_data_type="float16", kv_data_type=None,
             stream=None):
        """Plan a decode step. ``indptr`` ``[batch+1]`` (page offsets into ``indices``) and
        ``last_page_len`` ``[batch]`` are host integer arrays; ``indices`` (the page table)
        a host array or a CUDA int32 tensor (read in place by run(): keep it unchanged until
        this plan's runs are done; graph mode copies it). Scalars as
        :func:`flashinfer_cy.single_decode`. Returns the :class:`Plan` (also
        ``self.current_plan``)."""
        cdef CallFrame f
        cdef PinnedSlot slot
        cdef Staging st
        cdef HostI32 ip, lp, ix
        cdef void* stream_h
        cdef int64_t batch, need, min_pages = 0
        cdef void* given_h
        cdef bint given = stream_arg(stream, &given_h)
        cdef _PlanConfig c = self._config(
            (q_data_type, kv_data_type, num_qo_heads, num_kv_heads, head_dim, page_size,
             window_left, logits_soft_cap, sm_scale, rope_scale, rope_theta), True)
        hosts(True, &ip, &lp, &ix, NULL)
        try:
            host_i32(indptr, "indptr", &ip)
            check_indptr(&ip, "indptr", -1)
            batch = ip.n - 1
            host_i32(last_page_len, "last_page_len", &lp)
            check_last_page_len(&ip, &lp, c.page_size, "last_page_len")
            need = ip.p[batch]
            staging_init(&st)
            min_pages = self._page_table(&st, indices, &ip, &ix, "indices", "paged_kv_indices",
                                         "paged_kv_indptr")
            seg(&st, ip.p, batch + 1)
            seg(&st, lp.p, batch)
            table_seg(&st, ix.p, need)
            _graph_caps(self, &st, batch, need)
            # ---- CUDA from here on
            slot = self._open_mha_plan(c, "run", "decode", batch, False, batch, given, given_h,
                                   &st, &stream_h)
            frame_init(&f, c.plan_b.n)  # (nothing here raises before _plan_call)
            pack_i32(&f, 3, at_word(slot.staging_ptr, st.off[0]), batch + 1, kDLCPU, 0)
            set_int(&f, 4, batch)
            set_int(&f, 5, c.hq)
            set_int(&f, 6, c.hkv)
            set_int(&f, 7, c.page_size)
            set_bool(&f, 8, self.use_cuda_graph)
            set_int(&f, 9, c.sc[0])
            set_float(&f, 10, c.sc[1])
            set_int(&f, 11, c.hd)
            set_int(&f, 12, c.hd)
            _pack_empty(&f, 13, slot, c.dtype)
            _pack_empty(&f, 14, slot, c.kv_dtype)
            info = self._plan_call(c.plan_b, &f, slot, stream_h)
        finally:
            hosts(False, &ip, &lp, &ix, NULL)
        p = self._new_plan(DECODE, c, batch, False, batch, batch, 0, min_pages)
        self._finish_plan(p, c, info, &st, stream_h, slot, need)
        return p

    def run(self, q, paged_kv_cache, *, out=None, lse=None, return_lse=False,
            enable_pdl=None, plan=None, stream=None):
        """Decode attention for ``q [batch, num_qo_heads, head_dim]`` against the planned
        pages of ``paged_kv_cache``. Returns ``out`` (allocated when omitted) or
        ``(out, lse)``; lse is float32 ``[batch, num_qo_heads]``, base 2. ``plan``
        defaults to the current one (a stale plan raises PlanMismatchError)."""
        return self._run(q, paged_kv_cache, None, None, out, lse, return_lse, enable_pdl,
                         stream, plan)

    def prepare(self, q, paged_kv_cache, out=None, *, lse=None, enable_pdl=None, stream=None):
        """A :class:`PreparedRun` of ``run(q, paged_kv_cache, out=out, lse=lse)`` on
        ``stream`` (default: the stream run() would pick now)."""
        return self._prepare(q, paged_kv_cache, None, None, out, lse, enable_pdl, stream)


cdef class BatchPrefillWithPagedKVCache(_BatchAttention):
    """Batched prefill / append (``qo_indptr`` rows per request) over a paged KV cache.
    Constructor as :class:`BatchDecodeWithPagedKVCache` plus ``backend`` ("auto": FA3 on
    sm90 when its module is available, "fa2", "fa3") and, for graph mode,
    ``max_total_num_rows`` (default: the first plan's row count)."""

    def __init__(self, kv_layout="NHD", **kwargs):
        _BatchAttention.__init__(self, kv_layout, **kwargs)
        self.kind = PAGED_PREFILL

    def plan(self, qo_indptr, paged_kv_indptr, paged_kv_indices, paged_kv_last_page_len,
             num_qo_heads, num_kv_heads, head_dim, page_size, *, causal=False, window_left=-1,
             logits_soft_cap=0.0, sm_scale=None, rope_scale=1.0, rope_theta=1e4,
             q_data_type="float16", kv_data_type=None, stream=None):
        """Plan a prefill batch. Host arrays: ``qo_indptr`` ``[batch+1]`` (rows of q, from
        0), ``paged_kv_indptr`` ``[batch+1]``, ``paged_kv_last_page_len`` ``[batch]``;
        ``paged_kv_indices`` host or CUDA int32. ``causal`` aligns bottom-right."""
        cdef HostI32 qo, kv, lp, ix
        cdef Staging st
        cdef int64_t min_pages = 0
        cdef void* given_h
        cdef bint given = stream_arg(stream, &given_h)
        causal = as_bool(causal, "causal", "True or False")
        hosts(True, &qo, &kv, &lp, &ix)
        try:
            read_indptrs(qo_indptr, paged_kv_indptr, "paged_kv_indptr", &qo, &kv)
            ps = _A().positive_int(page_size, "page_size")
            host_i32(paged_kv_last_page_len, "paged_kv_last_page_len", &lp)
            check_last_page_len(&kv, &lp, ps, "paged_kv_last_page_len")
            staging_init(&st)
            min_pages = self._page_table(&st, paged_kv_indices, &kv, &ix, "paged_kv_indices",
                                         "paged_kv_indices", "paged_kv_indptr")
            c = self._config((q_data_type, kv_data_type, num_qo_heads, num_kv_heads, head_dim,
                              ps, window_left, logits_soft_cap, sm_scale, rope_scale,
                              rope_theta), False)
            return _plan_paged_or_ragged(self, PAGED_PREFILL, c, &qo, &kv, &lp, &ix, &st,
                                         min_pages, causal, given, given_h)
        finally:
            hosts(False, &qo, &kv, &lp, &ix)

    def run(self, q, paged_kv_cache, *, out=None, lse=None, return_lse=False,
            enable_pdl=None, plan=None, stream=None):
        """Attention for ``q [qo_indptr[-1], num_qo_heads, head_dim]`` (graph mode: the
        planned maximum rows). Returns ``out`` or ``(out, lse)``."""
        return self._run(q, paged_kv_cache, None, None, out, lse, return_lse, enable_pdl,
                         stream, plan)

    def prepare(self, q, paged_kv_cache, out=None, *, lse=None, enable_pdl=None, stream=None):
        return self._prepare(q, paged_kv_cache, None, None, out, lse, enable_pdl, stream)


cdef class BatchPrefillWithRaggedKVCache(_BatchAttention):
    """Batched prefill over packed (ragged) K/V: ``k``/``v`` ``[kv_indptr[-1],
    num_kv_heads, head_dim]`` (NHD) or ``[num_kv_heads, kv_indptr[-1], head_dim]`` (HND).
    Constructor as :class:`BatchPrefillWithPagedKVCache`."""

    def __init__(self, kv_layout="NHD", **kwargs):
        _BatchAttention.__init__(self, kv_layout, **kwargs)
        self.kind = RAGGED_PREFILL

    def plan(self, qo_indptr, kv_indptr, num_qo_heads, num_kv_heads, head_dim, *,
             causal=False, window_left=-1, logits_soft_cap=0.0, sm_scale=None,
             rope_scale=1.0, rope_theta=1e4, q_data_type="float16", kv_data_type=None,
             stream=None):
        """Plan a ragged prefill batch from host ``qo_indptr`` and ``kv_indptr`` (token
        offsets, both ``[batch+1]`` from 0)."""
        cdef HostI32 qo, kv, none
        cdef Staging st
        cdef void* given_h
        cdef bint given = stream_arg(stream, &given_h)
        causal = as_bool(causal, "causal", "True or False")
        hosts(True, &qo, &kv, &none, NULL)
        try:
            read_indptrs(qo_indptr, kv_indptr, "kv_indptr", &qo, &kv)
            c = self._config((q_data_type, kv_data_type, num_qo_heads, num_kv_heads, head_dim,
                              1, window_left, logits_soft_cap, sm_scale, rope_scale,
                              rope_theta), False)
            staging_init(&st)
            return _plan_paged_or_ragged(self, RAGGED_PREFILL, c, &qo, &kv, &none, &none, &st,
                                         0, causal, given, given_h)
        finally:
            hosts(False, &qo, &kv, NULL, NULL)

    def run(self, q, k, v, *, out=None, lse=None, return_lse=False, enable_pdl=None,
            plan=None, stream=None):
        return self._run(q, None, k, v, out, lse, return_lse, enable_pdl, stream, plan)

    def prepare(self, q, k, v, out=None, *, lse=None, enable_pdl=None, stream=None):
        return self._prepare(q, None, k, v, out, lse, enable_pdl, stream)



# ----------------------------------------------------------------------------- plan helpers

cdef class _PlanConfig:
    """What plan() derives from its scalar arguments (validated dtype, heads, head dim,
    page size, scalars) and, once the host arrays passed too, the kernel variant and its
    loaded plan/run bindings. A wrapper keeps the last one: a decode loop plans the same
    configuration every step."""
    cdef tuple key
    cdef str dtype
    cdef str kv_dtype
    cdef int hq, hkv, hd, page_size
    cdef tuple sc
    cdef object variant
    cdef str backend
    cdef Binding plan_b
    cdef Binding run_b


cdef int _graph_caps(_BatchAttention w, Staging* st, int64_t batch, int64_t need) except -1:
    """Graph mode fixes every segment's capacity (buffers must not move between replays):
    indptrs batch + 1, last_page_len batch, page table max_num_pages."""
    cdef int i
    if not w.use_cuda_graph:
        return 0
    if w.kind != RAGGED_PREFILL:
        w._graph_pages(need, "paged_kv_indices")
    for i in range(st.n):
        st.cap[i] = batch + 1
    if w.kind != RAGGED_PREFILL:
        st.cap[st.n - 2] = batch
        st.cap[st.n - 1] = w._max_pages
    return 0


cdef void _pack_empty(CallFrame* f, int i, PinnedSlot slot, str dtype) noexcept:
    """Decode plan's ``empty_q_data``/``empty_kv_data``: a host tensor of shape [0] whose
    only meaning is its dtype (never dereferenced)."""
    cdef uint32_t key = dtype_key_of(dtype)
    pack_i32(f, i, slot.staging_ptr, 0, kDLCPU, 0)
    f.slots[i].dl.dtype.code = key >> 16
    f.slots[i].dl.dtype.bits = (key >> 8) & 0xFF


cdef object _plan_paged_or_ragged(_BatchAttention w, int kind, _PlanConfig c, HostI32* qo,
                                  HostI32* kv, HostI32* lp, HostI32* ix, Staging* st_in,
                                  int64_t min_pages, bint causal, bint given_stream,
                                  void* given_h):
    """The prefill plans after their arrays are checked: schedule, stage, new Plan.
    ``st_in`` arrives empty but for a device page table (_page_table)."""
    cdef CallFrame f
    cdef PinnedSlot slot
    cdef Staging st = st_in[0]
    cdef void* stream_h
    cdef int64_t batch = kv.n - 1, rows = qo.p[qo.n - 1], planned, i
    cdef int64_t need = kv.p[kv.n - 1] if kind != RAGGED_PREFILL else 0
    cdef int32_t* kv_lens
    if causal:
        check_causal(qo, kv, lp, c.page_size)
    planned = w._graph_rows(rows)
    seg(&st, qo.p, batch + 1)
    seg(&st, kv.p, batch + 1)
    if kind != RAGGED_PREFILL:
        seg(&st, lp.p, batch)
        table_seg(&st, ix.p, need)
    _graph_caps(w, &st, batch, need)
    st.host_words = batch  # kv_len_arr for the planner
    # ---- CUDA from here on (backend "auto" queries the device and probes for FA3)
    slot = w._open_mha_plan(c, "ragged_run" if kind == RAGGED_PREFILL else "paged_run",
                        _KIND_NAMES[kind], batch, causal, planned, given_stream, given_h, &st,
                        &stream_h)
    kv_lens = <int32_t*>at_word(slot.staging_ptr, st.host_off)  # (nothing here raises
    for i in range(batch):                                       # before _plan_call)
        kv_lens[i] = <int32_t>kv_len_of(kv, lp, c.page_size, i)
    frame_init(&f, c.plan_b.n)
    pack_i32(&f, 3, at_word(slot.staging_ptr, st.off[0]), batch + 1, kDLCPU, 0)
    pack_i32(&f, 4, at_word(slot.staging_ptr, st.off[1]), batch + 1, kDLCPU, 0)
    pack_i32(&f, 5, kv_lens, batch, kDLCPU, 0)
    set_int(&f, 6, planned)
    set_int(&f, 7, batch)
    set_int(&f, 8, c.hq)
    set_int(&f, 9, c.hkv)
    set_int(&f, 10, c.page_size)
    set_bool(&f, 11, w.use_cuda_graph)
    set_int(&f, 12, c.hd)
    set_int(&f, 13, c.hd)
    set_bool(&f, 14, causal)
    set_int(&f, 15, c.sc[0])
    if c.backend == "fa2":
        set_int(&f, 16, -1)      # fixed_split_size: auto
        set_bool(&f, 17, False)  # disable_split_kv
        set_int(&f, 18, 0)       # num_colocated_ctas (upstream passes 0)
    info = w._plan_call(c.plan_b, &f, slot, stream_h)
    p = w._new_plan(kind, c, batch, causal, rows, planned,
                    kv.p[kv.n - 1] if kind == RAGGED_PREFILL else 0, min_pages)
    w._finish_plan(p, c, info, &st, stream_h, slot, need)
    return p
