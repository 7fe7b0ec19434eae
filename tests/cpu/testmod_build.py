"""Compiling the CPU test module (ffi_testmod.cc) against the installed tvm-ffi headers, with
the link rule FlashInfer's kernels use (no -ltvm_ffi)."""

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


def compile_c_library(src: Path, out: Path) -> Path:
    """A plain C shared library (the fake libcudart.so.13)."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.fail("a C compiler is needed to build the stand-in libcudart")
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([cc, "-std=c11", "-O1", "-fPIC", "-shared", str(src), "-o", str(out)],
                   check=True)
    return out
