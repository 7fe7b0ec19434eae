# cython: language_level=3
"""``DeviceArray``: the library's own device allocation, so results can be returned without
any framework. Stream-ordered (``cudaMallocAsync`` / ``cudaFreeAsync`` on the stream it was
made for) from the same libcudart the kernels use; exposes DLPack and the CUDA Array
Interface, so ``torch.from_dlpack(a)``, ``cupy.from_dlpack(a)`` or ``jax.dlpack`` take it
without a copy.
"""

from cpython.pythread cimport PyThread_get_thread_ident
from cpython.ref cimport PyObject
from libc.stdint cimport uintptr_t, int64_t

from flashinfer_cy._abi.dlpack cimport DLDataType, kDLCUDA
from flashinfer_cy._core.pinned cimport (capture_status, copy_async, copy_to_host_sync,
                                        free_async, malloc_async, memset_async)
from flashinfer_cy._core.tensor cimport (MAX_DEVICES, MAX_NDIM, TensorDesc, as_bool,
                                        check_native_order, point_desc)
from flashinfer_cy._core.stream cimport resolve_stream


cdef extern from *:
    bint mul_overflow "__builtin_mul_overflow"(int64_t a, int64_t b, int64_t* out) nogil


cdef class DeviceArray(TensorDesc):
    """A device allocation owned by flashinfer_cy (what kernels return when ``out`` is not
    given). Freed stream-ordered on the stream it was allocated for, when the last reference
    (including DLPack consumers) goes away."""

    @staticmethod
    def empty(shape, dtype, device=0, stream=None):
        """Uninitialised array; ``stream`` orders the allocation (None: stream 0)."""
        cdef void* s = NULL
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
        _allocate(a, nbytes, s)
        return a

    @staticmethod
    def zeros(shape, dtype, device=0, stream=None):
        """Zero-filled array: allocated and cleared in order on ``stream`` (no sync)."""
        cdef DeviceArray a = DeviceArray.empty(shape, dtype, device, stream)
        memset_async(a.dl.data, 0, a.allocated_bytes, a._stream, a.dl.device.device_id)
        return a

    @staticmethod
    def from_numpy(arr, device=0, stream=None, dtype=None):
        """Copy a host numpy array to a new DeviceArray (asynchronous on ``stream``).
        ``dtype`` reinterprets same-size items, e.g. uint16 bits as ``"bfloat16"``."""
        import numpy as np
        host = np.ascontiguousarray(arr)
        check_native_order(host.dtype, "arr")  # before allocating
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
        check_native_order(host.dtype, "arr")
        if host.nbytes != self.nbytes:
            raise ValueError(f"arr: expected {self.nbytes} bytes, got {host.nbytes}")
        if stream is not None:
            resolve_stream(stream, &s)
        copy_async(self.dl.data, <void*><uintptr_t>host.ctypes.data, host.nbytes, s,
                   self.dl.device.device_id)
        self._keep_host = host

    def numpy(self, stream=None, dtype=None):
        """Copy to a new host array. This one *does* synchronize ``stream`` (explicitly:
        the copy must be complete before the array is returned)."""
        cdef void* s = self._stream
        import numpy as np
        if stream is not None:
            resolve_stream(stream, &s)
        np_dtype = np.dtype(dtype) if dtype is not None else np.dtype(
            {"bfloat16": "uint16", "float8_e4m3fn": "uint8", "float8_e5m2": "uint8"}.get(
                self.dtype, self.dtype))
        check_native_order(np_dtype, "dtype")
        out = np.empty(self.shape, dtype=np_dtype)
        if out.nbytes != self.nbytes:
            raise ValueError(f"dtype: {np_dtype} does not match {self.dtype}")
        copy_to_host_sync(<void*><uintptr_t>out.ctypes.data, self.dl.data, out.nbytes, s,
                          self.dl.device.device_id)
        self._keep_host = None
        return out

    def __dealloc__(self):
        if self._alloc != NULL:
            free_async(self._alloc, self._stream, self.dl.device.device_id)
            self._alloc = NULL


cdef int _allocate(DeviceArray a, size_t nbytes, void* stream) except -1:
    """Give the described array ``a`` its ``nbytes`` (one at least), ordered on ``stream``."""
    cdef void* p = NULL
    malloc_async(&p, max(nbytes, 1), stream, a.dl.device.device_id)
    a._alloc = p
    a._stream = stream
    a.allocated_bytes = nbytes
    a.dl.data = p
    return 0


cdef DeviceArray new_device_array(int ndim, const int64_t* shape, DLDataType dtype,
                                  int device, void* stream):
    """A kernel's output from C (array.pxd): what ``DeviceArray.empty(shape, dtype, device,
    stream)`` makes, without parsing Python arguments (a sampler's ids, its intermediates,
    every call that allocates its output)."""
    cdef DeviceArray a
    cdef int i
    cdef int64_t nbytes = (dtype.bits * dtype.lanes + 7) // 8, elements = 1
    if not 0 <= ndim <= MAX_NDIM or not 0 <= device < MAX_DEVICES:
        raise ValueError(f"new_device_array: {ndim} dimensions on device {device}")
    a = DeviceArray.__new__(DeviceArray)
    for i in range(ndim - 1, -1, -1):
        if shape[i] < 0:
            raise ValueError(f"shape: sizes must be >= 0, got {shape[i]} in dimension {i}")
        a._shape[i] = shape[i]
        a._strides[i] = elements
        if (mul_overflow(elements, max(shape[i], 1), &elements)
                or mul_overflow(nbytes, shape[i], &nbytes)):
            raise ValueError(f"shape: {[shape[j] for j in range(ndim)]} has more elements "
                             f"than any allocation can hold")
    a.dl.dtype = dtype
    point_desc(a, NULL, kDLCUDA, device, ndim)
    _allocate(a, nbytes, stream)
    return a


# ------------------------------------------------------------------------ per-stream scratch

cdef dict _streams = {}  # (device, stream handle, thread or 0) -> _StreamScratch
cdef uintptr_t CUDA_STREAM_PER_THREAD = 2  # cudaStreamPerThread: one handle, a stream per thread
# The last stream asked about and its _StreamScratch (a decode loop's every call asks about
# the same one). Borrowed: _streams never drops an entry.
cdef PyObject* _last_state = NULL
cdef int _last_device = -1
cdef uintptr_t _last_handle = 0
cdef unsigned long _last_thread = 0


cdef class _StreamScratch:
    """What is cached for one (device, stream): stream_scratch's buffers and the objects
    other modules keep per stream (``kept``, e.g. the composed samplers' intermediates).
    cudaStreamPerThread names another stream in every thread: its entries are per thread."""

    def __cinit__(self):
        self.buffers = {}
        self.kept = {}


cdef _StreamScratch stream_state(int device, uintptr_t handle):
    global _last_state, _last_device, _last_handle, _last_thread
    cdef unsigned long thread = (PyThread_get_thread_ident()
                                 if handle == CUDA_STREAM_PER_THREAD else 0)
    if (_last_state != NULL and device == _last_device and handle == _last_handle
            and thread == _last_thread):
        return <_StreamScratch>_last_state
    key = (device, handle, thread)
    state = _streams.get(key)
    if state is None:
        state = _StreamScratch()
        _streams[key] = state
    _last_state, _last_device = <PyObject*>state, device
    _last_handle, _last_thread = handle, thread
    return state


def stream_scratch(str what, int device, stream, int64_t nbytes, zero=False,
                   str instead=""):
    """A kernel's scratch buffer of at least ``nbytes``, kept per (``what``, device, stream):
    two streams never share one (the kernels write them), and calls on one stream reuse it
    in stream order (upstream's ``_get_cache_buf``, keyed by stream as well). Allocated,
    stream-ordered (and zero-filled with ``zero``), on first use or to grow. Refused
    (StreamCaptureError) while ``stream`` is capturing a CUDA graph: the allocation would
    belong to the graph, and the cache would hand its memory to later eager calls.
    ``instead``: how the caller can pass the buffer itself, for the error.
    cudaStreamPerThread names another stream in every thread: its buffers are per thread."""
    cdef bint zero_fill = as_bool(zero, "zero", "True or False")  # not by truthiness
    return scratch_buffer(what, device, 0 if stream is None else stream, nbytes, zero_fill,
                          instead)


cdef DeviceArray scratch_buffer(str what, int device, uintptr_t handle, int64_t nbytes,
                                bint zero, str instead):
    """stream_scratch, from C (array.pxd)."""
    cdef dict buffers = stream_state(device, handle).buffers
    buf = buffers.get(what)
    if buf is None or (<DeviceArray>buf).allocated_bytes < <size_t>nbytes:
        if capture_status(<void*>handle, device) != 0:
            from flashinfer_cy.errors import StreamCaptureError
            raise StreamCaptureError(
                f"{what}: allocated on the first call on each stream; make one call on this "
                f"stream before capturing{', or ' + instead if instead else ''}")
        buf = (DeviceArray.zeros if zero else DeviceArray.empty)(
            (nbytes,), "uint8", device, handle)
        buffers[what] = buf
    return buf
