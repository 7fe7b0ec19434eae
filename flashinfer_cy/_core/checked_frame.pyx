# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""A call frame whose every argument was checked, kept so that the next call with tensors
that describe the same thing skips the checks and the packing.

A decode loop calls ``run()`` with the same shapes each step, often the same buffers. The
first call checks everything (devices, dtypes, shapes against the plan, strides, 16-byte
vector alignment) and packs the plan's arguments; :meth:`CheckedFrame.keep` copies that
frame, shapes and strides included. The next call describes only its *variable* slots
(the caller's tensors), and :meth:`same_tensors` compares their metadata with the kept
ones: dtype, device, rank, shape, strides, and the data pointer's alignment (the only
check that depends on the pointer). If they agree, every check of the first call holds
for this one, and :meth:`load_into` completes the frame from the kept arguments.

A CheckedFrame is immutable once kept: a caller holds a reference for the duration of its
call, so a concurrent call that keeps a newer frame can never change the arguments under
a running kernel call.
"""

from libc.stdint cimport uint32_t
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy

from flashinfer_cy._abi.dlpack cimport kDLCUDA
from flashinfer_cy._abi.tvm_ffi cimport kTVMFFIDLTensorPtr
from flashinfer_cy._core.binding cimport producer_stream
from flashinfer_cy._core.runtime cimport env_stream
from flashinfer_cy._core.stream cimport resolve_stream
from flashinfer_cy._core.tensor cimport TensorSlot, dtype_key, own_shape


cdef class CheckedFrame:

    def __init__(self, *args, **kwargs):
        raise TypeError("CheckedFrame objects are made by CheckedFrame.keep() from Cython")

    def __dealloc__(self):
        free(self.frame)  # slots own no references (keep() clears them)

    @staticmethod
    cdef CheckedFrame keep(CallFrame* f, uint32_t variable, object key, int flags,
                           int stream_slot):
        """A copy of ``f``, owning its tensors' shapes and strides (a producer's arrays
        live only as long as its call)."""
        cdef CheckedFrame m = CheckedFrame.__new__(CheckedFrame)
        cdef TensorSlot* s
        cdef int i
        m.frame = <CallFrame*>malloc(sizeof(CallFrame))
        if m.frame == NULL:
            raise MemoryError()
        m.frame.n = f.n
        memcpy(m.frame.args, f.args, f.n * sizeof(f.args[0]))
        for i in range(f.n):
            if f.args[i].type_index != kTVMFFIDLTensorPtr:
                continue
            s = &m.frame.slots[i]
            s[0] = f.slots[i]
            own_shape(s)
            s.keep = NULL
            m.frame.args[i].v_ptr = &s.dl
        m.variable = variable
        m.n_var = m.n_fixed = 0
        for i in range(f.n):
            if (variable >> i) & 1:
                m.var_idx[m.n_var] = i
                m.n_var += 1
            else:
                m.fixed_idx[m.n_fixed] = i
                m.n_fixed += 1
        m.key = key
        m.flags = flags
        m.stream_slot = stream_slot
        return m

    cdef bint same_tensors(self, CallFrame* f) noexcept:
        """Whether ``f``'s variable slots describe what the kept ones did (data pointers
        aside, which need only the same 16-byte alignment), from the same kind of producer
        (so the stream is picked from the same slot)."""
        cdef int i, j, d
        cdef TensorSlot* a
        cdef TensorSlot* b
        for j in range(self.n_var):
            i = self.var_idx[j]
            if f.args[i].type_index != self.frame.args[i].type_index:
                return False
            if f.args[i].type_index != kTVMFFIDLTensorPtr:
                continue
            a = &f.slots[i]
            b = &self.frame.slots[i]
            if (a.api != b.api or a.has_producer_stream != b.has_producer_stream  # stream
                    or a.dl.ndim != b.dl.ndim or dtype_key(a.dl.dtype) != dtype_key(b.dl.dtype)
                    or a.dl.device.device_type != b.dl.device.device_type
                    or a.dl.device.device_id != b.dl.device.device_id
                    or (<size_t>a.dl.data) % 16 != (<size_t>b.dl.data) % 16):
                return False
            for d in range(a.dl.ndim):
                if a.dl.shape[d] != b.dl.shape[d] or a.dl.strides[d] != b.dl.strides[d]:
                    return False
        return True

    cdef void load_into(self, CallFrame* f) noexcept:
        """Every argument of ``f`` but its variable slots from the kept frame (pointing into
        the kept slots: hold this object until the call returns)."""
        cdef int j
        for j in range(self.n_fixed):
            f.args[self.fixed_idx[j]] = self.frame.args[self.fixed_idx[j]]

    cdef int pick_stream(self, CallFrame* f, object stream, int device, void** handle) except -1:
        """The stream Binding.pick_stream would choose for the loaded frame ``f`` (whose
        non-variable slots are only in the kept frame): ``stream=``, else the producer of
        the slot the kept call's stream came from, else the thread's TVM-FFI stream."""
        cdef int i = self.stream_slot
        if stream is not None:
            resolve_stream(stream, handle)
        elif i < 0:
            handle[0] = env_stream(kDLCUDA, device)
        else:
            producer_stream(&f.slots[i] if (self.variable >> i) & 1 else &self.frame.slots[i],
                            handle)
        return 0
