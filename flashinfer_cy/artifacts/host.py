"""What this machine is: CUDA major.minor and CPU architecture, for picking the pinned wheel.

Detection must never fail just because there is no GPU or driver: every probe swallows its
own errors and returns None, and the caller decides what "unknown" means.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import re
import shutil
import subprocess
from pathlib import Path

from ..errors import UnsupportedPlatformError
from . import settings

_ARCH_ALIASES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}


def machine_arch() -> str:
    machine = platform.machine()
    return _ARCH_ALIASES.get(machine.lower(), machine)


def _from_driver_version(version: int) -> str:
    # cuDriverGetVersion encodes 13.0 as 13000
    return f"{version // 1000}.{(version % 1000) // 10}"


def _driver_via_cuda_python() -> str | None:
    """driver (cuda-python)"""
    try:
        from cuda.bindings import driver  # lazy: heavy, and optional
    except Exception:
        return None
    try:
        err, version = driver.cuDriverGetVersion()  # needs no cuInit, no GPU context
        if int(err) != 0 or not version:
            return None
        return _from_driver_version(int(version))
    except Exception:
        return None


def _driver_via_libcuda() -> str | None:
    """driver (libcuda.so.1)"""
    try:
        import ctypes

        lib = ctypes.CDLL("libcuda.so.1")
        version = ctypes.c_int(0)
        if lib.cuDriverGetVersion(ctypes.byref(version)) != 0 or not version.value:
            return None
        return _from_driver_version(version.value)
    except Exception:
        return None


def _toolkit_roots() -> list[Path]:
    roots = [os.environ.get(v) for v in ("CUDA_HOME", "CUDA_PATH", "CUDA_ROOT")]
    return [Path(r) for r in roots if r] + [Path("/usr/local/cuda")]


def _toolkit_version_json() -> str | None:
    """toolkit (version.json)"""
    for root in _toolkit_roots():
        try:
            data = json.loads((root / "version.json").read_text())
            version = data["cuda"]["version"]  # e.g. "13.0.1"
        except Exception:
            continue
        match = re.match(r"(\d+)\.(\d+)", str(version))
        if match:
            return f"{match[1]}.{match[2]}"
    return None


def _toolkit_nvcc() -> str | None:
    """toolkit (nvcc --version)"""
    candidates = [str(r / "bin" / "nvcc") for r in _toolkit_roots()] + [shutil.which("nvcc") or ""]
    for nvcc in candidates:
        if not nvcc or not os.access(nvcc, os.X_OK):
            continue
        try:
            out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=10).stdout
        except Exception:
            continue
        match = re.search(r"release (\d+)\.(\d+)", out)
        if match:
            return f"{match[1]}.{match[2]}"
    return None


# Driver first (what the kernels will actually run against), toolkit as the fallback.
PROBES = (_driver_via_cuda_python, _driver_via_libcuda, _toolkit_version_json, _toolkit_nvcc)


@functools.lru_cache(maxsize=None)
def _probe() -> tuple[str, str] | None:
    for probe in PROBES:
        version = probe()
        if version:
            return version, probe.__doc__
    return None


def detect_cuda_version() -> tuple[str, str]:
    """``(major.minor, how it was found)``; ``$FLASHINFER_CY_CUDA_VERSION`` wins over detection."""
    override = settings.env(settings.CUDA_VERSION_ENV)
    if override:
        match = re.fullmatch(r"(\d+)\.(\d+)(\.\d+)?", override)
        if not match:
            raise UnsupportedPlatformError(
                f"{settings.CUDA_VERSION_ENV}={override!r} is not a CUDA version like '13.0'"
            )
        return f"{match[1]}.{match[2]}", settings.CUDA_VERSION_ENV
    found = _probe()
    if found is None:
        raise UnsupportedPlatformError(
            "cannot detect the CUDA version: no CUDA driver (cuda-python or libcuda.so.1) and no toolkit "
            f"(version.json under CUDA_HOME/CUDA_PATH/CUDA_ROOT or /usr/local/cuda, or nvcc); set "
            f"{settings.CUDA_VERSION_ENV}=13.0 to choose the wheel by hand"
        )
    return found
