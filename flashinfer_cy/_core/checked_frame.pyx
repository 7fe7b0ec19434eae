# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""A call frame whose every argument was checked, kept so that the next call with tensors
that describe the same thing skips the checks and the packing.

A decode loop calls ``run()`` with the same shapes each step, often the same buffers. The
first call checks everything (devices, dtypes, shapes against the plan, strides, 16-byte
vector alignment) and packs the plan's arguments; :meth:`CheckedFrame.keep` copies that
frame, shapes and strides included. The next call hands :meth:`reuse` only its *variable*
arguments (the caller's tensors). reuse copies the kept frame, describes those tensors
into it and compares their metadata with the kept ones: dtype, device, rank, shape,
strides, and the data pointer's alignment (the only check that depends on the pointer).
If they agree, every check of the first call holds for this one.

reuse is the hot path of a decode loop, so it describes a tensor whose exact type the
kept call saw (torch.Tensor, DeviceArray) without looking its type up again, and compares
as it goes, stopping at the first difference.

A CheckedFrame is immutable once kept: a caller holds a reference for the duration of its
call, so a concurrent call that keeps a newer frame can never change the arguments under
a running kernel call.
"""

from cpython.object cimport Py_TYPE
from cpython.ref cimport PyObject
from libc.stdint cimport int64_t, uint32_t
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy

from flashinfer_cy._abi.dlpack cimport DLTensor, kDLCUDA
from flashinfer_cy._abi.tvm_ffi cimport kTVMFFIDLTensorPtr, kTVMFFINone
from flashinfer_cy._core.binding cimport Binding, producer_stream
from flashinfer_cy._core.runtime cimport env_stream
from flashinfer_cy._core.stream cimport resolve_stream
from flashinfer_cy._core.tensor cimport (TensorSlot, own_shape, redescribe, SRC_DESC,
                                        SRC_EXCHANGE)

cdef extern from *:
    """
    #include <stddef.h>
    #include <string.h>
    /* DLTensor keeps device, ndim and dtype in 16 adjacent bytes (dlpack.h): one
       comparison of that block compares all three. */
    _Static_assert(offsetof(DLTensor, ndim) == offsetof(DLTensor, device) + 8 &&
                   offsetof(DLTensor, dtype) == offsetof(DLTensor, device) + 12 &&
                   sizeof(DLDataType) == 4 && sizeof(DLDevice) == 8,
                   "DLTensor layout: device, ndim, dtype are not 16 adjacent bytes");
    static inline int fcy_same_device_rank_dtype(const DLTensor* a, const DLTensor* b) {
        return memcmp(&a->device, &b->device, 16) == 0;
    }
    """
    bint same_device_rank_dtype "fcy_same_device_rank_dtype"(const DLTensor* a,
                                                              const DLTensor* b) noexcept


cdef inline bint _same_slot(TensorSlot* a, TensorSlot* b) noexcept:
    """Whether ``a`` describes what the kept ``b`` did (data pointers aside, which need
    only the same 16-byte alignment), from the same kind of producer (so the stream is
    picked the same way)."""
    cdef int d
    cdef int64_t diff = 0
    if (a.api != b.api or a.has_producer_stream != b.has_producer_stream
            or not same_device_rank_dtype(&a.dl, &b.dl)
            or ((<size_t>a.dl.data ^ <size_t>b.dl.data) & 15) != 0):
        return False
    for d in range(a.dl.ndim):  # branch-free: these nearly always agree
        diff |= (a.dl.shape[d] ^ b.dl.shape[d]) | (a.dl.strides[d] ^ b.dl.strides[d])
    return diff == 0


cdef class CheckedFrame:

    def __init__(self, *args, **kwargs):
        raise TypeError("CheckedFrame objects are made by CheckedFrame.keep() from Cython")

    def __dealloc__(self):
        free(self.frame)  # slots own no references (keep() clears them)

    @staticmethod
    cdef CheckedFrame keep(CallFrame* f, uint32_t variable, PyObject** objs, object key,
                           int flags, int stream_slot):
        """A copy of ``f``, owning its tensors' shapes and strides (a producer's arrays
        live only as long as its call). ``objs[i]``: the object variable slot ``i`` was
        described from (its type is remembered for reuse), or NULL."""
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
        types = []  # holds the remembered types: their addresses are compared
        m.n_var = 0
        for i in range(f.n):
            if not (variable >> i) & 1:
                continue
            m.var_idx[m.n_var] = i
            m.var_type[m.n_var] = NULL  # described the long way each time
            if (objs[i] != NULL and f.args[i].type_index == kTVMFFIDLTensorPtr
                    and f.slots[i].source in (SRC_DESC, SRC_EXCHANGE)):
                m.var_type[m.n_var] = <PyObject*>Py_TYPE(<object>objs[i])
                types.append(type(<object>objs[i]))
            m.n_var += 1
        m._types = tuple(types)
        m.variable = variable
        m.key = key
        m.flags = flags
        m.stream_slot = stream_slot
        return m

    cdef int reuse(self, CallFrame* f, PyObject** objs, Binding b) except -1:
        """Load the kept frame into ``f`` and describe ``objs[i]`` into each variable slot
        ``i`` (None: an optional tensor left out; NULL: the caller described slot ``i``
        already). Returns 1 if they all describe what the kept call's did, so that ``f`` is
        ready to call; 0 at the first that does not. Either way the caller releases the
        variable slots (frame_release_masked)."""
        cdef int i, j
        cdef PyObject* o
        cdef TensorSlot* a
        cdef TensorSlot* k
        f.n = self.frame.n
        memcpy(f.args, self.frame.args, self.frame.n * sizeof(f.args[0]))
        for j in range(self.n_var):
            if objs[self.var_idx[j]] != NULL:
                f.slots[self.var_idx[j]].keep = NULL
        for j in range(self.n_var):
            i = self.var_idx[j]
            o = objs[i]
            if o == <PyObject*>None:
                if self.frame.args[i].type_index != kTVMFFINone:
                    return 0
                continue  # the kept argument is None too
            if self.frame.args[i].type_index != kTVMFFIDLTensorPtr:
                return 0  # the kept call had None here
            a = &f.slots[i]
            k = &self.frame.slots[i]
            if o != NULL:  # (NULL: described by the caller)
                if <PyObject*>Py_TYPE(<object>o) == self.var_type[j]:
                    redescribe(<object>o, a, k.source, k.api)
                else:
                    b.tensor(f, i, <object>o)
            if not _same_slot(a, k):
                return 0
            f.args[i].type_index = kTVMFFIDLTensorPtr
            f.args[i].v_ptr = &a.dl
        return 1

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
