# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The typed ``run_moe`` call of the CUTLASS fused MoE runner (``CutlassFusedMoE.fused_moe``,
flashinfer_cy/kernels/fused_moe.py): every argument checked, then one GIL-free call.

What the runner computes (FlashInfer 0.6.3, fused_moe/cutlass_backend), per token ``t`` with
experts ``e_j`` and weights ``s_j`` (``token_selected_experts``, ``token_final_scales``,
``[T, top_k]``)::

    h_j   = fc1_expert_weights[e_j] @ input[t] (+ fc1_expert_biases[e_j])     # [2 * inter]
    a_j   = act(h_j[inter:]) * h_j[:inter]       # gated: swiglu (silu) or geglu (gelu)
    out[t] = sum_j s_j * (fc2_expert_weights[e_j] @ a_j (+ fc2_expert_biases[e_j]))

``fc1_expert_weights`` ``[E, 2 * inter, hidden]`` (the linear half first, the gate second),
``fc2_expert_weights`` ``[E, hidden, inter]``, ``E`` this rank's experts. Modes, as the
runner was made (``CutlassFusedMoE``):

* float16 / bfloat16 throughout: no ``quant_scales``;
* fp8 (e4m3) activations and weights, float16 or bfloat16 output, per-tensor scales:
  ``quant_scales = [fc1_dequant [E], fc2_quant [] or [E], fc2_dequant [E],
  fc1_input_dequant []]`` float32, as flashinfer-python builds them: GEMM1's fp32 result is
  multiplied by ``fc1_dequant[e]`` (input scale x fc1 weight scale), the activation by
  ``fc2_quant`` before it is rounded to fp8, GEMM2's result by ``fc2_dequant[e]``;
  ``fc1_input_dequant`` is read by the LoRA path only, but required;
* DeepSeek fp8 block scale (bfloat16 activations, fp8 weights): ``quant_scales =
  [fc1 [E, 2 * inter / 128, hidden / 128], fc2 [E, hidden / 128, inter / 128]]`` float32,
  one dequantisation scale per 128x128 weight block; the runner quantises activations to
  fp8 per 1x128 block itself. ``hidden`` and ``inter`` multiples of 128.

Expert ids are device values: their range ``[0, E * ep_size)`` is **not** checked (that
would need a device-to-host copy and a synchronisation on every call).

Releases: 0.6.3's run_moe (ARGUMENTS) allocates its workspace itself; 0.7.4's
(ARGUMENTS_074) takes four more arguments after ``swiglu_limit``, packed as 0.7.4's
``cutlass_fused_moe`` passes them here, and the caller's ``workspace_buffer``, sized by the
runner's ``get_workspace_size`` (WorkspaceSize) and taken from the stream's cache
(``workspace_for``). The computation is the same.
"""

from libc.stdint cimport int64_t, uint32_t, uintptr_t

from flashinfer_cy._abi.dlpack cimport kDLCUDA
from flashinfer_cy._abi.tvm_ffi cimport TVMFFIAny
from flashinfer_cy._core.array cimport new_device_array, scratch_buffer
from flashinfer_cy._core.binding cimport (Binding, CallFrame, frame_init, frame_release,
                                          pack_object, recording, set_bool, set_int,
                                          set_none, work_stream)
from flashinfer_cy._core.pinned cimport capture_status
from flashinfer_cy._core.runtime cimport Function, Object, take_result
from flashinfer_cy._core.stream cimport resolve_stream
from flashinfer_cy._core.tensor cimport (TensorSlot, DT_BF16, DT_E4M3, DT_F16, DT_F32, DT_I32,
                                         DT_U8, check_aligned, check_contiguous, check_cuda,
                                         check_disjoint, check_dtype, check_ndim, check_same_device,
                                         describe, dtype_name, dtype_of_key, numel,
                                         release_slot, shape_of, to_dltensor)
from flashinfer_cy._core.tensor_array cimport array_from_slots
from flashinfer_cy.kernels.attention cimport pdl_default, pdl_flag

from flashinfer_cy._core.array import DeviceArray

# run_moe's arguments (fused_moe.METHODS["run_moe"]), in the order of the C++ lambda.
cdef enum:
    OUTPUT = 0
    INPUT = 1
    EXPERT_IDS = 2
    EXPERT_SCALES = 3
    FC1_W = 4
    FC1_B = 5
    FC2_W = 6
    FC2_B = 7
    QUANT_SCALES = 8
    INPUT_SF = 9
    SWIGLU_ALPHA = 10
    SWIGLU_BETA = 11
    SWIGLU_LIMIT = 12
    TP_SIZE = 13
    TP_RANK = 14
    EP_SIZE = 15
    EP_RANK = 16
    CLUSTER_SIZE = 17
    CLUSTER_RANK = 18
    ENABLE_ALLTOALL = 19
    MIN_LATENCY = 20
    PROFILE_IDS = 21
    ENABLE_PDL = 22
    ACTIVATION = 23
    N_ARGS = 24

ARGUMENTS = ("output input token_selected_experts token_final_scales fc1_expert_weights "
             "fc1_expert_biases fc2_expert_weights fc2_expert_biases quant_scales input_sf "
             "swiglu_alpha swiglu_beta swiglu_limit tp_size tp_rank ep_size ep_rank "
             "cluster_size cluster_rank enable_alltoall min_latency_mode profile_ids "
             "enable_pdl base_activation_type").split()

# 0.7.4's run_moe (fused_moe.METHODS_074["run_moe"]): four arguments after swiglu_limit,
# every later one of 0.6.3's list SHIFT_074 further on, then two more at the end.
cdef enum:
    CLAMPED_RELU2_LIMIT = 13
    SITU_BETA = 14
    SITU_LINEAR_BETA = 15
    SWIZZLED_INPUT_SF = 16
    SHIFT_074 = 4
    WORKSPACE_BUFFER = 28
    NVFP4_4OVER6_CODE = 29
    N_ARGS_074 = 30

ARGUMENTS_074 = (ARGUMENTS[:TP_SIZE] + ["clamped_relu2_limit", "situ_beta",
                                        "situ_linear_beta", "swizzled_input_sf"]
                 + ARGUMENTS[TP_SIZE:] + ["workspace_buffer", "nvfp4_4over6_code"])
# What 0.7.4's cutlass_fused_moe passes for them in the modes here: no parameters of the
# activations it added; input_sf's layout flag at its default (no input_sf is given); the
# NVFP4 4over6 recipe "from the environment" (NVFP4_4OVER6_CODE_FROM_ENV: nvfp4_4over6 not
# given; read by NVFP4 modes only).
SWIZZLED_INPUT_SF_074 = True
NVFP4_4OVER6_CODE_074 = -1
# get_workspace_size's arguments, in order (fused_moe.METHODS_074["get_workspace_size"]).
WORKSPACE_SIZE_ARGUMENTS = ("num_rows hidden_size inter_size num_experts_total "
                            "experts_per_token tp_size tp_rank ep_size ep_rank "
                            "min_latency_mode base_activation_type").split()
cdef enum:
    N_WORKSPACE_KEY = 11
    MIN_LATENCY_KEY = 9  # the one bool among them
# The stream_scratch entry the eager calls' workspace is kept under.
WORKSPACE_SCRATCH = "fused MoE workspace"

# The runner's ActivationType values this call takes (flashinfer.fused_moe.ActivationType):
# the gated ones, whose fc1 is [E, 2 * inter, hidden].
ACTIVATIONS = {"swiglu": 3, "geglu": 4}
MAX_EXPERTS_PER_RANK = 256  # the single-kernel expert sort (fusedBuildExpertMapsSortFirstToken)
MAX_TOP_K = 8
BLOCK = 128                 # DeepSeek block scale: 128x128 weight blocks, 1x128 activations
cdef int64_t INT32_MAX = (1 << 31) - 1
_DTYPE_KEYS = {"float16": DT_F16, "bfloat16": DT_BF16, "float8_e4m3fn": DT_E4M3}


cdef class MoESpec:
    """A runner configuration as the checks need it (dtype keys, block scale, the
    ``hidden``/``inter`` alignment: 16 bytes of the narrower of activation and weight for
    TMA, 128 with block scale)."""
    cdef readonly uint32_t act, weight, out
    cdef readonly bint block_scale
    cdef readonly str out_name
    cdef readonly int64_t align

    def __init__(self, str act, str weight, str out, bint block_scale):
        self.act = _DTYPE_KEYS[act]
        self.weight = _DTYPE_KEYS[weight]
        self.out = _DTYPE_KEYS[out]
        self.out_name = out
        self.block_scale = block_scale
        self.align = BLOCK if block_scale else (16 if DT_E4M3 in (self.act, self.weight)
                                                else 8)

    @property
    def scale_names(self):
        """The names of the ``quant_scales`` entries this mode takes, in order."""
        if self.block_scale:
            return ("fc1_scales", "fc2_scales")
        if self.act == DT_E4M3:
            return ("fc1_dequant", "fc2_quant", "fc2_dequant", "fc1_input_dequant")
        return ()


cdef class WorkspaceSize:
    """0.7.x's ``get_workspace_size`` on one runner (``line``: its table line, ``fn``: its
    Function on the runner), the last answer kept: a decode loop's every layer asks for one
    shape. Called straight through its Function (host arithmetic in the runner, no
    tensors), never recorded by a prepare() in progress: a prepared launch is the run_moe
    call only."""

    cdef Binding line
    cdef Function fn
    cdef int64_t key[N_WORKSPACE_KEY]
    cdef int64_t nbytes
    cdef bint known
    cdef readonly int64_t asked  # how often the runner was asked (tests: the cache works)

    def __init__(self, Binding line not None, Function fn not None):
        if list(line.names) != WORKSPACE_SIZE_ARGUMENTS:
            raise AssertionError(f"{line!r}: packed as {WORKSPACE_SIZE_ARGUMENTS}")
        self.line = line
        self.fn = fn

    cdef int64_t bytes_for(self, int64_t* key, int device) except -1:
        """The runner's answer for ``key`` (WORKSPACE_SIZE_ARGUMENTS' values in order,
        min_latency_mode as 0/1)."""
        cdef TVMFFIAny args[N_WORKSPACE_KEY]
        cdef TVMFFIAny result
        cdef int i
        if self.known:
            for i in range(N_WORKSPACE_KEY):
                if self.key[i] != key[i]:
                    break
            else:
                return self.nbytes
        for i in range(N_WORKSPACE_KEY):
            args[i].type_index = 2 if i == MIN_LATENCY_KEY else 1  # kTVMFFIBool / kTVMFFIInt
            args[i].zero_padding = 0
            args[i].v_int64 = key[i]
        result.type_index = 0
        result.v_int64 = 0
        # on the operands' device (the runner may ask the device it sizes for), no stream
        self.fn.call(args, N_WORKSPACE_KEY, &result, kDLCUDA, device, NULL, False)
        self.asked += 1
        if result.type_index != 1 or result.v_int64 < 0:
            got = take_result(&result)
            raise TypeError(f"{self.line.symbol}: expected a byte count (int >= 0) from the "
                            f"runner, got {got!r}")
        # key and answer together, the GIL held: another thread never sees half of them
        for i in range(N_WORKSPACE_KEY):
            self.key[i] = key[i]
        self.nbytes = result.v_int64
        self.known = True
        return self.nbytes


cdef object workspace_for(WorkspaceSize ws, int64_t* key, int device, uintptr_t stream):
    """The 1-D uint8 workspace 0.7.x's run_moe takes, at least the bytes its
    get_workspace_size answers for ``key``: the stream's cached one (grown to that size
    when smaller), or a new one where sharing it would break stream order -- while
    prepare() records (the prepared launch keeps its own: it may run on another stream)
    and while the stream captures a graph (the graph keeps its own; the cached one may be
    regrown, and freed, after the capture)."""
    cdef int64_t nbytes = ws.bytes_for(key, device)
    if recording() or capture_status(<void*>stream, device) != 0:
        return new_device_array(1, &nbytes, dtype_of_key(DT_U8), device, <void*>stream)
    return scratch_buffer(WORKSPACE_SCRATCH, device, stream, nbytes, False, "")


cdef int activation_code(object value) except -1:
    if isinstance(value, str) and value.lower() in ACTIVATIONS:
        return ACTIVATIONS[value.lower()]
    if not isinstance(value, bool) and isinstance(value, int) and value in ACTIVATIONS.values():
        return value
    raise ValueError(f"activation_type: expected one of {sorted(ACTIVATIONS)} (or "
                     f"flashinfer's ActivationType.Swiglu / .Geglu, 3 / 4), got {value!r}; the "
                     f"non-gated activations are not supported by this call")


cdef int64_t rank_arg(object value, str name, int64_t lo, int64_t hi) except -1:
    """An int in [lo, hi)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected an int, got {value!r}")
    if not lo <= value < hi:
        raise ValueError(f"{name}: expected {lo} <= {name} < {hi}, got {value}")
    return value


cdef int check_shape(TensorSlot* s, str name, tuple shape, str what) except -1:
    if shape_of(s) != shape:
        raise ValueError(f"{name}: expected shape {shape} ({what}), got {describe(s)}")
    return 0


cdef int device_tensor(Binding b, CallFrame* f, int i, object obj, str name,
                       uint32_t dtype, int ndim) except -1:
    """Pack ``obj`` into slot ``i``: on ``input``'s device (slot INPUT, checked first),
    ``dtype``, ``ndim`` dimensions, contiguous, 16-byte aligned (the runner's CUTLASS
    kernels read raw pointers with 16-byte vector and TMA loads)."""
    cdef TensorSlot* s = &f.slots[i]
    b.tensor_as(f, i, obj, name)
    if i == INPUT:
        check_cuda(s, name)
    else:
        check_same_device(s, name, &f.slots[INPUT], "input")
    check_dtype(s, name, dtype)
    check_ndim(s, name, ndim)
    if numel(s) > 0:
        check_contiguous(s, name)
        check_aligned(s, name, 16)
    return 0


cdef int check_scale(TensorSlot* s, str name, TensorSlot* dev, tuple shape, str what,
                     bint scalar_ok) except -1:
    """One ``quant_scales`` entry: float32 on ``dev``'s device, contiguous, ``shape`` (or a
    0-d scalar when ``scalar_ok``)."""
    check_same_device(s, name, dev, "input")
    check_dtype(s, name, DT_F32)
    if not (scalar_ok and s.dl.ndim == 0):
        check_shape(s, name, shape, what)
    if numel(s) > 0:
        check_contiguous(s, name)
        check_aligned(s, name, 4)
    return 0


cdef object quant_scales_array(MoESpec spec, object quant_scales, TensorSlot* dev,
                               int64_t experts, int64_t hidden, int64_t inter):
    """``quant_scales`` checked for the mode and made an ``ffi::Array`` of Tensor objects
    (None for the 16-bit modes)."""
    cdef TensorSlot slots[4]
    cdef int i, n
    names = spec.scale_names
    if not names:
        if quant_scales is not None and len(quant_scales) != 0:
            raise ValueError(f"quant_scales: the {dtype_name(spec.act)} mode takes no scales, "
                             f"got {len(quant_scales)} tensors")
        return None
    if quant_scales is None or isinstance(quant_scales, (str, bytes)) or not hasattr(
            quant_scales, "__len__"):
        raise TypeError(f"quant_scales: expected a list of {len(names)} float32 tensors "
                        f"({', '.join(names)}), got {quant_scales!r}")
    owners = tuple(quant_scales)
    n = len(owners)
    if n != len(names):
        raise ValueError(f"quant_scales: expected {len(names)} tensors ({', '.join(names)}), "
                         f"got {n}")
    for i in range(n):
        slots[i].keep = NULL
    try:
        for i in range(n):
            label = f"quant_scales[{i}] ({names[i]})"
            to_dltensor(owners[i], &slots[i], label)
        if spec.block_scale:
            check_scale(&slots[0], "quant_scales[0] (fc1_scales)", dev,
                        (experts, 2 * inter // BLOCK, hidden // BLOCK),
                        "experts, 2 * inter / 128, hidden / 128", False)
            check_scale(&slots[1], "quant_scales[1] (fc2_scales)", dev,
                        (experts, hidden // BLOCK, inter // BLOCK),
                        "experts, hidden / 128, inter / 128", False)
        else:
            check_scale(&slots[0], "quant_scales[0] (fc1_dequant)", dev, (experts,),
                        "experts", False)
            check_scale(&slots[1], "quant_scales[1] (fc2_quant)", dev, (experts,),
                        "a 0-d scalar or one per expert", True)
            check_scale(&slots[2], "quant_scales[2] (fc2_dequant)", dev, (experts,),
                        "experts", False)
            check_scale(&slots[3], "quant_scales[3] (fc1_input_dequant)", dev, (),
                        "a 0-d scalar", False)
        return array_from_slots(slots, owners, n)
    finally:
        for i in range(n):
            release_slot(&slots[i])


cdef int check_biases(MoESpec spec, Binding b, CallFrame* f, object fc1_b, object fc2_b,
                      int64_t experts, int64_t hidden, int64_t inter) except -1:
    if (fc1_b is None) != (fc2_b is None):
        raise ValueError("fc1_expert_biases, fc2_expert_biases: give both or neither (the "
                         "runner reads both when either is given)")
    if fc1_b is None:
        set_none(f, FC1_B)
        set_none(f, FC2_B)
        return 0
    device_tensor(b, f, FC1_B, fc1_b, "fc1_expert_biases", spec.out, 2)
    check_shape(&f.slots[FC1_B], "fc1_expert_biases", (experts, 2 * inter),
                "experts, 2 * inter")
    device_tensor(b, f, FC2_B, fc2_b, "fc2_expert_biases", spec.out, 2)
    check_shape(&f.slots[FC2_B], "fc2_expert_biases", (experts, hidden), "experts, hidden")
    return 0


def run_moe(MoESpec spec not None, Binding b not None, Function method not None,
            WorkspaceSize workspace, input, token_selected_experts, token_final_scales,
            fc1_expert_weights, fc2_expert_weights, quant_scales, fc1_expert_biases,
            fc2_expert_biases, input_sf, tp_size, tp_rank, ep_size, ep_rank, output,
            activation_type, enable_pdl, Object profile_ids, stream):
    """Check everything, then call ``method`` (the runner's ``run_moe``, of line ``b``)
    once; returns ``output`` (a DeviceArray on the call's stream when None).
    ``profile_ids``: an ``Array<int64>`` of the two tactic indices, already checked and in
    the runner's numbering, or None for the runner's defaults. ``workspace``: None for
    0.6.3's line (its runner allocates its own), the runner's get_workspace_size for
    0.7.4's (ARGUMENTS_074: the workspace and the added arguments are packed too)."""
    cdef CallFrame f
    cdef TVMFFIAny result
    cdef TensorSlot* x
    cdef void* handle = NULL
    cdef int64_t tokens, hidden, top_k, experts, inter, tp_n, ep_n
    cdef int64_t key[N_WORKSPACE_KEY]
    cdef int i, dev
    cdef int t = 0 if workspace is None else SHIFT_074  # where 0.6.3's tp_size.. moved
    cdef int pdl = pdl_flag(enable_pdl)
    cdef int act = activation_code(activation_type)
    if b.nargs != (N_ARGS if workspace is None else N_ARGS_074):
        raise AssertionError(f"{b!r}: run_moe packs {N_ARGS} arguments without a workspace, "
                             f"{N_ARGS_074} with one")
    if stream is not None:
        resolve_stream(stream, &handle)  # a bad stream is refused before anything else
    tp_n = rank_arg(tp_size, "tp_size", 1, INT32_MAX)
    rank_arg(tp_rank, "tp_rank", 0, tp_n)
    ep_n = rank_arg(ep_size, "ep_size", 1, INT32_MAX)
    rank_arg(ep_rank, "ep_rank", 0, ep_n)
    if input_sf is not None:
        raise ValueError("input_sf: the block scale factors of nvfp4 / mxfp8 inputs; none of "
                         "the runner's modes here takes them")
    frame_init(&f, b.nargs)
    try:
        device_tensor(b, &f, INPUT, input, "input", spec.act, 2)
        x = &f.slots[INPUT]
        tokens, hidden = x.dl.shape[0], x.dl.shape[1]
        device_tensor(b, &f, EXPERT_IDS, token_selected_experts, "token_selected_experts",
                      DT_I32, 2)
        top_k = f.slots[EXPERT_IDS].dl.shape[1]
        check_shape(&f.slots[EXPERT_IDS], "token_selected_experts", (tokens, top_k),
                    "tokens, top_k")
        if not 1 <= top_k <= MAX_TOP_K:
            raise ValueError(f"token_selected_experts: top_k (dimension 1) must be 1.."
                             f"{MAX_TOP_K}, got {describe(&f.slots[EXPERT_IDS])}")
        device_tensor(b, &f, EXPERT_SCALES, token_final_scales, "token_final_scales",
                      DT_F32, 2)
        check_shape(&f.slots[EXPERT_SCALES], "token_final_scales", (tokens, top_k),
                    "tokens, top_k, as token_selected_experts")
        device_tensor(b, &f, FC2_W, fc2_expert_weights, "fc2_expert_weights", spec.weight, 3)
        experts, inter = f.slots[FC2_W].dl.shape[0], f.slots[FC2_W].dl.shape[2]
        check_shape(&f.slots[FC2_W], "fc2_expert_weights", (experts, hidden, inter),
                    "experts, hidden, inter")
        device_tensor(b, &f, FC1_W, fc1_expert_weights, "fc1_expert_weights", spec.weight, 3)
        check_shape(&f.slots[FC1_W], "fc1_expert_weights", (experts, 2 * inter, hidden),
                    "experts, 2 * inter, hidden: the gated activations' linear and gate "
                    "halves")
        if not 1 <= experts <= MAX_EXPERTS_PER_RANK:
            raise ValueError(f"fc2_expert_weights: 1..{MAX_EXPERTS_PER_RANK} experts on this "
                             f"rank (dimension 0), got {experts}")
        if top_k > experts * ep_n:
            raise ValueError(f"token_selected_experts: top_k {top_k} exceeds the {experts * ep_n}"
                             f" experts (fc2_expert_weights' {experts} x ep_size {ep_n})")
        for name, size in (("hidden", hidden), ("inter", inter)):
            if size <= 0 or size % spec.align:
                raise ValueError(
                    f"fc2_expert_weights: {name} = {size} must be a positive multiple of "
                    f"{spec.align} (" + ("128x128 weight blocks" if spec.block_scale else
                                         "16-byte TMA rows") + ")")
        if tokens * top_k > INT32_MAX:
            raise ValueError(f"input: {tokens} tokens x top_k {top_k} routed rows exceed the "
                             f"runner's int32 row indices")
        check_biases(spec, b, &f, fc1_expert_biases, fc2_expert_biases, experts, hidden, inter)
        scales = quant_scales_array(spec, quant_scales, x, experts, hidden, inter)
        dev = x.dl.device.device_id
        run_on = None  # the stream the runner will run on, asked once
        if output is None:
            # Allocated on the stream the runner will run on (stream-ordered, no sync).
            run_on = work_stream(b, &f, stream, dev)
            output = DeviceArray.empty((tokens, hidden), spec.out_name, dev, run_on)
        device_tensor(b, &f, OUTPUT, output, "output", spec.out, 2)
        check_shape(&f.slots[OUTPUT], "output", (tokens, hidden), "tokens, hidden")
        check_disjoint(&f.slots[OUTPUT], "output", x, "input")
        if tokens == 0:
            return output  # nothing routed: no call
        if scales is None:
            set_none(&f, QUANT_SCALES)
        else:
            pack_object(&f, QUANT_SCALES, <Object>scales)
        for i in (INPUT_SF, SWIGLU_ALPHA, SWIGLU_BETA, SWIGLU_LIMIT):
            set_none(&f, i)
        set_int(&f, TP_SIZE + t, tp_n)
        set_int(&f, TP_RANK + t, tp_rank)
        set_int(&f, EP_SIZE + t, ep_n)
        set_int(&f, EP_RANK + t, ep_rank)
        set_int(&f, CLUSTER_SIZE + t, 1)  # run_moe refuses anything else (min-latency only)
        set_int(&f, CLUSTER_RANK + t, 0)
        set_bool(&f, ENABLE_ALLTOALL + t, False)
        set_bool(&f, MIN_LATENCY + t, False)
        if profile_ids is None:
            set_none(&f, PROFILE_IDS + t)
        else:
            pack_object(&f, PROFILE_IDS + t, profile_ids)
        set_bool(&f, ENABLE_PDL + t, pdl_default(dev) if pdl < 0 else pdl)
        set_int(&f, ACTIVATION + t, act)
        if workspace is not None:
            for i in (CLAMPED_RELU2_LIMIT, SITU_BETA, SITU_LINEAR_BETA):
                set_none(&f, i)
            set_bool(&f, SWIZZLED_INPUT_SF, SWIZZLED_INPUT_SF_074)
            set_int(&f, NVFP4_4OVER6_CODE, NVFP4_4OVER6_CODE_074)
            # the sizes run_moe sizes its workspace by (getWorkspaceInfo): experts in all
            # ranks, fc2's inter (no packed weights here), not min-latency
            key[0] = tokens
            key[1] = hidden
            key[2] = inter
            key[3] = experts * ep_n
            key[4] = top_k
            key[5] = tp_n
            key[6] = tp_rank
            key[7] = ep_n
            key[8] = ep_rank
            key[9] = 0
            key[10] = act
            if run_on is None:
                run_on = work_stream(b, &f, stream, dev)
            # held here until the call returns: the slot only describes it, and a workspace
            # of this call's own has no other owner (a prepared launch keeps what it packs)
            held = workspace_for(workspace, key, dev, run_on)
            b.tensor_as(&f, WORKSPACE_BUFFER, held, "workspace_buffer")
        b.invoke_on(method, &f, stream, &result)
        return output
    finally:
        frame_release(&f)
