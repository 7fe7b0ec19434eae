"""Compiling the CPU test module (ffi_testmod.cc) against the installed tvm-ffi headers, with
the link rule FlashInfer's kernels use (no -ltvm_ffi), and the Cython test probes."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def child_pythonpath() -> str:
    """PYTHONPATH for a test's child interpreter: this folder (the tests' helper modules)
    before whatever this process was given. Never the checkout itself: in CI the tests run
    against the installed wheel, and the checkout's flashinfer_cy is the uncompiled tree."""
    inherited = os.environ.get("PYTHONPATH")
    return os.pathsep.join([str(HERE)] + ([inherited] if inherited else []))


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


# The stand-in modules declare flashinfer 0.6.3's signatures (the release the Binding tables
# are written for): they are loaded, or their kernel dirs marked, as that release, since a
# module of unknown version is refused by every Binding (flashinfer_cy.abi.match).
STAND_IN_VERSION = "0.6.3"


def mark_kernel_dir(root: Path, version: str = STAND_IN_VERSION) -> Path:
    """Write the flashinfer_version.txt marker tools/build_kernels.py writes (what
    FLASHINFER_CY_KERNEL_DIR's modules are taken to be)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "flashinfer_version.txt").write_text(version + "\n")
    return root


def compile_c_library(src: Path, out: Path) -> Path:
    """A plain C shared library (the stand-in libcudart.so.13)."""
    return _shared_library("C", ["-std=c11"], src, out)


def stand_in_kernels(root: Path, src: Path, uris, extra: list[str] | None = None,
                     version: str = STAND_IN_VERSION) -> tuple[Path, Path]:
    """(a kernel dir holding the stand-in module compiled from ``src`` (with compiler flags
    ``extra``) under every URI of ``uris``, marked as flashinfer ``version``'s, the folder
    of a stand-in libcudart.so.13 built from fake_cudart.c)."""
    lib = compile_c_library(HERE / "fake_cudart.c", root / "lib" / "libcudart.so.13").parent
    so = compile_module(src, root / (src.stem + ".so"), extra)
    kernels = mark_kernel_dir(root / "kernels", version)
    for uri in uris:
        (kernels / uri).mkdir(parents=True)
        os.symlink(so, kernels / uri / f"{uri}.so")
    return kernels, lib


def run_on_noop_exports(tmp_path: Path, child: str, timeout: int = 120) -> None:
    """Run the Python source ``child`` in its own interpreter, with the no-op exports of
    FlashInfer 0.6.3's signatures (tools/c_floor/noop_exports.cc) built and their path in
    ``sys.argv[1]``, on the stand-in libcudart (first on its LD_LIBRARY_PATH before anything
    loads the real one), and fail the test with its output unless it ends with "ok"."""
    lib = compile_c_library(HERE / "fake_cudart.c", tmp_path / "lib" / "libcudart.so.13").parent
    so = compile_module(HERE.parents[1] / "tools/c_floor/noop_exports.cc",
                        tmp_path / "noop_exports.so")
    env = dict(os.environ, LD_LIBRARY_PATH=os.pathsep.join(
        filter(None, [str(lib), os.environ.get("LD_LIBRARY_PATH")])))
    res = subprocess.run([sys.executable, "-c", child, str(so)], capture_output=True,
                         text=True, timeout=timeout, cwd=HERE, env=env)
    assert res.returncode == 0 and res.stdout.strip().endswith("ok"), \
        f"child failed:\n{res.stdout}\n{res.stderr}"


def run_driver_scenario(kernels: Path, lib: Path, scenario: str, timeout: int = 120,
                        **env_extra: str) -> None:
    """Run fake_kernel_driver.py's ``scenario`` in its own interpreter against the stand-ins
    (the stand-in libcudart must be first on its LD_LIBRARY_PATH before anything loads the
    real one) and fail the test with its output unless it ends with "ok"."""
    env = dict(os.environ, **env_extra, FLASHINFER_CY_KERNEL_DIR=str(kernels),
               FLASHINFER_CY_OFFLINE="1",
               LD_LIBRARY_PATH=os.pathsep.join(filter(None, [str(lib),
                                                             os.environ.get("LD_LIBRARY_PATH")])))
    res = subprocess.run([sys.executable, str(HERE / "fake_kernel_driver.py"), str(kernels),
                          scenario], capture_output=True, text=True, timeout=timeout, env=env)
    assert res.returncode == 0 and res.stdout.strip().endswith("ok"), \
        f"scenario {scenario} failed (rc {res.returncode}):\n{res.stdout}\n{res.stderr}"


def compile_cython(src: Path, out_dir: Path):
    """A Cython test module that cimports flashinfer_cy's .pxd files (compiled against this
    checkout's declarations), built in ``out_dir`` and imported."""
    repo = HERE.parents[1]
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, out_dir / src.name)
    script = ("from setuptools import setup, Extension; from Cython.Build import cythonize; "
              f"setup(ext_modules=cythonize([Extension({src.stem!r}, [{src.name!r}], "
              f"include_dirs=[{str(tvm_ffi_include())!r}, {str(repo / 'include')!r}])], "
              f"include_path=[{str(repo)!r}], quiet=True), "
              "script_args=['-q', 'build_ext', '--inplace'])")
    res = subprocess.run([sys.executable, "-c", script], cwd=out_dir, capture_output=True,
                         text=True)
    if res.returncode:
        pytest.fail(f"building {src.name} failed:\n{res.stdout[-2000:]}\n{res.stderr[-4000:]}")
    sys.path.insert(0, str(out_dir))
    try:
        return importlib.import_module(src.stem)
    finally:
        sys.path.remove(str(out_dir))


def run_driver(driver: str, stand_in, *args: str, timeout: float = 180) -> None:
    """Run ``driver`` (a script in this folder) on a stand-in module in a fresh interpreter:
    ``stand_in`` is (module path, environment), e.g. the ``fused_moe_stand_in`` fixture.
    The driver prints "ok" last when every check passed."""
    so, env = stand_in
    res = subprocess.run([sys.executable, str(HERE / driver), str(so), *args],
                         capture_output=True, text=True, timeout=timeout, env=env)
    assert res.returncode == 0 and res.stdout.strip().endswith("ok"), \
        f"{driver} {' '.join(args)} failed (rc {res.returncode}):\n{res.stdout}\n{res.stderr}"
