# The pointer tables and the hot call sequence of include/flashinfer_cy/ffi_call.h.
from libc.stdint cimport int32_t
from flashinfer_cy._abi.dlpack cimport DLManagedTensorVersioned
from flashinfer_cy._abi.tvm_ffi cimport (TVMFFIAny, TVMFFIByteArray, TVMFFIObjectHandle,
                                         TVMFFISafeCallType, TVMFFIVersion)

cdef extern from "flashinfer_cy/ffi_call.h" nogil:
    ctypedef struct FcyTvmFfi:
        void (*GetVersion)(TVMFFIVersion* out)
        int (*ObjectDecRef)(TVMFFIObjectHandle obj)
        int (*ObjectIncRef)(TVMFFIObjectHandle obj)
        void (*ErrorMoveFromRaised)(TVMFFIObjectHandle* out)
        int (*EnvSetStream)(int32_t device_type, int32_t device_id, void* stream, void** out_prev)
        void* (*EnvGetStream)(int32_t device_type, int32_t device_id)
        int (*FunctionGetGlobal)(const TVMFFIByteArray* name, TVMFFIObjectHandle* out)
        int (*FunctionCall)(TVMFFIObjectHandle func, TVMFFIAny* args, int32_t n,
                            TVMFFIAny* result)
        int (*TensorFromDLPackVersioned)(DLManagedTensorVersioned* src, int32_t align,
                                         int32_t contiguous, TVMFFIObjectHandle* out)

    ctypedef struct FcyCudart:
        int (*GetDevice)(int* device)
        int (*SetDevice)(int device)

    int FCY_ERR_SET_DEVICE

    int fcy_call(const FcyTvmFfi* api, const FcyCudart* rt, TVMFFISafeCallType fn,
                 const TVMFFIAny* args, int32_t num_args, TVMFFIAny* result,
                 int32_t device_type, int32_t device_id, void* stream, int set_stream)
    int fcy_call_self(const FcyTvmFfi* api, const FcyCudart* rt, TVMFFISafeCallType fn,
                      void* self, const TVMFFIAny* args, int32_t num_args, TVMFFIAny* result,
                      int32_t device_type, int32_t device_id, void* stream, int set_stream)
