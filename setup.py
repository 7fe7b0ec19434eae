"""Build the Cython extensions against the headers the installed apache-tvm-ffi ships.

Only headers are used at build time (tvm/ffi/c_api.h, dlpack/dlpack.h); nothing links
libtvm_ffi or libcudart: both are dlopen'd at run time (see flashinfer_cy/_core/runtime.pyx).
"""

import importlib.util
import os
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup

ROOT = Path(__file__).parent


def tvm_ffi_include_dir() -> str:
    # find_spec does not execute tvm_ffi/__init__.py (which would import torch).
    spec = importlib.util.find_spec("tvm_ffi")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("apache-tvm-ffi must be installed to build flashinfer_cy "
                           "(it is a build requirement in pyproject.toml)")
    for loc in spec.submodule_search_locations:
        inc = Path(loc) / "include"
        if (inc / "tvm" / "ffi" / "c_api.h").is_file() and (inc / "dlpack" / "dlpack.h").is_file():
            return str(inc)
    raise RuntimeError("apache-tvm-ffi is installed without include/tvm/ffi/c_api.h")


MODULES = [
    "flashinfer_cy._core.runtime",
    "flashinfer_cy._core.tensor",
    "flashinfer_cy._core.stream",
    "flashinfer_cy._core.binding",
    "flashinfer_cy._core.checked_frame",
    "flashinfer_cy._core.array",
    "flashinfer_cy._core.prepared",
    "flashinfer_cy._core.tensor_array",
    "flashinfer_cy.kernels.norm",
    "flashinfer_cy._core.pinned",
    "flashinfer_cy.kernels.attention",
    "flashinfer_cy.kernels.batch_plan",
    "flashinfer_cy.kernels.batch_run",
    "flashinfer_cy.kernels.mla_limits",
    "flashinfer_cy.kernels.batch_attention",
    "flashinfer_cy.kernels.batch_mla",
    "flashinfer_cy.kernels.page",
    "flashinfer_cy.kernels.gdn",
    "flashinfer_cy.kernels.rope",
    "flashinfer_cy.kernels.activation",
    "flashinfer_cy.kernels.cascade",
    "flashinfer_cy.kernels.topk",
    "flashinfer_cy.kernels.sampling",
    "flashinfer_cy.kernels.fused_moe_run",
]

debug = os.environ.get("FLASHINFER_CY_DEBUG_BUILD") == "1"
extensions = [
    Extension(
        name,
        [name.replace(".", "/") + ".pyx"],
        include_dirs=[tvm_ffi_include_dir(), str(ROOT / "include")],
        libraries=["dl"],  # dlopen lives in libdl before glibc 2.34 (manylinux_2_28)
        extra_compile_args=["-O0", "-g"] if debug else ["-O3"],
    )
    for name in MODULES
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={"language_level": 3, "embedsignature": True,
                             "freethreading_compatible": False},
        build_dir="build/cython",
        nthreads=int(os.environ.get("FLASHINFER_CY_CYTHON_JOBS", "0")),
    ),
)
