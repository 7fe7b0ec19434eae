# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Zero-copy views of framework tensors as DLTensors, and the raw-pointer descriptor.

Producers are tried fastest first:
  1. ``TensorDesc`` / ``DeviceArray`` (this library): a struct copy;
  2. a type exposing ``__dlpack_c_exchange_api__`` (PyTorch >= 2.10): one C call that fills
     the DLTensor in place, no allocation; the producer's current stream is remembered;
  3. ``__dlpack__`` (versioned capsules where offered; CuPy, JAX, numpy...): the capsule is
     held until the call returns and then dropped unconsumed, which frees it;
  4. ``__cuda_array_interface__`` (Numba, older producers): parsed; its v3 ``stream`` is
     remembered.
Nothing is ever copied. Strides are always filled (kernels read them unchecked) and any
byte offset is folded into ``data`` (TensorView::data_ptr ignores byte_offset). What no
kernel can take is refused here, naming the argument: more than MAX_NDIM dimensions, a
NULL shape array, a negative size, a view whose addressed bytes overflow int64 or the address
space, a device ordinal out of range, a NULL data pointer for a tensor with elements. A
producer's read-only flag is kept in the slot; arguments a kernel writes refuse it
(check_writable).
"""

from cpython.pycapsule cimport (PyCapsule_GetPointer, PyCapsule_IsValid, PyCapsule_New,
                                PyCapsule_GetName)
from cpython.object cimport Py_TYPE
from cpython.ref cimport PyObject, Py_INCREF, Py_DECREF, Py_XDECREF
from cpython.exc cimport PyErr_Occurred
from cpython.float cimport PyFloat_AS_DOUBLE
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t, uintptr_t
from libc.stdlib cimport malloc, free
from libc.math cimport isfinite
from libc.string cimport memcpy

import numbers

from flashinfer_cy._abi.dlpack cimport (
    DLTensor, DLDataType, DLDevice, DLManagedTensor, DLManagedTensorVersioned,
    DLPackExchangeAPI, kDLCPU, kDLCUDA, kDLCUDAHost, kDLCUDAManaged, DLPACK_MAJOR_VERSION,
    DLPACK_MINOR_VERSION, DLPACK_FLAG_BITMASK_READ_ONLY)

# --------------------------------------------------------------------------- dtypes

_DTYPE_NAMES = {
    DT_F16: "float16", DT_BF16: "bfloat16", DT_F32: "float32", DT_F64: "float64",
    DT_I32: "int32", DT_I64: "int64", DT_U8: "uint8", DT_I8: "int8",
    DT_E4M3: "float8_e4m3fn", DT_E5M2: "float8_e5m2", DT_BOOL: "bool",
}
_DTYPE_ALIASES = {
    "f16": DT_F16, "fp16": DT_F16, "half": DT_F16, "bf16": DT_BF16, "f32": DT_F32,
    "fp32": DT_F32, "float": DT_F32, "f64": DT_F64, "double": DT_F64, "i32": DT_I32,
    "int": DT_I32, "i64": DT_I64, "long": DT_I64, "u8": DT_U8, "i8": DT_I8,
    "e4m3": DT_E4M3, "float8_e4m3": DT_E4M3, "e5m2": DT_E5M2,
}
for _k, _v in list(_DTYPE_NAMES.items()):
    _DTYPE_ALIASES[_v] = _k
# Array-interface typestrs (little-endian). bfloat16/fp8 have none.
_TYPESTR = {"<f2": DT_F16, "<f4": DT_F32, "<f8": DT_F64, "<i4": DT_I32, "<i8": DT_I64,
            "|u1": DT_U8, "<u1": DT_U8, "|i1": DT_I8, "<i1": DT_I8, "|b1": DT_BOOL}
_TYPESTR_OF = {DT_F16: "<f2", DT_F32: "<f4", DT_F64: "<f8", DT_I32: "<i4", DT_I64: "<i8",
               DT_U8: "|u1", DT_I8: "|i1", DT_BOOL: "|b1"}


cdef str dtype_name(uint32_t key):
    name = _DTYPE_NAMES.get(key)
    if name is None:
        return f"dtype(code={key >> 16}, bits={(key >> 8) & 0xFF}, lanes={key & 0xFF})"
    return name


cdef int parse_dtype(object dtype, DLDataType* out) except -1:
    """Accept 'float16'/'bf16'/..., numpy dtypes, torch dtypes (by name)."""
    check_native_order(dtype, "dtype")  # numpy ">f4": its name says "float32"
    name = dtype if isinstance(dtype, str) else getattr(dtype, "name", None) or str(dtype)
    if not isinstance(name, str):
        name = str(dtype)
    name = name.lower().rpartition(".")[2]  # "torch.bfloat16" -> "bfloat16"
    key = _DTYPE_ALIASES.get(name)
    if key is None:
        raise TypeError(f"dtype: expected one of {sorted(_DTYPE_NAMES.values())}, got {dtype!r}")
    out[0] = dtype_of_key(key)
    return 0


# --------------------------------------------------------------------------- conversion

cdef dict _exchange_api_of_type = {}   # type -> address of its DLPackExchangeAPI, or 0
# The last type asked about and its answer: a call's tensors are nearly always of one type.
# Borrowed: the dict above holds every type it has seen, so the pointer stays valid.
cdef PyObject* _last_type = NULL
cdef uintptr_t _last_api = 0
cdef dict _dlpack_versioned_ok = {}    # type -> whether __dlpack__(max_version=...) works


cdef void fill_contiguous_strides(TensorSlot* s) noexcept:
    cdef int i
    cdef int64_t acc = 1
    for i in range(s.dl.ndim - 1, -1, -1):
        s.strides[i] = acc
        acc *= s.dl.shape[i] if s.dl.shape[i] > 0 else 1
    s.dl.strides = s.strides


cdef void own_shape(TensorSlot* s) noexcept:
    """Copy shape/strides into the slot itself (a producer's arrays may not outlive it)."""
    cdef int i
    if s.dl.shape != s.shape:
        for i in range(s.dl.ndim):
            s.shape[i] = s.dl.shape[i]
        s.dl.shape = s.shape
    if s.dl.strides != s.strides:
        for i in range(s.dl.ndim):
            s.strides[i] = s.dl.strides[i]
        s.dl.strides = s.strides


cdef uintptr_t _lookup_exchange_api(type tp) except? 0:
    cap = getattr(tp, "__dlpack_c_exchange_api__", None)
    cdef const DLPackExchangeAPI* api = NULL
    if cap is not None and PyCapsule_IsValid(cap, b"dlpack_exchange_api"):
        api = <const DLPackExchangeAPI*>PyCapsule_GetPointer(cap, b"dlpack_exchange_api")
        # A major we do not speak, or no entry for what we call (dlpack.h lets a producer
        # leave dltensor_from_py_object_no_sync NULL): use __dlpack__ instead.
        if (api.header.version.major != DLPACK_MAJOR_VERSION
                or api.dltensor_from_py_object_no_sync == NULL
                or api.current_work_stream == NULL):
            api = NULL
    _exchange_api_of_type[tp] = <uintptr_t>api
    return <uintptr_t>api


cdef int _from_dlpack(object obj, TensorSlot* slot, str name) except -1:
    cdef type tp = type(obj)
    cdef DLManagedTensorVersioned* mv
    cdef DLManagedTensor* m
    versioned = _dlpack_versioned_ok.get(tp, True)
    cap = None
    try:
        if versioned:
            try:
                cap = obj.__dlpack__(max_version=(DLPACK_MAJOR_VERSION, DLPACK_MINOR_VERSION))
            except TypeError:  # pre-2023 producers: no max_version keyword
                _dlpack_versioned_ok[tp] = False
        if cap is None:
            cap = obj.__dlpack__()
    except BufferError as exc:  # e.g. numpy object arrays: not exportable at all
        raise TypeError(f"{name}: cannot be viewed through DLPack: {exc}") from None
    if PyCapsule_IsValid(cap, b"dltensor_versioned"):
        mv = <DLManagedTensorVersioned*>PyCapsule_GetPointer(cap, b"dltensor_versioned")
        if mv.version.major != DLPACK_MAJOR_VERSION:
            raise TypeError(f"{name}: DLPack major version {mv.version.major} is not supported")
        slot.dl = mv.dl_tensor
        slot.read_only = (mv.flags & DLPACK_FLAG_BITMASK_READ_ONLY) != 0
    elif PyCapsule_IsValid(cap, b"dltensor"):
        m = <DLManagedTensor*>PyCapsule_GetPointer(cap, b"dltensor")
        slot.dl = m.dl_tensor
    else:
        raise TypeError(f"{name}: __dlpack__() returned {cap!r}, not a DLPack capsule")
    if <uint32_t>slot.dl.ndim > MAX_NDIM:
        raise ValueError(f"{name}: at most {MAX_NDIM} dimensions are supported, got "
                         f"{slot.dl.ndim}")
    if slot.dl.shape == NULL and slot.dl.ndim > 0:
        raise ValueError(_null_shape_message(slot, name))
    # A NULL strides array is read as row-major compact (normalize_slot), as DLPack < 1.2
    # defines it; 1.2 forbids it without changing that meaning, so nothing is refused.
    # Hold the capsule until the call returns; dropping it unconsumed makes the producer
    # free its managed tensor (DLPack's rule for unconsumed capsules).
    Py_INCREF(cap)
    slot.keep = <PyObject*>cap
    slot.source = SRC_DLPACK
    normalize_slot(slot)
    return 0


cdef int _device_of_pointer(uintptr_t ptr, str name) except -1:
    # The CUDA Array Interface does not say which device owns the memory; the driver does.
    try:
        from cuda.bindings import driver
        err, ordinal = driver.cuPointerGetAttribute(
            driver.CUpointer_attribute.CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL, ptr)
    except Exception as exc:  # no driver on this machine
        raise ValueError(f"{name}: cannot tell which device owns {ptr:#x} "
                         f"(__cuda_array_interface__ input): {exc}") from None
    if int(err) != 0:
        raise ValueError(f"{name}: {ptr:#x} is not a CUDA device pointer ({err!r})")
    return int(ordinal)


cdef int _from_cai(object obj, object cai, TensorSlot* slot, str name) except -1:
    try:
        return _parse_cai(cai, slot, name)
    except (TypeError, ValueError):
        raise
    except (AttributeError, IndexError, KeyError, OverflowError) as exc:
        raise TypeError(f"{name}: malformed __cuda_array_interface__ {cai!r}: {exc}") from None


cdef int _parse_cai(object cai, TensorSlot* slot, str name) except -1:
    cdef int i, nd
    cdef int64_t itemsize
    if not isinstance(cai, dict):
        raise TypeError(f"{name}: __cuda_array_interface__ must be a dict, got {cai!r}")
    data = cai.get("data")
    shape = cai.get("shape")
    typestr = cai.get("typestr")
    if (not isinstance(data, (tuple, list)) or len(data) != 2 or not isinstance(data[0], int)
            or not isinstance(shape, (tuple, list)) or not isinstance(typestr, str)):
        raise TypeError(f"{name}: malformed __cuda_array_interface__ {cai!r}")
    key = _TYPESTR.get(typestr)
    if key is None:
        raise TypeError(f"{name}: unsupported array-interface typestr {typestr!r}")
    nd = len(shape)
    if nd > MAX_NDIM:
        raise ValueError(f"{name}: at most {MAX_NDIM} dimensions are supported")
    for i in range(nd):
        if not isinstance(shape[i], int) or shape[i] < 0:
            raise ValueError(f"{name}: __cuda_array_interface__ sizes must be ints >= 0, "
                             f"got shape {shape!r}")
    strides = cai.get("strides")
    if strides is not None and (not isinstance(strides, (tuple, list)) or len(strides) != nd
                                or not all(isinstance(st, int) for st in strides)):
        raise TypeError(f"{name}: __cuda_array_interface__ strides must be a tuple of {nd} "
                        f"ints or None, got {strides!r}")
    slot.dl.data = <void*><uintptr_t>data[0]
    slot.dl.ndim = nd
    slot.dl.dtype.code = <uint8_t>(key >> 16)
    slot.dl.dtype.bits = <uint8_t>((key >> 8) & 0xFF)
    slot.dl.dtype.lanes = 1
    slot.dl.byte_offset = 0
    slot.dl.shape = slot.shape
    for i in range(nd):
        slot.shape[i] = shape[i]
    itemsize = slot.dl.dtype.bits // 8
    if strides is None:
        slot.dl.strides = NULL
        fill_contiguous_strides(slot)
    else:
        for i in range(nd):
            if strides[i] % itemsize:
                raise ValueError(f"{name}: byte stride {strides[i]} is not a multiple of "
                                 f"the item size {itemsize}")
            slot.strides[i] = strides[i] // itemsize
        slot.dl.strides = slot.strides
    slot.dl.device.device_type = kDLCUDA
    # NULL: no device to ask; to_dltensor refuses it unless the tensor is empty.
    slot.dl.device.device_id = _device_of_pointer(<uintptr_t>data[0], name) if data[0] else 0
    slot.read_only = 1 if data[1] else 0
    stream = cai.get("stream")
    if stream is not None:
        if not isinstance(stream, int) or stream < 0:
            raise ValueError(f"{name}: __cuda_array_interface__ stream must be a handle >= 0, "
                             f"got {stream!r}")
        slot.producer_stream = <void*><uintptr_t>stream
        slot.has_producer_stream = 1
    slot.source = SRC_CAI
    return 0


cdef int to_dltensor(object obj, TensorSlot* slot, str name) except -1:
    """Describe ``obj`` in ``slot`` without copying; raise TypeError/ValueError naming
    ``name`` (holding nothing then). The two producers of a hot loop (the last exchange-API
    type, e.g. torch.Tensor, and this library's descriptors) are answered here; every other
    kind of producer below."""
    cdef PyObject* tp = <PyObject*>Py_TYPE(obj)
    cdef int rc
    slot.keep = NULL
    slot.api = NULL
    slot.has_producer_stream = 0
    slot.read_only = 0
    if tp == _last_type and _last_api != 0:
        rc = from_exchange(<PyObject*>obj, slot, <const DLPackExchangeAPI*>_last_api)
        if rc != 0:
            return exchange_failed(rc, slot, name)
    elif isinstance(obj, TensorDesc):
        from_desc(<PyObject*>obj, slot)
    else:
        _from_other_producer(obj, slot, name)
    # A producer's device ordinal indexes TVM-FFI's stream table; a NULL pointer would
    # reach the kernel (a TensorDesc(0, ...) placeholder, a CAI data of 0); a view whose
    # addresses overflow would make the kernel's index arithmetic wrap.
    if (slot.dl.data == NULL or <uint32_t>slot.dl.device.device_id >= MAX_DEVICES
            or not _span_fits(slot)):
        return _refuse_described(slot, name)
    return 0


cdef extern from *:
    bint mul_overflow "__builtin_mul_overflow"(int64_t a, int64_t b, int64_t* out) nogil
    bint add_overflow "__builtin_add_overflow"(int64_t a, int64_t b, int64_t* out) nogil
    bint sub_overflow "__builtin_sub_overflow"(int64_t a, int64_t b, int64_t* out) nogil


cdef bint _span_fits(TensorSlot* s) noexcept:
    """Whether every size is >= 0 and the bytes the view can address, from its lowest to
    its highest element, fit in int64 and in the address space -- computed with overflow
    checks. Strides such as (2**62, 128, 1) on a [4, 8, 128] tensor fail it: the kernel
    would form offsets that wrap. An empty tensor addresses nothing and passes."""
    cdef int i
    cdef int64_t n, off
    cdef int64_t lo = 0, hi = 0  # lowest / highest element offset, in elements
    cdef int64_t item = (s.dl.dtype.bits * s.dl.dtype.lanes + 7) // 8
    cdef bint empty = False
    for i in range(s.dl.ndim):
        if s.dl.shape[i] < 0:
            return False
        empty = empty or s.dl.shape[i] == 0
    if empty:
        return True
    for i in range(s.dl.ndim):
        n = s.dl.shape[i]
        if n == 1:
            continue  # its stride never multiplies a non-zero index
        if mul_overflow(n - 1, s.dl.strides[i], &off):
            return False
        if off > 0:
            if add_overflow(hi, off, &hi):
                return False
        elif add_overflow(lo, off, &lo):
            return False
    # In bytes: [lo * item, (hi + 1) * item); and the span between them
    if (add_overflow(hi, 1, &hi) or mul_overflow(hi, item, &hi) or mul_overflow(lo, item, &lo)
            or sub_overflow(hi, lo, &n)):
        return False
    # ... must not wrap around the address space either way from data.
    return (<uint64_t><uintptr_t>s.dl.data <= <uint64_t>(-1) - <uint64_t>hi
            and <uint64_t><uintptr_t>s.dl.data >= <uint64_t>(-lo))


cdef str _null_shape_message(TensorSlot* s, str name):
    return (f"{name}: the producer gave {s.dl.ndim} dimensions but a NULL shape array "
            f"(a malformed DLPack tensor)")


cdef int exchange_failed(int rc, TensorSlot* s, str name) except -1:
    """Raise for from_exchange's (or describe_as_kept's) non-zero ``rc``, naming ``name``."""
    if rc == BAD_NDIM:
        raise ValueError(f"{name}: at most {MAX_NDIM} dimensions are supported, got "
                         f"{s.dl.ndim}")
    if rc == NULL_SHAPE:
        raise ValueError(_null_shape_message(s, name))
    if PyErr_Occurred() == NULL:
        raise TypeError(f"{name}: the producer's DLPack exchange API failed without an error")
    return -1  # the producer's exception


cdef int _refuse_described(TensorSlot* s, str name) except -1:
    """to_dltensor's last checks failed, or ``s`` is an empty tensor at NULL (fine: 0)."""
    cdef int i
    if <uint32_t>s.dl.device.device_id >= MAX_DEVICES:
        msg = (f"{name}: the producer names device {s.dl.device.device_id}; expected a "
               f"device ordinal 0 <= device < {MAX_DEVICES}")
    elif min(shape_of(s), default=0) < 0:
        msg = f"{name}: sizes must be >= 0, got {describe(s)}"
    elif not _span_fits(s):
        msg = (f"{name}: the elements of {describe(s)} at {<uintptr_t>s.dl.data:#x} span "
               f"more bytes than int64 (or the address space) holds; a stride or size is "
               f"out of range")
    else:
        for i in range(s.dl.ndim):
            if s.dl.shape[i] == 0:
                return 0  # no element is ever addressed
        msg = f"{name}: NULL data pointer for a tensor with elements, {describe(s)}"
    release_slot(s)
    raise ValueError(msg)


cdef int _from_other_producer(object obj, TensorSlot* slot, str name) except -1:
    cdef uintptr_t api
    cdef int rc
    global _last_type, _last_api
    if obj is None:
        raise TypeError(f"{name}: expected a tensor, got None")
    cdef type tp = type(obj)
    if <PyObject*>tp == _last_type:
        api = _last_api
    else:
        cached = _exchange_api_of_type.get(tp)
        api = <uintptr_t>cached if cached is not None else _lookup_exchange_api(tp)
        _last_type = <PyObject*>tp  # after the lookup stored tp in the dict
        _last_api = api
    if api != 0:
        rc = from_exchange(<PyObject*>obj, slot, <const DLPackExchangeAPI*>api)
        return exchange_failed(rc, slot, name) if rc != 0 else 0
    if hasattr(tp, "__dlpack__"):
        return _from_dlpack(obj, slot, name)
    cai = getattr(obj, "__cuda_array_interface__", None)
    if cai is not None:
        return _from_cai(obj, cai, slot, name)
    raise TypeError(
        f"{name}: expected a tensor (DLPack or CUDA Array Interface producer, or "
        f"flashinfer_cy.TensorDesc), got {tp.__module__}.{tp.__qualname__}")


cdef void release_slot(TensorSlot* slot) noexcept:
    if slot.keep != NULL:
        Py_XDECREF(slot.keep)
        slot.keep = NULL


# --------------------------------------------------------------------------- validation

_DEVICE_NAMES = {kDLCPU: "cpu", kDLCUDA: "cuda", kDLCUDAHost: "cuda_host",
                 kDLCUDAManaged: "cuda_managed"}


cdef str _device_str(DLDevice d):
    return f"{_DEVICE_NAMES.get(<int>d.device_type, f'device_type {<int>d.device_type}')}:{d.device_id}"


# The checks below run on every call: their messages take shapes from shape_of(), never a
# generator expression in the check itself (Cython would allocate the generator's closure
# on every call, failing or not).
cdef tuple shape_of(TensorSlot* s):
    return tuple([s.dl.shape[i] for i in range(s.dl.ndim)])


cdef str describe(TensorSlot* s):
    shape = shape_of(s)
    strides = tuple(s.dl.strides[i] for i in range(s.dl.ndim))
    return (f"{dtype_name(dtype_key(s.dl.dtype))} {shape} strides {strides} on "
            f"{_device_str(s.dl.device)}")


cdef int check_cuda(TensorSlot* s, str name) except -1:
    if s.dl.device.device_type != kDLCUDA:
        raise ValueError(f"{name}: expected a CUDA tensor, got one on {_device_str(s.dl.device)}")
    return 0


cdef int check_dtype(TensorSlot* s, str name, uint32_t a, uint32_t b=0) except -1:
    cdef uint32_t k = dtype_key(s.dl.dtype)
    if k != a and (b == 0 or k != b):
        want = dtype_name(a) + (f" or {dtype_name(b)}" if b else "")
        raise TypeError(f"{name}: expected dtype {want}, got {dtype_name(k)}")
    return 0


cdef int check_same_dtype(TensorSlot* s, str name, TensorSlot* ref, str ref_name) except -1:
    if dtype_key(s.dl.dtype) != dtype_key(ref.dl.dtype):
        raise TypeError(f"{name}: expected dtype {dtype_name(dtype_key(ref.dl.dtype))} "
                        f"(same as {ref_name}), got {dtype_name(dtype_key(s.dl.dtype))}")
    return 0


cdef int check_ndim(TensorSlot* s, str name, int ndim) except -1:
    if s.dl.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} dimensions, got {s.dl.ndim} "
                         f"(shape {shape_of(s)})")
    return 0


cdef int check_dim(TensorSlot* s, str name, int axis, int64_t size, str what) except -1:
    if s.dl.shape[axis] != size:
        raise ValueError(f"{name}: expected size {size} ({what}) in dimension {axis}, got "
                         f"shape {shape_of(s)}")
    return 0


cdef int check_last_contiguous(TensorSlot* s, str name) except -1:
    if s.dl.ndim > 0 and s.dl.shape[s.dl.ndim - 1] > 1 and s.dl.strides[s.dl.ndim - 1] != 1:
        raise ValueError(f"{name}: the last dimension must be contiguous (stride 1), got "
                         f"{describe(s)}")
    return 0


cdef int check_contiguous(TensorSlot* s, str name) except -1:
    """Row-major strides as fill_contiguous_strides (and TensorDesc) spell them: a size-0
    dimension counts as 1, so (4, 0, 3) has strides (3, 3, 1)."""
    cdef int i
    cdef int64_t acc = 1
    for i in range(s.dl.ndim - 1, -1, -1):
        if s.dl.shape[i] != 1 and s.dl.strides[i] != acc:
            raise ValueError(f"{name}: expected a contiguous (row-major) tensor, got "
                             f"{describe(s)}")
        acc *= s.dl.shape[i] if s.dl.shape[i] > 0 else 1
    return 0


cdef int check_same_shape(TensorSlot* s, str name, TensorSlot* ref, str ref_name) except -1:
    cdef int i
    cdef bint same = s.dl.ndim == ref.dl.ndim
    if same:
        for i in range(s.dl.ndim):
            if s.dl.shape[i] != ref.dl.shape[i]:
                same = False
                break
    if not same:
        raise ValueError(
            f"{name}: expected shape {shape_of(ref)} (same as {ref_name}), got {shape_of(s)}")
    return 0


cdef int check_same_device(TensorSlot* s, str name, TensorSlot* ref, str ref_name) except -1:
    if (s.dl.device.device_type != ref.dl.device.device_type
            or s.dl.device.device_id != ref.dl.device.device_id):
        raise ValueError(f"{name}: expected a tensor on {_device_str(ref.dl.device)} (where "
                         f"{ref_name} is), got one on {_device_str(s.dl.device)}")
    return 0


cdef int check_writable(TensorSlot* s, str name) except -1:
    """For an argument the kernel writes: its producer must not have exported it read-only
    (a numpy array with writeable=False, a JAX array, CAI data (ptr, True))."""
    if s.read_only:
        raise ValueError(f"{name}: the kernel writes this tensor, but its producer exported "
                         f"it read-only ({describe(s)}); pass a writable tensor")
    return 0


cdef int check_aligned(TensorSlot* s, str name, int64_t align) except -1:
    if (<uintptr_t>s.dl.data) % align:
        raise ValueError(f"{name}: data pointer {<uintptr_t>s.dl.data:#x} must be aligned to "
                         f"{align} bytes")
    return 0


cdef int64_t numel(TensorSlot* s) noexcept:
    cdef int64_t n = 1
    cdef int i
    for i in range(s.dl.ndim):
        n *= s.dl.shape[i]
    return n


cdef void byte_range(TensorSlot* s, uintptr_t* lo, uintptr_t* hi) noexcept:
    """``[lo, hi)``: the bytes the view addresses, strides of any sign (to_dltensor checked
    that the span cannot overflow). Empty for a view with no elements."""
    cdef int64_t first = 0, last = 0, step
    cdef int64_t item = (s.dl.dtype.bits * s.dl.dtype.lanes + 7) // 8
    cdef int i
    lo[0] = hi[0] = <uintptr_t>s.dl.data
    for i in range(s.dl.ndim):
        if s.dl.shape[i] == 0:
            return
        step = (s.dl.shape[i] - 1) * s.dl.strides[i]
        if step < 0:
            first += step
        else:
            last += step
    lo[0] = <uintptr_t>s.dl.data + <uintptr_t>(first * item)
    hi[0] = <uintptr_t>s.dl.data + <uintptr_t>((last + 1) * item)


cdef int check_disjoint(TensorSlot* w, str w_name, TensorSlot* r, str r_name) except -1:
    """``w``, which a kernel writes, shares no byte with ``r`` (kernels read and write
    through __restrict__ pointers from many blocks at once). Strided views are compared by
    the byte ranges they span: exact for contiguous tensors, conservative for views that
    interleave inside one buffer."""
    cdef uintptr_t w0, w1, r0, r1
    byte_range(w, &w0, &w1)
    byte_range(r, &r0, &r1)
    return _ranges_disjoint(w, w_name, w0, w1, r, r_name, r0, r1)


cdef inline int _ranges_disjoint(TensorSlot* w, str w_name, uintptr_t w0, uintptr_t w1,
                                 TensorSlot* r, str r_name, uintptr_t r0,
                                 uintptr_t r1) except -1:
    if (w0 < w1 and r0 < r1 and w0 < r1 and r0 < w1
            and w.dl.device.device_type == r.dl.device.device_type
            and w.dl.device.device_id == r.dl.device.device_id):
        raise ValueError(f"{w_name}: the kernel writes it, so it must not overlap {r_name} "
                         f"(bytes {w0:#x}..{w1:#x} and {r0:#x}..{r1:#x})")
    return 0


cdef int check_outputs_disjoint(TensorSlot* w0, str w0_name, TensorSlot* w1, str w1_name,
                                TensorSlot* reads, object read_names, int n) except -1:
    """check_disjoint of each of the (up to) two written slots ``w0``, ``w1`` (NULL: none)
    with each of the ``n`` slots ``reads[i]`` (named ``read_names[i]``), read by read, then
    with each other: each byte range computed once (merge_state checks nine pairs)."""
    cdef uintptr_t lo[2]
    cdef uintptr_t hi[2]
    cdef uintptr_t r0, r1
    cdef int i
    if w0 != NULL:
        byte_range(w0, &lo[0], &hi[0])
    if w1 != NULL:
        byte_range(w1, &lo[1], &hi[1])
    for i in range(n):
        byte_range(&reads[i], &r0, &r1)
        if w0 != NULL:
            _ranges_disjoint(w0, w0_name, lo[0], hi[0], &reads[i], read_names[i], r0, r1)
        if w1 != NULL:
            _ranges_disjoint(w1, w1_name, lo[1], hi[1], &reads[i], read_names[i], r0, r1)
    if w0 != NULL and w1 != NULL:
        _ranges_disjoint(w0, w0_name, lo[0], hi[0], w1, w1_name, lo[1], hi[1])
    return 0


# --------------------------------------------------------------------------- descriptor

cdef void _versioned_deleter(DLManagedTensorVersioned* m) noexcept with gil:
    Py_DECREF(<object>m.manager_ctx)
    free(m)


cdef void _legacy_deleter(DLManagedTensor* m) noexcept with gil:
    Py_DECREF(<object>m.manager_ctx)
    free(m)


cdef void _capsule_destructor(object cap) noexcept:
    # Runs only for capsules nobody consumed (consumers rename them "used_...").
    cdef DLManagedTensorVersioned* mv
    cdef DLManagedTensor* m
    if PyCapsule_IsValid(cap, b"dltensor_versioned"):
        mv = <DLManagedTensorVersioned*>PyCapsule_GetPointer(cap, b"dltensor_versioned")
        mv.deleter(mv)
    elif PyCapsule_IsValid(cap, b"dltensor"):
        m = <DLManagedTensor*>PyCapsule_GetPointer(cap, b"dltensor")
        m.deleter(m)


_DEVICE_TYPES = {"cuda": kDLCUDA, "cpu": kDLCPU, "cuda_host": kDLCUDAHost,
                 "cuda_managed": kDLCUDAManaged}
_INT64_LIMIT = 1 << 63
_ADDRESS_LIMIT = 1 << 64


cdef object _integer(object value, str what):
    """``value`` as a Python int when it is one (or has ``__index__``: numpy integers);
    never a bool, float or string, which ``int()`` would truncate or parse."""
    if type(value) is int:
        return value
    if isinstance(value, bool) or not hasattr(type(value), "__index__"):
        raise TypeError(f"{what}: expected an integer, got {type(value).__name__} {value!r}")
    return value.__index__()


cdef uintptr_t _address(object ptr) except? 0:
    """An int, an object with ``__index__``, or an address wrapper with ``__int__``
    (cuda.bindings ``CUdeviceptr``); never None, a bool, float or string."""
    if type(ptr) is not int:
        tp = type(ptr)
        if (ptr is None or isinstance(ptr, (bool, str, bytes))
                or (isinstance(ptr, numbers.Number) and not isinstance(ptr, numbers.Integral))
                or not (hasattr(tp, "__index__") or hasattr(tp, "__int__"))):
            raise TypeError(f"ptr: expected an integer address, got {tp.__name__} {ptr!r}")
        ptr = ptr.__index__() if hasattr(tp, "__index__") else int(ptr)
    if ptr < 0 or ptr >= _ADDRESS_LIMIT:
        raise ValueError(f"ptr: expected an address 0 <= ptr < 2**64, got {ptr}")
    return <uintptr_t>ptr


cdef int _check_item_aligned(uintptr_t address, DLDataType dtype) except -1:
    """Every kernel loads whole items: a pointer between two items is a CUDA fault
    (misaligned address), which poisons the context, not an error."""
    cdef uintptr_t item = (dtype.bits * dtype.lanes) // 8
    if item > 1 and address % item:
        raise ValueError(f"ptr: {address:#x} is not aligned to the {item}-byte items of "
                         f"{dtype_name(dtype_key(dtype))}")
    return 0


cdef class TensorDesc:
    """A tensor described by a raw pointer: ``TensorDesc(ptr, shape, dtype, strides=None,
    device=0, device_type="cuda", owner=None)``.

    The fastest argument form (a struct copy per call). ``strides`` are in elements
    (default: row-major contiguous). ``owner`` is kept alive with the descriptor (e.g. the
    allocation the pointer belongs to). Exposes ``__dlpack__`` and
    ``__cuda_array_interface__`` so other libraries can view it too. ``set_ptr`` re-points it
    (e.g. at the next buffer of a ring) without rebuilding it.
    """

    def __init__(self, ptr, shape, dtype, strides=None, device=0,
                 device_type="cuda", owner=None):
        cdef int i, nd
        cdef uintptr_t address = _address(ptr)
        if isinstance(shape, (str, bytes)) or not hasattr(shape, "__iter__"):
            raise TypeError(f"shape: expected a sequence of sizes, got {shape!r}")
        shape = tuple(_integer(n, "shape") for n in shape)
        nd = len(shape)
        if nd > MAX_NDIM:
            raise ValueError(f"shape: at most {MAX_NDIM} dimensions are supported, got {nd}")
        for i in range(nd):
            if not 0 <= shape[i] < _INT64_LIMIT:
                raise ValueError(f"shape: sizes must be >= 0 and < 2**63, got {shape}")
            self._shape[i] = shape[i]
        if strides is not None:
            if isinstance(strides, (str, bytes)) or not hasattr(strides, "__iter__"):
                raise TypeError(f"strides: expected a sequence of strides, got {strides!r}")
            strides = tuple(_integer(st, "strides") for st in strides)
            if len(strides) != nd:
                raise ValueError(f"strides: expected {nd} entries (one per dimension), "
                                 f"got {len(strides)}")
            for i in range(nd):
                if not -_INT64_LIMIT <= strides[i] < _INT64_LIMIT:
                    raise ValueError(f"strides: must fit in int64, got {strides}")
                self._strides[i] = strides[i]
        else:
            acc = 1
            for i in range(nd - 1, -1, -1):
                if acc >= _INT64_LIMIT:
                    raise ValueError(f"shape: {shape} has too many elements for int64 strides")
                self._strides[i] = acc
                acc *= max(shape[i], 1)
        dt = _DEVICE_TYPES.get(device_type) if isinstance(device_type, str) else None
        if dt is None:
            raise ValueError(f"device_type: expected one of {sorted(_DEVICE_TYPES)}, "
                             f"got {device_type!r}")
        device = _integer(device, "device")
        if not 0 <= device < MAX_DEVICES:
            raise ValueError(f"device: expected a device ordinal 0 <= device < {MAX_DEVICES}, "
                             f"got {device}")
        parse_dtype(dtype, &self.dl.dtype)
        _check_item_aligned(address, self.dl.dtype)
        point_desc(self, <void*>address, dt, device, nd)
        self.owner = owner

    def set_ptr(self, ptr):
        """Point the descriptor at another buffer of the same shape and dtype."""
        cdef uintptr_t address = _address(ptr)
        _check_item_aligned(address, self.dl.dtype)
        self.dl.data = <void*>address

    @property
    def ptr(self):
        return <uintptr_t>self.dl.data

    @property
    def shape(self):
        return tuple(self._shape[i] for i in range(self.dl.ndim))

    @property
    def strides(self):
        """Strides in elements."""
        return tuple(self._strides[i] for i in range(self.dl.ndim))

    @property
    def ndim(self):
        return self.dl.ndim

    @property
    def dtype(self):
        return dtype_name(dtype_key(self.dl.dtype))

    @property
    def device(self):
        return (_DEVICE_NAMES.get(<int>self.dl.device.device_type), self.dl.device.device_id)

    @property
    def itemsize(self):
        return self.dl.dtype.bits * self.dl.dtype.lanes // 8

    @property
    def size(self):
        n = 1
        for i in range(self.dl.ndim):
            n *= self._shape[i]
        return n

    @property
    def nbytes(self):
        return self.size * self.itemsize

    def __dlpack_device__(self):
        return (<int>self.dl.device.device_type, self.dl.device.device_id)

    def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy=None):
        # No copy is ever made and no stream work is needed: the data is ready in the order
        # the caller established (this library launches only on the streams it is given).
        cdef DLManagedTensorVersioned* mv
        cdef DLManagedTensor* m
        if copy is not None and as_bool(copy, "copy", "True, False or None"):
            raise BufferError("TensorDesc never copies (copy=True requested)")
        if dl_device is not None:
            # A tuple, as the array API says: no len()/iteration of an arbitrary object
            # (a lying __len__ made tuple() try to allocate 2**62 entries).
            if type(dl_device) is not tuple or len(dl_device) != 2:
                raise TypeError(f"dl_device: expected a (device_type, device_id) tuple, got "
                                f"{type(dl_device).__name__}")
            if dl_device != self.__dlpack_device__():
                raise BufferError(f"TensorDesc lives on {self.__dlpack_device__()}, "
                                  f"not {dl_device}")
        if max_version is not None and (not isinstance(max_version, tuple)
                                        or len(max_version) != 2
                                        or not all(type(v) is int for v in max_version)):
            raise TypeError(f"max_version: expected a (major, minor) tuple of ints, got "
                            f"{max_version!r}")
        if max_version is not None and max_version[0] >= 1:
            mv = <DLManagedTensorVersioned*>malloc(sizeof(DLManagedTensorVersioned))
            if mv == NULL:
                raise MemoryError()
            mv.version.major = DLPACK_MAJOR_VERSION
            mv.version.minor = DLPACK_MINOR_VERSION
            mv.manager_ctx = <void*>self
            mv.deleter = _versioned_deleter
            mv.flags = 0
            mv.dl_tensor = self.dl
            Py_INCREF(self)
            return PyCapsule_New(mv, b"dltensor_versioned", _capsule_destructor)
        m = <DLManagedTensor*>malloc(sizeof(DLManagedTensor))
        if m == NULL:
            raise MemoryError()
        m.manager_ctx = <void*>self
        m.deleter = _legacy_deleter
        m.dl_tensor = self.dl
        Py_INCREF(self)
        return PyCapsule_New(m, b"dltensor", _capsule_destructor)

    @property
    def __cuda_array_interface__(self):
        if self.dl.device.device_type != kDLCUDA:
            raise AttributeError("__cuda_array_interface__: not a CUDA tensor")
        typestr = _TYPESTR_OF.get(dtype_key(self.dl.dtype))
        if typestr is None:  # bf16/fp8 cannot be spelled: consumers fall back to DLPack
            raise AttributeError(f"__cuda_array_interface__: no typestr for {self.dtype}")
        item = self.itemsize
        return {"shape": self.shape, "typestr": typestr, "data": (self.ptr, False),
                "strides": tuple(s * item for s in self.strides), "version": 3,
                "stream": None}

    def __repr__(self):
        return (f"{type(self).__name__}(ptr={self.ptr:#x}, shape={self.shape}, "
                f"dtype={self.dtype!r}, strides={self.strides}, device={self.device})")


cdef double finite_float(object value, str name, str expected) except? -1.0:
    """A Python int/float argument as a finite double; TypeError/ValueError name it."""
    cdef double v
    if type(value) is float:  # nearly every call: no isinstance chain
        v = PyFloat_AS_DOUBLE(value)
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: expected a float, got {type(value).__name__} {value!r}")
    else:
        try:
            v = value
        except OverflowError:  # an int beyond the float range
            v = float("inf")
    if not isfinite(v):
        raise ValueError(f"{name}: expected {expected}, got {value!r}")
    return v


cpdef int check_native_order(object dtype, str name) except -1:
    """A numpy dtype (anything with ``isnative``) must be in this machine's byte order:
    device data is native, and nothing here ever swaps bytes."""
    if getattr(dtype, "isnative", True) is False:
        raise TypeError(f"{name}: {getattr(dtype, 'str', dtype)!r} is not in this machine's "
                        f"byte order; convert it first (arr.astype(arr.dtype.newbyteorder('=')))")
    return 0


cdef int as_bool(object value, str name, str expected) except -1:
    """A bool argument as 0 or 1: True/False, numpy.bool_, or the ints 0 and 1. Never by
    truthiness ("False", None, 0.5); TypeError naming it, ``expected`` saying what fits."""
    if value is False or value is True:  # nearly every call: no type checks
        return value is True
    if isinstance(value, int) and (value == 0 or value == 1):  # bool too
        return value == 1
    if type(value).__module__ == "numpy" and type(value).__name__ in ("bool", "bool_"):
        return bool(value)
    raise TypeError(f"{name}: expected {expected}, got {type(value).__name__} {value!r}")
