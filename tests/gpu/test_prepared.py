"""flashinfer_cy.prepare on the GPU: a prepared launch gives the same bits as the call it
was prepared from, follows repointed memory, runs inside a captured CUDA graph, and changes
per-launch scalars; what it must not change is refused."""

from __future__ import annotations

import numpy as np
import pytest

import flashinfer_cy as fc
from gpu_env import require_module

torch = pytest.importorskip("torch")


def test_activation_prepared_then_repointed(rng):
    require_module("silu_and_mul")
    x = torch.tensor(rng.standard_normal((8, 2048)), dtype=torch.bfloat16, device="cuda")
    x2 = torch.tensor(rng.standard_normal((8, 2048)), dtype=torch.bfloat16, device="cuda")
    want, want2 = fc.silu_and_mul(x), fc.silu_and_mul(x2)
    out = torch.full((8, 1024), float("nan"), dtype=torch.bfloat16, device="cuda")
    p = fc.prepare(fc.silu_and_mul, x, out=out)
    assert p.num_calls == 1 and p.arguments[0][0] == "silu_and_mul"
    torch.cuda.synchronize()
    assert torch.isnan(out).all()  # prepare launched nothing
    assert p.launch() is out
    torch.cuda.synchronize()
    assert torch.equal(out, torch.from_dlpack(want))
    p.repoint(input=x2.data_ptr())
    p.launch()
    torch.cuda.synchronize()
    assert torch.equal(out, torch.from_dlpack(want2))
    with pytest.raises(ValueError, match="aligned like"):
        p.repoint(input=x2.data_ptr() + 2)
    with pytest.raises(ValueError, match="not a per-launch argument"):
        p.set(enable_pdl=False)


def test_rope_prepared_in_a_cuda_graph(rng):
    """A decode step's rope: positions advance in a device buffer between graph replays."""
    require_module("rope")
    q = torch.tensor(rng.standard_normal((4, 32, 128)), dtype=torch.float16, device="cuda")
    k = torch.tensor(rng.standard_normal((4, 8, 128)), dtype=torch.float16, device="cuda")
    pos = torch.tensor([3, 100, 7, 2047], dtype=torch.int32, device="cuda")
    qo, ko = torch.empty_like(q), torch.empty_like(k)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        p = fc.prepare(fc.apply_rope_pos_ids, q, k, pos, q_rope=qo, k_rope=ko)
        p.launch()  # warm-up outside the capture
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        p.launch(stream=torch.cuda.current_stream())
    for step in range(3):
        pos += 1
        qo.fill_(float("nan"))
        g.replay()
        torch.cuda.synchronize()
        wq, wk = fc.apply_rope_pos_ids(q, k, pos)
        torch.cuda.synchronize()
        assert torch.equal(qo, torch.from_dlpack(wq)), step
        assert torch.equal(ko, torch.from_dlpack(wk)), step


def test_sampler_prepared_with_per_launch_philox(rng):
    """A decode loop's sampler: prepared once, its philox offset moved on per launch, draws
    the same tokens as the eager call with that seed and offset (and the composed
    top-k -> softmax -> top-p form records its three kernels)."""
    require_module("sampling")
    logits = torch.tensor(rng.standard_normal((4, 32000)) * 3, dtype=torch.float32,
                          device="cuda")
    out = torch.full((4,), -1, dtype=torch.int32, device="cuda")
    p = fc.prepare(fc.top_k_top_p_sampling_from_logits, logits, 50, 0.9, seed=1234, offset=0,
                   out=out)
    assert p.num_calls == 3
    for offset in (0, 8, 16, 1 << 40):
        p.set(philox_offset=offset)
        p.launch()
        want = fc.top_k_top_p_sampling_from_logits(logits, 50, 0.9, seed=1234, offset=offset)
        torch.cuda.synchronize()
        assert torch.equal(out, torch.from_dlpack(want).to(torch.int32)), offset
    with pytest.raises(TypeError, match="philox_seed"):
        p.set(philox_seed=-(1 << 63) - 1)
