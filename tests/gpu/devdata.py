"""Host <-> device copies for the page and gdn tests, through DeviceArray only (no torch
needed): float64 values rounded to a storage dtype, or raw bit patterns, in and out."""

from __future__ import annotations

import numpy as np

import flashinfer_cy as fc
from refs import from_storage, to_storage

# numpy type holding the raw bits of each kernel dtype
BITS = {"float16": np.uint16, "bfloat16": np.uint16, "float8_e4m3fn": np.uint8,
        "float8_e5m2": np.uint8, "float32": np.uint32}
NUMPY = {"float32": np.float32, "int32": np.int32, "int64": np.int64, "uint8": np.uint8}


def upload(x, dtype: str, stream=None) -> fc.DeviceArray:
    """A DeviceArray holding ``x``: float values rounded to float16/bfloat16, converted for
    float32/int32/int64/uint8, or (unsigned-int input) raw bits of ``dtype``."""
    x = np.asarray(x)
    if x.dtype.kind == "u" and dtype in BITS and dtype != "uint8":
        return fc.DeviceArray.from_numpy(x.astype(BITS[dtype]), stream=stream, dtype=dtype)
    if dtype in ("float16", "bfloat16"):
        return fc.DeviceArray.from_numpy(to_storage(x, dtype), stream=stream, dtype=dtype)
    return fc.DeviceArray.from_numpy(x.astype(NUMPY[dtype]), stream=stream)


def download(a: fc.DeviceArray, dtype: str) -> np.ndarray:
    """float64 copy of a float16/bfloat16/float32 DeviceArray (synchronizes its stream)."""
    if dtype == "float32":
        return a.numpy().astype(np.float64)
    return from_storage(a.numpy(), dtype)


def download_bits(a: fc.DeviceArray, dtype: str) -> np.ndarray:
    """The raw bits of a DeviceArray (synchronizes)."""
    return a.numpy(dtype=BITS[dtype])


def poison(shape, dtype: str) -> fc.DeviceArray:
    """NaN everywhere, so an output the kernel does not write cannot pass."""
    return upload(np.full(shape, np.nan), dtype)


class OnlyDLPack:
    """A producer that speaks only __dlpack__ (as JAX arrays do), wrapping any array that
    has it: flashinfer_cy describes it through a DLPack capsule."""

    def __init__(self, array):
        self._array = array

    def __dlpack__(self, **kwargs):
        return self._array.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self._array.__dlpack_device__()
