"""For validation tests on machines without a GPU: make reaching a kernel module or the CUDA
runtime a test failure (``TouchedCuda``), so "raises before any kernel/CUDA is touched" is
checked, not assumed. Use ``no_cuda(monkeypatch)`` from an autouse fixture."""

from __future__ import annotations

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
