# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""A call frame whose every argument was checked, kept so that the next call with tensors
that describe the same thing skips the checks and the packing.

A decode loop calls ``run()`` with the same shapes each step, often the same buffers. The
first call checks everything (devices, dtypes, shapes against the plan, strides, 16-byte
vector alignment) and packs the plan's arguments; :meth:`CheckedFrame.keep` copies that
frame, shapes and strides included. The next call hands ``reuse_frame`` only its
*variable* arguments (the caller's tensors). reuse_frame copies the kept frame, describes
those tensors into it and compares their metadata with the kept ones: dtype, device, rank,
shape, strides, and the data pointer's alignment (the only check that depends on the
pointer). If they agree, every check of the first call holds for this one.

reuse_frame is the hot path of a decode loop. It describes a tensor whose exact type the
kept call saw (torch.Tensor, DeviceArray) without looking its type up again, and compares
as it goes, stopping at the first difference. It and ``kept_stream`` are inline functions
of checked_frame.pxd, compiled into the caller, so a steady-state run() calls into no
other extension module before the kernel call (callgrind, CPU stand-ins: 4,075 -> 3,838
instructions per run(); on the H100 the gain is below the noise between processes).

A CheckedFrame is immutable once kept: a caller holds a reference for the duration of its
call, so a concurrent call that keeps a newer frame can never change the arguments under
a running kernel call.
"""

from cpython.object cimport Py_TYPE
from cpython.ref cimport PyObject
from libc.stdint cimport uint32_t
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy

from flashinfer_cy._abi.tvm_ffi cimport kTVMFFIDLTensorPtr
from flashinfer_cy._core.binding cimport CallFrame
from flashinfer_cy._core.tensor cimport TensorSlot, own_shape, SRC_DESC, SRC_EXCHANGE


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
