from cpython.pythread cimport PyThread_type_lock
from libc.stdint cimport int32_t, int64_t
from flashinfer_cy._abi.tvm_ffi cimport TVMFFIAny, TVMFFISafeCallType, TVMFFIObjectHandle
from flashinfer_cy._abi.ffi_call cimport FcyTvmFfi, FcyCudart

cdef FcyTvmFfi g_ffi
cdef FcyCudart g_cudart
cdef bint g_ffi_ready

cdef int ensure_ffi() except -1
cdef int raise_call_error(int rc, str symbol) except -1
cdef object take_result(TVMFFIAny* result)
cdef object make_array(TVMFFIAny* args, int n)
cdef void* cudart_symbol(const char* name) noexcept
cdef void* env_stream(int32_t device_type, int32_t device_id) except? NULL
cdef bint g_env_alloc_ready
cdef int ensure_env_alloc() except -1
cdef int call_maybe_env_alloc(TVMFFISafeCallType fn, void* fself, const TVMFFIAny* args,
                              int32_t n, TVMFFIAny* result, int32_t device_type,
                              int32_t device_id, void* stream, bint set_stream,
                              bint env_alloc) noexcept nogil

cdef class Module:
    cdef void* handle
    cdef readonly str path
    cdef readonly str uri
    cdef dict _functions
    cdef set _uris                    # the URIs serialize_calls matches it by
    cdef readonly object flashinfer_version  # str, or None: unknown (Bindings refuse it)
    cdef readonly str version_from    # how that version was learned (for error messages)
    # Undefined functions it references that the dynamic linker cannot resolve, accepted as
    # never called for its release (flashinfer_cy/abi/unreachable_symbols.py); () when it
    # loaded with RTLD_NOW.
    cdef readonly tuple unreachable_symbols

cdef class Function:
    cdef TVMFFISafeCallType fn
    # A method an object serves (ModuleObject.method): the ffi::Function object that ``fn``
    # is the safe_call of (passed as its ``self``), and the object serving it, one strong
    # reference each, released by __dealloc__. Both NULL for a module export.
    cdef TVMFFIObjectHandle self_handle
    cdef TVMFFIObjectHandle owner
    cdef readonly str name
    cdef readonly Module module
    cdef PyThread_type_lock serial    # held around each call, for exports that need it
    cdef int call(self, const TVMFFIAny* args, int32_t n, TVMFFIAny* result,
                  int32_t device_type, int32_t device_id, void* stream,
                  bint set_stream, bint env_alloc=*) except -1
    cdef int _serialize(self) except -1

cdef class Object:
    cdef TVMFFIObjectHandle handle
    cdef int32_t tindex
    @staticmethod
    cdef Object adopt(TVMFFIObjectHandle handle, int32_t type_index)

cdef class Array(Object):
    pass

cdef class ModuleObject(Object):
    cdef dict _methods
cdef int compute_capability_major(int device) except -1
cdef int multiprocessor_count(int device) except -1
cdef int max_shared_memory_per_block_optin(int device) except -1
cdef int max_shared_memory_per_multiprocessor(int device) except -1
