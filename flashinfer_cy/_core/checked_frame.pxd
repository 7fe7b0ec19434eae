from cpython.exc cimport PyErr_Clear
from cpython.ref cimport PyObject
from libc.stdint cimport int64_t, uint32_t
from libc.string cimport memcpy
from flashinfer_cy._abi.dlpack cimport DLTensor, kDLCUDA
from flashinfer_cy._abi.tvm_ffi cimport kTVMFFIDLTensorPtr, kTVMFFINone
from flashinfer_cy._core.binding cimport Binding, CallFrame, producer_stream
from flashinfer_cy._core.runtime cimport env_stream
from flashinfer_cy._core.stream cimport resolve_stream
from flashinfer_cy._core.tensor cimport TensorSlot, describe_as_kept, to_dltensor

cdef extern from *:
    """
    #include <stddef.h>
    #include <string.h>
    /* DLTensor keeps device, ndim and dtype in 16 adjacent bytes (dlpack.h): one
       comparison of that block compares all three. */
    _Static_assert(offsetof(DLTensor, ndim) == offsetof(DLTensor, device) + 8 &&
                   offsetof(DLTensor, dtype) == offsetof(DLTensor, device) + 12 &&
                   sizeof(DLDataType) == 4 && sizeof(DLDevice) == 8,
                   "DLTensor layout: device, ndim, dtype are not 16 adjacent bytes");
    static inline int fcy_same_device_rank_dtype(const DLTensor* a, const DLTensor* b) {
        return memcmp(&a->device, &b->device, 16) == 0;
    }
    #define FCY_TYPE_OF(o) ((PyObject*)Py_TYPE(o))
    """
    bint same_device_rank_dtype "fcy_same_device_rank_dtype"(const DLTensor* a,
                                                              const DLTensor* b) noexcept
    PyObject* type_of "FCY_TYPE_OF"(PyObject* o) noexcept


cdef class CheckedFrame:
    cdef CallFrame* frame
    cdef uint32_t variable     # bit i: slot i is re-described by every call
    cdef int n_var             # ... how many, and their indices
    cdef int var_idx[32]
    cdef PyObject* var_type[32]  # the exact type each was described from (NULL: none)
    cdef tuple _types          # references to the types in var_type
    cdef readonly object key   # what the arguments were checked against (e.g. a Plan)
    cdef int flags             # the caller's other inputs to those checks (e.g. pdl)
    cdef int stream_slot       # Binding.stream_slot of the checked frame (-1: none)

    @staticmethod
    cdef CheckedFrame keep(CallFrame* f, uint32_t variable, PyObject** objs, object key,
                           int flags, int stream_slot)


# run()'s steady state, inline so that it is compiled into the caller's module next to the
# caller (checked_frame.pyx says why).

cdef inline bint same_slot(const TensorSlot* a, const TensorSlot* b) noexcept:
    """Whether ``a`` describes what the kept ``b`` did (data pointers aside, which need
    only the same 16-byte alignment, and not be NULL: the long path decides about those),
    from the same kind of producer (so the stream is picked the same way). The device is
    compared whole, so its ordinal is the one to_dltensor validated for ``b``."""
    cdef int d
    cdef int64_t diff = 0
    if (a.api != b.api or a.has_producer_stream != b.has_producer_stream
            or not same_device_rank_dtype(&a.dl, &b.dl)
            or a.dl.data == NULL
            or ((<size_t>a.dl.data ^ <size_t>b.dl.data) & 15) != 0):
        return False
    for d in range(a.dl.ndim):  # branch-free: these nearly always agree
        diff |= (a.dl.shape[d] ^ b.dl.shape[d]) | (a.dl.strides[d] ^ b.dl.strides[d])
    return diff == 0


cdef inline int reuse_frame(CheckedFrame kept, CallFrame* f, PyObject** objs, Binding b,
                            uint32_t* held) except -1:
    """Load ``kept``'s frame into ``f`` and describe ``objs[i]`` into each variable slot
    ``i`` (None: an optional tensor left out; NULL: the caller described slot ``i``
    already). Returns 1 if they all describe what the kept call's did, so that ``f`` is
    ready to call; 0 at the first that does not, or that cannot be described at all (the
    caller's full path then describes it again and reports it under the name the caller
    knows it by, e.g. ``out`` for the ABI's ``o``). A tensor of a type the kept call did
    not describe directly is described the long way and may hold a reference: its bit is
    set in ``held`` first, for the caller's frame_release_masked."""
    cdef CallFrame* kf = kept.frame
    cdef int i, j
    cdef PyObject* o
    cdef TensorSlot* a
    cdef TensorSlot* k
    f.n = kf.n
    memcpy(f.args, kf.args, kf.n * sizeof(kf.args[0]))
    for j in range(kept.n_var):
        i = kept.var_idx[j]
        o = objs[i]
        if o == <PyObject*>None:
            if kf.args[i].type_index != kTVMFFINone:
                return 0
            continue  # the kept argument is None too
        if kf.args[i].type_index != kTVMFFIDLTensorPtr:
            return 0  # the kept call had None here
        a = &f.slots[i]
        k = &kf.slots[i]
        if o != NULL and type_of(o) == kept.var_type[j]:
            if describe_as_kept(o, a, k) != 0:  # a source that is never read-only
                PyErr_Clear()  # (if the producer set one) the full path asks again
                return 0
        else:
            if o != NULL:
                a.keep = NULL
                held[0] |= (<uint32_t>1) << i
                try:
                    to_dltensor(<object>o, a, b.names[i])
                except Exception:
                    return 0  # the full path asks again
            if a.read_only != k.read_only:
                return 0  # the full path decides (check_writable where it is written)
        if not same_slot(a, k):
            return 0
        f.args[i].v_ptr = &a.dl
    return 1


cdef inline int kept_stream(CheckedFrame kept, CallFrame* f, object stream, int device,
                            void** handle) except -1:
    """The stream Binding.pick_stream would choose for ``f`` loaded by reuse_frame (whose
    other slots are only in the kept frame): ``stream=``, else the producer of the slot the
    kept call's stream came from, else the thread's TVM-FFI stream."""
    cdef int i = kept.stream_slot
    if stream is not None:
        resolve_stream(stream, handle)
    elif i < 0:
        handle[0] = env_stream(kDLCUDA, device)
    else:
        producer_stream(&f.slots[i] if (kept.variable >> i) & 1 else &kept.frame.slots[i],
                        handle)
    return 0
