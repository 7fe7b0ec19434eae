# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Page-locked host buffers for plan(), the events that say when they may be reused, and
the few stream queries planning needs (capture status, event waits, async copies).

Why a ring: a kernel ``plan`` fills a page-locked mirror of the int workspace on the host,
then enqueues ``cudaMemcpyAsync(int_ws, mirror)`` and returns. With real pinned memory that
copy runs later, on the GPU's schedule, so the *next* plan must not write into the same
mirror until the copy has read it. Each slot of the ring carries an event recorded on the
plan's stream right after its copies were enqueued; ``acquire`` takes the first slot whose
event has completed (``cudaEventQuery``, no waiting), grows the ring while it is smaller
than ``max_slots``, and only when all slots are still in flight waits for the *oldest*
slot's event (``cudaEventSynchronize`` on that one event: the host waits for that single
copy, never for the stream or the device). A decode loop that plans once per step with the
GPU at most a few steps behind never waits.

Nothing here synchronizes a stream or the device, except that freeing page-locked memory
(``cudaFreeHost``, when a ring dies or a staging area grows) is synchronous in CUDA itself;
a slot that is freed first waits for its own event, so a copy never reads freed memory.
"""

from libc.stdint cimport int64_t, uintptr_t

from flashinfer_cy._core.runtime cimport cudart_symbol
from flashinfer_cy._core.tensor cimport TensorDesc

from flashinfer_cy import errors as _errors
from flashinfer_cy._core import runtime as _runtime

cdef enum:
    HOST_ALLOC_PORTABLE = 1        # cudaHostAllocPortable: pinned for every context
    EVENT_DISABLE_TIMING = 2       # cudaEventDisableTiming: the cheapest event
    MEMCPY_DEFAULT = 4             # cudaMemcpyDefault (unified addressing infers direction)
    ERR_NOT_READY = 600            # cudaErrorNotReady: event still pending
    ERR_CAPTURE_IMPLICIT = 906     # cudaErrorStreamCaptureImplicit: legacy stream queried
                                   # while another stream captures in global/thread mode
    STAGING_MIN = 1024 * 1024       # 256K int32 entries: grows (rarely) only past that

cdef struct PinnedRt:
    int (*HostAlloc)(void** p, size_t n, unsigned int flags) noexcept nogil
    int (*FreeHost)(void* p) noexcept nogil
    int (*EventCreateWithFlags)(void** ev, unsigned int flags) noexcept nogil
    int (*EventDestroy)(void* ev) noexcept nogil
    int (*EventRecord)(void* ev, void* stream) noexcept nogil
    int (*EventQuery)(void* ev) noexcept nogil
    int (*EventSynchronize)(void* ev) noexcept nogil
    int (*StreamWaitEvent)(void* stream, void* ev, unsigned int flags) noexcept nogil
    int (*StreamIsCapturing)(void* stream, int* status) noexcept nogil
    int (*MemcpyAsync)(void* dst, const void* src, size_t n, int kind, void* stream) noexcept nogil
    int (*MemsetAsync)(void* dst, int value, size_t n, void* stream) noexcept nogil
    int (*GetDevice)(int* dev) noexcept nogil
    int (*SetDevice)(int dev) noexcept nogil
    const char* (*GetErrorString)(int err) noexcept nogil
    int (*MallocAsync)(void** p, size_t n, void* stream) noexcept nogil
    int (*FreeAsync)(void* p, void* stream) noexcept nogil
    int (*StreamSynchronize)(void* stream) noexcept nogil

cdef PinnedRt prt
cdef bint prt_ready = False


cdef void* _need(bytes name, list missing):
    cdef void* p = cudart_symbol(name)
    if p == NULL:
        missing.append(name.decode())
    return p


cdef int ensure_pinned_rt() except -1:
    """Resolve (once) the libcudart calls made off the kernel hot path: page-locked memory,
    events, stream queries, and DeviceArray's stream-ordered allocations and copies."""
    global prt_ready
    if prt_ready:
        return 0
    _runtime._load_cudart()
    cdef list missing = []
    prt.HostAlloc = <int (*)(void**, size_t, unsigned int) noexcept nogil>_need(
        b"cudaHostAlloc", missing)
    prt.FreeHost = <int (*)(void*) noexcept nogil>_need(b"cudaFreeHost", missing)
    prt.EventCreateWithFlags = <int (*)(void**, unsigned int) noexcept nogil>_need(
        b"cudaEventCreateWithFlags", missing)
    prt.EventDestroy = <int (*)(void*) noexcept nogil>_need(b"cudaEventDestroy", missing)
    prt.EventRecord = <int (*)(void*, void*) noexcept nogil>_need(b"cudaEventRecord", missing)
    prt.EventQuery = <int (*)(void*) noexcept nogil>_need(b"cudaEventQuery", missing)
    prt.EventSynchronize = <int (*)(void*) noexcept nogil>_need(b"cudaEventSynchronize", missing)
    prt.StreamWaitEvent = <int (*)(void*, void*, unsigned int) noexcept nogil>_need(
        b"cudaStreamWaitEvent", missing)
    prt.StreamIsCapturing = <int (*)(void*, int*) noexcept nogil>_need(
        b"cudaStreamIsCapturing", missing)
    prt.MemcpyAsync = <int (*)(void*, const void*, size_t, int, void*) noexcept nogil>_need(
        b"cudaMemcpyAsync", missing)
    prt.MemsetAsync = <int (*)(void*, int, size_t, void*) noexcept nogil>_need(
        b"cudaMemsetAsync", missing)
    prt.GetDevice = <int (*)(int*) noexcept nogil>_need(b"cudaGetDevice", missing)
    prt.SetDevice = <int (*)(int) noexcept nogil>_need(b"cudaSetDevice", missing)
    prt.GetErrorString = <const char* (*)(int) noexcept nogil>_need(
        b"cudaGetErrorString", missing)
    prt.MallocAsync = <int (*)(void**, size_t, void*) noexcept nogil>_need(
        b"cudaMallocAsync", missing)
    prt.FreeAsync = <int (*)(void*, void*) noexcept nogil>_need(b"cudaFreeAsync", missing)
    prt.StreamSynchronize = <int (*)(void*) noexcept nogil>_need(
        b"cudaStreamSynchronize", missing)
    if missing:
        raise _errors.CudaError(
            f"libcudart.so.13 is not available or lacks {', '.join(missing)} "
            f"({_runtime.runtime_info().get('cudart_error')})")
    prt_ready = True
    return 0


cdef int cuda_check(int err, str what) except -1:
    if err != 0:
        msg = prt.GetErrorString(err).decode(errors="replace") if prt_ready else ""
        raise _errors.CudaError(f"{what} failed: cuda error {err} {msg}")
    return 0


# Events, allocations and the legacy stream belong to a device: make it current around each
# call. Returns the device to restore afterwards (-1: nothing to restore).
cdef int _enter(int device) except -2:
    cdef int cur = -1
    if prt.GetDevice(&cur) != 0:
        cur = -1
    if cur == device:
        return -1
    cuda_check(prt.SetDevice(device), f"cudaSetDevice({device})")
    return cur


cdef inline void _leave(int prev) noexcept nogil:
    if prev >= 0:
        prt.SetDevice(prev)


cdef int capture_status(void* stream, int device) except -1:
    """0: not capturing; 1: a capture is active (on ``stream``, or, for the legacy default
    stream, anywhere in a mode that forbids using it); 2: capture invalidated."""
    cdef int status = 0
    cdef int err, prev
    ensure_pinned_rt()
    prev = _enter(device)
    err = prt.StreamIsCapturing(stream, &status)
    _leave(prev)
    if err == ERR_CAPTURE_IMPLICIT:
        return 1
    cuda_check(err, "cudaStreamIsCapturing")
    return status


cdef int wait_event(void* stream, void* event, int device) except -1:
    """GPU-side wait: work queued on ``stream`` after this runs after ``event``."""
    cdef int err, prev
    prev = _enter(device)
    err = prt.StreamWaitEvent(stream, event, 0)
    _leave(prev)
    return cuda_check(err, "cudaStreamWaitEvent")


cdef int record_event(void* event, void* stream, int device) except -1:
    cdef int err, prev
    prev = _enter(device)
    err = prt.EventRecord(event, stream)
    _leave(prev)
    return cuda_check(err, "cudaEventRecord")


cdef int copy_async(void* dst, const void* src, size_t n, void* stream, int device) except -1:
    cdef int err, prev
    if n == 0:
        return 0
    ensure_pinned_rt()
    prev = _enter(device)
    err = prt.MemcpyAsync(dst, src, n, MEMCPY_DEFAULT, stream)
    _leave(prev)
    return cuda_check(err, "cudaMemcpyAsync")


cdef int memset_async(void* dst, int value, size_t n, void* stream, int device) except -1:
    """Stream-ordered fill of ``n`` bytes with ``value`` (zeroing a DeviceArray)."""
    cdef int err, prev
    if n == 0:
        return 0
    ensure_pinned_rt()
    prev = _enter(device)
    err = prt.MemsetAsync(dst, value, n, stream)
    _leave(prev)
    return cuda_check(err, "cudaMemsetAsync")


cdef int copy_to_host_sync(void* dst, const void* src, size_t n, void* stream,
                           int device) except -1:
    """Device->host copy ordered on ``stream``, then wait for that stream (GIL released)."""
    cdef int err, prev
    ensure_pinned_rt()
    prev = _enter(device)
    with nogil:
        err = prt.MemcpyAsync(dst, src, n, MEMCPY_DEFAULT, stream)
        if err == 0:
            err = prt.StreamSynchronize(stream)
    _leave(prev)
    return cuda_check(err, "device->host copy")


cdef int malloc_async(void** p, size_t n, void* stream, int device) except -1:
    """Stream-ordered allocation of ``n`` bytes on ``device``."""
    cdef int err, prev
    ensure_pinned_rt()
    prev = _enter(device)
    err = prt.MallocAsync(p, n, stream)
    _leave(prev)
    if err != 0:  # the message is formatted on failure only
        cuda_check(err, f"cudaMallocAsync({n})")
    return 0


cdef void free_async(void* p, void* stream, int device) noexcept:
    """Stream-ordered free on the allocation's own device (stream 0 is that device's).
    Called from destructors: errors are ignored, like cudaFree's at interpreter exit."""
    cdef int cur = -1
    if not prt_ready:
        return
    if prt.GetDevice(&cur) != 0:
        cur = -1
    if cur != device:
        prt.SetDevice(device)
    prt.FreeAsync(p, stream)
    if cur != device and cur >= 0:
        prt.SetDevice(cur)


cdef class Event:
    """A timing-free CUDA event on ``device`` (destroyed with the object)."""

    def __cinit__(self, int device=0):
        cdef int err, prev
        ensure_pinned_rt()
        self.device = device
        prev = _enter(device)
        err = prt.EventCreateWithFlags(&self.ev, EVENT_DISABLE_TIMING)
        _leave(prev)
        cuda_check(err, "cudaEventCreateWithFlags")

    def record(self, stream_handle):
        record_event(self.ev, <void*><uintptr_t>stream_handle, self.device)

    def query(self):
        """True when all work captured by the last record() has completed."""
        cdef int err = prt.EventQuery(self.ev)
        if err == ERR_NOT_READY:
            return False
        cuda_check(err, "cudaEventQuery")
        return True

    def synchronize(self):
        cdef int err
        with nogil:
            err = prt.EventSynchronize(self.ev)
        cuda_check(err, "cudaEventSynchronize")

    @property
    def handle(self):
        return <uintptr_t>self.ev

    def __dealloc__(self):
        if self.ev != NULL and prt_ready:
            prt.EventDestroy(self.ev)
            self.ev = NULL


cdef void* _host_alloc(size_t n) except NULL:
    cdef void* p = NULL
    cdef int err
    with nogil:
        err = prt.HostAlloc(&p, n, HOST_ALLOC_PORTABLE)
    cuda_check(err, f"cudaHostAlloc({n})")
    return p


cdef class PinnedSlot:
    """One page-locked int-workspace mirror plus a staging area for our own H2D copies."""

    def __cinit__(self, size_t kernel_bytes, int device):
        ensure_pinned_rt()
        self.device = device
        self.done = Event(device)
        self.kernel_ptr = _host_alloc(kernel_bytes)
        self.kernel_bytes = kernel_bytes
        self.kernel_desc = TensorDesc(<uintptr_t>self.kernel_ptr, (kernel_bytes,), "uint8",
                                      device_type="cpu")  # no owner: the slot outlives every use
        self.reserve_staging(STAGING_MIN)

    cdef int reserve_staging(self, size_t nbytes) except -1:
        """Make the staging area at least ``nbytes`` (only called on a free slot)."""
        cdef size_t cap = self.staging_bytes
        if nbytes <= cap:
            return 0
        cap = max(cap, <size_t>STAGING_MIN)
        while cap < nbytes:
            cap *= 2
        cdef void* p = _host_alloc(cap)
        if self.staging_ptr != NULL:
            prt.FreeHost(self.staging_ptr)
        self.staging_ptr = p
        self.staging_bytes = cap
        return 0

    @property
    def staging_address(self):
        return <uintptr_t>self.staging_ptr

    def __dealloc__(self):
        if not prt_ready:
            return
        if self.pending and self.done is not None:
            prt.EventSynchronize(self.done.ev)  # the copy may still be reading this memory
        if self.kernel_ptr != NULL:
            prt.FreeHost(self.kernel_ptr)
            self.kernel_ptr = NULL
        if self.staging_ptr != NULL:
            prt.FreeHost(self.staging_ptr)
            self.staging_ptr = NULL


cdef class PinnedRing:
    """A few :class:`PinnedSlot`, reused once their last copies have run (see module doc)."""

    def __cinit__(self, size_t kernel_bytes, int device=0, int max_slots=4):
        if max_slots < 1:
            raise ValueError("max_slots must be >= 1")
        self.slots = []
        self.next_index = 0
        self.max_slots = max_slots
        self.kernel_bytes = kernel_bytes
        self.device = device

    cdef PinnedSlot acquire(self):
        cdef int n = len(self.slots)
        cdef int k, i, err
        cdef PinnedSlot s
        for k in range(n):
            i = (self.next_index + k) % n
            s = <PinnedSlot>self.slots[i]
            if s.pending:
                err = prt.EventQuery(s.done.ev)
                if err == ERR_NOT_READY:
                    continue
                cuda_check(err, "cudaEventQuery")
                s.pending = False
            self.next_index = (i + 1) % n
            return s
        if n < self.max_slots:
            s = PinnedSlot(self.kernel_bytes, self.device)
            self.slots.append(s)
            self.next_index = 0
            return s
        # Every mirror is still being copied from: wait for the oldest copy only.
        i = self.next_index % n
        s = <PinnedSlot>self.slots[i]
        with nogil:
            err = prt.EventSynchronize(s.done.ev)
        cuda_check(err, "cudaEventSynchronize")
        s.pending = False
        self.waits += 1
        self.next_index = (i + 1) % n
        return s

    cdef int commit(self, PinnedSlot slot, void* stream) except -1:
        """Mark ``slot`` busy until the copies enqueued on ``stream`` so far have run."""
        record_event(slot.done.ev, stream, self.device)
        slot.pending = True
        return 0

    @property
    def size(self):
        return len(self.slots)

    def in_flight(self):
        """How many slots still wait for their copies (queries events; for tests)."""
        cdef PinnedSlot s
        n = 0
        for s in self.slots:
            if s.pending and prt.EventQuery(s.done.ev) == ERR_NOT_READY:
                n += 1
        return n
