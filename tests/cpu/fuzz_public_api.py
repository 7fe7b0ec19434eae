"""Hostile-argument fuzzing of flashinfer_cy's public surface, run as a child process by
test_fuzz_public_api.py (a crash kills only this process, and the parent reports it).

Targets: every name of ``flashinfer_cy.__all__``, every public name of each compiled module,
every function and class a shipped ``.pyi`` declares (private ones included), and the
public methods and properties of instances of those classes -- properly made ones and
``cls.__new__(cls)`` shells that ``__init__`` never saw. Arguments: None, strings, huge and
negative ints, NaN/inf, nested tuples, numpy arrays of odd dtypes and byte orders,
TensorDesc views with absurd strides, forged DLPack capsules (versioned and legacy) with
NULL shape / strides / data, DLPack exchange tables with NULL entries or a NULL shape,
malformed CUDA Array Interface dicts, damaged kernel module files.

Kernel modules and CUDA are never reached: ``load_module`` and ``_load_cudart`` raise (the
no-CUDA guard of cuda_guard.py), and CUDA_VISIBLE_DEVICES is empty -- except that the
damaged module files first go through ``load_module_path`` as far as ``dlopen``
(``load_damaged``). A Python exception is an answer; only a dead process is a failure.

Case ``i`` draws from ``random.Random(f"{seed}:{i}")`` and calls target ``i % len(targets)``,
so any case can be rerun alone:
    FLASHINFER_CY_FUZZ_SEED=<seed> FLASHINFER_CY_FUZZ_CASE=<i> python fuzz_public_api.py <dir>
Before each call the case is written to ``<dir>/last_call.txt``; the parent prints it when
the process dies. Settings: FLASHINFER_CY_FUZZ_SECONDS (default 30), _SEED (default 0).
"""

from __future__ import annotations

import ast
import importlib
import itertools
import inspect
import math
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

import flashinfer_cy as fc
from flashinfer_cy._core import runtime
from producers import CAI, Forged, exchange_type

PKG = Path(fc.__file__).resolve().parent
PTR = 0x7F0000000000


class TouchedCuda(AssertionError):
    """A call got past validation to the module loader or the CUDA runtime: fine here."""


def _refuse(*args, **kwargs):
    raise TouchedCuda("reached the kernel module / CUDA runtime")


# ------------------------------------------------------------------------------- targets

def _compiled_modules() -> list[str]:
    return sorted(".".join(p.relative_to(PKG.parent).with_suffix("").parts).split(".cpython")[0]
                  for p in PKG.rglob("*.so"))


def _pyi_names(module: str) -> list[str]:
    """Functions and classes a module's shipped stub declares (private ones too)."""
    stub = PKG.parent.joinpath(*module.split(".")).with_suffix(".pyi")
    if not stub.is_file():
        return []
    tree = ast.parse(stub.read_text())
    return [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]


def _public_names(mod) -> list[str]:
    return [n for n in dir(mod) if not n.startswith("_")]


def targets() -> list[tuple[str, object]]:
    """(label, callable), in a stable order."""
    found: dict[str, object] = {}
    for name in fc.__all__:
        found[f"flashinfer_cy.{name}"] = getattr(fc, name)
    for module in _compiled_modules():
        mod = importlib.import_module(module)
        for name in sorted(set(_public_names(mod)) | set(_pyi_names(module))):
            obj = getattr(mod, name, None)
            if callable(obj) and not inspect.ismodule(obj):
                found.setdefault(f"{module}.{name}", obj)
    for stub in sorted(PKG.rglob("*.pyi")):
        module = ".".join(stub.relative_to(PKG.parent).with_suffix("").parts)
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        for name in _pyi_names(module):
            obj = getattr(mod, name, None)
            if callable(obj):
                found.setdefault(f"{module}.{name}", obj)
    out = []
    seen = set()  # a class re-exported by several modules is one target
    for label, obj in found.items():
        if isinstance(obj, type) and issubclass(obj, BaseException):
            continue  # exception classes: constructing them proves nothing
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        out.append((label, obj))
        if isinstance(obj, type):
            out.extend(_members(label, obj))
    return out


def _members(label: str, cls: type) -> list[tuple[str, object]]:
    """Each public method / property of ``cls``, bound to a made instance and to a shell."""
    out = []
    names = [n for n in dir(cls) if not n.startswith("_") or n in (
        "__dlpack__", "__dlpack_device__", "__call__", "__len__", "__getitem__", "__repr__",
        "__cuda_array_interface__")]
    for name in sorted(names):
        if name in dir(object) and name != "__repr__":
            continue
        for how in ("made", "shell"):
            out.append((f"{label}<{how}>.{name}", _member_call(cls, name, how)))
    return out


def _instance(cls: type, how: str):
    if how == "shell":
        return cls.__new__(cls)
    made = {fc.TensorDesc: lambda: fc.TensorDesc(PTR, (4, 8), "float16"),
            fc.Binding: lambda: fc.Binding("m", "f", "x:T y:I z:F w:B d:D o:A t:T? h:H")}
    make = made.get(cls, cls)
    return make()


def _member_call(cls: type, name: str, how: str):
    def call(*args, **kwargs):
        obj = _instance(cls, how)
        attr = getattr(obj, name)  # a property is read here
        if callable(attr):
            return attr(*args, **kwargs)
        return attr
    return call


# ----------------------------------------------------------------------------- arguments

INTS = [0, 1, -1, 2, 16, 2**31 - 1, 2**31, 2**32, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -2**63,
        -2**63 - 1, 10**30, -10**30]
FLOATS = [math.nan, math.inf, -math.inf, -0.0, 1e308, 5e-324, 0.5]
STRINGS = ["", "abc", "float16", "bfloat16", "cuda", "cpu", "NHD", "HND", "fa2", "fa3",
           "norm", "\x00", "é" * 3, "x" * 10000]
DTYPES = [">f2", "<f2", ">f4", "<f4", "f8", ">i4", "<i4", "i8", "u8", "i2", "u1", "i1", "?",
          "c8", "O", "U3", "V4", "M8[s]"]
DL_DTYPES = [(2, 16, 1), (4, 16, 1), (0, 32, 1), (1, 8, 1), (2, 0, 1), (2, 16, 0),
             (2, 255, 65535), (255, 8, 1), (10, 8, 1), (2, 64, 4)]


class Hostile:
    """Draws hostile arguments from one ``random.Random``; keeps what must stay alive."""

    def __init__(self, rng: random.Random, scratch: Path):
        self.rng = rng
        self.scratch = scratch

    def pick(self, seq):
        return seq[self.rng.randrange(len(seq))]

    def value(self, depth: int = 0):
        kinds = [self.scalar, self.scalar, self.array, self.desc, self.forged, self.exchanged,
                 self.cai, self.path, self.instance]
        if depth < 2:
            kinds.append(self.container)
        return self.pick(kinds)(depth)

    def scalar(self, depth=0):
        r = self.rng.random()
        if r < 0.35:
            return self.pick(INTS)
        if r < 0.5:
            return self.pick(FLOATS)
        if r < 0.7:
            return self.pick(STRINGS)
        return self.pick([None, True, False, 1j, b"\x00\xff", object(), np.bool_(True),
                          np.int64(-1), np.uint64(2**64 - 1), np.float16("nan"),
                          np.dtype(">f2"), np.dtype("<f2"), np.dtype("O"), float, int, Ellipsis,
                          slice(None), range(3), {"a": 1}, bytearray(3)])

    def container(self, depth=0):
        n = self.rng.randrange(4)
        items = [self.value(depth + 1) for _ in range(n)]
        return self.pick([tuple, list])(items) if self.rng.random() < 0.8 else \
            ((items,),) * 2

    def array(self, depth=0):
        dt = np.dtype(self.pick(DTYPES))
        shape = self.pick([(), (0,), (3,), (4, 8), (2, 0, 3), (1,) * 9])
        a = np.zeros(shape, dt)
        r = self.rng.random()
        if r < 0.2 and a.ndim:
            a = a[::2]
        elif r < 0.3 and a.ndim >= 2:
            a = np.asfortranarray(a)
        elif r < 0.4:
            a.flags.writeable = False
        return a

    def desc(self, depth=0):
        shape = self.pick([(), (0,), (4, 8), (2**31,), (1,) * 8, (4, 8, 128), (2**40, 2**22)])
        strides = self.pick([None, None, tuple(2**62 for _ in shape),
                             tuple(-(2**62) for _ in shape), tuple(0 for _ in shape),
                             tuple(1 for _ in shape), tuple(-1 for _ in shape)])
        try:
            return fc.TensorDesc(self.pick([PTR, PTR + 1, 16, 2**64 - 16]), shape,
                                 self.pick(["float16", "bfloat16", "float32", "int32", "uint8",
                                            "int64", "float8_e4m3fn"]),
                                 strides=strides, device=self.pick([0, 1, 65535]),
                                 device_type=self.pick(["cuda", "cuda", "cpu", "cuda_host"]))
        except (TypeError, ValueError):
            return fc.TensorDesc(PTR, (4, 8), "float16", strides=None if not strides else (2**62, 1))

    def forged(self, depth=0):
        shape = self.pick([Forged.NULL, (4, 8), (4, -8), (2**62, 2**62), (0, 8), (1,) * 9])
        n = len(shape) if shape is not Forged.NULL else 2
        return Forged(
            shape=shape,
            strides=self.pick([None, (2**62,) * 8, (-(2**62),) * 8, (1,) * 8, (8, 1)])
            if shape is not Forged.NULL else None,
            ndim=self.pick([None, None, n, -1, 0, 9, 100, 2**31 - 1]),
            data=self.pick([0, 1, PTR, PTR + 3, 2**64 - 2]),
            versioned=self.rng.random() < 0.5, minor=self.pick([0, 2, 3, 99]),
            device=(self.pick([1, 2, 3, 13, 999, -1]), self.pick([0, 1, -1, 2**31 - 1])),
            dtype=self.pick(DL_DTYPES))

    def exchanged(self, depth=0):
        cls = exchange_type(describe=self.rng.random() < 0.8, stream=self.rng.random() < 0.8)
        shape = self.pick([None, (4, 8), (2, 2, 2, 2, 2, 2, 2, 2, 2), (4, -8), (2**62, 4)])
        return cls(np.zeros((4, 8), np.float32), shape=shape,
                   device_id=self.pick([0, 1, 2**16, 2**31 - 1]),
                   null_shape=self.rng.random() < 0.3)

    def cai(self, depth=0):
        if self.rng.random() < 0.5:
            return CAI(self.pick([0, PTR, -1, 2**64]), self.pick([(4, 8), (-1,), (2**63,), ()]),
                       typestr=self.pick(["<f2", ">f2", "<f4", "|u1", "zz", ""]))
        obj = CAI(PTR, (4, 8))
        obj.__cuda_array_interface__ = self.pick([
            None, {}, {"data": None}, {"data": (PTR,), "shape": (4,), "typestr": "<f2"},
            {"data": (PTR, False), "shape": (4, 8), "typestr": "<f2", "strides": (1,)},
            {"data": (PTR, False), "shape": (4, 8), "typestr": "<f2", "strides": (2**70, 2)},
            {"data": (PTR, False), "shape": (4,), "typestr": "<f2", "stream": -5},
            {"data": (2**70, False), "shape": (4,), "typestr": "<f2"}, "garbage"])
        return obj

    def path(self, depth=0):
        d = self.scratch
        return self.pick([d / "half.so", d / "header.so", d / "empty.so", d / "text.so",
                          d / "no_load.so", d, d / "absent.so", str(d / "half.so"),
                          os.fsencode(d / "half.so")])

    def instance(self, depth=0):
        return self.pick([fc.TensorDesc(PTR, (4, 8), "float16"),
                          fc.BatchDecodeWithPagedKVCache(), fc.Binding("m", "f", "x:T"),
                          runtime.Function.__new__(runtime.Function),
                          runtime.Object.__new__(runtime.Object),
                          runtime.Module.__new__(runtime.Module),
                          runtime.Array.__new__(runtime.Array)])

    def catalogue(self, r: int):
        """Round ``r``'s value, for the first rounds over all targets: each known way to
        crash a consumer, in every argument slot of every target, before random search."""
        d = self.scratch
        makers = [
            lambda: None,
            lambda: Forged(shape=Forged.NULL, ndim=2),
            lambda: Forged(shape=Forged.NULL, ndim=2, versioned=False),
            lambda: exchange_type()(np.zeros((4, 8), np.float32), null_shape=True),
            lambda: Forged(strides=None, data=0),
            lambda: fc.TensorDesc(PTR, (4, 8, 128), "float16", strides=(2**62, 128, 1)),
            lambda: Forged(shape=(4, -8), strides=(8, 1)),
            lambda: Forged(ndim=100),
            lambda: str(d / "half.so"),
            lambda: -1,
            lambda: 2**64 - 1,
            lambda: math.nan,
            lambda: "abc",
            lambda: np.zeros(4, ">f2"),
        ]
        return makers[r]() if r < len(makers) else None

    CATALOGUE_ROUNDS = 14

    def call_args(self, fn, r: int = -1) -> tuple[list, dict]:
        try:
            params = list(inspect.signature(fn).parameters.values())
        except (TypeError, ValueError):
            params = []
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY,
                                                      p.POSITIONAL_OR_KEYWORD)]
        if 0 <= r < self.CATALOGUE_ROUNDS:
            return [self.catalogue(r)] * (len(positional) or 3), {}
        if positional and self.rng.random() < 0.3:
            # One value in every positional slot: the shape of the simplest crashes
            # (call_generic(None, (), None), a NULL-shape tensor in each tensor argument).
            value = self.value()
            return [value] * len(positional), {}
        args = [self.value() for _ in range(self.pick([0, 1, 2, 3, 3, 4, 5, 6, 8]))]
        kwargs = {}
        for p in params:
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and self.rng.random() < 0.3:
                kwargs[p.name] = self.value()
        return args, kwargs


def damaged_files(scratch: Path) -> None:
    """Module files as a failed copy leaves them, made from a real shared library."""
    import importlib.util

    spec = importlib.util.find_spec("tvm_ffi")  # not imported: its __init__ may want torch
    data = (Path(spec.submodule_search_locations[0]) / "lib" / "libtvm_ffi.so").read_bytes()
    (scratch / "half.so").write_bytes(data[:4096])
    (scratch / "header.so").write_bytes(data[:64])
    (scratch / "empty.so").write_bytes(b"")
    (scratch / "text.so").write_text("not a library\n")
    no_sections = bytearray(data[:len(data) // 2])
    no_sections[0x28:0x30] = bytes(8)
    (scratch / "no_load.so").write_bytes(bytes(no_sections))


def load_damaged(scratch: Path, last) -> None:
    """Each damaged file through load_module_path with the CUDA runtime step a no-op, so
    that nothing but the ELF check stands between it and dlopen (a truncated file is
    SIGBUS there). The random rounds below cannot show that: their load stops at the
    refused CUDA runtime, which comes after the check."""
    refuse, runtime._load_cudart = runtime._load_cudart, lambda: None
    try:
        for name in ("half.so", "header.so", "empty.so", "text.so", "no_load.so"):
            last.seek(0)
            last.write(f"damaged file: load_module_path({str(scratch / name)!r})\n")
            last.truncate()
            last.flush()
            try:
                fc.load_module_path(str(scratch / name))
            except Exception:  # noqa: BLE001 - any exception is an answer
                pass
    finally:
        runtime._load_cudart = refuse


# ----------------------------------------------------------------------------------- run

def describe(label: str, args: list, kwargs: dict) -> str:
    def r(v):
        try:
            text = repr(v)
        except Exception as exc:  # noqa: BLE001 - a repr that raises is still described
            text = f"<{type(v).__name__} whose repr raised {type(exc).__name__}>"
        if isinstance(v, Forged):
            t = v._managed.dl
            text = (f"Forged(ndim={t.ndim}, shape={'NULL' if not t.shape else 'set'}, "
                    f"strides={'NULL' if not t.strides else 'set'}, data={t.data}, "
                    f"versioned={v.versioned})")
        return text if len(text) < 300 else text[:300] + "..."
    parts = [r(a) for a in args] + [f"{k}={r(v)}" for k, v in kwargs.items()]
    return f"{label}({', '.join(parts)})"


def main() -> int:
    scratch = Path(sys.argv[1])
    seed = os.environ.get("FLASHINFER_CY_FUZZ_SEED", "0")
    seconds = float(os.environ.get("FLASHINFER_CY_FUZZ_SECONDS", "30"))
    only = os.environ.get("FLASHINFER_CY_FUZZ_CASE")
    runtime.load_module = _refuse
    runtime._load_cudart = _refuse
    damaged_files(scratch)
    todo = targets()
    last = open(scratch / "last_call.txt", "w")
    load_damaged(scratch, last)
    deadline = time.monotonic() + seconds
    called = set()
    n = 0
    for i in [int(only)] if only is not None else itertools.count():
        # Time-bounded, but every target is called at least once.
        if only is None and time.monotonic() >= deadline and len(called) == len(todo):
            break
        label, fn = todo[i % len(todo)]
        gen = Hostile(random.Random(f"{seed}:{i}"), scratch)
        args, kwargs = gen.call_args(fn, i // len(todo))
        last.seek(0)
        last.write(f"seed {seed} case {i}: {describe(label, args, kwargs)}\n")
        last.truncate()
        last.flush()
        try:
            fn(*args, **kwargs)
        except (Exception, SystemExit):  # noqa: BLE001 - any exception is an answer
            pass
        called.add(i % len(todo))
        n += 1
    print(f"fuzz: seed {seed}, {n} cases, {len(called)} of {len(todo)} targets called")
    return 0


if __name__ == "__main__":
    sys.exit(main())
