# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Attention-state merging from FlashInfer's ``cascade`` module (csrc/cascade.cu, 0.6.3).

An attention *state* is what attention over one chunk of the keys returns: the output ``v``
(normalised over that chunk) and its log-sum-exp ``s = log2(sum_j 2**t_j)``, **base 2**,
where ``t_j = score_j * log2(e)`` (FlashInfer's ``lse``: the natural-log LSE divided by
ln 2). Two states merge into the state of the union of their keys::

    s = log2(2**s_a + 2**s_b)
    v = 2**(s_a - s) * v_a + 2**(s_b - s) * v_b

    merge_state           (v_a, s_a) + (v_b, s_b) -> new (v_merged, s_merged)
    merge_state_in_place  (v, s) += (v_other, s_other), rows selected by an optional mask
    merge_states          [seq, num_states, ...] -> new (v_merged, s_merged)

``v``: float16 or bfloat16, ``[seq, heads, head_dim]`` with head_dim 64, 128, 256 or 512 (the
kernels' DISPATCH_HEAD_DIM); ``s``: float32 ``[seq, heads]``. Everything contiguous (the
kernels index ``(pos * heads + head) * head_dim`` from the data pointer), 16-byte aligned
``v`` (vector loads), in 32-bit element offsets. Checked here, before the kernel is touched.
"""

from libc.stdint cimport int64_t, uint64_t, uintptr_t

from flashinfer_cy._abi.tvm_ffi cimport TVMFFIAny
from flashinfer_cy._core.binding cimport (Binding, CallFrame, frame_init, frame_release,
                                          work_stream)
from flashinfer_cy._core.stream cimport check_stream
from flashinfer_cy._core.tensor cimport (
    TensorSlot, DT_F16, DT_BF16, DT_F32, DT_U8, DT_BOOL, check_cuda, check_dtype,
    check_same_dtype, check_ndim, check_dim, check_contiguous, check_same_shape,
    check_same_device, check_aligned, check_outputs_disjoint, numel, describe)

from flashinfer_cy._core.array import DeviceArray

# ABI table: (module, symbol, arguments in order) -- csrc/flashinfer_cascade_binding.cu
# ("!": written; merge_state_in_place updates v and s in place)
MERGE_STATE = Binding("cascade", "merge_state",
                      "v_a:T s_a:T v_b:T s_b:T v_merged:T! s_merged:T!", device="v_a")
MERGE_STATE_IN_PLACE = Binding("cascade", "merge_state_in_place",
                               "v:T! s:T! v_other:T s_other:T mask:T?", device="v")
MERGE_STATES = Binding("cascade", "merge_states",
                       "v:T s:T v_merged:T! s_merged:T!", device="v")

# DISPATCH_HEAD_DIM (include/flashinfer/utils.cuh)
HEAD_DIMS = (64, 128, 256, 512)
cdef int64_t V_ALIGN = 16  # bytes: vec_t loads/stores and cp.async move 16-byte pieces
cdef int64_t MAX_THREADS_PER_BLOCK = 1024

cdef uint64_t UINT32_LIMIT = 1ULL << 32  # the kernels' element offsets are uint32_t
cdef int64_t GRID_X_LIMIT = (1LL << 31) - 1
cdef int64_t GRID_Y_LIMIT = 65535


cdef int64_t max_heads(int64_t head_dim) noexcept:
    """Heads one block of MergeState/MergeStateInPlace/MergeStatesKernel holds: the block
    is (head_dim / vec, heads) threads, vec = max(8, head_dim / 32) for 16-bit types."""
    cdef int64_t vec = head_dim // 32 if head_dim // 32 > 8 else 8
    return MAX_THREADS_PER_BLOCK // (head_dim // vec)


cdef int _check_v(TensorSlot* s, str name, int ndim, str layout) except -1:
    """A state's output tensor, the first one of a call (the others must match it)."""
    cdef int64_t head_dim
    check_cuda(s, name)
    check_dtype(s, name, DT_F16, DT_BF16)
    if s.dl.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} dimensions {layout}, got "
                         f"{describe(s)}")
    head_dim = s.dl.shape[ndim - 1]
    if head_dim not in HEAD_DIMS:
        raise ValueError(f"{name}: head_dim (last dimension) must be one of {HEAD_DIMS}, "
                         f"got {describe(s)}")
    check_contiguous(s, name)
    check_aligned(s, name, V_ALIGN)
    if <uint64_t>numel(s) >= UINT32_LIMIT:
        raise ValueError(f"{name}: the kernel addresses elements with 32-bit offsets; "
                         f"{numel(s)} elements is too many (at most 2**32 - 1), got "
                         f"{describe(s)}")
    if s.dl.shape[0] > GRID_X_LIMIT:
        raise ValueError(f"{name}: at most 2**31 - 1 rows (one thread block each), got "
                         f"{describe(s)}")
    return 0


cdef int _check_like(TensorSlot* s, str name, TensorSlot* ref, str ref_name) except -1:
    """Same device, dtype and shape as ``ref``; contiguous; aligned as its dtype needs."""
    check_cuda(s, name)
    check_same_device(s, name, ref, ref_name)
    check_same_dtype(s, name, ref, ref_name)
    check_same_shape(s, name, ref, ref_name)
    check_contiguous(s, name)
    check_aligned(s, name, V_ALIGN if s.dl.dtype.bits == 16 else 4)
    return 0


# Expected shapes travel as C arrays and become tuples only for a message or an allocation:
# these checks run on every call.
cdef tuple _tuple(const int64_t* shape, int ndim):
    return tuple([shape[i] for i in range(ndim)])  # a list first: no generator object


cdef int _check_shape(TensorSlot* s, str name, const int64_t* shape, int ndim,
                      str ref_name) except -1:
    """``s`` has exactly ``shape`` (derived from ``ref_name``)."""
    cdef int i
    check_ndim(s, name, ndim)
    for i in range(ndim):
        if s.dl.shape[i] != shape[i]:
            check_dim(s, name, i, shape[i], f"{_tuple(shape, ndim)} from {ref_name}")
    return 0


cdef int _check_lse(TensorSlot* s, str name, TensorSlot* v, str v_name,
                    const int64_t* shape, int ndim) except -1:
    """float32 log-sum-exp of ``shape`` (the state's ``v`` shape without head_dim), on
    ``v``'s device. (Messages are formatted only on failure: this runs on every call.)"""
    check_cuda(s, name)
    check_same_device(s, name, v, v_name)
    check_dtype(s, name, DT_F32)
    _check_shape(s, name, shape, ndim, v_name)
    check_contiguous(s, name)
    check_aligned(s, name, 4)
    return 0


cdef int _check_heads(TensorSlot* v, str name, int64_t heads, int64_t head_dim) except -1:
    if heads > max_heads(head_dim):
        raise ValueError(f"{name}: {heads} heads of head_dim {head_dim} exceed one thread "
                         f"block (at most {max_heads(head_dim)} heads for head_dim "
                         f"{head_dim}), got {describe(v)}")
    return 0


cdef object _pack_outputs(Binding b, CallFrame* f, int iv, int is_, object v_merged,
                          object s_merged, TensorSlot* ref, str ref_name,
                          const int64_t* out_shape, object stream):
    """Pack (and check) or allocate the merged state's outputs in slots ``iv``/``is_``:
    ``v_merged`` of ``out_shape`` (3-D) in ``ref``'s dtype, ``s_merged`` float32 without
    the last dimension. Returns ``(v_merged, s_merged)``."""
    cdef int device = ref.dl.device.device_id
    cdef int i
    if v_merged is not None:
        b.tensor(f, iv, v_merged)
        check_cuda(&f.slots[iv], "v_merged")
        check_same_device(&f.slots[iv], "v_merged", ref, ref_name)
        check_same_dtype(&f.slots[iv], "v_merged", ref, ref_name)
        _check_shape(&f.slots[iv], "v_merged", out_shape, 3, ref_name)
        check_contiguous(&f.slots[iv], "v_merged")
        check_aligned(&f.slots[iv], "v_merged", V_ALIGN)
    if s_merged is not None:
        b.tensor(f, is_, s_merged)
        _check_lse(&f.slots[is_], "s_merged", ref, ref_name, out_shape, 2)
    # Given outputs must not overlap the inputs (slots before ``iv``) or each other; new
    # ones cannot, so this is all checked before anything is allocated.
    check_outputs_disjoint(&f.slots[iv] if v_merged is not None else NULL, "v_merged",
                           &f.slots[is_] if s_merged is not None else NULL, "s_merged",
                           f.slots, b.names, iv)
    if v_merged is None or s_merged is None:
        alloc_stream = work_stream(b, f, stream, device)
        if v_merged is None:
            v_merged = DeviceArray.empty(_tuple(out_shape, 3), "float16" if ref.dl.dtype.code == 2
                                         else "bfloat16", device, alloc_stream)
            b.tensor(f, iv, v_merged)
        if s_merged is None:
            s_merged = DeviceArray.empty(_tuple(out_shape, 2), "float32", device, alloc_stream)
            b.tensor(f, is_, s_merged)
    return v_merged, s_merged


cdef TensorSlot* _pack_two_states(Binding b, CallFrame* f, object v0, object s0, object v1,
                                  object s1) except NULL:
    """Slots 0-3 of merge_state and merge_state_in_place: two states, ``[seq_len,
    num_heads, head_dim]`` outputs and their log-sum-exps, checked (errors name them as
    the ABI table does, which is also how the Python functions name them)."""
    cdef str n0 = b.names[0], n1 = b.names[1]
    b.tensor(f, 0, v0)
    cdef TensorSlot* v = &f.slots[0]
    _check_v(v, n0, 3, "[seq_len, num_heads, head_dim]")
    _check_heads(v, n0, v.dl.shape[1], v.dl.shape[2])
    b.tensor(f, 1, s0)
    _check_lse(&f.slots[1], n1, v, n0, v.dl.shape, 2)
    b.tensor(f, 2, v1)
    _check_like(&f.slots[2], b.names[2], v, n0)
    b.tensor(f, 3, s1)
    _check_like(&f.slots[3], b.names[3], &f.slots[1], n1)
    return v


cdef int _launch(Binding b, CallFrame* f, int64_t rows_x_heads, object stream) except -1:
    cdef TVMFFIAny result
    if rows_x_heads == 0:
        return check_stream(stream)  # nothing to merge; the grid or the block would be empty
    return b.invoke(f, stream, &result)


def merge_state(v_a, s_a, v_b, s_b, v_merged=None, s_merged=None, stream=None):
    """Merge two attention states: the state of attention over keys ``A`` and ``B`` from
    those over ``A`` and over ``B``.

    ``v_a``, ``v_b``: ``[seq_len, num_heads, head_dim]``, float16 or bfloat16 (one dtype),
    head_dim 64/128/256/512. ``s_a``, ``s_b``: float32 ``[seq_len, num_heads]``, base-2
    log-sum-exp (module docstring). All contiguous, on one CUDA device. ``v_merged`` (like
    ``v_a``) and ``s_merged`` (float32 ``[seq_len, num_heads]``) are allocated as
    :class:`DeviceArray` when omitted; they must not overlap the inputs. Returns
    ``(v_merged, s_merged)``. Asynchronous.
    """
    cdef CallFrame f
    cdef TensorSlot* va
    cdef Binding b = MERGE_STATE
    frame_init(&f, 6)
    try:
        va = _pack_two_states(b, &f, v_a, s_a, v_b, s_b)
        out = _pack_outputs(b, &f, 4, 5, v_merged, s_merged, va, "v_a", va.dl.shape, stream)
        _launch(b, &f, va.dl.shape[0] * va.dl.shape[1], stream)
        return out
    finally:
        frame_release(&f)


def merge_state_in_place(v, s, v_other, s_other, mask=None, stream=None):
    """In place: ``(v, s)`` becomes the merge of ``(v, s)`` and ``(v_other, s_other)``.

    ``v``, ``v_other``: ``[seq_len, num_heads, head_dim]``, float16 or bfloat16 (one
    dtype), head_dim 64/128/256/512; ``s``, ``s_other``: float32 ``[seq_len, num_heads]``,
    base-2 log-sum-exp. ``mask``: optional bool or uint8 ``[seq_len]``; rows where it is
    0/False are left unchanged (useful under CUDA graphs). All contiguous, on one CUDA
    device; ``v``/``s`` must not overlap the other operands. Returns None. Asynchronous.
    """
    cdef CallFrame f
    cdef TensorSlot* vs
    cdef TensorSlot* m
    cdef int64_t seq
    cdef Binding b = MERGE_STATE_IN_PLACE
    frame_init(&f, 5)
    try:
        vs = _pack_two_states(b, &f, v, s, v_other, s_other)
        seq = vs.dl.shape[0]
        b.opt_tensor(&f, 4, mask)
        if mask is not None:
            m = &f.slots[4]
            check_cuda(m, "mask")
            check_same_device(m, "mask", vs, "v")
            check_dtype(m, "mask", DT_BOOL, DT_U8)  # the kernel reads one byte per row
            check_ndim(m, "mask", 1)
            check_dim(m, "mask", 0, seq, "seq_len, rows of v")
            check_contiguous(m, "mask")
        check_outputs_disjoint(&f.slots[0], "v", &f.slots[1], "s", &f.slots[2],
                               ("v_other", "s_other", "mask"), 2 if mask is None else 3)
        _launch(b, &f, seq * vs.dl.shape[1], stream)
        return None
    finally:
        frame_release(&f)


def merge_states(v, s, v_merged=None, s_merged=None, stream=None):
    """Merge ``num_states`` attention states per row into one.

    ``v``: ``[seq_len, num_states, num_heads, head_dim]``, float16 or bfloat16, head_dim
    64/128/256/512; ``s``: float32 ``[seq_len, num_states, num_heads]``, base-2
    log-sum-exp. Contiguous, one CUDA device. ``num_states == 0`` gives zeros and an lse of
    -5e4 (FlashInfer's minus infinity, ``math::inf``).
    ``v_merged`` (``[seq_len, num_heads, head_dim]``, v's dtype) and ``s_merged`` (float32
    ``[seq_len, num_heads]``) are allocated as :class:`DeviceArray` when omitted. Returns
    ``(v_merged, s_merged)``. Asynchronous.
    """
    cdef CallFrame f
    cdef TensorSlot* vs
    cdef int64_t seq, states, heads
    cdef int64_t merged[3]
    cdef Binding b = MERGE_STATES
    frame_init(&f, 4)
    try:
        b.tensor(&f, 0, v)
        vs = &f.slots[0]
        _check_v(vs, "v", 4, "[seq_len, num_states, num_heads, head_dim]")
        seq, states, heads = vs.dl.shape[0], vs.dl.shape[1], vs.dl.shape[2]
        if states < seq:
            _check_heads(vs, "v", heads, vs.dl.shape[3])
        elif heads > GRID_Y_LIMIT:
            # num_states >= seq_len: one block per (row, head), heads in gridDim.y.
            raise ValueError(f"v: at most {GRID_Y_LIMIT} heads when num_states >= seq_len "
                             f"(one thread block per row and head), got {describe(vs)}")
        b.tensor(&f, 1, s)
        _check_lse(&f.slots[1], "s", vs, "v", vs.dl.shape, 3)
        merged[0], merged[1], merged[2] = seq, heads, vs.dl.shape[3]
        out = _pack_outputs(b, &f, 2, 3, v_merged, s_merged, vs, "v", merged, stream)
        _launch(b, &f, seq * heads, stream)
        return out
    finally:
        frame_release(&f)
