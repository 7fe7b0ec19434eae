# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The plan half of the plan/run wrappers (MHA decode and prefill in batch_attention.pyx,
MLA in batch_mla.pyx): where a plan's host buffers live and how its copies are ordered.

* **Host index arrays** (``HostI32``, ``host_i32``, ``check_*``): plan() runs every decode
  step, so its host path reads the caller's arrays in place (buffer protocol, no memoryview
  or temporary array) and validates them in single passes.
* **Staging** (``Staging``, ``BatchPlanner._stage``): the device metadata a run reads
  (indptrs, lengths, page table) is memcpy'd into one slot of the page-locked ring
  (flashinfer_cy._core.pinned) and copied host->device with one async copy into the
  wrapper's metadata buffer. A slot is reused only once the event recorded after its copies
  has completed, so the next plan() never overwrites a mirror whose copy has not run yet.
  The kernel's own planner writes the same slot's int-workspace mirror.
* **Workspaces** (float, int: allocated on the first plan unless given) and the metadata
  buffer (grows geometrically; fixed in CUDA-graph mode).
* **Stream ordering**: a run on another stream than the plan's waits (GPU-side) for the
  plan's copies (``_order_after_plan``); the next plan() makes its stream wait for every
  stream that ran the previous plan (``_begin_plan``), so workspaces are never rewritten
  under a running kernel. No device->host copy, no synchronize.
* **PlanBase**: what every wrapper's Plan has (kind, backend, URI, dtypes, batch, rows,
  page table, the plan-info Array it owns, where its copies went).
"""

from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_FORMAT, PyBUF_STRIDES
from cpython.ref cimport PyObject
from libc.stdint cimport int32_t, int64_t, uint32_t, uintptr_t
from libc.string cimport memcpy

from flashinfer_cy._abi.dlpack cimport kDLCUDA, kDLCPU, kDLCUDAHost
from flashinfer_cy._abi.tvm_ffi cimport TVMFFIAny
from flashinfer_cy._core.binding cimport Binding, CallFrame, frame_release
from flashinfer_cy._core.runtime cimport Array, ensure_ffi, take_result, env_stream
from flashinfer_cy._core.stream cimport resolve_stream
from flashinfer_cy._core.tensor cimport (TensorSlot, TensorDesc, DT_I32, to_dltensor,
                                         release_slot, check_cuda, check_dtype, check_ndim,
                                         check_contiguous, check_writable, as_bool)
from flashinfer_cy._core.pinned cimport (PinnedRing, PinnedSlot, Event, ensure_pinned_rt,
                                         capture_status, wait_event, record_event, copy_async)
from flashinfer_cy.kernels.attention cimport _A

from flashinfer_cy import errors as _errors
from flashinfer_cy._core.array import DeviceArray
from flashinfer_cy.kernels import attention_uri as _uri

DEFAULT_FLOAT_WORKSPACE_BYTES = 128 * 1024 * 1024  # upstream's recommendation
DEFAULT_INT_WORKSPACE_BYTES = 8 * 1024 * 1024      # upstream's int workspace (and mirror)
# Less than any plan takes: the smallest (a 1-request prefill) puts five index arrays, four
# of them 16-byte aligned, in the int workspace (scheduler.cuh PrefillPlan). A plan that
# still overflows a bigger workspace is refused by the planner (no plan is current then).
MIN_WORKSPACE_BYTES = 128

cdef object _ndarray = None   # numpy.ndarray, bound on first use (import stays numpy-free)


# ------------------------------------------------------------------------ host arrays

cdef int64_t workspace_size(int64_t nbytes, str name) except -1:
    if nbytes < MIN_WORKSPACE_BYTES:
        raise ValueError(f"{name}: {nbytes} bytes is less than any plan takes; expected at "
                         f"least {MIN_WORKSPACE_BYTES} (upstream uses 128 MiB float, 8 MiB int)")
    return nbytes


cdef bint stream_arg(object stream, void** handle) except -1:
    """Resolve plan()'s ``stream=`` once, first, so that a bad one is refused with the
    other argument errors, before any module is loaded or CUDA touched. True when given."""
    handle[0] = NULL
    if stream is None:
        return False
    resolve_stream(stream, handle)
    return True


cdef int read_indptrs(object qo_indptr, object kv_indptr, str kv_name,
                      HostI32* qo, HostI32* kv) except -1:
    """The prefill plans' two indptrs: ``kv_indptr`` (any batch), then ``qo_indptr`` (the
    same batch, rows of q from 0), both checked."""
    host_i32(kv_indptr, kv_name, kv)
    check_indptr(kv, kv_name, -1)
    host_i32(qo_indptr, "qo_indptr", qo)
    check_indptr(qo, "qo_indptr", kv.n - 1)
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


cdef int host_i32(object x, str name, HostI32* h) except -1:
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
        host_release(h)
        x = _A().host_index_array(x, name)  # wrong dtype / layout: convert once
        PyObject_GetBuffer(x, &h.view, PyBUF_FORMAT | PyBUF_STRIDES)
        h.held = True
    h.p = <const int32_t*>h.view.buf
    h.n = h.view.shape[0]
    return 0


cdef int check_indptr(HostI32* a, str name, int64_t batch) except -1:
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


cdef int check_last_page_len(HostI32* ip, HostI32* lp, int64_t page_size,
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
        if kv_len_of(ip, lp, page_size, i) > 2147483647:
            raise ValueError(f"request {i}: {kv_len_of(ip, lp, page_size, i)} KV tokens do "
                             f"not fit in int32")
    return 0


cdef int check_causal(HostI32* qo, HostI32* kv, HostI32* lp, int64_t page_size) except -1:
    """Causal rows align bottom-right: every request needs qo_len <= kv_len. ``lp``
    NULL-data and ``page_size`` 1: ``kv`` holds the KV lengths' indptr (ragged)."""
    cdef Py_ssize_t i
    cdef int64_t rows, keys
    for i in range(qo.n - 1):
        rows = <int64_t>qo.p[i + 1] - qo.p[i]
        keys = kv_len_of(kv, lp, page_size, i)
        if rows > keys:
            raise ValueError(f"causal: request {i} has {rows} query rows but {keys} keys; "
                             f"causal attention aligns rows bottom-right and needs "
                             f"qo_len <= kv_len")
    return 0


cdef int64_t check_host_indices(HostI32* ip, HostI32* ix, str name,
                                str indptr_name) except -1:
    """A host page table covering ``[indptr[0], indptr[-1])`` with ids >= 0. Returns the
    number of pages the cache must have (largest id + 1)."""
    cdef Py_ssize_t i, need = ip.p[ip.n - 1]
    cdef int32_t lo = 0, hi = -1
    cdef const int32_t* p = ix.p
    if ix.n < need:
        raise ValueError(f"{name}: expected at least {indptr_name}[-1] = {need} "
                         f"entries, got {ix.n}")
    for i in range(ip.p[0], need):  # min/max without branches on the data: vectorizes
        lo = p[i] if p[i] < lo else lo
        hi = p[i] if p[i] > hi else hi
    if lo < 0:
        for i in range(ip.p[0], need):
            if p[i] < 0:
                raise ValueError(f"{name}: page ids must be >= 0, got {p[i]} at {i}")
    return <int64_t>hi + 1


cdef bint same_args(tuple a, tuple b) except -1:
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


cdef inline int64_t _round4(int64_t n) noexcept:
    return (n + 3) & ~3  # 16-byte aligned segments


# ------------------------------------------------------------------------ run layout

cdef int _pos(tuple names, str a, str b=None):
    if a in names:
        return names.index(a)
    if b is not None and b in names:
        return names.index(b)
    return -1


cdef int read_layout(Binding b, RunLayout* L) except -1:
    n = b.names
    L.fws = _pos(n, "float_workspace_buffer")
    L.iws = _pos(n, "int_workspace_buffer")
    L.info = _pos(n, "plan_info_vec")
    L.q = _pos(n, "q", "q_nope")
    L.k = _pos(n, "paged_k_cache", "k")
    if L.k < 0:
        L.k = _pos(n, "ckv_cache")
    L.v = _pos(n, "paged_v_cache", "v")
    L.qo_indptr = _pos(n, "qo_indptr")
    L.kv_indptr = _pos(n, "paged_kv_indptr", "kv_indptr")
    L.indices = _pos(n, "paged_kv_indices", "kv_indices")
    L.lpl = _pos(n, "paged_kv_last_page_len")
    L.o = _pos(n, "o")
    L.lse = _pos(n, "maybe_lse")
    L.mask = _pos(n, "mask_mode_code")
    L.layout = _pos(n, "kv_layout_code", "layout")
    L.window = _pos(n, "window_left")
    L.pdl = _pos(n, "enable_pdl")
    L.extras = L.pdl + 1
    L.q_pe = _pos(n, "q_pe")
    L.kpe = _pos(n, "kpe_cache")
    L.num_heads = _pos(n, "num_heads")
    L.page_size = _pos(n, "page_size")
    L.sm_scale = _pos(n, "sm_scale")
    L.lse_base_e = _pos(n, "return_lse_base_on_e")
    return 0


cdef uint32_t _caller_slots(RunLayout* L) noexcept:
    """The slots a run() fills from its caller's tensors (the rest come from the plan)."""
    cdef int slots[7]
    cdef uint32_t m = 0, one = 1
    cdef int i
    slots[:] = [L.q, L.k, L.v, L.q_pe, L.kpe, L.o, L.lse]
    for i in range(7):
        if slots[i] >= 0:
            m |= one << slots[i]
    return m


# ------------------------------------------------------------------------------ plans

cdef class PlanBase:
    """What every plan has; the wrappers' Plan classes add their configuration."""

    @property
    def stream_handle(self):
        return <uintptr_t>self.stream


cdef str no_plan_message(BatchPlanner w):
    if w._generation == 0:
        return f"{type(w).__name__}: call plan() before run()"
    return (f"{type(w).__name__}: the last plan() failed after it had begun to overwrite "
            f"the workspaces, so no plan is current: call plan() again")


cdef class BatchPlanner:
    """Workspaces, pinned ring, metadata buffer and stream ordering of one wrapper."""

    def __init__(self, *, use_cuda_graph=False, backend="auto", device=0,
                 float_workspace_buffer=None, int_workspace_buffer=None,
                 float_workspace_bytes=DEFAULT_FLOAT_WORKSPACE_BYTES,
                 int_workspace_bytes=DEFAULT_INT_WORKSPACE_BYTES, max_num_pages=None,
                 max_total_num_rows=None, pinned_slots=4):
        if backend not in _uri.BACKENDS:
            raise ValueError(f"backend: expected one of {_uri.BACKENDS}, got {backend!r}")
        self.backend = backend
        self.use_cuda_graph = as_bool(use_cuda_graph, "use_cuda_graph", "True or False")
        if isinstance(device, bool) or not isinstance(device, int) or device < 0:
            raise ValueError(f"device: expected a CUDA device ordinal >= 0, got {device!r}")
        self.device = device
        self.float_bytes = workspace_size(
            _A().positive_int(float_workspace_bytes, "float_workspace_bytes"),
            "float_workspace_bytes")
        self.int_bytes = workspace_size(
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
            workspace_size(s.dl.shape[0], name)
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

    # -- plan ----------------------------------------------------------------------------

    cdef void* _plan_stream(self, bint given, void* handle) except? NULL:
        """The stream plan() enqueues on: ``stream=`` (resolved by stream_arg) or the
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
                memcpy(at_word(slot.staging_ptr, st.off[i]), st.src[i], st.len[i] * 4)
                end_staged = st.off[i] + st.len[i]
        self._ensure_meta(dev_total, stream)
        cdef void* meta = (<TensorDesc>self._meta).dl.data
        copy_async(meta, slot.staging_ptr, end_staged * 4, stream, self.device)
        i = st.n - 1
        if i >= 0 and st.src[i] == NULL and st.len[i] > 0:
            copy_async(at_word(meta, st.off[i]), st.dev_table, st.len[i] * 4, stream,
                       self.device)
        return 0

    cdef int64_t _page_table(self, Staging* st, object x, HostI32* ip, HostI32* ix,
                             str name, str dev_name, str indptr_name) except -1:
        """The page table covering ``[ip[0], ip[-1])``. A CUDA int32 tensor is checked and
        recorded in ``st``: run() reads it in place, as upstream does (keep it unchanged
        until this plan's runs are done); graph mode copies it into the wrapper's fixed
        buffer (a captured graph must not see it move). Anything else is read into ``ix`` as
        a host vector. Returns the pages the cache must have (0: unknown, a CUDA table).
        ``name`` names a host table in errors, ``dev_name`` a device one.

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
                to_dltensor(x, &s, dev_name)
            except TypeError:  # not a tensor: a host array-like for host_i32 to judge
                pass
            else:
                try:
                    if s.dl.device.device_type != kDLCPU and \
                            s.dl.device.device_type != kDLCUDAHost:
                        self._check_device_table(&s, need, dev_name, indptr_name)
                        st.dev_table = s.dl.data
                        st.table_owner = <PyObject*>x
                        st.table_in_place = not self.use_cuda_graph
                        return 0
                finally:
                    release_slot(&s)
        host_i32(x, name, ix)
        return check_host_indices(ip, ix, name, indptr_name)

    cdef int _check_device_table(self, TensorSlot* s, int64_t need, str name,
                                 str indptr_name) except -1:
        check_cuda(s, name)
        check_dtype(s, name, DT_I32)
        check_ndim(s, name, 1)
        check_contiguous(s, name)
        if s.dl.device.device_id != self.device:
            raise ValueError(f"{name}: on cuda:{s.dl.device.device_id}, the "
                             f"wrapper is for cuda:{self.device}")
        if s.dl.shape[0] < need:
            raise ValueError(f"{name}: expected at least {indptr_name}[-1] = "
                             f"{need} entries, got {s.dl.shape[0]}")
        return 0

    cdef int _check_frozen(self, tuple key, tuple names) except -1:
        """Graph mode: every plan keeps what the first one baked into a captured graph
        (``key``, its fields named by ``names``)."""
        if self.use_cuda_graph and self._frozen is not None and key != self._frozen:
            diff = [f"{n}: {a!r} -> {b!r}" for n, a, b in zip(names, self._frozen, key)
                    if a != b]
            raise ValueError("in CUDA-graph mode every plan must keep what the captured graph "
                             "baked in; changed: " + "; ".join(diff))
        return 0

    cdef PinnedSlot _open_plan(self, bint given, void* given_h, Staging* st, void** stream):
        """Every plan()'s CUDA part before its own export call (after the wrapper loaded
        its bindings and checked the frozen key): pick the plan stream (``stream[0]``) and
        order it after runs on other streams, take a free pinned slot and stage the metadata
        through it. The caller commits the returned slot; a failure here commits it too."""
        cdef PinnedSlot slot
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

    cdef object _plan_call(self, Binding b, CallFrame* f, PinnedSlot slot, void* stream,
                           bint staged=False):
        """Call a plan export whose frame ``f`` holds every argument but the three
        workspaces every plan export starts with (float, int, ``slot``'s page-locked int
        mirror), on the plan stream; release ``f`` and commit ``slot`` (also on failure).
        Returns the plan-info Array.

        ``staged``: the export returns ``(plan info, n)`` and leaves the copy of the mirror's
        first ``n`` bytes (the schedule it wrote there) into the int workspace to its caller
        (flashinfer 0.7.x's MLA plan; 0.6.3's enqueued it itself). Enqueued here on the plan
        stream, before the slot's event is recorded, so the slot is reused only after it ran
        -- what upstream's Python gets by first copying the mirror into a fresh pinned
        buffer."""
        cdef TVMFFIAny result
        cdef void* int_ws
        try:
            try:
                b.tensor(f, 0, self._float_ws)
                b.tensor(f, 1, self._int_ws)
                b.tensor(f, 2, slot.kernel_desc)
                int_ws = <char*>f.slots[1].dl.data + f.slots[1].dl.byte_offset
                b.invoke(f, <uintptr_t>stream, &result)
                info = take_result(&result)
            finally:
                frame_release(f)
            if staged:
                info = self._copy_schedule(b, info, slot, int_ws, stream)
            return info
        finally:
            self._ring.commit(slot, stream)

    cdef object _copy_schedule(self, Binding b, object returned, PinnedSlot slot,
                               void* int_ws, void* stream):
        """A staged plan's ``(plan info, n)``: check it, enqueue the mirror -> int workspace
        copy of ``n`` bytes, return the plan info."""
        cdef int64_t n = -1
        cdef size_t room = slot.kernel_bytes if slot.kernel_bytes < self.int_bytes \
            else self.int_bytes
        info = None
        if isinstance(returned, Array) and len(returned) == 2:
            info, count = returned[0], returned[1]
            if isinstance(count, int) and not isinstance(count, bool):
                n = count
        if not isinstance(info, Array) or n < 0 or <size_t>n > room:
            raise _errors.KernelVersionError(
                f"{b.uri}.{b.symbol} (flashinfer {b.release}) returned {returned!r}; that "
                f"release's plan returns (plan info, staged bytes <= the {room}-byte int "
                f"workspace): the module is not the release it is taken for")
        if n:
            copy_async(int_ws, slot.kernel_ptr, <size_t>n, stream, self.device)
        return info

    cdef int _graph_pages(self, int64_t need, str name) except -1:
        """Graph mode: the page table fits the fixed capacity (max_num_pages)."""
        if self._max_pages < 0:
            raise ValueError("use_cuda_graph=True needs max_num_pages (the page-table capacity) "
                             "in the constructor")
        if need > self._max_pages:
            raise ValueError(f"{name}: {need} pages exceed max_num_pages "
                             f"{self._max_pages} of this CUDA-graph wrapper")
        return 0

    cdef int64_t _graph_rows(self, int64_t rows) except -1:
        """The rows q must have: ``rows``, or in graph mode the fixed capacity
        (max_total_num_rows, default the first plan's rows)."""
        if not self.use_cuda_graph:
            return rows
        if self._max_rows < 0:
            self._max_rows = rows
        if rows > self._max_rows:
            raise ValueError(f"qo_indptr: {rows} rows exceed the CUDA-graph capacity "
                             f"{self._max_rows} (max_total_num_rows)")
        return self._max_rows

    cdef int _commit_plan(self, PlanBase p, object info, void* stream, PinnedSlot slot,
                          object frozen) except -1:
        """Make ``p`` (its run binding, device pointers and configuration filled in by the
        wrapper) the current plan: it owns ``info``, reads the metadata buffer, was copied
        on ``stream`` (``slot``'s event). ``frozen``: its graph-mode key."""
        p.plan_info = info
        if p.run_b is not self._layout_of:  # argument positions, read once per binding
            read_layout(p.run_b, &self._layout)
            self._layout_of = p.run_b
        p.L = self._layout
        p.caller = _caller_slots(&p.L)
        p.meta = self._meta
        p.stream = stream
        p.copied = slot.done
        if self.use_cuda_graph and self._frozen is None:
            self._frozen = frozen
        self._generation += 1
        p.generation = self._generation
        self.current_plan = p
        self._last_run = None  # checked against the previous plan
        return 0

    # -- run side of the ordering --------------------------------------------------------

    cdef int _check_current(self, PlanBase p) except -1:
        if p is None or self.current_plan is None:
            raise _errors.PlanNotReadyError(no_plan_message(self))
        if self.current_plan is not p:
            raise _errors.PlanMismatchError(
                f"stale plan (generation {p.generation}): the wrapper has planned again "
                f"(generation {self._generation}) and the workspaces now hold that plan")
        return 0

    cdef int _order_after_plan(self, PlanBase p, void* stream) except -1:
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
