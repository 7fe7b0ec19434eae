# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""RMSNorm family from FlashInfer's ``norm`` module (csrc/norm.cu, flashinfer 0.6.3).

    rmsnorm                 out = x / rms(x) * w             x: [tokens, hidden]
                                                             or [tokens, heads, head_dim]
                                                             (fused per-head QK norm)
    gemma_rmsnorm           out = x / rms(x) * (1 + w)       x: [tokens, hidden]
    fused_add_rmsnorm       r += x; x = r / rms(r) * w       in place, 2-D
    gemma_fused_add_rmsnorm r += x; x = r / rms(r) * (1 + w) in place, 2-D

float16 and bfloat16. Everything is checked here, before the kernel is touched: dtypes,
ranks, shapes, one device, contiguous last dimension, and the alignment the vectorised
kernels assume (a misaligned row would otherwise be a CUDA fault, not an error).
"""

from libc.math cimport isfinite
from libc.stdint cimport int64_t, uint32_t, uint64_t, uintptr_t

from flashinfer_cy._abi.tvm_ffi cimport TVMFFIAny
from flashinfer_cy._core.binding cimport (Binding, CallFrame, frame_init, frame_release,
                                          set_float, set_bool, work_stream)
from flashinfer_cy.kernels.attention cimport pdl_default, pdl_flag
from flashinfer_cy._core.stream cimport resolve_stream
from flashinfer_cy._core.tensor cimport (
    TensorSlot, DT_F16, DT_BF16, check_cuda, check_dtype, check_same_dtype, check_ndim,
    check_dim, check_last_contiguous, check_same_shape, check_same_device, describe,
    shape_of, finite_float, as_bool)

from flashinfer_cy._core.array import DeviceArray

# ABI table: (module, symbol, arguments in order) -- csrc/flashinfer_norm_binding.cu
# ("!": written; the fused-add forms update input and residual in place)
RMSNORM = Binding("norm", "rmsnorm",
                  "out:T! input:T weight:T eps:F enable_pdl:B", device="input")
GEMMA_RMSNORM = Binding("norm", "gemma_rmsnorm",
                        "out:T! input:T weight:T eps:F enable_pdl:B", device="input")
FUSED_ADD_RMSNORM = Binding("norm", "fused_add_rmsnorm",
                            "input:T! residual:T! weight:T eps:F enable_pdl:B", device="input")
GEMMA_FUSED_ADD_RMSNORM = Binding("norm", "gemma_fused_add_rmsnorm",
                                  "input:T! residual:T! weight:T eps:F enable_pdl:B",
                                  device="input")

cdef int64_t UINT32_LIMIT = 1 << 32  # the kernels take sizes and strides as uint32_t


cdef double _as_eps(object eps) except? -1.0:
    cdef double v = finite_float(eps, "eps", "a finite number > 0")
    if v <= 0.0:
        raise ValueError(f"eps: expected a finite number > 0, got {eps!r}")
    return v


cdef int _check_vector_layout(TensorSlot* s, str name, int64_t hidden) except -1:
    """The kernels load ``gcd(16 / itemsize, hidden)`` elements per vector access from every
    row start, so each row start must be aligned to that many elements. They also form every
    element offset (row * stride + column) and the row count in uint32 arithmetic: a tensor
    spanning 2**32 elements or more would wrap around silently, so it is refused."""
    cdef int64_t vec = 8  # 16 bytes of 2-byte items
    cdef int i
    cdef uint64_t span = 0, rows = 1
    while hidden % vec:
        vec //= 2
    if (<uintptr_t>s.dl.data) % (vec * 2):
        raise ValueError(f"{name}: data pointer {<uintptr_t>s.dl.data:#x} must be aligned to "
                         f"{vec * 2} bytes for hidden size {hidden}")
    for i in range(s.dl.ndim - 1):
        if s.dl.shape[i] > 1 and (s.dl.strides[i] % vec or s.dl.strides[i] < 0):
            raise ValueError(f"{name}: stride {s.dl.strides[i]} of dimension {i} must be a "
                             f"non-negative multiple of {vec} elements, got {describe(s)}")
        if s.dl.strides[i] >= UINT32_LIMIT or s.dl.shape[i] >= UINT32_LIMIT:
            raise ValueError(f"{name}: sizes and strides must be < 2**32, got {describe(s)}")
        rows *= <uint64_t>s.dl.shape[i]  # each < 2**32 and at most two leading dims: no wrap
        if s.dl.shape[i] > 1:
            span += <uint64_t>(s.dl.shape[i] - 1) * <uint64_t>s.dl.strides[i]
    if s.dl.ndim > 0 and s.dl.shape[s.dl.ndim - 1] > 0:
        span += <uint64_t>s.dl.shape[s.dl.ndim - 1] - 1
    if span >= <uint64_t>UINT32_LIMIT or rows >= <uint64_t>UINT32_LIMIT:
        raise ValueError(f"{name}: the kernel addresses elements with 32-bit offsets; this "
                         f"tensor spans {span + 1} elements in {rows} rows (both must be "
                         f"< 2**32), got {describe(s)}")
    return 0


cdef int _check_rows_disjoint(TensorSlot* s, str name) except -1:
    """A tensor the kernel writes: rows one stride apart must not overlap (a stride below the
    row length, 0 included, makes blocks race on the same elements)."""
    cdef int i
    cdef int64_t hidden = s.dl.shape[s.dl.ndim - 1]
    for i in range(s.dl.ndim - 1):
        if s.dl.shape[i] > 1 and s.dl.strides[i] < hidden:
            raise ValueError(f"{name}: is written, so its rows must not overlap: stride "
                             f"{s.dl.strides[i]} of dimension {i} is below the row length "
                             f"{hidden}, got {describe(s)}")
    return 0


cdef int _check_input(TensorSlot* s, str name, int ndim_lo, int ndim_hi) except -1:
    check_cuda(s, name)
    check_dtype(s, name, DT_F16, DT_BF16)
    if s.dl.ndim < ndim_lo or s.dl.ndim > ndim_hi:
        check_ndim(s, name, ndim_lo if s.dl.ndim < ndim_lo else ndim_hi)
    check_last_contiguous(s, name)
    if s.dl.shape[s.dl.ndim - 1] <= 0:
        raise ValueError(f"{name}: the last (hidden) dimension must be > 0, got {describe(s)}")
    return 0


cdef int _check_weight(TensorSlot* w, TensorSlot* x, str x_name) except -1:
    check_same_device(w, "weight", x, x_name)
    check_same_dtype(w, "weight", x, x_name)
    check_ndim(w, "weight", 1)
    if w.dl.shape[0] != x.dl.shape[x.dl.ndim - 1]:  # the message is formatted on failure only
        check_dim(w, "weight", 0, x.dl.shape[x.dl.ndim - 1], f"the last dimension of {x_name}")
    check_last_contiguous(w, "weight")
    _check_vector_layout(w, "weight", w.dl.shape[0])
    return 0


cdef int64_t _rows(TensorSlot* s) noexcept:
    cdef int64_t n = 1
    cdef int i
    for i in range(s.dl.ndim - 1):
        n *= s.dl.shape[i]
    return n


cdef TensorSlot* _pack_input(Binding b, CallFrame* f, int i, object input,
                             int max_ndim) except NULL:
    b.tensor(f, i, input)
    cdef TensorSlot* x = &f.slots[i]
    _check_input(x, "input", 2, max_ndim)
    _check_vector_layout(x, "input", x.dl.shape[x.dl.ndim - 1])
    return x


cdef int _pack_like_input(Binding b, CallFrame* f, int i, object obj, str name,
                          TensorSlot* x) except -1:
    """An output/in-place operand: same device, dtype and shape as ``input``."""
    b.tensor(f, i, obj)
    cdef TensorSlot* s = &f.slots[i]
    check_same_device(s, name, x, "input")
    check_same_dtype(s, name, x, "input")
    check_same_shape(s, name, x, "input")
    check_last_contiguous(s, name)
    _check_vector_layout(s, name, x.dl.shape[x.dl.ndim - 1])
    return 0


cdef int _launch(Binding b, CallFrame* f, TensorSlot* x, double eps, object enable_pdl,
                 object stream) except -1:
    """eps and enable_pdl are the last two arguments of every norm export."""
    cdef TVMFFIAny result
    cdef void* handle = NULL
    cdef int pdl = pdl_flag(enable_pdl)
    if stream is not None:
        # Checked even when there is nothing to do, and before the PDL default asks CUDA.
        resolve_stream(stream, &handle)
    if _rows(x) == 0:
        return 0  # nothing to normalise; the kernel would reject an empty grid
    set_float(f, 3, eps)
    set_bool(f, 4, pdl_default(x.dl.device.device_id) if pdl < 0 else pdl)
    return b.invoke(f, stream, &result)


cdef object _norm_out_of_place(Binding b, object input, object weight, object eps, object out,
                               object enable_pdl, object stream, int max_ndim):
    cdef CallFrame f
    cdef TensorSlot* x
    cdef double eps_v = _as_eps(eps)
    pdl_flag(enable_pdl)  # checked before ``out`` may be allocated (CUDA)
    frame_init(&f, 5)
    try:
        x = _pack_input(b, &f, 1, input, max_ndim)
        b.tensor(&f, 2, weight)
        _check_weight(&f.slots[2], x, "input")
        if out is None:
            # Allocated on the stream the kernel will run on (stream-ordered, no sync),
            # the thread's use_stream() stream included. (shape_of, not a generator
            # expression: Cython would allocate its closure on every call of this function.)
            out = DeviceArray.empty(shape_of(x),
                                    "float16" if x.dl.dtype.code == 2 else "bfloat16",
                                    x.dl.device.device_id,
                                    work_stream(b, &f, stream, x.dl.device.device_id))
        _pack_like_input(b, &f, 0, out, "out", x)
        _check_rows_disjoint(&f.slots[0], "out")
        _launch(b, &f, x, eps_v, enable_pdl, stream)
        return out
    finally:
        frame_release(&f)


cdef object _norm_fused_add(Binding b, object input, object residual, object weight,
                            object eps, object enable_pdl, object stream):
    cdef CallFrame f
    cdef TensorSlot* x
    cdef double eps_v = _as_eps(eps)
    frame_init(&f, 5)
    try:
        x = _pack_input(b, &f, 0, input, 2)
        _check_rows_disjoint(x, "input")
        _pack_like_input(b, &f, 1, residual, "residual", x)
        _check_rows_disjoint(&f.slots[1], "residual")
        b.tensor(&f, 2, weight)
        _check_weight(&f.slots[2], x, "input")
        _launch(b, &f, x, eps_v, enable_pdl, stream)
        return None
    finally:
        frame_release(&f)


def rmsnorm(input, weight, eps=1e-6, out=None, enable_pdl=None, stream=None):
    """Root-mean-square normalisation: ``out = input / rms(input) * weight``.

    ``input``: ``[tokens, hidden]``, or ``[tokens, heads, head_dim]`` for the fused
    per-head QK norm (leading strides may be non-packed); float16 or bfloat16, on a CUDA
    device, last dimension contiguous. ``weight``: ``[hidden]`` (``[head_dim]``), same dtype.
    ``out``: same shape and dtype as ``input``; allocated as a :class:`DeviceArray` when
    omitted. ``enable_pdl``: programmatic dependent launch (default: on for sm_90+).
    ``stream``: see :mod:`flashinfer_cy.streams`. Returns ``out``. Asynchronous.
    """
    return _norm_out_of_place(RMSNORM, input, weight, eps, out, enable_pdl, stream, 3)


def gemma_rmsnorm(input, weight, eps=1e-6, out=None, enable_pdl=None, stream=None):
    """Gemma-style RMSNorm: ``out = input / rms(input) * (1 + weight)``; ``input`` 2-D
    ``[tokens, hidden]``. Other arguments as :func:`rmsnorm`."""
    return _norm_out_of_place(GEMMA_RMSNORM, input, weight, eps, out, enable_pdl, stream, 2)


def fused_add_rmsnorm(input, residual, weight, eps=1e-6, enable_pdl=None, stream=None):
    """In place: ``residual += input``, then ``input = residual / rms(residual) * weight``.

    ``input`` and ``residual``: ``[tokens, hidden]``, same dtype (float16/bfloat16), same
    device, last dimension contiguous. Returns None. Asynchronous."""
    return _norm_fused_add(FUSED_ADD_RMSNORM, input, residual, weight, eps, enable_pdl, stream)


def gemma_fused_add_rmsnorm(input, residual, weight, eps=1e-6, enable_pdl=None,
                            stream=None):
    """In place: ``residual += input``, then
    ``input = residual / rms(residual) * (1 + weight)``. As :func:`fused_add_rmsnorm`."""
    return _norm_fused_add(GEMMA_FUSED_ADD_RMSNORM, input, residual, weight, eps, enable_pdl,
                           stream)


# The 3-D form of rmsnorm under the name other libraries use for it.
qk_rmsnorm = rmsnorm
