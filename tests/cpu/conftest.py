"""CPU tests run the real call path: libtvm_ffi from the installed apache-tvm-ffi, and a
TVM-FFI module (ffi_testmod.cc) that this conftest compiles against the same headers and
with the same link rule as FlashInfer's kernels (not linked against libtvm_ffi)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from testmod_build import (HERE, STAND_IN_VERSION, child_pythonpath, compile_c_library,
                           compile_module, mark_kernel_dir, stand_in_kernels)


@pytest.fixture(scope="session")
def testmod_dir(tmp_path_factory) -> Path:
    """A kernel directory laid out like FLASHINFER_CY_KERNEL_DIR: testmod/testmod.so."""
    root = tmp_path_factory.mktemp("kernels")
    compile_module(HERE / "ffi_testmod.cc", root / "testmod" / "testmod.so")
    return mark_kernel_dir(root)


@pytest.fixture(scope="session")
def testmod(testmod_dir):
    import flashinfer_cy as fc

    return fc.load_module_path(testmod_dir / "testmod" / "testmod.so", uri="testmod",
                               flashinfer_version=STAND_IN_VERSION)


@pytest.fixture(scope="session")
def fused_moe_stand_in(tmp_path_factory):
    """(the stand-in fused_moe_90 module (fake_fused_moe.cc), the environment of a driver
    process: the stand-in libcudart first on LD_LIBRARY_PATH, for the run methods'
    workspace allocations). Used through testmod_build.run_driver."""
    root = tmp_path_factory.mktemp("fake_fused_moe")
    lib = compile_c_library(HERE / "fake_cudart.c", root / "lib" / "libcudart.so.13").parent
    so = compile_module(HERE / "fake_fused_moe.cc", root / "fused_moe_90.so")
    env = dict(os.environ, PYTHONPATH=child_pythonpath(), LD_LIBRARY_PATH=os.pathsep.join(
        filter(None, [str(lib), os.environ.get("LD_LIBRARY_PATH")])))
    return so, env


@pytest.fixture(scope="session")
def fused_moe_stand_in_074(tmp_path_factory):
    """0.7.4's stand-in fused_moe_90 (fake_fused_moe.cc -DFAKE_MOE_074) in a kernel dir marked
    0.7.4, as fused_moe_stand_in: (its module path, a driver's environment, which names the
    kernel dir, so the module is loaded as the release the marker says)."""
    kernels, lib = stand_in_kernels(tmp_path_factory.mktemp("fake_fused_moe_074"),
                                    HERE / "fake_fused_moe.cc", ["fused_moe_90"],
                                    ["-DFAKE_MOE_074"], version="0.7.4")
    env = dict(os.environ, PYTHONPATH=child_pythonpath(), FLASHINFER_CY_KERNEL_DIR=str(kernels),
               FLASHINFER_CY_OFFLINE="1", LD_LIBRARY_PATH=os.pathsep.join(
                   filter(None, [str(lib), os.environ.get("LD_LIBRARY_PATH")])))
    return kernels / "fused_moe_90" / "fused_moe_90.so", env
