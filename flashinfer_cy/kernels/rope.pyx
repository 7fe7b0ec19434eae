# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Rotary position embedding from FlashInfer's ``rope`` module (csrc/rope.cu and
flashinfer_rope_binding.cu, flashinfer 0.6.3). Names and argument order follow
``flashinfer.rope`` so that code can switch:

    apply_rope[_inplace](q, k, indptr, offsets, ...)        ragged batch: positions are
    apply_llama31_rope[_inplace](q, k, indptr, offsets, ...)   offsets[b] + i within segment b
    apply_rope_pos_ids[_inplace](q, k, pos_ids, ...)        one position per token
    apply_llama31_rope_pos_ids[_inplace](q, k, pos_ids, ...)
    apply_rope_with_cos_sin_cache[_inplace](positions, query, key, head_size, cos_sin_cache,
                                            is_neox)        vLLM/SGLang form (float32 cache)

``q`` ``[nnz, num_q_heads, head_dim]`` and ``k`` ``[nnz, num_k_heads, head_dim]`` (head counts
may differ), float16 or bfloat16, last dimension contiguous; the leading strides are free
(views into a packed QKV buffer work). Out of place the results go to ``q_rope``/``k_rope``
(allocated when omitted); in place they overwrite ``q`` and ``k``.

What the kernels assume, checked here: ``head_dim`` is 64, 128, 256 or 512 (the only ones
compiled); every row starts 16-byte aligned, since each thread moves ``vec`` elements
(``vec = max(8, head_dim / 32)``) at once, so data pointers are 16-byte aligned and the
token and head strides multiples of 8 elements; the rotated part ``rotary_dim`` is a
multiple of ``vec`` (interleaved pairs stay inside one vector) and, when not interleaved, of
``2 * vec`` (each vector's partner sits ``rotary_dim / 2`` further on). Positions live on
the device: their values (and ``indptr``'s) cannot be checked without a device-to-host copy,
so they are not: a position past the end of ``cos_sin_cache`` reads past it.
"""

from libc.math cimport isfinite
from libc.stdint cimport int64_t, uint64_t, uintptr_t

from flashinfer_cy._abi.tvm_ffi cimport TVMFFIAny
from flashinfer_cy._core.binding cimport (Binding, CallFrame, frame_init, frame_release,
                                          set_bool, set_float, set_int, work_stream)
from flashinfer_cy._core.stream cimport resolve_stream
from flashinfer_cy._core.tensor cimport (TensorSlot, DT_F16, DT_BF16, DT_F32, DT_I32, DT_I64,
                                         check_cuda, check_dtype, check_same_dtype, check_ndim,
                                         check_dim, check_last_contiguous, check_contiguous,
                                         check_same_shape, check_same_device, check_disjoint, describe,
                                         own_shape,
                                         dtype_key, dtype_name, finite_float, as_bool)

from flashinfer_cy._core.array import DeviceArray

# ABI table -- csrc/flashinfer_rope_binding.cu (q and q_rope may be the same tensor).
_QK = "q:T k:T q_rope:T! k_rope:T! "
_ROPE = "rotary_dim:I interleave:B rope_scale:F rope_theta:F"
_LLAMA31 = " low_freq_factor:F high_freq_factor:F old_context_length:F"
APPLY_ROPE = Binding("rope", "apply_rope", _QK + "indptr:T offsets:T " + _ROPE, device="q")
APPLY_LLAMA31_ROPE = Binding("rope", "apply_llama31_rope",
                             _QK + "indptr:T offsets:T " + _ROPE + _LLAMA31, device="q")
APPLY_ROPE_POS_IDS = Binding("rope", "apply_rope_pos_ids", _QK + "pos_ids:T " + _ROPE,
                             device="q")
APPLY_LLAMA31_ROPE_POS_IDS = Binding("rope", "apply_llama31_rope_pos_ids",
                                     _QK + "pos_ids:T " + _ROPE + _LLAMA31, device="q")
APPLY_ROPE_POS_IDS_COS_SIN_CACHE = Binding("rope", "apply_rope_pos_ids_cos_sin_cache",
                                           _QK + "cos_sin_cache:T pos_ids:T interleave:B",
                                           device="q")

# Argument slots shared by every export above.
cdef enum:
    Q = 0
    K = 1
    Q_ROPE = 2
    K_ROPE = 3
    IDX = 4          # indptr / pos_ids / cos_sin_cache
    IDX2 = 5         # offsets / (cache form) pos_ids


cdef int64_t _vec(int64_t head_dim) noexcept:
    return 8 if head_dim // 32 < 8 else head_dim // 32


cdef int _check_rows(TensorSlot* s, str name) except -1:
    """16-byte aligned data, token and head strides multiples of 8 elements, last dimension
    contiguous (the kernel ignores its stride)."""
    cdef int i
    check_last_contiguous(s, name)
    if (<uintptr_t>s.dl.data) % 16:
        raise ValueError(f"{name}: data pointer {<uintptr_t>s.dl.data:#x} must be 16-byte "
                         f"aligned (each thread moves 16 bytes at a time)")
    for i in range(2):
        if s.dl.shape[i] > 1 and (s.dl.strides[i] % 8 or s.dl.strides[i] < 0):
            raise ValueError(f"{name}: stride {s.dl.strides[i]} of dimension {i} must be a "
                             f"non-negative multiple of 8 elements (16 bytes), got "
                             f"{describe(s)}")
    return 0


cdef int _check_output(TensorSlot* o, str name, TensorSlot* x, str x_name) except -1:
    check_same_device(o, name, x, x_name)
    check_same_dtype(o, name, x, x_name)
    check_same_shape(o, name, x, x_name)
    _check_rows(o, name)
    # In place is the same view (the kernel reads each vector before writing it back);
    # anything else that shares bytes with the input would be read after it was written.
    if not (o.dl.data == x.dl.data and o.dl.strides[0] == x.dl.strides[0]
            and o.dl.strides[1] == x.dl.strides[1]):
        check_disjoint(o, name, x, x_name)
    return 0


cdef int _split_heads(TensorSlot* s, int64_t head_size, str name) except -1:
    """``[nnz, heads * head_size]`` described as the ``[nnz, heads, head_size]`` view the
    kernel reads (no copy); a 3-D tensor is left as it is (the head size is checked later)."""
    if head_size <= 0 or s.dl.ndim == 3:
        return 0
    if s.dl.ndim != 2 or s.dl.shape[1] % head_size:
        raise ValueError(f"{name}: expected [nnz, num_heads * head_size] (head_size "
                         f"{head_size}) or [nnz, num_heads, head_size], got {describe(s)}")
    check_last_contiguous(s, name)
    own_shape(s)
    s.dl.ndim = 3
    s.shape[2] = head_size
    s.shape[1] = s.shape[1] // head_size
    s.strides[2] = 1
    s.strides[1] = head_size
    return 0


cdef int64_t _pack_qk(Binding b, CallFrame* f, object q, object k, int64_t head_size,
                      str q_name, str k_name) except -1:
    """q and k into their slots, checked; returns head_dim. ``head_size`` > 0: 2-D inputs
    are split into heads of that size."""
    b.tensor_as(f, Q, q, q_name)
    b.tensor_as(f, K, k, k_name)
    cdef TensorSlot* sq = &f.slots[Q]
    cdef TensorSlot* sk = &f.slots[K]
    _split_heads(sq, head_size, q_name)
    _split_heads(sk, head_size, k_name)
    if head_size > 0:
        check_dim(sq, q_name, 2, head_size, "head_size")
    check_cuda(sq, q_name)
    check_dtype(sq, q_name, DT_F16, DT_BF16)
    check_ndim(sq, q_name, 3)
    check_same_device(sk, k_name, sq, q_name)
    check_same_dtype(sk, k_name, sq, q_name)
    check_ndim(sk, k_name, 3)
    if sk.dl.shape[0] != sq.dl.shape[0] or sk.dl.shape[2] != sq.dl.shape[2]:  # format on failure
        check_dim(sk, k_name, 0, sq.dl.shape[0], f"{q_name}'s token count (dimension 0)")
        check_dim(sk, k_name, 2, sq.dl.shape[2], f"{q_name}'s head_dim (dimension 2)")
    cdef int64_t head_dim = sq.dl.shape[2]
    if head_dim not in (64, 128, 256, 512):
        raise ValueError(f"{q_name}: head_dim must be 64, 128, 256 or 512 (the sizes the rope "
                         f"kernels are compiled for), got {describe(sq)}")
    if sq.dl.shape[0] >= (1 << 32) or sq.dl.shape[1] >= (1 << 32) or sk.dl.shape[1] >= (1 << 32):
        raise ValueError(f"{q_name}, {k_name}: token and head counts must be < 2**32 (the kernel counts "
                         f"them in 32 bits), got {describe(sq)} and {describe(sk)}")
    _check_rows(sq, q_name)
    _check_rows(sk, k_name)
    return head_dim


cdef object _pack_outputs(Binding b, CallFrame* f, object q_rope, object k_rope,
                          object stream, bint inplace, object q, object k,
                          int64_t head_size=0, tuple names=("q", "k", "q_rope", "k_rope")):
    """q_rope / k_rope into their slots (allocated when omitted, in the caller's shapes of
    q/k; q/k themselves in place); returns them as a tuple."""
    cdef TensorSlot* sq = &f.slots[Q]
    if inplace:
        # The outputs are q and k themselves, already packed and checked (the same view
        # passes every output check): their descriptions are copied, not made again.
        b.alias(f, Q_ROPE, Q, names[0])
        b.alias(f, K_ROPE, K, names[1])
        return (q, k)
    if q_rope is None or k_rope is None:
        # Allocated on the stream the kernel will run on (stream-ordered, no sync).
        on = work_stream(b, f, stream, sq.dl.device.device_id)
        dt = "float16" if sq.dl.dtype.code == 2 else "bfloat16"
        if q_rope is None:
            q_rope = DeviceArray.empty(_shape_as_given(sq, q, head_size), dt,
                                       sq.dl.device.device_id, on)
        if k_rope is None:
            k_rope = DeviceArray.empty(_shape_as_given(&f.slots[K], k, head_size), dt,
                                       sq.dl.device.device_id, on)
    b.tensor_as(f, Q_ROPE, q_rope, names[2])
    b.tensor_as(f, K_ROPE, k_rope, names[3])
    _split_heads(&f.slots[Q_ROPE], head_size, names[2])
    _split_heads(&f.slots[K_ROPE], head_size, names[3])
    _check_output(&f.slots[Q_ROPE], names[2], sq, names[0])
    _check_output(&f.slots[K_ROPE], names[3], &f.slots[K], names[1])
    return (q_rope, k_rope)


cdef tuple _shape_as_given(TensorSlot* s, object given, int64_t head_size):
    """The shape the caller gave (2-D when it was split into heads here)."""
    if head_size > 0 and len(getattr(given, "shape", ())) == 2:
        return (s.dl.shape[0], s.dl.shape[1] * s.dl.shape[2])
    return (s.dl.shape[0], s.dl.shape[1], s.dl.shape[2])


cdef int _check_index(TensorSlot* s, str name, int64_t length, str what) except -1:
    check_dtype(s, name, DT_I32, DT_I64)
    check_ndim(s, name, 1)
    check_dim(s, name, 0, length, what)
    check_contiguous(s, name)
    return 0


cdef int64_t _rotary_dim(object rotary_dim, int64_t head_dim, bint interleave) except -1:
    if rotary_dim is None:
        return head_dim
    if isinstance(rotary_dim, bool) or not isinstance(rotary_dim, int):
        raise TypeError(f"rotary_dim: expected an int or None, got {rotary_dim!r}")
    cdef int64_t vec = _vec(head_dim)
    cdef int64_t unit = vec if interleave else 2 * vec
    if not 0 < rotary_dim <= head_dim or rotary_dim % unit:
        raise ValueError(f"rotary_dim: expected a multiple of {unit} in (0, head_dim="
                         f"{head_dim}] ({'interleaved' if interleave else 'non-interleaved'}"
                         f": the kernel rotates {vec} elements per thread), got {rotary_dim}")
    return rotary_dim


cdef double _positive(object value, str name) except -1.0:
    cdef double v = finite_float(value, name, "a finite number > 0")
    if v <= 0.0:
        raise ValueError(f"{name}: expected a finite number > 0, got {value!r}")
    return v


cdef int _set_rope_scalars(CallFrame* f, int first, int64_t rotary_dim, bint interleave,
                           object rope_scale, object rope_theta) except -1:
    set_int(f, first, rotary_dim)
    set_bool(f, first + 1, interleave)
    set_float(f, first + 2, _positive(rope_scale, "rope_scale"))
    set_float(f, first + 3, _positive(rope_theta, "rope_theta"))
    return 0


cdef int _set_llama31_scalars(CallFrame* f, int first, object low_freq_factor,
                              object high_freq_factor, object old_context_len) except -1:
    cdef double low = _positive(low_freq_factor, "low_freq_factor")
    cdef double high = _positive(high_freq_factor, "high_freq_factor")
    if high <= low:  # the kernel divides by (high - low)
        raise ValueError(f"high_freq_factor: must be greater than low_freq_factor ({low!r}), "
                         f"got {high_freq_factor!r}")
    set_float(f, first, low)
    set_float(f, first + 1, high)
    set_float(f, first + 2, _positive(old_context_len, "old_context_len"))
    return 0


cdef object _rope(Binding b, bint llama31, bint ragged, object q, object k, object index,
                  object offsets, object rotary_dim, object interleave, object rope_scale,
                  object rope_theta, object low_freq_factor, object high_freq_factor,
                  object old_context_len, object q_rope, object k_rope, bint inplace,
                  object stream):
    """Every apply_*rope* form but the cos/sin-cache one."""
    cdef CallFrame f
    cdef TVMFFIAny result
    cdef void* handle = NULL
    cdef bint il = as_bool(interleave, "interleave", "True or False")
    cdef int first = IDX2 + 1 if ragged else IDX + 1
    cdef int64_t head_dim, rd
    if stream is not None:
        resolve_stream(stream, &handle)
    frame_init(&f, b.n)
    try:
        head_dim = _pack_qk(b, &f, q, k, 0, "q", "k")
        rd = _rotary_dim(rotary_dim, head_dim, il)
        _set_rope_scalars(&f, first, rd, il, rope_scale, rope_theta)
        if llama31:
            _set_llama31_scalars(&f, first + 4, low_freq_factor, high_freq_factor,
                                 old_context_len)
        if ragged:
            b.tensor(&f, IDX, index)
            b.tensor(&f, IDX2, offsets)
            check_dtype(&f.slots[IDX2], "offsets", DT_I32, DT_I64)
            check_ndim(&f.slots[IDX2], "offsets", 1)
            check_contiguous(&f.slots[IDX2], "offsets")
            _check_index(&f.slots[IDX], "indptr", f.slots[IDX2].dl.shape[0] + 1,
                         "len(offsets) + 1")
            if dtype_key(f.slots[IDX].dl.dtype) != dtype_key(f.slots[IDX2].dl.dtype):
                raise TypeError(f"offsets: must have indptr's dtype "
                                f"({dtype_name(dtype_key(f.slots[IDX].dl.dtype))}), got "
                                f"{describe(&f.slots[IDX2])}")
        else:
            b.tensor(&f, IDX, index)
            _check_index(&f.slots[IDX], "pos_ids", f.slots[Q].dl.shape[0],
                         "q's token count")
        outs = _pack_outputs(b, &f, q_rope, k_rope, stream, inplace, q, k)
        if f.slots[Q].dl.shape[0] > 0 and (not ragged or f.slots[IDX2].dl.shape[0] > 0):
            b.invoke(&f, stream, &result)
        return None if inplace else outs
    finally:
        frame_release(&f)


def apply_rope(q, k, indptr, offsets, rotary_dim=None, interleave=False, rope_scale=1,
               rope_theta=1e4, *, q_rope=None, k_rope=None, stream=None):
    """RoPE on a ragged batch: token ``i`` of segment ``b`` (``indptr[b] <= i < indptr[b+1]``)
    is at position ``offsets[b] + i - indptr[b]``. ``indptr`` ``[batch+1]`` and ``offsets``
    ``[batch]``: int32 or int64, the same dtype. Returns ``(q_rope, k_rope)`` (allocated as
    :class:`DeviceArray` when omitted). ``rotary_dim``: the leading part of each head that is
    rotated (default all of it); ``interleave``: rotate pairs ``(2i, 2i+1)`` instead of
    ``(i, i + rotary_dim/2)``. Asynchronous."""
    return _rope(APPLY_ROPE, False, True, q, k, indptr, offsets, rotary_dim, interleave,
                 rope_scale, rope_theta, None, None, None, q_rope, k_rope, False, stream)


def apply_rope_inplace(q, k, indptr, offsets, rotary_dim=None, interleave=False, rope_scale=1,
                       rope_theta=1e4, *, stream=None):
    """:func:`apply_rope`, writing into ``q`` and ``k``. Returns None."""
    return _rope(APPLY_ROPE, False, True, q, k, indptr, offsets, rotary_dim, interleave,
                 rope_scale, rope_theta, None, None, None, None, None, True, stream)


def apply_rope_pos_ids(q, k, pos_ids, rotary_dim=None, interleave=False, rope_scale=1,
                       rope_theta=1e4, *, q_rope=None, k_rope=None, stream=None):
    """RoPE with one position per token: ``pos_ids`` ``[nnz]``, int32 or int64. Other
    arguments as :func:`apply_rope`. Returns ``(q_rope, k_rope)``."""
    return _rope(APPLY_ROPE_POS_IDS, False, False, q, k, pos_ids, None, rotary_dim,
                 interleave, rope_scale, rope_theta, None, None, None, q_rope, k_rope, False,
                 stream)


def apply_rope_pos_ids_inplace(q, k, pos_ids, rotary_dim=None, interleave=False, rope_scale=1,
                               rope_theta=1e4, *, stream=None):
    """:func:`apply_rope_pos_ids`, writing into ``q`` and ``k``. Returns None."""
    return _rope(APPLY_ROPE_POS_IDS, False, False, q, k, pos_ids, None, rotary_dim,
                 interleave, rope_scale, rope_theta, None, None, None, None, None, True,
                 stream)


def apply_llama31_rope(q, k, indptr, offsets, rotary_dim=None, interleave=False, rope_scale=8,
                       rope_theta=5e5, low_freq_factor=1, high_freq_factor=4,
                       old_context_len=8192, *, q_rope=None, k_rope=None, stream=None):
    """Llama 3.1 RoPE (frequencies smoothly rescaled between ``low_freq_factor`` and
    ``high_freq_factor`` wavelengths of ``old_context_len``) on a ragged batch. As
    :func:`apply_rope`; returns ``(q_rope, k_rope)``."""
    return _rope(APPLY_LLAMA31_ROPE, True, True, q, k, indptr, offsets, rotary_dim,
                 interleave, rope_scale, rope_theta, low_freq_factor, high_freq_factor,
                 old_context_len, q_rope, k_rope, False, stream)


def apply_llama31_rope_inplace(q, k, indptr, offsets, rotary_dim=None, interleave=False,
                               rope_scale=8, rope_theta=5e5, low_freq_factor=1,
                               high_freq_factor=4, old_context_len=8192, *, stream=None):
    """:func:`apply_llama31_rope`, writing into ``q`` and ``k``. Returns None."""
    return _rope(APPLY_LLAMA31_ROPE, True, True, q, k, indptr, offsets, rotary_dim,
                 interleave, rope_scale, rope_theta, low_freq_factor, high_freq_factor,
                 old_context_len, None, None, True, stream)


def apply_llama31_rope_pos_ids(q, k, pos_ids, rotary_dim=None, interleave=False, rope_scale=8,
                               rope_theta=5e5, low_freq_factor=1, high_freq_factor=4,
                               old_context_len=8192, *, q_rope=None, k_rope=None,
                               stream=None):
    """Llama 3.1 RoPE with one position per token. Returns ``(q_rope, k_rope)``."""
    return _rope(APPLY_LLAMA31_ROPE_POS_IDS, True, False, q, k, pos_ids, None, rotary_dim,
                 interleave, rope_scale, rope_theta, low_freq_factor, high_freq_factor,
                 old_context_len, q_rope, k_rope, False, stream)


def apply_llama31_rope_pos_ids_inplace(q, k, pos_ids, rotary_dim=None, interleave=False,
                                       rope_scale=8, rope_theta=5e5, low_freq_factor=1,
                                       high_freq_factor=4, old_context_len=8192, *,
                                       stream=None):
    """:func:`apply_llama31_rope_pos_ids`, writing into ``q`` and ``k``. Returns None."""
    return _rope(APPLY_LLAMA31_ROPE_POS_IDS, True, False, q, k, pos_ids, None, rotary_dim,
                 interleave, rope_scale, rope_theta, low_freq_factor, high_freq_factor,
                 old_context_len, None, None, True, stream)


cdef object _cos_sin_cache(object positions, object query, object key, object head_size,
                           object cos_sin_cache, object is_neox, object query_out,
                           object key_out, bint inplace, object stream):
    cdef Binding b = APPLY_ROPE_POS_IDS_COS_SIN_CACHE
    cdef CallFrame f
    cdef TVMFFIAny result
    cdef void* handle = NULL
    cdef bint neox = as_bool(is_neox, "is_neox", "True or False")
    cdef int64_t head_dim, hs
    cdef TensorSlot* c
    if isinstance(head_size, bool) or not isinstance(head_size, int) or head_size <= 0:
        raise TypeError(f"head_size: expected a positive int, got {head_size!r}")
    if head_size >= (1 << 31):  # no row is that wide; and it must fit the int64 below
        raise ValueError(f"head_size: expected a positive int below 2**31, got {head_size!r}")
    hs = head_size
    if stream is not None:
        resolve_stream(stream, &handle)
    frame_init(&f, b.n)
    try:
        head_dim = _pack_qk(b, &f, query, key, hs, "query", "key")
        b.tensor(&f, IDX, cos_sin_cache)
        c = &f.slots[IDX]
        check_dtype(c, "cos_sin_cache", DT_F32)
        check_ndim(c, "cos_sin_cache", 2)
        check_contiguous(c, "cos_sin_cache")
        if c.dl.shape[0] == 0:
            raise ValueError(f"cos_sin_cache: has no positions, got {describe(c)}")
        _rotary_dim(c.dl.shape[1], head_dim, not neox)  # its width is the rotary dim
        b.tensor_as(&f, IDX2, positions, "positions")
        _check_index(&f.slots[IDX2], "positions", f.slots[Q].dl.shape[0],
                     "query's token count")
        set_bool(&f, IDX2 + 1, not neox)
        outs = _pack_outputs(b, &f, query_out, key_out, stream, inplace, query, key, hs,
                             ("query", "key", "query_out", "key_out"))
        if f.slots[Q].dl.shape[0] > 0:
            b.invoke(&f, stream, &result)
        return None if inplace else outs
    finally:
        frame_release(&f)


def apply_rope_with_cos_sin_cache(positions, query, key, head_size, cos_sin_cache,
                                  is_neox=True, *, query_out=None, key_out=None, stream=None):
    """RoPE from a precomputed float32 ``cos_sin_cache`` ``[max_position, rotary_dim]``
    (cosines in the first half of each row, sines in the second), as vLLM and SGLang keep
    it. ``positions`` ``[nnz]`` int32 or int64; ``query`` ``[nnz, num_q_heads * head_size]``
    and ``key`` ``[nnz, num_k_heads * head_size]`` (or already split into heads).
    ``is_neox``: rotate halves (True) or interleaved pairs (False). Returns
    ``(query_out, key_out)``, shaped like ``query`` and ``key`` (allocated when omitted).
    Every position must be below ``max_position``: device positions are not checked."""
    return _cos_sin_cache(positions, query, key, head_size, cos_sin_cache, is_neox, query_out,
                          key_out, False, stream)


def apply_rope_with_cos_sin_cache_inplace(positions, query, key, head_size, cos_sin_cache,
                                          is_neox=True, *, stream=None):
    """:func:`apply_rope_with_cos_sin_cache`, writing into ``query`` and ``key``."""
    return _cos_sin_cache(positions, query, key, head_size, cos_sin_cache, is_neox, None,
                          None, True, stream)
