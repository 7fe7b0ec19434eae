"""Tensor producers for the CPU tests, saying what real producers may say: read-only
exports, device ordinals, ranks, a DLPack C exchange table (as torch.Tensor has) built with
ctypes, the CUDA Array Interface."""

from __future__ import annotations

import ctypes


class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", _DLDevice), ("ndim", ctypes.c_int32),
                ("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16),
                ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("strides", ctypes.POINTER(ctypes.c_int64)), ("byte_offset", ctypes.c_uint64)]


class _Versioned(ctypes.Structure):  # DLManagedTensorVersioned
    _fields_ = [("major", ctypes.c_uint32), ("minor", ctypes.c_uint32),
                ("manager_ctx", ctypes.c_void_p), ("deleter", ctypes.c_void_p),
                ("flags", ctypes.c_uint64), ("dl", _DLTensor)]


_FROM_PY = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(_DLTensor))
_WORK_STREAM = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_int32,
                                ctypes.POINTER(ctypes.c_void_p))


class _ExchangeAPI(ctypes.Structure):  # DLPackExchangeAPI (dlpack.h >= 1.3)
    _fields_ = [("major", ctypes.c_uint32), ("minor", ctypes.c_uint32),
                ("prev_version_api", ctypes.c_void_p), ("allocator", ctypes.c_void_p),
                ("managed_from_py", ctypes.c_void_p), ("managed_to_py", ctypes.c_void_p),
                ("dltensor_from_py_object_no_sync", _FROM_PY),
                ("current_work_stream", _WORK_STREAM)]


# Own prototypes: setting restype on ctypes.pythonapi's shared entries would leak into
# other users in the process.
_capsule_pointer = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_char_p)(
    ("PyCapsule_GetPointer", ctypes.pythonapi))
_capsule_new = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.c_void_p, ctypes.c_char_p,
                                 ctypes.c_void_p)(("PyCapsule_New", ctypes.pythonapi))
_alive = []  # the exchange tables and callbacks live as long as the types using them


def _managed(cap):
    """The DLManagedTensorVersioned inside a versioned DLPack capsule."""
    return _Versioned.from_address(_capsule_pointer(cap, b"dltensor_versioned"))


def exchange_type(describe=True, stream=True):
    """A tensor type with ``__dlpack_c_exchange_api__`` (as torch.Tensor has), built with
    ctypes. ``T(arr, shape=None, device_id=0)`` is described as float32 ``arr`` on the CPU,
    with that shape (any rank) and device ordinal. ``describe=False`` / ``stream=False``
    leave dltensor_from_py_object_no_sync / current_work_stream NULL; ``T(...,
    null_shape=True)`` describes a NULL shape array. ``__dlpack__`` exports ``arr`` (the
    fallback)."""

    def from_py(obj_ptr, out):
        obj = ctypes.cast(obj_ptr, ctypes.py_object).value
        t = out.contents
        t.data, t.ndim, t.byte_offset = obj.arr.ctypes.data, len(obj.shape), 0
        t.device.device_type, t.device.device_id = 1, obj.device_id
        t.code, t.bits, t.lanes = 2, 32, 1
        t.shape, t.strides = obj.dims, None
        return 0

    def work_stream(device_type, device_id, out):
        out[0] = None
        return 0

    api = _ExchangeAPI(1, 3, None, None, None, None,
                       _FROM_PY(from_py) if describe else _FROM_PY(),
                       _WORK_STREAM(work_stream) if stream else _WORK_STREAM())
    _alive.append(api)
    cap = _capsule_new(ctypes.addressof(api), b"dlpack_exchange_api", None)

    def __init__(self, arr, shape=None, device_id=0, null_shape=False):
        self.arr, self.device_id = arr, device_id
        self.shape = arr.shape if shape is None else shape
        # null_shape: the DLTensor says len(shape) dimensions but gives no shape array
        self.dims = None if null_shape else (ctypes.c_int64 * max(len(self.shape), 1))(
            *self.shape)

    return type("Exchanged", (), {"__dlpack_c_exchange_api__": cap, "__init__": __init__,
                                  "__dlpack__": lambda self, **kw: self.arr.__dlpack__(**kw),
                                  "__dlpack_device__": lambda self: (1, 0)})


class Relabelled:
    """A DLPack producer exporting ``arr`` with its device ordinal changed (what a buggy or
    hostile producer may say)."""

    def __init__(self, arr, device_id):
        self.arr, self.device_id = arr, device_id

    def __dlpack__(self, **kw):
        cap = self.arr.__dlpack__(**kw)
        _managed(cap).dl.device.device_id = self.device_id
        return cap

    def __dlpack_device__(self):
        return (1, 0)


class ReadOnly:
    """``obj``'s versioned DLPack export, flagged read-only (as numpy does for an array
    with writeable=False, and JAX for every array)."""

    def __init__(self, obj):
        self.obj = obj

    def __dlpack__(self, **kw):
        cap = self.obj.__dlpack__(**kw)
        _managed(cap).flags |= 1  # DLPACK_FLAG_BITMASK_READ_ONLY
        return cap

    def __dlpack_device__(self):
        return self.obj.__dlpack_device__()


class CAI:
    """A ``__cuda_array_interface__`` producer."""

    def __init__(self, ptr, shape, read_only=False, typestr="<f4"):
        self.__cuda_array_interface__ = {"data": (ptr, read_only), "shape": shape,
                                         "typestr": typestr, "version": 3}


class _Legacy(ctypes.Structure):  # DLManagedTensor
    _fields_ = [("dl", _DLTensor), ("manager_ctx", ctypes.c_void_p),
                ("deleter", ctypes.c_void_p)]


_NULL = object()  # Forged(shape=_NULL): a NULL array


class Forged:
    """A DLPack producer whose capsule says what a broken producer may say: ``ndim``
    dimensions with ``shape`` / ``strides`` arrays or NULL (``NULL``), any ``data`` address,
    device and dtype; versioned (``DLManagedTensorVersioned``, minor ``minor``) or legacy.
    The capsule has no destructor (nothing to free: the producer keeps the structs)."""

    NULL = _NULL

    def __init__(self, shape=(4, 8), strides=None, data=0x7F0000000000, ndim=None,
                 versioned=True, minor=3, device=(2, 0), dtype=(2, 16, 1)):
        self.versioned = versioned
        n = ndim if ndim is not None else 0 if shape is _NULL else len(shape)
        self._arrays = [None if a is _NULL or a is None else (ctypes.c_int64 * max(len(a), 1))(*a)
                        for a in (shape, strides)]
        t = _DLTensor(data=data, ndim=n, byte_offset=0)
        t.device.device_type, t.device.device_id = device
        t.code, t.bits, t.lanes = dtype
        t.shape, t.strides = (ctypes.cast(a, ctypes.POINTER(ctypes.c_int64)) if a is not None
                              else None for a in self._arrays)
        self._managed = (_Versioned(1, minor, None, None, 0, t) if versioned
                         else _Legacy(t, None, None))

    def __dlpack__(self, **kw):
        if self.versioned and kw.get("max_version") is None:
            raise TypeError("max_version")  # a consumer that does not ask gets no capsule
        name = b"dltensor_versioned" if self.versioned else b"dltensor"
        return _capsule_new(ctypes.addressof(self._managed), name, None)

    def __dlpack_device__(self):
        return (self._managed.dl.device.device_type, self._managed.dl.device.device_id)
