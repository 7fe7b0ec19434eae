# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Row-wise top-k from FlashInfer's ``topk`` module (csrc/topk.cu, flashinfer 0.6.3).

    top_k                       the k largest entries of each row: values and int32 indices
    top_k_page_table_transform  top-k of each row's first ``lengths[i]`` scores, mapped
                                through a page table (sparse-attention page selection)
    top_k_ragged_transform      the same, indices plus a per-row offset (ragged KV layout)
    can_implement_filtered_topk whether the current device has the shared memory for the
                                FilteredTopK algorithm

Scores: float32, float16 or bfloat16, ``[rows, width]``, contiguous. The kernel picks an
algorithm per call (FilteredTopK for k <= 2048 on narrower rows, else a radix select that
may split a row over several thread blocks); the results are the same set either way.
The k results of a row come in no particular order (as upstream with ``sorted=False``).

The multi-block radix path synchronises the blocks of a row through ``row_states_buffer``:
one 3092-byte ``RadixRowState`` per group of blocks, zero before the call and left zero by
it. When the caller passes none, one zeroed buffer per (device, stream) is allocated on
first use and kept (``max(1 MiB, sm_count * 3092)`` bytes; stream-ordered, so calls on one
stream never race for it). A caller-supplied buffer must be zero-filled once before first
use and must not be used by two calls that may run at the same time.

Checked here, before the kernel is touched: dtypes, shapes, contiguity, alignment, k
against the row width, the 32-bit offsets the kernels use, and (asking the device, after
the argument checks) that a row fits the blocks that can be resident at once -- a wider row
would make the radix path's inter-block barrier wait forever. Not checked, because it lives
in device memory: ``0 <= lengths[i] <= width``, ``row_to_batch[i]`` a valid row of
``src_page_table``, and ``offsets[i] + width`` within int32.
"""

from libc.stdint cimport int64_t, uint32_t, uint64_t

from flashinfer_cy._abi.tvm_ffi cimport TVMFFIAny
from flashinfer_cy._core.binding cimport (Binding, CallFrame, frame_init, frame_release,
                                          set_int, work_stream)
from flashinfer_cy._core.pinned cimport capture_status
from flashinfer_cy._core.stream cimport check_stream
from flashinfer_cy._core.tensor cimport (
    TensorSlot, DT_F16, DT_BF16, DT_F32, DT_I32, DT_U8, dtype_key, dtype_name, check_cuda,
    check_dtype, check_same_dtype, check_ndim, check_dim, check_contiguous,
    check_same_device, check_aligned, check_disjoint, describe, as_bool)

from flashinfer_cy import errors as _errors
from flashinfer_cy._core import runtime as _runtime
from flashinfer_cy._core.array import DeviceArray

# ABI table: (module, symbol, arguments in order) -- csrc/flashinfer_topk_binding.cu
# ("!": written; the multi-block path also writes its row states)
#
# flashinfer 0.7.4 appends options to each export (csrc/topk.cu); its layouts pass the
# values that give 0.6.3's behaviour, the defaults of 0.7.4's flashinfer/topk.py:
#   sorted_output False   top_k(sorted=False): no device sort (this API offers no sorted=)
#   deterministic False   top_k / the transforms' default: 0.6.3's collect path
#   tie_break 0           TopKTieBreak.NONE, "legacy behavior" (topk.py; ParseTopKTieBreak)
#   dsa_graph_safe False  the default: the FilteredTopK/radix heuristics of 0.6.3 (True
#                         forces FilteredTopK with VEC_SIZE 1)
#   page_size 1           one score per page-table entry (page_bits 0), as 0.6.3
#   maybe_row_starts, maybe_page_table_row_starts, maybe_output_raw_indices  None: rows
#                         start at column 0 and no raw indices are written, as 0.6.3
# and the values output, optional in 0.7.4, is always passed here.
_TOPK_07 = "sorted_output:B=False deterministic:B=False tie_break:I=0 dsa_graph_safe:B=False"
_PT_07 = ("deterministic:B=False tie_break:I=0 page_size:I=1 dsa_graph_safe:B=False "
          "maybe_row_starts:T?=None maybe_page_table_row_starts:T?=None "
          "maybe_output_raw_indices:T?=None")
_RAGGED_07 = ("deterministic:B=False tie_break:I=0 dsa_graph_safe:B=False "
              "maybe_row_starts:T?=None")
RADIX_TOPK = Binding(
    "topk", "radix_topk",
    "input:T output_indices:T! output_values:T! maybe_row_states_buffer:T?! top_k:I",
    device="input", layouts={"0.7.4": (
        "input:T output_indices:T! maybe_output_values:T?!=output_values "
        "maybe_row_states_buffer:T?! top_k:I " + _TOPK_07)})
RADIX_TOPK_PAGE_TABLE_TRANSFORM = Binding(
    "topk", "radix_topk_page_table_transform",
    "input:T output_page_table:T! src_page_table:T maybe_row_to_batch:T? lengths:T "
    "maybe_row_states_buffer:T?! top_k:I", device="input", layouts={"0.7.4": (
        "input:T output_page_table:T! src_page_table:T maybe_row_to_batch:T? lengths:T "
        "maybe_row_states_buffer:T?! top_k:I " + _PT_07)})
RADIX_TOPK_RAGGED_TRANSFORM = Binding(
    "topk", "radix_topk_ragged_transform",
    "input:T output_indices:T! offsets:T lengths:T maybe_row_states_buffer:T?! top_k:I",
    device="input", layouts={"0.7.4": (
        "input:T output_indices:T! offsets:T lengths:T maybe_row_states_buffer:T?! top_k:I "
        + _RAGGED_07)})
CAN_IMPLEMENT_FILTERED_TOPK = Binding("topk", "can_implement_filtered_topk", "")

# sizeof(sampling::RadixRowState): histogram[3][256] + 4 uint32/int + 1 float (topk.cuh);
# 0.7.4 appends an 8-byte-aligned uint64 (sum_topk_fixed): 3104
RADIX_ROW_STATE_BYTES = 3092
_ROW_STATE_BYTES = {"0.6.3": 3092, "0.7.4": 3104}  # by the module's release
# Releases whose page-table transform reads a table of more rows than input rows
# without row_to_batch (0.7.4 checks for exactly one per row).
_PT_EXTRA_ROWS_OK = frozenset({"0.6.3"})
ROW_STATES_MIN_BYTES = 1 << 20  # what flashinfer-python allocates (1 MiB)
cdef int64_t BLOCK_THREADS = 1024     # RadixTopKMultiCTA's block
cdef int64_t FIXED_SMEM_BYTES = 2080  # its histogram + suffix sums + scalars, 16-byte rounded

cdef uint64_t UINT32_LIMIT = 1ULL << 32  # row * width and row * k are uint32_t products
cdef int64_t INT32_MAX = (1LL << 31) - 1

# (device, stream handle) -> zeroed DeviceArray, see the module docstring
_row_states = {}


cdef int64_t _gcd(int64_t a, int64_t b) noexcept:
    while b:
        a, b = b, a % b
    return a


cdef int64_t _as_k(object k, str name) except -1:
    if isinstance(k, bool) or not hasattr(type(k), "__index__"):
        raise TypeError(f"{name}: expected an int, got {type(k).__name__} {k!r}")
    v = k.__index__()
    if v < 1 or v > INT32_MAX:
        raise ValueError(f"{name}: expected 1 <= {name} <= 2**31 - 1, got {v}")
    return v


cdef int _check_scores(TensorSlot* s) except -1:
    """``input``: [rows, width] scores the kernels load in vectors of
    gcd(16 bytes / itemsize, width) elements from the row starts."""
    cdef int64_t rows, width, item, vec
    check_cuda(s, "input")
    cdef uint32_t key = dtype_key(s.dl.dtype)
    if key != DT_F32 and key != DT_F16 and key != DT_BF16:
        raise TypeError(f"input: expected dtype float32, float16 or bfloat16, got "
                        f"{dtype_name(key)}")
    check_ndim(s, "input", 2)
    check_contiguous(s, "input")
    rows, width = s.dl.shape[0], s.dl.shape[1]
    if width < 1:
        raise ValueError(f"input: rows must have at least one score (the kernel divides by "
                         f"the width), got {describe(s)}")
    if width > INT32_MAX or <uint64_t>(rows * width) >= UINT32_LIMIT:
        raise ValueError(f"input: the kernels address scores with 32-bit offsets (rows * "
                         f"width < 2**32, width < 2**31), got {describe(s)}")
    item = s.dl.dtype.bits // 8
    vec = _gcd(16 // item, width)
    check_aligned(s, "input", vec * item)
    return 0


cdef int _check_rows_i32(TensorSlot* s, str name, TensorSlot* x) except -1:
    """An int32 [rows] vector the kernel reads per row."""
    check_cuda(s, name)
    check_same_device(s, name, x, "input")
    check_dtype(s, name, DT_I32)
    check_ndim(s, name, 1)
    check_dim(s, name, 0, x.dl.shape[0], "rows of input")
    check_contiguous(s, name)
    check_aligned(s, name, 4)
    return 0


cdef int _check_row_states(TensorSlot* s, TensorSlot* x) except -1:
    check_cuda(s, "row_states_buffer")
    check_same_device(s, "row_states_buffer", x, "input")
    check_dtype(s, "row_states_buffer", DT_U8)
    check_ndim(s, "row_states_buffer", 1)
    check_contiguous(s, "row_states_buffer")
    check_aligned(s, "row_states_buffer", 4)  # atomics on its 32-bit counters
    check_disjoint(s, "row_states_buffer", x, "input")
    return 0


cdef int64_t _row_state_groups(TensorSlot* x) except -1:
    """Row states (groups of blocks) this call's radix path uses (0: one block per row,
    none); and the device check: a row split over more blocks than SMs would never pass the barrier.
    Mirrors RadixTopKMultiCTA's sizing (topk.cuh)."""
    cdef int device = x.dl.device.device_id
    cdef int64_t item = x.dl.dtype.bits // 8
    cdef int64_t rows = x.dl.shape[0], width = x.dl.shape[1]
    cdef int64_t vec = _gcd(16 // item, width)
    cdef int64_t sms = _runtime.device_multiprocessor_count(device)
    cdef int64_t smem = _runtime.device_max_shared_memory_per_block_optin(device)
    cdef int64_t chunk = (smem - FIXED_SMEM_BYTES) // item  # OrderedType is itemsize wide
    chunk = max(chunk - chunk % vec, vec * BLOCK_THREADS)
    cdef int64_t ctas = (width + chunk - 1) // chunk
    if ctas > sms:
        raise ValueError(f"input: rows of {width} scores need {ctas} co-resident thread "
                         f"blocks of {chunk} each on CUDA device {device}, which has {sms} "
                         f"SMs (at most {sms * chunk} {dtype_name(dtype_key(x.dl.dtype))} "
                         f"scores per row)")
    if ctas == 1:
        return 0
    return max(1, min(sms // ctas, rows))


cdef int _check_states_size(TensorSlot* s, int64_t groups, int64_t state_bytes) except -1:
    if s.dl.shape[0] < groups * state_bytes:
        raise ValueError(f"row_states_buffer: this call needs at least {groups * state_bytes} "
                         f"bytes ({state_bytes} per group of blocks), got {s.dl.shape[0]}")
    return 0


cdef int _pack_row_states(Binding b, CallFrame* f, int i, object row_states_buffer,
                          object stream) except -1:
    """Slot ``i``: the caller's row states (checked by _pack_scores_and_states, here their
    size) or the cached zeroed buffer of the call's (device, stream). Asks the device, so
    it runs after every argument check."""
    cdef TensorSlot* x = &f.slots[0]
    cdef int64_t groups = _row_state_groups(x)
    cdef int device = x.dl.device.device_id
    if row_states_buffer is not None:
        _check_states_size(&f.slots[i], groups, RADIX_ROW_STATE_BYTES)  # before loading
        b.function()  # the module's release sets the state's size (0.7.4: 3104 bytes)
        _check_states_size(&f.slots[i], groups,
                           _ROW_STATE_BYTES.get(b.release, RADIX_ROW_STATE_BYTES))
        return 0
    handle = work_stream(b, f, stream, device)
    key = (device, handle)
    buf = _row_states.get(key)
    if buf is None:
        if capture_status(<void*><size_t>handle, device) != 0:
            raise _errors.StreamCaptureError(
                "top-k's row-states buffer for this stream is allocated on its first call, "
                "which cannot happen during CUDA graph capture: call once before capturing, "
                "or pass row_states_buffer")
        nbytes = max(ROW_STATES_MIN_BYTES, _runtime.device_multiprocessor_count(device)
                     * max(_ROW_STATE_BYTES.values()))
        # setdefault: a thread that lost a race uses the winner's buffer, never a dropped
        # one; the cache keeps it alive (the slot holds no reference).
        buf = _row_states.setdefault(key, DeviceArray.zeros((nbytes,), "uint8", device,
                                                            handle))
    b.tensor_as(f, i, buf, "row_states_buffer")
    return 0


cdef int _pack_scores_and_states(Binding b, CallFrame* f, object input, int i_states,
                                 object row_states_buffer) except -1:
    """Slot 0 (``input``) and the caller's row states, if any; both checked."""
    b.tensor(f, 0, input)
    _check_scores(&f.slots[0])
    b.opt_tensor(f, i_states, None)
    if row_states_buffer is not None:
        b.tensor_as(f, i_states, row_states_buffer, "row_states_buffer")
        _check_row_states(&f.slots[i_states], &f.slots[0])
    return 0


cdef int _check_rows_times_k(TensorSlot* x, int64_t k) except -1:
    if <uint64_t>(x.dl.shape[0] * k) >= UINT32_LIMIT:
        raise ValueError(f"k: rows * k must be < 2**32 (32-bit output offsets), got "
                         f"{x.dl.shape[0]} * {k}")
    return 0


cdef object _output(Binding b, CallFrame* f, int i, object given, str name, uint32_t dtype,
                    int64_t k, int i_states):
    """Slot ``i``: the caller's [rows, k] output (checked; not overlapping the input or
    the caller's row states), or None, to be allocated once checking is done."""
    cdef TensorSlot* x = &f.slots[0]
    if given is None:
        return None
    b.tensor_as(f, i, given, name)
    check_cuda(&f.slots[i], name)
    check_same_device(&f.slots[i], name, x, "input")
    check_dtype(&f.slots[i], name, dtype)
    check_ndim(&f.slots[i], name, 2)
    check_dim(&f.slots[i], name, 0, x.dl.shape[0], "rows of input")
    check_dim(&f.slots[i], name, 1, k, "k")
    check_contiguous(&f.slots[i], name)
    check_aligned(&f.slots[i], name, f.slots[i].dl.dtype.bits // 8)
    check_disjoint(&f.slots[i], name, x, "input")
    if f.args[i_states].type_index != 0:  # the caller's row states
        check_disjoint(&f.slots[i], name, &f.slots[i_states], "row_states_buffer")
    return given


cdef object _allocate(Binding b, CallFrame* f, int i, object given, int64_t k, str dtype,
                      object stream):
    """The output of slot ``i``: ``given``, or a new [rows, k] DeviceArray on the call's
    stream (packed)."""
    cdef int device = f.slots[0].dl.device.device_id
    if given is not None:
        return given
    out = DeviceArray.empty((f.slots[0].dl.shape[0], k), dtype, device,
                            work_stream(b, f, stream, device))
    b.tensor(f, i, out)
    return out


cdef int _launch(Binding b, CallFrame* f, int64_t k, object stream) except -1:
    cdef TVMFFIAny result
    if f.slots[0].dl.shape[0] == 0:
        return check_stream(stream)  # nothing to select; the grid would be empty
    set_int(f, b.n - 1, k)  # top_k is the last argument of every export
    return b.invoke(f, stream, &result)


cdef object _finish_transform(Binding b, CallFrame* f, object out, int64_t k,
                              object row_states_buffer, object stream, tuple names):
    """The transforms' common tail: ``out`` (slot 1, int32 [rows, k]) checked against the
    index arrays in slots 2.. (``names``, as the caller names them), then row states,
    allocation, launch. Returns ``out``."""
    cdef int i, i_states = b.n - 2  # row states and top_k close every export
    _check_rows_times_k(&f.slots[0], k)
    if _output(b, f, 1, out, "out", DT_I32, k, i_states) is not None:
        for i in range(2, i_states):
            if f.args[i].type_index != 0:  # row_to_batch may be None
                check_disjoint(&f.slots[1], "out", &f.slots[i], names[i - 2])
    if f.slots[0].dl.shape[0] > 0:
        _pack_row_states(b, f, i_states, row_states_buffer, stream)
    out = _allocate(b, f, 1, out, k, "int32", stream)
    _launch(b, f, k, stream)
    return out


def top_k(input, k, sorted=False, *, values=None, indices=None, row_states_buffer=None,
          stream=None):
    """The ``k`` largest entries of each row of ``input`` and their column indices.

    ``input``: ``[rows, width]`` float32, float16 or bfloat16, contiguous, on a CUDA
    device; ``1 <= k <= width``. ``values`` (``[rows, k]``, input's dtype) and ``indices``
    (int32 ``[rows, k]``) are allocated as :class:`DeviceArray` when omitted. The k
    results of a row come in no particular order, and which of several entries equal to
    the k-th largest value are chosen is unspecified. ``sorted=True`` (each row sorted
    descending) is not offered: it needs a device sort this package does not ship.
    ``row_states_buffer``: see the module docstring. Returns ``(values, indices)``;
    unlike flashinfer-python the indices stay int32 (widening them would be another
    kernel). Asynchronous.
    """
    cdef CallFrame f
    cdef TensorSlot* x
    cdef int64_t kk = _as_k(k, "k")
    cdef Binding b = RADIX_TOPK
    if as_bool(sorted, "sorted", "False (True is not supported)"):
        raise ValueError("sorted: True is not supported (no device sort here); pass "
                         "sorted=False and sort the k values of each row yourself")
    frame_init(&f, 5)
    try:
        _pack_scores_and_states(b, &f, input, 3, row_states_buffer)
        x = &f.slots[0]
        if kk > x.dl.shape[1]:
            # The radix path would leave the entries past the row width unwritten.
            raise ValueError(f"k: expected 1 <= k <= width ({x.dl.shape[1]}), got {kk}")
        _check_rows_times_k(x, kk)
        _output(b, &f, 1, indices, "indices", DT_I32, kk, 3)
        _output(b, &f, 2, values, "values", dtype_key(x.dl.dtype), kk, 3)
        if indices is not None and values is not None:
            check_disjoint(&f.slots[1], "indices", &f.slots[2], "values")
        if x.dl.shape[0] > 0:
            _pack_row_states(b, &f, 3, row_states_buffer, stream)
        indices = _allocate(b, &f, 1, indices, kk, "int32", stream)
        values = _allocate(b, &f, 2, values, kk, dtype_name(dtype_key(x.dl.dtype)), stream)
        _launch(b, &f, kk, stream)
        return values, indices
    finally:
        frame_release(&f)


topk = top_k  # flashinfer-python's alias


cdef int _check_identity_table_rows(Binding b, TensorSlot* pt, TensorSlot* x) except -1:
    """Without row_to_batch, row i of input reads row i of the page table. 0.6.3 takes a
    table of more rows (the extra ones unread); 0.7.4's export checks for exactly one row
    per input row (topk_transform_checks.h), which would surface as a KernelRuntimeError:
    refused here first, naming the release. Loads the module (its release decides)."""
    if pt.dl.shape[0] < x.dl.shape[0]:
        raise ValueError(f"src_page_table: without row_to_batch, row i of input reads row i "
                         f"of the page table: expected at least {x.dl.shape[0]} rows, got "
                         f"{describe(pt)}")
    b.function()
    if b.release not in _PT_EXTRA_ROWS_OK:
        raise ValueError(f"src_page_table: without row_to_batch, flashinfer {b.release}'s "
                         f"top_k_page_table_transform takes exactly one page-table row per "
                         f"input row: expected {x.dl.shape[0]} rows, got {describe(pt)} "
                         f"(pass src_page_table[:{x.dl.shape[0]}], or row_to_batch)")
    return 0


def top_k_page_table_transform(input, src_page_table, lengths, k, row_to_batch=None, *,
                               out=None, row_states_buffer=None, stream=None):
    """Top-k of each row's first ``lengths[i]`` scores, mapped through a page table:
    ``out[i, j] = src_page_table[b, c_j]`` for the selected columns ``c_j``, where
    ``b = row_to_batch[i]`` (``i`` when omitted); a row with ``lengths[i] <= k`` gets
    ``src_page_table[b, :lengths[i]]`` followed by ``-1``.

    ``input``: ``[rows, max_len]`` float32/float16/bfloat16, contiguous. ``src_page_table``:
    int32 ``[batch, n]``, contiguous (without ``row_to_batch``: ``batch >= rows``
    on 0.6.3, ``batch == rows`` on 0.7.4, whose export checks it).
    ``lengths``, ``row_to_batch``: int32 ``[rows]``. ``k >= 1`` (may exceed max_len).
    ``out``: int32 ``[rows, k]``, allocated as :class:`DeviceArray` when omitted. Values in
    device memory are the caller's guarantee (module docstring). Returns ``out``.
    Asynchronous.
    """
    cdef CallFrame f
    cdef TensorSlot* x
    cdef TensorSlot* pt
    cdef int64_t kk = _as_k(k, "k")
    cdef Binding b = RADIX_TOPK_PAGE_TABLE_TRANSFORM
    frame_init(&f, 7)
    try:
        _pack_scores_and_states(b, &f, input, 5, row_states_buffer)
        x = &f.slots[0]
        b.tensor(&f, 2, src_page_table)
        pt = &f.slots[2]
        check_cuda(pt, "src_page_table")
        check_same_device(pt, "src_page_table", x, "input")
        check_dtype(pt, "src_page_table", DT_I32)
        check_ndim(pt, "src_page_table", 2)
        check_contiguous(pt, "src_page_table")
        check_aligned(pt, "src_page_table", 4)
        b.opt_tensor(&f, 3, row_to_batch)
        if row_to_batch is not None:
            _check_rows_i32(&f.slots[3], "row_to_batch", x)
        elif pt.dl.shape[0] != x.dl.shape[0]:
            _check_identity_table_rows(b, pt, x)
        b.tensor(&f, 4, lengths)
        _check_rows_i32(&f.slots[4], "lengths", x)
        return _finish_transform(b, &f, out, kk, row_states_buffer, stream,
                                 ("src_page_table", "row_to_batch", "lengths"))
    finally:
        frame_release(&f)


def top_k_ragged_transform(input, offsets, lengths, k, *, out=None, row_states_buffer=None,
                           stream=None):
    """Top-k of each row's first ``lengths[i]`` scores, as ``column + offsets[i]``; a row
    with ``lengths[i] <= k`` gets ``offsets[i] + arange(lengths[i])`` followed by ``-1``.

    ``input``: ``[rows, max_len]`` float32/float16/bfloat16, contiguous. ``offsets``,
    ``lengths``: int32 ``[rows]``. ``k >= 1`` (may exceed max_len). ``out``: int32
    ``[rows, k]``, allocated as :class:`DeviceArray` when omitted. Values in device memory
    are the caller's guarantee (module docstring). Returns ``out``. Asynchronous.
    """
    cdef CallFrame f
    cdef TensorSlot* x
    cdef int64_t kk = _as_k(k, "k")
    cdef Binding b = RADIX_TOPK_RAGGED_TRANSFORM
    frame_init(&f, 6)
    try:
        _pack_scores_and_states(b, &f, input, 4, row_states_buffer)
        x = &f.slots[0]
        b.tensor(&f, 2, offsets)
        _check_rows_i32(&f.slots[2], "offsets", x)
        b.tensor(&f, 3, lengths)
        _check_rows_i32(&f.slots[3], "lengths", x)
        return _finish_transform(b, &f, out, kk, row_states_buffer, stream,
                                 ("offsets", "lengths"))
    finally:
        frame_release(&f)


def can_implement_filtered_topk():
    """Whether the calling thread's current CUDA device has the 128 KiB of shared memory
    per SM that the FilteredTopK algorithm needs (else the kernels use radix select).
    Host-side; loads the module."""
    return CAN_IMPLEMENT_FILTERED_TOPK()
