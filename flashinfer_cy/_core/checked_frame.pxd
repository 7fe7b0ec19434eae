from libc.stdint cimport uint32_t
from flashinfer_cy._core.binding cimport CallFrame

cdef class CheckedFrame:
    cdef CallFrame* frame
    cdef uint32_t variable     # bit i: slot i is re-described by every call
    cdef int n_var             # ... those slots' indices, and the others'
    cdef int var_idx[32]
    cdef int n_fixed
    cdef int fixed_idx[32]
    cdef readonly object key   # what the arguments were checked against (e.g. a Plan)
    cdef int flags             # the caller's other inputs to those checks (e.g. pdl)
    cdef int stream_slot       # Binding.stream_slot of the checked frame (-1: none)

    @staticmethod
    cdef CheckedFrame keep(CallFrame* f, uint32_t variable, object key, int flags,
                           int stream_slot)
    cdef bint same_tensors(self, CallFrame* f) noexcept
    cdef void load_into(self, CallFrame* f) noexcept
    cdef int pick_stream(self, CallFrame* f, object stream, int device, void** handle) except -1
