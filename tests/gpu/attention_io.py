"""Torch plumbing and fixtures shared by the attention GPU tests (torch is only the test's
way to make device tensors; flashinfer_cy itself never imports it)."""

from __future__ import annotations

import numpy as np
import pytest

from flashinfer_cy.kernels.attention_uri import variant
from gpu_env import require_gpu, require_module

DTYPES = ["float16", "bfloat16"]


def torch_cuda():
    try:
        import torch
    except ImportError as exc:
        pytest.skip(f"torch is needed to build test tensors: {exc}")
    if not torch.cuda.is_available():
        pytest.skip("torch sees no CUDA device")
    return torch


def dev(torch, x, dtype):
    """float64 numpy (already rounded to ``dtype``) -> CUDA tensor of ``dtype``."""
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(
        device="cuda", dtype=getattr(torch, dtype))


def host(torch, t):
    torch.cuda.synchronize()
    return t.double().cpu().numpy()


def poison(torch, shape, dtype):
    return torch.full(shape, float("nan"), dtype=getattr(torch, dtype), device="cuda")


def prefill_matrix(fn):
    """Parametrize a batch prefill test over dtype x layout x causal x backend."""
    for name, values, ids in (("dtype", DTYPES, None), ("layout", ["NHD", "HND"], None),
                              ("causal", [False, True], ["full", "causal"]),
                              ("backend", ["fa2", "fa3"], None)):
        fn = pytest.mark.parametrize(name, values, ids=ids)(fn)
    return fn


def prefill_lens(qo_lens, prefix):
    """(qo_len, kv_len = qo_len + prefix, qo_indptr int32) of a ragged batch: causal rows
    align bottom-right when the prefix is not 0."""
    qo = np.array(qo_lens)
    kv = qo + np.array(prefix)
    return qo, kv, np.concatenate([[0], np.cumsum(qo)]).astype(np.int32)


def need(family, dtype, head_dim=128, window_left=-1, cap=0.0, backend="fa2", kv_dtype=None):
    """Skip unless the module for this variant is on disk already (never starts a wheel
    download: the GPU machine is offline and retries would only burn time); returns its
    URI."""
    return need_uri(variant(family, dtype, head_dim, window_left, cap, backend, kv_dtype).uri,
                    backend)


def need_uri(uri, backend="fa2"):
    """``need`` for a module URI (MLA's too): skip unless it is on disk, and unless the GPU
    is sm90 for an FA3 module; returns the URI."""
    from flashinfer_cy.artifacts import where_is

    step, path = where_is(uri)
    if path is None and step in ("download", "missing"):
        require_gpu()
        pytest.skip(f"kernel module {uri} is not built here; build it with "
                    f"`python tools/build_kernels.py --out .kernels {uri}`")
    require_module(uri)
    if backend == "fa3":
        import torch

        if torch.cuda.get_device_capability()[0] != 9:
            pytest.skip("FA3 (_sm90) modules need an sm90 GPU")
    return uri


@pytest.fixture
def rng(request):
    seed = int(np.random.SeedSequence().entropy % 2**32)
    request.node.user_properties.append(("seed", seed))
    print(f"seed={seed}")  # shown with the failure report
    return np.random.default_rng(seed)


@pytest.fixture
def torch():
    return torch_cuda()
