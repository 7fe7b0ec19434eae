"""CPU tests run the real call path: libtvm_ffi from the installed apache-tvm-ffi, and a
TVM-FFI module (ffi_testmod.cc) that this conftest compiles against the same headers and
with the same link rule as FlashInfer's kernels (not linked against libtvm_ffi)."""

from __future__ import annotations

from pathlib import Path

import pytest

from testmod_build import HERE, STAND_IN_VERSION, compile_module, mark_kernel_dir


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
