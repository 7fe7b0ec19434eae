"""The FFI call path on the CPU, through the real libtvm_ffi and a compiled TVM-FFI module:
argument packing of every kind, results and their ownership, decoded errors, stream
set/restore (errors included), threads, leaks, and module-loading failures."""

from __future__ import annotations

import gc
import math
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import flashinfer_cy as fc
from flashinfer_cy._core.binding import DataType, Device, OpaquePtr
from flashinfer_cy.errors import (FlashInferError, KernelError, KernelNotFoundError,
                                  KernelRuntimeError, KernelTypeError, KernelValueError,
                                  SymbolNotFoundError)

from producers import CAI, Relabelled, exchange_type
from testmod_build import compile_cython, compile_module, mark_kernel_dir


def f(mod, name):
    return mod.function(name)


# ------------------------------------------------------------------ packing of every kind

@pytest.mark.parametrize("value", [0, 1, -1, 2**62, -(2**63), 2**63 - 1])
def test_int_round_trip(testmod, value):
    assert f(testmod, "echo_int")(value) == value


def test_int_overflow_is_a_clear_error(testmod):
    with pytest.raises(OverflowError, match="argument #0"):
        f(testmod, "echo_int")(2**63)


@pytest.mark.parametrize("value", [0.0, -1.5, 1e300, math.inf, -math.inf, 5e-324])
def test_float_round_trip(testmod, value):
    assert f(testmod, "echo_float")(value) == value


def test_float_nan_round_trip(testmod):
    assert math.isnan(f(testmod, "echo_float")(math.nan))


@pytest.mark.parametrize("value", [True, False])
def test_bool_round_trip(testmod, value):
    out = f(testmod, "echo_bool")(value)
    assert out is value


@pytest.mark.parametrize("name, packed", [("float16", (2, 16, 1)), ("bfloat16", (4, 16, 1)),
                                          ("int32", (0, 32, 1)), ("uint8", (1, 8, 1)),
                                          ("float8_e4m3fn", (10, 8, 1))])
def test_dtype_round_trip(testmod, name, packed):
    assert f(testmod, "echo_dtype")(DataType(name)) == packed


def test_device_round_trip(testmod):
    assert f(testmod, "echo_device")(Device("cuda", 3)) == (2, 3)
    assert f(testmod, "echo_device")(Device("cpu", 0)) == (1, 0)


def test_opaque_pointer_and_none(testmod):
    assert f(testmod, "echo_ptr")(OpaquePtr(0xDEADBEEF)) == 0xDEADBEEF
    assert f(testmod, "echo_ptr")(None) == 0  # void* accepts None (NULL)


@pytest.mark.parametrize("s", ["", "short", "exactly7", "a longer string with ünïcode"])
def test_string_round_trip(testmod, s):
    assert f(testmod, "echo_str")(s) == s  # SmallStr (<= 7 bytes) and Str results


def test_optional_tensor_none_and_present(testmod):
    assert f(testmod, "is_none")(None) is True
    assert f(testmod, "is_none")(np.zeros(3, np.float32)) is False


def test_wrong_kind_is_the_modules_type_error(testmod):
    with pytest.raises(KernelTypeError, match="Mismatched type on argument #0") as ei:
        f(testmod, "echo_int")(1.5)
    assert isinstance(ei.value, TypeError) and ei.value.kind == "TypeError"


def test_wrong_arity_is_the_modules_type_error(testmod):
    with pytest.raises(TypeError, match="Expected 1 but got 0"):
        f(testmod, "echo_int")()


# ------------------------------------------------------------------ tensors

def _describe(testmod, x):
    d = f(testmod, "describe")(x).tolist()
    ndim = d[0]
    return dict(ndim=ndim, dtype=tuple(d[1:4]), device=tuple(d[4:6]), data=d[6],
                shape=tuple(d[7:7 + ndim]), strides=tuple(d[7 + ndim:7 + 2 * ndim]))


@pytest.mark.parametrize("dtype, packed", [(np.float32, (2, 32, 1)), (np.float16, (2, 16, 1)),
                                           (np.int64, (0, 64, 1)), (np.uint8, (1, 8, 1))])
def test_numpy_tensor_is_seen_without_copy(testmod, dtype, packed):
    x = np.arange(24, dtype=dtype).reshape(2, 3, 4)
    d = _describe(testmod, x)
    assert d == dict(ndim=3, dtype=packed, device=(1, 0), data=x.ctypes.data,
                     shape=(2, 3, 4), strides=(12, 4, 1))


def test_strided_offset_view_folds_offset_into_data(testmod):
    base = np.arange(60, dtype=np.float32).reshape(5, 12)
    x = base[1:4, 2:10:3]
    d = _describe(testmod, x)
    assert d["data"] == x.ctypes.data and d["strides"] == (12, 3) and d["shape"] == (3, 3)


def test_zero_dim_and_empty_tensors(testmod):
    assert _describe(testmod, np.array(3.0, np.float32))["ndim"] == 0
    assert _describe(testmod, np.zeros((0, 5), np.float32))["shape"] == (0, 5)


def test_tensor_desc_is_passed_verbatim(testmod):
    x = np.zeros((4, 8), np.float32)
    desc = fc.TensorDesc(x.ctypes.data, (4, 6), "float32", strides=(8, 1), device_type="cpu")
    d = _describe(testmod, desc)
    assert d == dict(ndim=2, dtype=(2, 32, 1), device=(1, 0), data=x.ctypes.data,
                     shape=(4, 6), strides=(8, 1))
    desc.set_ptr(x.ctypes.data + 8)
    assert _describe(testmod, desc)["data"] == x.ctypes.data + 8


def test_tensor_desc_exports_dlpack_both_versions():
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    desc = fc.TensorDesc(x.ctypes.data, (3, 4), "float32", device_type="cpu", owner=x)
    y = np.from_dlpack(desc)  # numpy asks for a versioned capsule when it can
    assert y.ctypes.data == x.ctypes.data and (y == x).all()
    legacy = desc.__dlpack__()  # no max_version: legacy capsule
    assert "dltensor" in repr(legacy)
    del y, legacy
    gc.collect()


class LegacyProducer:
    """A pre-2023 DLPack producer: no max_version keyword, legacy capsule."""

    def __init__(self, arr):
        self.arr = arr
        self.desc = fc.TensorDesc(arr.ctypes.data, arr.shape, str(arr.dtype),
                                  device_type="cpu", owner=arr)

    def __dlpack__(self, stream=None):
        return self.desc.__dlpack__()

    def __dlpack_device__(self):
        return (1, 0)


def test_legacy_dlpack_producer(testmod):
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    out = np.full((2, 3), np.nan, np.float32)
    f(testmod, "axpb")(out, LegacyProducer(x), 2.0, 1.0)
    np.testing.assert_array_equal(out, 2 * x + 1)


def test_kernel_computes_on_strided_inputs_and_outputs(testmod):
    rng = np.random.default_rng()
    x = rng.standard_normal((6, 10)).astype(np.float32)[::2, 1::3]
    out_base = np.full((3, 6), np.nan, np.float32)
    out = out_base[:, ::2]
    a, b = float(rng.standard_normal()), float(rng.standard_normal())
    f(testmod, "axpb")(out, x, a, b)
    np.testing.assert_allclose(out, (a * x.astype(np.float64) + b), rtol=1e-6)
    assert np.isnan(out_base[:, 1::2]).all()  # nothing written between the strided columns


def test_not_a_tensor_names_the_argument(testmod):
    with pytest.raises(TypeError, match="argument #1: expected a tensor"):
        f(testmod, "axpb")(np.zeros(3, np.float32), object(), 1.0, 0.0)


def test_cuda_array_interface_without_a_gpu_is_a_clear_error(testmod):
    class FakeCAI:
        __cuda_array_interface__ = {"shape": (4,), "typestr": "<f4", "data": (4096, False),
                                    "version": 3}

    with pytest.raises((ValueError, Exception), match="argument #0"):
        f(testmod, "describe")(FakeCAI())


# ------------------------------------------------------------------ results and ownership

def test_array_result_is_owned_once_and_can_be_passed_back(testmod):
    plan = f(testmod, "make_plan")(5, 10)
    assert plan.tolist() == [10, 11, 12, 13, 14] and len(plan) == 5 and plan[-1] == 14
    assert plan.refcount == 1
    assert f(testmod, "sum_plan")(plan) == 60
    assert plan.refcount == 1  # passing it back borrowed it; nothing leaked or stolen
    with pytest.raises(IndexError):
        plan[5]


# ------------------------------------------------------------------ errors

@pytest.mark.parametrize("fn, arg, cls, builtin, kind, text", [
    ("raise_value_error", "bad value", KernelValueError, ValueError, "ValueError", "bad value"),
    ("raise_type_error", "bad type", KernelTypeError, TypeError, "TypeError", "bad type"),
    ("check_fail", 1, KernelRuntimeError, RuntimeError, "InternalError", "x must be 42"),
    ("raise_std", "std boom", KernelRuntimeError, RuntimeError, "InternalError", "std boom"),
])
def test_errors_are_decoded_with_kind_and_message(testmod, fn, arg, cls, builtin, kind, text):
    with pytest.raises(cls) as ei:
        f(testmod, fn)(arg)
    e = ei.value
    assert isinstance(e, builtin) and isinstance(e, KernelError) and isinstance(e, FlashInferError)
    assert e.kind == kind and text in e.message and e.symbol == fn
    assert isinstance(e.backtrace, str)


def test_error_survives_pickling(testmod):
    import pickle

    with pytest.raises(KernelValueError) as ei:
        f(testmod, "raise_value_error")("pickled")
    again = pickle.loads(pickle.dumps(ei.value))
    assert type(again) is KernelValueError and again.message == "pickled"


def test_error_state_does_not_leak_into_the_next_call(testmod):
    with pytest.raises(KernelValueError):
        f(testmod, "raise_value_error")("x")
    assert f(testmod, "echo_int")(7) == 7


# ------------------------------------------------------------------ streams

def test_stream_is_set_for_the_call_and_restored(testmod):
    x = np.zeros(2, np.float32)
    assert f(testmod, "env_stream")(1, 0) == 0
    assert f(testmod, "stream_of")(x, stream=0x1234) == 0x1234
    assert f(testmod, "env_stream")(1, 0) == 0


def test_stream_is_restored_when_the_kernel_raises(testmod):
    x = np.zeros(2, np.float32)
    with pytest.raises(KernelRuntimeError, match="stream was 77"):
        f(testmod, "raise_with_stream")(x, stream=77)
    assert f(testmod, "env_stream")(1, 0) == 0


def test_nested_previous_stream_is_restored_not_zeroed(testmod):
    from flashinfer_cy._core.runtime import _env_get_stream, _env_set_stream

    x = np.zeros(2, np.float32)
    prev = _env_set_stream(1, 0, 555)
    try:
        assert f(testmod, "stream_of")(x) == 555  # no stream=: the thread's stream
        assert f(testmod, "stream_of")(x, stream=9) == 9
        assert _env_get_stream(1, 0) == 555
    finally:
        _env_set_stream(1, 0, prev)


@pytest.mark.parametrize("stream, expect", [
    (5, 5),
    (type("Proto", (), {"__cuda_stream__": lambda self: (0, 11)})(), 11),
    (type("TorchLike", (), {"cuda_stream": 12})(), 12),
    (type("CupyLike", (), {"ptr": 13})(), 13),
    (type("Bindings", (), {"__int__": lambda self: 14})(), 14),
])
def test_stream_forms(testmod, stream, expect):
    assert f(testmod, "stream_of")(np.zeros(1, np.float32), stream=stream) == expect


def _never(self):
    raise AssertionError("__cuda_stream__ called")


def test_torch_streams_are_read_through_their_c_attribute(testmod):
    """A torch stream type (module torch.*) with ``cuda_stream``: that attribute is read,
    not the Python-level ``__cuda_stream__`` (which returns the same handle); any other
    type with both keeps the protocol."""
    torch_like = type("Stream", (), {"__cuda_stream__": _never, "cuda_stream": 15,
                                     "__module__": "torch.cuda.streams"})
    other = type("Stream", (), {"__cuda_stream__": lambda self: (0, 16), "cuda_stream": 99,
                                "__module__": "mylib.streams"})
    odd = type("Stream", (), {"__cuda_stream__": lambda self: (0, 17), "cuda_stream": 99,
                              "__module__": 3})
    x = np.zeros(1, np.float32)
    assert f(testmod, "stream_of")(x, stream=torch_like()) == 15
    assert f(testmod, "stream_of")(x, stream=other()) == 16
    assert f(testmod, "stream_of")(x, stream=odd()) == 17   # a non-str __module__: protocol


@pytest.mark.parametrize("bad, exc", [(-1, ValueError), ("s", TypeError), (1.5, TypeError),
                                      (object(), TypeError)])
def test_bad_stream_is_a_clear_error(testmod, bad, exc):
    with pytest.raises(exc, match="stream"):
        f(testmod, "stream_of")(np.zeros(1, np.float32), stream=bad)


def test_use_stream_context_is_thread_local():
    seen = {}

    def other():
        seen["other"] = fc.current_stream(0)

    with fc.use_stream(0xABC, device=0):
        assert fc.current_stream(0) == 0xABC
        t = threading.Thread(target=other)
        t.start()
        t.join()
    assert fc.current_stream(0) == 0 and seen["other"] == 0


# ------------------------------------------------------------------ bindings

def test_binding_packs_by_declared_kinds(testmod_dir, testmod, monkeypatch):
    monkeypatch.setenv("FLASHINFER_CY_KERNEL_DIR", str(testmod_dir))
    b = fc.Binding("testmod", "axpb", "out:T x:T a:F b:F")
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    out = np.full_like(x, np.nan)
    assert b(out, x, 0.5, 2) is None
    np.testing.assert_array_equal(out, 0.5 * x + 2)
    assert b.nargs == 4 and b.names == ("out", "x", "a", "b")


def test_binding_rejects_wrong_count_and_kinds(testmod_dir, monkeypatch):
    monkeypatch.setenv("FLASHINFER_CY_KERNEL_DIR", str(testmod_dir))
    b = fc.Binding("testmod", "axpb", "out:T x:T a:F b:F")
    x = np.zeros(2, np.float32)
    with pytest.raises(TypeError, match="takes 4 arguments"):
        b(x, x, 1.0)
    with pytest.raises(TypeError, match="a: expected a float"):
        b(x, x, "1", 0.0)
    with pytest.raises(ValueError, match="unknown kind"):
        fc.Binding("testmod", "axpb", "out:T x:Q")


def test_binding_host_kind_rejects_nothing_on_cpu(testmod_dir, monkeypatch):
    monkeypatch.setenv("FLASHINFER_CY_KERNEL_DIR", str(testmod_dir))
    b = fc.Binding("testmod", "describe", "x:H")
    assert b(np.zeros(3, np.float32))[0] == 1


# ------------------------------------------------------------------ what producers say

@pytest.fixture
def fake_driver(monkeypatch):
    """cuda.bindings.driver answering that every pointer is on CUDA device 0 (for CAI)."""
    from cuda_guard import fake_cai_driver

    fake_cai_driver(monkeypatch)


def test_read_only_tensor_is_refused_where_the_kernel_writes(testmod):
    rng = np.random.default_rng()
    axpb = fc.Binding("testmod", "axpb", "out:T! x:T a:F b:F")
    assert axpb.writes == ("out",)
    x = rng.standard_normal(16).astype(np.float32)
    x.flags.writeable = False  # inputs may be read-only (JAX arrays always are)
    out = rng.standard_normal(16).astype(np.float32)
    a, b = (float(v) for v in rng.standard_normal(2))
    axpb(out, x, a, b)
    np.testing.assert_allclose(out, a * x.astype(np.float64) + b, rtol=1e-6)
    before = out.copy()
    out.flags.writeable = False  # exported through the versioned DLPack read-only flag
    with pytest.raises(ValueError, match="out: the kernel writes this tensor, but its "
                                         "producer exported it read-only"):
        axpb(out, x, a + 1, b)
    np.testing.assert_array_equal(out, before)


def test_optional_written_tensor_refuses_read_only_and_takes_none(testmod):
    b = fc.Binding("testmod", "is_none", "t:T?!")
    ro = np.random.default_rng().standard_normal(3).astype(np.float32)
    assert b(None) is True and b(ro) is False
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="t: the kernel writes"):
        b(ro)


def test_cuda_array_interface_read_only_flag(testmod, fake_driver):
    buf = np.random.default_rng().standard_normal(8).astype(np.float32)
    written = fc.Binding("testmod", "describe", "x:T!")
    with pytest.raises(ValueError, match="x: the kernel writes"):
        written(CAI(buf.ctypes.data, (8,), read_only=True))
    for call in (lambda: written(CAI(buf.ctypes.data, (8,))),  # writable: not refused
                 lambda: fc.Binding("testmod", "describe", "x:T")(
                     CAI(buf.ctypes.data, (8,), read_only=True))):  # read only: an input
        try:
            call()
        except fc.CudaError:  # described as CUDA memory: no GPU to set here
            pass


@pytest.mark.parametrize("device_id", [-1, -(2**31), 1 << 16, 2**31 - 1])
def test_producer_device_ordinal_out_of_range_is_refused(testmod, device_id):
    arr = np.random.default_rng().standard_normal(4).astype(np.float32)
    for obj in (Relabelled(arr, device_id), exchange_type()(arr, device_id=device_id)):
        with pytest.raises(ValueError, match=f"argument #0: the producer names device "
                                             f"{device_id}; expected a device ordinal"):
            f(testmod, "stream_of")(obj, stream=7)


def test_null_data_pointer_is_refused_at_call_time(testmod, fake_driver):
    describe = fc.Binding("testmod", "describe", "x:T")
    placeholder = fc.TensorDesc(0, (4, 3), "float32", device_type="cpu")  # set_ptr later
    for obj in (placeholder, CAI(0, (1 << 20,))):
        with pytest.raises(ValueError, match="x: NULL data pointer for a tensor with elements"):
            describe(obj)
    arr = np.random.default_rng().standard_normal((4, 3)).astype(np.float32)
    placeholder.set_ptr(arr.ctypes.data)
    assert _describe(testmod, placeholder)["data"] == arr.ctypes.data
    empty = fc.TensorDesc(0, (0, 3), "float32", device_type="cpu")  # nothing is addressed
    assert _describe(testmod, empty)["shape"] == (0, 3)


def test_exchange_api_without_its_entries_falls_back_to_dlpack(testmod):
    arr = np.random.default_rng().standard_normal((2, 3)).astype(np.float32)
    for tp in (exchange_type(describe=False), exchange_type(stream=False)):
        d = _describe(testmod, tp(arr, shape=(7,)))  # the exchange table is not called
        assert d["data"] == arr.ctypes.data and d["shape"] == (2, 3)
    assert _describe(testmod, exchange_type()(arr, shape=(6,)))["shape"] == (6,)


@pytest.mark.parametrize("shape", [(1,) * 9, (1,) * 9 + (5, 3, 2), (1,) * 40])
def test_exchange_api_rank_above_the_limit_is_refused(testmod, shape):
    tp = exchange_type()
    arr = np.random.default_rng().standard_normal(30).astype(np.float32)
    with pytest.raises(ValueError, match=f"x: at most 8 dimensions are supported, got "
                                         f"{len(shape)}"):
        fc.Binding("testmod", "describe", "x:T")(tp(arr, shape=shape))
    assert _describe(testmod, tp(arr, shape=(5, 3, 2)))["strides"] == (6, 2, 1)  # still fine


# ------------------------------------------------------------------ Cython-level checks

@pytest.fixture(scope="session")
def slot_probe(tmp_path_factory):
    pytest.importorskip("Cython", reason="the probe is compiled with Cython")
    return compile_cython(Path(__file__).parent / "slot_probe.pyx",
                          tmp_path_factory.mktemp("slot_probe"))


def test_contiguous_counts_a_zero_size_dimension_as_one(slot_probe):
    """As fill_contiguous_strides and TensorDesc spell row-major strides."""
    desc = fc.TensorDesc(0x1000, (4, 0, 3), "float16")
    assert desc.strides == (3, 3, 1)
    slot_probe.contiguous(desc)
    with pytest.raises(ValueError, match="x: expected a contiguous"):
        slot_probe.contiguous(fc.TensorDesc(0x1000, (4, 2, 3), "float16", strides=(12, 3, 1)))


def test_check_writable_names_the_argument(slot_probe, fake_driver):
    arr = np.random.default_rng().standard_normal(8).astype(np.float32)
    slot_probe.writable(arr, "out")
    slot_probe.writable(CAI(arr.ctypes.data, (8,)), "out")
    arr.flags.writeable = False
    for ro in (arr, CAI(arr.ctypes.data, (8,), read_only=True)):
        with pytest.raises(ValueError, match="out: the kernel writes this tensor"):
            slot_probe.writable(ro, "out")


def test_steady_state_reuse_sends_what_it_cannot_vouch_for_down_the_long_path(slot_probe):
    """run()'s reuse_frame: the kept frame's checks hold only for tensors that describe the
    same thing; a NULL pointer, a read-only tensor or a rank the slot cannot hold never
    rides on them: reuse_frame answers "not the same" (0) and the caller's full path
    describes them again and refuses them under the names its caller uses (run()'s "out"
    for the ABI's "o": fake_kernel_driver's decode_repeated_runs)."""
    rng = np.random.default_rng()
    b = fc.Binding("testmod", "nop", "a:T! b:T c:T")
    arr = rng.standard_normal((4, 8)).astype(np.float32)
    d = fc.TensorDesc(arr.ctypes.data, (4, 8), "float32", device_type="cpu", owner=arr)
    again = fc.TensorDesc(arr.ctypes.data + 64, (4, 8), "float32", device_type="cpu")
    assert slot_probe.reuse(b, (d, d, d), (again, again, again)) == 1
    null = fc.TensorDesc(0, (4, 8), "float32", device_type="cpu")
    assert slot_probe.reuse(b, (d, d, d), (d, null, d)) == 0
    ro = arr.copy()
    ro.flags.writeable = False
    assert slot_probe.reuse(b, (arr, arr, arr), (arr, arr, arr)) == 1
    assert slot_probe.reuse(b, (arr, arr, arr), (arr, ro, arr)) == 0  # an input: long path
    assert slot_probe.reuse(b, (arr, arr, arr), (ro, arr, arr)) == 0  # written: refused there
    tp = exchange_type()
    kept = (tp(arr), d, d)
    assert slot_probe.reuse(b, kept, (tp(arr), d, d)) == 1
    # (the full path's refusal: test_exchange_api_rank_above_the_limit_is_refused)
    assert slot_probe.reuse(b, kept, (tp(arr, shape=(1,) * 12), d, d)) == 0


# ------------------------------------------------------------------ bindings: declarations

def test_binding_marks_written_tensors():
    b = fc.Binding("testmod", "nop", "a:T! b:T?! c:T")
    assert b.names == ("a", "b", "c") and b.writes == ("a", "b")
    for kind in ("I!", "H!", "!", "T!!", "B!"):
        with pytest.raises(ValueError, match="unknown kind"):
            fc.Binding("testmod", "nop", f"a:{kind}")


@pytest.mark.parametrize("signature, device", [("a:T? b:T c:T", "a"), ("x:I t:T", "x"),
                                               ("h:H t:T", "h"), ("p:A t:T", "p")])
def test_binding_device_must_name_a_tensor_argument(signature, device):
    with pytest.raises(ValueError, match=f"device: '{device}' must be a T"):
        fc.Binding("testmod", "nop", signature, device=device)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 10**400])
def test_binding_float_refuses_non_finite(testmod, value):
    with pytest.raises(ValueError, match="a: expected a finite number"):
        fc.Binding("testmod", "axpb", "out:T! x:T a:F b:F")(
            np.zeros(2, np.float32), np.ones(2, np.float32), value, 0.0)


@pytest.mark.parametrize("value, expect", [(True, True), (False, False), (np.bool_(True), True),
                                           (np.bool_(False), False), (1, True), (0, False)])
def test_binding_bool_takes_bools(testmod, value, expect):
    assert fc.Binding("testmod", "echo_bool", "x:B")(value) is expect


@pytest.mark.parametrize("value", ["False", "True", None, 0.0, 2, -1, np.int64(1), []])
def test_binding_bool_refuses_everything_else(testmod, value):
    with pytest.raises(TypeError, match="x: expected True or False"):
        fc.Binding("testmod", "echo_bool", "x:B")(value)


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1])
def test_binding_int_out_of_range_names_the_argument(testmod, value):
    b = fc.Binding("testmod", "echo_int", "x:I")
    assert b(2**63 - 1) == 2**63 - 1 and b(-(2**63)) == -(2**63)
    with pytest.raises(OverflowError, match="x: .* does not fit in int64"):
        b(value)


def test_a_tensor_is_not_a_stream(testmod):
    x = np.zeros(1, np.float32)
    for tensor in (fc.TensorDesc(0x7F0000001000, (4,), "float32"), np.array([5])):
        with pytest.raises(TypeError, match="stream: expected a stream, got a tensor"):
            f(testmod, "stream_of")(x, stream=tensor)
        with pytest.raises(TypeError, match="stream: expected a stream, got a tensor"):
            fc.streams.as_stream_handle(tensor)


# ------------------------------------------------------------------ runtime objects

def test_runtime_objects_are_not_made_directly(testmod):
    from flashinfer_cy._core.runtime import Array, Function, Module, Object

    for cls in (Object, Array, Function, Module):
        with pytest.raises(TypeError, match="not made directly|made by"):
            cls()
    # Bypassing __init__ gives an empty shell that refuses every use instead of crashing.
    with pytest.raises(TypeError, match="holds no object"):
        Object.__new__(Object).refcount
    with pytest.raises(TypeError, match="holds no object"):
        len(Array.__new__(Array))
    with pytest.raises(TypeError, match="holds no object"):
        Array.__new__(Array)[0]
    with pytest.raises(TypeError, match="not made by Module.function"):
        Function.__new__(Function)(1)
    with pytest.raises(TypeError, match="was not loaded"):
        Module.__new__(Module).function("echo_int")
    with pytest.raises(TypeError, match="expected a live flashinfer_cy Object"):
        f(testmod, "sum_plan")(Array.__new__(Array))


def test_serialize_applies_to_a_module_loaded_by_path(testmod_dir, tmp_path, monkeypatch):
    """load_module_path(path) without a URI: the module is known by its file name, and a
    Binding(..., serialize=True) for it serializes a Function looked up before."""
    from flashinfer_cy._core import runtime

    # What this test loads and serializes is forgotten after it (test_properties refuses to
    # run beside loaded kernel modules).
    monkeypatch.setattr(runtime, "_modules", dict(runtime._modules))
    monkeypatch.setattr(runtime, "_serialized", set(runtime._serialized))
    so = tmp_path / "by_path" / "by_path.so"
    so.parent.mkdir()
    shutil.copy(testmod_dir / "testmod" / "testmod.so", so)
    mod = fc.load_module_path(so)
    probe, most = mod.function("overlap_probe"), mod.function("max_overlap")
    monkeypatch.setenv("FLASHINFER_CY_KERNEL_DIR", str(mark_kernel_dir(tmp_path)))
    b = fc.Binding("by_path", "overlap_probe", "ms:I", serialize=True)
    assert probe.serialized and b.load() is probe
    most()
    threads = [threading.Thread(target=lambda: [b(5) for _ in range(4)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most() == 1
    # Loaded again under another URI: serialize_calls for that URI applies to it as well.
    echo = mod.function("echo_int")
    assert fc.load_module_path(so, uri="by_path_alias") is mod
    runtime.serialize_calls("by_path_alias", "echo_int")
    assert echo.serialized and fc.load_module("by_path_alias") is mod


def test_non_native_byte_order_is_refused():
    src = np.random.default_rng().standard_normal(4).astype(">f4")
    for call in (lambda: fc.DeviceArray.from_numpy(src),
                 lambda: fc.DeviceArray.from_numpy(src, dtype="float32")):
        with pytest.raises(TypeError, match="arr: '>f4' is not in this machine's byte order"):
            call()
    for call in (lambda: fc.TensorDesc(0x1000, (4,), np.dtype(">f4")),
                 lambda: fc.DeviceArray.empty((4,), np.dtype(">f2"))):
        with pytest.raises(TypeError, match="dtype: .* is not in this machine's byte order"):
            call()


# ------------------------------------------------------------------ threads, GIL, leaks

def test_eight_threads_call_concurrently_and_overlap(testmod):
    """sleep_ms blocks in C++: 8 threads x 200 ms finish in well under 8 x 200 ms only if
    every call released the GIL."""
    sleep = f(testmod, "sleep_ms")
    axpb = f(testmod, "axpb")
    errors = []

    def work(i):
        try:
            sleep(200)
            x = np.full((16,), float(i), np.float32)
            out = np.empty_like(x)
            for _ in range(500):
                axpb(out, x, 2.0, 1.0)
                if not (out == 2 * i + 1).all():
                    errors.append(i)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    assert not errors
    assert elapsed < 1.0, f"calls did not overlap: {elapsed:.2f}s for 8 x 200 ms sleeps"


def test_serialized_export_takes_turns_between_threads(testmod):
    """serialize_calls (Binding(..., serialize=True)): calls of one export never overlap
    between threads; other exports are not affected."""
    from flashinfer_cy._core.runtime import serialize_calls

    probe, most, sleep = (f(testmod, n) for n in ("overlap_probe", "max_overlap", "sleep_ms"))

    def four_threads():
        most()
        threads = [threading.Thread(target=lambda: [probe(5) for _ in range(6)])
                   for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return most()

    assert not probe.serialized
    assert four_threads() > 1, "the unserialized probe never overlapped: this test cannot fail"
    serialize_calls("testmod", "overlap_probe")
    assert probe.serialized and not sleep.serialized
    assert four_threads() == 1
    b = fc.Binding("testmod", "echo_int", "x:I", serialize=True)  # as declared in a table
    assert b.load().serialized and b(7) == 7


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_no_leak_over_100k_calls(testmod):
    make, sum_plan, describe = (f(testmod, n) for n in ("make_plan", "sum_plan", "describe"))
    raise_err = f(testmod, "raise_value_error")
    x = np.zeros((4, 4), np.float32)

    def round_(n):
        for _ in range(n):
            p = make(8, 1)
            sum_plan(p)
            describe(x)
            try:
                raise_err("e")
            except KernelValueError:
                pass

    round_(5000)  # warm caches and allocator pools
    gc.collect()
    before = _rss_mb()
    round_(25000)  # x4 calls per round = 100k calls
    gc.collect()
    grown = _rss_mb() - before
    assert grown < 8, f"RSS grew {grown:.1f} MiB over 100k calls"


# ------------------------------------------------------------------ loading

def test_missing_module_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("FLASHINFER_CY_KERNEL_DIR", str(tmp_path))
    with pytest.raises(KernelNotFoundError, match="nope"):
        fc.load_module_path(tmp_path / "nope.so")


def test_missing_symbol_is_a_clear_error(testmod):
    with pytest.raises(SymbolNotFoundError, match="__tvm_ffi_not_there"):
        testmod.function("not_there")


def test_unresolvable_module_fails_at_load_not_mid_call(tmp_path):
    src = tmp_path / "bad.cc"
    src.write_text('extern "C" int missing_symbol_xyz(); extern "C" int __tvm_ffi_f() '
                   '{ return missing_symbol_xyz(); }\n')
    so = compile_module(src, tmp_path / "bad" / "bad.so")
    with pytest.raises(KernelNotFoundError, match="missing_symbol_xyz"):
        fc.load_module_path(so)


def test_module_is_loaded_once(testmod_dir, testmod):
    again = fc.load_module_path(testmod_dir / "testmod" / "testmod.so")
    assert again is testmod


def test_import_is_light(tmp_path):
    """``import flashinfer_cy`` loads no framework, no array library and none of what only
    kernel loading, downloads or the CLI need: checked by module, not by a timing (which a
    loaded CI machine would make flaky)."""
    heavy = ("torch", "numpy", "tvm_ffi", "cuda.bindings.driver", "urllib.request",
             "hashlib", "platformdirs", "filelock", "tqdm", "secrets", "ctypes")
    code = ("import sys; import flashinfer_cy; "
            f"print(' '.join(m for m in {heavy!r} if m in sys.modules) or '-')")
    # cwd outside the checkout: "-c" puts the cwd first on sys.path
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=tmp_path).stdout.strip()
    assert out == "-", f"import flashinfer_cy loaded {out}"
