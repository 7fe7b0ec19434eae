# TVM-FFI stable C ABI, declared through the real tvm/ffi/c_api.h of the installed
# apache-tvm-ffi. Types only: the functions are never linked. libtvm_ffi.so is dlopen'd at
# run time (RTLD_GLOBAL, before any kernel module, which leaves every TVMFFI* symbol
# undefined) and called through the pointer table declared in ffi_call.pxd.
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t
from flashinfer_cy._abi.dlpack cimport DLDataType, DLDevice, DLTensor, DLManagedTensorVersioned

cdef extern from "tvm/ffi/c_api.h" nogil:
    ctypedef struct TVMFFIVersion:
        uint32_t major
        uint32_t minor
        uint32_t patch

    ctypedef enum TVMFFITypeIndex:
        kTVMFFINone
        kTVMFFIInt
        kTVMFFIBool
        kTVMFFIFloat
        kTVMFFIOpaquePtr
        kTVMFFIDataType
        kTVMFFIDevice
        kTVMFFIDLTensorPtr
        kTVMFFIRawStr
        kTVMFFIByteArrayPtr
        kTVMFFIObjectRValueRef
        kTVMFFISmallStr
        kTVMFFISmallBytes
        kTVMFFIStaticObjectBegin
        kTVMFFIStr
        kTVMFFIBytes
        kTVMFFIError
        kTVMFFIFunction
        kTVMFFIShape
        kTVMFFITensor
        kTVMFFIArray
        kTVMFFIModule

    ctypedef void* TVMFFIObjectHandle

    ctypedef struct TVMFFIObject:
        uint64_t combined_ref_count
        int32_t type_index

    ctypedef struct TVMFFIAny:
        int32_t type_index
        uint32_t zero_padding
        uint32_t small_str_len
        int64_t v_int64
        double v_float64
        void* v_ptr
        const char* v_c_str
        TVMFFIObject* v_obj
        DLDataType v_dtype
        DLDevice v_device
        char v_bytes[8]
        uint64_t v_uint64

    ctypedef struct TVMFFIByteArray:
        const char* data
        size_t size

    ctypedef struct TVMFFIShapeCell:
        const int64_t* data
        size_t size

    ctypedef struct TVMFFISeqCell:
        void* data
        int64_t size
        int64_t capacity

    # Only kind / message / backtrace are read: they sit at the same offsets in every
    # 0.1.x release (the cell grew at its end in 0.1.8).
    ctypedef struct TVMFFIErrorCell:
        TVMFFIByteArray kind
        TVMFFIByteArray message
        TVMFFIByteArray backtrace

    ctypedef int (*TVMFFISafeCallType)(void* handle, const TVMFFIAny* args, int32_t num_args,
                                       TVMFFIAny* result)

    # Follows the header of an ffi::Function object; safe_call takes the object as `handle`
    # (byte-identical v0.1.0 .. 0.1.15.post2).
    ctypedef struct TVMFFIFunctionCell:
        TVMFFISafeCallType safe_call
        void* cpp_call
