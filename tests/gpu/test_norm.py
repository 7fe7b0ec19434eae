"""RMSNorm family on the GPU against float64 numpy, for torch, CuPy and raw-pointer inputs.

Inputs are fresh random data each run; outputs are filled with NaN before the kernel runs,
so an output the kernel did not write cannot pass."""

from __future__ import annotations

import numpy as np
import pytest

import flashinfer_cy as fc
from backends import available_backends, make_backend
from devdata import OnlyDLPack
from gpu_env import require_module
from refs import TOL, rmsnorm_ref, round_to

BACKENDS = available_backends()
DTYPES = ["float16", "bfloat16"]
# hidden sizes: tiny, typical, not a power of two, odd (forces 1-element vector accesses)
SHAPES_2D = [(1, 128), (7, 4096), (33, 5120), (3, 1003), (130, 3000)]


@pytest.fixture(autouse=True)
def _norm_module():
    require_module("norm")


def _backend(cls, dtype):
    be = make_backend(cls)
    if dtype not in be.dtypes:
        pytest.skip(f"{be.name} has no {dtype}")
    return be


def _inputs(rng, shape, dtype, hidden):
    x = round_to(rng.standard_normal(shape) * 2.0, dtype)
    w = round_to(rng.standard_normal(hidden), dtype)
    return x, w


def _torch_case(rng, shape, dtype):
    """float64 inputs, the same on the GPU as torch tensors, and a NaN-filled output."""
    torch = pytest.importorskip("torch")
    x64, w64 = _inputs(rng, shape, dtype, shape[-1])
    tdt = getattr(torch, dtype)
    x = torch.tensor(x64, dtype=tdt, device="cuda")
    w = torch.tensor(w64, dtype=tdt, device="cuda")
    return torch, x64, w64, x, w, torch.full_like(x, float("nan"))


def _side_stream(torch):
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    return s


@pytest.mark.parametrize("cls", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES_2D, ids=str)
@pytest.mark.parametrize("gemma", [False, True], ids=["rmsnorm", "gemma"])
def test_rmsnorm_2d(cls, dtype, shape, gemma, rng):
    be = _backend(cls, dtype)
    x64, w64 = _inputs(rng, shape, dtype, shape[1])
    x, w = be.put(x64, dtype), be.put(w64, dtype)
    out = be.poison(shape, dtype)
    fn = fc.gemma_rmsnorm if gemma else fc.rmsnorm
    ret = fn(x, w, 1e-6, out=out)
    assert ret is out
    np.testing.assert_allclose(be.get(out, dtype), rmsnorm_ref(x64, w64, 1e-6, gemma),
                               **TOL[dtype])
    np.testing.assert_array_equal(be.get(x, dtype), x64)  # input untouched


@pytest.mark.parametrize("cls", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_qk_rmsnorm_3d_with_non_packed_strides(cls, dtype, rng):
    """[tokens, heads, head_dim] views into larger buffers: stride(0) and stride(1) are not
    the packed ones, and the data pointer is offset into the parent."""
    be = _backend(cls, dtype)
    tokens, heads, head_dim = 5, 8, 128
    parent64 = round_to(rng.standard_normal((tokens, 12, head_dim)), dtype)
    w64 = round_to(rng.standard_normal(head_dim), dtype)
    parent = be.put(parent64, dtype)
    x = be.view(parent, (slice(None), slice(2, 2 + heads), slice(None)))
    out_parent = be.poison((tokens, 11, head_dim), dtype)
    out = be.view(out_parent, (slice(None), slice(1, 1 + heads), slice(None)))
    fc.rmsnorm(x, be.put(w64, dtype), 1e-5, out=out)
    got = be.get(out_parent, dtype)
    ref = rmsnorm_ref(parent64[:, 2:2 + heads], w64, 1e-5)
    np.testing.assert_allclose(got[:, 1:1 + heads], ref, **TOL[dtype])
    assert np.isnan(got[:, 0]).all() and np.isnan(got[:, 1 + heads:]).all(), \
        "the kernel wrote outside the output view"


@pytest.mark.parametrize("cls", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("gemma", [False, True], ids=["fused_add", "gemma_fused_add"])
@pytest.mark.parametrize("shape", [(1, 256), (17, 4096), (9, 1000)], ids=str)
def test_fused_add_rmsnorm(cls, dtype, gemma, shape, rng):
    be = _backend(cls, dtype)
    x64, w64 = _inputs(rng, shape, dtype, shape[1])
    r64 = round_to(rng.standard_normal(shape), dtype)
    x, r, w = be.put(x64, dtype), be.put(r64, dtype), be.put(w64, dtype)
    fn = fc.gemma_fused_add_rmsnorm if gemma else fc.fused_add_rmsnorm
    assert fn(x, r, w, 1e-6) is None
    # The kernel adds in float32 and stores the sum rounded to the storage type.
    r_new = round_to(x64 + r64, dtype)
    np.testing.assert_allclose(be.get(r, dtype), r_new, **TOL[dtype])
    np.testing.assert_allclose(be.get(x, dtype), rmsnorm_ref(x64 + r64, w64, 1e-6, gemma),
                               **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_out_omitted_returns_device_array_on_the_call_stream(dtype, rng):
    be = make_backend(available_backends()[-1].values[0])  # raw
    x64, w64 = _inputs(rng, (6, 512), dtype, 512)
    out = fc.rmsnorm(be.put(x64, dtype), be.put(w64, dtype))
    assert isinstance(out, fc.DeviceArray)
    assert out.shape == (6, 512) and out.dtype == dtype
    np.testing.assert_allclose(be.get(out, dtype), rmsnorm_ref(x64, w64, 1e-6), **TOL[dtype])


@pytest.mark.parametrize("enable_pdl", [False, True])
def test_enable_pdl_both_ways(enable_pdl, rng):
    be = make_backend(available_backends()[-1].values[0])
    x64, w64 = _inputs(rng, (4, 2048), "float16", 2048)
    out = be.poison((4, 2048), "float16")
    fc.rmsnorm(be.put(x64, "float16"), be.put(w64, "float16"), out=out, enable_pdl=enable_pdl)
    np.testing.assert_allclose(be.get(out, "float16"), rmsnorm_ref(x64, w64, 1e-6),
                               **TOL["float16"])


def test_zero_tokens_is_a_no_op():
    be = make_backend(available_backends()[-1].values[0])
    x = fc.DeviceArray.empty((0, 128), "float16")
    w = be.put(np.ones(128), "float16")
    out = fc.rmsnorm(x, w)
    assert out.shape == (0, 128)


# ------------------------------------------------------------------------- streams

def test_torch_current_stream_is_used_and_graph_capture_works(rng):
    torch, x64, w64, x, w, out = _torch_case(rng, (8, 1024), "bfloat16")
    s = _side_stream(torch)
    graph = torch.cuda.CUDAGraph()
    # Capture fails if the launch goes to any stream but the capturing (current) one.
    with torch.cuda.stream(s):
        with torch.cuda.graph(graph, stream=s):
            fc.rmsnorm(x, w, 1e-6, out=out)
    torch.cuda.synchronize()
    assert torch.isnan(out).all(), "capture must not execute the kernel"
    x2 = round_to(rng.standard_normal((8, 1024)), "bfloat16")
    x.copy_(torch.tensor(x2, dtype=torch.bfloat16))
    graph.replay()
    torch.cuda.synchronize()
    np.testing.assert_allclose(out.float().cpu().numpy(), rmsnorm_ref(x2, w64, 1e-6),
                               **TOL["bfloat16"])


@pytest.mark.parametrize("form", ["int", "cuda_core", "cuda_bindings", "torch", "cupy"])
def test_explicit_stream_forms(form, rng):
    torch = pytest.importorskip("torch")
    s = torch.cuda.Stream()
    if form == "int":
        stream = s.cuda_stream
    elif form == "torch":
        stream = s
    elif form == "cuda_bindings":
        from cuda.bindings import driver
        stream = driver.CUstream(s.cuda_stream)
    elif form == "cuda_core":
        core = pytest.importorskip("cuda.core")
        stream = core.Stream.from_handle(s.cuda_stream)
    else:
        cupy = pytest.importorskip("cupy")
        stream = cupy.cuda.ExternalStream(s.cuda_stream)
    _, x64, w64, x, w, out = _torch_case(rng, (16, 2048), "float16")
    torch.cuda.synchronize()
    fc.rmsnorm(x, w, out=out, stream=stream)
    s.synchronize()
    np.testing.assert_allclose(out.float().cpu().numpy(), rmsnorm_ref(x64, w64, 1e-6),
                               **TOL["float16"])


# ------------------------------------------------------------------------- bad input

def _t(shape, dtype="float16"):
    return fc.DeviceArray.empty(shape, dtype)


@pytest.mark.parametrize("call, exc, words", [
    (lambda: fc.rmsnorm(_t((4, 64), "float32"), _t((64,))), TypeError, "input: expected dtype"),
    (lambda: fc.rmsnorm(_t((4, 64)), _t((32,))), ValueError, "weight: expected size 64"),
    (lambda: fc.rmsnorm(_t((4, 64)), _t((64,), "bfloat16")), TypeError, "weight: expected dtype"),
    (lambda: fc.rmsnorm(_t((4, 64)), _t((64,)), out=_t((4, 32))), ValueError, "out: expected shape"),
    (lambda: fc.rmsnorm(_t((64,)), _t((64,))), ValueError, "input: expected 2 dimensions"),
    (lambda: fc.gemma_rmsnorm(_t((2, 4, 64)), _t((64,))), ValueError, "input: expected 2 dim"),
    (lambda: fc.rmsnorm(_t((4, 64)), _t((64,)), float("nan")), ValueError, "eps: expected a finite"),
    (lambda: fc.rmsnorm(_t((4, 64)), _t((64,)), -1.0), ValueError, "eps"),
    (lambda: fc.rmsnorm(_t((4, 64)), _t((64,)), None), TypeError, "eps: expected a float"),
    (lambda: fc.rmsnorm(None, _t((64,))), TypeError, "input: expected a tensor, got None"),
    (lambda: fc.rmsnorm(_t((4, 64)), object()), TypeError, "weight: expected a tensor"),
    (lambda: fc.rmsnorm(np.ones((4, 64), np.float16), _t((64,))), ValueError, "input: expected a CUDA tensor"),
    (lambda: fc.fused_add_rmsnorm(_t((4, 64)), _t((5, 64)), _t((64,))), ValueError, "residual: expected shape"),
    (lambda: fc.rmsnorm(_t((4, 64)), _t((64,)), stream=-5), ValueError, "stream"),
    (lambda: fc.rmsnorm(_t((4, 64)), _t((64,)), stream="s"), TypeError, "stream"),
])
def test_bad_input_raises_naming_the_argument(call, exc, words):
    with pytest.raises(exc, match=words.replace("(", r"\(")):
        call()


def test_misaligned_row_start_is_rejected_not_a_cuda_fault():
    base = fc.DeviceArray.empty((4, 65), "float16")
    # rows of 64 starting 1 element in: every row start is 2-byte aligned only
    x = fc.TensorDesc(base.ptr + 2, (4, 64), "float16", strides=(65, 1), owner=base)
    with pytest.raises(ValueError, match="input: .*(aligned|multiple)"):
        fc.rmsnorm(x, _t((64,)))


def test_non_contiguous_last_dim_is_rejected():
    torch = pytest.importorskip("torch")
    x = torch.zeros(8, 64, device="cuda", dtype=torch.float16).t()
    with pytest.raises(ValueError, match="input: the last dimension must be contiguous"):
        fc.rmsnorm(x, torch.zeros(8, device="cuda", dtype=torch.float16))


# ------------------------------------------------------------------------- producer protocols

class OnlyCAI:
    """A producer that speaks only the CUDA Array Interface (as Numba device arrays do)."""

    def __init__(self, t, stream=None):
        self._t = t
        cai = dict(t.__cuda_array_interface__)
        if stream is not None:
            cai["stream"] = stream
        self.__cuda_array_interface__ = cai


@pytest.mark.parametrize("wrap", [OnlyCAI, OnlyDLPack])
def test_generic_producers(wrap, rng):
    torch, x64, w64, x, w, out = _torch_case(rng, (12, 768), "float16")
    fc.rmsnorm(wrap(x), wrap(w), out=wrap(out))
    torch.cuda.synchronize()
    np.testing.assert_allclose(out.float().cpu().numpy(), rmsnorm_ref(x64, w64, 1e-6),
                               **TOL["float16"])


def test_cai_v3_stream_is_the_default_launch_stream(rng):
    """A CAI v3 producer that names its stream gets the kernel on that stream: capturing
    that stream into a graph only works if the launch really went there."""
    torch, x64, w64, x, w, out = _torch_case(rng, (4, 256), "float16")
    s = _side_stream(torch)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g, stream=s):
        fc.rmsnorm(OnlyCAI(x, s.cuda_stream), OnlyCAI(w, s.cuda_stream),
                   out=OnlyCAI(out, s.cuda_stream))
    g.replay()
    torch.cuda.synchronize()
    np.testing.assert_allclose(out.float().cpu().numpy(), rmsnorm_ref(x64, w64, 1e-6),
                               **TOL["float16"])
