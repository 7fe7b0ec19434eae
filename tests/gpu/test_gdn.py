"""gdn_prefill on an sm_90 GPU against the float64 gated delta rule (gdn_ref.py).

Inputs are fresh random data each run (the seed is printed and recorded); ``output`` and
``output_state`` are filled with NaN first, so anything the kernel leaves unwritten fails.
Inputs follow upstream's tests: values around +-0.25, keys L2-normalised (the delta rule is
only numerically tame for |k| ~ 1), gates in (0, 1]. Every wait on the GPU goes through the
hang watchdog (60 s)."""

from __future__ import annotations

import numpy as np
import pytest

import flashinfer_cy as fc
from flashinfer_cy._core.runtime import (device_compute_capability_major,
                                         device_multiprocessor_count)
from devdata import download, poison, upload
from gdn_ref import gated_delta_rule, require_gdn_device
from gpu_env import require_gpu
from hang_watchdog import wait_for
from refs import round_to

D = 128
# name -> (sequence lengths, (q_heads, k_heads, v_heads))
LAYOUTS = {
    "mha": ([5, 70, 129], (4, 4, 4)),          # the configuration checked in verified-facts
    "gqa": ([1, 64, 65, 200], (6, 2, 2)),
    "gva": ([31, 128, 97], (2, 2, 4)),
}
# |got - ref| <= frac * max|ref| + rtol * |ref|, per element. The kernel rounds chunk-local
# intermediates to the input type, so bfloat16 gets ~8x float16's tolerance.
TOL = {"float16": dict(out=(4e-3, 1e-2), state=(2e-3, 1e-2)),
       "bfloat16": dict(out=(2.5e-2, 4e-2), state=(1.5e-2, 4e-2))}


def any_arch(fn):
    fn.any_arch = True
    return fn


@pytest.fixture(autouse=True)
def _sm90_with_module(request):
    if not getattr(request.function, "any_arch", False):
        require_gdn_device()


def make_inputs(rng, seq_lens, heads, dtype, *, alpha=False, beta=False, init=False):
    """Host float64 inputs already rounded to what the device holds, plus device copies."""
    hq, hk, hv = heads
    n, h = sum(seq_lens), max(hq, hv)

    def qkv(nh):  # upstream's gen_qkv: per-row mean ~ N(0, 0.05), spread +-0.25
        return rng.normal(0, 0.05, (n, nh, 1)) + rng.uniform(-0.25, 0.25, (n, nh, D))

    k = qkv(hk)
    k /= np.linalg.norm(k, axis=-1, keepdims=True)
    host = dict(q=round_to(qkv(hq), dtype), k=round_to(k, dtype), v=round_to(qkv(hv), dtype),
                cu_seqlens=np.concatenate([[0], np.cumsum(seq_lens)]).astype(np.int64))
    f32 = lambda x: x.astype(np.float32).astype(np.float64)  # noqa: E731
    if alpha:
        host["alpha"] = f32(rng.uniform(0.02, 1.0, (n, h)))
    if beta:
        host["beta"] = f32(rng.uniform(0.02, 1.0, (n, h)))
    if init:
        host["initial_state"] = f32(rng.normal(0, 0.1, (len(seq_lens), h, D, D)))
    return host, to_device(host, dtype)


def to_device(host, dtype):
    kinds = dict(q=dtype, k=dtype, v=dtype, cu_seqlens="int64")
    return {name: upload(x, kinds.get(name, "float32")) for name, x in host.items()}


def reference(host, scale=0.0):
    return gated_delta_rule(host["q"], host["k"], host["v"], host["cu_seqlens"],
                            alpha=host.get("alpha"), beta=host.get("beta"),
                            initial_state=host.get("initial_state"), scale=scale)


def run(dev, dtype, scale=0.0, **kw):
    """gdn_prefill into NaN-poisoned outputs; waits (watchdog) and returns float64 copies."""
    n, h = dev["q"].shape[0], max(dev["q"].shape[1], dev["v"].shape[1])
    num_seqs = dev["cu_seqlens"].shape[0] - 1
    out = kw.pop("output", None)
    out = poison((n, h, D), dtype) if out is None else out
    state = kw.pop("output_state", None)
    state = poison((num_seqs, h, D, D), "float32") if state is None else state
    ret = fc.gdn_prefill(dev["q"], dev["k"], dev["v"], dev["cu_seqlens"],
                         initial_state=dev.get("initial_state"), alpha=dev.get("alpha"),
                         beta=dev.get("beta"), scale=scale, output=out, output_state=state,
                         **kw)
    assert ret[0] is out and ret[1] is state
    wait_for(kw.get("stream") or 0, "gdn_prefill")
    return download(out, dtype), download(state, "float32")


def assert_close(got, ref, tol, what, ctx):
    frac, rtol = tol
    err = np.abs(got - ref)
    limit = frac * np.abs(ref).max() + rtol * np.abs(ref)
    bad = ~(err <= limit)  # NaN counts as bad
    if bad.any():
        i = tuple(np.argwhere(bad)[0])
        pytest.fail(f"{what}: {bad.sum()} of {ref.size} elements out of tolerance "
                    f"(frac {frac}, rtol {rtol}); max abs err {np.nanmax(err):.3g}, max |ref| "
                    f"{np.abs(ref).max():.3g}, NaN {np.isnan(got).sum()}; first at {i}: got "
                    f"{got[i]:.6g} want {ref[i]:.6g}; {ctx}", pytrace=False)


def check(host, dtype, got_out, got_state, ctx, scale=0.0):
    ref_out, ref_state = reference(host, scale)
    assert_close(got_out, ref_out, TOL[dtype]["out"], "output", ctx)
    assert_close(got_state, ref_state, TOL[dtype]["state"], "output_state", ctx)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("gates", ["none", "alpha", "beta", "alpha+beta"])
@pytest.mark.parametrize("init", [False, True], ids=["zero_state", "initial_state"])
def test_matches_float64_reference(dtype, layout, gates, init, rng):
    seq_lens, heads = LAYOUTS[layout]
    host, dev = make_inputs(rng, seq_lens, heads, dtype, alpha="alpha" in gates,
                            beta="beta" in gates, init=init)
    out, state = run(dev, dtype)
    check(host, dtype, out, state, f"{dtype} seqs {seq_lens} q/k/v heads {heads} {gates} "
                                   f"initial_state={init}")


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("scale", [1.0, 0.3, -0.05])
def test_explicit_scale_with_every_option(dtype, scale, rng):
    seq_lens, heads = LAYOUTS["gva"]
    host, dev = make_inputs(rng, seq_lens, heads, dtype, alpha=True, beta=True, init=True)
    out, state = run(dev, dtype, scale=scale)
    check(host, dtype, out, state, f"{dtype} scale {scale}", scale=scale)


@pytest.mark.parametrize("layout", ["gqa", "gva"])
def test_outputs_and_workspace_allocated_when_omitted(layout, rng):
    seq_lens, heads = LAYOUTS[layout]
    host, dev = make_inputs(rng, seq_lens, heads, "bfloat16", alpha=True, beta=True)
    out, state = fc.gdn_prefill(dev["q"], dev["k"], dev["v"], dev["cu_seqlens"],
                                alpha=dev["alpha"], beta=dev["beta"])
    h = max(heads[0], heads[2])
    assert isinstance(out, fc.DeviceArray) and out.shape == (sum(seq_lens), h, D)
    assert out.dtype == "bfloat16"
    assert isinstance(state, fc.DeviceArray) and state.shape == (len(seq_lens), h, D, D)
    assert state.dtype == "float32"
    wait_for(0, "gdn_prefill")
    check(host, "bfloat16", download(out, "bfloat16"), download(state, "float32"), layout)


@pytest.mark.parametrize("size", ["tight", "32MiB"])
def test_caller_workspace(size, rng):
    need = device_multiprocessor_count(0) * 128
    ws = fc.DeviceArray.empty((need if size == "tight" else 32 << 20,), "uint8")
    seq_lens, heads = LAYOUTS["gqa"]
    host, dev = make_inputs(rng, seq_lens, heads, "float16", alpha=True, beta=True)
    out, state = run(dev, "float16", workspace=ws)
    check(host, "float16", out, state, f"workspace {ws.shape[0]} bytes")


def test_undersized_workspace_is_rejected_before_launch(rng):
    need = device_multiprocessor_count(0) * 128
    _, dev = make_inputs(rng, [8], (1, 1, 1), "float16")
    out = poison((8, 1, D), "float16")
    with pytest.raises(ValueError, match=f"workspace: expected at least {need} bytes"):
        fc.gdn_prefill(dev["q"], dev["k"], dev["v"], dev["cu_seqlens"], output=out,
                       workspace=fc.DeviceArray.empty((need - 64,), "uint8"))
    assert np.isnan(download(out, "float16")).all(), "the kernel ran anyway"


def test_chunked_prefill_equals_one_pass(rng):
    """Each sequence in two calls, the first call's output_state as the second's
    initial_state, must give the single call's outputs and final states."""
    dtype, heads, first, second = "float16", (2, 2, 4), [40, 64, 3], [90, 1, 128]
    host, dev = make_inputs(rng, [a + b for a, b in zip(first, second)], heads, dtype,
                            alpha=True, beta=True)
    whole_out, whole_state = run(dev, dtype)
    cu = host["cu_seqlens"]
    rows1 = np.concatenate([np.arange(cu[i], cu[i] + first[i]) for i in range(3)])
    rows2 = np.concatenate([np.arange(cu[i] + first[i], cu[i + 1]) for i in range(3)])
    part = lambda rows, lens: to_device(  # noqa: E731
        {**{n: host[n][rows] for n in ("q", "k", "v", "alpha", "beta")},
         "cu_seqlens": np.concatenate([[0], np.cumsum(lens)])}, dtype)
    dev1, dev2 = part(rows1, first), part(rows2, second)
    out1, state1 = run(dev1, dtype)
    dev2["initial_state"] = upload(state1, "float32")
    out2, state2 = run(dev2, dtype)
    ctx = f"chunks {first} + {second}"
    assert_close(out1, whole_out[rows1], TOL[dtype]["out"], "first-chunk output", ctx)
    assert_close(out2, whole_out[rows2], TOL[dtype]["out"], "second-chunk output", ctx)
    assert_close(state2, whole_state, TOL[dtype]["state"], "final state", ctx)


def test_state_updated_in_place(rng):
    """initial_state and output_state the same array: each (sequence, head) block reads its
    state once and writes it at the end, so the result must equal the out-of-place one."""
    seq_lens, heads = LAYOUTS["gqa"]
    host, dev = make_inputs(rng, seq_lens, heads, "bfloat16", alpha=True, beta=True, init=True)
    out, state = run(dev, "bfloat16")
    in_place = upload(host["initial_state"], "float32")
    dev["initial_state"] = in_place
    out2, state2 = run(dev, "bfloat16", output_state=in_place)
    np.testing.assert_array_equal(out2, out)
    np.testing.assert_array_equal(state2, state)


def test_empty_batch_launches_nothing():
    q = fc.DeviceArray.empty((0, 2, D), "float16")
    cu = upload(np.zeros(1), "int64")
    out, state = fc.gdn_prefill(q, q, q, cu)
    assert out.shape == (0, 2, D) and state.shape == (0, 2, D, D)


def test_torch_tensors_on_a_side_stream(rng):
    torch = pytest.importorskip("torch")
    seq_lens, heads = LAYOUTS["gva"]
    host, _ = make_inputs(rng, seq_lens, heads, "bfloat16", alpha=True, beta=True, init=True)
    kinds = dict(q=torch.bfloat16, k=torch.bfloat16, v=torch.bfloat16, cu_seqlens=torch.int64)
    t = {n: torch.tensor(x, device="cuda", dtype=kinds.get(n, torch.float32))
         for n, x in host.items()}
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        out, state = fc.gdn_prefill(t["q"], t["k"], t["v"], t["cu_seqlens"],
                                    initial_state=t["initial_state"], alpha=t["alpha"],
                                    beta=t["beta"])
    wait_for(s.cuda_stream, "gdn_prefill on a torch stream")
    check(host, "bfloat16", download(out, "bfloat16"), download(state, "float32"), "torch")


@any_arch
def test_other_architectures_raise_unsupported_device(rng):
    require_gpu()
    major = device_compute_capability_major(0)
    if major == 9:
        pytest.skip("device 0 is sm_90: gdn_prefill is supported here")
    _, dev = make_inputs(rng, [4], (1, 1, 1), "float16")
    with pytest.raises(fc.UnsupportedDeviceError, match="sm_90"):
        fc.gdn_prefill(dev["q"], dev["k"], dev["v"], dev["cu_seqlens"])
