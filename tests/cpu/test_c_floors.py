"""CPU tests for the C floors of tools/c_floor/ (the benchmarks' reference calls): they build
against the headers apache-tvm-ffi ships, and the decode floor's library entry points refuse
to run anything before their set-up instead of calling through a NULL function."""

from __future__ import annotations

import ctypes
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
from bench_norm import build_c_floor  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (cc)")


@pytest.mark.parametrize("name", ["decode_floor", "rmsnorm_floor", "mla_floor"])
def test_floor_builds_as_program_and_library(name):
    for shared in (False, True):
        path, ffi = build_c_floor(name, shared=shared)
        assert path.is_file() and path.stat().st_size > 0
    assert ffi.is_file(), ffi


@pytest.fixture(scope="module")
def decode_floor_lib():
    path, _ = build_c_floor("decode_floor", shared=True)
    lib = ctypes.PyDLL(str(path))  # the GIL is held, as for the run_exchange floor
    lib.fcy_decode_floor_burst.argtypes = [ctypes.c_int, ctypes.c_int]
    lib.fcy_decode_floor_burst.restype = ctypes.c_double
    lib.fcy_decode_floor_error.restype = ctypes.c_char_p
    lib.fcy_decode_floor_set_exchange.argtypes = [ctypes.c_void_p] + [ctypes.py_object] * 4
    return lib


@pytest.mark.parametrize("which", [0, 1, 2, 3])
def test_decode_floor_burst_before_init_is_an_error(decode_floor_lib, which):
    assert decode_floor_lib.fcy_decode_floor_burst(which, 5) < 0
    assert b"fcy_decode_floor_init has not succeeded" in decode_floor_lib.fcy_decode_floor_error()


@pytest.mark.parametrize("which", [-1, 4])
def test_decode_floor_burst_names_an_unknown_floor(decode_floor_lib, which):
    assert decode_floor_lib.fcy_decode_floor_burst(which, 5) < 0
    assert decode_floor_lib.fcy_decode_floor_error() == f"no such floor: {which}".encode()


def test_decode_floor_set_exchange_checks_its_api(decode_floor_lib):
    objs = [object() for _ in range(4)]
    assert decode_floor_lib.fcy_decode_floor_set_exchange(None, *objs) == -1
    assert b"exchange API" in decode_floor_lib.fcy_decode_floor_error()
    # An API whose two function pointers are NULL (the header fields are zero, too).
    empty = (ctypes.c_void_p * 16)()
    assert decode_floor_lib.fcy_decode_floor_set_exchange(ctypes.addressof(empty), *objs) == -1
    assert b"dltensor_from_py_object_no_sync" in decode_floor_lib.fcy_decode_floor_error()


def test_call_shape_stand_in_keeps_the_wrappers_signatures():
    """tools/probe_call_shape.py times no-ops with run()'s and launch()'s call shapes: they
    build, and a stand-in that drifted from the wrapper's signature would time another call."""
    import inspect

    pytest.importorskip("Cython", reason="the probe compiles its stand-in with Cython")
    import flashinfer_cy as fc
    from flashinfer_cy.kernels.batch_attention import PreparedRun
    from probe_call_shape import build_call_shape

    nop = build_call_shape().NoOp
    for stand_in, real in ((nop.run, fc.BatchDecodeWithPagedKVCache.run),
                           (nop.launch, PreparedRun.launch)):
        assert inspect.signature(stand_in) == inspect.signature(real), real.__qualname__
    assert nop().run(1, (2, 3), out=4) == 4


@pytest.mark.parametrize("name,stand_in,shape", [
    ("decode_floor", "fake_batch_decode.cc", ["4", "64", "16", "8", "2", "128"]),
    ("mla_floor", "fake_batch_mla.cc", ["2", "40", "16", "4", "512", "64"]),
])
def test_floor_runs_against_the_stand_in_module(tmp_path, name, stand_in, shape):
    """Every floor packs the export's arguments as FlashInfer 0.6.3 declares them: run
    against the CPU stand-in module of that signature (TVM-FFI's typed call checks each
    argument's kind) and the stand-in libcudart, it prints its floors."""
    import os
    import subprocess

    from testmod_build import HERE, compile_c_library, compile_module

    exe, ffi = build_c_floor(name)
    lib = compile_c_library(HERE / "fake_cudart.c", tmp_path / "lib" / "libcudart.so.13")
    module = compile_module(HERE / stand_in, tmp_path / "module.so")
    env = dict(os.environ, LD_LIBRARY_PATH=str(lib.parent), FAKE_DECODE_CHECKS_ONLY="1")
    res = subprocess.run([str(exe), str(ffi), str(module), *shape, "5", "3"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    for floor in ("run", "plan_kernel", "plan"):
        assert f"c_floor_{floor}_us " in res.stdout, res.stdout

