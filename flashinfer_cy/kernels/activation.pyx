# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Gated activations of the MLP, one FlashInfer module each (generated from the template
in flashinfer/jit/activation.py, flashinfer 0.6.3):

    silu_and_mul        out = silu(x[..., :d]) * x[..., d:]
    gelu_and_mul        out = gelu(x[..., :d]) * x[..., d:]        (erf form)
    gelu_tanh_and_mul   out = gelu_tanh(x[..., :d]) * x[..., d:]   (tanh approximation)

``input`` ``[..., 2*d]`` -> ``out`` ``[..., d]``, float16 or bfloat16, both contiguous.

The kernel reads token ``t``'s halves at ``input + t*2d`` and ``input + t*2d + d`` and writes
``out + t*d``, 16 bytes at a time: so ``d`` must be a multiple of 8 elements and both data
pointers 16-byte aligned (flashinfer-python only asks for ``2d`` to be one, which lets
``d = 12`` through to a misaligned load), and ``d >= 8``, since the launch uses ``d / 8``
threads per token.
"""

from libc.stdint cimport int64_t, uintptr_t

from flashinfer_cy._abi.tvm_ffi cimport TVMFFIAny
from flashinfer_cy._core.binding cimport (Binding, CallFrame, frame_init, frame_release,
                                          set_bool, work_stream)
from flashinfer_cy.kernels.attention cimport pdl_default, pdl_flag
from flashinfer_cy._core.stream cimport resolve_stream
from flashinfer_cy._core.tensor cimport (TensorSlot, DT_F16, DT_BF16, check_cuda, check_dtype,
                                         check_same_dtype, check_same_device, check_contiguous,
                                         describe, shape_of, as_bool)

from flashinfer_cy._core.array import DeviceArray

# ABI table -- the template's `void {act}_and_mul(TensorView out, TensorView input,
# bool enable_pdl)`. The kernel takes its device from ``out``; invoke() checks that ``out``
# is on ``input``'s device, so naming ``input`` lets the stream be picked before ``out``
# exists (when it is allocated here).
SILU_AND_MUL = Binding("silu_and_mul", "silu_and_mul",
                       "out:T! input:T enable_pdl:B", device="input")
GELU_AND_MUL = Binding("gelu_and_mul", "gelu_and_mul",
                       "out:T! input:T enable_pdl:B", device="input")
GELU_TANH_AND_MUL = Binding("gelu_tanh_and_mul", "gelu_tanh_and_mul",
                            "out:T! input:T enable_pdl:B", device="input")

cdef int64_t VEC = 8  # elements of 2 bytes in one 16-byte access


cdef int _check_aligned(TensorSlot* s, str name) except -1:
    if (<uintptr_t>s.dl.data) % 16:
        raise ValueError(f"{name}: data pointer {<uintptr_t>s.dl.data:#x} must be 16-byte "
                         f"aligned (the kernel moves 16 bytes at a time)")
    return 0


cdef bint _empty(TensorSlot* s) noexcept:
    """No elements: nothing is read or written (no launch), and producers export any
    strides for such a tensor (torch and CuPy give (0, 0) for a (0, 128) one)."""
    cdef int i
    for i in range(s.dl.ndim):
        if s.dl.shape[i] == 0:
            return True
    return False


cdef int64_t _half_width(TensorSlot* x) except -1:
    check_cuda(x, "input")
    check_dtype(x, "input", DT_F16, DT_BF16)
    if x.dl.ndim < 1:
        raise ValueError(f"input: expected at least 1 dimension [..., 2*d], got {describe(x)}")
    if not _empty(x):
        check_contiguous(x, "input")
        _check_aligned(x, "input")
    cdef int64_t two_d = x.dl.shape[x.dl.ndim - 1]
    if two_d % (2 * VEC) or two_d < 2 * VEC:
        raise ValueError(f"input: the last dimension (2*d) must be a positive multiple of "
                         f"{2 * VEC} (d a multiple of {VEC}: each half is read 16 bytes at a "
                         f"time), got {describe(x)}")
    return two_d // 2


cdef bint _is_out_shape(TensorSlot* o, TensorSlot* x, int64_t d) noexcept:
    """``o`` is ``x``'s shape with the last dimension ``d`` (a C loop: this runs on every
    call, and a generator expression would allocate its closure each time)."""
    cdef int i
    if o.dl.ndim != x.dl.ndim or o.dl.shape[o.dl.ndim - 1] != d:
        return False
    for i in range(x.dl.ndim - 1):
        if o.dl.shape[i] != x.dl.shape[i]:
            return False
    return True


cdef int _check_out(TensorSlot* o, TensorSlot* x, int64_t d) except -1:
    check_same_device(o, "out", x, "input")
    check_same_dtype(o, "out", x, "input")
    if not _is_out_shape(o, x, d):
        raise ValueError(f"out: expected shape {_out_shape(x, d)} (input's with the last "
                         f"dimension halved), got {describe(o)}")
    if not _empty(o):
        check_contiguous(o, "out")
        _check_aligned(o, "out")
    return 0


cdef tuple _out_shape(TensorSlot* x, int64_t d):
    return shape_of(x)[:x.dl.ndim - 1] + (d,)


cdef object _act_and_mul(Binding b, object input, object out, object enable_pdl,
                         object stream):
    cdef CallFrame f
    cdef TVMFFIAny result
    cdef TensorSlot* x
    cdef void* handle = NULL
    cdef int64_t d, tokens = 1
    cdef int i
    cdef int pdl = pdl_flag(enable_pdl)
    if stream is not None:
        resolve_stream(stream, &handle)  # a bad stream is refused before anything else
    frame_init(&f, 3)
    try:
        b.tensor(&f, 1, input)
        x = &f.slots[1]
        d = _half_width(x)
        if out is None:
            # Allocated on the stream the kernel will run on (stream-ordered, no sync).
            out = DeviceArray.empty(_out_shape(x, d),
                                    "float16" if x.dl.dtype.code == 2 else "bfloat16",
                                    x.dl.device.device_id,
                                    work_stream(b, &f, stream, x.dl.device.device_id))
        b.tensor(&f, 0, out)
        _check_out(&f.slots[0], x, d)
        for i in range(x.dl.ndim - 1):
            tokens *= x.dl.shape[i]
        if tokens == 0:
            return out  # an empty grid: nothing to launch
        if tokens >= (1 << 31):
            raise ValueError(f"input: {tokens} tokens; the kernel launches one block per "
                             f"token, at most 2**31 - 1")
        set_bool(&f, 2, pdl_default(x.dl.device.device_id) if pdl < 0 else pdl)
        b.invoke(&f, stream, &result)
        return out
    finally:
        frame_release(&f)


def silu_and_mul(input, out=None, enable_pdl=None, stream=None):
    """``out = silu(input[..., :d]) * input[..., d:]`` with ``input`` ``[..., 2*d]``.

    float16 or bfloat16, contiguous, 16-byte aligned, ``d`` a multiple of 8. ``out``:
    ``[..., d]``, same dtype and device, contiguous; allocated as a :class:`DeviceArray` when
    omitted. ``enable_pdl``: programmatic dependent launch (default: on for sm_90+).
    Returns ``out``. Asynchronous on ``stream`` (see :mod:`flashinfer_cy.streams`)."""
    return _act_and_mul(SILU_AND_MUL, input, out, enable_pdl, stream)


def gelu_and_mul(input, out=None, enable_pdl=None, stream=None):
    """``out = gelu(input[..., :d]) * input[..., d:]`` (exact, erf form). As
    :func:`silu_and_mul`."""
    return _act_and_mul(GELU_AND_MUL, input, out, enable_pdl, stream)


def gelu_tanh_and_mul(input, out=None, enable_pdl=None, stream=None):
    """``out = gelu_tanh(input[..., :d]) * input[..., d:]`` (tanh approximation). As
    :func:`silu_and_mul`."""
    return _act_and_mul(GELU_TANH_AND_MUL, input, out, enable_pdl, stream)
