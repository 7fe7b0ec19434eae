# The plan half of every plan/run wrapper (batch_plan.pyx): host index arrays, staging
# through the pinned ring, workspaces, stream ordering, the base of every Plan. The run half
# (checked run, kept frame, prepared launch) is batch_run.pxd; the wrappers cimport both.
from cpython.buffer cimport PyBuffer_Release
from cpython.ref cimport PyObject
from libc.stdint cimport int32_t, int64_t, uint32_t
from flashinfer_cy._abi.dlpack cimport DLDeviceType
from flashinfer_cy._core.binding cimport Binding, CallFrame
from flashinfer_cy._core.checked_frame cimport CheckedFrame
from flashinfer_cy._core.pinned cimport PinnedRing, PinnedSlot, Event
from flashinfer_cy._core.tensor cimport TensorSlot, SRC_DESC

# ------------------------------------------------------------------ host index arrays

cdef struct HostI32:
    Py_buffer view
    const int32_t* p
    Py_ssize_t n
    bint held

cdef int host_i32(object x, str name, HostI32* h) except -1
cdef int check_indptr(HostI32* a, str name, int64_t batch) except -1
cdef int read_indptrs(object qo_indptr, object kv_indptr, str kv_name, HostI32* qo,
                      HostI32* kv) except -1
cdef int check_last_page_len(HostI32* ip, HostI32* lp, int64_t page_size, str name) except -1
cdef int check_causal(HostI32* qo, HostI32* kv, HostI32* lp, int64_t page_size) except -1
cdef int64_t check_host_indices(HostI32* ip, HostI32* ix, str name,
                                str indptr_name) except -1
cdef bint same_args(tuple a, tuple b) except -1
cdef bint stream_arg(object stream, void** handle) except -1
cdef int64_t workspace_size(int64_t nbytes, str name) except -1


cdef inline void host_init(HostI32* h) noexcept:
    h.held = False
    h.p = NULL
    h.n = 0


cdef inline void host_release(HostI32* h) noexcept:
    if h.held:
        PyBuffer_Release(&h.view)
        h.held = False


cdef inline void hosts(bint init, HostI32* a, HostI32* b, HostI32* c, HostI32* d) noexcept:
    """Initialise (``init``) or release up to four host vectors (NULL: none)."""
    cdef HostI32* all_[4]
    cdef int i
    all_[0], all_[1], all_[2], all_[3] = a, b, c, d
    for i in range(4):
        if all_[i] != NULL:
            if init:
                host_init(all_[i])
            else:
                host_release(all_[i])


cdef inline int64_t kv_len_of(HostI32* kv, HostI32* lp, int64_t page_size,
                              Py_ssize_t i) noexcept:
    """Request i's KV length: ragged (no ``lp``) kv[i+1] - kv[i]; paged
    ``max(pages - 1, 0) * page_size + last_page_len`` (upstream get_seq_lens)."""
    cdef int64_t pages = <int64_t>kv.p[i + 1] - kv.p[i]
    if lp.p == NULL:
        return pages
    return (pages - 1) * page_size + lp.p[i] if pages > 0 else 0


# ------------------------------------------------- staging (pinned slot -> device meta)
# Device metadata segments (indptrs, lengths, page table) staged through the pinned slot,
# plus host-only words after them for the kernel's planner.
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


cdef inline void staging_init(Staging* st) noexcept:
    st.n = 0
    st.host_words = 0
    st.host_off = 0
    st.dev_table = NULL
    st.table_owner = NULL
    st.table_in_place = False


cdef inline void seg(Staging* st, const int32_t* src, int64_t n) noexcept:
    st.src[st.n] = src
    st.len[st.n] = n
    st.cap[st.n] = 0
    st.n += 1


cdef inline void table_seg(Staging* st, const int32_t* host, int64_t need) noexcept:
    """The page-table segment: staged from the host table, copied device-to-device from a
    CUDA table in graph mode (buffers must not move), or left out when run() reads the
    caller's CUDA table in place."""
    if st.table_owner == NULL:
        seg(st, host, need)
    else:
        seg(st, NULL, 0 if st.table_in_place else need)


cdef inline void* at_word(void* base, int64_t words) noexcept:
    return <void*>(<char*>base + words * 4)


cdef inline void pack_i32(CallFrame* f, int i, void* ptr, int64_t n, int dev_type,
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


# ---------------------------------------------------------------- run argument layout
# Argument positions in a run signature, read from the Binding's names (-1: absent). One
# struct for every wrapper: MHA's q/k/v (paged or ragged), MLA's q_nope (q) / q_pe /
# ckv_cache (k) / kpe_cache.
cdef struct RunLayout:
    int fws, iws, info, q, k, v, qo_indptr, kv_indptr, indices, lpl, o, lse
    int mask, layout, window, pdl, extras
    int q_pe, kpe, num_heads, page_size, sm_scale, lse_base_e

cdef int read_layout(Binding b, RunLayout* L) except -1


# ------------------------------------------------------------------------------ plans

cdef class PlanBase:
    cdef readonly str kind
    cdef readonly str backend
    cdef readonly str uri
    cdef readonly str dtype
    cdef readonly str kv_dtype
    cdef readonly int device
    cdef readonly int batch_size
    cdef readonly int page_size
    cdef readonly bint causal
    cdef readonly bint use_cuda_graph
    cdef readonly double sm_scale
    cdef readonly int64_t total_num_rows      # qo_indptr[-1] (prefill) / batch (decode)
    cdef readonly int64_t planned_num_rows    # rows q must have (graph mode: the maximum)
    cdef readonly int64_t min_num_pages       # page table's max id + 1 (0: unknown)
    cdef readonly int64_t generation
    cdef readonly object plan_info            # runtime.Array (owned)
    cdef int kind_code
    cdef Binding run_b
    cdef RunLayout L
    cdef uint32_t caller                      # slots a run() fills from its caller's tensors
    cdef bint rewrites_inputs                 # run() rewrites caller slots (FA3 ragged HND)
    cdef object meta                          # DeviceArray the device pointers point into
    cdef void* d_indices
    cdef int64_t n_indices
    cdef object page_table_ref                # the caller's CUDA page table, read in place
    cdef void* stream                         # where the plan's copies were enqueued
    cdef Event copied                         # recorded after them


cdef class BatchPlanner:
    cdef readonly bint use_cuda_graph
    cdef readonly str backend
    cdef readonly int device
    cdef readonly PlanBase current_plan      # the current plan (None before the first)
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
    cdef object _frozen                # graph mode: the first plan's frozen key
    cdef RunLayout _layout             # argument positions of _layout_of's signature
    cdef object _layout_of
    cdef CheckedFrame _last_run        # the last run()'s checked frame (batch_run.pyx)
    cdef object __weakref__

    cdef int _check_workspace(self, object buf, str name) except -1
    cdef int _ensure_resources(self, void* stream) except -1
    cdef int _ensure_meta(self, int64_t elems, void* stream) except -1
    cdef void* _plan_stream(self, bint given, void* handle) except? NULL
    cdef int _begin_plan(self, void* stream) except -1
    cdef int _stage(self, PinnedSlot slot, Staging* st, void* stream) except -1
    cdef int64_t _page_table(self, Staging* st, object x, HostI32* ip, HostI32* ix,
                             str name, str dev_name, str indptr_name) except -1
    cdef int _check_device_table(self, TensorSlot* s, int64_t need, str name,
                                 str indptr_name) except -1
    cdef int _check_frozen(self, tuple key, tuple names) except -1
    cdef PinnedSlot _open_plan(self, bint given, void* given_h, Staging* st, void** stream)
    cdef object _plan_call(self, Binding b, CallFrame* f, PinnedSlot slot, void* stream,
                           bint staged=*)
    cdef object _copy_schedule(self, Binding b, object returned, PinnedSlot slot,
                               void* int_ws, void* stream)
    cdef int _graph_pages(self, int64_t need, str name) except -1
    cdef int64_t _graph_rows(self, int64_t rows) except -1
    cdef int _commit_plan(self, PlanBase p, object info, void* stream, PinnedSlot slot,
                          object frozen) except -1
    cdef int _check_current(self, PlanBase p) except -1
    cdef int _order_after_plan(self, PlanBase p, void* stream) except -1

cdef str no_plan_message(BatchPlanner w)
