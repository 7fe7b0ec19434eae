# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Batched attention with a plan/run split (flashinfer 0.6.3 batch decode and batch prefill
modules, FA2 and FA3 ``_sm90``):

    w = BatchDecodeWithPagedKVCache(kv_layout="NHD")
    plan = w.plan(indptr, indices, last_page_len, num_qo_heads, num_kv_heads, head_dim,
                  page_size)                      # host numpy arrays; once per step
    out = w.run(q, (k_cache, v_cache))            # once per layer
    step = w.prepare(q, (k_cache, v_cache), out)  # or: pre-packed, one nogil call per
    step.launch()                                 # launch, rebinds itself after a replan

**plan()** validates everything on the host, schedules with the kernel's own planner and
enqueues the host->device copies of the schedule and of indptr / page table / lengths on
the plan stream. It never copies device->host and never synchronizes. The page-locked
mirror it writes is one slot of a small ring (flashinfer_cy._core.pinned): a slot is reused
only once the event recorded after its copies has completed, so the next plan() can never
overwrite a mirror whose copy has not run yet. plan() returns an immutable :class:`Plan`
that owns the kernel's plan-info Array (released exactly once, with the Plan). A Plan is
valid until the wrapper's next plan(): both share the wrapper's workspaces.

**run()** checks its tensors against the current plan (batch size, heads, head dim, dtype,
page size, rows: :class:`~flashinfer_cy.errors.PlanMismatchError`) and makes one GIL-free
call on the caller's stream. Runs on a stream other than the plan's wait (GPU-side) for the
plan's copies, and the next plan() makes its stream wait for the work those streams had
queued, so workspaces are never rewritten under a running kernel.

**CUDA graphs**: build the wrapper with ``use_cuda_graph=True`` (fixed batch size, fixed
buffers; decode also ``max_num_pages``). run() and launch() can then be captured; plan()
between replays updates the same buffers in place (same batch size and variant), and a
replay uses the new schedule and page table. Replays are invisible to the wrapper: order
them with plan() yourself (same stream, or synchronize). plan() during a capture raises
:class:`~flashinfer_cy.errors.StreamCaptureError` instead of corrupting the capture.
"""

from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_FORMAT, PyBUF_STRIDES
from cpython.ref cimport PyObject
from libc.stdlib cimport malloc, free
from libc.stdint cimport int32_t, int64_t, uint32_t, uintptr_t
from libc.string cimport memcpy

from flashinfer_cy._abi.dlpack cimport kDLCUDA, kDLCPU, kDLCUDAHost, DLDeviceType
from flashinfer_cy._abi.tvm_ffi cimport TVMFFIAny
from flashinfer_cy._core.binding cimport (Binding, CallFrame, frame_init, frame_release,
                                          frame_init_masked, frame_release_masked,
                                          set_float, set_int, set_bool, set_object, MAX_ARGS)
from flashinfer_cy._core.runtime cimport Function, Object, ensure_ffi, take_result, env_stream
from flashinfer_cy._core.checked_frame cimport CheckedFrame, kept_stream, reuse_frame
from flashinfer_cy._core.stream cimport resolve_stream
from flashinfer_cy._core.tensor cimport (
    TensorSlot, TensorDesc, DT_F32, DT_I32, dtype_key, describe, to_dltensor, release_slot,
    check_cuda,
    check_dtype, check_ndim, check_contiguous, check_same_device, check_same_dtype,
    check_same_shape, check_writable, as_bool, own_shape, SRC_DESC)
from flashinfer_cy._core.pinned cimport (PinnedRing, PinnedSlot, Event, ensure_pinned_rt,
                                         capture_status, wait_event, record_event, copy_async)
from flashinfer_cy.kernels.attention cimport (load_binding, pack_extras, check_qkv_tensor,
                                              check_out, check_lse, split_kv_pair, run_stream,
                                              pdl_default, dtype_key_of, hnd_as_nhd, _A)

from flashinfer_cy import errors as _errors
from flashinfer_cy.errors import PlanMismatchError
from flashinfer_cy._core.array import DeviceArray
from flashinfer_cy.kernels import attention_uri as _uri
from flashinfer_cy.kernels.attention import choose_backend

DEFAULT_FLOAT_WORKSPACE_BYTES = 128 * 1024 * 1024  # upstream's recommendation
DEFAULT_INT_WORKSPACE_BYTES = 8 * 1024 * 1024      # upstream's int workspace (and mirror)
# Less than any plan takes: the smallest (a 1-request prefill) puts five index arrays, four
# of them 16-byte aligned, in the int workspace (scheduler.cuh PrefillPlan). A plan that
# still overflows a bigger workspace is refused by the planner (no plan is current then).
MIN_WORKSPACE_BYTES = 128

cdef enum Kind:
    DECODE = 0
    PAGED_PREFILL = 1
    RAGGED_PREFILL = 2

_KIND_NAMES = ("decode", "paged_prefill", "ragged_prefill")
cdef tuple _QKV_NAMES = ("q", "k_cache", "v_cache")

# Argument positions in a run signature, read from the Binding's names (-1: absent).
cdef struct RunLayout:
    int fws, iws, info, q, k, v, qo_indptr, kv_indptr, indices, lpl, o, lse
    int mask, layout, window, pdl, extras


cdef int _pos(tuple names, str a, str b=None):
    if a in names:
        return names.index(a)
    if b is not None and b in names:
        return names.index(b)
    return -1


cdef int _read_layout(Binding b, RunLayout* L) except -1:
    n = b.names
    L.fws = _pos(n, "float_workspace_buffer")
    L.iws = _pos(n, "int_workspace_buffer")
    L.info = _pos(n, "plan_info_vec")
    L.q = _pos(n, "q")
    L.k = _pos(n, "paged_k_cache", "k")
    L.v = _pos(n, "paged_v_cache", "v")
    L.qo_indptr = _pos(n, "qo_indptr")
    L.kv_indptr = _pos(n, "paged_kv_indptr", "kv_indptr")
    L.indices = _pos(n, "paged_kv_indices")
    L.lpl = _pos(n, "paged_kv_last_page_len")
    L.o = _pos(n, "o")
    L.lse = _pos(n, "maybe_lse")
    L.mask = _pos(n, "mask_mode_code")
    L.layout = _pos(n, "kv_layout_code", "layout")
    L.window = _pos(n, "window_left")
    L.pdl = _pos(n, "enable_pdl")
    L.extras = L.pdl + 1
    return 0


cdef inline void _pack_i32(CallFrame* f, int i, void* ptr, int64_t n, int dev_type,
                           int dev_id) noexcept:
    """A 1-D int32 tensor argument straight from a pointer (no Python object)."""
    cdef TensorSlot* s = &f.slots[i]
    s.keep = NULL
    s.api = NULL
    s.has_producer_stream = 0
    s.read_only = 0
    s.source = SRC_DESC
    s.shape[0] = n
    s.strides[0] = 1
    s.dl.data = ptr
    s.dl.device.device_type = <DLDeviceType>dev_type
    s.dl.device.device_id = dev_id
    s.dl.ndim = 1
    s.dl.dtype.code = 0
    s.dl.dtype.bits = 32
    s.dl.dtype.lanes = 1
    s.dl.shape = s.shape
    s.dl.strides = s.strides
    s.dl.byte_offset = 0
    f.args[i].type_index = 7  # kTVMFFIDLTensorPtr
    f.args[i].v_ptr = &s.dl


_FROZEN_NAMES = ("kind", "uri", "batch_size", "num_qo_heads", "num_kv_heads", "head_dim",
                 "page_size", "window_left", "logits_soft_cap", "sm_scale", "rope_scale",
                 "rope_theta", "causal", "planned_num_rows")


def _frozen_key(kind, uri, batch, hq, hkv, hd, page_size, sc, causal, planned):
    return (kind, uri, batch, hq, hkv, hd, page_size) + tuple(sc) + (bool(causal), planned)


cdef inline int64_t _round4(int64_t n) noexcept:
    return (n + 3) & ~3  # 16-byte aligned segments


# ------------------------------------------------------------------------------------ Plan

cdef class Plan:
    """The result of ``plan()``: what was planned, and the kernel's plan-info Array
    (``plan_info``, released exactly once when the Plan is dropped). Immutable. Valid for
    ``run()`` until its wrapper plans again (``generation`` tells them apart)."""

    cdef readonly str kind
    cdef readonly str backend
    cdef readonly str uri
    cdef readonly str dtype
    cdef readonly str kv_dtype                # dtype, or float8_e4m3fn (fp8 KV cache)
    cdef readonly str kv_layout
    cdef readonly int device
    cdef readonly int batch_size
    cdef readonly int num_qo_heads
    cdef readonly int num_kv_heads
    cdef readonly int head_dim
    cdef readonly int page_size
    cdef readonly int window_left
    cdef readonly bint causal
    cdef readonly bint use_cuda_graph
    cdef readonly double logits_soft_cap
    cdef readonly double sm_scale
    cdef readonly double rope_scale
    cdef readonly double rope_theta
    cdef readonly int64_t total_num_rows      # qo_indptr[-1] (prefill) / batch (decode)
    cdef readonly int64_t planned_num_rows    # rows q must have (graph mode: the maximum)
    cdef readonly int64_t total_kv_rows       # ragged: kv_indptr[-1]
    cdef readonly int64_t min_num_pages       # page table's max id + 1 (0: unknown)
    cdef readonly int64_t generation
    cdef readonly object plan_info            # runtime.Array (owned)
    cdef int kind_code
    cdef int layout_code
    cdef bint pdl_auto                        # enable_pdl=None: FlashInfer's default here
    cdef double rope_rcp_scale
    cdef double rope_rcp_theta
    cdef Binding run_b
    cdef RunLayout L
    cdef object meta                          # DeviceArray the pointers below point into
    cdef void* d_qo_indptr
    cdef void* d_kv_indptr
    cdef void* d_indices
    cdef void* d_lpl
    cdef int64_t n_indices
    cdef object page_table_ref                # the caller's CUDA page table, read in place
    cdef void* stream                         # where the plan's copies were enqueued
    cdef Event copied                         # recorded after them

    @property
    def stream_handle(self):
        return <uintptr_t>self.stream

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

cdef class _BatchAttention:
    cdef readonly str kv_layout
    cdef readonly bint use_cuda_graph
    cdef readonly str backend
    cdef readonly int device
    cdef readonly Plan current_plan          # the current plan (None before the first)
    cdef int layout_code
    cdef int kind
    cdef size_t float_bytes
    cdef size_t int_bytes
    cdef object _float_ws              # DeviceArray or the user's u8 tensor
    cdef object _int_ws
    cdef PinnedRing _ring
    cdef object _meta                  # DeviceArray int32: indptrs, lengths, page table
    cdef int64_t _meta_cap
    cdef int64_t _generation
    cdef dict _foreign                 # streams (handle -> None) that ran the current plan
    cdef void* _foreign_last           # ... the one of them the last run() used
    cdef bint _has_foreign_last
    cdef Event _xevent
    cdef void* _plan_stream_last       # the stream the last plan() enqueued on ...
    cdef bint _has_plan_stream_last    # ... once there was one
    cdef int64_t _max_pages            # graph mode: page-table capacity
    cdef int64_t _max_rows             # graph mode (prefill): q rows capacity
    cdef object _frozen                # graph mode: Plan.frozen_key() of the first plan
    cdef RunLayout _layout             # argument positions of _layout_of's signature
    cdef object _layout_of
    cdef _PlanConfig _cfg              # the last plan()'s scalar configuration
    cdef CheckedFrame _last_run        # the last run()'s checked frame (checked_frame.pyx)
    cdef object __weakref__

    def __init__(self, kv_layout="NHD", *, use_cuda_graph=False, backend="auto", device=0,
                 float_workspace_buffer=None, int_workspace_buffer=None,
                 float_workspace_bytes=DEFAULT_FLOAT_WORKSPACE_BYTES,
                 int_workspace_bytes=DEFAULT_INT_WORKSPACE_BYTES, max_num_pages=None,
                 max_total_num_rows=None, pinned_slots=4):
        self.layout_code = _A().layout_code(kv_layout)
        self.kv_layout = kv_layout
        if backend not in _uri.BACKENDS:
            raise ValueError(f"backend: expected one of {_uri.BACKENDS}, got {backend!r}")
        self.backend = backend
        self.use_cuda_graph = as_bool(use_cuda_graph, "use_cuda_graph", "True or False")
        if isinstance(device, bool) or not isinstance(device, int) or device < 0:
            raise ValueError(f"device: expected a CUDA device ordinal >= 0, got {device!r}")
        self.device = device
        self.float_bytes = _workspace_size(
            _A().positive_int(float_workspace_bytes, "float_workspace_bytes"),
            "float_workspace_bytes")
        self.int_bytes = _workspace_size(
            _A().positive_int(int_workspace_bytes, "int_workspace_bytes"), "int_workspace_bytes")
        self._float_ws = float_workspace_buffer
        self._int_ws = int_workspace_buffer
        self._max_pages = -1 if max_num_pages is None else _A().positive_int(
            max_num_pages, "max_num_pages")
        self._max_rows = -1 if max_total_num_rows is None else _A().positive_int(
            max_total_num_rows, "max_total_num_rows")
        self._foreign = {}
        self._generation = 0
        self._ring = PinnedRing(self.int_bytes, device, _A().positive_int(pinned_slots,
                                                                            "pinned_slots"))
        # Given buffers are checked now, not at the first plan() (checked again there: a
        # framework tensor may have been resized since).
        if float_workspace_buffer is not None:
            self._check_workspace(float_workspace_buffer, "float_workspace_buffer")
        if int_workspace_buffer is not None:
            self._check_workspace(int_workspace_buffer, "int_workspace_buffer")

    # -- resources -----------------------------------------------------------------------

    cdef int _check_workspace(self, object buf, str name) except -1:
        cdef TensorSlot s
        to_dltensor(buf, &s, name)
        try:
            check_cuda(&s, name)
            if s.dl.device.device_id != self.device:
                raise ValueError(f"{name}: on cuda:{s.dl.device.device_id}, the wrapper is for "
                                 f"cuda:{self.device}")
            check_dtype(&s, name, (1 << 16) | (8 << 8) | 1)  # uint8
            check_ndim(&s, name, 1)
            check_writable(&s, name)
            check_contiguous(&s, name)
            if (<uintptr_t>s.dl.data) % 16:
                raise ValueError(f"{name}: must be 16-byte aligned")
            _workspace_size(s.dl.shape[0], name)
            if name == "int_workspace_buffer":
                self.int_bytes = s.dl.shape[0]
                self._ring = PinnedRing(self.int_bytes, self.device, self._ring.max_slots)
            else:
                self.float_bytes = s.dl.shape[0]
        finally:
            release_slot(&s)
        return 0

    cdef int _ensure_resources(self, void* stream) except -1:
        ensure_pinned_rt()
        if self._xevent is None:
            if self._float_ws is not None:
                self._check_workspace(self._float_ws, "float_workspace_buffer")
            else:
                self._float_ws = DeviceArray.empty((self.float_bytes,), "uint8", self.device,
                                                   <uintptr_t>stream)
            if self._int_ws is not None:
                self._check_workspace(self._int_ws, "int_workspace_buffer")
            else:
                self._int_ws = DeviceArray.empty((self.int_bytes,), "uint8", self.device,
                                                 <uintptr_t>stream)
            self._xevent = Event(self.device)
        return 0

    cdef int _ensure_meta(self, int64_t elems, void* stream) except -1:
        if self._meta is not None and self._meta_cap >= elems:
            return 0
        if self.use_cuda_graph and self._meta is not None:
            raise AssertionError("graph-mode metadata buffer must never move")
        cap = max(elems, 1024)
        if not self.use_cuda_graph:
            cap = 1 << (int(cap) - 1).bit_length()  # grow geometrically
        self._meta = DeviceArray.empty((cap,), "int32", self.device, <uintptr_t>stream)
        self._meta_cap = cap
        return 0

    # -- plan machinery ------------------------------------------------------------------

    cdef void* _plan_stream(self, bint given, void* handle) except? NULL:
        """The stream plan() enqueues on: ``stream=`` (resolved by _stream_arg) or the
        thread's TVM-FFI stream for the device."""
        ensure_ffi()
        return handle if given else env_stream(kDLCUDA, self.device)

    cdef int _begin_plan(self, void* stream) except -1:
        """Refuse to plan inside a capture; order the plan stream after everything that may
        still read the workspaces: the previous plan's stream (its copies, and the runs
        made there) and every other stream that ran the previous plan."""
        cdef uintptr_t h
        ensure_pinned_rt()
        if capture_status(stream, self.device) != 0:
            raise _errors.StreamCaptureError(
                f"plan() called while CUDA graph capture is active (plan stream "
                f"{<uintptr_t>stream:#x}): plan() writes page-locked host memory and enqueues "
                f"a host->device copy, which a graph cannot replay. Call plan() before "
                f"capturing (and between replays); capture only run()/launch().")
        self._ensure_resources(stream)
        if self._has_plan_stream_last and self._plan_stream_last != stream:
            self._foreign[<uintptr_t>self._plan_stream_last] = None
        self._plan_stream_last = stream
        self._has_plan_stream_last = True
        if not self._foreign:
            return 0
        for h in list(self._foreign):
            if capture_status(<void*>h, self.device) != 0:
                raise _errors.StreamCaptureError(
                    f"plan() while stream {h:#x}, which ran the previous plan, is being "
                    f"captured: end the capture first")
            record_event(self._xevent.ev, <void*>h, self.device)
            wait_event(stream, self._xevent.ev, self.device)
        self._foreign.clear()
        self._has_foreign_last = False
        return 0

    cdef int _stage(self, PinnedSlot slot, Staging* st, void* stream) except -1:
        """Lay the segments out (16-byte aligned; graph mode at fixed capacities), memcpy
        the host ones into ``slot``'s staging area and enqueue one host->device copy into
        the metadata buffer; a device page table (last segment, src NULL, graph mode only)
        is copied device-to-device. Leaves ``st.host_words`` of staging after them for the
        planner."""
        cdef int64_t off = 0, end_staged = 0
        cdef int i
        for i in range(st.n):
            st.off[i] = off
            off += _round4(st.len[i] if st.len[i] > st.cap[i] else st.cap[i])
        dev_total = off
        st.host_off = off
        off += _round4(st.host_words)
        slot.reserve_staging(off * 4)
        for i in range(st.n):
            if st.src[i] != NULL:
                memcpy(_at(slot.staging_ptr, st.off[i]), st.src[i], st.len[i] * 4)
                end_staged = st.off[i] + st.len[i]
        self._ensure_meta(dev_total, stream)
        cdef void* meta = (<TensorDesc>self._meta).dl.data
        copy_async(meta, slot.staging_ptr, end_staged * 4, stream, self.device)
        i = st.n - 1
        if st.src[i] == NULL and st.len[i] > 0:
            copy_async(_at(meta, st.off[i]), st.dev_table, st.len[i] * 4, stream, self.device)
        return 0

    cdef _PlanConfig _config(self, tuple key, bint decode):
        """The validated configuration for plan()'s scalar arguments ``key`` = (q dtype,
        kv dtype, qo heads, kv heads, head dim, page size, window_left, soft cap, sm_scale,
        rope scale, rope theta): the last one again when ``key`` is the same."""
        cdef _PlanConfig c = self._cfg
        if c is not None and _same_args(key, c.key):
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

    cdef int64_t _page_table(self, Staging* st, object x, HostI32* ip, HostI32* ix,
                             str name) except -1:
        """The page table covering ``[ip[0], ip[-1])``. A CUDA int32 tensor is checked and
        recorded in ``st``: run() reads it in place, as upstream does (keep it unchanged
        until this plan's runs are done); graph mode copies it into the wrapper's fixed
        buffer (a captured graph must not see it move). Anything else is read into ``ix`` as
        a host vector. Returns the pages the cache must have (0: unknown, a CUDA table).

        Where it lives is asked through the conversion run() uses (TensorDesc, DLPack
        exchange API, ...), once, rather than a Python-level __dlpack_device__() call (a
        few microseconds on a torch tensor)."""
        cdef TensorSlot s
        cdef int64_t need = ip.p[ip.n - 1]
        global _ndarray
        if _ndarray is None:
            _ndarray = _A().np.ndarray
        tp = type(x)
        if not (tp is _ndarray or tp is list or tp is tuple or x is None):
            try:
                to_dltensor(x, &s, "paged_kv_indices")
            except TypeError:  # not a tensor: a host array-like for _host_i32 to judge
                pass
            else:
                try:
                    if s.dl.device.device_type != kDLCPU and \
                            s.dl.device.device_type != kDLCUDAHost:
                        self._check_device_table(&s, need)
                        st.dev_table = s.dl.data
                        st.table_owner = <PyObject*>x
                        st.table_in_place = not self.use_cuda_graph
                        return 0
                finally:
                    release_slot(&s)
        _host_i32(x, name, ix)
        return _check_host_indices(ip, ix, name)

    cdef int _check_device_table(self, TensorSlot* s, int64_t need) except -1:
        check_cuda(s, "paged_kv_indices")
        check_dtype(s, "paged_kv_indices", DT_I32)
        check_ndim(s, "paged_kv_indices", 1)
        check_contiguous(s, "paged_kv_indices")
        if s.dl.device.device_id != self.device:
            raise ValueError(f"paged_kv_indices: on cuda:{s.dl.device.device_id}, the "
                             f"wrapper is for cuda:{self.device}")
        if s.dl.shape[0] < need:
            raise ValueError(f"paged_kv_indices: expected at least paged_kv_indptr[-1] = "
                             f"{need} entries, got {s.dl.shape[0]}")
        return 0

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
        return p

    cdef int _finish_plan(self, Plan p, _PlanConfig c, object info, Staging* st,
                          void* stream, PinnedSlot slot, int64_t n_indices) except -1:
        cdef void* meta = (<TensorDesc>self._meta).dl.data
        cdef int k = 0
        p.plan_info = info
        p.n_indices = n_indices
        p.run_b = c.run_b
        if p.run_b is not self._layout_of:  # argument positions, read once per binding
            _read_layout(p.run_b, &self._layout)
            self._layout_of = p.run_b
        p.L = self._layout
        p.meta = self._meta
        if p.kind_code != DECODE:
            p.d_qo_indptr = _at(meta, st.off[k])
            k += 1
        p.d_kv_indptr = _at(meta, st.off[k])
        k += 1
        if p.kind_code != RAGGED_PREFILL:
            p.d_lpl = _at(meta, st.off[k])
            p.d_indices = _at(meta, st.off[k + 1])
            if st.table_in_place:
                p.d_indices = st.dev_table
                p.page_table_ref = <object>st.table_owner
        p.stream = stream
        p.copied = slot.done
        if self.use_cuda_graph:
            key = p.frozen_key()
            if self._frozen is None:
                self._frozen = key
        self._generation += 1
        p.generation = self._generation
        self.current_plan = p
        self._last_run = None  # checked against the previous plan
        return 0

    cdef int _check_frozen(self, tuple key) except -1:
        if self.use_cuda_graph and self._frozen is not None and key != self._frozen:
            diff = [f"{n}: {a!r} -> {b!r}" for n, a, b in zip(_FROZEN_NAMES, self._frozen, key)
                    if a != b]
            raise ValueError("in CUDA-graph mode every plan must keep what the captured graph "
                             "baked in; changed: " + "; ".join(diff))
        return 0

    cdef PinnedSlot _open_plan(self, _PlanConfig c, str run_symbol, str kind_name,
                               int64_t batch, bint causal, int64_t planned, bint given,
                               void* given_h, Staging* st, void** stream):
        """Every plan()'s CUDA part before its own export call: load the bindings, keep what
        a captured graph baked in (graph mode), pick the plan stream (``stream[0]``) and
        order it after runs on other streams, take a free pinned slot and stage the metadata
        through it. The caller commits the returned slot; a failure here commits it too."""
        cdef PinnedSlot slot
        self._resolve(c, run_symbol)
        if self.use_cuda_graph:
            self._check_frozen(_frozen_key(kind_name, c.variant.uri, batch, c.hq, c.hkv, c.hd,
                                           c.page_size, c.sc, causal, planned))
        stream[0] = self._plan_stream(given, given_h)
        self._begin_plan(stream[0])
        slot = self._ring.acquire()
        # From here on the metadata buffer and the workspaces receive this plan's data, so
        # the current plan no longer describes them, even if this plan fails below.
        self.current_plan = None
        self._last_run = None
        self._generation += 1
        try:
            self._stage(slot, st, stream[0])
        except BaseException:
            self._ring.commit(slot, stream[0])
            raise
        return slot

    cdef int _pack_workspaces(self, Binding b, CallFrame* f, PinnedSlot slot) except -1:
        """Every plan export starts with (float workspace, int workspace, page-locked int
        workspace mirror)."""
        b.tensor(f, 0, self._float_ws)
        b.tensor(f, 1, self._int_ws)
        b.tensor(f, 2, slot.kernel_desc)
        return 0

    cdef object _call_plan(self, Binding b, CallFrame* f, void* stream):
        cdef TVMFFIAny result
        b.invoke(f, <uintptr_t>stream, &result)
        return take_result(&result)

    # -- run machinery -------------------------------------------------------------------

    cdef int _check_current(self, Plan p) except -1:
        if p is None or self.current_plan is None:
            raise _errors.PlanNotReadyError(_no_plan_message(self))
        if self.current_plan is not p:
            raise _errors.PlanMismatchError(
                f"stale plan (generation {p.generation}): the wrapper has planned again "
                f"(generation {self._generation}) and the workspaces now hold that plan")
        return 0

    cdef int _pack_tensors(self, CallFrame* f, Plan p, object q, object kv, object k,
                           object v) except -1:
        """q, k, v into their slots (a 5-D paged cache split into k and v views), checked
        on their own (device, dtype, rank, layout)."""
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

    cdef int _check_against_plan(self, CallFrame* f, Plan p) except -1:
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

    cdef int _describe_outputs(self, CallFrame* f, Plan p, object out, object lse) except -1:
        p.run_b.tensor_as(f, p.L.o, out, "out")  # the ABI's "o"
        if lse is None:
            return p.run_b.opt_tensor(f, p.L.lse, None)
        return p.run_b.tensor_as(f, p.L.lse, lse, "lse")  # the ABI's "maybe_lse"

    cdef int _pack_outputs(self, CallFrame* f, Plan p, object out, object lse) except -1:
        self._describe_outputs(f, p, out, lse)
        return self._check_outputs(f, p)

    cdef int _check_outputs(self, CallFrame* f, Plan p) except -1:
        cdef RunLayout* L = &p.L
        cdef TensorSlot* qs = &f.slots[L.q]
        cdef int64_t shape[3]
        cdef int i
        for i in range(3):
            shape[i] = qs.dl.shape[i]
        check_out(&f.slots[L.o], "out", qs, "q", 3, shape)
        if f.args[L.lse].type_index == 7:  # kTVMFFIDLTensorPtr: an lse was given
            check_lse(&f.slots[L.lse], shape[0], shape[1], qs)
        return 0

    cdef int _pack_plan_args(self, CallFrame* f, Plan p, bint pdl) except -1:
        """Everything that comes from the plan: workspaces, plan info, device metadata,
        mask / layout / window / scalars."""
        cdef RunLayout* L = &p.L
        cdef Binding b = p.run_b
        release_slot(&f.slots[L.fws])  # a rebind repacks these: drop what they held
        release_slot(&f.slots[L.iws])
        b.tensor(f, L.fws, self._float_ws)
        b.tensor(f, L.iws, self._int_ws)
        set_object(f, L.info, <Object>p.plan_info)
        if L.qo_indptr >= 0:
            _pack_i32(f, L.qo_indptr, p.d_qo_indptr, p.batch_size + 1, kDLCUDA, p.device)
        _pack_i32(f, L.kv_indptr, p.d_kv_indptr, p.batch_size + 1, kDLCUDA, p.device)
        if L.indices >= 0:
            _pack_i32(f, L.indices, p.d_indices, p.n_indices, kDLCUDA, p.device)
            _pack_i32(f, L.lpl, p.d_lpl, p.batch_size, kDLCUDA, p.device)
        if L.mask >= 0:
            set_int(f, L.mask, 1 if p.causal else 0)
        set_int(f, L.layout, p.layout_code)
        set_int(f, L.window, p.window_left)
        set_bool(f, L.pdl, pdl)
        pack_extras(b, f, L.extras, p.backend, p.logits_soft_cap, p.sm_scale,
                    p.rope_rcp_scale, p.rope_rcp_theta)
        if p.backend == "fa3" and p.kind_code == RAGGED_PREFILL and p.layout_code == 1:
            hnd_as_nhd(f, L.k)
            hnd_as_nhd(f, L.v)
            set_int(f, L.layout, 0)
        return 0

    cdef int _order_after_plan(self, Plan p, void* stream) except -1:
        """A run on another stream than the plan's waits (GPU-side) for the plan's copies,
        and is remembered so the next plan waits for it."""
        cdef uintptr_t h = <uintptr_t>stream
        if stream == p.stream or (self._has_foreign_last and stream == self._foreign_last):
            return 0  # a decode loop's every step after its first
        if h not in self._foreign:
            if capture_status(stream, self.device) == 0:
                wait_event(stream, p.copied.ev, self.device)
            self._foreign[h] = None
        self._foreign_last = stream
        self._has_foreign_last = True
        return 0

    cdef object _run(self, object q, object kv, object k, object v, object out, object lse,
                     object return_lse_arg, object enable_pdl, object stream, Plan plan):
        cdef bint return_lse = as_bool(return_lse_arg, "return_lse", "True or False")
        cdef CallFrame f
        cdef PyObject* objs[MAX_ARGS]
        cdef TensorSlot* qs
        cdef void* handle = NULL
        cdef Plan p = self.current_plan if plan is None else plan
        cdef CheckedFrame kept = self._last_run
        cdef bint pdl
        cdef RunLayout* L
        cdef uint32_t caller
        cdef uint32_t held = 0
        cdef bint outputs_given = out is not None and (lse is not None or not return_lse)
        self._check_current(p)
        L = &p.L
        pdl = _pdl_of(p, enable_pdl)
        caller = _caller_slots(L)
        if outputs_given and kept is not None and kept.key is p and kept.flags == pdl:
            # The last run() checked tensors against this plan and packed the rest; if
            # these look exactly like those, all of it holds (checked_frame.pyx).
            try:
                if not _caller_objects(objs, p, q, kv, k, v, out, lse):
                    frame_init_masked(&f, p.run_b.n, caller)
                    held = caller
                    split_kv_pair(&f, L.k, L.v, kv, p.run_b)
                if reuse_frame(kept, &f, objs, p.run_b, &held):
                    kept_stream(kept, &f, stream, p.device, &handle)
                    self._launch(p, &f, handle)
                    return (out, lse) if return_lse else out
            finally:
                if held:
                    frame_release_masked(&f, held)
        frame_init(&f, p.run_b.n)
        try:
            self._pack_tensors(&f, p, q, kv, k, v)
            self._check_against_plan(&f, p)
            self._pack_plan_args(&f, p, pdl)
            if outputs_given:  # before the stream is picked: it may come from out
                self._describe_outputs(&f, p, out, lse)
            run_stream(p.run_b, &f, stream, &handle)
            if not outputs_given:  # allocated on that stream
                qs = &f.slots[L.q]
                if out is None:
                    out = DeviceArray.empty((qs.dl.shape[0], qs.dl.shape[1], qs.dl.shape[2]),
                                            p.dtype, p.device, <uintptr_t>handle)
                if lse is None and return_lse:
                    lse = DeviceArray.empty((qs.dl.shape[0], qs.dl.shape[1]), "float32",
                                            p.device, <uintptr_t>handle)
                self._describe_outputs(&f, p, out, lse)
            self._check_outputs(&f, p)
            if not (p.backend == "fa3" and p.kind_code == RAGGED_PREFILL
                    and p.layout_code == 1):  # hnd_as_nhd rewrote k/v: not comparable
                _caller_objects(objs, p, q, kv, k, v, out, lse)
                self._last_run = CheckedFrame.keep(&f, caller, objs, p, pdl,
                                                   p.run_b.stream_slot(&f))
            self._launch(p, &f, handle)
            return (out, lse) if return_lse else out
        finally:
            frame_release(&f)

    cdef int _launch(self, Plan p, CallFrame* f, void* stream) except -1:
        """Call the run export with a frame whose every argument was checked (now or by
        the kept frame's run), on the resolved ``stream``, as launch() does."""
        cdef TVMFFIAny result
        self._order_after_plan(p, stream)
        if f.slots[p.L.q].dl.shape[0] > 0:
            p.run_b.call_args(f.args, &result, kDLCUDA, p.device, stream, True)
        return 0

    cdef object _prepare(self, object q, object kv, object k, object v, object out,
                         object lse, object enable_pdl, object stream):
        cdef Plan p = self.current_plan
        cdef PreparedRun r
        cdef TensorSlot* qs
        cdef void* handle = NULL
        cdef int i
        self._check_current(p)
        r = PreparedRun.__new__(PreparedRun)
        r.frame = <CallFrame*>malloc(sizeof(CallFrame))
        if r.frame == NULL:
            raise MemoryError()
        frame_init(r.frame, p.run_b.n)
        r.wrapper = self
        r.plan = p
        self._pack_tensors(r.frame, p, q, kv, k, v)
        self._check_against_plan(r.frame, p)
        r.pdl = _pdl_of(p, enable_pdl)
        self._pack_plan_args(r.frame, p, r.pdl)
        if stream is None:
            run_stream(p.run_b, r.frame, None, &handle)
        else:
            resolve_stream(stream, &handle)
        qs = &r.frame.slots[p.L.q]
        if out is None:
            out = DeviceArray.empty((qs.dl.shape[0], qs.dl.shape[1], qs.dl.shape[2]), p.dtype,
                                    p.device, <uintptr_t>handle)
        self._pack_outputs(r.frame, p, out, lse)
        for i in range(r.frame.n):
            if r.frame.args[i].type_index == 7:  # kTVMFFIDLTensorPtr
                own_shape(&r.frame.slots[i])
        r.keep = [q, kv, k, v, out, lse]
        r.out = out
        r.lse = lse
        r.stream = handle
        r.device = p.device
        r.empty = qs.dl.shape[0] == 0
        r.run_b = p.run_b
        r.run_b.function()  # loads the module (and its release's layout) now
        r.generation = p.generation
        self._order_after_plan(p, handle)
        return r

    def workspace_buffers(self):
        """(float workspace, int workspace) once allocated (after the first plan)."""
        return self._float_ws, self._int_ws

    @property
    def pinned_ring_size(self):
        return self._ring.size

    @property
    def pinned_ring_waits(self):
        """How often plan() had to wait for an earlier plan's copy to free a mirror."""
        return self._ring.waits

    @property
    def generation(self):
        return self._generation


cdef inline bint _pdl_of(Plan p, object enable_pdl) except -1:
    """run()'s / prepare()'s ``enable_pdl``: None is the plan's device default."""
    if enable_pdl is None:
        return p.pdl_auto
    return as_bool(enable_pdl, "enable_pdl", "True, False or None (the device's default)")


cdef str _no_plan_message(_BatchAttention w):
    if w._generation == 0:
        return f"{type(w).__name__}: call plan() before run()"
    return (f"{type(w).__name__}: the last plan() failed after it had begun to overwrite "
            f"the workspaces, so no plan is current: call plan() again")


cdef inline uint32_t _caller_slots(RunLayout* L) noexcept:
    """The slots a run() fills from its caller's tensors (the rest come from the plan)."""
    cdef uint32_t one = 1
    return (one << L.q) | (one << L.k) | (one << L.v) | (one << L.o) | (one << L.lse)


cdef extern from "Python.h":
    PyObject* tuple_item "PyTuple_GET_ITEM"(object t, Py_ssize_t i)  # borrowed, unchecked


cdef inline bint _caller_objects(PyObject** objs, Plan p, object q, object kv, object k,
                                 object v, object out, object lse) noexcept:
    """The objects run() describes into its caller slots, by slot (reuse_frame),
    borrowed from the caller. A single 5-D paged cache is split into k and v views by
    split_kv_pair: their slots get NULL, and False is returned."""
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


# ------------------------------------------------------------------------------- prepared

cdef class PreparedRun:
    """A run with every argument packed once: ``launch()`` is one GIL-free kernel call.

    Made by ``wrapper.prepare(...)``. The tensors are captured as they were (pointer, shape,
    strides); keep their storage alive and unchanged in shape (the object holds references).
    After the wrapper plans again the next ``launch()`` rebinds to the new plan (checking
    the tensors against it, PlanMismatchError if they no longer fit); a plan for another
    kernel variant (window, soft cap, dtype, backend) needs a new ``prepare()``.
    ``repoint(q=, out=, lse=)`` swaps data pointers (same shape) without repacking.
    """

    cdef CallFrame* frame
    cdef _BatchAttention wrapper
    cdef Plan plan
    cdef int64_t generation
    cdef Binding run_b  # the run export (call_args: in the module's release's layout)
    cdef void* stream
    cdef int device
    cdef bint pdl
    cdef bint empty
    cdef list keep
    cdef readonly object out
    cdef readonly object lse

    def __init__(self, *args, **kwargs):
        # Only prepare() fills the frame; an empty one must never reach launch()/repoint().
        raise TypeError("PreparedRun objects are made by wrapper.prepare(...), not directly")

    cdef int _rebind(self) except -1:
        cdef _BatchAttention w = self.wrapper
        cdef Plan p = w.current_plan
        if p is None:
            raise _errors.PlanNotReadyError(_no_plan_message(w))
        if p.uri != self.plan.uri or p.kind_code != self.plan.kind_code:
            raise _errors.PlanMismatchError(
                f"the wrapper was replanned for another kernel ({p.uri}, was "
                f"{self.plan.uri}): call prepare() again")
        if self.plan.backend == "fa3" and p.kind_code == RAGGED_PREFILL and p.layout_code == 1:
            raise _errors.PlanMismatchError("FA3 ragged HND: call prepare() again after plan()")
        w._check_against_plan(self.frame, p)
        w._pack_plan_args(self.frame, p, self.pdl)
        w._order_after_plan(p, self.stream)
        self.plan = p
        self.run_b = p.run_b
        self.generation = p.generation
        return 0

    def launch(self):
        """Run the prepared call; returns ``out`` (None once ``repoint(out=...)`` moved it
        to memory the caller owns). Asynchronous."""
        cdef TVMFFIAny result
        if self.frame == NULL:
            raise TypeError("launch(): this PreparedRun was not made by wrapper.prepare(...)")
        if self.generation != self.wrapper._generation:
            self._rebind()
        if not self.empty:
            self.run_b.call_args(self.frame.args, &result, kDLCUDA, self.device,
                                 self.stream, True)
        return self.out

    def repoint(self, q=None, out=None, lse=None):
        """Point q / out / lse at other memory of the same shape (integer addresses)."""
        if self.frame == NULL:
            raise TypeError("repoint(): this PreparedRun was not made by wrapper.prepare(...)")
        cdef RunLayout* L = &self.plan.L
        for value, idx, name in ((q, L.q, "q"), (out, L.o, "out"), (lse, L.lse, "lse")):
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name}: expected an integer device address, got {value!r}")
            if idx < 0 or self.frame.args[idx].type_index != 7:
                raise ValueError(f"{name}: was not given to prepare()")
            if value == 0 or value % 16:
                raise ValueError(f"{name}: address {value:#x} must be non-zero and 16-byte "
                                 f"aligned")
            self.frame.slots[idx].dl.data = <void*><uintptr_t>value
            if idx == L.o:  # the object given to prepare() is no longer what gets written
                self.out = None
            elif idx == L.lse:
                self.lse = None

    @property
    def stream_handle(self):
        return <uintptr_t>self.stream

    def __dealloc__(self):
        if self.frame != NULL:
            frame_release(self.frame)
            free(self.frame)
            self.frame = NULL


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
        cdef bint given = _stream_arg(stream, &given_h)
        cdef _PlanConfig c = self._config(
            (q_data_type, kv_data_type, num_qo_heads, num_kv_heads, head_dim, page_size,
             window_left, logits_soft_cap, sm_scale, rope_scale, rope_theta), True)
        _hosts(True, &ip, &lp, &ix, NULL)
        try:
            _host_i32(indptr, "indptr", &ip)
            _check_indptr(&ip, "indptr", -1)
            batch = ip.n - 1
            _host_i32(last_page_len, "last_page_len", &lp)
            _check_last_page_len(&ip, &lp, c.page_size, "last_page_len")
            need = ip.p[batch]
            _staging_init(&st)
            min_pages = self._page_table(&st, indices, &ip, &ix, "indices")
            _seg(&st, ip.p, batch + 1)
            _seg(&st, lp.p, batch)
            _table_seg(&st, ix.p, need)
            _graph_caps(self, &st, batch, need)
            # ---- CUDA from here on
            slot = self._open_plan(c, "run", "decode", batch, False, batch, given, given_h,
                                   &st, &stream_h)
            try:
                frame_init(&f, c.plan_b.n)
                try:
                    self._pack_workspaces(c.plan_b, &f, slot)
                    _pack_i32(&f, 3, _at(slot.staging_ptr, st.off[0]), batch + 1, kDLCPU, 0)
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
                    info = self._call_plan(c.plan_b, &f, stream_h)
                finally:
                    frame_release(&f)
            finally:
                self._ring.commit(slot, stream_h)
        finally:
            _hosts(False, &ip, &lp, &ix, NULL)
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
        cdef bint given = _stream_arg(stream, &given_h)
        causal = as_bool(causal, "causal", "True or False")
        _hosts(True, &qo, &kv, &lp, &ix)
        try:
            _read_indptrs(qo_indptr, paged_kv_indptr, "paged_kv_indptr", &qo, &kv)
            ps = _A().positive_int(page_size, "page_size")
            _host_i32(paged_kv_last_page_len, "paged_kv_last_page_len", &lp)
            _check_last_page_len(&kv, &lp, ps, "paged_kv_last_page_len")
            _staging_init(&st)
            min_pages = self._page_table(&st, paged_kv_indices, &kv, &ix, "paged_kv_indices")
            c = self._config((q_data_type, kv_data_type, num_qo_heads, num_kv_heads, head_dim,
                              ps, window_left, logits_soft_cap, sm_scale, rope_scale,
                              rope_theta), False)
            return _plan_paged_or_ragged(self, PAGED_PREFILL, c, &qo, &kv, &lp, &ix, &st,
                                         min_pages, causal, given, given_h)
        finally:
            _hosts(False, &qo, &kv, &lp, &ix)

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
        cdef bint given = _stream_arg(stream, &given_h)
        causal = as_bool(causal, "causal", "True or False")
        _hosts(True, &qo, &kv, &none, NULL)
        try:
            _read_indptrs(qo_indptr, kv_indptr, "kv_indptr", &qo, &kv)
            c = self._config((q_data_type, kv_data_type, num_qo_heads, num_kv_heads, head_dim,
                              1, window_left, logits_soft_cap, sm_scale, rope_scale,
                              rope_theta), False)
            _staging_init(&st)
            return _plan_paged_or_ragged(self, RAGGED_PREFILL, c, &qo, &kv, &none, &none, &st,
                                         0, causal, given, given_h)
        finally:
            _hosts(False, &qo, &kv, NULL, NULL)

    def run(self, q, k, v, *, out=None, lse=None, return_lse=False, enable_pdl=None,
            plan=None, stream=None):
        return self._run(q, None, k, v, out, lse, return_lse, enable_pdl, stream, plan)

    def prepare(self, q, k, v, out=None, *, lse=None, enable_pdl=None, stream=None):
        return self._prepare(q, None, k, v, out, lse, enable_pdl, stream)


# ----------------------------------------------------------------------------- plan helpers
# plan() runs every decode step, so its host path reads the caller's arrays in place
# (buffer protocol, no memoryview or temporary array), validates them in single passes and
# memcpy's them into the page-locked staging slot; what it derives from the scalar
# arguments is kept for the next plan() with the same ones (_PlanConfig).

cdef object _ndarray = None   # numpy.ndarray, bound on first use (import stays numpy-free)


cdef int64_t _workspace_size(int64_t nbytes, str name) except -1:
    if nbytes < MIN_WORKSPACE_BYTES:
        raise ValueError(f"{name}: {nbytes} bytes is less than any plan takes; expected at "
                         f"least {MIN_WORKSPACE_BYTES} (upstream uses 128 MiB float, 8 MiB int)")
    return nbytes


cdef bint _stream_arg(object stream, void** handle) except -1:
    """Resolve plan()'s ``stream=`` once, first, so that a bad one is refused with the
    other argument errors, before any module is loaded or CUDA touched. True when given."""
    handle[0] = NULL
    if stream is None:
        return False
    resolve_stream(stream, handle)
    return True


cdef struct HostI32:
    Py_buffer view
    const int32_t* p
    Py_ssize_t n
    bint held


cdef inline void _host_init(HostI32* h) noexcept:
    h.held = False
    h.p = NULL
    h.n = 0


cdef inline void _host_release(HostI32* h) noexcept:
    if h.held:
        PyBuffer_Release(&h.view)
        h.held = False


cdef void _hosts(bint init, HostI32* a, HostI32* b, HostI32* c, HostI32* d) noexcept:
    """Initialise (``init``) or release up to four host vectors (NULL: none)."""
    cdef HostI32* all_[4]
    cdef int i
    all_[0], all_[1], all_[2], all_[3] = a, b, c, d
    for i in range(4):
        if all_[i] != NULL:
            if init:
                _host_init(all_[i])
            else:
                _host_release(all_[i])


cdef int _read_indptrs(object qo_indptr, object kv_indptr, str kv_name,
                       HostI32* qo, HostI32* kv) except -1:
    """The prefill plans' two indptrs: ``kv_indptr`` (any batch), then ``qo_indptr`` (the
    same batch, rows of q from 0), both checked."""
    _host_i32(kv_indptr, kv_name, kv)
    _check_indptr(kv, kv_name, -1)
    _host_i32(qo_indptr, "qo_indptr", qo)
    _check_indptr(qo, "qo_indptr", kv.n - 1)
    return 0


cdef inline bint _is_i32_vector(Py_buffer* v) noexcept:
    cdef const char* f = v.format
    if v.ndim != 1 or v.itemsize != 4 or f == NULL:
        return False
    if v.shape[0] > 1 and v.strides[0] != 4:
        return False
    if f[0] == b'<' or f[0] == b'=' or f[0] == b'@':  # x86-64 / aarch64: little-endian
        f += 1
    return f[0] == b'i' and f[1] == 0


cdef int _host_i32(object x, str name, HostI32* h) except -1:
    """``x`` as a host int32 vector, read in place when it already is one (numpy int32,
    1-D, contiguous); anything else goes through attention_args.host_index_array (which
    converts with range checks or refuses device arrays with the argument's name)."""
    global _ndarray
    if _ndarray is None:
        _ndarray = _A().np.ndarray
    if type(x) is not _ndarray:
        x = _A().host_index_array(x, name)
    PyObject_GetBuffer(x, &h.view, PyBUF_FORMAT | PyBUF_STRIDES)
    h.held = True
    if not _is_i32_vector(&h.view):
        _host_release(h)
        x = _A().host_index_array(x, name)  # wrong dtype / layout: convert once
        PyObject_GetBuffer(x, &h.view, PyBUF_FORMAT | PyBUF_STRIDES)
        h.held = True
    h.p = <const int32_t*>h.view.buf
    h.n = h.view.shape[0]
    return 0


cdef int _check_indptr(HostI32* a, str name, int64_t batch) except -1:
    """batch + 1 >= 2 entries (exactly, when ``batch`` >= 0), from 0 (upstream's layout;
    a page table offset is not something every planner and kernel is known to honour),
    non-decreasing."""
    cdef Py_ssize_t i, n = a.n
    cdef const int32_t* p = a.p
    if n < 2:
        raise ValueError(f"{name}: expected batch_size + 1 >= 2 entries, got {n}")
    if batch >= 0 and n != batch + 1:
        raise ValueError(f"{name}: expected {batch + 1} entries (batch_size + 1), got {n}")
    if p[0] != 0:
        raise ValueError(f"{name}: must start at 0, got {name}[0] = {p[0]}")
    for i in range(1, n):
        if p[i] < p[i - 1]:
            raise ValueError(f"{name}: must be non-decreasing, but {name}[{i}] = {p[i]} < "
                             f"{name}[{i - 1}] = {p[i - 1]}")
    return 0


cdef inline int64_t _kv_len(HostI32* kv, HostI32* lp, int64_t page_size,
                            Py_ssize_t i) noexcept:
    """Request i's KV length: ragged (no ``lp``) kv[i+1] - kv[i]; paged
    ``max(pages - 1, 0) * page_size + last_page_len`` (upstream get_seq_lens)."""
    cdef int64_t pages = <int64_t>kv.p[i + 1] - kv.p[i]
    if lp.p == NULL:
        return pages
    return (pages - 1) * page_size + lp.p[i] if pages > 0 else 0


cdef int _check_last_page_len(HostI32* ip, HostI32* lp, int64_t page_size,
                              str name) except -1:
    """``last_page_len``: one entry per request, 1..page_size for a request with pages, 0
    for one without, and a KV length that fits in int32."""
    cdef Py_ssize_t i, batch = ip.n - 1
    cdef int64_t pages
    if lp.n != batch:
        raise ValueError(f"{name}: expected {batch} entries (batch_size), got {lp.n}")
    for i in range(batch):
        pages = <int64_t>ip.p[i + 1] - ip.p[i]
        if (lp.p[i] < 1 or lp.p[i] > page_size) if pages > 0 else lp.p[i] != 0:
            raise ValueError(f"{name}[{i}] = {lp.p[i]} is invalid for a request "
                             f"with {pages} page(s) of page_size {page_size}: expected "
                             f"1..page_size when it has pages, 0 when it has none")
        if _kv_len(ip, lp, page_size, i) > 2147483647:
            raise ValueError(f"request {i}: {_kv_len(ip, lp, page_size, i)} KV tokens do "
                             f"not fit in int32")
    return 0


cdef int _check_causal(HostI32* qo, HostI32* kv, HostI32* lp, int64_t page_size) except -1:
    """Causal rows align bottom-right: every request needs qo_len <= kv_len."""
    cdef Py_ssize_t i
    cdef int64_t rows, keys
    for i in range(qo.n - 1):
        rows = <int64_t>qo.p[i + 1] - qo.p[i]
        keys = _kv_len(kv, lp, page_size, i)
        if rows > keys:
            raise ValueError(f"causal: request {i} has {rows} query rows but {keys} keys; "
                             f"causal attention aligns rows bottom-right and needs "
                             f"qo_len <= kv_len")
    return 0


cdef int64_t _check_host_indices(HostI32* ip, HostI32* ix, str name) except -1:
    """A host page table covering ``[indptr[0], indptr[-1])`` with ids >= 0. Returns the
    number of pages the cache must have (largest id + 1)."""
    cdef Py_ssize_t i, need = ip.p[ip.n - 1]
    cdef int32_t lo = 0, hi = -1
    cdef const int32_t* p = ix.p
    if ix.n < need:
        raise ValueError(f"{name}: expected at least paged_kv_indptr[-1] = {need} "
                         f"entries, got {ix.n}")
    for i in range(ip.p[0], need):  # min/max without branches on the data: vectorizes
        lo = p[i] if p[i] < lo else lo
        hi = p[i] if p[i] > hi else hi
    if lo < 0:
        for i in range(ip.p[0], need):
            if p[i] < 0:
                raise ValueError(f"{name}: page ids must be >= 0, got {p[i]} at {i}")
    return <int64_t>hi + 1


cdef bint _same_args(tuple a, tuple b) except -1:
    """Equal element by element and of the same types (1, 1.0 and True differ)."""
    cdef Py_ssize_t i
    if b is None or len(a) != len(b):
        return False
    for i in range(len(a)):
        x = a[i]
        y = b[i]
        if x is y:
            continue
        if type(x) is not type(y):
            return False
        try:
            if not (x == y):
                return False
        except Exception:  # noqa: BLE001 - e.g. an array compared elementwise
            return False
    return True


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


# Device metadata segments (qo_indptr?, kv_indptr, last_page_len?, page table?) staged
# through the pinned slot, plus host-only words after them for the kernel's planner.
cdef enum:
    MAX_SEGS = 4

cdef struct Staging:
    int n
    const int32_t* src[MAX_SEGS]   # host source; NULL: not staged (device page table)
    int64_t len[MAX_SEGS]
    int64_t cap[MAX_SEGS]          # graph mode: fixed capacity (buffers never move)
    int64_t off[MAX_SEGS]          # int32 offsets, the same in staging and device meta
    int64_t host_words
    int64_t host_off
    void* dev_table                # the caller's CUDA page table (NULL: host table)
    PyObject* table_owner          # its Python object (borrowed: the caller holds it)
    bint table_in_place            # read by run() in place instead of copied


cdef inline void _staging_init(Staging* st) noexcept:
    st.n = 0
    st.host_words = 0
    st.host_off = 0
    st.dev_table = NULL
    st.table_owner = NULL
    st.table_in_place = False


cdef inline void _table_seg(Staging* st, const int32_t* host, int64_t need) noexcept:
    """The page-table segment: staged from the host table, copied device-to-device from a
    CUDA table in graph mode (buffers must not move), or left out when run() reads the
    caller's CUDA table in place."""
    if st.table_owner == NULL:
        _seg(st, host, need)
    else:
        _seg(st, NULL, 0 if st.table_in_place else need)


cdef inline void _seg(Staging* st, const int32_t* src, int64_t n) noexcept:
    st.src[st.n] = src
    st.len[st.n] = n
    st.cap[st.n] = 0
    st.n += 1


cdef int _graph_caps(_BatchAttention w, Staging* st, int64_t batch, int64_t need) except -1:
    """Graph mode fixes every segment's capacity (buffers must not move between replays):
    indptrs batch + 1, last_page_len batch, page table max_num_pages."""
    cdef int i
    if not w.use_cuda_graph:
        return 0
    if w.kind != RAGGED_PREFILL:
        if w._max_pages < 0:
            raise ValueError("use_cuda_graph=True needs max_num_pages (the page-table capacity) "
                             "in the constructor")
        if need > w._max_pages:
            raise ValueError(f"paged_kv_indices: {need} pages exceed max_num_pages "
                             f"{w._max_pages} of this CUDA-graph wrapper")
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
    _pack_i32(f, i, slot.staging_ptr, 0, kDLCPU, 0)
    f.slots[i].dl.dtype.code = key >> 16
    f.slots[i].dl.dtype.bits = (key >> 8) & 0xFF


cdef inline void* _at(void* base, int64_t words) noexcept:
    return <void*>(<char*>base + words * 4)


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
        _check_causal(qo, kv, lp, c.page_size)
    planned = rows
    if w.use_cuda_graph:
        if w._max_rows < 0:
            w._max_rows = rows
        if rows > w._max_rows:
            raise ValueError(f"qo_indptr: {rows} rows exceed the CUDA-graph capacity "
                             f"{w._max_rows} (max_total_num_rows)")
        planned = w._max_rows
    _seg(&st, qo.p, batch + 1)
    _seg(&st, kv.p, batch + 1)
    if kind != RAGGED_PREFILL:
        _seg(&st, lp.p, batch)
        _table_seg(&st, ix.p, need)
    _graph_caps(w, &st, batch, need)
    st.host_words = batch  # kv_len_arr for the planner
    # ---- CUDA from here on (backend "auto" queries the device and probes for FA3)
    slot = w._open_plan(c, "ragged_run" if kind == RAGGED_PREFILL else "paged_run",
                        _KIND_NAMES[kind], batch, causal, planned, given_stream, given_h, &st,
                        &stream_h)
    try:
        kv_lens = <int32_t*>_at(slot.staging_ptr, st.host_off)
        for i in range(batch):
            kv_lens[i] = <int32_t>_kv_len(kv, lp, c.page_size, i)
        frame_init(&f, c.plan_b.n)
        try:
            w._pack_workspaces(c.plan_b, &f, slot)
            _pack_i32(&f, 3, _at(slot.staging_ptr, st.off[0]), batch + 1, kDLCPU, 0)
            _pack_i32(&f, 4, _at(slot.staging_ptr, st.off[1]), batch + 1, kDLCPU, 0)
            _pack_i32(&f, 5, kv_lens, batch, kDLCPU, 0)
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
            info = w._call_plan(c.plan_b, &f, stream_h)
        finally:
            frame_release(&f)
    finally:
        w._ring.commit(slot, stream_h)
    p = w._new_plan(kind, c, batch, causal, rows, planned,
                    kv.p[kv.n - 1] if kind == RAGGED_PREFILL else 0, min_pages)
    w._finish_plan(p, c, info, &st, stream_h, slot, need)
    return p
