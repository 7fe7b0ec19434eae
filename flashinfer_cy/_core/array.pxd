from libc.stdint cimport int64_t, uintptr_t

from flashinfer_cy._abi.dlpack cimport DLDataType
from flashinfer_cy._core.tensor cimport TensorDesc

cdef class DeviceArray(TensorDesc):
    cdef void* _alloc
    cdef void* _stream
    cdef readonly size_t allocated_bytes
    cdef public object _keep_host  # source of an in-flight async host->device copy
    cdef object __weakref__

# DeviceArray.empty for a kernel's own output, from C: a row-major [shape[0], ...] array of
# ``dtype`` on CUDA ``device``, ordered on ``stream``. The sizes must be >= 0 (they come from
# checked tensor slots); no Python argument parsing, no dtype name round trip.
cdef DeviceArray new_device_array(int ndim, const int64_t* shape, DLDataType dtype,
                                  int device, void* stream)

# What is cached per (device, stream handle; per thread for cudaStreamPerThread).
cdef class _StreamScratch:
    cdef dict buffers  # what -> DeviceArray: stream_scratch's buffers
    cdef dict kept     # what -> an object another module keeps per stream

cdef _StreamScratch stream_state(int device, uintptr_t handle)

# stream_scratch without the Python call (``handle``: the raw stream handle).
cdef DeviceArray scratch_buffer(str what, int device, uintptr_t handle, int64_t nbytes,
                                bint zero, str instead)
