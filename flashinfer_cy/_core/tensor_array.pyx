# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""``ffi::Array<ffi::Tensor>`` arguments made from tensors described as DLTensors.

Most kernel arguments are ``TensorView``s, which a ``DLTensor*`` in the packed arguments
satisfies. An ``Array<Tensor>`` (the fused MoE runner's ``quant_scales``) holds Tensor
*objects* (type index ``kTVMFFITensor``): each is made here by libtvm_ffi's
``TVMFFITensorFromDLPackVersioned`` from a ``DLManagedTensorVersioned`` of our own, which
describes the producer's memory without copying it and keeps, until TVM-FFI drops the
Tensor, a reference to the producer's object (and to the DLPack capsule it was described
through, if any). The Array takes its own reference to each Tensor; ours is released at
once, so the last Tensor goes exactly when the Array does, and the producer's reference
with it (the deleter takes the GIL for that: TVM-FFI may drop an object on any thread).
"""

from cpython.ref cimport PyObject, Py_INCREF, Py_XDECREF
from libc.stdint cimport int64_t
from libc.stdlib cimport malloc, free

from flashinfer_cy._abi.dlpack cimport (DLManagedTensorVersioned, DLPACK_MAJOR_VERSION,
                                        DLPACK_MINOR_VERSION, DLPACK_FLAG_BITMASK_READ_ONLY)
from flashinfer_cy._abi.tvm_ffi cimport TVMFFIAny, TVMFFIObject, TVMFFIObjectHandle, kTVMFFITensor
from flashinfer_cy._core.runtime cimport ensure_ffi, g_ffi, make_array, raise_call_error
from flashinfer_cy._core.tensor cimport MAX_NDIM, TensorSlot, release_slot, to_dltensor


cdef struct HeldTensor:
    DLManagedTensorVersioned managed
    PyObject* owner     # the producer's object: its memory is what the Tensor points at
    PyObject* capsule   # the DLPack capsule it was described through, or NULL
    int64_t shape[MAX_NDIM]
    int64_t strides[MAX_NDIM]


cdef long g_live = 0  # HeldTensors not yet released (changed with the GIL held)


cdef void _release(DLManagedTensorVersioned* m) noexcept with gil:
    cdef HeldTensor* h = <HeldTensor*>m.manager_ctx
    global g_live
    Py_XDECREF(h.owner)
    Py_XDECREF(h.capsule)
    g_live -= 1
    free(h)


cdef TVMFFIObjectHandle _tensor_object(TensorSlot* s, object owner) except NULL:
    """A Tensor object describing slot ``s`` (a reference of ours). Takes over the slot's
    capsule reference."""
    global g_live
    cdef TVMFFIObjectHandle handle = NULL
    cdef int i, rc
    cdef HeldTensor* h = <HeldTensor*>malloc(sizeof(HeldTensor))
    if h == NULL:
        raise MemoryError()
    h.managed.version.major = DLPACK_MAJOR_VERSION
    h.managed.version.minor = DLPACK_MINOR_VERSION
    h.managed.manager_ctx = h
    h.managed.deleter = _release
    h.managed.flags = DLPACK_FLAG_BITMASK_READ_ONLY if s.read_only else 0
    h.managed.dl_tensor = s.dl
    for i in range(s.dl.ndim):  # the producer's arrays may live no longer than the call
        h.shape[i] = s.dl.shape[i]
        h.strides[i] = s.dl.strides[i]
    h.managed.dl_tensor.shape = h.shape
    h.managed.dl_tensor.strides = h.strides
    Py_INCREF(owner)
    h.owner = <PyObject*>owner
    h.capsule = s.keep
    s.keep = NULL
    g_live += 1
    rc = g_ffi.TensorFromDLPackVersioned(&h.managed, 0, 0, &handle)
    if rc != 0:
        _release(&h.managed)  # not taken over: ours to release
        raise_call_error(rc, "TVMFFITensorFromDLPackVersioned")
    return handle


cdef object array_from_slots(TensorSlot* slots, tuple owners, int n):
    """An ``Array`` of ``n`` Tensor objects, element i describing ``slots[i]`` (described
    from ``owners[i]`` by to_dltensor; their capsule references are taken over)."""
    cdef TVMFFIAny args[16]
    cdef int i, made = 0
    if n > 16:
        raise ValueError(f"at most 16 tensors in an Array argument, got {n}")
    ensure_ffi()
    try:
        for i in range(n):
            args[i].type_index = kTVMFFITensor
            args[i].zero_padding = 0
            args[i].v_obj = <TVMFFIObject*>_tensor_object(&slots[i], owners[i])
            made += 1
        return make_array(args, n)
    finally:  # the Array holds its own references (or, on failure, nothing does)
        for i in range(made):
            g_ffi.ObjectDecRef(args[i].v_obj)


def tensor_array(tensors):
    """An ``ffi::Array<ffi::Tensor>`` argument (an :class:`~flashinfer_cy._core.runtime.Array`)
    of ``tensors``, any producer a kernel argument accepts, none copied: for ``A?``
    arguments such as the fused MoE runner's ``quant_scales`` on the generic call path.
    Each tensor's memory stays referenced until the Array (and every kernel-held copy of
    it) is gone."""
    cdef TensorSlot slots[16]
    cdef int i, n
    owners = tuple(tensors)
    n = len(owners)
    if n > 16:
        raise ValueError(f"tensor_array: at most 16 tensors, got {n}")
    for i in range(n):
        slots[i].keep = NULL
    try:
        for i in range(n):
            to_dltensor(owners[i], &slots[i], f"tensors[{i}]")
        return array_from_slots(slots, owners, n)
    finally:
        for i in range(n):
            release_slot(&slots[i])


def tensor_array_live():
    """Tensor objects made by this module that TVM-FFI has not released yet (leak tests)."""
    return g_live
