"""For validation tests on machines without a GPU: make reaching a kernel module or the CUDA
runtime a test failure (``TouchedCuda``), so "raises before any kernel/CUDA is touched" is
checked, not assumed. Use ``no_cuda(monkeypatch)`` from an autouse fixture."""

from __future__ import annotations

import sys
import types

import pytest

from flashinfer_cy._core import runtime


class TouchedCuda(AssertionError):
    """Validation let the call through to the module loader or the CUDA runtime."""


def no_cuda(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise TouchedCuda("reached the kernel module / CUDA runtime")

    monkeypatch.setattr(runtime, "load_module", refuse)
    monkeypatch.setattr(runtime, "_load_cudart", refuse)


def reaches_cuda(call) -> None:
    """``call`` passes validation: it gets as far as loading a module or asking CUDA."""
    with pytest.raises(TouchedCuda):
        call()


def raises(call, exc, words) -> None:
    """``call`` raises ``exc`` matching ``words`` before touching a module or CUDA."""
    with pytest.raises(exc, match=words):
        call()


def fake_cai_driver(monkeypatch) -> None:
    """cuda.bindings.driver answering that every pointer is on CUDA device 0, so CUDA Array
    Interface producers (whose device only the driver knows) can be described."""
    attr = types.SimpleNamespace(CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL=8)
    driver = types.SimpleNamespace(CUpointer_attribute=attr,
                                   cuPointerGetAttribute=lambda what, ptr: (0, 0))
    monkeypatch.setitem(sys.modules, "cuda", types.ModuleType("cuda"))
    monkeypatch.setitem(sys.modules, "cuda.bindings", types.SimpleNamespace(driver=driver))


def written_read_only(call, name: str, written: bool) -> None:
    """``call`` passes a read-only export (a JAX array, a numpy array with writeable=False)
    as ``name``: refused, naming it, where the kernel writes; fine as an input."""
    if written:
        raises(call, ValueError, f"{name}: the kernel writes this tensor, but its producer "
                                 f"exported it read-only")
    else:
        reaches_cuda(call)
