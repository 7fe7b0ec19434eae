# DLPack C types, declared through the dlpack.h that apache-tvm-ffi ships (DLPack >= 1.3,
# which is where the __dlpack_c_exchange_api__ table is defined).
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t

cdef extern from "dlpack/dlpack.h" nogil:
    int DLPACK_MAJOR_VERSION
    int DLPACK_MINOR_VERSION
    uint64_t DLPACK_FLAG_BITMASK_READ_ONLY

    ctypedef enum DLDeviceType:
        kDLCPU
        kDLCUDA
        kDLCUDAHost
        kDLCUDAManaged

    ctypedef enum DLDataTypeCode:
        kDLInt
        kDLUInt
        kDLFloat
        kDLBfloat
        kDLBool
        kDLFloat8_e4m3fn
        kDLFloat8_e5m2

    ctypedef struct DLPackVersion:
        uint32_t major
        uint32_t minor

    ctypedef struct DLDevice:
        DLDeviceType device_type
        int32_t device_id

    ctypedef struct DLDataType:
        uint8_t code
        uint8_t bits
        uint16_t lanes

    ctypedef struct DLTensor:
        void* data
        DLDevice device
        int32_t ndim
        DLDataType dtype
        int64_t* shape
        int64_t* strides
        uint64_t byte_offset

    ctypedef struct DLManagedTensor:
        DLTensor dl_tensor
        void* manager_ctx
        void (*deleter)(DLManagedTensor*)

    ctypedef struct DLManagedTensorVersioned:
        DLPackVersion version
        void* manager_ctx
        void (*deleter)(DLManagedTensorVersioned*)
        uint64_t flags
        DLTensor dl_tensor

    # The C exchange table a framework (PyTorch >= 2.10) puts on its tensor *type* as the
    # capsule "dlpack_exchange_api". Only the two entries this library uses are declared.
    ctypedef int (*DLPackDLTensorFromPyObjectNoSync)(void* py_object, DLTensor* out)
    ctypedef int (*DLPackCurrentWorkStream)(DLDeviceType device_type, int32_t device_id,
                                            void** out_current_stream)

    ctypedef struct DLPackExchangeAPIHeader:
        DLPackVersion version

    ctypedef struct DLPackExchangeAPI:
        DLPackExchangeAPIHeader header
        DLPackDLTensorFromPyObjectNoSync dltensor_from_py_object_no_sync
        DLPackCurrentWorkStream current_work_stream
