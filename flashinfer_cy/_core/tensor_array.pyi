# Stub for the compiled module flashinfer_cy/_core/tensor_array.pyx.
"""``ffi::Array<ffi::Tensor>`` arguments made from tensors, without copying them."""

from collections.abc import Iterable

from flashinfer_cy._core.runtime import Array
from flashinfer_cy._typing import TensorLike

def tensor_array(tensors: Iterable[TensorLike]) -> Array:
    """An ``ffi::Array<ffi::Tensor>`` of ``tensors`` (at most 16), each memory referenced
    until the Array is gone: for ``A?`` arguments such as the fused MoE runner's
    ``quant_scales`` on the generic call path."""

def tensor_array_live() -> int:
    """Tensor objects made here that TVM-FFI has not released yet (leak tests)."""
