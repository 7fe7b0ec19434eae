"""Gated activations on the GPU against float64 numpy and bit for bit against
flashinfer-python on the same modules (torch, CuPy and raw-pointer inputs for the
reference check; outputs NaN-poisoned before each call)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import flashinfer_cy as fc
from backends import available_backends, make_backend
from gpu_env import require_module
from peer import assert_bits_equal, flashinfer_peer
from refs import TOL, round_to

ACTS = {
    "silu": lambda x: x / (1.0 + np.exp(-x)),
    "gelu": lambda x: 0.5 * x * (1.0 + np.vectorize(math.erf, otypes=[float])(x / math.sqrt(2.0))),
    "gelu_tanh": lambda x: 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi)
                                                    * (x + 0.044715 * x ** 3))),
}
FN = {"silu": fc.silu_and_mul, "gelu": fc.gelu_and_mul, "gelu_tanh": fc.gelu_tanh_and_mul}
# (tokens..., d): one token, a decode batch, Llama-3-8B's intermediate size, a 3-D input,
# d = 8 (one vector per token) and a d that is not a multiple of 1024 * 8
SHAPES = [((1,), 14336), ((7,), 4096), ((3, 5), 256), ((64,), 8), ((2,), 11008), ((0,), 64)]


def act_ref(x, act):
    d = x.shape[-1] // 2
    return ACTS[act](x[..., :d]) * x[..., d:]


@pytest.mark.parametrize("cls", available_backends())
@pytest.mark.parametrize("act", list(ACTS))
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_against_float64(cls, act, dtype, shape, rng):
    require_module(f"{act}_and_mul")
    be = make_backend(cls)
    if dtype not in be.dtypes:
        pytest.skip(f"{be.name} has no {dtype}")
    lead, d = shape
    x64 = round_to(rng.standard_normal(lead + (2 * d,)) * 3.0, dtype)
    x = be.put(x64, dtype)
    out = be.poison(lead + (d,), dtype)
    assert FN[act](x, out=out) is out
    np.testing.assert_allclose(be.get(out, dtype), act_ref(x64, act), **TOL[dtype])


@pytest.mark.parametrize("act", list(ACTS))
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("shape", SHAPES[:5], ids=str)
@pytest.mark.parametrize("pdl", [False, True])
def test_bit_identical_to_flashinfer_python(act, dtype, shape, pdl, rng):
    require_module(f"{act}_and_mul")
    torch = pytest.importorskip("torch")
    fi = flashinfer_peer()
    lead, d = shape
    x = torch.tensor(rng.standard_normal(lead + (2 * d,)) * 3.0,
                     dtype=getattr(torch, dtype), device="cuda")
    ours = FN[act](x, enable_pdl=pdl)
    theirs = getattr(fi.activation, f"{act}_and_mul")(x, enable_pdl=pdl)
    assert_bits_equal(torch.from_dlpack(ours), theirs, f"{act}_and_mul")


def test_refused_where_flashinfer_python_would_fault():
    """d = 12: flashinfer-python checks only that 2*d*itemsize is a multiple of 16, so the
    second half starts 24 bytes in and its 16-byte loads are misaligned. Refused here."""
    require_module("silu_and_mul")
    torch = pytest.importorskip("torch")
    x = torch.randn(3, 24, dtype=torch.float16, device="cuda")
    with pytest.raises(ValueError, match="input: the last dimension"):
        fc.silu_and_mul(x)
    with pytest.raises(ValueError, match="out: expected shape"):
        fc.silu_and_mul(torch.randn(3, 32, dtype=torch.float16, device="cuda"),
                        out=torch.empty(3, 8, dtype=torch.float16, device="cuda"))
