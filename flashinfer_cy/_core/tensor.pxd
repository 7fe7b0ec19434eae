from cpython.ref cimport PyObject
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t
from flashinfer_cy._abi.dlpack cimport DLTensor, DLDataType, DLDeviceType, DLPackExchangeAPI

cdef enum:
    MAX_NDIM = 8
    # Device ordinals a producer may name: TVM-FFI's per-thread stream table is indexed by
    # the ordinal (streams.py says why a bound is needed).
    MAX_DEVICES = 1 << 16
    # from_exchange: the producer gave more than MAX_NDIM (or negative) dimensions.
    BAD_NDIM = -2
    # from_exchange: the producer gave dimensions but a NULL shape array.
    NULL_SHAPE = -3

# Packed dtype keys, (code << 16) | (bits << 8) | lanes, the same packing FlashInfer's
# dispatchers switch on (csrc/tvm_ffi_utils.h).
cdef enum DTypeKey:
    DT_F16 = (2 << 16) | (16 << 8) | 1
    DT_BF16 = (4 << 16) | (16 << 8) | 1
    DT_F32 = (2 << 16) | (32 << 8) | 1
    DT_F64 = (2 << 16) | (64 << 8) | 1
    DT_I32 = (0 << 16) | (32 << 8) | 1
    DT_I64 = (0 << 16) | (64 << 8) | 1
    DT_U8 = (1 << 16) | (8 << 8) | 1
    DT_I8 = (0 << 16) | (8 << 8) | 1
    DT_E4M3 = (10 << 16) | (8 << 8) | 1
    DT_E5M2 = (12 << 16) | (8 << 8) | 1
    DT_BOOL = (6 << 16) | (8 << 8) | 1   # kDLBool: one byte per element

cdef enum TensorSource:
    SRC_NONE = 0
    SRC_DESC = 1       # flashinfer_cy.TensorDesc / DeviceArray
    SRC_EXCHANGE = 2   # the producer type's __dlpack_c_exchange_api__ (PyTorch)
    SRC_DLPACK = 3     # obj.__dlpack__() capsule
    SRC_CAI = 4        # obj.__cuda_array_interface__

# One tensor argument of one call: the DLTensor handed to the kernel plus the storage it
# may point into. Lives on the caller's C stack for the duration of the call.
# What every call reads comes first (two cache lines); the shape/strides storage, used only
# by producers that give no arrays of their own and by kept frames, last.
cdef struct TensorSlot:
    DLTensor dl
    PyObject* keep                  # owned ref (a DLPack capsule) dropped by release_slot
    const DLPackExchangeAPI* api    # set for SRC_EXCHANGE: asked for the current stream
    void* producer_stream           # CAI v3 "stream", when the producer gave one
    int has_producer_stream
    int source
    int read_only                   # the producer exported it read-only (check_writable)
    int64_t shape[MAX_NDIM]
    int64_t strides[MAX_NDIM]

cdef int to_dltensor(object obj, TensorSlot* slot, str name) except -1
cdef int exchange_failed(int rc, TensorSlot* s, str name) except -1
cdef void release_slot(TensorSlot* slot) noexcept
cdef void own_shape(TensorSlot* s) noexcept
cdef void fill_contiguous_strides(TensorSlot* s) noexcept

cdef inline uint32_t dtype_key(DLDataType t) noexcept nogil:
    return (<uint32_t>t.code << 16) | (<uint32_t>t.bits << 8) | <uint32_t>t.lanes

cdef inline DLDataType dtype_of_key(uint32_t key) noexcept nogil:
    cdef DLDataType t
    t.code = <uint8_t>(key >> 16)
    t.bits = <uint8_t>((key >> 8) & 0xFF)
    t.lanes = <uint16_t>(key & 0xFF)
    return t

cdef str dtype_name(uint32_t key)
cdef int parse_dtype(object dtype, DLDataType* out) except -1

# Validation helpers: raise TypeError / ValueError naming the argument.
cdef int check_cuda(TensorSlot* s, str name) except -1
cdef int check_dtype(TensorSlot* s, str name, uint32_t a, uint32_t b=*) except -1
cdef int check_same_dtype(TensorSlot* s, str name, TensorSlot* ref, str ref_name) except -1
cdef int check_ndim(TensorSlot* s, str name, int ndim) except -1
cdef int check_dim(TensorSlot* s, str name, int axis, int64_t size, str what) except -1
cdef int check_last_contiguous(TensorSlot* s, str name) except -1
cdef int check_contiguous(TensorSlot* s, str name) except -1
cdef int check_same_shape(TensorSlot* s, str name, TensorSlot* ref, str ref_name) except -1
cdef int check_same_device(TensorSlot* s, str name, TensorSlot* ref, str ref_name) except -1
cdef int check_writable(TensorSlot* s, str name) except -1
cdef int check_aligned(TensorSlot* s, str name, int64_t align) except -1
cdef int check_disjoint(TensorSlot* w, str w_name, TensorSlot* r, str r_name) except -1
cdef int check_outputs_disjoint(TensorSlot* w0, str w0_name, TensorSlot* w1, str w1_name,
                                TensorSlot* reads, object read_names, int n) except -1
cdef int64_t numel(TensorSlot* s) noexcept
cdef tuple shape_of(TensorSlot* s)
cdef str describe(TensorSlot* s)
cdef double finite_float(object value, str name, str expected) except? -1.0
cpdef int check_native_order(object dtype, str name) except -1
cdef int as_bool(object value, str name, str expected) except -1

cdef class TensorDesc:
    cdef DLTensor dl
    cdef int64_t _shape[MAX_NDIM]
    cdef int64_t _strides[MAX_NDIM]
    cdef readonly object owner


cdef inline void point_desc(TensorDesc t, void* data, int device_type, int device_id,
                            int ndim) noexcept:
    """The rest of ``t``'s DLTensor once its shape, strides and dtype are filled in: its
    data, device and rank, over its own shape/strides arrays."""
    t.dl.data = data
    t.dl.device.device_type = <DLDeviceType>device_type
    t.dl.device.device_id = device_id
    t.dl.ndim = ndim
    t.dl.shape = t._shape
    t.dl.strides = t._strides
    t.dl.byte_offset = 0


cdef inline void normalize_slot(TensorSlot* s) noexcept:
    """A producer's DLTensor as the kernels read it: byte_offset folded into data, strides
    spelled out (FlashInfer reads strides() without a NULL check)."""
    if s.dl.byte_offset != 0:
        s.dl.data = <void*>(<char*>s.dl.data + s.dl.byte_offset)
        s.dl.byte_offset = 0
    if s.dl.strides == NULL and s.dl.ndim > 0:
        fill_contiguous_strides(s)


cdef inline int from_exchange(PyObject* obj, TensorSlot* s,
                              const DLPackExchangeAPI* api) noexcept:
    """``obj`` described through its type's DLPack exchange API (no copy, nothing held).
    0; -1 with the producer's Python exception set; or BAD_NDIM, nothing set, for a rank
    the slot cannot hold (the caller, which knows the argument's name, raises through
    exchange_failed)."""
    if api.dltensor_from_py_object_no_sync(<void*>obj, &s.dl) != 0:
        return -1
    s.source = SRC_EXCHANGE
    s.api = api
    if <uint32_t>s.dl.ndim > MAX_NDIM:  # normalize_slot would write past s.strides
        return BAD_NDIM
    if s.dl.shape == NULL and s.dl.ndim > 0:  # normalize_slot would read through it
        return NULL_SHAPE
    normalize_slot(s)
    return 0


cdef inline void from_desc(PyObject* obj, TensorSlot* s) noexcept:
    """A TensorDesc / DeviceArray (the caller checked the type): a struct copy."""
    s.dl = (<TensorDesc>obj).dl
    s.source = SRC_DESC


cdef inline int describe_as_kept(PyObject* obj, TensorSlot* a, const TensorSlot* kept) noexcept:
    """to_dltensor for ``obj`` whose exact type the slot ``kept`` was described from (as
    SRC_EXCHANGE through kept's producer API, or SRC_DESC), without any type lookup. 0, or
    as from_exchange. Inline: run()'s steady state calls it for every tensor
    (checked_frame.pxd). ``a.keep`` and ``a.read_only`` are left alone: nothing is held,
    and neither source exports read-only tensors. Nothing is validated either: the caller
    compares the result with ``kept`` (same_slot)."""
    a.api = NULL
    a.has_producer_stream = 0
    a.producer_stream = NULL
    if kept.source == SRC_EXCHANGE:
        return from_exchange(obj, a, kept.api)
    from_desc(obj, a)
    return 0
