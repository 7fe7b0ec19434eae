# The DLPack allocator for TVM-FFI's environment of include/flashinfer_cy/env_alloc.h.
# cimported by flashinfer_cy/_core/runtime.pyx only: the header's static table must exist once.
from libc.stdint cimport int32_t
from flashinfer_cy._abi.dlpack cimport DLTensor, DLManagedTensorVersioned
from flashinfer_cy._abi.tvm_ffi cimport TVMFFIAny, TVMFFISafeCallType
from flashinfer_cy._abi.ffi_call cimport FcyTvmFfi, FcyCudart

cdef extern from "flashinfer_cy/env_alloc.h" nogil:
    ctypedef int (*DLPackManagedTensorAllocator)(
        DLTensor* prototype, DLManagedTensorVersioned** out, void* error_ctx,
        void (*SetError)(void* error_ctx, const char* kind, const char* message))
    ctypedef int (*FcySetAllocator)(DLPackManagedTensorAllocator allocator, int write_to_global,
                                    DLPackManagedTensorAllocator* opt_out_original)

    ctypedef struct FcyEnvAllocRt:
        FcySetAllocator SetAllocator
        void* (*EnvGetStream)(int32_t device_type, int32_t device_id)
        int (*MallocAsync)(void** ptr, size_t size, void* stream)
        int (*FreeAsync)(void* ptr, void* stream)
        int (*GetDevice)(int* device)
        int (*SetDevice)(int device)
        const char* (*GetErrorString)(int error)

    FcyEnvAllocRt fcy_env_alloc_rt
    long fcy_env_alloc_live()
    int fcy_env_alloc_tensor(DLTensor* prototype, DLManagedTensorVersioned** out,
                             void* error_ctx,
                             void (*SetError)(void* error_ctx, const char* kind,
                                              const char* message))
    int fcy_call_env_alloc(const FcyTvmFfi* api, const FcyCudart* rt, TVMFFISafeCallType fn,
                           void* self, const TVMFFIAny* args, int32_t num_args,
                           TVMFFIAny* result, int32_t device_type, int32_t device_id,
                           void* stream, int set_stream)
