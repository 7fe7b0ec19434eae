from libc.stdint cimport int64_t

cdef int ensure_pinned_rt() except -1
cdef int cuda_check(int err, str what) except -1
cdef int capture_status(void* stream, int device) except -1
cdef int wait_event(void* stream, void* event, int device) except -1
cdef int record_event(void* event, void* stream, int device) except -1
cdef int copy_async(void* dst, const void* src, size_t n, void* stream, int device) except -1
cdef int memset_async(void* dst, int value, size_t n, void* stream, int device) except -1
cdef int copy_to_host_sync(void* dst, const void* src, size_t n, void* stream,
                           int device) except -1
cdef int malloc_async(void** p, size_t n, void* stream, int device) except -1
cdef void free_async(void* p, void* stream, int device) noexcept

cdef class Event:
    cdef void* ev
    cdef int device

cdef class PinnedSlot:
    cdef void* kernel_ptr          # int-workspace mirror the kernel's plan fills
    cdef size_t kernel_bytes
    cdef void* staging_ptr         # our indptr/indices/lengths, copied H2D by us
    cdef size_t staging_bytes
    cdef Event done                # recorded after this plan's H2D copies were enqueued
    cdef bint pending
    cdef int device
    cdef readonly object kernel_desc   # TensorDesc (host) over kernel_ptr
    cdef int reserve_staging(self, size_t nbytes) except -1

cdef class PinnedRing:
    cdef list slots
    cdef int next_index
    cdef int max_slots
    cdef size_t kernel_bytes
    cdef int device
    cdef readonly int waits        # times acquire() had to wait for an old copy (stats)
    cdef PinnedSlot acquire(self)
    cdef int commit(self, PinnedSlot slot, void* stream) except -1
