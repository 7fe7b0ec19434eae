"""flashinfer-python (the peer) on the same kernel modules, for bit-identity tests.

Every binding is compared bit for bit with flashinfer-python calling the same ``.so``: a
differing bit means a wrong argument. ``tools/gpu_session.sh`` writes a
``flashinfer_jit_cache`` shim whose ``get_jit_cache_dir()`` is ``FLASHINFER_CY_KERNEL_DIR``
and names its folder in ``PEER_PYTHONPATH``, so the peer loads our modules and never
JIT-compiles. Without flashinfer-python (or the shim) a peer test skips with the reason."""

from __future__ import annotations

import functools
import os
import sys

import pytest


@functools.lru_cache(maxsize=None)
def _load():
    shim = os.environ.get("PEER_PYTHONPATH")
    if shim:
        # First on sys.path: a flashinfer-python of another release placed there (the 0.7.4
        # pass of tools/gpu_session.sh) must win over the installed one.
        sys.path[:0] = [p for p in shim.split(os.pathsep) if p and p not in sys.path]
    os.environ.setdefault("FLASHINFER_DISABLE_VERSION_CHECK", "1")
    try:
        import flashinfer  # noqa: F401
        import flashinfer_jit_cache  # noqa: F401  (the shim: without it the peer would JIT)
    except Exception as exc:  # noqa: BLE001 - any import failure is a reason to skip
        return None, f"flashinfer-python on our modules unavailable: {exc!r}"
    return flashinfer, None


def flashinfer_peer():
    """The ``flashinfer`` package, or skip the test saying why it is unavailable."""
    fi, why = _load()
    if fi is None:
        pytest.skip(why)
    return fi


def assert_bits_equal(ours, theirs, what: str) -> None:
    """Two torch tensors hold the same bytes (NaN payloads included)."""
    import torch

    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype, (what, ours.shape,
                                                                       theirs.shape)
    a = ours.contiguous().view(torch.uint8)
    b = theirs.contiguous().view(torch.uint8)
    if not torch.equal(a, b):
        diff = (a != b).nonzero()
        raise AssertionError(f"{what}: {int(diff.shape[0])} of {a.numel()} bytes differ from "
                             f"flashinfer-python (first at byte {diff[0].tolist()})")
