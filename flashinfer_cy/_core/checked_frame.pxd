from cpython.ref cimport PyObject
from libc.stdint cimport uint32_t
from flashinfer_cy._core.binding cimport Binding, CallFrame

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
    cdef int reuse(self, CallFrame* f, PyObject** objs, Binding b) except -1
    cdef int pick_stream(self, CallFrame* f, object stream, int device, void** handle) except -1
