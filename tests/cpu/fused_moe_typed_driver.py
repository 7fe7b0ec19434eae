"""Run ``CutlassFusedMoE.fused_moe`` / ``prepare`` and the environment allocator against the
CPU stand-ins (fake_fused_moe.cc as ``fused_moe_90``, fake_cudart.c as libcudart.so.13).

Executed in a subprocess by test_fused_moe_typed.py (the stand-in is registered under the
real module URI, which must not leak into other tests' processes):

    python fused_moe_typed_driver.py <stand-in .so> <scenario> [argument]

The module is 0.6.3's stand-in loaded as 0.6.3, or, with FLASHINFER_CY_KERNEL_DIR set, the
``fused_moe_90`` of that kernel dir as its marker says (0.7.4's stand-in, -DFAKE_MOE_074, in a
dir marked 0.7.4); FUSED_MOE_LABEL=<release> loads the .so as that release instead (a
mislabelled module).

Host numpy buffers are described as CUDA tensors (the fake libcudart's device memory is host
memory too). The stand-in's ``run_moe`` allocates its workspace through TVM-FFI's environment
allocator (0.6.3) or checks the one it is given (0.7.4), writes all of it, and records what it
got (``fake_moe_last_run``: RunInfo in fake_fused_moe.cc); its RunRecord in ``output``
carries the scalars.
"""

from __future__ import annotations

import ctypes
import gc
import os
import re
import sys

import numpy as np

import flashinfer_cy as fc
from flashinfer_cy._core import runtime
from flashinfer_cy._core.array import stream_scratch
from flashinfer_cy._core.tensor_array import tensor_array, tensor_array_live
from flashinfer_cy.errors import KernelRuntimeError, KernelTypeError, KernelVersionError
from flashinfer_cy.kernels import fused_moe as moe
from flashinfer_cy.kernels.fused_moe_run import WORKSPACE_SCRATCH
from cuda_guard import raises
from fused_moe_driver import (ACTIVATION, CALLS_ON_RUNNER, ENABLE_PDL, EP_RANK, EP_SIZE,
                              FLAGS, METHOD, OPTIONAL_MASK, PROFILE0, PROFILE1, PROFILE_COUNT,
                              QUANT_SCALE_COUNT, RECORD_SLOTS, TOP_K, TP_RANK, TP_SIZE,
                              cuda_view)
from producers import ReadOnly

# RunInfo slots of fake_fused_moe.cc
(WS_BYTES, WS_DATA, WS_DEV_TYPE, WS_DEV_ID, ENV_STREAM, INPUT_DATA, OUTPUT_DATA,
 EXPERT_IDS_DATA, SCALES_DATA, FC1_DATA, FC2_DATA, FC1_BIAS_DATA, FC2_BIAS_DATA,
 QUANT_COUNT, WS_GIVEN, WS_NEEDED, SWIZZLED_INPUT_SF, NVFP4_4OVER6_CODE, NEW_OPTIONAL_MASK,
 FREES_AT_RUN, QUANT_FIRST) = range(21)
QUANT_STRIDE = 7
KDL_CUDA = 2
F32_WORD = (2 << 16) | 32  # dtype_word of float32
FUSED_FINALIZE, HUMMING = 16, 32  # RunRecord flags of 0.7.4's init

CUDART = ctypes.CDLL("libcudart.so.13")
CUDART.fake_cudart_last_malloc_stream.restype = ctypes.c_void_p
CUDART.fake_cudart_async_frees.restype = ctypes.c_long
CUDART.fake_cudart_fail_malloc_over.argtypes = [ctypes.c_size_t]
CUDART.fake_cudart_set_capturing.argtypes = [ctypes.c_void_p]
CUDART.fake_cudart_calls.restype = ctypes.c_char_p
RELEASE = None  # the module's release (main)
ALLOCATOR = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                             ctypes.c_void_p)
FFI = None  # libtvm_ffi's environment entry points, once it is loaded (main)


def load_ffi():
    """libtvm_ffi is loaded RTLD_GLOBAL (by the module load): its entry points resolve
    from the process."""
    global FFI
    FFI = ctypes.CDLL(None)
    FFI.TVMFFIEnvGetDLPackManagedTensorAllocator.restype = ctypes.c_void_p
    FFI.TVMFFIEnvSetDLPackManagedTensorAllocator.argtypes = [ctypes.c_void_p, ctypes.c_int,
                                                             ctypes.c_void_p]

MODES = {  # name -> (CutlassFusedMoE arguments, activation storage, weight storage)
    "bf16": (("bfloat16", "bfloat16"), {}, "bfloat16", "bfloat16"),
    "fp16": (("float16", "float16"), {}, "float16", "float16"),
    "fp8": (("float8_e4m3fn", "float8_e4m3fn", "bfloat16"), {}, "float8_e4m3fn",
            "float8_e4m3fn"),
    "block": (("bfloat16", "float8_e4m3fn"), {"block_scale": True}, "bfloat16",
              "float8_e4m3fn"),
}
STORAGE = {"bfloat16": np.uint16, "float16": np.float16, "float8_e4m3fn": np.uint8}


def last_run():
    return MODULE.function("fake_moe_last_run")().tolist()


def workspace_asked():
    """[get_workspace_size calls, its last 11 arguments, its last answer] (0.7.4)."""
    return MODULE.function("fake_moe_workspace_asked")().tolist()


def cudart_calls(name):
    """How often the stand-in libcudart's entry point ``name`` was called."""
    n, i = ctypes.c_long(), 0
    while (got := CUDART.fake_cudart_calls(i, ctypes.byref(n))) is not None:
        if got.decode() == name:
            return n.value
        i += 1
    raise KeyError(name)


def allocator_now():
    """The allocator in this thread's TVM-FFI slot (0: none)."""
    return FFI.TVMFFIEnvGetDLPackManagedTensorAllocator() or 0


def async_frees():
    last = ctypes.c_void_p()
    n = CUDART.fake_cudart_async_frees(ctypes.byref(last))
    return n, last.value or 0


class Case:
    """Host buffers of one fused MoE call in ``mode``, as CUDA views (``views()`` makes a
    fresh set of keyword arguments for ``fused_moe``)."""

    def __init__(self, mode, tokens=4, hidden=None, inter=None, experts=8, top_k=2,
                 seed=0):
        rng = np.random.default_rng(seed)
        _, _, act, weight = MODES[mode]
        block = mode == "block"
        hidden = hidden or (256 if block else 64)
        inter = inter or (128 if block else 32)
        self.mode, self.act, self.weight = mode, act, weight
        self.tokens, self.hidden, self.inter, self.experts, self.top_k = (
            tokens, hidden, inter, experts, top_k)
        self.out_dtype = "float16" if mode == "fp16" else "bfloat16"
        self.bufs = dict(
            input=np.zeros((tokens, hidden), STORAGE[act]),
            token_selected_experts=rng.integers(0, experts, (tokens, top_k)).astype(np.int32),
            token_final_scales=rng.random((tokens, top_k)).astype(np.float32),
            fc1_expert_weights=np.zeros((experts, 2 * inter, hidden), STORAGE[weight]),
            fc2_expert_weights=np.zeros((experts, hidden, inter), STORAGE[weight]),
            output=np.full((tokens, hidden), 0xFFFF, np.uint16))
        self.dtypes = dict(input=act, fc1_expert_weights=weight, fc2_expert_weights=weight,
                           output=self.out_dtype)
        self.scales = []
        if mode == "fp8":
            self.scales = [rng.random(experts).astype(np.float32) + 0.5,
                           np.array(0.25 + rng.random(), np.float32),
                           rng.random(experts).astype(np.float32) + 0.5,
                           np.array(1.5, np.float32)]
        elif block:
            self.scales = [rng.random((experts, 2 * inter // 128, hidden // 128)
                                      ).astype(np.float32) + 0.5,
                           rng.random((experts, hidden // 128, inter // 128)
                                      ).astype(np.float32) + 0.5]

    def view(self, name):
        return cuda_view(self.bufs[name], self.dtypes.get(name))

    def views(self, **changes):
        kw = {name: self.view(name) for name in self.bufs}
        kw["quant_scales"] = [cuda_view(s) for s in self.scales] if self.scales else None
        kw.update(changes)
        return kw

    def runner(self):
        args, kwargs, _, _ = MODES[self.mode]
        return fc.CutlassFusedMoE(*args, **kwargs)


def check_record(case, got_output, tp=(1, 0), ep=(1, 0), act=3, **expect):
    """The stand-in's record of the last call matches ``case``'s buffers. 0.6.3: the
    runner allocated its workspace. 0.7.4: it was given one of at least the bytes its
    get_workspace_size answered for exactly this call's sizes (``tp``, ``ep``: (size,
    rank), ``act``: the activation code), and the arguments 0.7.4 added got upstream's
    values (init's flags too)."""
    info = last_run()
    b = case.bufs
    assert info[WS_DATA] != 0 and (info[WS_DEV_TYPE], info[WS_DEV_ID]) == (KDL_CUDA, 0), info
    if RELEASE == "0.7.4":
        asked = workspace_asked()
        assert asked[1:12] == [case.tokens, case.hidden, case.inter, case.experts * ep[0],
                               case.top_k, tp[0], tp[1], ep[0], ep[1], 0, act], asked
        assert info[WS_GIVEN] == 1 and info[WS_NEEDED] == asked[12], (info, asked)
        assert info[WS_BYTES] >= asked[12], (info, asked)
        assert (info[SWIZZLED_INPUT_SF], info[NVFP4_4OVER6_CODE], info[NEW_OPTIONAL_MASK]) \
            == (1, -1, 0), info
        flags = record_of(case)[FLAGS] if info[OUTPUT_DATA] == b["output"].ctypes.data \
            else None
        assert flags is None or flags & (FUSED_FINALIZE | HUMMING) == FUSED_FINALIZE, flags
    else:
        assert info[WS_GIVEN] == 0 and info[WS_BYTES] == 4096 + 64 * case.tokens * case.top_k
        assert info[WS_NEEDED] == info[WS_BYTES], info
    for slot, name in ((INPUT_DATA, "input"), (EXPERT_IDS_DATA, "token_selected_experts"),
                       (SCALES_DATA, "token_final_scales"), (FC1_DATA, "fc1_expert_weights"),
                       (FC2_DATA, "fc2_expert_weights")):
        assert info[slot] == b[name].ctypes.data, (name, info)
    assert info[OUTPUT_DATA] == got_output, (info[OUTPUT_DATA], got_output)
    scales = expect.get("scales", case.scales)
    assert info[QUANT_COUNT] == (len(scales) if scales else -1), info
    for i, s in enumerate(scales):
        q = info[QUANT_FIRST + i * QUANT_STRIDE:QUANT_FIRST + (i + 1) * QUANT_STRIDE]
        shape = list(s.shape) + [-1] * (3 - s.ndim)
        assert q[:4] == [s.ndim] + shape, (i, q, s.shape)
        assert q[4] == F32_WORD and q[5] == s.ctypes.data, (i, q)  # the caller's memory
        assert q[6] == int(np.float32(s.reshape(-1)[0]) * 1000000), (i, q, s.reshape(-1)[0])
    return info


def record_of(case):
    return case.bufs["output"].view(np.int64).reshape(-1)[:RECORD_SLOTS]


# --------------------------------------------------------------------------- allocator

def scenario_allocator_on_the_call_stream():
    """Every call installs the allocator for its duration: the workspace comes from
    cudaMallocAsync on the call's stream and goes back on it before the call returns;
    the thread's slot is empty again afterwards."""
    case = Case("bf16")
    m = case.runner()
    assert moe.METHODS["run_moe"].env_alloc and moe.METHODS["run_gemm_profile"].env_alloc
    assert moe.METHODS["run_moe_min_latency"].env_alloc and not moe.INIT.env_alloc
    assert allocator_now() == 0
    for stream in (0x5150, 0x7770, 0):
        frees = async_frees()[0]
        out = m.fused_moe(**case.views(), stream=stream)
        info = check_record(case, case.bufs["output"].ctypes.data)
        assert info[ENV_STREAM] == stream, (info[ENV_STREAM], stream)
        assert (CUDART.fake_cudart_last_malloc_stream() or 0) == stream
        assert async_frees() == (frees + 1, stream), (async_frees(), frees, stream)
        assert runtime.env_alloc_live() == 0
        assert allocator_now() == 0, "the thread's allocator slot was not restored"
        assert out is not None


def scenario_without_allocator_the_call_fails():
    """The same run_moe line without env_alloc: 0.6.3's runner cannot allocate its
    workspace (what every call would do if the allocator were not installed)."""
    case = Case("bf16")
    m = case.runner()
    bare = fc.Binding(moe.URI, "run_moe", moe.METHODS["run_moe"].signature, device="input",
                      method_of="init")
    assert not bare.env_alloc
    v = case.views()
    args = [v[n] for n in ("output", "input", "token_selected_experts", "token_final_scales",
                           "fc1_expert_weights")] + [None, v["fc2_expert_weights"]] + \
        [None] * 6 + [1, 0, 1, 0, 1, 0, False, False, None, False, 3]
    try:
        bare(*args, method=m.method("run_moe"))
    except KernelRuntimeError as e:
        assert "allocator is nullptr" in str(e), e
    else:
        raise AssertionError("run_moe allocated without an allocator installed")
    moe.METHODS["run_moe"](*args, method=m.method("run_moe"))  # the table's line: allocates
    assert last_run()[WS_DATA] != 0


def scenario_previous_allocator_restored():
    """An allocator already in the thread's slot (tvm_ffi's torch one, say) is not used
    during the call and is back after it, after a failing call too."""
    used = []
    sentinel = ALLOCATOR(lambda *a: used.append(a) or -1)
    address = ctypes.cast(sentinel, ctypes.c_void_p).value
    assert FFI.TVMFFIEnvSetDLPackManagedTensorAllocator(address, 0, None) == 0
    case = Case("fp16")
    m = case.runner()
    m.fused_moe(**case.views())
    assert not used and allocator_now() == address
    CUDART.fake_cudart_fail_malloc_over(64)
    try:
        m.fused_moe(**case.views(), stream=0x99)
    except KernelRuntimeError as e:
        assert "cudaMallocAsync" in str(e) and "0x99" in str(e), e
    else:
        raise AssertionError("a failed cudaMallocAsync was not an error")
    finally:
        CUDART.fake_cudart_fail_malloc_over(ctypes.c_size_t(-1).value)
    assert not used and allocator_now() == address and runtime.env_alloc_live() == 0
    FFI.TVMFFIEnvSetDLPackManagedTensorAllocator(None, 0, None)


def scenario_profile_workspace_lives_with_the_runner():
    """run_gemm_profile's preparation keeps a workspace in the runner (upstream's
    mProfileWorkspace): freed on the stream it was allocated on, when the runner goes."""
    case = Case("bf16")
    m = case.runner()
    v = case.views()
    m.call("run_gemm_profile", v["input"], v["fc1_expert_weights"], None,
           v["fc2_expert_weights"], None, 2, 1, 0, 1, 0, 1, 0, False, False, 1, -1, True,
           False, 3, stream=0x4242)
    assert runtime.env_alloc_live() == 1 and allocator_now() == 0
    m.call("run_gemm_profile", v["input"], v["fc1_expert_weights"], None,
           v["fc2_expert_weights"], None, 2, 1, 0, 1, 0, 1, 0, False, False, 2, 0, False,
           False, 3, stream=0x4242)
    assert runtime.env_alloc_live() == 1  # no preparation: the same workspace
    frees = async_frees()[0]
    del m, v
    gc.collect()
    assert runtime.env_alloc_live() == 0
    assert async_frees() == (frees + 1, 0x4242), async_frees()


# --------------------------------------------------------------------------- typed calls

def scenario_modes_record(mode):
    """fused_moe packs every argument where the runner reads it, for ``mode``: the operand
    pointers, quant_scales as an Array of Tensors over the caller's memory, the scalars."""
    case = Case(mode, tokens=5, top_k=4 if mode != "fp16" else 1, experts=16)
    m = case.runner()
    assert m.release == RELEASE and m.methods == moe.RELEASE_METHODS[RELEASE]
    g1, g2 = m.tactic_counts
    # the GEMM2 index as the runner numbers it: 0.7.4's within the combined list
    at2 = g1 if RELEASE == "0.7.4" else 0
    before = sys.getrefcount(case.scales[0]) if case.scales else None
    for n, (kw, want) in enumerate((
            ({}, dict(profile=(-1, -99, -99), act=3, pdl=1, tp=(1, 0), ep=(1, 0))),
            (dict(profile_ids=(g1 - 1, g2 - 1), activation_type="geglu", enable_pdl=False,
                  tp_size=4, tp_rank=3, ep_size=2, ep_rank=1),
             dict(profile=(2, g1 - 1, at2 + g2 - 1), act=4, pdl=0, tp=(4, 3), ep=(2, 1))),
            (dict(profile_ids=[-1, 0], activation_type=3),
             dict(profile=(2, -1, at2), act=3, pdl=1, tp=(1, 0), ep=(1, 0))),
            (dict(profile_ids=(0, -1)), dict(profile=(2, 0, -1), act=3, pdl=1, tp=(1, 0),
                                             ep=(1, 0)))), 1):
        args = case.views(**kw)
        assert m.fused_moe(**args) is args["output"]
        check_record(case, case.bufs["output"].ctypes.data, tp=want["tp"], ep=want["ep"],
                     act=want["act"])
        r = record_of(case)
        assert r[METHOD] == 1 and r[CALLS_ON_RUNNER] == n, r
        assert (r[PROFILE_COUNT], r[PROFILE0], r[PROFILE1]) == want["profile"], r
        assert r[ACTIVATION] == want["act"] and r[ENABLE_PDL] == want["pdl"], r
        assert (r[TP_SIZE], r[TP_RANK]) == want["tp"] and (r[EP_SIZE], r[EP_RANK]) == want["ep"]
        assert r[TOP_K] == case.top_k
        assert r[OPTIONAL_MASK] == (1 | (8 if case.scales else 0)), r  # final scales (+ quant)
        assert r[QUANT_SCALE_COUNT] == (len(case.scales) if case.scales else -1)
    m.fused_moe(**case.views(profile_ids=(1, 0)))
    try:  # True == 1: the pair made for (1, 0) must not answer for it
        m.fused_moe(**case.views(profile_ids=(True, 0)))
    except TypeError as e:
        assert "profile_ids" in str(e), e
    else:
        raise AssertionError("profile_ids took a bool")
    assert tensor_array_live() == 0 and runtime.env_alloc_live() == 0
    del args  # its views hold the scales
    if case.scales:
        gc.collect()
        assert sys.getrefcount(case.scales[0]) == before, "a scale's reference leaked"


def scenario_biases_and_scalar_forms():
    """Biases reach the runner; fc2_quant may be per expert; a read-only DLPack producer is
    fine for an input scale (its capsule is kept with the Tensor object)."""
    case = Case("fp8", experts=8)
    m = case.runner()
    b1 = np.zeros((8, 2 * case.inter), np.uint16)
    b2 = np.zeros((8, case.hidden), np.uint16)
    per_expert = np.full(8, 0.125, np.float32)
    scales = [case.scales[0], per_expert, case.scales[2], case.scales[3]]
    m.fused_moe(**case.views(fc1_expert_biases=cuda_view(b1, "bfloat16"),
                             fc2_expert_biases=cuda_view(b2, "bfloat16"),
                             quant_scales=[cuda_view(scales[0]), ReadOnly(cuda_view(per_expert)),
                                           cuda_view(scales[2]), cuda_view(scales[3])]))
    info = check_record(case, case.bufs["output"].ctypes.data, scales=scales)
    assert (info[FC1_BIAS_DATA], info[FC2_BIAS_DATA]) == (b1.ctypes.data, b2.ctypes.data)
    assert record_of(case)[OPTIONAL_MASK] == 1 | 2 | 4 | 8
    assert tensor_array_live() == 0


def scenario_output_allocated_on_the_call_stream():
    case = Case("bf16", tokens=3)
    m = case.runner()
    out = m.fused_moe(**case.views(output=None), output_dtype="bfloat16", stream=0x6060)
    assert isinstance(out, fc.DeviceArray) and out.shape == (3, case.hidden), out
    assert out.dtype == "bfloat16"
    check_record(case, out.ptr)
    assert last_run()[ENV_STREAM] == 0x6060


def scenario_zero_tokens_makes_no_call():
    case = Case("bf16", tokens=0)
    m = case.runner()
    calls = MODULE.function("fake_moe_counts")().tolist()[3]
    out = m.fused_moe(**case.views())
    assert MODULE.function("fake_moe_counts")().tolist()[3] == calls
    assert out is not None and runtime.env_alloc_live() == 0


def scenario_prepared_decode():
    """prepare() for the decode shape (one token): checks and quant_scales once, then each
    launch is the same run_moe call. 0.6.3: with a fresh workspace on the launch's stream
    each time (the runner allocates it). 0.7.4: with the workspace prepare() allocated at
    the size get_workspace_size answered, the launch's own (not the stream's cached one),
    passed at every launch, on any stream, and freed with the launch."""
    case = Case("fp8", tokens=1, top_k=8, experts=64, hidden=128, inter=64)
    m = case.runner()
    v = case.views()
    try:
        fc.prepare(m.fused_moe, **v)
    except TypeError as e:
        assert "own prepare" in str(e), e
    else:
        raise AssertionError("fc.prepare took a method of an object with its own prepare()")
    m.fused_moe(**v, stream=0x3030)  # an eager call first: the stream's cached workspace
    eager_ws = last_run()[WS_DATA]
    calls = MODULE.function("fake_moe_counts")().tolist()[3]
    mallocs, frees = cudart_calls("cudaMallocAsync"), async_frees()[0]
    p = m.prepare(**v, profile_ids=(0, 0), stream=0x3030)
    assert p.num_calls == 1 and p.arguments[0][0] == "run_moe"
    assert p.result is v["output"]
    assert tensor_array_live() == 4, "the prepared launch holds quant_scales' Tensors"
    # prepare() made the tactic-count calls of the profile_ids check and no run_moe (0.7.4:
    # nor a get_workspace_size call: the eager call's answer for this shape is kept)
    assert MODULE.function("fake_moe_counts")().tolist()[3] == calls + 2
    if RELEASE == "0.7.4":
        assert cudart_calls("cudaMallocAsync") == mallocs + 1, "prepare() made no workspace"
        assert (CUDART.fake_cudart_last_malloc_stream() or 0) == 0x3030
    else:
        assert cudart_calls("cudaMallocAsync") == mallocs
    g1 = m.tactic_counts[0]
    case.bufs["output"][...] = 0xFFFF
    last_malloc = CUDART.fake_cudart_last_malloc_stream
    del v, m
    gc.collect()
    prepared_ws = None
    for n in (1, 2, 3):
        case.bufs["output"][...] = 0xFFFF
        mallocs = cudart_calls("cudaMallocAsync")
        assert p.launch() is p.result
        info = check_record(case, case.bufs["output"].ctypes.data)
        r = record_of(case)
        assert r[CALLS_ON_RUNNER] == n + 1, r
        assert (r[PROFILE0], r[PROFILE1]) == (0, g1 if RELEASE == "0.7.4" else 0), r
        assert last_run()[ENV_STREAM] == 0x3030 and (last_malloc() or 0) == 0x3030
        assert runtime.env_alloc_live() == 0 and allocator_now() == 0
        if RELEASE == "0.7.4":
            assert cudart_calls("cudaMallocAsync") == mallocs, "a launch allocated"
            assert info[WS_DATA] != eager_ws and info[WS_BYTES] == info[WS_NEEDED], info
            assert prepared_ws in (None, info[WS_DATA]), (prepared_ws, info)
            prepared_ws = info[WS_DATA]
    p.launch(stream=0x3131)
    assert last_run()[ENV_STREAM] == 0x3131
    if RELEASE == "0.7.4":
        assert last_run()[WS_DATA] == prepared_ws and async_frees()[0] == frees
    else:
        assert async_frees()[1] == 0x3131
    assert p._c_burst_us(3) >= 0 and last_run()[ENV_STREAM] == 0x3030
    del p
    gc.collect()
    assert tensor_array_live() == 0
    if RELEASE == "0.7.4":  # the launch's workspace went with it, on its stream
        assert async_frees() == (frees + 1, 0x3030), async_frees()
    assert MODULE.function("fake_moe_counts")().tolist()[:2] == [1, 1], "runner not released"


def scenario_tensor_array_ownership():
    """tensor_array: one Tensor object per tensor, each released once, with the producer's
    reference, when the Array goes; nothing is copied."""
    scales = [np.arange(n, dtype=np.float32) + 1 for n in (3, 5)]
    before = [sys.getrefcount(s) for s in scales]
    a = tensor_array([cuda_view(s) for s in scales])
    assert len(a) == 2 and tensor_array_live() == 2 and "2 objects" in repr(a)
    gc.collect()
    assert [sys.getrefcount(s) for s in scales] == [b + 1 for b in before]  # the views' owner
    del a
    gc.collect()
    assert tensor_array_live() == 0 and [sys.getrefcount(s) for s in scales] == before
    try:
        tensor_array([cuda_view(scales[0]), "not a tensor"])
    except TypeError as e:
        assert "tensors[1]" in str(e), e
    else:
        raise AssertionError("tensor_array took a string")
    assert tensor_array_live() == 0 and [sys.getrefcount(s) for s in scales] == before


# --------------------------------------------------------------------------- releases

def scenario_workspace_074():
    """0.7.4: the runner's get_workspace_size sizes the workspace (asked once per shape on
    a runner), the stream's cached workspace is passed (allocated on the call's stream at
    that size, kept, grown when a shape needs more, the old one freed on the stream), each
    stream has its own; no environment allocator anywhere."""
    assert not moe.METHODS_074["run_moe"].env_alloc and moe.METHODS_074["run_gemm_profile"].env_alloc
    case = Case("bf16", tokens=4)
    m = case.runner()
    size = m._runner.workspace
    stream = 0x5150

    def call(c, s=stream, **kw):
        mallocs, frees = cudart_calls("cudaMallocAsync"), async_frees()
        asked = workspace_asked()[0]
        m.fused_moe(**c.views(**kw), stream=s)
        info = check_record(c, c.bufs["output"].ctypes.data,
                            tp=(kw.get("tp_size", 1), kw.get("tp_rank", 0)),
                            ep=(kw.get("ep_size", 1), kw.get("ep_rank", 0)),
                            act=4 if kw.get("activation_type") == "geglu" else 3)
        assert info[ENV_STREAM] == s and allocator_now() == 0 and runtime.env_alloc_live() == 0
        return (info, workspace_asked()[0] - asked, cudart_calls("cudaMallocAsync") - mallocs,
                frees)

    info, asked, mallocs, _ = call(case)
    assert (asked, mallocs, size.asked) == (1, 1, 1), (asked, mallocs, size.asked)
    assert (CUDART.fake_cudart_last_malloc_stream() or 0) == stream
    cached = stream_scratch(WORKSPACE_SCRATCH, 0, stream, 0)
    assert info[WS_DATA] == cached.ptr and info[WS_BYTES] == info[WS_NEEDED], info
    assert cached.allocated_bytes == workspace_asked()[12], "not the size the runner answered"
    del cached  # (the cache's reference only: a grown buffer frees this one)

    again, asked, mallocs, _ = call(case)  # the same shape: no question, no allocation
    assert (asked, mallocs, size.asked) == (0, 0, 1) and again[WS_DATA] == info[WS_DATA]

    small, asked, mallocs, _ = call(Case("bf16", tokens=2))  # asked; the cached one suffices
    assert (asked, mallocs) == (1, 0) and small[WS_DATA] == info[WS_DATA]
    assert small[WS_NEEDED] < small[WS_BYTES] == info[WS_BYTES], small

    big, asked, mallocs, frees = call(Case("bf16", tokens=16))  # grown, the old one freed
    assert (asked, mallocs) == (1, 1) and big[WS_BYTES] == big[WS_NEEDED] > info[WS_BYTES]
    assert async_frees() == (frees[0] + 1, stream), async_frees()

    other, asked, mallocs, _ = call(Case("bf16", tokens=16), 0x7770)  # another stream's own
    assert (asked, mallocs) == (0, 1) and other[WS_DATA] != big[WS_DATA]
    assert (CUDART.fake_cudart_last_malloc_stream() or 0) == 0x7770

    # every size and rank, and the activation, reach get_workspace_size as run_moe sizes
    call(case, tp_size=4, tp_rank=3, ep_size=2, ep_rank=1, activation_type="geglu")
    call(case, ep_size=8, ep_rank=7)
    assert size.asked == 5, size.asked


def scenario_workspace_while_capturing_074():
    """0.7.4: while the stream captures a graph the call gets a workspace of its own at the
    size answered (the graph keeps it; the cached one may be regrown and freed after the
    capture), freed on that stream after the call; the cached one is not touched."""
    case = Case("bf16")
    m = case.runner()
    stream = 0x4444
    m.fused_moe(**case.views(), stream=stream)
    cached = last_run()[WS_DATA]
    CUDART.fake_cudart_set_capturing(stream)
    try:
        mallocs, frees = cudart_calls("cudaMallocAsync"), async_frees()[0]
        m.fused_moe(**case.views(), stream=stream)
        info = check_record(case, case.bufs["output"].ctypes.data)
        assert info[WS_DATA] != cached and info[WS_BYTES] == info[WS_NEEDED], info
        assert info[FREES_AT_RUN] == frees, "the call's workspace was freed before the run"
        assert cudart_calls("cudaMallocAsync") == mallocs + 1
        gc.collect()
        assert async_frees() == (frees + 1, stream), async_frees()
    finally:
        CUDART.fake_cudart_set_capturing(None)
    m.fused_moe(**case.views(), stream=stream)
    assert last_run()[WS_DATA] == cached


def _run_args_074(case, workspace):
    """run_moe's 30 arguments (0.7.4's order) for the open-ended call."""
    v = case.views()
    return ([v[n] for n in ("output", "input", "token_selected_experts", "token_final_scales",
                            "fc1_expert_weights")] + [None, v["fc2_expert_weights"]]
            + [None] * 9 + [True, 1, 0, 1, 0, 1, 0, False, False, None, False, 3, workspace, -1])


def scenario_open_ended_074():
    """0.7.4 through call(): get_workspace_size answers, run_moe takes a workspace of that
    size; without one call() refuses before the runner (the line installs no allocator: the
    bare line's call fails in the runner); 0.6.3's run line and the unbound min-latency
    method are refused on a 0.7.4 runner."""
    case = Case("bf16")
    m = case.runner()
    n = m.call("get_workspace_size", case.tokens, case.hidden, case.inter, case.experts,
               case.top_k, 1, 0, 1, 0, False, 3)
    assert n == workspace_asked()[12] > 0
    ws = fc.DeviceArray.empty((n,), "uint8")
    m.call("run_moe", *_run_args_074(case, ws))
    info = check_record(case, case.bufs["output"].ctypes.data)
    assert info[WS_DATA] == ws.ptr and info[WS_BYTES] == n, info
    small = fc.DeviceArray.empty((n - 1,), "uint8")
    raises(lambda: m.call("run_moe", *_run_args_074(case, small)), KernelRuntimeError,
           "workspace_buffer too small")
    raises(lambda: m.call("run_moe", *_run_args_074(case, None)), ValueError,
           "workspace_buffer is None.*get_workspace_size")
    raises(lambda: moe.METHODS_074["run_moe"](*_run_args_074(case, None),
                                              method=m.method("run_moe")),
           KernelRuntimeError, "allocator is nullptr")  # the line installs no allocator
    raises(lambda: moe.METHODS["run_moe"].method(m._runner.obj, moe.INIT), KernelVersionError,
           "arity: flashinfer 0.7.4 declares 30 arguments, the Binding 24")
    raises(lambda: m.call("run_moe_min_latency"), KeyError, "runner of flashinfer 0.7.4 serves")
    assert runtime.env_alloc_live() == 0


def scenario_release_lines_063():
    """0.6.3: the tables' lines; 0.7.4's lines and get_workspace_size are refused, naming
    the release (a 0.7.4 method line passes require_match on 0.6.3 by name alone: the line
    itself must refuse the object)."""
    m = Case("bf16").runner()
    assert m.release == "0.6.3" and m.methods == moe.METHODS and m._runner.workspace is None
    raises(lambda: m.method("get_workspace_size"), KeyError, "flashinfer 0.6.3.*0.7.x's")
    raises(lambda: m.call("get_workspace_size", 1, 64, 32, 8, 2, 1, 0, 1, 0, False, 3),
           KeyError, "flashinfer 0.6.3.*0.7.x's")
    for name in ("run_moe", "get_workspace_size"):
        raises(lambda: moe.METHODS_074[name].method(m._runner.obj, moe.INIT),
               KernelVersionError, "flashinfer 0.7.4's argument list")


def scenario_mislabelled():
    """A module whose marker names the other release: init is called with the other
    release's argument list, which the module's typed export refuses (no runner made)."""
    raises(lambda: fc.CutlassFusedMoE("bfloat16", "bfloat16"), KernelTypeError,
           re.escape("Mismatched number of arguments when calling: `init("))
    assert MODULE.function("fake_moe_counts")().tolist()[0] == 0


# --------------------------------------------------------------------------- bad input

def _cpu(a, dtype=None):
    return fc.TensorDesc(a.ctypes.data, a.shape, dtype or str(a.dtype), device_type="cpu",
                         owner=a)


def _other_device(a):
    return fc.TensorDesc(a.ctypes.data, a.shape, str(a.dtype), device=1, owner=a)


def _every_other_column(case, name):
    """A view of ``name``'s shape over every other element of a buffer twice as wide."""
    rows, cols = case.bufs[name].shape
    wide = np.zeros((rows, 2 * cols), case.bufs[name].dtype)
    return fc.TensorDesc(wide.ctypes.data, (rows, cols), case.dtypes[name],
                         strides=(2 * cols, 2), owner=wide)


def _zeros(shape, dtype):
    return cuda_view(np.zeros(shape, STORAGE.get(dtype, dtype)), dtype)


def bad_cases(mode):
    """(description, case kwargs, fused_moe changes from a Case, exception, words)."""
    _, _, act, weight = MODES[mode]
    other_act = "float16" if act != "float16" else "bfloat16"
    out_dtype = "float16" if mode == "fp16" else "bfloat16"
    T, K = 4, 2
    common = [
        ("input dtype", {}, lambda c: dict(input=_zeros((T, c.hidden), other_act)),
         TypeError, "input: expected dtype"),
        ("input 3-D", {}, lambda c: dict(input=_zeros((T, c.hidden, 1), act)),
         ValueError, "input: expected 2 dimensions"),
        ("input on the CPU", {}, lambda c: dict(input=_cpu(c.bufs["input"], act)),
         ValueError, "input: expected a CUDA tensor"),
        ("input strided", {}, lambda c: dict(input=_every_other_column(c, "input")),
         ValueError, "input: expected a contiguous"),
        ("expert ids int64", {}, lambda c: dict(
            token_selected_experts=cuda_view(np.zeros((T, K), np.int64))),
         TypeError, "token_selected_experts: expected dtype int32"),
        ("expert ids rows", {}, lambda c: dict(
            token_selected_experts=cuda_view(np.zeros((T + 1, K), np.int32))),
         ValueError, "token_selected_experts: expected shape"),
        ("expert ids on another device", {}, lambda c: dict(
            token_selected_experts=_other_device(c.bufs["token_selected_experts"])),
         ValueError, "token_selected_experts: expected a tensor on cuda:0"),
        ("top_k 9", dict(top_k=9, experts=16), lambda c: {},
         ValueError, "top_k .dimension 1. must be 1..8"),
        ("top_k above the experts", dict(top_k=8, experts=4), lambda c: {},
         ValueError, "top_k 8 exceeds the 4 experts"),
        ("final scales float16", {}, lambda c: dict(
            token_final_scales=cuda_view(np.zeros((T, K), np.float16))),
         TypeError, "token_final_scales: expected dtype float32"),
        ("final scales shape", {}, lambda c: dict(
            token_final_scales=cuda_view(np.zeros((T, K + 1), np.float32))),
         ValueError, "token_final_scales: expected shape"),
        ("final scales missing", {}, lambda c: dict(token_final_scales=None),
         TypeError, "token_final_scales"),
        ("fc1 not gated", {}, lambda c: dict(
            fc1_expert_weights=_zeros((8, c.inter, c.hidden), weight)),
         ValueError, "fc1_expert_weights: expected shape .* 2 \\* inter"),
        ("fc1 dtype", {}, lambda c: dict(
            fc1_expert_weights=_zeros((8, 2 * c.inter, c.hidden), "float32")),
         TypeError, "fc1_expert_weights: expected dtype"),
        ("fc2 hidden", {}, lambda c: dict(
            fc2_expert_weights=_zeros((8, 2 * c.hidden, c.inter), weight)),
         ValueError, "fc2_expert_weights: expected shape"),
        ("fc2 experts differ from fc1", {}, lambda c: dict(
            fc2_expert_weights=_zeros((4, c.hidden, c.inter), weight)),
         ValueError, "fc1_expert_weights: expected shape"),
        ("300 experts", dict(experts=300, hidden=None), lambda c: {},
         ValueError, "1..256 experts on this rank"),
        ("one bias", {}, lambda c: dict(
            fc1_expert_biases=_zeros((8, 2 * c.inter), out_dtype)),
         ValueError, "give both or neither"),
        ("bias dtype", {}, lambda c: dict(
            fc1_expert_biases=_zeros((8, 2 * c.inter), "float32"),
            fc2_expert_biases=_zeros((8, c.hidden), out_dtype)),
         TypeError, "fc1_expert_biases: expected dtype " + out_dtype),
        ("bias shape", {}, lambda c: dict(
            fc1_expert_biases=_zeros((8, 2 * c.inter), out_dtype),
            fc2_expert_biases=_zeros((8, c.inter), out_dtype)),
         ValueError, "fc2_expert_biases: expected shape"),
        ("input_sf", {}, lambda c: dict(input_sf=cuda_view(np.zeros(4, np.uint8))),
         ValueError, "input_sf"),
        ("tp_rank", {}, lambda c: dict(tp_size=2, tp_rank=2), ValueError, "tp_rank"),
        ("tp_size 0", {}, lambda c: dict(tp_size=0), ValueError, "tp_size"),
        ("ep_rank", {}, lambda c: dict(ep_size=4, ep_rank=-1), ValueError, "ep_rank"),
        ("ep_size str", {}, lambda c: dict(ep_size="2"), TypeError, "ep_size"),
        ("tp_rank bool", {}, lambda c: dict(tp_rank=True), TypeError, "tp_rank"),
        ("output shape", {}, lambda c: dict(output=_zeros((T, c.hidden + 8), out_dtype)),
         ValueError, "output: expected shape"),
        ("output dtype", {}, lambda c: dict(output=_zeros((T, c.hidden), "float32")),
         TypeError, "output: expected dtype"),
        ("output read-only", {}, lambda c: dict(output=ReadOnly(c.view("output"))),
         ValueError, "output: the kernel writes"),
        ("output_dtype", {}, lambda c: dict(output_dtype="float32"),
         ValueError, "output_dtype: this runner was made for"),
        ("activation relu2", {}, lambda c: dict(activation_type="relu2"),
         ValueError, "activation_type"),
        ("activation 6", {}, lambda c: dict(activation_type=6), ValueError, "activation_type"),
        ("profile_ids range", {}, lambda c: dict(profile_ids=(99, 0)),
         ValueError, "profile_ids: the gemm1 index"),
        ("profile_ids gemm2", {}, lambda c: dict(profile_ids=(0, -2)),
         ValueError, "profile_ids: the gemm2 index"),
        ("profile_ids one", {}, lambda c: dict(profile_ids=(0,)), TypeError, "profile_ids"),
        ("profile_ids str", {}, lambda c: dict(profile_ids="ab"), TypeError, "profile_ids"),
        ("enable_pdl", {}, lambda c: dict(enable_pdl="yes"), TypeError, "enable_pdl"),
    ]
    align = 128 if mode == "block" else (16 if mode == "fp8" else 8)
    shape_cases = [
        ("hidden alignment", dict(hidden=align + align // 2 if align > 8 else 12,
                                  inter=align), lambda c: {},
         ValueError, f"hidden = .* must be a positive multiple of {align}"),
        ("inter alignment", dict(hidden=align, inter=align // 2 if align > 8 else 4),
         lambda c: {}, ValueError, f"inter = .* must be a positive multiple of {align}"),
    ]
    if act == out_dtype:  # the output may be a view of the input's memory
        common.append(("output over input", {}, lambda c: dict(
            output=cuda_view(c.bufs["input"], out_dtype)), ValueError, "must not overlap input"))
    if mode in ("bf16", "fp16"):
        per_mode = [
            ("scales given", {}, lambda c: dict(quant_scales=[cuda_view(np.ones(8, np.float32))]),
             ValueError, "quant_scales: the .* mode takes no scales"),
        ]
    elif mode == "fp8":
        per_mode = [
            ("no scales", {}, lambda c: dict(quant_scales=None), TypeError,
             "quant_scales: expected a list of 4"),
            ("3 scales", {}, lambda c: dict(quant_scales=c.views()["quant_scales"][:3]),
             ValueError, "quant_scales: expected 4 tensors"),
            ("fc1_dequant shape", {}, lambda c: dict(quant_scales=[
                cuda_view(np.ones(9, np.float32))] + c.views()["quant_scales"][1:]),
             ValueError, "quant_scales\\[0\\] \\(fc1_dequant\\): expected shape"),
            ("fc2_quant shape", {}, lambda c: dict(quant_scales=c.views()["quant_scales"][:1] + [
                cuda_view(np.ones(2, np.float32))] + c.views()["quant_scales"][2:]),
             ValueError, "quant_scales\\[1\\] \\(fc2_quant\\)"),
            ("fc2_dequant dtype", {}, lambda c: dict(quant_scales=c.views()["quant_scales"][:2] + [
                cuda_view(np.ones(8, np.float16))] + c.views()["quant_scales"][3:]),
             TypeError, "quant_scales\\[2\\] \\(fc2_dequant\\): expected dtype float32"),
            ("fc1_input_dequant 1-D", {}, lambda c: dict(quant_scales=c.views()["quant_scales"][:3]
                                                         + [cuda_view(np.ones(1, np.float32))]),
             ValueError, "quant_scales\\[3\\] \\(fc1_input_dequant\\)"),
            ("scale on the CPU", {}, lambda c: dict(quant_scales=[_cpu(c.scales[0])]
                                                    + c.views()["quant_scales"][1:]),
             ValueError, "quant_scales\\[0\\] \\(fc1_dequant\\): expected a tensor on cuda:0"),
            ("scale not a tensor", {}, lambda c: dict(quant_scales=[1.0] * 4),
             TypeError, "quant_scales\\[0\\]"),
        ]
    else:
        per_mode = [
            ("2 scales expected", {}, lambda c: dict(quant_scales=c.views()["quant_scales"] * 2),
             ValueError, "quant_scales: expected 2 tensors"),
            ("fc1 scale blocks", {}, lambda c: dict(quant_scales=[
                cuda_view(np.ones((8, c.inter // 128, c.hidden // 128), np.float32)),
                c.views()["quant_scales"][1]]),
             ValueError, "quant_scales\\[0\\] \\(fc1_scales\\): expected shape"),
            ("fc2 scale blocks", {}, lambda c: dict(quant_scales=[
                c.views()["quant_scales"][0],
                cuda_view(np.ones((8, c.inter // 128, c.hidden // 128), np.float32))]),
             ValueError, "quant_scales\\[1\\] \\(fc2_scales\\): expected shape"),
            ("weights bf16", {}, lambda c: dict(
                fc1_expert_weights=_zeros((8, 2 * c.inter, c.hidden), "bfloat16")),
             TypeError, "fc1_expert_weights: expected dtype float8_e4m3fn"),
        ]
    return common + shape_cases + per_mode


def scenario_bad_inputs(mode):
    """Every bad argument of ``mode`` raises the right exception naming it, before any
    call: the stand-in sees none, no Tensor object or workspace is left behind."""
    runners = {}
    failures = []
    for what, shape, change, exc, words in bad_cases(mode):
        case = Case(mode, **{k: v for k, v in shape.items() if v is not None})
        m = runners.setdefault(mode, case.runner())
        refs = [sys.getrefcount(s) for s in case.scales]
        kw = case.views()
        kw.update(change(case))
        try:
            m.fused_moe(**kw)
        except exc as e:
            if not re.search(words, str(e)):
                failures.append(f"{what}: {type(e).__name__}: {e} (wanted {words!r})")
        except Exception as e:  # noqa: BLE001 - reported below with the case
            failures.append(f"{what}: {type(e).__name__}: {e} (wanted {exc.__name__})")
        else:
            failures.append(f"{what}: accepted")
        del kw
        gc.collect()
        if tensor_array_live() or runtime.env_alloc_live():
            failures.append(f"{what}: left {tensor_array_live()} Tensor objects, "
                            f"{runtime.env_alloc_live()} allocations")
        if [sys.getrefcount(s) for s in case.scales] != refs:
            failures.append(f"{what}: a scale tensor's reference leaked")
    assert not failures, "\n".join(failures)
    case = Case(mode)
    runners[mode].fused_moe(**case.views())  # the first run_moe that reached the runner
    assert record_of(case)[CALLS_ON_RUNNER] == 1, record_of(case)


if __name__ == "__main__":
    so, scenario, *rest = sys.argv[1:]
    if os.environ.get("FUSED_MOE_LABEL"):
        MODULE = fc.load_module_path(so, uri=moe.URI,
                                     flashinfer_version=os.environ["FUSED_MOE_LABEL"])
    elif os.environ.get("FLASHINFER_CY_KERNEL_DIR"):  # the release its marker names
        MODULE = runtime.load_module(moe.URI)
        assert os.path.samefile(MODULE.path, so), (MODULE.path, so)
    else:
        MODULE = fc.load_module_path(so, uri=moe.URI, flashinfer_version="0.6.3")
    RELEASE = MODULE.flashinfer_version
    load_ffi()
    globals()[f"scenario_{scenario}"](*rest)
    print("ok")
