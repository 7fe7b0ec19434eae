"""float64 numpy references and dtype helpers shared by the GPU tests."""

from __future__ import annotations

import numpy as np


def round_to(x: np.ndarray, dtype: str) -> np.ndarray:
    """Round float64/32 values to float16 or bfloat16 precision; returns float64."""
    if dtype == "float16":
        return x.astype(np.float16).astype(np.float64)
    if dtype == "bfloat16":
        return bf16_bits_to_f64(f64_to_bf16_bits(x))
    raise ValueError(dtype)


def f64_to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """Round-to-nearest-even float -> bfloat16, as uint16 bit patterns."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)


def bf16_bits_to_f64(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32).astype(np.float64)


def to_storage(x64: np.ndarray, dtype: str) -> np.ndarray:
    """The host array whose bytes are ``x64`` in ``dtype`` (uint16 bits for bfloat16)."""
    return x64.astype(np.float16) if dtype == "float16" else f64_to_bf16_bits(x64)


def from_storage(arr: np.ndarray, dtype: str) -> np.ndarray:
    return arr.astype(np.float64) if dtype == "float16" else bf16_bits_to_f64(arr)


def rmsnorm_ref(x: np.ndarray, w: np.ndarray, eps: float, gemma: bool = False) -> np.ndarray:
    rms = np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)
    return x / rms * ((1.0 + w) if gemma else w)


# Tolerances for a float64 reference vs a kernel that accumulates in float32 and rounds its
# output once: a few units in the last place of the output type.
TOL = {"float16": dict(rtol=4e-3, atol=4e-3), "bfloat16": dict(rtol=2.5e-2, atol=2.5e-2)}
