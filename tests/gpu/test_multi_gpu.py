"""A second GPU: tensors and a stream on device 1 run on device 1 while device 0 is current
(and the caller's current device is left as it was), DeviceArray allocates where it is
told, and tensors on different devices are a ValueError naming the argument.

Skipped, with the reason, on machines with fewer than two GPUs. Raw DeviceArray inputs
throughout (no torch needed); the torch case runs when torch is installed."""

from __future__ import annotations

import numpy as np
import pytest

import flashinfer_cy as fc
from devdata import download
from gpu_env import require_module
from refs import TOL, rmsnorm_ref, round_to


def _rt():
    from cuda.bindings import runtime as rt

    return rt


def _ok(err, what):
    assert int(err) == 0, f"{what}: {err!r}"


@pytest.fixture(autouse=True)
def two_gpus():
    rt = _rt()
    err, n = rt.cudaGetDeviceCount()
    if int(err) != 0 or n < 2:
        pytest.skip(f"needs 2 GPUs, this machine has {n if int(err) == 0 else 0}")
    _ok(rt.cudaSetDevice(0)[0], "cudaSetDevice(0)")
    yield
    _ok(rt.cudaSetDevice(0)[0], "cudaSetDevice(0)")


def current_devices():
    """The calling thread's current device as every layer sees it: the CUDA runtime, the
    driver's current context and (when installed) torch."""
    from cuda.bindings import driver

    rt = _rt()
    err, dev = rt.cudaGetDevice()
    _ok(err, "cudaGetDevice")
    seen = {"cudaGetDevice": dev}
    err, ctx_dev = driver.cuCtxGetDevice()
    if int(err) == 0:
        seen["cuCtxGetDevice"] = int(ctx_dev)
    try:
        import torch
    except ImportError:
        return seen
    seen["torch.cuda.current_device"] = torch.cuda.current_device()
    return seen


def stream_on(device):
    """A new stream of ``device`` (made current only while creating it)."""
    rt = _rt()
    err, prev = rt.cudaGetDevice()
    _ok(rt.cudaSetDevice(device)[0], f"cudaSetDevice({device})")
    err, s = rt.cudaStreamCreateWithFlags(rt.cudaStreamNonBlocking)
    _ok(err, "cudaStreamCreateWithFlags")
    _ok(rt.cudaSetDevice(prev)[0], f"cudaSetDevice({prev})")
    return int(s)


def device_of(ptr):
    """The device whose memory ``ptr`` points into.

    DeviceArray memory is stream-ordered (cudaMallocAsync): it belongs to a device's memory
    pool, so the pool says where it lives. (On an H200 pair, CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL
    answered 0 for such memory on device 1 -- whatever device was current -- while kernels
    on device 1, with no peer access set up, used it without a fault.) Memory outside
    any pool (torch tensors) falls back to the ordinal attribute."""
    from cuda.bindings import driver, runtime

    attr = driver.CUpointer_attribute
    err, pool = driver.cuPointerGetAttribute(attr.CU_POINTER_ATTRIBUTE_MEMPOOL_HANDLE, ptr)
    if int(err) == 0 and int(pool) != 0:
        err, n = runtime.cudaGetDeviceCount()
        _ok(err, "cudaGetDeviceCount")
        for d in range(n):
            err, default_pool = runtime.cudaDeviceGetDefaultMemPool(d)
            _ok(err, "cudaDeviceGetDefaultMemPool")
            if int(default_pool) == int(pool):
                return d
        raise AssertionError(f"{ptr:#x} is in a memory pool that is no device's default pool")
    err, ordinal = driver.cuPointerGetAttribute(attr.CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL, ptr)
    _ok(err, "cuPointerGetAttribute")
    return int(ordinal)


def norm_case(rng, dtype="float16", shape=(37, 1024)):
    x64 = round_to(rng.standard_normal(shape), dtype)
    w64 = round_to(rng.standard_normal(shape[-1]), dtype)
    return x64, w64, rmsnorm_ref(x64, w64, 1e-6)


# ------------------------------------------------------------------------------ device 1

def test_device_array_is_allocated_on_the_device_it_names(rng):
    for dev in (1, 0):
        a = fc.DeviceArray.from_numpy(np.arange(256, dtype=np.float32), device=dev)
        assert a.device == ("cuda", dev) and a.__dlpack_device__() == (2, dev)
        assert device_of(a.ptr) == dev, f"DeviceArray(device={dev}) memory is on another GPU"
        np.testing.assert_array_equal(a.numpy(), np.arange(256, dtype=np.float32))
        e = fc.DeviceArray.empty((3, 5), "bfloat16", device=dev)
        assert device_of(e.ptr) == dev
    assert current_devices()["cudaGetDevice"] == 0, "allocating on device 1 moved the caller"


@pytest.mark.parametrize("stream_kind", ["explicit", "default"])
@pytest.mark.parametrize("current", [0, 1])
def test_rmsnorm_on_the_other_device_runs_there_and_restores_the_current_one(
        stream_kind, current, rng):
    """Tensors on device ``1 - current`` while ``current`` is the current device."""
    require_module("norm")
    rt = _rt()
    target = 1 - current
    _ok(rt.cudaSetDevice(current)[0], f"cudaSetDevice({current})")
    s = stream_on(target) if stream_kind == "explicit" else None
    x64, w64, ref = norm_case(rng)
    x, w, out = (fc.DeviceArray.from_numpy(a.astype(np.float16), device=target, stream=s)
                 for a in (x64, w64, np.full(x64.shape, np.nan)))
    before = current_devices()
    fc.rmsnorm(x, w, 1e-6, out=out, stream=s)
    after = current_devices()
    assert after == before, (f"rmsnorm on cuda:{target} changed the caller's current device: "
                             f"before {before}, after {after}")
    assert device_of(out.ptr) == target
    np.testing.assert_allclose(out.numpy(stream=s).astype(np.float64), ref, **TOL["float16"],
                               err_msg=f"rmsnorm on cuda:{target} (current cuda:{current})")
    returned = fc.rmsnorm(x, w, stream=s)  # out allocated by the call: on the tensors' device
    assert returned.device == ("cuda", target) and device_of(returned.ptr) == target
    np.testing.assert_allclose(download(returned, "float16"), ref, **TOL["float16"])
    assert current_devices() == before
    if s is not None:
        _ok(rt.cudaStreamSynchronize(s)[0], "cudaStreamSynchronize")


def test_append_on_device_1(rng):
    require_module("page")
    pages, page, heads, hd = 4, 16, 2, 128
    cache0 = rng.integers(0, 2**16, size=(pages, page, heads, hd), dtype=np.uint16)
    rows = rng.integers(0, 2**16, size=(3, heads, hd), dtype=np.uint16)
    d1 = lambda a, dt: fc.DeviceArray.from_numpy(a, device=1, dtype=dt)  # noqa: E731
    k, v = d1(cache0, "float16"), d1(cache0, "float16")
    i32 = lambda *vals: d1(np.array(vals, np.int32), "int32")  # noqa: E731
    before = current_devices()
    # one request with pages [2, 0], 20 tokens after appending 3 (positions 17..19)
    fc.append_paged_kv_cache(d1(rows, "float16"), d1(rows, "float16"), i32(0, 0, 0),
                             i32(17, 18, 19), k, v, i32(2, 0), i32(0, 2), i32(4))
    assert current_devices() == before
    want = cache0.copy()
    want[0, 1:4] = rows  # position 16 + j lands on the second page (0), slots 1..3
    np.testing.assert_array_equal(k.numpy(dtype=np.uint16), want)
    np.testing.assert_array_equal(v.numpy(dtype=np.uint16), want)


def test_batch_decode_wrapper_on_device_1(rng):
    if not hasattr(fc, "BatchDecodeWithPagedKVCache"):
        pytest.skip("batch decode API not present")
    from attention_io import need
    from attention_refs import TOL as ATOL, attention_ref, paged_batch, rand

    need("batch_decode", "float16", 128)
    kv_lens = [9, 40]
    batch = paged_batch(rng, kv_lens, 16, 2, 128, "float16")
    q64 = rand(rng, (2, 8, 128), "float16")
    d1 = lambda a: fc.DeviceArray.from_numpy(a.astype(np.float16), device=1)  # noqa: E731
    w = fc.BatchDecodeWithPagedKVCache("NHD", device=1, float_workspace_bytes=16 << 20)
    before = current_devices()
    w.plan(batch.indptr, batch.indices, batch.last_page_len, 8, 2, 128, 16)
    out = w.run(d1(q64), (d1(batch.k_cache), d1(batch.v_cache)))
    assert current_devices() == before
    assert device_of(out.ptr) == 1
    got = out.numpy().astype(np.float64)
    for r in range(2):
        ref = attention_ref(q64[r:r + 1], *batch.sequence(r))[0][0]
        np.testing.assert_allclose(got[r], ref, err_msg=f"request {r}", **ATOL["float16"])
    # Repeated runs with caller outputs: the second reuses the first's checked frame
    # (new q and out buffers, same shapes), still on device 1.
    kv = (d1(batch.k_cache), d1(batch.v_cache))
    for step in range(2):
        q64 = rand(rng, (2, 8, 128), "float16")
        out = d1(np.full((2, 8, 128), np.nan))
        w.run(d1(q64), kv, out=out)
        assert current_devices() == before
        got = out.numpy().astype(np.float64)
        for r in range(2):
            ref = attention_ref(q64[r:r + 1], *batch.sequence(r))[0][0]
            np.testing.assert_allclose(got[r], ref, err_msg=f"step {step} request {r}",
                                       **ATOL["float16"])


def test_torch_tensors_on_device_1_use_its_current_stream(rng):
    torch = pytest.importorskip("torch")
    require_module("norm")
    x64, w64, ref = norm_case(rng, "bfloat16", (16, 2048))
    with torch.cuda.device(0):
        x = torch.tensor(x64, dtype=torch.bfloat16, device="cuda:1")
        w = torch.tensor(w64, dtype=torch.bfloat16, device="cuda:1")
        s = torch.cuda.Stream(device=1)
        with torch.cuda.stream(s):  # device 1's current stream: the launch goes there
            out = fc.rmsnorm(x, w)
        assert torch.cuda.current_device() == 0
    s.synchronize()
    got = torch.from_dlpack(out).float().cpu().numpy()
    np.testing.assert_allclose(got, ref, **TOL["bfloat16"])


# ------------------------------------------------------------------------------ mixed devices

def _on(dev, shape, dtype="float16"):
    return fc.DeviceArray.empty(shape, dtype, device=dev)


@pytest.mark.parametrize("call, words", [
    (lambda: fc.rmsnorm(_on(0, (4, 64)), _on(1, (64,))), "weight: expected a tensor on cuda:0"),
    (lambda: fc.rmsnorm(_on(1, (4, 64)), _on(1, (64,)), out=_on(0, (4, 64))),
     "out: expected a tensor on cuda:1"),
    (lambda: fc.fused_add_rmsnorm(_on(0, (4, 64)), _on(1, (4, 64)), _on(0, (64,))),
     "residual: expected a tensor on cuda:0"),
    (lambda: fc.append_paged_kv_cache(
        _on(0, (3, 2, 128)), _on(0, (3, 2, 128)), _on(0, (3,), "int32"), _on(1, (3,), "int32"),
        _on(0, (4, 16, 2, 128)), _on(0, (4, 16, 2, 128)), _on(0, (2,), "int32"),
        _on(0, (2,), "int32"), _on(0, (1,), "int32")), "positions: expected a tensor on cuda:0"),
])
def test_inputs_on_different_devices_name_the_argument(call, words):
    before = current_devices()
    with pytest.raises(ValueError, match=words):
        call()
    assert current_devices() == before
