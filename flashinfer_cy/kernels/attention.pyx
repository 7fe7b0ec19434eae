# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Single-request attention (flashinfer 0.6.3 ``single_decode_with_kv_cache_*`` and
``single_prefill_with_kv_cache_*`` modules) and the helpers the batch wrappers share.

    single_decode(q [Hq, D], k, v)      one query row per head against a whole KV sequence
    single_prefill(q [Lq, Hq, D], k, v) Lq query rows; causal masks align bottom-right
                                        (row i sees keys j <= i + Lkv - Lq)

k/v are ``[Lkv, Hkv, D]`` (NHD) or ``[Hkv, Lkv, D]`` (HND); GQA when Hq is a multiple of Hkv.
The module (URI) follows the arguments: dtype, head dim, whether a sliding window
(``window_left >= 0``) or a logits soft cap (``> 0``) is used, FA2 or FA3.

Every optional tensor extra of these kernels (ALiBi slopes, custom masks, FP8 scales) is
declared ``Optional<ffi::Tensor>`` and so accepts only None or a Tensor *object*, never a
DLTensor* (doc P1); this package uses none of them and always passes None.
"""

from libc.stdint cimport int64_t, uint32_t, uintptr_t

from flashinfer_cy._abi.dlpack cimport kDLCUDA
from flashinfer_cy._abi.tvm_ffi cimport TVMFFIAny
from flashinfer_cy._core.binding cimport (Binding, CallFrame, frame_init, frame_release,
                                          set_float, set_int, set_none, K_OPT_TENSOR, K_FLOAT,
                                          K_INT, MAX_ARGS)
from flashinfer_cy._core.runtime cimport compute_capability_major, env_stream
from flashinfer_cy._core.stream cimport resolve_stream
from flashinfer_cy._core.tensor cimport (
    TensorSlot, DT_F16, DT_BF16, DT_F32, DT_E4M3, dtype_key, dtype_name, describe, to_dltensor,
    check_cuda,
    check_dtype, check_same_dtype, check_ndim, check_contiguous, check_last_contiguous,
    check_same_device, check_same_shape, check_writable, as_bool)

from flashinfer_cy import errors as _errors
from flashinfer_cy._core.array import DeviceArray, stream_scratch
from flashinfer_cy.kernels import attention_uri as _uri
from flashinfer_cy.abi import layouts as _layouts

cdef object _args_module = None


cdef object _A():
    """attention_args, imported on first use: it pulls in numpy, which ``import
    flashinfer_cy`` must not pay for."""
    global _args_module
    if _args_module is None:
        from flashinfer_cy.kernels import attention_args
        _args_module = attention_args
    return _args_module


# ---------------------------------------------------------------------------- ABI table
# Argument lists in ABI order, from csrc/*_jit_binding.cu plus the ADDITIONAL params that
# flashinfer/jit/attention/modules.py generates for each family and backend (doc §6.6-6.11).
_DECODE_EXTRAS = "maybe_alibi_slopes:T? logits_soft_cap:F sm_scale:F rope_rcp_scale:F rope_rcp_theta:F"
_FA2_SINGLE_EXTRAS = ("maybe_custom_mask:T? maybe_alibi_slopes:T? logits_soft_cap:F sm_scale:F "
                      "rope_rcp_scale:F rope_rcp_theta:F")
_FA3_SINGLE_EXTRAS = "maybe_scale_v:T? logits_soft_cap:F sm_scale:F scale_v_scalar:F"
_FA2_BATCH_EXTRAS = ("maybe_custom_mask:T? maybe_mask_indptr:T? maybe_alibi_slopes:T? "
                     "maybe_prefix_len_ptr:T? maybe_token_pos_in_items_ptr:T? "
                     "maybe_max_item_len_ptr:T? logits_soft_cap:F sm_scale:F rope_rcp_scale:F "
                     "rope_rcp_theta:F token_pos_in_items_len:I")
_FA3_BATCH_EXTRAS = ("maybe_prefix_len_ptr:T? maybe_token_pos_in_items_ptr:T? "
                     "maybe_max_item_len_ptr:T? maybe_scale_v:T? logits_soft_cap:F sm_scale:F "
                     "scale_v_scalar:F token_pos_in_items_len:I")
_WS = "float_workspace_buffer:T! int_workspace_buffer:T! "  # "!": the kernel writes it
_PLAN_WS = _WS + "page_locked_int_workspace_buffer:H "
_PREFILL_PLAN = (_PLAN_WS + "qo_indptr:H kv_indptr:H kv_len_arr:H total_num_rows:I batch_size:I "
                 "num_qo_heads:I num_kv_heads:I page_size:I enable_cuda_graph:B head_dim_qk:I "
                 "head_dim_vo:I causal:B window_left:I")
_RAGGED_RUN = (_WS + "plan_info_vec:A q:T k:T v:T qo_indptr:T kv_indptr:T o:T! maybe_lse:T?! "
               "mask_mode_code:I layout:I window_left:I enable_pdl:B ")
_PAGED_RUN = (_WS + "plan_info_vec:A q:T paged_k_cache:T paged_v_cache:T qo_indptr:T "
              "paged_kv_indptr:T paged_kv_indices:T paged_kv_last_page_len:T o:T! maybe_lse:T?! "
              "mask_mode_code:I layout:I window_left:I enable_pdl:B ")
_MLA_PLAN = _PLAN_WS + "qo_indptr:H kv_indptr:H kv_len:H num_heads:I head_dim_o:I causal:B"
_MLA_RUN = (_WS + "plan_info_vec:A q_nope:T q_pe:T ckv_cache:T kpe_cache:T kv_indices:T o:T! "
            "maybe_lse:T?! mask_mode_code:I num_heads:I page_size:I sm_scale:F "
            "return_lse_base_on_e:B")
_SINGLE_PREFILL = "q:T k:T v:T tmp:T! o:T! maybe_lse:T?! mask_mode_code:I layout:I window_left:I "

# (family, backend, export) -> (signature, the tensor whose device and stream the kernel uses)
SIGNATURES = {
    ("single_decode", "fa2", "run"): (
        "q:T k:T v:T tmp:T! o:T! maybe_lse:T?! layout:I window_left:I " + _DECODE_EXTRAS, "q"),
    ("single_prefill", "fa2", "run"): (_SINGLE_PREFILL + _FA2_SINGLE_EXTRAS, "q"),
    ("single_prefill", "fa3", "run"): (_SINGLE_PREFILL + _FA3_SINGLE_EXTRAS, "q"),
    ("batch_decode", "fa2", "plan"): (
        _PLAN_WS + "indptr:H batch_size:I num_qo_heads:I num_kv_heads:I page_size:I "
        "enable_cuda_graph:B window_left:I logits_soft_cap:F head_dim_qk:I head_dim_vo:I "
        "empty_q_data:H empty_kv_data:H", "float_workspace_buffer"),
    ("batch_decode", "fa2", "run"): (
        _WS + "plan_info_vec:A q:T paged_k_cache:T paged_v_cache:T paged_kv_indptr:T "
        "paged_kv_indices:T paged_kv_last_page_len:T o:T! maybe_lse:T?! kv_layout_code:I "
        "window_left:I enable_pdl:B " + _DECODE_EXTRAS, "q"),
    # FA2 plan also takes fixed_split_size, disable_split_kv, num_colocated_ctas; FA3 does not.
    ("batch_prefill", "fa2", "plan"): (
        _PREFILL_PLAN + " fixed_split_size:I disable_split_kv:B num_colocated_ctas:I",
        "float_workspace_buffer"),
    ("batch_prefill", "fa3", "plan"): (_PREFILL_PLAN, "float_workspace_buffer"),
    ("batch_prefill", "fa2", "ragged_run"): (_RAGGED_RUN + _FA2_BATCH_EXTRAS, "float_workspace_buffer"),
    ("batch_prefill", "fa3", "ragged_run"): (_RAGGED_RUN + _FA3_BATCH_EXTRAS, "float_workspace_buffer"),
    ("batch_prefill", "fa2", "paged_run"): (_PAGED_RUN + _FA2_BATCH_EXTRAS, "float_workspace_buffer"),
    ("batch_prefill", "fa3", "paged_run"): (_PAGED_RUN + _FA3_BATCH_EXTRAS, "float_workspace_buffer"),
    # Batched MLA (batch_mla.pyx): csrc/batch_mla_binding.cu and batch_mla_sm90_binding.cu,
    # the same lists (the sm90 ADDITIONAL_FUNC_PARAMS is empty without the profiler).
    ("batch_mla", "fa2", "plan"): (_MLA_PLAN, "float_workspace_buffer"),
    ("batch_mla", "fa3", "plan"): (_MLA_PLAN, "float_workspace_buffer"),
    ("batch_mla", "fa2", "run"): (_MLA_RUN, "q_nope"),
    ("batch_mla", "fa3", "run"): (_MLA_RUN, "q_nope"),
}

# Later releases' argument lists, as layouts of the lists above (flashinfer_cy/abi/layouts.py),
# with the values their own Python wrappers pass where they added arguments:
# * 0.7.x FA2 prefill runs add maybe_k_cache_sf / maybe_v_cache_sf (per-token-head KV scales
#   of nvfp4/fp8 caches) before the float scalars: None, as prefill.py passes for f16/bf16/fp8
#   caches without scales;
# * 0.7.x FA2 prefill plan appends uniform_q_len (0: "no promise", what prefill.py's
#   _resolve_uniform_q_len returns unless a caller promises equal query lengths under CUDA
#   graphs) and fixed_uniform_q_len (False, always, in prefill.py);
# * 0.7.x batched MLA runs append ckv_scale, kpe_scale and maybe_ckv_scale_arr (the e4m3
#   cache's dequantization scales; mla.cuh / mla_hopper.cuh read them only in their fp8 KV
#   repack): 1.0, 1.0, None, what mla/_batch_mla/_backends/_fa_common.py _run_generated_fa
#   passes for a float16/bfloat16 cache.
_KV_SF_NONE = "maybe_k_cache_sf:T?=None maybe_v_cache_sf:T?=None"
_MLA_KV_SCALES_NONE = "ckv_scale:F=1.0 kpe_scale:F=1.0 maybe_ckv_scale_arr:T?=None"
LAYOUTS = {
    ("single_prefill", "fa2", "run"): {"0.7.4": _layouts.insert(
        SIGNATURES[("single_prefill", "fa2", "run")][0], "logits_soft_cap", _KV_SF_NONE)},
    ("batch_prefill", "fa2", "ragged_run"): {"0.7.4": _layouts.insert(
        SIGNATURES[("batch_prefill", "fa2", "ragged_run")][0], "logits_soft_cap", _KV_SF_NONE)},
    ("batch_prefill", "fa2", "paged_run"): {"0.7.4": _layouts.insert(
        SIGNATURES[("batch_prefill", "fa2", "paged_run")][0], "logits_soft_cap", _KV_SF_NONE)},
    ("batch_prefill", "fa2", "plan"): {"0.7.4": _layouts.append(
        SIGNATURES[("batch_prefill", "fa2", "plan")][0],
        "uniform_q_len:I=0 fixed_uniform_q_len:B=False")},
    **{("batch_mla", backend, "run"): {"0.7.4": _layouts.append(
        SIGNATURES[("batch_mla", backend, "run")][0], _MLA_KV_SCALES_NONE)}
       for backend in ("fa2", "fa3")},
}

# Lines written for a later release where it changed an export beyond a layout
# (Binding(..., written_for=release)); a variant named for that release (MLAVariant.release)
# gets them, and they call modules of that release only:
# * 0.7.x batched MLA plan: the same arguments, but it returns Tuple<Array<int64_t>, int64_t>
#   (the plan info, as before, and how many bytes of the page-locked mirror hold the
#   schedule) and leaves the mirror -> int workspace copy, which 0.6.3's plan enqueued
#   itself, to its caller (jit/attention/modules.py _BatchMLAModuleProxy): batch_mla.pyx
#   enqueues it (BatchPlanner._plan_call, staged). Its plan info is laid out as before
#   (scheduler.cuh MLAPlanInfo, 18 entries).
RELEASE_SIGNATURES = {
    ("batch_mla", backend, "plan", "0.7.4"): (_MLA_PLAN, "float_workspace_buffer")
    for backend in ("fa2", "fa3")
}

SINGLE_TMP_BYTES = 32 * 1024 * 1024  # upstream's single-op scratch; the kernels never check it

cdef dict _bindings = {}     # (uri, export) -> Binding, module loaded
cdef dict _fa3_usable = {}   # (family, dtype, head_dim, swa, cap, device) -> bool (auto backend)


def binding_for(variant, str symbol):
    """The :class:`Binding` of ``variant``'s export ``symbol`` (tables above: the line of the
    release the variant is named for where it has one; not loaded)."""
    key = (variant.uri, symbol)
    b = _bindings.get(key)
    if b is None:
        release = getattr(variant, "release", None)
        line = RELEASE_SIGNATURES.get((variant.family, variant.backend, symbol, release))
        if line is not None:
            return Binding(variant.uri, symbol, line[0], device=line[1], written_for=release)
        sig, device = SIGNATURES[(variant.family, variant.backend, symbol)]
        b = Binding(variant.uri, symbol, sig, device=device,
                    layouts=LAYOUTS.get((variant.family, variant.backend, symbol)))
    return b


cdef Binding load_binding(object variant, str symbol):
    """Binding with its module loaded; a missing module raises KernelNotFoundError naming
    the URI and the command that builds it."""
    cdef Binding b
    key = (variant.uri, symbol)
    b = _bindings.get(key)
    if b is not None:
        return b
    b = binding_for(variant, symbol)
    if not variant.in_prebuilt_wheel:
        # Never start a wheel download for a module the wheel does not have.
        from flashinfer_cy.artifacts import where_is
        step, path = where_is(variant.uri)
        if path is None and step in ("download", "missing"):
            raise _errors.KernelNotFoundError(_uri.missing_module_message(
                variant, f"no local source has it (resolution step: {step})"))
    try:
        b.load()
    except (_errors.KernelNotFoundError, _errors.ArtifactError) as exc:
        raise _errors.KernelNotFoundError(_uri.missing_module_message(variant, str(exc))) from exc
    _bindings[key] = b
    return b


def choose_backend(str requested, str family, str dtype, int head_dim, int window_left,
                   double logits_soft_cap, int device, str kv_dtype=None):
    """"fa2" or "fa3". ``auto`` follows upstream (FA3 on sm90 when the variant has an FA3
    module: prefill, 16-bit q and KV, head dim 64/128/256) and falls back to FA2 when that
    module cannot be found. Decode, and an fp8 KV cache with 16-bit q (FA3's fp8 kernels
    take fp8 q too), are FA2 only; an explicit request is returned as given."""
    if requested not in _uri.BACKENDS:
        raise ValueError(f"backend: expected one of {_uri.BACKENDS}, got {requested!r}")
    if requested != "auto":
        return requested
    if family not in ("batch_prefill", "single_prefill") or (
            kv_dtype is not None and kv_dtype != dtype):
        return "fa2"
    key = (family, dtype, head_dim, window_left >= 0, logits_soft_cap > 0, device)
    usable = _fa3_usable.get(key)
    if usable is None:
        usable = False
        if compute_capability_major(device) == 9:
            v = _uri.variant(family, dtype, head_dim, window_left, logits_soft_cap, "fa3")
            try:
                load_binding(v, "plan" if family == "batch_prefill" else "run")
                usable = True
            except _errors.KernelNotFoundError:
                usable = False
        _fa3_usable[key] = usable
    return "fa3" if usable else "fa2"


# ---------------------------------------------------------------------------- packing helpers

cdef int pack_extras(Binding b, CallFrame* f, int start, str backend, double logits_soft_cap,
                     double sm_scale, double rope_rcp_scale, double rope_rcp_theta) except -1:
    """Fill the generated tail of a run signature: every optional tensor None, the float
    scalars in their ABI order, the one int (token_pos_in_items_len) 0."""
    cdef double floats[4]
    cdef int nf, k = 0, i
    floats[0] = logits_soft_cap
    floats[1] = sm_scale
    if backend == "fa3":   # logits_soft_cap, sm_scale, scale_v_scalar
        floats[2] = 1.0
        nf = 3
    else:                  # logits_soft_cap, sm_scale, rope_rcp_scale, rope_rcp_theta
        floats[2] = rope_rcp_scale
        floats[3] = rope_rcp_theta
        nf = 4
    for i in range(start, b.n):
        if b.kinds[i] == K_OPT_TENSOR:
            set_none(f, i)
        elif b.kinds[i] == K_FLOAT:
            if k >= nf:
                raise AssertionError(f"{b.symbol}: more float extras than expected")
            set_float(f, i, floats[k])
            k += 1
        elif b.kinds[i] == K_INT:
            set_int(f, i, 0)
        else:
            raise AssertionError(f"{b.symbol}: unexpected extra argument {b.names[i]}")
    if k != nf:
        raise AssertionError(f"{b.symbol}: expected {nf} float extras, packed {k}")
    return 0


cdef uint32_t dtype_key_of(str dtype) noexcept:
    """The tensor dtype key of an attention dtype name (float16, bfloat16, float8_e4m3fn)."""
    if dtype == "bfloat16":
        return DT_BF16
    return DT_E4M3 if dtype == "float8_e4m3fn" else DT_F16


cdef int check_vec_aligned(TensorSlot* s, str name) except -1:
    """The kernels move 16-byte vectors: row starts must be 16-byte aligned, i.e. the data
    pointer and every stride but the last a multiple of 16 bytes (8 two-byte elements,
    16 one-byte fp8 elements)."""
    cdef int i
    cdef int64_t per_vec = 16 // (s.dl.dtype.bits // 8 if s.dl.dtype.bits >= 8 else 1)
    if (<uintptr_t>s.dl.data) % 16:
        raise ValueError(f"{name}: data pointer {<uintptr_t>s.dl.data:#x} must be 16-byte aligned")
    for i in range(s.dl.ndim - 1):
        if s.dl.shape[i] > 1 and (s.dl.strides[i] % per_vec or s.dl.strides[i] <= 0):
            raise ValueError(f"{name}: stride {s.dl.strides[i]} of dimension {i} must be a "
                             f"positive multiple of {per_vec} elements (16 bytes), got "
                             f"{describe(s)}")
    return 0


cdef int check_qkv_tensor(TensorSlot* s, str name, uint32_t dtype) except -1:
    check_cuda(s, name)
    check_dtype(s, name, dtype)
    check_last_contiguous(s, name)
    check_vec_aligned(s, name)
    return 0


cdef int check_out(TensorSlot* s, str name, TensorSlot* ref, str ref_name, int ndim,
                   int64_t* shape) except -1:
    """An output: ``ref``'s device and dtype, the given shape, packed (kernels assume it)."""
    cdef int i
    check_same_device(s, name, ref, ref_name)
    check_same_dtype(s, name, ref, ref_name)
    check_ndim(s, name, ndim)
    for i in range(ndim):
        if s.dl.shape[i] != shape[i]:
            raise ValueError(f"{name}: expected shape {tuple(shape[j] for j in range(ndim))}, "
                             f"got {tuple(s.dl.shape[j] for j in range(ndim))}")
    check_contiguous(s, name)
    check_vec_aligned(s, name)
    return 0


cdef int check_lse(TensorSlot* s, int64_t rows, int64_t heads, TensorSlot* ref) except -1:
    check_same_device(s, "lse", ref, "q")
    check_dtype(s, "lse", DT_F32)
    if heads < 0:   # single decode: [num_qo_heads]
        check_ndim(s, "lse", 1)
        if s.dl.shape[0] != rows:
            raise ValueError(f"lse: expected shape ({rows},), got {describe(s)}")
    else:
        check_ndim(s, "lse", 2)
        if s.dl.shape[0] != rows or s.dl.shape[1] != heads:
            raise ValueError(f"lse: expected shape ({rows}, {heads}), got {describe(s)}")
    check_contiguous(s, "lse")
    return 0


cdef int split_kv_pair(CallFrame* f, int ik, int iv, object kv_cache, Binding b) except -1:
    """``(k, v)`` into slots ik/iv; a single 5-D tensor ``[pages, 2, ...]`` is split into
    two 4-D views (k = [:, 0], v = [:, 1]) without copying."""
    cdef TensorSlot* k
    cdef TensorSlot* v
    cdef int i
    if isinstance(kv_cache, tuple):
        if len(kv_cache) != 2:
            raise TypeError(f"paged_kv_cache: expected (k_cache, v_cache), got a tuple of "
                            f"{len(kv_cache)}")
        b.tensor(f, ik, kv_cache[0])
        b.tensor(f, iv, kv_cache[1])
        return 0
    b.tensor(f, ik, kv_cache)
    k = &f.slots[ik]
    if k.dl.ndim != 5 or k.dl.shape[1] != 2:
        raise ValueError(f"paged_kv_cache: expected a (k_cache, v_cache) tuple or one tensor of "
                         f"shape [num_pages, 2, ...], got {describe(k)}")
    v = &f.slots[iv]
    v[0] = k[0]  # one conversion describes both halves; k's slot owns what it holds
    v.keep = NULL
    f.args[iv].type_index = 7  # kTVMFFIDLTensorPtr
    f.args[iv].v_ptr = &v.dl
    v.dl.data = <void*>(<char*>k.dl.data + k.dl.strides[1] * (k.dl.dtype.bits // 8))
    for i in range(2, 5):  # drop dimension 1, in place in both slots
        k.shape[i - 1] = k.dl.shape[i]
        k.strides[i - 1] = k.dl.strides[i]
    k.shape[0] = k.dl.shape[0]
    k.strides[0] = k.dl.strides[0]
    for i in range(4):
        v.shape[i] = k.shape[i]
        v.strides[i] = k.strides[i]
    k.dl.ndim = 4
    v.dl.ndim = 4
    k.dl.shape = k.shape
    k.dl.strides = k.strides
    v.dl.shape = v.shape
    v.dl.strides = v.strides
    return 0


cdef int run_stream(Binding b, CallFrame* f, object stream, void** out) except -1:
    """The stream the call will run on (what Binding.invoke would pick), as a handle."""
    cdef int dev = f.slots[b.device_arg].dl.device.device_id
    if b.pick_stream(f, stream, out) == 0:
        out[0] = env_stream(kDLCUDA, dev)
    return 0


cdef bint pdl_default(int device) except -1:
    # FlashInfer's own default: programmatic dependent launch on sm_90 and newer.
    return compute_capability_major(device) >= 9


cdef int pdl_flag(object enable_pdl) except -2:
    """``enable_pdl`` as 0 or 1, or -1 for pdl_default; anything else is a TypeError (every
    family's kernel functions take it this way)."""
    if enable_pdl is None:
        return -1
    return as_bool(enable_pdl, "enable_pdl", "True, False or None")


cdef object _tmp_buffer(int device, void* stream):
    """The single ops' scratch, per device and stream (refused while capturing: make one
    call on the stream first; flashinfer_cy._core.array.stream_scratch)."""
    return stream_scratch("single-op scratch", device, <uintptr_t>stream, SINGLE_TMP_BYTES)


# ---------------------------------------------------------------------------- single ops

cdef inline void _mark_packed(CallFrame* f, int i) noexcept:
    f.args[i].type_index = 7  # kTVMFFIDLTensorPtr
    f.args[i].v_ptr = &f.slots[i].dl


cdef int _describe_output(CallFrame* f, int i, object obj, str name) except -1:
    to_dltensor(obj, &f.slots[i], name)
    _mark_packed(f, i)  # first, so that frame_release drops what it holds
    return check_writable(&f.slots[i], name)


cdef tuple _kv_dims(TensorSlot* k, int layout):
    """(kv_len, num_kv_heads) of a 3-D k/v in the given layout."""
    if layout == 0:
        return k.dl.shape[0], k.dl.shape[1]
    return k.dl.shape[1], k.dl.shape[0]


cdef object _single(str family, object q, object k, object v, object causal_arg,
                    object kv_layout, object window_left, object logits_soft_cap,
                    object sm_scale, object rope_scale, object rope_theta, object out,
                    object lse, object return_lse_arg, str backend, object enable_pdl,
                    object stream):
    cdef bint causal = as_bool(causal_arg, "causal", "True or False")
    cdef bint return_lse = as_bool(return_lse_arg, "return_lse", "True or False")
    cdef CallFrame f
    cdef TVMFFIAny result
    cdef TensorSlot* qs
    cdef TensorSlot* ks
    cdef TensorSlot* vs
    cdef Binding b
    cdef void* handle = NULL
    cdef int64_t oshape[3]
    cdef int64_t qo_len, heads, head_dim, kv_len, kv_heads
    cdef bint given = stream is not None
    if given:  # resolved once, first: a bad stream= is refused before any module is loaded
        resolve_stream(stream, &handle)
    cdef bint decode = family == "single_decode"
    cdef int layout = _A().layout_code(kv_layout)
    cdef int ndim_q = 2 if decode else 3
    # Slots 0-5 are q, k, v, tmp, o, maybe_lse in every single-op signature: the tensors are
    # described and checked there before the binding (hence the arity) is known.
    frame_init(&f, MAX_ARGS)
    try:
        # Describe and validate every tensor before anything is loaded.
        to_dltensor(q, &f.slots[0], "q")
        qs = &f.slots[0]
        check_ndim(qs, "q", ndim_q)
        if dtype_key(qs.dl.dtype) != DT_F16 and dtype_key(qs.dl.dtype) != DT_BF16:
            check_dtype(qs, "q", DT_F16, DT_BF16)
        dtype = "bfloat16" if dtype_key(qs.dl.dtype) == DT_BF16 else "float16"
        head_dim = qs.dl.shape[ndim_q - 1]
        _A().check_head_dim(head_dim)
        heads = qs.dl.shape[ndim_q - 2]
        qo_len = 1 if decode else qs.dl.shape[0]
        win, cap, scale, rope_s, rope_t = _A().scalars(
            window_left, logits_soft_cap, sm_scale, rope_scale, rope_theta, head_dim)
        if not decode and backend not in _uri.BACKENDS:
            raise ValueError(f"backend: expected one of {_uri.BACKENDS}, got {backend!r}")
        for name, t, i in (("k", k, 1), ("v", v, 2)):
            to_dltensor(t, &f.slots[i], name)
        ks = &f.slots[1]
        vs = &f.slots[2]
        # k/v: q's dtype, or an fp8 (e4m3) KV cache (FA2 modules with dtype_kv_e4m3)
        kv_key = DT_E4M3 if dtype_key(ks.dl.dtype) == DT_E4M3 else dtype_key(qs.dl.dtype)
        kv_dtype = _uri.FP8_KV if kv_key == DT_E4M3 else dtype
        check_qkv_tensor(qs, "q", dtype_key(qs.dl.dtype))
        for name, i in (("k", 1), ("v", 2)):
            if dtype_key(f.slots[i].dl.dtype) != kv_key:
                raise TypeError(f"{name}: expected dtype {dtype_name(kv_key)} (q's dtype, or "
                                f"{_uri.FP8_KV} for both k and v), got {describe(&f.slots[i])}")
            check_qkv_tensor(&f.slots[i], name, kv_key)
            check_same_device(&f.slots[i], name, qs, "q")
        check_ndim(ks, "k", 3)
        check_same_shape(vs, "v", ks, "k")
        if decode:  # the decode kernel recomputes strides as if packed
            check_contiguous(qs, "q")
            check_contiguous(ks, "k")
            check_contiguous(vs, "v")
        kv_len, kv_heads = _kv_dims(ks, layout)
        if ks.dl.shape[2] != head_dim:
            raise ValueError(f"k: head dim {ks.dl.shape[2]} differs from q's {head_dim}")
        _A().check_heads(heads, kv_heads, decode=decode)
        if kv_len <= 0:
            raise ValueError(f"k: kv_len must be >= 1, got {describe(ks)} ({kv_layout})")
        if causal and qo_len > kv_len:
            raise ValueError(f"causal attention needs qo_len <= kv_len (rows align bottom-right), "
                             f"got qo_len {qo_len} > kv_len {kv_len}")
        oshape[0] = qs.dl.shape[0]
        oshape[1] = qs.dl.shape[1]
        if not decode:
            oshape[2] = qs.dl.shape[2]
        if out is not None:
            _describe_output(&f, 4, out, "out")
            check_out(&f.slots[4], "out", qs, "q", ndim_q, oshape)
        if lse is not None:
            _describe_output(&f, 5, lse, "lse")
            check_lse(&f.slots[5], heads if decode else qo_len, -1 if decode else heads, qs)
        # Resolve the module (CUDA may be touched from here on; _uri.variant refuses an fp8
        # k/v with backend="fa3" before that).
        chosen = choose_backend(backend, family, dtype, head_dim, win, cap,
                                qs.dl.device.device_id, kv_dtype)
        var = _uri.variant(family, dtype, head_dim, win, cap, chosen, kv_dtype)
        b = load_binding(var, "run")
        f.n = b.n
        for i in range(3):
            _mark_packed(&f, i)
        if not given:
            run_stream(b, &f, None, &handle)  # the producer's current stream, or TVM-FFI's
        if out is None:
            out = DeviceArray.empty(tuple(oshape[i] for i in range(ndim_q)), dtype,
                                    qs.dl.device.device_id, <uintptr_t>handle)
            b.tensor(&f, 4, out)
        if lse is None:
            if return_lse:
                if decode:
                    lse_shape = (heads,)
                else:
                    lse_shape = (qo_len, heads)
                lse = DeviceArray.empty(lse_shape, "float32", qs.dl.device.device_id,
                                        <uintptr_t>handle)
            b.opt_tensor(&f, 5, lse)
        if qo_len == 0:
            return (out, lse) if return_lse else out
        b.tensor(&f, 3, _tmp_buffer(qs.dl.device.device_id, handle))
        if decode:
            set_int(&f, 6, layout)
            set_int(&f, 7, win)
            pack_extras(b, &f, 8, "fa2", cap, scale, 1.0 / rope_s, 1.0 / rope_t)
        else:
            if chosen == "fa3" and layout == 1:
                hnd_as_nhd(&f, 1)
                hnd_as_nhd(&f, 2)
                layout = 0
            set_int(&f, 6, 1 if causal else 0)
            set_int(&f, 7, layout)
            set_int(&f, 8, win)
            pack_extras(b, &f, 9, chosen, cap, scale, 1.0 / rope_s, 1.0 / rope_t)
        b.invoke(&f, <uintptr_t>handle, &result)
        return (out, lse) if return_lse else out
    finally:
        frame_release(&f)


def single_decode(q, k, v, *, kv_layout="NHD", window_left=-1, logits_soft_cap=0.0,
                  sm_scale=None, rope_scale=1.0, rope_theta=1e4, out=None, lse=None,
                  return_lse=False, stream=None):
    """Decode attention of one request: ``q [num_qo_heads, head_dim]`` against
    ``k``/``v`` ``[kv_len, num_kv_heads, head_dim]`` (NHD) or ``[num_kv_heads, kv_len,
    head_dim]`` (HND), all packed. float16/bfloat16, head_dim 64/128/256, GQA group size
    1/2/3/4/8. k/v have q's dtype, or both ``float8_e4m3fn`` (an fp8 KV cache; fold a
    dequantization scale of k into ``sm_scale`` and of v into the output).
    ``window_left >= 0`` attends only to the last ``window_left + 1`` keys;
    ``logits_soft_cap > 0`` applies ``cap * tanh(s / cap)``; ``sm_scale`` defaults to
    ``1/sqrt(head_dim)``. Returns ``out`` (allocated when omitted), or ``(out, lse)`` with
    ``return_lse`` (lse: float32 ``[num_qo_heads]``, base-2 log-sum-exp). Asynchronous on
    ``stream`` (see flashinfer_cy.streams)."""
    return _single("single_decode", q, k, v, False, kv_layout, window_left, logits_soft_cap,
                   sm_scale, rope_scale, rope_theta, out, lse, return_lse, "fa2", None, stream)


def single_prefill(q, k, v, *, causal=False, kv_layout="NHD", window_left=-1,
                   logits_soft_cap=0.0, sm_scale=None, rope_scale=1.0, rope_theta=1e4,
                   out=None, lse=None, return_lse=False, backend="auto", stream=None):
    """Prefill attention of one request: ``q [qo_len, num_qo_heads, head_dim]`` against
    ``k``/``v`` (NHD ``[kv_len, num_kv_heads, head_dim]`` or HND). ``causal`` aligns the
    mask bottom-right (query row i sees keys ``j <= i + kv_len - qo_len``) and needs
    ``qo_len <= kv_len``. q/k/v may be strided views (last dimension packed, 16-byte aligned
    rows); ``out`` ``[qo_len, num_qo_heads, head_dim]`` is packed. ``backend``: "auto" (FA3
    on sm90 when its ``_sm90`` module is available; the prebuilt wheel has none for single
    prefill), "fa2" or "fa3"; an fp8 (``float8_e4m3fn``) k/v runs on FA2. Other arguments
    as :func:`single_decode`; lse is ``[qo_len, num_qo_heads]``."""
    if not isinstance(backend, str):
        raise TypeError(f"backend: expected 'auto', 'fa2' or 'fa3', got {backend!r}")
    return _single("single_prefill", q, k, v, causal, kv_layout, window_left,
                   logits_soft_cap, sm_scale, rope_scale, rope_theta, out, lse, return_lse,
                   backend, None, stream)
