"""Run flashinfer_cy's fused MoE runner API against the CPU stand-in (fake_fused_moe.cc).

Executed in a subprocess by test_fused_moe_call_path.py (the stand-in is registered under
the real module URI, which must not leak into other tests' processes), with the stand-in
libcudart (fake_cudart.c) first on LD_LIBRARY_PATH: the run methods allocate their
workspace through the environment allocator, which needs cudaMallocAsync:

    python fused_moe_driver.py <stand-in .so> <scenario>

The stand-in counts runner constructions, destructions, method lookups and method calls
(``fake_moe_counts``); its run methods write what they received into ``output`` (int64
slots, RunRecord in fake_fused_moe.cc). Host numpy buffers are described as CUDA tensors.
"""

from __future__ import annotations

import gc
import sys

import numpy as np

import flashinfer_cy as fc
from flashinfer_cy._core import runtime
from flashinfer_cy.errors import KernelRuntimeError, SymbolNotFoundError
from flashinfer_cy.kernels import fused_moe as moe

# RunRecord slots of fake_fused_moe.cc
(METHOD, RUNNER_ID, CALLS_ON_RUNNER, TP_SIZE, TP_RANK, EP_SIZE, EP_RANK, CLUSTER_SIZE,
 CLUSTER_RANK, ALLTOALL, MIN_LATENCY, PROFILE_COUNT, PROFILE0, PROFILE1, ENABLE_PDL,
 ACTIVATION, OPTIONAL_MASK, QUANT_SCALE_COUNT, NUM_TOKENS, TOP_K, EXPERTS_ON_RANK, HIDDEN,
 ACT_DTYPE, WEIGHT_DTYPE, OUT_DTYPE, FLAGS, RECORD_SLOTS) = range(27)


def counts():
    """(constructed, destroyed, method lookups, method calls) so far in this process."""
    gc.collect()  # nothing here may depend on it: checked by scenario_no_cycles
    return tuple(MODULE.function("fake_moe_counts")().tolist())


def raw_counts():
    return tuple(MODULE.function("fake_moe_counts")().tolist())


def cuda_view(arr, dtype=None, shape=None):
    """``arr``'s memory described as a CUDA tensor (``shape``: another contiguous view)."""
    item = arr.dtype.itemsize
    strides = None if shape is not None else tuple(s // item for s in arr.strides)
    return fc.TensorDesc(arr.ctypes.data, arr.shape if shape is None else shape,
                         dtype or str(arr.dtype), strides=strides, device_type="cuda", owner=arr)


def expected_tactics(act_bits, weight_bits, block_scale):
    """What the stand-in's runner offers for a configuration (fake_fused_moe.cc)."""
    return 2 + act_bits // 8 + (10 if block_scale else 0), 1 + weight_bits // 4


def scenario_lifecycle():
    assert raw_counts() == (0, 0, 0, 0)
    a = fc.CutlassFusedMoE("bfloat16", "bfloat16")
    b = fc.CutlassFusedMoE("bfloat16", "bfloat16", "bfloat16")
    assert raw_counts()[:2] == (1, 0), raw_counts()  # one runner per configuration
    assert a.tactic_counts == expected_tactics(16, 16, False) == b.tactic_counts
    c = fc.CutlassFusedMoE("bfloat16", "float8_e4m3fn", block_scale=True)
    assert raw_counts()[:2] == (2, 0), raw_counts()
    assert c.tactic_counts == expected_tactics(16, 8, True)
    assert c.num_tactics == sum(expected_tactics(16, 8, True))
    lookups = raw_counts()[2]
    calls = raw_counts()[3]
    for _ in range(200):  # many calls, no new lookup, no new runner
        assert a.num_tactics == sum(expected_tactics(16, 16, False))
    assert raw_counts() == (2, 0, lookups + 1, calls + 200), raw_counts()
    assert a.method("get_tactic_num") is b.method("get_tactic_num")  # cached per runner
    assert a.method("get_tactic_num") is not c.method("get_tactic_num")
    del a
    assert raw_counts()[1] == 0  # b still uses the runner
    del b
    assert raw_counts()[:2] == (2, 1), raw_counts()  # released at the last reference
    d = fc.CutlassFusedMoE("bfloat16", "bfloat16")  # made again after its release
    assert raw_counts()[:2] == (3, 1), raw_counts()
    del c, d
    assert raw_counts()[:2] == (3, 3), raw_counts()
    gc.collect()
    assert raw_counts()[:2] == (3, 3), raw_counts()  # exactly once


def scenario_method_keeps_runner():
    """A method Function outlives every Python reference to the runner object: its C++
    lambda points at the runner, so the runner lives until the Function goes."""
    m = fc.CutlassFusedMoE("float16", "float16")
    fn = m.method("get_gemm1_tactic_count")
    obj = m._runner.obj
    base = obj.refcount
    del m, obj
    gc.collect()
    assert raw_counts()[:2] == (1, 0), raw_counts()
    assert moe.METHODS["get_gemm1_tactic_count"](method=fn) == expected_tactics(16, 16, False)[0]
    assert fn(), "the generic Function path calls the method too"
    del fn
    assert raw_counts()[:2] == (1, 1), raw_counts()
    assert base >= 2  # the object wrapper's reference and the method's


def _run_moe_args(rng, tokens=4, experts=4, top_k=2, hidden=32, inter=64):
    # described as the bfloat16 [tokens, hidden] output; NaN bytes the stand-in overwrites
    out = np.full((tokens, hidden // 2), np.nan, np.float32)
    assert out.nbytes >= RECORD_SLOTS * 8
    keep = []

    def dev(shape, dtype):
        a = np.zeros(shape, np.uint16 if dtype == "bfloat16" else dtype)
        keep.append(a)
        return cuda_view(a, dtype)

    ids = rng.integers(0, experts, (tokens, top_k)).astype(np.int32)
    scales = rng.random((tokens, top_k)).astype(np.float32)
    keep += [ids, scales]
    args = dict(
        output=cuda_view(out, "bfloat16", (tokens, hidden)), input=dev((tokens, hidden), "bfloat16"),
        token_selected_experts=cuda_view(ids), token_final_scales=cuda_view(scales),
        fc1_expert_weights=dev((experts, 2 * inter, hidden), "bfloat16"), fc1_expert_biases=None,
        fc2_expert_weights=dev((experts, hidden, inter), "bfloat16"), fc2_expert_biases=None,
        quant_scales=None, input_sf=None, swiglu_alpha=None, swiglu_beta=None,
        swiglu_limit=None)
    return out, args, keep


def scenario_run_moe_record():
    rng = np.random.default_rng()
    m = fc.CutlassFusedMoE("bfloat16", "bfloat16")
    out, args, keep = _run_moe_args(rng)
    ints = [int(v) for v in rng.integers(2, 1000, 7)]  # distinct, nonzero: order shows
    tp_size, tp_rank, ep_size, ep_rank, cluster_size, cluster_rank, act = ints
    profile = fc._core.runtime.int_array([int(rng.integers(0, 4)), int(rng.integers(0, 5))])
    for n in (1, 2, 3):
        out[...] = np.nan
        m.call("run_moe", *args.values(), tp_size, tp_rank, ep_size, ep_rank, cluster_size,
               cluster_rank, True, False, profile, True, act)
        r = out.view(np.int64).reshape(-1)[:RECORD_SLOTS]
        assert r[METHOD] == 1 and r[CALLS_ON_RUNNER] == n, r
        assert list(r[[TP_SIZE, TP_RANK, EP_SIZE, EP_RANK, CLUSTER_SIZE, CLUSTER_RANK,
                       ACTIVATION]]) == ints, (r, ints)
        assert (r[ALLTOALL], r[MIN_LATENCY], r[ENABLE_PDL]) == (1, 0, 1)
        assert (r[PROFILE_COUNT], r[PROFILE0], r[PROFILE1]) == (2, *profile.tolist())
        assert r[OPTIONAL_MASK] == 1 and r[QUANT_SCALE_COUNT] == -1, r  # token_final_scales only
        assert (r[NUM_TOKENS], r[TOP_K], r[EXPERTS_ON_RANK], r[HIDDEN]) == (4, 2, 4, 32), r
        assert r[ACT_DTYPE] == r[WEIGHT_DTYPE] == r[OUT_DTYPE] == (4 << 16 | 16), r  # kDLBfloat
        assert r[FLAGS] == 0
    del keep


def scenario_prepared_launch_keeps_runner():
    rng = np.random.default_rng()
    m = fc.CutlassFusedMoE("bfloat16", "bfloat16")
    out, args, keep = _run_moe_args(rng)
    run = moe.METHODS["run_moe"]
    fn = m.method("run_moe")

    def step():
        run(*args.values(), 1, 0, 1, 0, 1, 0, False, False,
            fc._core.runtime.int_array([-1, -1]), False, 0, method=fn)
        return out

    p = fc.prepare(step)
    assert p.num_calls == 1
    out[...] = np.nan
    assert np.isnan(out).all()  # prepare recorded, did not call
    del m, fn, step
    gc.collect()
    assert raw_counts()[:2] == (1, 0), raw_counts()  # the prepared launch holds the runner
    for n in (1, 2):
        p.launch()
        r = out.view(np.int64).reshape(-1)[:RECORD_SLOTS]
        assert r[METHOD] == 1 and r[CALLS_ON_RUNNER] == n and r[PROFILE0] == -1, r
    del p
    assert raw_counts()[:2] == (1, 1), raw_counts()


def scenario_unknown_and_dead():
    m = fc.CutlassFusedMoE("float16", "float16")
    try:
        m.method("run_moe_fast")
    except KeyError as e:
        assert "run_moe_fast" in str(e) and "run_moe" in str(e), e
    else:
        raise AssertionError("an unknown method name was accepted")
    try:
        m._runner.obj.method("run_moe_fast")  # the core's lookup: the runner says none
    except SymbolNotFoundError as e:
        assert "run_moe_fast" in str(e) and "fused_moe_runner" in str(e), e
    else:
        raise AssertionError("GetFunction's none was not an error")
    empty = runtime.ModuleObject.__new__(runtime.ModuleObject)  # holds no object
    try:
        empty.method("get_tactic_num")
    except TypeError as e:
        assert "holds no object" in str(e), e
    else:
        raise AssertionError("a method of no object was looked up")
    try:
        runtime.ModuleObject()
    except TypeError as e:
        assert "kernel results" in str(e), e
    else:
        raise AssertionError("ModuleObject() made an object")
    # A method line is never called by name, and an export line never through a method.
    for call, words in ((lambda: moe.METHODS["get_tactic_num"](), "pass its Function"),
                        (lambda: moe.METHODS["get_tactic_num"].load(), "not an export"),
                        (lambda: moe.INIT("float16", "float16", "float16", False, False, False,
                                          False, method=m.method("get_tactic_num")),
                         "an export")):
        try:
            call()
        except TypeError as e:
            assert words in str(e), (words, e)
        else:
            raise AssertionError(f"accepted: {words}")


def scenario_init_refused():
    """A combination the runner refuses comes back as the module's error (through the
    runtime's error path), and constructs nothing."""
    try:
        moe.INIT("float32", "float16", "float16", False, False, False, False)
    except KernelRuntimeError as e:
        assert "Could not construct fused moe op" in str(e), e
    else:
        raise AssertionError("the stand-in built a float32 runner")
    assert raw_counts()[:2] == (0, 0), raw_counts()


def scenario_no_cycles():
    """Release does not wait for the cycle collector."""
    gc.disable()
    m = fc.CutlassFusedMoE("bfloat16", "bfloat16")
    m.tactic_counts, m.num_tactics, m.method("run_moe")
    del m
    assert raw_counts()[:2] == (1, 1), raw_counts()


def scenario_exit_with_live_runner():
    """Runners, methods and a reference cycle still alive at interpreter exit: no crash."""
    global KEEP
    m = fc.CutlassFusedMoE("bfloat16", "bfloat16")
    cycle = [m, m.method("get_tactic_num")]
    cycle.append(cycle)
    KEEP = (m, m.method("run_moe"))


if __name__ == "__main__":
    so, scenario = sys.argv[1], sys.argv[2]
    MODULE = fc.load_module_path(so, uri=moe.URI, flashinfer_version="0.6.3")
    globals()[f"scenario_{scenario}"]()
    print("ok")
