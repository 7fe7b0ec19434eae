# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Sampling family from FlashInfer's ``sampling`` module (csrc/sampling.cu, renorm.cu,
flashinfer 0.6.3). Names, argument order and defaults follow ``flashinfer.sampling`` of
flashinfer-python 0.6.3, so code can switch:

    softmax                          probs = softmax(logits / temperature)
    sampling_from_probs / _logits    one token per row (logits: Gumbel-max)
    top_p / top_k / min_p_sampling_from_probs, top_k_top_p_sampling_from_probs / _logits
                                     rejection sampling without sorting
    top_p_renorm_probs, top_k_renorm_probs, top_k_mask_logits
    chain_speculative_sampling       accept/reject a chain of draft tokens

Checked here, before any kernel or CUDA call: float32 (renorm/mask: also float16/bfloat16)
``[batch, vocab]`` row-major contiguous on one CUDA device (the kernels index
``row * vocab``), the data pointer aligned to the ``gcd(16 bytes, vocab)`` vectors the
kernels load, fewer than 2**32 elements (32-bit offsets), per-request parameters (Python
numbers, or 1-D device tensors of the dtype and length the kernel reads), ``indices``
int32/int64, outputs, seeds, bools. Not checked, because they live in device memory and
reading them would be a hidden synchronisation: the *values* of ``indices`` (each must be a
row of ``probs``), of per-request tensors (top_k >= 1, 0 < top_p <= 1, 0 <= min_p <= 1,
temperature > 0) and of ``draft_token_ids`` (each < vocab). A violated guarantee is an
out-of-bounds read on the device or a meaningless sample.

Randomness: each kernel takes ``philox_seed`` and ``philox_offset`` as host scalars (see
:mod:`flashinfer_cy.kernels.sampling_rng` for how they are drawn from a generator). A CUDA
graph, or a prepared launch, therefore replays the *same* draws on every replay unless the
scalars are updated per launch. FlashInfer 0.7.x's kernels also take them as int64/uint64
device tensors (``[1]`` or ``[batch]``), read when the kernel runs: a captured graph draws
anew on each replay when the tensors are advanced on the device between replays.

Releases: where 0.7.x changed an export beyond a layout (the samplers' ``valid`` output,
the seed/offset tensors, top_p_renorm_probs' workspace), the export has two table lines,
the tables' (0.6.3) and 0.7.4's; an :class:`_Export` picks the one of the loaded module's
release once, on the first call, after the arguments are checked (a call packs the
resolved line's list, and before the first call the tables' one, packing again once if the
module turns out to be of the other release).
"""

import numbers
import operator

from libc.stdint cimport int64_t, uint32_t, uint64_t, uintptr_t

from flashinfer_cy._abi.tvm_ffi cimport TVMFFIAny, kTVMFFIDLTensorPtr
from cpython.ref cimport PyObject, Py_INCREF, Py_DECREF

from flashinfer_cy._core.binding cimport (Binding, CallFrame, frame_init, frame_release,
                                          recording, set_bool, set_float, set_int)
from flashinfer_cy._core.array cimport new_device_array, scratch_buffer, stream_state
from flashinfer_cy._core.pinned cimport capture_status
from flashinfer_cy._core.tensor cimport (
    TensorSlot, DT_F32, DT_F16, DT_BF16, DT_I32, DT_I64, DT_U8, DT_BOOL, dtype_key,
    dtype_of_key, dtype_name, check_cuda, check_dtype, check_ndim, check_dim, check_contiguous,
    check_same_device, check_same_dtype, check_same_shape, check_aligned, check_writable,
    describe, finite_float, as_bool, to_dltensor, release_slot)
from flashinfer_cy.kernels.attention cimport pdl_default, pdl_flag, run_stream

from flashinfer_cy import errors as _errors
from flashinfer_cy._core import runtime as _runtime
from flashinfer_cy._core.array import DeviceArray
from flashinfer_cy._core.tensor import TensorDesc
from flashinfer_cy.abi.match import abi_version as _abi_version
from flashinfer_cy.kernels.sampling_rng import (SamplingGenerator, as_int64_slot, as_u64,
                                                check_generator, default_generator,
                                                seed_and_offset)

# ABI table: (module, symbol, arguments in order) -- csrc/flashinfer_sampling_binding.cu
# ("!": written). philox_seed / philox_offset are uint64_t in C++: the int64 slot carries
# their 64-bit pattern (TVM-FFI static_casts it back).
# A prepared launch (flashinfer_cy.prepare) may move the generator on between launches:
# every 64-bit value is a valid seed or offset.
_PHILOX = ("philox_seed", "philox_offset")
# flashinfer 0.7.4's lines (written_for="0.7.4"): the samplers write `valid` after `output`,
# and take the seed and offset as an optional device tensor beside each scalar. A prepared
# launch's set(philox_seed=, philox_offset=) reaches seed_val / offset_val (aliases).
_074 = "0.7.4"
_SEEDS_074 = "maybe_seed_arr:T? seed_val:I maybe_offset_arr:T? offset_val:I"
_PHILOX_074 = ("seed_val", "offset_val")
_ALIASES_074 = {"philox_seed": "seed_val", "philox_offset": "offset_val"}

SOFTMAX = Binding(
    "sampling", "softmax",
    "workspace_buffer:T! logits:T output:T! maybe_temperature_arr:T? temperature_val:F "
    "enable_pdl:B", device="logits")
SAMPLING_FROM_PROBS = Binding(
    "sampling", "sampling_from_probs",
    "probs:T output:T! maybe_indices:T? deterministic:B philox_seed:I philox_offset:I", per_launch=_PHILOX)
SAMPLING_FROM_PROBS_074 = Binding(
    "sampling", "sampling_from_probs",
    "probs:T output:T! valid:T! maybe_indices:T? deterministic:B " + _SEEDS_074,
    per_launch=_PHILOX_074, aliases=_ALIASES_074, written_for=_074)
SAMPLING_FROM_LOGITS = Binding(
    "sampling", "sampling_from_logits",
    "logits:T output:T! maybe_indices:T? deterministic:B philox_seed:I philox_offset:I", per_launch=_PHILOX)
SAMPLING_FROM_LOGITS_074 = Binding(
    "sampling", "sampling_from_logits",
    "logits:T output:T! maybe_indices:T? deterministic:B " + _SEEDS_074,
    per_launch=_PHILOX_074, aliases=_ALIASES_074, written_for=_074)
TOP_P_SAMPLING_FROM_PROBS = Binding(
    "sampling", "top_p_sampling_from_probs",
    "probs:T output:T! maybe_indices:T? maybe_top_p_arr:T? top_p_val:F deterministic:B "
    "philox_seed:I philox_offset:I", per_launch=_PHILOX)
TOP_P_SAMPLING_FROM_PROBS_074 = Binding(
    "sampling", "top_p_sampling_from_probs",
    "probs:T output:T! valid:T! maybe_indices:T? maybe_top_p_arr:T? top_p_val:F "
    "deterministic:B " + _SEEDS_074,
    per_launch=_PHILOX_074, aliases=_ALIASES_074, written_for=_074)
TOP_K_SAMPLING_FROM_PROBS = Binding(
    "sampling", "top_k_sampling_from_probs",
    "probs:T output:T! maybe_indices:T? maybe_top_k_arr:T? top_k_val:I deterministic:B "
    "philox_seed:I philox_offset:I", per_launch=_PHILOX)
TOP_K_SAMPLING_FROM_PROBS_074 = Binding(
    "sampling", "top_k_sampling_from_probs",
    "probs:T output:T! valid:T! maybe_indices:T? maybe_top_k_arr:T? top_k_val:I "
    "deterministic:B " + _SEEDS_074,
    per_launch=_PHILOX_074, aliases=_ALIASES_074, written_for=_074)
MIN_P_SAMPLING_FROM_PROBS = Binding(
    "sampling", "min_p_sampling_from_probs",
    "probs:T output:T! maybe_indices:T? maybe_min_p_arr:T? min_p_val:F deterministic:B "
    "philox_seed:I philox_offset:I", per_launch=_PHILOX)
MIN_P_SAMPLING_FROM_PROBS_074 = Binding(
    "sampling", "min_p_sampling_from_probs",
    "probs:T output:T! valid:T! maybe_indices:T? maybe_min_p_arr:T? min_p_val:F "
    "deterministic:B " + _SEEDS_074,
    per_launch=_PHILOX_074, aliases=_ALIASES_074, written_for=_074)
TOP_K_TOP_P_SAMPLING_FROM_PROBS = Binding(
    "sampling", "top_k_top_p_sampling_from_probs",
    "probs:T output:T! maybe_indices:T? maybe_top_k_arr:T? top_k_val:F maybe_top_p_arr:T? "
    "top_p_val:F deterministic:B philox_seed:I philox_offset:I", per_launch=_PHILOX)
TOP_K_TOP_P_SAMPLING_FROM_PROBS_074 = Binding(
    "sampling", "top_k_top_p_sampling_from_probs",
    "probs:T output:T! valid:T! maybe_indices:T? maybe_top_k_arr:T? top_k_val:F "
    "maybe_top_p_arr:T? top_p_val:F deterministic:B " + _SEEDS_074,
    per_launch=_PHILOX_074, aliases=_ALIASES_074, written_for=_074)
TOP_P_RENORM_PROBS = Binding(
    "sampling", "top_p_renorm_probs",
    "probs:T renorm_probs:T! maybe_top_p_arr:T? top_p_val:F")
# 0.7.x: AIR top-p (radix) with its scratch, for vocab >= 2048 (renorm.cu)
TOP_P_RENORM_PROBS_074 = Binding(
    "sampling", "top_p_renorm_probs",
    "probs:T renorm_probs:T! maybe_top_p_arr:T? top_p_val:F is_deterministic:B workspace:T!",
    written_for=_074)
_TOP_K_FILTER = "maybe_top_k_arr:T? top_k_val:I row_states_buffer:T!"
# 0.7.x adds is_deterministic before the row states; its Python API defaults it to False,
# the 0.6.3 kernel's behaviour (flashinfer/sampling.py top_k_renorm_probs).
_TOP_K_FILTER_07 = "maybe_top_k_arr:T? top_k_val:I is_deterministic:B=False row_states_buffer:T!"
TOP_K_RENORM_PROBS = Binding(
    "sampling", "top_k_renorm_probs", "probs:T renorm_probs:T! " + _TOP_K_FILTER,
    layouts={"0.7.4": "probs:T renorm_probs:T! " + _TOP_K_FILTER_07})
TOP_K_MASK_LOGITS = Binding(
    "sampling", "top_k_mask_logits",
    "logits:T mask_logits:T! maybe_top_k_arr:T? top_k_val:I row_states_buffer:T!")
_CHAIN_ARGS = ("draft_probs:T draft_token_ids:T target_probs:T output_token_ids:T! "
               "output_accepted_token_num:T! output_emitted_draft_token_num:T! deterministic:B ")
CHAIN_SPECULATIVE_SAMPLING = Binding(
    "sampling", "chain_speculative_sampling",
    _CHAIN_ARGS + "philox_seed:I philox_offset:I", per_launch=_PHILOX)
CHAIN_SPECULATIVE_SAMPLING_074 = Binding(
    "sampling", "chain_speculative_sampling", _CHAIN_ARGS + _SEEDS_074,
    per_launch=_PHILOX_074, aliases=_ALIASES_074, written_for=_074)


cdef class _Export:
    """An export a later release changed beyond a layout: the tables' line and that
    release's line. ``resolve()`` picks the loaded module's once (it loads the module);
    ``guess()`` is the resolved line, or the tables' before the first call."""
    cdef readonly Binding base, later
    cdef readonly str release   # the module's release, once resolved
    cdef Binding current
    cdef int valid_shift        # 1 where the later line has `valid` after `output`

    def __init__(self, Binding base, Binding later):
        self.base, self.later = base, later
        self.valid_shift = 1 if "valid" in later.names else 0

    cdef inline Binding guess(self):
        return self.current if self.current is not None else self.base

    cdef Binding resolve(self):
        if self.current is None:
            version = _runtime.load_module(self.base.uri).flashinfer_version
            self.release = _abi_version(version) if version is not None else None
            # any other release takes the tables' line, whose first call refuses it
            self.current = self.later if self.release == self.later.written_for else self.base
        return self.current

    cdef inline int shift(self, Binding b) noexcept:
        """How far the arguments after ``output`` moved in line ``b`` (``valid``)."""
        return self.valid_shift if b is self.later else 0

    cdef inline bint seed_tensors(self, Binding b) noexcept:
        """Line ``b`` takes maybe_seed_arr/seed_val/maybe_offset_arr/offset_val last."""
        return b is self.later


cdef _Export _SAMPLE_PROBS = _Export(SAMPLING_FROM_PROBS, SAMPLING_FROM_PROBS_074)
cdef _Export _SAMPLE_LOGITS = _Export(SAMPLING_FROM_LOGITS, SAMPLING_FROM_LOGITS_074)
cdef _Export _TOP_P = _Export(TOP_P_SAMPLING_FROM_PROBS, TOP_P_SAMPLING_FROM_PROBS_074)
cdef _Export _TOP_K = _Export(TOP_K_SAMPLING_FROM_PROBS, TOP_K_SAMPLING_FROM_PROBS_074)
cdef _Export _MIN_P = _Export(MIN_P_SAMPLING_FROM_PROBS, MIN_P_SAMPLING_FROM_PROBS_074)
cdef _Export _TOP_K_TOP_P = _Export(TOP_K_TOP_P_SAMPLING_FROM_PROBS, TOP_K_TOP_P_SAMPLING_FROM_PROBS_074)
cdef _Export _TOP_P_RENORM = _Export(TOP_P_RENORM_PROBS, TOP_P_RENORM_PROBS_074)
cdef _Export _CHAIN = _Export(CHAIN_SPECULATIVE_SAMPLING, CHAIN_SPECULATIVE_SAMPLING_074)
_EXPORTS = (_SAMPLE_PROBS, _SAMPLE_LOGITS, _TOP_P, _TOP_K, _MIN_P, _TOP_K_TOP_P, _TOP_P_RENORM,
            _CHAIN)


def _forget_releases():
    """Tests: resolve every export's line again on its next call (a table Binding keeps
    its loaded Function for the process; this only clears the line choice)."""
    for e in _EXPORTS:
        (<_Export>e).current = None
        (<_Export>e).release = None


cdef int64_t UINT32_LIMIT = 1 << 32   # the kernels form row * vocab + column in uint32
cdef int64_t GRID_LIMIT = (1 << 31) - 1  # one thread block per output row (gridDim.x)
# upstream's cached buffers (flashinfer/sampling.py): 1 MiB each
SOFTMAX_WORKSPACE_BYTES = 1024 * 1024
ROW_STATES_BYTES = 1024 * 1024  # RadixRowState (3092 bytes) per SM, "enough for any GPU"
# OnlineSoftmax (sampling.cuh) splits the vocabulary, with partial results in the
# workspace, for batch <= 128 and vocab >= 24576: 8 bytes per (row, 8192-wide slice).
cdef int64_t SOFTMAX_SPLIT_MAX_ROWS = 128
cdef int64_t SOFTMAX_SPLIT_MIN_VOCAB = 24576
cdef int64_t SOFTMAX_SLICE = 8192

# Per-request parameters: a Python number for all rows, or a 1-D device tensor.
cdef enum ParamKind:
    P_TOP_P = 0        # 0 < p <= 1
    P_MIN_P = 1        # 0 <= p <= 1
    P_TOP_K = 2        # an int, 1 <= k < 2**31 (k >= vocab: no top-k filtering)
    P_TEMPERATURE = 3  # finite, > 0

cdef uint32_t DT_U64 = (1 << 16) | (64 << 8) | 1  # kDLUInt, 64 bits

# How a call's seed and offset come (_seed_kind)
cdef enum SeedKind:
    SEED_DRAWN = 0     # neither given: drawn from the generator
    SEED_INTS = 1      # both Python ints
    SEED_TENSORS = 2   # both device tensors (flashinfer 0.7.x)

# What _pack_later checks
cdef enum LaterKind:
    L_VALID = 0        # bool [batch] output
    L_SEED = 1         # int64/uint64 [1] or [batch]



# ----------------------------------------------------------------------------- checks

cdef int _check_float_dtype(TensorSlot* s, str name, bint halves) except -1:
    cdef uint32_t k = dtype_key(s.dl.dtype)
    if halves and (k == DT_F16 or k == DT_BF16):
        return 0
    if k != DT_F32:
        want = "float32, float16 or bfloat16" if halves else "float32"
        raise TypeError(f"{name}: expected dtype {want}, got {dtype_name(k)}")
    return 0


cdef int _check_matrix(TensorSlot* s, str name, int ndim, bint halves) except -1:
    """A [..., vocab] tensor the kernels read as consecutive rows of ``vocab`` elements, in
    vectors of gcd(16 / itemsize, vocab) elements from each row start."""
    cdef int i
    cdef int64_t vocab, n = 1, vec, item
    check_cuda(s, name)
    _check_float_dtype(s, name, halves)
    check_ndim(s, name, ndim)
    check_contiguous(s, name)
    vocab = s.dl.shape[ndim - 1]
    if vocab <= 0:
        raise ValueError(f"{name}: the vocabulary (last) dimension must be > 0, got "
                         f"{describe(s)}")
    for i in range(ndim):
        n *= s.dl.shape[i]
    if n >= UINT32_LIMIT:
        raise ValueError(f"{name}: the kernels address elements with 32-bit offsets; "
                         f"{n} elements (must be < 2**32), got {describe(s)}")
    item = s.dl.dtype.bits // 8
    vec = 16 // item
    while vocab % vec:
        vec //= 2
    if (<uintptr_t>s.dl.data) % (vec * item):
        raise ValueError(f"{name}: data pointer {<uintptr_t>s.dl.data:#x} must be aligned to "
                         f"{vec * item} bytes for vocab size {vocab}")
    return 0


cdef int _pack_like(Binding b, CallFrame* f, int i, object obj, str name, TensorSlot* ref,
                    str ref_name) except -1:
    """An output of ``ref``'s shape and dtype (softmax, renorm, mask)."""
    b.tensor_as(f, i, obj, name)
    cdef TensorSlot* s = &f.slots[i]
    check_same_device(s, name, ref, ref_name)
    check_same_dtype(s, name, ref, ref_name)
    check_same_shape(s, name, ref, ref_name)
    _check_matrix(s, name, ref.dl.ndim, True)
    return 0


cdef int _pack_ids(Binding b, CallFrame* f, int i, object obj, str name, TensorSlot* ref,
                   str ref_name, int ndim, int64_t* shape, uint32_t dtype,
                   str why="") except -1:
    """An integer tensor of the given shape and dtype beside ``ref`` (sampled ids,
    counters, draft tokens); ``why`` says where the dtype comes from."""
    cdef int d
    b.tensor_as(f, i, obj, name)
    cdef TensorSlot* s = &f.slots[i]
    check_same_device(s, name, ref, ref_name)
    if dtype_key(s.dl.dtype) != dtype:
        raise TypeError(f"{name}: expected dtype {dtype_name(dtype)}{why}, got "
                        f"{dtype_name(dtype_key(s.dl.dtype))}")
    check_ndim(s, name, ndim)
    for d in range(ndim):
        if s.dl.shape[d] != shape[d]:  # the message is formatted on failure only
            check_dim(s, name, d, shape[d], f"from {ref_name}")
    check_contiguous(s, name)
    return 0


cdef int64_t _pack_indices(Binding b, CallFrame* f, int at, object indices, TensorSlot* probs,
                           str probs_name) except -1:
    """Slot ``at`` (maybe_indices) of the sampling exports; returns the batch (outputs)."""
    cdef TensorSlot* s
    cdef int64_t batch
    if indices is None:
        b.opt_tensor(f, at, None)
        batch = probs.dl.shape[0]
    else:
        b.tensor_as(f, at, indices, "indices")
        s = &f.slots[at]
        check_same_device(s, "indices", probs, probs_name)
        check_dtype(s, "indices", DT_I32, DT_I64)
        check_ndim(s, "indices", 1)
        check_contiguous(s, "indices")
        batch = s.dl.shape[0]
        if batch > 0 and probs.dl.shape[0] == 0:
            raise ValueError(f"indices: {batch} outputs index rows of {probs_name}, which "
                             f"has none")
    if batch > GRID_LIMIT:
        raise ValueError(f"{probs_name}: at most 2**31 - 1 outputs per call (one thread "
                         f"block each), got {batch}")
    return batch


cdef uint32_t _id_dtype(CallFrame* f, int at) noexcept:
    """The sampled ids' dtype: that of indices (slot ``at``; the kernel requires them
    equal), else int32."""
    if f.args[at].type_index == kTVMFFIDLTensorPtr:
        return dtype_key(f.slots[at].dl.dtype)
    return DT_I32


cdef str _id_dtype_rule(CallFrame* f, int at):
    if f.args[at].type_index == kTVMFFIDLTensorPtr:
        return " (the dtype of indices: the kernel writes ids of that type)"
    return ""


cdef dict _EXPECTED_PARAM = {P_TOP_P: "a finite number in (0, 1]",
                             P_MIN_P: "a number in [0, 1]",
                             P_TEMPERATURE: "a finite number > 0"}


cdef int _pack_param(Binding b, CallFrame* f, int i, object value, str name, int kind,
                     bint float_slot, TensorSlot* ref, str ref_name, uint32_t tensor_dtype,
                     int64_t batch) except -1:
    """Slots ``i`` (maybe_<x>_arr) and ``i + 1`` (<x>_val). A number: None and the value.
    A tensor: 1-D, one entry per row of ``ref`` (check_tensor_param's rule), of the dtype
    the kernel reads; the scalar 0 as upstream passes. ``batch`` >= 0: the kernel indexes
    the tensor by output position, not by row (top_k, min_p), so the outputs must not
    outnumber the rows."""
    cdef double v
    cdef int64_t k
    cdef TensorSlot* s
    if value is None or isinstance(value, bool):
        raise TypeError(f"{name}: expected a number or a 1-D device tensor, got {value!r}")
    # int and float first: numbers.Real's isinstance runs ABCMeta.__instancecheck__, a
    # Python-level call, for every scalar of every call
    if type(value) is int or type(value) is float or isinstance(value, numbers.Real):
        b.opt_tensor(f, i, None)
        if kind == P_TOP_K:
            try:
                k = value if type(value) is int else operator.index(value)
            except (TypeError, OverflowError):
                raise TypeError(f"{name}: expected an int, got {type(value).__name__} "
                                f"{value!r}") from None
            if k < 1 or k > GRID_LIMIT:
                raise ValueError(f"{name}: expected 1 <= {name} < 2**31, got {k}")
            if float_slot:
                set_float(f, i + 1, <double>k)
            else:
                set_int(f, i + 1, k)
            return 0
        expected = _EXPECTED_PARAM[kind]
        v = finite_float(value if type(value) is float else float(value), name, expected)
        if ((kind == P_TOP_P and not 0.0 < v <= 1.0) or (kind == P_MIN_P and not 0.0 <= v <= 1.0)
                or (kind == P_TEMPERATURE and v <= 0.0)):
            raise ValueError(f"{name}: expected {expected}, got {value!r}")
        set_float(f, i + 1, v)
        return 0
    b.tensor_as(f, i, value, name)
    s = &f.slots[i]
    check_same_device(s, name, ref, ref_name)
    check_dtype(s, name, tensor_dtype)
    check_ndim(s, name, 1)
    if s.dl.shape[0] != ref.dl.shape[0]:  # the message is formatted on failure only
        check_dim(s, name, 0, ref.dl.shape[0], f"one per row of {ref_name}")
    check_contiguous(s, name)
    if batch > ref.dl.shape[0]:
        raise ValueError(f"{name}: the kernel reads {name}[i] for output i, so with "
                         f"{batch} outputs (len(indices)) {ref_name} needs at least as many "
                         f"rows, got {ref.dl.shape[0]}")
    if float_slot or kind != P_TOP_K:
        set_float(f, i + 1, 0.0)
    else:
        set_int(f, i + 1, 0)
    return 0


cdef bint _flag(object value, str name) except -1:
    return as_bool(value, name, "True or False")


cdef int _no_check_nan(object check_nan) except -1:
    if as_bool(check_nan, "check_nan", "False"):
        raise ValueError("check_nan: True would read the probabilities back to the host (a "
                         "hidden synchronize); test them on your side if you need to")
    return 0


cdef bint _top_k_first(object filter_apply_order) except -1:
    if filter_apply_order == "top_k_first":
        return True
    if filter_apply_order == "joint":
        return False
    if not isinstance(filter_apply_order, str):
        raise TypeError(f"filter_apply_order: expected 'top_k_first' or 'joint', got "
                        f"{filter_apply_order!r}")
    raise ValueError(f"filter_apply_order: expected 'top_k_first' or 'joint', got "
                     f"{filter_apply_order!r}")


cdef int _check_buffer(TensorSlot* s, str name, TensorSlot* ref, str ref_name,
                       int64_t min_bytes) except -1:
    """A caller's scratch buffer: 1-D uint8, contiguous, 16-byte aligned, large enough."""
    check_same_device(s, name, ref, ref_name)
    check_dtype(s, name, DT_U8)
    check_ndim(s, name, 1)
    check_contiguous(s, name)
    if (<uintptr_t>s.dl.data) % 16:
        raise ValueError(f"{name}: data pointer {<uintptr_t>s.dl.data:#x} must be aligned "
                         f"to 16 bytes")
    if s.dl.shape[0] < min_bytes:
        raise ValueError(f"{name}: expected at least {min_bytes} bytes, got {describe(s)}")
    return 0


# ----------------------------------------------------------------------------- launching

cdef object _stream_of(Binding b, CallFrame* f, object stream):
    """The stream the call runs on, as a handle every later step (allocations, the other
    kernels of a composed call) uses explicitly."""
    cdef void* handle = NULL
    run_stream(b, f, stream, &handle)
    return <uintptr_t>handle


cdef object _cached_buffer(str what, int device, object stream, int64_t nbytes, bint zero):
    """The softmax workspace / top-k row states kept per device and stream
    (flashinfer_cy._core.array.stream_scratch; refused while capturing)."""
    return scratch_buffer(what, device, stream, nbytes, zero, "pass the buffer")


cdef object _new_vector(int64_t n, uint32_t dtype, int dev, object handle):
    """A new ``[n]`` device array of ``dtype`` (a packed key) ordered on ``handle``."""
    return new_device_array(1, &n, dtype_of_key(dtype), dev, <void*><uintptr_t>handle)


cdef object _new_like(TensorSlot* x, uint32_t dtype, int dev, object handle):
    """A new device array of ``x``'s shape and ``dtype`` (a packed key) on ``handle``."""
    return new_device_array(x.dl.ndim, x.dl.shape, dtype_of_key(dtype), dev,
                            <void*><uintptr_t>handle)


cdef class _Intermediate:
    """A composed sampler's intermediate on one stream: a float32 view of that stream's
    scratch buffer, for one shape."""
    cdef object view      # TensorDesc over the buffer (which it keeps alive)
    cdef int64_t rows, cols
    cdef bint busy        # a call is between its first and last launch on the stream


cdef enum:
    MAX_HELD = 2  # intermediates of one composed call: masked logits, probabilities


cdef struct Held:
    # The intermediates one composed call takes from its stream (_intermediate; owned
    # references, dropped by _release), and whether it must own them instead: asked once
    # per call (-1: not asked yet).
    int own
    int n
    PyObject* taken[MAX_HELD]


cdef object _intermediate(str what, int dev, object handle, TensorSlot* like, Held* held):
    """A ``like``-shaped float32 intermediate of a composed sampler (masked logits,
    probabilities), written by one of its kernels and read by the next.

    Eager calls take the stream's cached scratch (stream_scratch) instead of a
    cudaMallocAsync/cudaFreeAsync pair per intermediate and call: every call on a stream
    enqueues its kernels in that stream's order, so one buffer serves them all. A fresh
    allocation instead, owned by whoever keeps it, where the buffer would be shared out of
    that order: while prepare() records (the prepared launch owns its intermediates: it may
    be replayed inside a CUDA graph on another stream), while the stream captures a graph
    (the graph owns them), and while another thread's call on this stream is between its
    launches (the two calls' kernels would interleave). cudaStreamPerThread names another
    stream in every thread: its buffers are kept per thread (_StreamScratch)."""
    cdef uintptr_t h = handle
    cdef _Intermediate m
    cdef dict kept
    if held.own < 0:  # one capture query per call, not per intermediate
        held.own = recording() or capture_status(<void*>h, dev) != 0
    kept = stream_state(dev, h).kept
    m = kept.get(what)
    if held.own or (m is not None and m.busy):
        return _new_like(like, DT_F32, dev, handle)
    if held.n == MAX_HELD:
        raise AssertionError(f"{what}: a composed call takes at most {MAX_HELD} intermediates")
    if m is None or m.rows != like.dl.shape[0] or m.cols != like.dl.shape[1]:
        m = _Intermediate.__new__(_Intermediate)
        m.rows, m.cols = like.dl.shape[0], like.dl.shape[1]
        buf = scratch_buffer(what, dev, h, m.rows * m.cols * 4, False, "")
        m.view = TensorDesc(buf.ptr, (m.rows, m.cols), "float32", device=dev, owner=buf)
        kept[what] = m
    m.busy = True
    Py_INCREF(m)
    held.taken[held.n] = <PyObject*>m
    held.n += 1
    return m.view


cdef void _release(Held* held) noexcept:
    """The call has enqueued its last launch: later calls on the stream come after it."""
    cdef int i
    for i in range(held.n):
        (<_Intermediate>held.taken[i]).busy = False
        Py_DECREF(<object>held.taken[i])
    held.n = 0


cdef int _invoke(Binding b, CallFrame* f, object stream) except -1:
    cdef TVMFFIAny result
    return b.invoke(f, stream, &result)


cdef int _seed_kind(object seed, object offset) except -1:
    """How seed/offset come: both None (drawn), both ints (checked here), or both device
    tensors (checked by _pack_later). Upstream refuses a mix; one without the other is
    refused here (upstream would ignore it silently)."""
    cdef uint64_t s64, o64
    if seed is None and offset is None:
        return SEED_DRAWN
    if type(seed) is int and type(offset) is int:  # a decode loop's every step: no Python
        try:
            s64, o64 = seed, offset  # OverflowError when negative or >= 2**64
        except OverflowError:
            pass  # as_u64 below says which, and how
        else:
            return SEED_INTS
    if seed is None or offset is None:
        missing = "offset" if offset is None else "seed"
        raise ValueError(f"{missing}: seed and offset go together; pass both, or neither to "
                         f"draw them from the generator")
    cdef bint s_num = isinstance(seed, numbers.Number)
    if s_num != isinstance(offset, numbers.Number):
        raise TypeError(f"seed, offset: both ints or both device tensors (flashinfer 0.7.x's "
                        f"form), got {type(seed).__name__} and {type(offset).__name__}")
    if s_num:
        as_u64(seed, "seed")
        as_u64(offset, "offset")
        return SEED_INTS
    return SEED_TENSORS


cdef int _check_generator(object generator, int seeds) except -1:
    """The generator's kind, before the module is loaded (it is drawn from once the line is
    known, after the checks)."""
    if seeds == SEED_DRAWN:
        check_generator(generator)
    return 0


cdef int _check_later(TensorSlot* s, str name, int what, TensorSlot* ref, str ref_name,
                      int64_t batch) except -1:
    check_cuda(s, name)
    check_same_device(s, name, ref, ref_name)
    if what == L_VALID:
        if dtype_key(s.dl.dtype) != DT_BOOL:
            raise TypeError(f"{name}: expected dtype bool (one flag per output), got "
                            f"{dtype_name(dtype_key(s.dl.dtype))}")
        check_ndim(s, name, 1)
        check_dim(s, name, 0, batch, "one per output")
        check_contiguous(s, name)
        return 0
    if dtype_key(s.dl.dtype) != DT_I64 and dtype_key(s.dl.dtype) != DT_U64:
        raise TypeError(f"{name}: expected a device tensor of dtype int64 or uint64, got "
                        f"{dtype_name(dtype_key(s.dl.dtype))}")
    check_ndim(s, name, 1)
    if s.dl.shape[0] != 1 and s.dl.shape[0] != batch:
        raise ValueError(f"{name}: expected length 1 (all outputs) or {batch} (one per "
                         f"output), got {describe(s)}")
    check_contiguous(s, name)
    check_aligned(s, name, 8)
    return 0


cdef int _pack_later(Binding b, CallFrame* f, int i, object obj, str name, int what,
                     TensorSlot* ref, str ref_name, int64_t batch) except -1:
    """A tensor only flashinfer 0.7.x's line takes (``valid``, a seed/offset tensor),
    checked: packed into slot ``i`` of that line, or (``i < 0``, the tables' line before
    the module is known) checked aside; _refuse_later then refuses it on a 0.6.3 module."""
    cdef TensorSlot aside
    cdef TensorSlot* s = &aside
    aside.keep = NULL
    try:
        if i >= 0:
            b.tensor_as(f, i, obj, name)
            s = &f.slots[i]
        else:
            to_dltensor(obj, &aside, name)
            if what == L_VALID and aside.read_only:
                check_writable(&aside, name)
        return _check_later(s, name, what, ref, ref_name, batch)
    finally:
        release_slot(&aside)


cdef int _refuse_later(_Export e, Binding r, object valid, bint want_valid,
                       int seeds) except -1:
    """On a module whose line lacks them: what only flashinfer 0.7.x takes."""
    if r is e.later or (seeds != SEED_TENSORS and valid is None and not want_valid):
        return 0
    where = (f"this {r.symbol} module is flashinfer {e.release}" if e.release
             else f"the {r.symbol} module's release is unknown")
    if seeds == SEED_TENSORS:
        raise ValueError(f"seed, offset: device tensors need flashinfer 0.7.x's sampling "
                         f"module ({where}); pass ints")
    if valid is not None or want_valid:
        what = "valid" if valid is not None else "return_valid"
        raise ValueError(f"{what}: the per-output success flags are written by flashinfer "
                         f"0.7.x's sampling kernels ({where})")
    return 0


cdef int _set_seeds(_Export e, Binding b, CallFrame* f, int64_t increment,
                    object generator, int seeds, object seed, object offset) except -1:
    """The last arguments: philox_seed, philox_offset (0.6.3), or maybe_seed_arr,
    seed_val, maybe_offset_arr, offset_val (0.7.x: tensors already packed, or None and the
    scalars). A drawn offset follows the module's release (sampling_rng docstring)."""
    cdef int n = b.n
    cdef bint quad = e.seed_tensors(b)
    cdef uint64_t s64, o64
    if quad and seeds == SEED_TENSORS:
        set_int(f, n - 3, 0)  # the kernel reads the tensors; upstream passes 0
        set_int(f, n - 1, 0)
        return 0
    if seeds == SEED_INTS and type(seed) is int and type(offset) is int:
        # checked by _seed_kind: used as given, in C (the uint64 pattern); other integer
        # types go through seed_and_offset's as_u64
        s64, o64 = seed, offset
        if quad:
            b.opt_tensor(f, n - 4, None)
            b.opt_tensor(f, n - 2, None)
        set_int(f, n - 3 if quad else n - 2, <int64_t>s64)
        set_int(f, n - 1, <int64_t>o64)
        return 0
    s, o = seed_and_offset(increment, generator, seed, offset, quad)
    if quad:
        b.opt_tensor(f, n - 4, None)
        b.opt_tensor(f, n - 2, None)
    set_int(f, n - 3 if quad else n - 2, as_int64_slot(s))
    set_int(f, n - 1, as_int64_slot(o))
    return 0


cdef int _pack_seed_tensors(_Export e, Binding b, CallFrame* f, int seeds, object seed,
                            object offset, TensorSlot* ref, str ref_name,
                            int64_t batch) except -1:
    if seeds == SEED_TENSORS:
        quad = e.seed_tensors(b)
        _pack_later(b, f, b.n - 4 if quad else -1, seed, "seed", L_SEED, ref, ref_name,
                    batch)
        _pack_later(b, f, b.n - 2 if quad else -1, offset, "offset", L_SEED, ref, ref_name,
                    batch)
    return 0


cdef int _sampled_ids(Binding b, CallFrame* f, int at, object out, int64_t batch,
                      TensorSlot* probs, str probs_name) except -1:
    """Check ``out`` (slot 1) when given (``at``: the indices slot, which sets the dtype);
    the caller allocates it after the checks."""
    cdef int64_t shape[1]
    shape[0] = batch
    if out is not None:
        _pack_ids(b, f, 1, out, "out", probs, probs_name, 1, shape, _id_dtype(f, at),
                  _id_dtype_rule(f, at))
    return 0


cdef object _finish_sampling(_Export e, Binding b, CallFrame* f, object out, object valid,
                             bint want_valid, int64_t batch, int64_t increment, bint det,
                             object generator, int seeds, object seed, object offset,
                             object handle, object stream):
    """The common tail of every single-kernel sampling call, on the resolved line ``b``:
    deterministic, seeds, the outputs (allocated when omitted), the launch."""
    cdef int v = e.shift(b)
    cdef int dev = f.slots[0].dl.device.device_id
    set_bool(f, b.n - (5 if e.seed_tensors(b) else 3), det)
    _set_seeds(e, b, f, increment, generator, seeds, seed, offset)
    if out is None:
        out = _new_vector(batch, _id_dtype(f, 2 + v), dev, handle)
        b.tensor_as(f, 1, out, "out")
    if v and valid is None:  # the kernel writes it either way (upstream allocates it too)
        valid = _new_vector(batch, DT_BOOL, dev, handle)
        b.tensor_as(f, 2, valid, "valid")
    if batch > 0:
        _invoke(b, f, stream)
    return (out, valid) if want_valid else out


cdef object _sample_probs(_Export e, object probs, object param, str param_name, int kind,
                          object indices, object deterministic, object generator,
                          object check_nan, object seed, object offset, object return_valid,
                          object out, object valid, object stream, int64_t per_row_draws,
                          bint from_logits):
    """sampling_from_probs/_logits, top_p / top_k / min_p_sampling_from_probs: the same
    layout with (for the last three) one per-request parameter after maybe_indices."""
    cdef CallFrame f
    cdef int64_t batch
    cdef Binding r, b = e.guess()
    cdef int v = e.shift(b)
    cdef str pname = "logits" if from_logits else "probs"
    cdef bint want_valid = _flag(return_valid, "return_valid")
    cdef int seeds = _seed_kind(seed, offset)
    _no_check_nan(check_nan)
    _check_generator(generator, seeds)
    frame_init(&f, b.n)
    try:
        b.tensor_as(&f, 0, probs, pname)
        _check_matrix(&f.slots[0], pname, 2, False)
        batch = _pack_indices(b, &f, 2 + v, indices, &f.slots[0], pname)
        if param_name is not None:
            _pack_param(b, &f, 3 + v, param, param_name, kind, False, &f.slots[0], pname,
                        _id_dtype(&f, 2 + v) if kind == P_TOP_K else DT_F32,
                        batch if kind != P_TOP_P else -1)
        _sampled_ids(b, &f, 2 + v, out, batch, &f.slots[0], pname)
        if valid is not None:
            _pack_later(b, &f, 2 if v else -1, valid, "valid", L_VALID, &f.slots[0], pname,
                        batch)
        _pack_seed_tensors(e, b, &f, seeds, seed, offset, &f.slots[0], pname, batch)
        det = _flag(deterministic, "deterministic")
        handle = _stream_of(b, &f, stream)
        r = e.resolve()
        if r is b:
            _refuse_later(e, r, valid, want_valid, seeds)
            # upstream's increment: batch * vocab for logits (Gumbel noise per element)
            increment = batch * (f.slots[0].dl.shape[1] if from_logits else per_row_draws)
            return _finish_sampling(e, r, &f, out, valid, want_valid, batch, increment, det,
                                    generator, seeds, seed, offset, handle, stream)
    finally:
        frame_release(&f)
    # the first call found a module of the other release: pack its argument list
    return _sample_probs(e, probs, param, param_name, kind, indices, deterministic, generator,
                         check_nan, seed, offset, return_valid, out, valid, stream,
                         per_row_draws, from_logits)


# ----------------------------------------------------------------------------- softmax

cdef int _pack_softmax(CallFrame* f, object logits, object temperature, object out,
                       object workspace_buffer) except -1:
    """Slots 1, 3, 4 and (when given) 0 and 2 of softmax."""
    cdef Binding b = SOFTMAX
    cdef TensorSlot* x
    b.tensor_as(f, 1, logits, "logits")
    x = &f.slots[1]
    _check_matrix(x, "logits", 2, False)
    _pack_param(b, f, 3, 1.0 if temperature is None else temperature, "temperature",
                P_TEMPERATURE, True, x, "logits", DT_F32, -1)
    if out is not None:
        _pack_like(b, f, 2, out, "out", x, "logits")
    if workspace_buffer is not None:
        b.tensor_as(f, 0, workspace_buffer, "workspace_buffer")
        _check_buffer(&f.slots[0], "workspace_buffer", x, "logits",
                      _softmax_workspace_bytes(x.dl.shape[0], x.dl.shape[1]))
    return 0


cdef int64_t _softmax_workspace_bytes(int64_t rows, int64_t vocab) noexcept:
    if rows <= SOFTMAX_SPLIT_MAX_ROWS and vocab >= SOFTMAX_SPLIT_MIN_VOCAB:
        return rows * ((vocab + SOFTMAX_SLICE - 1) // SOFTMAX_SLICE) * 8
    return 0


cdef object _run_softmax(CallFrame* f, object out, int pdl, object handle,
                         Held* held=NULL):
    """Fill the rest (workspace, output, pdl) and launch on ``handle``; returns out.
    ``held``: a composed call's, whose output is an intermediate (_intermediate)."""
    cdef Binding b = SOFTMAX
    cdef TensorSlot* x = &f.slots[1]
    cdef int dev = x.dl.device.device_id
    if f.args[0].type_index != kTVMFFIDLTensorPtr:
        need = max(SOFTMAX_WORKSPACE_BYTES, _softmax_workspace_bytes(x.dl.shape[0],
                                                                     x.dl.shape[1]))
        b.tensor_as(f, 0, _cached_buffer("softmax workspace", dev, handle, need, False),
                    "workspace_buffer")
    if out is None:
        out = (_new_like(x, DT_F32, dev, handle) if held == NULL else
               _intermediate("sampling probabilities", dev, handle, x, held))
        b.tensor_as(f, 2, out, "out")
    set_bool(f, 5, pdl_default(dev) if pdl < 0 else pdl)
    if x.dl.shape[0] > 0:
        _invoke(b, f, handle)
    return out


def softmax(logits, temperature=None, enable_pdl=None, *, out=None, workspace_buffer=None,
            stream=None):
    """Online safe softmax with temperature: ``softmax(logits / temperature)`` per row.

    ``logits``: float32 ``[batch, vocab]``, contiguous, on a CUDA device. ``temperature``:
    a number > 0 for all rows (default 1.0), or a float32 ``[batch]`` device tensor (its
    values > 0: the caller's guarantee; 0.6.3's kernel turns a temperature of exactly 0
    into a uniform distribution, which is why a scalar 0 is refused). ``enable_pdl``:
    programmatic dependent launch (default: on for sm_90+). ``out``: float32
    ``[batch, vocab]`` (allocated when omitted). ``workspace_buffer``: uint8 scratch for the
    split-vocabulary path (default: 1 MiB cached per device and stream, as upstream's).
    A row of all ``-inf`` gives NaN. Returns ``out``. Asynchronous.
    """
    cdef CallFrame f
    cdef int pdl = pdl_flag(enable_pdl)
    frame_init(&f, 6)
    try:
        _pack_softmax(&f, logits, temperature, out, workspace_buffer)
        return _run_softmax(&f, out, pdl, _stream_of(SOFTMAX, &f, stream))
    finally:
        frame_release(&f)


# ----------------------------------------------------------------------------- sampling

def sampling_from_probs(probs, indices=None, deterministic=True, generator=None,
                        check_nan=False, seed=None, offset=None, return_valid=False, *,
                        out=None, valid=None, stream=None):
    """Sample one token per output from categorical distributions.

    ``probs``: float32 ``[rows, vocab]`` (rows need not sum to 1: the kernel samples in
    proportion), contiguous, on a CUDA device. ``indices``: optional int32/int64 ``[batch]``
    device tensor, output ``i`` sampled from row ``indices[i]`` (values are the caller's
    guarantee); the output then has its dtype, else int32 and ``batch = rows``.
    ``deterministic``: the kernel's deterministic scan (default True). ``seed`` and
    ``offset``: the Philox seed and offset (both, 0 <= v < 2**64); else drawn from
    ``generator`` (a :class:`SamplingGenerator` or a ``torch.Generator``-like object) or the
    process-wide default, advancing it by ``batch`` rounded up to 4 as upstream does (the
    kernel gets the advanced offset on a 0.6.3 module, the one before on 0.7.x, as each
    release's flashinfer-python). On a flashinfer 0.7.x module ``seed`` and ``offset`` may
    also be int64/uint64 device tensors of length 1 or ``batch``, read when the kernel runs
    (CUDA-graph safe: advance them on the device between replays); nothing is drawn then.
    ``check_nan``: only False (True needs a device-to-host read). ``out``: ``[batch]``
    ids, allocated when omitted. 0.7.x only: ``valid`` (bool ``[batch]``, allocated when
    omitted) receives per-output success flags; ``return_valid=True`` returns
    ``(out, valid)``. Returns ``out``. Asynchronous.
    """
    return _sample_probs(_SAMPLE_PROBS, probs, None, None, 0, indices, deterministic,
                         generator, check_nan, seed, offset, return_valid, out, valid, stream,
                         1, False)


def sampling_from_logits(logits, indices=None, deterministic=True, generator=None,
                         check_nan=False, seed=None, offset=None, *, out=None, stream=None):
    """Sample from ``softmax(logits)`` per output (Gumbel-max, one kernel). ``logits``:
    float32 ``[rows, vocab]``. The generator advances by ``batch * vocab`` (rounded up to
    4), as upstream's. Other arguments as :func:`sampling_from_probs` (no ``valid``: the
    kernel writes none)."""
    return _sample_probs(_SAMPLE_LOGITS, logits, None, None, 0, indices, deterministic,
                         generator, check_nan, seed, offset, False, out, None, stream, 1, True)


def top_p_sampling_from_probs(probs, top_p, indices=None, deterministic=True, generator=None,
                              check_nan=False, seed=None, offset=None, return_valid=False, *,
                              out=None, valid=None, stream=None):
    """Top-p (nucleus) sampling by rejection, without sorting. ``top_p``: a number in
    (0, 1] or a float32 ``[rows]`` device tensor (indexed by the row sampled from). The
    generator advances by ``batch * 32``. Other arguments as :func:`sampling_from_probs`."""
    return _sample_probs(_TOP_P, probs, top_p, "top_p", P_TOP_P, indices, deterministic,
                         generator, check_nan, seed, offset, return_valid, out, valid, stream,
                         32, False)


def top_k_sampling_from_probs(probs, top_k, indices=None, deterministic=True, generator=None,
                              check_nan=False, seed=None, offset=None, return_valid=False, *,
                              out=None, valid=None, stream=None):
    """Top-k sampling by rejection, without sorting. ``top_k``: an int >= 1 (``top_k >=
    vocab``: no filtering, as upstream) or a ``[rows]`` device tensor of the output's
    dtype (int32; int64 with int64 ``indices``), which 0.6.3's kernel indexes by *output*
    position: with ``indices``, ``len(indices) <= rows``. The generator advances by
    ``batch * 32``. Other arguments as :func:`sampling_from_probs`."""
    return _sample_probs(_TOP_K, probs, top_k, "top_k", P_TOP_K, indices, deterministic,
                         generator, check_nan, seed, offset, return_valid, out, valid, stream,
                         32, False)


def min_p_sampling_from_probs(probs, min_p, indices=None, deterministic=True, generator=None,
                              check_nan=False, seed=None, offset=None, return_valid=False, *,
                              out=None, valid=None, stream=None):
    """Min-p sampling: tokens with ``p >= min_p * max(p)``. ``min_p``: a number in [0, 1]
    or a float32 ``[rows]`` device tensor, indexed by *output* position as 0.6.3's kernel
    does (with ``indices``, ``len(indices) <= rows``). The generator advances by
    ``batch``. Other arguments as :func:`sampling_from_probs`."""
    return _sample_probs(_MIN_P, probs, min_p, "min_p", P_MIN_P, indices, deterministic,
                         generator, check_nan, seed, offset, return_valid, out, valid, stream,
                         1, False)


cdef int64_t _pack_last_stage(Binding b, int v, CallFrame* f, TensorSlot* probs, str pname,
                              bint joint, object top_k, object top_p, object indices,
                              object out) except -1:
    """The sampling stage of a composed call without slot 0 (the intermediate, filled
    later), ``valid`` and the tail: top_p_sampling_from_probs, or (``joint``)
    top_k_top_p_sampling_from_probs. ``v``: the line's shift for ``valid``. Returns the
    batch."""
    cdef int64_t batch = _pack_indices(b, f, 2 + v, indices, probs, pname)
    if joint:
        _pack_param(b, f, 3 + v, top_k, "top_k", P_TOP_K, True, probs, pname,
                    _id_dtype(f, 2 + v), -1)
    _pack_param(b, f, (5 if joint else 3) + v, top_p, "top_p", P_TOP_P, False, probs, pname,
                DT_F32, -1)
    _sampled_ids(b, f, 2 + v, out, batch, probs, pname)
    return batch


cdef int _pack_top_k_filter(Binding b, CallFrame* f, object x, str name, object top_k,
                            object row_states_buffer, object out, bint halves) except -1:
    """top_k_renorm_probs / top_k_mask_logits: slots 0, 2, 3 and (when given) 1 and 4."""
    b.tensor_as(f, 0, x, name)
    _check_matrix(&f.slots[0], name, 2, halves)
    _pack_param(b, f, 2, top_k, "top_k", P_TOP_K, False, &f.slots[0], name, DT_I32, -1)
    if out is not None:
        _pack_like(b, f, 1, out, "out", &f.slots[0], name)
    if row_states_buffer is not None:
        b.tensor_as(f, 4, row_states_buffer, "row_states_buffer")
        _check_buffer(&f.slots[4], "row_states_buffer", &f.slots[0], name, ROW_STATES_BYTES)
    return 0


cdef object _run_top_k_filter(Binding b, CallFrame* f, object out, object handle,
                              Held* held=NULL):
    """Fill the rest (row states, output) and launch; returns out. ``held``: as
    _run_softmax's."""
    cdef TensorSlot* x = &f.slots[0]
    cdef int dev = x.dl.device.device_id
    if f.args[4].type_index != kTVMFFIDLTensorPtr:
        # zero-filled once; each launch leaves it reusable (topk.cuh resets its counters)
        b.tensor_as(f, 4, _cached_buffer("top-k row states", dev, handle, ROW_STATES_BYTES,
                                         True), "row_states_buffer")
    if out is None:
        out = (_new_like(x, dtype_key(x.dl.dtype), dev, handle) if held == NULL else
               _intermediate("sampling top-k filtered", dev, handle, x, held))
        b.tensor_as(f, 1, out, "out")
    if x.dl.shape[0] > 0:
        _invoke(b, f, handle)
    return out


cdef object _sample_composed(object x, bint from_logits, object top_k, object top_p,
                             object indices, object filter_apply_order, object deterministic,
                             object generator, object check_nan, object seed, object offset,
                             object return_valid, object out, object valid, object stream):
    """top_k_top_p_sampling_from_probs / _logits as upstream 0.6.3 composes them:

        probs,  top_k_first:  top_k_renorm_probs -> top_p_sampling_from_probs
        probs,  joint:        top_k_top_p_sampling_from_probs
        logits, top_k_first:  top_k_mask_logits -> softmax -> top_p_sampling_from_probs
        logits, joint:        softmax -> top_k_top_p_sampling_from_probs

    (upstream's logits path uses torch.softmax; this one FlashInfer's softmax kernel, so
    the probabilities may differ from upstream's in the last bits). Every stage is checked
    before the first launches; the intermediates are allocated on the call's stream."""
    cdef CallFrame ff, fs, fl  # filter (renorm/mask), softmax, last (sampling)
    cdef Binding last, r
    cdef Binding filt = TOP_K_MASK_LOGITS if from_logits else TOP_K_RENORM_PROBS
    cdef TensorSlot* x_slot
    cdef str name = "logits" if from_logits else "probs"
    cdef bint k_first = _top_k_first(filter_apply_order)
    cdef _Export e = _TOP_P if k_first else _TOP_K_TOP_P
    cdef bint det = _flag(deterministic, "deterministic")
    cdef bint want_valid = _flag(return_valid, "return_valid")
    cdef int seeds = _seed_kind(seed, offset)
    cdef int v
    cdef int64_t batch
    cdef Held held  # the stream's intermediates this call uses (_intermediate)
    held.own, held.n = -1, 0
    _no_check_nan(check_nan)
    _check_generator(generator, seeds)
    last = e.guess()
    v = e.shift(last)
    frame_init(&ff, 5)
    frame_init(&fs, 6)
    frame_init(&fl, last.n)
    try:
        if k_first:
            # float32 only: the next stage (softmax, top-p sampling) reads float32
            _pack_top_k_filter(filt, &ff, x, name, top_k, None, None, False)
            x_slot = &ff.slots[0]
        elif from_logits:
            _pack_softmax(&fs, x, None, None, None)
            x_slot = &fs.slots[1]
        else:
            last.tensor_as(&fl, 0, x, name)
            x_slot = &fl.slots[0]
            _check_matrix(x_slot, name, 2, False)
        batch = _pack_last_stage(last, v, &fl, x_slot, name, not k_first, top_k, top_p,
                                 indices, out)
        if valid is not None:
            _pack_later(last, &fl, 2 if v else -1, valid, "valid", L_VALID, x_slot, name,
                        batch)
        _pack_seed_tensors(e, last, &fl, seeds, seed, offset, x_slot, name, batch)
        handle = _stream_of(filt if k_first else (SOFTMAX if from_logits else last),
                            &ff if k_first else (&fs if from_logits else &fl), stream)
        r = e.resolve()
        if r is last:
            _refuse_later(e, r, valid, want_valid, seeds)
            return _run_composed(e, last, &ff, &fs, &fl, x, x_slot, from_logits, k_first,
                                 filt, name, batch, det, generator, seeds, seed, offset,
                                 want_valid, out, valid, handle, &held)
    finally:
        _release(&held)
        frame_release(&fl)
        frame_release(&fs)
        frame_release(&ff)
    # the first call found a module of the other release: pack its argument list
    return _sample_composed(x, from_logits, top_k, top_p, indices, filter_apply_order,
                            deterministic, generator, check_nan, seed, offset, return_valid,
                            out, valid, stream)


cdef object _run_composed(_Export e, Binding last, CallFrame* ff, CallFrame* fs,
                          CallFrame* fl, object x, TensorSlot* x_slot, bint from_logits,
                          bint k_first, Binding filt, str name, int64_t batch, bint det,
                          object generator, int seeds, object seed, object offset,
                          bint want_valid, object out, object valid, object handle,
                          Held* held):
    """_sample_composed once every stage is checked and packed: the launches. ``held``:
    the stream's intermediates the call takes (_intermediate), released by the caller."""
    cdef int v = e.shift(last)
    cdef int dev = x_slot.dl.device.device_id
    set_bool(fl, last.n - (5 if e.seed_tensors(last) else 3), det)
    _set_seeds(e, last, fl, batch * 32, generator, seeds, seed, offset)
    probs = x
    if k_first:
        probs = _run_top_k_filter(filt, ff, None, handle, held)
    if from_logits:
        if k_first:
            _pack_softmax(fs, probs, None, None, None)
        probs = _run_softmax(fs, None, -1, handle, held)
    if probs is not x:
        last.tensor_as(fl, 0, probs, name)
    if out is None:
        out = _new_vector(batch, _id_dtype(fl, 2 + v), dev, handle)
        last.tensor_as(fl, 1, out, "out")
    if v and valid is None:
        valid = _new_vector(batch, DT_BOOL, dev, handle)
        last.tensor_as(fl, 2, valid, "valid")
    if batch > 0:
        _invoke(last, fl, handle)
    return (out, valid) if want_valid else out


def top_k_top_p_sampling_from_probs(probs, top_k, top_p, indices=None,
                                    filter_apply_order="top_k_first", deterministic=True,
                                    generator=None, check_nan=False, seed=None, offset=None,
                                    return_valid=False, *, out=None, valid=None, stream=None):
    """Top-k then top-p sampling. ``filter_apply_order="top_k_first"`` (default):
    :func:`top_k_renorm_probs` then :func:`top_p_sampling_from_probs` (``top_k`` tensor:
    int32 ``[rows]``); ``"joint"``: one kernel applying both each round (``top_k`` tensor:
    ``[rows]`` of the output's dtype). ``top_p`` as :func:`top_p_sampling_from_probs`.
    The generator advances by ``batch * 32``. ``valid``/``return_valid`` (0.7.x): the
    sampling stage's flags. Other arguments as :func:`sampling_from_probs`. On a 0.7.x
    module ``top_k_first`` is still 0.6.3's composition (renorm, then top-p sampling):
    0.7.4's flashinfer-python takes a sorted radix top-k fast path for large vocabularies
    instead, so its ids may differ there; ``joint`` is one kernel in both."""
    return _sample_composed(probs, False, top_k, top_p, indices, filter_apply_order,
                            deterministic, generator, check_nan, seed, offset, return_valid,
                            out, valid, stream)


def top_k_top_p_sampling_from_logits(logits, top_k, top_p, indices=None,
                                     filter_apply_order="top_k_first", deterministic=True,
                                     generator=None, check_nan=False, seed=None, offset=None,
                                     *, out=None, stream=None):
    """As :func:`top_k_top_p_sampling_from_probs` from float32 logits: ``top_k_first``
    masks with :func:`top_k_mask_logits`, then :func:`softmax`, then top-p sampling;
    ``joint`` takes :func:`softmax` then the joint kernel. Upstream takes torch.softmax
    there, so probabilities (and rarely a sampled id) may differ from flashinfer-python's
    in the last bits."""
    return _sample_composed(logits, True, top_k, top_p, indices, filter_apply_order,
                            deterministic, generator, check_nan, seed, offset, False, out,
                            None, stream)


# ----------------------------------------------------------------------------- renorm, mask

cdef int64_t _air_top_p_workspace_bytes(int64_t rows, int64_t vocab, bint det) noexcept:
    """flashinfer 0.7.x top_p_renorm_probs' scratch (sampling.py, = GetAirTopPRenorm...'s
    carve-up in air_top_p.cuh): per row a 384-byte Counter, 2048-bucket histograms (uint64
    when deterministic, else float), a 2048-bucket count histogram, two candidate buffers;
    each part rounded up to 256 bytes."""
    cdef int64_t buf_len = max(_align256(vocab // 32), 256)
    return (_align256(384 * rows) + _align256((8 if det else 4) * 2048 * rows)
            + _align256(4 * 2048 * rows) + 2 * _align256(4 * buf_len * rows))


cdef inline int64_t _align256(int64_t x) noexcept:
    return (x + 255) // 256 * 256


def top_p_renorm_probs(probs, top_p, is_deterministic=False, *, out=None, stream=None):
    """Keep the smallest set of largest probabilities whose sum reaches ``top_p``, zero the
    rest, renormalise. ``probs``: float32 ``[batch, vocab]``; ``top_p``: a number in (0, 1]
    or a float32 ``[batch]`` device tensor. ``is_deterministic``: flashinfer 0.7.x's radix
    (AIR) kernel, used from vocab 2048, accumulates in integers for run-to-run identical
    results (slower); 0.6.3's kernel reduces each row in one thread block and is
    reproducible either way, so the flag changes nothing there. On 0.7.x the kernel's
    scratch is cached per device and stream (grown on demand, not during a CUDA graph
    capture). ``out``: float32 ``[batch, vocab]``, allocated when omitted. Returns
    ``out``. Asynchronous."""
    cdef CallFrame f
    cdef Binding r, b = _TOP_P_RENORM.guess()
    cdef bint det = _flag(is_deterministic, "is_deterministic")
    cdef TensorSlot* p
    frame_init(&f, b.n)
    try:
        b.tensor_as(&f, 0, probs, "probs")
        p = &f.slots[0]
        _check_matrix(p, "probs", 2, False)
        _pack_param(b, &f, 2, top_p, "top_p", P_TOP_P, False, p, "probs", DT_F32, -1)
        if out is not None:
            _pack_like(b, &f, 1, out, "out", p, "probs")
        handle = _stream_of(b, &f, stream)
        r = _TOP_P_RENORM.resolve()
        if r is b:
            dev = p.dl.device.device_id
            if r is _TOP_P_RENORM.later:
                set_bool(&f, 4, det)
                b.tensor_as(&f, 5, _cached_buffer(
                    "top-p renorm workspace", dev, handle,
                    _air_top_p_workspace_bytes(p.dl.shape[0], p.dl.shape[1], det), False),
                    "workspace")
            if out is None:
                out = _new_like(p, DT_F32, dev, handle)
                b.tensor_as(&f, 1, out, "out")
            if p.dl.shape[0] > 0:
                _invoke(b, &f, stream)
            return out
    finally:
        frame_release(&f)
    return top_p_renorm_probs(probs, top_p, is_deterministic, out=out, stream=stream)


cdef object _top_k_filter(Binding b, object x, str name, object top_k, object out,
                          object row_states_buffer, object stream):
    cdef CallFrame f
    frame_init(&f, 5)
    try:
        _pack_top_k_filter(b, &f, x, name, top_k, row_states_buffer, out, True)
        return _run_top_k_filter(b, &f, out, _stream_of(b, &f, stream))
    finally:
        frame_release(&f)


def top_k_renorm_probs(probs, top_k, *, out=None, row_states_buffer=None, stream=None):
    """Keep the ``top_k`` largest probabilities per row, zero the rest, renormalise.
    ``probs``: float32, float16 or bfloat16 ``[batch, vocab]``; ``top_k``: an int >= 1
    (``>= vocab``: renormalise only) or an int32 ``[batch]`` device tensor. ``out``: same
    shape and dtype, allocated when omitted. ``row_states_buffer``: uint8, >= 1 MiB,
    zero-filled before its first use, never used by two streams at once (default: cached
    per device and stream, as upstream's). Returns ``out``. Asynchronous."""
    return _top_k_filter(TOP_K_RENORM_PROBS, probs, "probs", top_k, out, row_states_buffer,
                         stream)


def top_k_mask_logits(logits, top_k, *, out=None, row_states_buffer=None, stream=None):
    """Keep the ``top_k`` largest logits per row, set the rest to ``-inf``. Arguments as
    :func:`top_k_renorm_probs`."""
    return _top_k_filter(TOP_K_MASK_LOGITS, logits, "logits", top_k, out, row_states_buffer,
                         stream)


# upstream's singular aliases
top_p_renorm_prob = top_p_renorm_probs
top_k_renorm_prob = top_k_renorm_probs


# ----------------------------------------------------------------------------- speculative

def chain_speculative_sampling(draft_probs, draft_token_ids, target_probs,
                               maybe_output_accepted_token_num=None,
                               maybe_output_emitted_draft_token_num=None, deterministic=True,
                               generator=None, seed=None, offset=None, *, out=None,
                               stream=None):
    """Speculative sampling over a chain of ``n`` draft tokens per request.

    ``draft_probs``: float32 ``[batch, n, vocab]``; ``draft_token_ids``: int32
    ``[batch, n]`` (each < vocab: the caller's guarantee); ``target_probs``: float32
    ``[batch, n + 1, vocab]``; all contiguous on one CUDA device. The two counters (int32
    ``[batch]``) are *added to* in place; zero-filled new ones when omitted. ``out``: int32
    ``[batch, n + 1]`` accepted tokens, then the resampled or bonus token, then ``-1``
    padding. The generator advances by ``batch * (n + 1)`` on a 0.6.3 module and by
    ``batch * (n + 2)`` on 0.7.x, as each release's flashinfer-python; ``seed``/``offset``
    as :func:`sampling_from_probs` (device tensors of length 1 or ``batch``: 0.7.x).
    Returns ``(out, accepted, emitted)``. Asynchronous.
    """
    cdef CallFrame f
    cdef Binding b = _CHAIN.guess()
    cdef TensorSlot* d
    cdef int64_t shape[3]
    cdef int64_t batch, n, vocab
    cdef int seeds = _seed_kind(seed, offset)
    _check_generator(generator, seeds)
    counters = [maybe_output_accepted_token_num, maybe_output_emitted_draft_token_num]
    names = ("maybe_output_accepted_token_num", "maybe_output_emitted_draft_token_num")
    frame_init(&f, b.n)
    try:
        b.tensor_as(&f, 0, draft_probs, "draft_probs")
        d = &f.slots[0]
        _check_matrix(d, "draft_probs", 3, False)
        batch, n, vocab = d.dl.shape[0], d.dl.shape[1], d.dl.shape[2]
        shape[0], shape[1] = batch, n
        _pack_ids(b, &f, 1, draft_token_ids, "draft_token_ids", d, "draft_probs", 2, shape,
                  DT_I32)
        b.tensor_as(&f, 2, target_probs, "target_probs")
        check_same_device(&f.slots[2], "target_probs", d, "draft_probs")
        _check_matrix(&f.slots[2], "target_probs", 3, False)
        shape[1], shape[2] = n + 1, vocab
        for i in range(3):
            check_dim(&f.slots[2], "target_probs", i, shape[i],
                      "[batch, n + 1, vocab] from draft_probs")
        if out is not None:
            _pack_ids(b, &f, 3, out, "out", d, "draft_probs", 2, shape, DT_I32)
        for i in range(2):
            if counters[i] is not None:
                _pack_ids(b, &f, 4 + i, counters[i], names[i], d, "draft_probs", 1, shape,
                          DT_I32)
        det = _flag(deterministic, "deterministic")
        _pack_seed_tensors(_CHAIN, b, &f, seeds, seed, offset, d, "draft_probs", batch)
        handle = _stream_of(b, &f, stream)
        if _CHAIN.resolve() is b:
            _refuse_later(_CHAIN, b, None, False, seeds)
            set_bool(&f, 6, det)
            # 0.7.x's flashinfer-python reserves one more draw per request (sampling.py)
            _set_seeds(_CHAIN, b, &f, batch * (n + (2 if b is _CHAIN.later else 1)), generator,
                       seeds, seed, offset)
            dev = d.dl.device.device_id
            if out is None:
                out = new_device_array(2, shape, dtype_of_key(DT_I32), dev,  # [batch, n + 1]
                                       <void*><uintptr_t>handle)
                b.tensor_as(&f, 3, out, "out")
            for i in range(2):
                if counters[i] is None:
                    counters[i] = DeviceArray.zeros((batch,), "int32", dev, handle)
                    b.tensor_as(&f, 4 + i, counters[i], names[i])
            if batch > 0:
                _invoke(b, &f, stream)
            return out, counters[0], counters[1]
    finally:
        frame_release(&f)
    # the first call found a module of the other release: pack its argument list
    return chain_speculative_sampling(
        draft_probs, draft_token_ids, target_probs, maybe_output_accepted_token_num,
        maybe_output_emitted_draft_token_num, deterministic, generator, seed, offset,
        out=out, stream=stream)
