cdef int resolve_stream(object stream, void** out) except -1
cdef int check_stream(object stream) except -1
