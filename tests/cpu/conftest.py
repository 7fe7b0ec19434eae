"""CPU tests run the real call path: libtvm_ffi from the installed apache-tvm-ffi, and a
TVM-FFI module (ffi_testmod.cc) that this conftest compiles against the same headers and
with the same link rule as FlashInfer's kernels (not linked against libtvm_ffi)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def tvm_ffi_include() -> Path:
    spec = importlib.util.find_spec("tvm_ffi")
    assert spec is not None, "apache-tvm-ffi must be installed"
    return Path(spec.submodule_search_locations[0]) / "include"


def compile_module(src: Path, out: Path, extra: list[str] | None = None) -> Path:
    cxx = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
    if cxx is None:
        pytest.fail("a C++ compiler is needed to build the TVM-FFI test module")
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [cxx, "-std=c++17", "-O1", "-fPIC", "-shared", f"-I{tvm_ffi_include()}", str(src),
           "-o", str(out), *(extra or [])]
    subprocess.run(cmd, check=True)
    return out


@pytest.fixture(scope="session")
def testmod_dir(tmp_path_factory) -> Path:
    """A kernel directory laid out like FLASHINFER_CY_KERNEL_DIR: testmod/testmod.so."""
    root = tmp_path_factory.mktemp("kernels")
    compile_module(HERE / "ffi_testmod.cc", root / "testmod" / "testmod.so")
    return root


@pytest.fixture(scope="session")
def testmod(testmod_dir):
    import flashinfer_cy as fc

    return fc.load_module_path(testmod_dir / "testmod" / "testmod.so", uri="testmod")
