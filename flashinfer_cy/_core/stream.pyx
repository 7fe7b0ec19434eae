# cython: language_level=3
"""What a ``stream=`` argument may be, turned into a ``cudaStream_t``.

Accepted: a plain int (the handle value; 0 = legacy default stream, 1 = cudaStreamLegacy,
2 = cudaStreamPerThread), any object implementing the CUDA stream protocol
``__cuda_stream__() -> (version, handle)`` (cuda.core ``Stream``, recent PyTorch and CuPy),
``torch.cuda.Stream`` (``.cuda_stream``), CuPy streams (``.ptr``) and
``cuda.bindings.driver.CUstream`` / ``cudaStream_t`` (``int()``); never a tensor, whose
``.ptr`` or value is no stream. What ``stream=None`` means is decided per call by the
binding (see ``flashinfer_cy.streams``).
"""

from libc.stdint cimport uintptr_t

import numbers

cdef enum StreamForm:
    FORM_PROTOCOL = 1
    FORM_TORCH = 2
    FORM_PTR_ATTR = 3
    FORM_INT = 4

cdef dict _form_of_type = {}
_HANDLE_LIMIT = 1 << 64


cdef int _classify(type tp) except -1:
    module = getattr(tp, "__module__", None)  # a class may set it to anything
    if type(module) is str and module.startswith("torch.") and hasattr(tp, "cuda_stream") \
            and not hasattr(tp, "__dlpack__"):
        # torch's __cuda_stream__ is a Python method returning (0, self.cuda_stream): read
        # the C attribute directly, one Python frame less per call (a model step passes its
        # torch stream to every call).
        form = FORM_TORCH
    elif hasattr(tp, "__cuda_stream__"):
        form = FORM_PROTOCOL
    elif hasattr(tp, "__dlpack__") or hasattr(tp, "__cuda_array_interface__"):
        # A tensor (TensorDesc/DeviceArray have .ptr, numpy arrays __index__): its data
        # pointer or value must never be taken for a cudaStream_t.
        raise TypeError(f"stream: expected a stream, got a tensor "
                        f"({tp.__module__}.{tp.__qualname__})")
    elif hasattr(tp, "cuda_stream"):
        form = FORM_TORCH
    elif hasattr(tp, "ptr"):
        form = FORM_PTR_ATTR
    elif hasattr(tp, "__index__") or (hasattr(tp, "__int__")
                                       and not issubclass(tp, numbers.Number)):
        form = FORM_INT  # not numpy floats: int() would truncate them
    else:
        raise TypeError(
            f"stream: expected an int handle, an object with __cuda_stream__, a "
            f"torch/CuPy stream or a cuda.bindings CUstream, got {tp.__module__}.{tp.__qualname__}")
    _form_of_type[tp] = form
    return form


cdef int resolve_stream(object stream, void** out) except -1:
    cdef object value
    if type(stream) is int:  # a raw handle, the form a hot loop passes: no Python compares
        try:
            out[0] = <void*><uintptr_t>(<unsigned long long>stream)
        except OverflowError:
            raise ValueError(f"stream: a handle must be >= 0 and < 2**64, got {stream}") from None
        return 0
    if isinstance(stream, bool) or isinstance(stream, float):
        raise TypeError(f"stream: expected a stream or an int handle, got {stream!r}")
    else:
        tp = type(stream)
        form = _form_of_type.get(tp)
        if form is None:
            form = _classify(tp)
        if form == FORM_PROTOCOL:
            info = stream.__cuda_stream__()
            if not isinstance(info, tuple) or len(info) != 2:
                raise TypeError(f"stream: __cuda_stream__() returned {info!r}, "
                                "expected (version, handle)")
            value = info[1]
        elif form == FORM_TORCH:
            value = stream.cuda_stream
        elif form == FORM_PTR_ATTR:
            value = stream.ptr
        else:
            value = int(stream)
    if type(value) is not int:
        if isinstance(value, bool) or not hasattr(type(value), "__index__"):
            raise TypeError(f"stream: the handle must be an integer, got {value!r}")
        value = value.__index__()
    if value < 0 or value >= _HANDLE_LIMIT:
        raise ValueError(f"stream: a handle must be >= 0 and < 2**64, got {value}")
    out[0] = <void*><uintptr_t>value
    return 0


def as_stream_handle(stream):
    """The raw ``cudaStream_t`` value for any accepted stream form (``None`` -> ``None``)."""
    cdef void* p = NULL
    if stream is None:
        return None
    resolve_stream(stream, &p)
    return <uintptr_t>p


cdef int check_stream(object stream) except -1:
    """For a call with nothing to launch: ``invoke`` (which resolves the stream) is
    skipped, but a bad ``stream`` is still an argument error."""
    cdef void* handle = NULL
    if stream is not None:
        resolve_stream(stream, &handle)
    return 0
