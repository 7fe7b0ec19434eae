"""Where kernel modules come from (pure Python; no CUDA, no torch).

Minimal bootstrap: only ``FLASHINFER_CY_KERNEL_DIR`` (a directory holding
``<uri>/<uri>.so``). The full resolution order (local wheel, installed
flashinfer_jit_cache, cache, pinned download) is being built behind the same
``locate_module`` entry point.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import KernelNotFoundError

KERNEL_DIR_ENV = "FLASHINFER_CY_KERNEL_DIR"


def locate_module(uri: str) -> Path:
    """Return the path of ``<uri>.so``, or raise :class:`KernelNotFoundError`."""
    root = os.environ.get(KERNEL_DIR_ENV)
    if root:
        for cand in (Path(root) / uri / f"{uri}.so", Path(root) / f"{uri}.so"):
            if cand.is_file():
                return cand
    raise KernelNotFoundError(
        f"kernel module {uri!r} not found; set {KERNEL_DIR_ENV} to a directory holding "
        f"{uri}/{uri}.so (build one with tools/build_kernels.py)"
    )
