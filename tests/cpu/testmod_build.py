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


def _shared_library(lang: str, flags: list[str], src: Path, out: Path,
                    extra: list[str] | None = None) -> Path:
    """Compile ``src`` into the shared library ``out`` with $CXX / $CC or the usual names
    (``extra`` after the output, where libraries go)."""
    env, names = {"C++": ("CXX", ("c++", "g++")), "C": ("CC", ("cc", "gcc"))}[lang]
    compiler = os.environ.get(env) or next(filter(None, map(shutil.which, names)), None)
    if compiler is None:
        pytest.fail(f"a {lang} compiler is needed to build {src.name}")
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([compiler, *flags, "-O1", "-fPIC", "-shared", str(src), "-o", str(out),
                    *(extra or [])], check=True)
    return out


def compile_module(src: Path, out: Path, extra: list[str] | None = None) -> Path:
    """A TVM-FFI module (the test module, the stand-in kernels)."""
    return _shared_library("C++", ["-std=c++17", f"-I{tvm_ffi_include()}"], src, out, extra)


def compile_c_library(src: Path, out: Path) -> Path:
    """A plain C shared library (the stand-in libcudart.so.13)."""
    return _shared_library("C", ["-std=c11"], src, out)
