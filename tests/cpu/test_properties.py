"""Property-based tests (hypothesis) of every public API, on a machine without a GPU.

Arguments are drawn at random -- shapes, dtypes, strides, alignment, devices, None, NaN/inf
scalars, wrong types, streams of every form -- and every call must end in one of two ways:

* **rejected**: TypeError or ValueError (FlashInferError subclasses included) whose message
  starts with the name of an argument that really is wrong. Which arguments are wrong is
  decided here, independently of the library, by a model of what each kernel can take
  (norm) or by construction (page, gdn, attention: a valid call with one argument broken);
* **accepted**: validation let it through to the step that loads the kernel module or asks
  CUDA, which ``cuda_guard.no_cuda`` turns into ``TouchedCuda``; or, with nothing to launch
  (zero rows), it returned without touching either.

Anything else fails the property: another exception type (AttributeError, OverflowError,
IndexError...), an error naming an argument that is fine, a bad input accepted, a good one
refused. Tensors are ``TensorDesc`` descriptors of fake CUDA pointers, so a bad input that
slipped through validation could only reach ``TouchedCuda``, never a kernel.

Inputs that could crash the interpreter (hostile tensor/stream protocol objects, every public
callable fed junk) run in a child interpreter (``test_hostile_inputs_never_crash``): a
segfault is reported with the input that caused it instead of ending the session.

``FLASHINFER_CY_PROPERTY_EXAMPLES`` scales the examples per property (the default keeps the
file well under a minute on 2 cores).
"""

from __future__ import annotations

import inspect
import math
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import flashinfer_cy as fc
from flashinfer_cy._core import runtime
from flashinfer_cy.errors import KernelError

from cuda_guard import TouchedCuda, no_cuda

HERE = Path(__file__).resolve().parent
EXAMPLES = int(os.environ.get("FLASHINFER_CY_PROPERTY_EXAMPLES", "120"))
SETTINGS = settings(
    max_examples=EXAMPLES, deadline=None, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.data_too_large, HealthCheck.filter_too_much])

PTR = 0x7F0000000000  # 64 KiB aligned, never dereferenced
DTYPES = ["float16", "bfloat16", "float32", "float64", "int32", "int64", "uint8", "int8",
          "float8_e4m3fn", "float8_e5m2"]
ITEM = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8, "int32": 4, "int64": 8,
        "uint8": 1, "int8": 1, "float8_e4m3fn": 1, "float8_e5m2": 1}
U32 = 1 << 32


@pytest.fixture(autouse=True)
def _no_cuda(monkeypatch):
    loaded = sorted(k[1] for k in runtime._modules if isinstance(k, tuple) and k[1] != "testmod")
    if loaded:  # a fake pointer that got through validation would reach a real kernel
        pytest.skip(f"kernel modules {loaded} are already loaded in this process; run "
                    f"tests/cpu on its own")
    no_cuda(monkeypatch)


def T(shape, dtype="float16", strides=None, offset=0, device=0, device_type="cuda"):
    return fc.TensorDesc(PTR + offset, shape, dtype, strides=strides, device=device,
                         device_type=device_type)


# ------------------------------------------------------------------------- outcomes

ACCEPTED = "accepted (reached the kernel loader / CUDA)"
RETURNED = "returned (nothing to launch)"


def outcome(call):
    """ACCEPTED, RETURNED, or the TypeError/ValueError raised. Any other exception
    propagates and fails the test, with its traceback."""
    try:
        call()
    except TouchedCuda:
        return ACCEPTED
    except KernelError as exc:  # impossible without a kernel: something was really called
        raise AssertionError(f"a kernel was called: {exc!r}") from exc
    except (fc.KernelNotFoundError, fc.CudaError):
        # After validation: a module no local source has (attention variants), or CUDA
        # asked through a cache filled earlier in this process.
        return ACCEPTED
    except (TypeError, ValueError) as exc:
        return exc
    return RETURNED


def names_in(exc) -> str:
    """The part of the message that names the argument(s): before the first colon."""
    return str(exc).split(":", 1)[0]


def check_rejected(result, allowed, what=""):
    assert isinstance(result, Exception), (
        f"bad input was {result}; these arguments are wrong: {sorted(allowed)} {what}")
    head = names_in(result)
    assert any(re.search(rf"(?<![\w.]){re.escape(a)}(?![\w])", head) for a in allowed), (
        f"the error names none of the wrong arguments {sorted(allowed)}: "
        f"{type(result).__name__}: {result} {what}")


def check_accepted(result, expect=(ACCEPTED,), what=""):
    if isinstance(result, Exception):
        raise AssertionError(f"valid input refused: {type(result).__name__}: {result} {what}") \
            from result
    assert result in expect, f"valid input: expected {expect}, got {result} {what}"


def check(result, problems, expect=(ACCEPTED,), what=""):
    """``expect``: the outcomes a valid call may have (a callable: computed only then)."""
    if problems:
        check_rejected(result, problems, what)
    else:
        check_accepted(result, expect() if callable(expect) else expect, what)


# ------------------------------------------------------------------------- scalar pools

class FakeStream:
    """A stream object of one of the forms ``stream=`` accepts, holding any value."""

    def __init__(self, value):
        self.value = value

    def __repr__(self):
        return f"{type(self).__name__}({self.value!r})"


class ProtoStream(FakeStream):
    """``__cuda_stream__() -> (version, handle)`` (cuda.core, recent PyTorch and CuPy)."""

    def __cuda_stream__(self):
        return self.value


class TorchLikeStream(FakeStream):
    """``torch.cuda.Stream``: a ``cuda_stream`` property."""

    cuda_stream = property(lambda self: self.value)


class CupyLikeStream(FakeStream):
    """A CuPy stream: a ``ptr`` property."""

    ptr = property(lambda self: self.value)


GOOD_STREAMS = [0, 1, 2, 0x7F00DEAD0000, 2**64 - 1, np.int64(7), np.uint64(2**64 - 1),
                ProtoStream((0, 5)), ProtoStream((0, np.int64(6))), TorchLikeStream(9),
                CupyLikeStream(11)]
BAD_STREAMS = [-1, 2**64, 1.5, math.nan, True, "stream", b"s", [0], object(), np.float32(2.0),
               np.float64(3.0), ProtoStream(5), ProtoStream((0, -1)), ProtoStream((0, "x")),
               ProtoStream((0, 2**64)), ProtoStream((0,)), TorchLikeStream(-3),
               TorchLikeStream(1.5), CupyLikeStream(None)]
GOOD_PDL = [None, True, False, 0, 1, np.bool_(True), np.bool_(False)]
BAD_PDL = [2, -1, "false", "", 1.0, np.int64(1), [], object(), np.array([True, False])]
FLOAT_JUNK = [math.nan, math.inf, -math.inf, 0.0, -0.0, -1e-6, -5, 0, 10**400, True, False,
              None, "1e-6", b"1", [1e-6], np.float32(1e-6), complex(1e-6, 0), object()]
# Not a tensor: each must be refused naming the argument it was passed as.
TENSOR_JUNK = [None, 0, 7, 1.5, "tensor", b"tensor", [1.0, 2.0], (4, 64), {"data": 1},
               object(), fc.TensorDesc, np.float16(1.0), np.zeros((4, 64), np.float16),
               np.zeros(8, np.int32), np.zeros((2, 4, 8, 128), np.uint8)]


def eps_ok(eps) -> bool:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)):
        return False
    try:
        v = float(eps)
    except OverflowError:
        return False
    return math.isfinite(v) and v > 0


def maybe(draw, broken, good, bad):
    """A value from ``good``, or from ``bad`` when ``broken``; returns (value, ok)."""
    if broken:
        return draw(st.sampled_from(bad)), False
    return draw(good if isinstance(good, st.SearchStrategy) else st.sampled_from(good)), True


# =========================================================================== TensorDesc

PTR_POOL = [0, PTR, PTR + 2, PTR + 1, PTR + 4, 2**64 - 16, 2**64, -16, np.uint64(PTR),
            np.int64(PTR), 1.5, float(PTR), "4096", None, True, object()]
SHAPE_POOL = [(), (0,), (5,), (4, 64), (1,) * 8, (1,) * 9, (2**62, 2), (2**63,), (-1, 4),
              (2.0, 4), (True, 4), ("4",), np.array([3, 4]), [np.int64(3), 4], "12", 5, None]
STRIDES_POOL = [None, (), (1,), (64, 1), (0, 1), (-64, 1), (2**63, 1), (-(2**63) - 1, 1),
                (64.0, 1), (1, 1, 1), "1", 3]
DEVICE_POOL = [0, 1, 3, 2**16 - 1, 2**16, -1, np.int32(2), 1.0, "0", None, True]
DEVICE_TYPE_POOL = ["cuda", "cpu", "cuda_host", "cuda_managed", "CUDA", "rocm", 2, None, []]
DTYPE_POOL = DTYPES + ["f16", "bf16", "half", "torch.bfloat16", np.dtype("float16"),
                       np.float32, "complex64", "float4", "", 5, None]


def _int_like(v):
    return not isinstance(v, bool) and hasattr(type(v), "__index__")


def tensordesc_problems(ptr, shape, dtype, strides, device, device_type):
    """Which constructor arguments are wrong, and the normalised values when none are."""
    bad = set()
    if isinstance(ptr, bool) or not _int_like(ptr) or not 0 <= int(ptr) < 2**64:
        bad.add("ptr")
    try:
        fc.TensorDesc(0, (), dtype)  # the dtype table is the library's own
        dtype_ok = True
    except TypeError:
        dtype_ok = False
    if not dtype_ok:
        bad.add("dtype")
    dims = None
    if isinstance(shape, (str, bytes)) or not hasattr(shape, "__iter__"):
        bad.add("shape")
    else:
        dims = list(shape)
        if (len(dims) > 8 or not all(_int_like(n) and 0 <= int(n) < 2**63 for n in dims)):
            bad.add("shape")
            dims = None
    if strides is not None:
        if isinstance(strides, (str, bytes)) or not hasattr(strides, "__iter__"):
            bad.add("strides")
        else:
            st_ = list(strides)
            if (not all(_int_like(s) and -(2**63) <= int(s) < 2**63 for s in st_)
                    or (dims is not None and len(st_) != len(dims))):
                bad.add("strides")
    elif dims is not None:
        acc = 1
        for n in reversed(dims):
            if acc >= 2**63:
                bad.add("shape")
                break
            acc *= max(int(n), 1)
    if device_type not in ("cuda", "cpu", "cuda_host", "cuda_managed"):
        bad.add("device_type")
    if not _int_like(device) or not 0 <= int(device) < 2**16:
        bad.add("device")
    if "ptr" not in bad and dtype_ok:
        item = ITEM.get(fc.TensorDesc(0, (), dtype).dtype, 1)
        if int(ptr) % item:
            bad.add("ptr")
    return bad


@SETTINGS
@given(st.sampled_from(PTR_POOL), st.sampled_from(SHAPE_POOL), st.sampled_from(DTYPE_POOL),
       st.sampled_from(STRIDES_POOL), st.sampled_from(DEVICE_POOL),
       st.sampled_from(DEVICE_TYPE_POOL))
def test_tensordesc_constructor(ptr, shape, dtype, strides, device, device_type):
    bad = tensordesc_problems(ptr, shape, dtype, strides, device, device_type)
    try:
        d = fc.TensorDesc(ptr, shape, dtype, strides=strides, device=device,
                          device_type=device_type)
    except (TypeError, ValueError) as exc:
        check_rejected(exc, bad)
        return
    assert not bad, f"TensorDesc accepted bad {sorted(bad)}: {d!r}"
    assert d.ptr == int(ptr) and d.shape == tuple(int(n) for n in shape)
    if strides is not None:
        assert d.strides == tuple(int(s) for s in strides)
    assert d.device == (device_type, int(device))


@SETTINGS
@given(st.sampled_from(PTR_POOL), st.sampled_from(["float16", "float32", "uint8"]))
def test_set_ptr_checks_like_the_constructor(ptr, dtype):
    d = T((4,), dtype)
    bad = tensordesc_problems(ptr, (4,), dtype, None, 0, "cuda")
    try:
        d.set_ptr(ptr)
    except (TypeError, ValueError) as exc:
        check_rejected(exc, bad)
        assert d.ptr == PTR, "a refused set_ptr changed the pointer"
        return
    assert not bad and d.ptr == int(ptr)


STREAM_CASES = [(s, True) for s in GOOD_STREAMS] + [(s, False) for s in BAD_STREAMS]


@SETTINGS
@given(st.sampled_from(SHAPE_POOL[:12]), st.sampled_from(DTYPE_POOL[:12]),
       st.sampled_from(DEVICE_POOL), st.sampled_from(STREAM_CASES))
def test_device_array_empty_checks_before_cuda(shape, dtype, device, stream_case):
    stream, stream_ok = stream_case
    bad = tensordesc_problems(0, shape, dtype, None, device, "cuda")
    if not stream_ok:
        bad.add("stream")
    result = outcome(lambda: fc.DeviceArray.empty(shape, dtype, device, stream))
    if not bad and "shape" not in bad:
        nbytes = math.prod(int(n) for n in shape) * ITEM[fc.TensorDesc(0, (), dtype).dtype]
        if nbytes >= 2**63:
            bad.add("shape")
    check(result, bad)


# =========================================================================== norm

NORM = {  # name: (function, highest input rank, fused add)
    "rmsnorm": (fc.rmsnorm, 3, False),
    "qk_rmsnorm": (fc.qk_rmsnorm, 3, False),
    "gemma_rmsnorm": (fc.gemma_rmsnorm, 2, False),
    "fused_add_rmsnorm": (fc.fused_add_rmsnorm, 2, True),
    "gemma_fused_add_rmsnorm": (fc.gemma_fused_add_rmsnorm, 2, True),
}
HIDDEN = [1, 2, 3, 4, 6, 8, 12, 16, 24, 64, 100, 128, 1000, 1003, 4096, 5120]


def vec_elems(hidden: int) -> int:
    """Elements per vector access of the norm kernels: gcd(8, hidden) for 2-byte items."""
    return math.gcd(8, hidden) if hidden > 0 else 8


def norm_layout_ok(d, hidden: int, written: bool) -> bool:
    """What the norm kernels can address: row starts aligned to their vector, leading
    strides in whole vectors, every element offset and the row count below 2**32 (uint32
    arithmetic), and -- for tensors they write -- rows that do not overlap."""
    vec = vec_elems(hidden)
    if d.ptr % (2 * vec):
        return False
    lead = list(zip(d.shape[:-1], d.strides[:-1]))
    for n, s in lead:
        if n > 1 and (s % vec or s < 0):
            return False
        if n >= U32 or s >= U32:
            return False
        if written and n > 1 and s < d.shape[-1]:
            return False
    rows = math.prod(n for n, _ in lead)
    span = sum((n - 1) * s for n, s in lead if n > 1) + max(d.shape[-1] - 1, 0)
    return rows < U32 and span < U32


def last_contiguous(d) -> bool:
    return d.ndim == 0 or d.shape[-1] <= 1 or d.strides[-1] == 1


def norm_problems(name, a):
    """The arguments of a norm call that are wrong, judged from the kernels' needs."""
    _, max_nd, fused = NORM[name]
    bad = set()
    if not eps_ok(a["eps"]):
        bad.add("eps")
    if not a["pdl_ok"]:
        bad.add("enable_pdl")
    if not a["stream_ok"]:
        bad.add("stream")
    x = a["input"]
    if not (isinstance(x, fc.TensorDesc) and x.device[0] == "cuda"
            and x.dtype in ("float16", "bfloat16") and 2 <= x.ndim <= max_nd
            and last_contiguous(x) and x.shape[-1] > 0
            and norm_layout_ok(x, x.shape[-1], fused)):
        bad.add("input")
        return bad  # everything else is checked against input
    hidden = x.shape[-1]
    w = a["weight"]
    if not (isinstance(w, fc.TensorDesc) and w.device == x.device and w.dtype == x.dtype
            and w.ndim == 1 and w.shape[0] == hidden and last_contiguous(w)
            and norm_layout_ok(w, w.shape[0], False)):
        bad.add("weight")
    other = "residual" if fused else "out"
    o = a[other]
    if other == "out" and o is None:
        return bad
    if not (isinstance(o, fc.TensorDesc) and o.device == x.device and o.dtype == x.dtype
            and o.shape == x.shape and last_contiguous(o) and norm_layout_ok(o, hidden, True)):
        bad.add(other)
    return bad


@st.composite
def layout(draw, shape, hidden, written):
    """Leading strides (elements) and a byte offset the norm kernels can take."""
    vec = vec_elems(hidden)
    strides = [1]
    extent = hidden
    for n in reversed(shape[:-1]):
        pad = draw(st.sampled_from([0, 0, 0, 1, 2, 5])) * vec
        stride = extent + pad
        if not written and draw(st.integers(0, 9)) == 0:
            stride = 0  # a broadcast (read-only) row
        strides.insert(0, stride)
        extent = max(n, 1) * max(stride, extent)
    if len(shape) == 3 and draw(st.booleans()):  # [tokens, heads, dim] of a [heads, tokens, dim]
        inner = hidden + draw(st.sampled_from([0, 1, 3])) * vec
        strides = [inner, max(shape[0], 1) * inner, 1]
    offset = draw(st.integers(0, 6)) * 2 * vec
    return tuple(strides), offset


@st.composite
def norm_operand(draw, shape, dtype, hidden, written, broken):
    """A descriptor the norm kernels can take for ``shape``, or (``broken``) one changed in
    one random way -- which may or may not still be valid: the model decides."""
    strides, offset = draw(layout(shape, hidden, written))
    device, device_type = 0, "cuda"
    shape = list(shape)
    if broken:
        kind = draw(st.sampled_from(["dtype", "ndim", "size", "last_stride", "lead_stride",
                                     "misalign", "device", "junk", "huge"]))
        if kind == "junk":
            return draw(st.sampled_from(TENSOR_JUNK))
        if kind == "dtype":
            dtype, offset = draw(st.sampled_from([d for d in DTYPES if d != dtype])), 0
        elif kind == "ndim":
            if draw(st.booleans()) or len(shape) == 1:
                shape, strides = [1] + shape, (strides[0] * max(shape[0], 1),) + strides
            else:
                shape, strides = shape[1:], strides[1:]
        elif kind == "size":
            i = draw(st.integers(0, len(shape) - 1))
            shape[i] = draw(st.sampled_from([0, 1, 2, 3, 7, 64, shape[i] + 1]))
        elif kind == "last_stride":
            strides = strides[:-1] + (draw(st.sampled_from([0, 2, -1, 8])),)
        elif kind == "lead_stride" and len(shape) > 1:
            i = draw(st.integers(0, len(shape) - 2))
            new = draw(st.sampled_from([0, 1, -strides[i] or -8, strides[i] + 1,
                                        strides[i] + 2, strides[i] + 4, U32, U32 + 8, 2**40]))
            strides = strides[:i] + (new,) + strides[i + 1:]
        elif kind == "misalign":
            offset += draw(st.sampled_from([2, 4, 6, 8, 10, 14]))
        elif kind == "device":
            device, device_type = draw(st.sampled_from(
                [(1, "cuda"), (3, "cuda"), (0, "cpu"), (0, "cuda_host"), (0, "cuda_managed")]))
        elif kind == "huge":  # rows or element offsets past 2**32
            shape[0] = draw(st.sampled_from([U32 // hidden + 1, U32, U32 - 1, 2**31, 65537]))
            strides, offset = None, 0
    return T(tuple(shape), dtype, strides=strides, offset=offset, device=device,
             device_type=device_type)


@st.composite
def norm_calls(draw, break_one):
    """A valid call, or (``break_one``) one with a single argument changed."""
    name = draw(st.sampled_from(sorted(NORM)))
    _, max_nd, fused = NORM[name]
    args = ["input", "weight", "residual" if fused else "out", "eps", "enable_pdl", "stream"]
    broken = draw(st.sampled_from(args)) if break_one else None
    dtype = draw(st.sampled_from(["float16", "bfloat16"]))
    ndim = draw(st.integers(2, max_nd))
    hidden = draw(st.one_of(st.sampled_from(HIDDEN), st.integers(1, 700)))
    shape = tuple(draw(st.lists(st.integers(0, 6), min_size=ndim - 1, max_size=ndim - 1))) \
        + (hidden,)
    a = {"input": draw(norm_operand(shape, dtype, hidden, fused, broken == "input")),
         "weight": draw(norm_operand((hidden,), dtype, hidden, False, broken == "weight"))}
    if fused:
        a["residual"] = draw(norm_operand(shape, dtype, hidden, True, broken == "residual"))
    elif broken != "out" and draw(st.integers(0, 3)) == 0:
        a["out"] = None
    else:
        a["out"] = draw(norm_operand(shape, dtype, hidden, True, broken == "out"))
    a["eps"], _ = maybe(draw, broken == "eps", st.one_of(
        st.floats(1e-12, 1.0), st.sampled_from([1e-6, 1e-5, 1, 3, 1e300, np.float64(1e-6)])),
        FLOAT_JUNK)
    a["enable_pdl"], a["pdl_ok"] = maybe(draw, broken == "enable_pdl", GOOD_PDL, BAD_PDL)
    a["stream"], a["stream_ok"] = maybe(draw, broken == "stream", GOOD_STREAMS + [None] * 4,
                                        BAD_STREAMS)
    return name, a


def run_norm(name, a):
    fn, _, fused = NORM[name]
    kw = dict(eps=a["eps"], enable_pdl=a["enable_pdl"], stream=a["stream"])
    if fused:
        return outcome(lambda: fn(a["input"], a["residual"], a["weight"], **kw))
    return outcome(lambda: fn(a["input"], a["weight"], out=a["out"], **kw))


def norm_expected(name, a):
    """Valid call: RETURNED when there are no rows and nothing to allocate."""
    x = a["input"]
    if math.prod(x.shape[:-1]) == 0 and (NORM[name][2] or a["out"] is not None):
        return (RETURNED,)
    return (ACCEPTED, RETURNED) if a.get("out", 1) is None else (ACCEPTED,)


@SETTINGS
@given(norm_calls(break_one=False))
def test_norm_valid_calls_reach_the_kernel(call):
    name, a = call
    assert not norm_problems(name, a), "the generator drew a bad call"
    check_accepted(run_norm(name, a), norm_expected(name, a), name)


@settings(SETTINGS, max_examples=EXAMPLES * 4)
@given(norm_calls(break_one=True))
def test_norm_one_changed_argument_matches_the_model(call):
    name, a = call
    bad = norm_problems(name, a)
    event(f"wrong: {sorted(bad)}" if bad else "valid")
    check(run_norm(name, a), bad, lambda: norm_expected(name, a), name)
