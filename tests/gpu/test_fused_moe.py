"""CUTLASS fused MoE (``fused_moe_90``, sm_90) on the GPU: ``CutlassFusedMoE.fused_moe``
bit for bit against flashinfer-python's ``cutlass_fused_moe`` on the same module, and against
a float64 routed MLP per mode (bfloat16, float16, fp8 per-tensor with bfloat16 output,
DeepSeek fp8 block scale).

Shapes: tokens 1 / 7 / 128, experts 8 / 64, top_k 2 / 8 (distinct experts per token, random
routing weights), hidden 256, intermediate 128 / 256 against float64 and the peer; and
model-sized layers (hidden 2048 / 7168, intermediate 1024 / 2048, up to 1024 tokens) against
the peer only. Fresh random data each run (the seed is printed); outputs NaN-poisoned
first, so an unwritten row cannot pass. Skips without a GPU, on a device other than sm_90,
without the module, or (bit identity only) without flashinfer-python and torch.

Release-agnostic: the module is the kernel dir's (0.6.3, or 0.7.4 in tools/gpu_session.sh's
0.7.4 pass, where the peer is 0.7.4's flashinfer-python); ``CutlassFusedMoE`` calls it with
that release's lines (test_module_release says which ran). On 0.7.4 the workspace is the
caller's, sized by the runner's ``get_workspace_size``: test_074_workspace_size checks that
number against 0.7.4's ``cutlass_fused_moe_workspace_size``.

The float64 reference models what the kernels round, so the tolerances stay a few units in
the last place of the narrowest type involved:

* 16-bit modes: GEMM1's result and the gated activation are rounded to the activation
  dtype (they live in it between the kernels), each expert's GEMM2 result likewise, and
  the weighted sum once more as the output;
* fp8 per-tensor: inputs and weights are quantised as the caller gives them (per-tensor
  input scale, per-expert weight scales), the activation is quantised to fp8 with
  ``fc2_quant`` before GEMM2, as the runner does;
* block scale: weights dequantised per 128x128 block; the runner quantises both GEMMs'
  activations to fp8 per 1x128 block (scale = block amax / 448), which the reference does
  too. A value on an fp8 rounding boundary can land one fp8 step away from the
  reference's choice, hence the wider fp8 tolerances.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import flashinfer_cy as fc
from gpu_env import require_module
from peer import assert_bits_equal, flashinfer_peer

URI = "fused_moe_90"
FP8_MAX = 448.0
TOKENS = [1, 7, 128]
EXPERTS = [8, 64]
TOP_K = [2, 8]
# mode -> (CutlassFusedMoE arguments, activation, weight, output dtype, hidden, inter)
MODES = {
    "bf16": (("bfloat16", "bfloat16"), {}, "bfloat16", "bfloat16", "bfloat16", 256, 128),
    "fp16": (("float16", "float16"), {}, "float16", "float16", "float16", 256, 128),
    "fp8": (("float8_e4m3fn", "float8_e4m3fn", "bfloat16"), {}, "float8_e4m3fn",
            "float8_e4m3fn", "bfloat16", 256, 128),
    "block": (("bfloat16", "float8_e4m3fn"), {"block_scale": True}, "bfloat16",
              "float8_e4m3fn", "bfloat16", 256, 256),
}
# |got - ref| <= frac * max|ref| + rtol * |ref|, per element.
TOL = {"bf16": (1.5e-2, 1.5e-2), "fp16": (2e-3, 2e-3), "fp8": (4e-2, 4e-2),
       "block": (4e-2, 4e-2)}


@pytest.fixture(autouse=True)
def _sm90_with_module():
    require_module(URI)
    from flashinfer_cy._core.runtime import device_compute_capability_major

    if device_compute_capability_major(0) != 9:
        pytest.skip("fused_moe_90 is an sm_90 (Hopper) module")


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


# ----------------------------------------------------------------------------- reference

def rounded(x, dtype, torch):
    """``x`` (float64 numpy) rounded to ``dtype`` and back (fp8 saturates at +-448)."""
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))
    if dtype == "float8_e4m3fn":
        t = t.clamp(-FP8_MAX, FP8_MAX).to(torch.float32)
    return t.to(getattr(torch, dtype)).to(torch.float64).numpy()


def silu(x):
    return x / (1.0 + np.exp(-x))


def gelu(x):
    return 0.5 * x * (1.0 + np.vectorize(math.erf, otypes=[float])(x / math.sqrt(2.0)))


def block_quantized(x, torch):
    """The runner's activation quantisation of block scale: fp8 per 1x128 block, scale =
    the block's amax / 448; returned dequantised."""
    rows, cols = x.shape
    blocks = x.reshape(rows, cols // 128, 128)
    scale = np.abs(blocks).max(axis=2, keepdims=True) / FP8_MAX
    scale = np.where(scale == 0, 1.0, rounded(scale, "float32", torch))
    return (rounded(blocks / scale, "float8_e4m3fn", torch) * scale).reshape(rows, cols)


def routed_mlp(p, torch):
    """float64 ``out[t] = sum_j s_tj * fc2[e](act(fc1[e] x_t))`` of problem ``p``, rounding
    where the mode's kernels round (module docstring). Experts outside this rank's
    ``[rank * E, (rank + 1) * E)`` contribute nothing."""
    mode, act, out_dtype = p["mode"], p["act_name"], p["out_dtype"]
    x, w1, w2 = p["x64"], p["w1_64"], p["w2_64"]
    ids, weights = p["ids"], p["weights"]
    experts, inter = w1.shape[0], w2.shape[2]
    first = p["ep_rank"] * experts
    mid = out_dtype if mode in ("fp8", "block") else act
    fn = silu if p["activation"] == "swiglu" else gelu
    out = np.zeros((x.shape[0], w2.shape[1]))
    for e in range(experts):
        tok, slot = np.nonzero(ids == first + e)
        if tok.size == 0:
            continue
        xin = block_quantized(x[tok], torch) if mode == "block" else x[tok]
        h = rounded(xin @ w1[e].T, mid, torch)
        a = fn(h[:, inter:]) * h[:, :inter]  # linear half first, gate second
        if mode == "fp8":  # quantised straight from float32 for GEMM2
            a = rounded(a * p["fc2_quant"], "float8_e4m3fn", torch) / p["fc2_quant"]
        else:
            a = rounded(a, mid, torch)
            if mode == "block":
                a = block_quantized(a, torch)
        y = rounded(a @ w2[e].T, mid, torch)
        np.add.at(out, tok, weights[tok, slot][:, None] * y)
    return rounded(out, out_dtype, torch)


def assert_close(got, ref, mode, what):
    frac, rtol = TOL[mode]
    bound = frac * max(np.abs(ref).max(), 1e-6) + rtol * np.abs(ref)
    err = np.abs(got - ref)
    assert np.isfinite(got).all(), f"{what}: non-finite output (an unwritten row?)"
    bad = err > bound
    assert not bad.any(), (f"{what}: {int(bad.sum())} of {bad.size} elements off; worst "
                           f"{float((err / bound).max()):.2f}x the tolerance")


# ----------------------------------------------------------------------------- problems

def make_problem(rng, torch, mode, tokens, experts, top_k, activation="swiglu", ep=(1, 0)):
    """Random inputs of ``mode`` on the GPU (torch tensors) and their float64 values as the
    device holds them."""
    (_, _, act, weight, out_dtype, hidden, inter) = MODES[mode]
    ep_size, ep_rank = ep
    total = experts * ep_size
    dev = "cuda"
    x = rng.standard_normal((tokens, hidden))
    w1 = rng.standard_normal((experts, 2 * inter, hidden)) / math.sqrt(hidden)
    w2 = rng.standard_normal((experts, hidden, inter)) / math.sqrt(inter)
    ids = np.argsort(rng.random((tokens, total)), axis=1)[:, :top_k].astype(np.int32)
    weights = rng.random((tokens, top_k))
    weights /= weights.sum(axis=1, keepdims=True)
    weights = weights.astype(np.float32).astype(np.float64)
    p = dict(mode=mode, act_name=act, out_dtype=out_dtype, ids=ids, weights=weights,
             activation=activation, ep_size=ep_size, ep_rank=ep_rank, quant_scales=None)
    t = lambda a, dt: torch.from_numpy(np.ascontiguousarray(a)).to(dev).to(  # noqa: E731
        getattr(torch, dt))
    if mode in ("bf16", "fp16"):
        p["x64"], p["w1_64"], p["w2_64"] = (rounded(v, act, torch) for v in (x, w1, w2))
        p["x"], p["w1"], p["w2"] = t(p["x64"], act), t(p["w1_64"], act), t(p["w2_64"], act)
    elif mode == "fp8":
        # flashinfer-python's per-tensor recipe: input scale a1, per-expert weight scales,
        # a static activation scale 1 / fc2_quant (a calibrated model's: the intermediate
        # stays well inside fp8's range)
        a1 = np.float32(np.abs(x).max() / FP8_MAX)
        w1s = np.abs(w1).max(axis=(1, 2)) / FP8_MAX
        w2s = np.abs(w2).max(axis=(1, 2)) / FP8_MAX
        x8 = rounded(x / a1, weight, torch)
        w18 = rounded(w1 / w1s[:, None, None], weight, torch)
        w28 = rounded(w2 / w2s[:, None, None], weight, torch)
        fc1_dequant = (w1s * a1).astype(np.float32)
        fc2_quant = np.float32(FP8_MAX / 32.0)
        fc2_dequant = (w2s / fc2_quant).astype(np.float32)
        # what the device computes: (x8 @ w18^T) * fc1_dequant, then
        # (fp8(a * fc2_quant) @ w28^T) * fc2_dequant
        p["fc2_quant"] = float(fc2_quant)
        p["x64"] = x8
        p["w1_64"] = w18 * fc1_dequant.astype(np.float64)[:, None, None]
        p["w2_64"] = w28 * (fc2_dequant.astype(np.float64) * p["fc2_quant"])[:, None, None]
        fp8 = lambda a: t(a, "float32").to(torch.float8_e4m3fn)  # noqa: E731
        p["x"], p["w1"], p["w2"] = fp8(x8), fp8(w18), fp8(w28)
        scalar = lambda v: torch.tensor(v, dtype=torch.float32, device=dev)  # noqa: E731
        p["quant_scales"] = [t(fc1_dequant, "float32"), scalar(fc2_quant),
                             t(fc2_dequant, "float32"), scalar(a1)]
    else:  # DeepSeek block scale: 128x128 weight blocks
        def blocked(w):
            e, n, k = w.shape
            b = w.reshape(e, n // 128, 128, k // 128, 128)
            s = (np.abs(b).max(axis=(2, 4)) / FP8_MAX).astype(np.float32).astype(np.float64)
            q = rounded(b / s[:, :, None, :, None], weight, torch)
            return q.reshape(e, n, k), s, (q * s[:, :, None, :, None]).reshape(e, n, k)
        w18, s1, p["w1_64"] = blocked(w1)
        w28, s2, p["w2_64"] = blocked(w2)
        p["x64"] = rounded(x, act, torch)
        p["x"] = t(p["x64"], act)
        p["w1"] = t(w18, "float32").to(torch.float8_e4m3fn)
        p["w2"] = t(w28, "float32").to(torch.float8_e4m3fn)
        p["quant_scales"] = [t(s1, "float32"), t(s2, "float32")]
    p["ids_t"] = t(ids, "int32")
    p["weights_t"] = t(weights, "float32")
    p["out_t"] = getattr(torch, out_dtype)
    return p


def ours(p, torch, **kw):
    args, kwargs, *_ = MODES[p["mode"]]
    m = fc.CutlassFusedMoE(*args, **kwargs)
    out = torch.full((p["x"].shape[0], p["w2"].shape[1]), float("nan"), dtype=p["out_t"],
                     device="cuda")
    got = m.fused_moe(p["x"], p["ids_t"], p["weights_t"], p["w1"], p["w2"], p["out_t"],
                      p["quant_scales"], output=out, activation_type=p["activation"],
                      ep_size=p["ep_size"], ep_rank=p["ep_rank"], **kw)
    assert got is out
    return out


def host(t, torch):
    torch.cuda.synchronize()
    return t.to(torch.float64).cpu().numpy()


# ----------------------------------------------------------------------------- tests

@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("tokens", TOKENS)
@pytest.mark.parametrize("experts", EXPERTS)
@pytest.mark.parametrize("top_k", TOP_K)
def test_against_float64(mode, tokens, experts, top_k, rng, torch):
    p = make_problem(rng, torch, mode, tokens, experts, top_k)
    got = host(ours(p, torch), torch)
    assert_close(got, routed_mlp(p, torch), mode, f"{mode} T={tokens} E={experts} k={top_k}")


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("tokens", TOKENS)
@pytest.mark.parametrize("experts", EXPERTS)
@pytest.mark.parametrize("top_k", TOP_K)
def test_bit_identical_to_flashinfer_python(mode, tokens, experts, top_k, rng, torch):
    fi = flashinfer_peer()
    p = make_problem(rng, torch, mode, tokens, experts, top_k)
    mine = ours(p, torch, enable_pdl=True)
    theirs = torch.full_like(mine, float("nan"))
    fi.fused_moe.cutlass_fused_moe(
        p["x"], p["ids_t"], p["weights_t"], p["w1"], p["w2"], p["out_t"],
        p["quant_scales"] or [], output=theirs, enable_pdl=True,
        use_deepseek_fp8_block_scale=mode == "block")
    torch.cuda.synchronize()
    assert_bits_equal(mine, theirs, f"cutlass_fused_moe {mode} T={tokens} E={experts} "
                                    f"k={top_k}")


# Model-sized layers (issue 21's shapes: hidden 2048 / 7168, intermediate 1024 / 2048, up to
# 1024 tokens): bit identity with the peer only (a float64 reference of a 64-expert,
# 7168-wide layer is tens of GB on the host). Data made on the GPU by tools/bench_fused_moe.py
# (its rows: the general call, the prepared launch, flashinfer-python), outputs NaN-poisoned.
MODEL_SHAPES = [  # mode, tokens, experts, top_k, hidden, inter
    ("block", 1, 64, 8, 7168, 2048),     # DeepSeek-V3 decode
    ("block", 1024, 64, 8, 7168, 2048),  # and prefill
    ("bf16", 1024, 8, 2, 2048, 1024),
    ("bf16", 7, 64, 8, 7168, 2048),
    ("fp8", 128, 64, 8, 2048, 1024),
]


@pytest.mark.parametrize("mode, tokens, experts, top_k, hidden, inter", MODEL_SHAPES, ids=str)
def test_bit_identical_at_model_shapes(mode, tokens, experts, top_k, hidden, inter, rng,
                                       torch):
    import importlib
    import sys
    from pathlib import Path

    fi = flashinfer_peer()
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
    try:
        bench = importlib.import_module("bench_fused_moe")
    finally:
        sys.path.pop(0)
    p = bench.problem(torch, mode, tokens, experts, top_k, hidden, inter,
                      seed=int(rng.integers(2**62)))  # the rng fixture's seed is printed
    group, out = bench.rows(torch, fc, fi, p, mode)
    same = bench.run_once_and_compare(torch, group, out)
    assert not torch.isnan(out[bench.OURS]).any(), "an unwritten output row"
    for name in (bench.PEER, bench.PREPARED):
        assert name in same and same[name], (name, mode, tokens, experts, top_k)
    assert_bits_equal(out[bench.OURS], out[bench.PEER], f"{mode} T={tokens} E={experts}")


@pytest.mark.parametrize("mode", ["bf16", "fp8"])
def test_geglu_and_expert_parallel_rank(mode, rng, torch):
    """The other gated activation, and rank 1 of 2 in expert parallelism: tokens routed to
    the other rank's experts add nothing here."""
    p = make_problem(rng, torch, mode, 7, 8, 2, activation="geglu", ep=(2, 1))
    got = host(ours(p, torch), torch)
    assert_close(got, routed_mlp(p, torch), mode, f"{mode} geglu ep 1/2")


def test_module_release(torch):
    """Which release's lines the runner is called with (printed), and that they are the
    module's: 0.7.4's runner serves get_workspace_size, 0.6.3's does not."""
    from flashinfer_cy._core import runtime
    from flashinfer_cy.abi.match import abi_version
    from flashinfer_cy.kernels import fused_moe

    m = fc.CutlassFusedMoE("bfloat16", "bfloat16")
    release = abi_version(runtime.load_module(URI).flashinfer_version)
    print(f"fused_moe_90 of flashinfer {release}")
    assert m.release == release and m.methods == fused_moe.RELEASE_METHODS[release]
    assert ("get_workspace_size" in m.methods) == (release == "0.7.4")


def test_074_workspace_size(torch):
    """0.7.4: the runner's get_workspace_size (what every call sizes its workspace by) is
    the number 0.7.4's flashinfer-python asks for the same shape."""
    m = fc.CutlassFusedMoE("bfloat16", "bfloat16")
    if m.release != "0.7.4":
        pytest.skip(f"get_workspace_size is 0.7.x's; this module is flashinfer {m.release}")
    fi = flashinfer_peer()
    for tokens, hidden, inter, experts, top_k, ep in ((1, 256, 128, 64, 8, (1, 0)),
                                                      (128, 256, 128, 8, 2, (2, 1))):
        ours_n = m.call("get_workspace_size", tokens, hidden, inter, experts * ep[0], top_k,
                        1, 0, ep[0], ep[1], False, 3)
        theirs_n = fi.fused_moe.cutlass_fused_moe_workspace_size(
            tokens, hidden, inter, experts * ep[0], top_k, x_dtype=torch.bfloat16,
            weight_dtype=torch.bfloat16, output_dtype=torch.bfloat16, ep_size=ep[0],
            ep_rank=ep[1], use_fused_finalize=True)
        assert ours_n == theirs_n > 0, (tokens, ours_n, theirs_n)


def test_prepared_decode_launch_matches_the_call(rng, torch):
    """The decode shape (one token), prepared once: each launch gives the call's bits, on a
    side stream too -- 0.6.3: with the workspace allocated on the launch's stream each time;
    0.7.4: with the launch's own workspace, sized at prepare time."""
    from flashinfer_cy._core.runtime import env_alloc_live

    p = make_problem(rng, torch, "bf16", 1, 64, 8)
    eager = ours(p, torch).clone()
    m = fc.CutlassFusedMoE("bfloat16", "bfloat16")
    out = torch.full_like(eager, float("nan"))
    step = m.prepare(p["x"], p["ids_t"], p["weights_t"], p["w1"], p["w2"], output=out)
    for stream in (None, torch.cuda.Stream()):
        out.fill_(float("nan"))
        if stream is not None:
            stream.wait_stream(torch.cuda.current_stream())
        step.launch(stream=stream)
        torch.cuda.synchronize()
        assert_bits_equal(out, eager, "prepared launch")
    assert env_alloc_live() == 0


def test_allocated_output_and_tactic_pair(rng, torch):
    """``output=None`` gives a DeviceArray on the call's stream; an explicit tactic pair
    (the last of each GEMM) gives a result within the reference's tolerance."""
    p = make_problem(rng, torch, "fp16", 7, 8, 2)
    m = fc.CutlassFusedMoE("float16", "float16")
    g1, g2 = m.tactic_counts
    assert g1 > 0 and g2 > 0
    ref = routed_mlp(p, torch)
    for pair in (None, (g1 - 1, g2 - 1)):
        out = m.fused_moe(p["x"], p["ids_t"], p["weights_t"], p["w1"], p["w2"],
                          profile_ids=pair)
        assert isinstance(out, fc.DeviceArray)
        got = host(torch.from_dlpack(out), torch)
        assert_close(got, ref, "fp16", f"tactics {pair}")
