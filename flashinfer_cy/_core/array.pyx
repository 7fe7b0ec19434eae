# cython: language_level=3
"""``DeviceArray``: the library's own device allocation, so results can be returned without
any framework. Stream-ordered (``cudaMallocAsync`` / ``cudaFreeAsync`` on the stream it was
made for) from the same libcudart the kernels use; exposes DLPack and the CUDA Array
Interface, so ``torch.from_dlpack(a)``, ``cupy.from_dlpack(a)`` or ``jax.dlpack`` take it
without a copy.
"""

from libc.stdint cimport uintptr_t, int64_t

from flashinfer_cy._abi.dlpack cimport kDLCUDA
from flashinfer_cy._core.runtime cimport cudart_symbol
from flashinfer_cy._core.tensor cimport TensorDesc
from flashinfer_cy._core.stream cimport resolve_stream

from flashinfer_cy import errors as _errors
from flashinfer_cy._core import runtime as _runtime

ctypedef int (*malloc_async_t)(void** p, size_t n, void* stream) noexcept nogil
ctypedef int (*free_async_t)(void* p, void* stream) noexcept nogil
ctypedef int (*memcpy_async_t)(void* dst, const void* src, size_t n, int kind,
                               void* stream) noexcept nogil
ctypedef int (*sync_t)(void* stream) noexcept nogil
ctypedef int (*set_device_t)(int dev) noexcept nogil
ctypedef int (*get_device_t)(int* dev) noexcept nogil
ctypedef const char* (*error_string_t)(int err) noexcept nogil

cdef enum:
    CUDA_MEMCPY_DEFAULT = 4  # cudaMemcpyDefault: direction inferred (unified addressing)

cdef struct Cudart:
    malloc_async_t MallocAsync
    free_async_t FreeAsync
    memcpy_async_t MemcpyAsync
    sync_t StreamSynchronize
    set_device_t SetDevice
    get_device_t GetDevice
    error_string_t GetErrorString

cdef Cudart rt
cdef bint rt_ready = False


cdef int _ensure_cudart() except -1:
    global rt_ready
    if rt_ready:
        return 0
    _runtime._load_cudart()
    rt.MallocAsync = <malloc_async_t>cudart_symbol(b"cudaMallocAsync")
    rt.FreeAsync = <free_async_t>cudart_symbol(b"cudaFreeAsync")
    rt.MemcpyAsync = <memcpy_async_t>cudart_symbol(b"cudaMemcpyAsync")
    rt.StreamSynchronize = <sync_t>cudart_symbol(b"cudaStreamSynchronize")
    rt.SetDevice = <set_device_t>cudart_symbol(b"cudaSetDevice")
    rt.GetDevice = <get_device_t>cudart_symbol(b"cudaGetDevice")
    rt.GetErrorString = <error_string_t>cudart_symbol(b"cudaGetErrorString")
    if (rt.MallocAsync == NULL or rt.FreeAsync == NULL or rt.MemcpyAsync == NULL
            or rt.StreamSynchronize == NULL or rt.SetDevice == NULL or rt.GetDevice == NULL):
        raise _errors.CudaError(
            "libcudart.so.13 is not available: DeviceArray needs the CUDA 13 runtime "
            f"({_runtime.runtime_info().get('cudart_error')})")
    rt_ready = True
    return 0


cdef int _check(int err, str what) except -1:
    if err != 0:
        msg = rt.GetErrorString(err).decode() if rt.GetErrorString != NULL else ""
        raise _errors.CudaError(f"{what} failed: cuda error {err} {msg}")
    return 0


cdef class _DeviceScope:
    """Make ``device`` current for a block, restoring the previous device afterwards."""
    cdef int prev
    cdef int dev

    def __cinit__(self, int dev):
        self.dev = dev
        self.prev = -1

    def __enter__(self):
        cdef int cur = -1
        if rt.GetDevice(&cur) != 0:
            cur = -1
        if cur != self.dev:
            _check(rt.SetDevice(self.dev), f"cudaSetDevice({self.dev})")
            self.prev = cur

    def __exit__(self, *exc):
        if self.prev >= 0:
            rt.SetDevice(self.prev)


cdef class DeviceArray(TensorDesc):
    """A device allocation owned by flashinfer_cy (what kernels return when ``out`` is not
    given). Freed stream-ordered on the stream it was allocated for, when the last reference
    (including DLPack consumers) goes away."""

    cdef void* _alloc
    cdef void* _stream
    cdef readonly size_t allocated_bytes
    cdef public object _keep_host  # source of an in-flight async host->device copy
    cdef object __weakref__

    @staticmethod
    def empty(shape, dtype, device=0, stream=None):
        """Uninitialised array; ``stream`` orders the allocation (None: stream 0)."""
        cdef void* s = NULL
        cdef void* p = NULL
        cdef DeviceArray a
        # Arguments first (TypeError/ValueError naming them), then CUDA.
        if stream is not None:
            resolve_stream(stream, &s)
        a = DeviceArray.__new__(DeviceArray)
        TensorDesc.__init__(a, 0, shape, dtype, None, device)
        nbytes = a.nbytes
        if nbytes >= 1 << 63:
            raise ValueError(f"shape: {a.shape} of {a.dtype} is {nbytes} bytes, more than any "
                             f"allocation can hold")
        _ensure_cudart()
        with _DeviceScope(a.dl.device.device_id):
            _check(rt.MallocAsync(&p, max(<size_t>nbytes, 1), s), f"cudaMallocAsync({nbytes})")
        a._alloc = p
        a._stream = s
        a.allocated_bytes = nbytes
        a.dl.data = p
        return a

    @staticmethod
    def from_numpy(arr, device=0, stream=None, dtype=None):
        """Copy a host numpy array to a new DeviceArray (asynchronous on ``stream``).
        ``dtype`` reinterprets same-size items, e.g. uint16 bits as ``"bfloat16"``."""
        import numpy as np
        host = np.ascontiguousarray(arr)
        a = DeviceArray.empty(host.shape, dtype or host.dtype, device, stream)
        if a.itemsize != host.itemsize:
            raise TypeError(f"dtype: {a.dtype} items are {a.itemsize} bytes, the array's "
                            f"are {host.itemsize}")
        a.copy_from_host(host, stream)
        return a

    def copy_from_host(self, arr, stream=None):
        """Asynchronous host->device copy of a C-contiguous array of the same byte size."""
        cdef void* s = self._stream
        import numpy as np
        host = np.ascontiguousarray(arr)
        if host.nbytes != self.nbytes:
            raise ValueError(f"arr: expected {self.nbytes} bytes, got {host.nbytes}")
        if stream is not None:
            resolve_stream(stream, &s)
        with _DeviceScope(self.dl.device.device_id):
            _check(rt.MemcpyAsync(self.dl.data, <void*><uintptr_t>host.ctypes.data,
                                  host.nbytes, CUDA_MEMCPY_DEFAULT, s), "cudaMemcpyAsync")
        self._keep_host = host

    def numpy(self, stream=None, dtype=None):
        """Copy to a new host array. This one *does* synchronize ``stream`` (explicitly:
        the copy must be complete before the array is returned)."""
        cdef void* s = self._stream
        cdef int err
        import numpy as np
        if stream is not None:
            resolve_stream(stream, &s)
        np_dtype = np.dtype(dtype) if dtype is not None else np.dtype(
            {"bfloat16": "uint16", "float8_e4m3fn": "uint8", "float8_e5m2": "uint8"}.get(
                self.dtype, self.dtype))
        out = np.empty(self.shape, dtype=np_dtype)
        if out.nbytes != self.nbytes:
            raise ValueError(f"dtype: {np_dtype} does not match {self.dtype}")
        cdef void* dst = <void*><uintptr_t>out.ctypes.data
        cdef size_t nbytes = out.nbytes
        with _DeviceScope(self.dl.device.device_id):
            with nogil:
                err = rt.MemcpyAsync(dst, self.dl.data, nbytes, CUDA_MEMCPY_DEFAULT, s)
                if err == 0:
                    err = rt.StreamSynchronize(s)
            _check(err, "device->host copy")
        self._keep_host = None
        return out

    def __dealloc__(self):
        cdef int cur = -1
        cdef int dev = self.dl.device.device_id
        if self._alloc != NULL and rt_ready:
            # Free on the allocation's own device: stream 0 means that device's stream.
            if rt.GetDevice(&cur) != 0:
                cur = -1
            if cur != dev:
                rt.SetDevice(dev)
            rt.FreeAsync(self._alloc, self._stream)
            if cur != dev and cur >= 0:
                rt.SetDevice(cur)
            self._alloc = NULL
