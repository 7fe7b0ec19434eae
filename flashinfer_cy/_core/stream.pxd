cdef int resolve_stream(object stream, void** out) except -1
