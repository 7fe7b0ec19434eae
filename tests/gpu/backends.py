"""The three ways a user hands tensors to flashinfer_cy, behind one small interface:
PyTorch tensors (DLPack C exchange API), CuPy arrays (``__dlpack__``), and raw device
pointers (``DeviceArray`` + ``TensorDesc``). Tests are written once and run on each."""

from __future__ import annotations

import numpy as np
import pytest

from refs import from_storage, to_storage


class Backend:
    name = "?"
    dtypes = ("float16", "bfloat16")

    def put(self, x64: np.ndarray, dtype: str):
        """Device tensor holding ``x64`` rounded to ``dtype``."""
        raise NotImplementedError

    def view(self, t, index):
        """A (possibly strided, offset) view ``t[index]`` sharing memory."""
        raise NotImplementedError

    def get(self, t, dtype: str) -> np.ndarray:
        """float64 host copy (synchronizes)."""
        raise NotImplementedError

    def poison(self, shape, dtype: str):
        """A device tensor full of NaN, so an unwritten output can never pass."""
        return self.put(np.full(shape, np.nan), dtype)


class TorchBackend(Backend):
    name = "torch"

    def __init__(self):
        import torch

        self.torch = torch

    def put(self, x64, dtype):
        t = self.torch.from_numpy(np.ascontiguousarray(x64, dtype=np.float32))
        return t.to(device="cuda", dtype=getattr(self.torch, dtype))

    def view(self, t, index):
        return t[index]

    def get(self, t, dtype):
        self.torch.cuda.synchronize()
        return t.float().cpu().numpy().astype(np.float64)


class CupyBackend(Backend):
    name = "cupy"
    dtypes = ("float16",)  # CuPy has no bfloat16

    def __init__(self):
        import cupy

        self.cupy = cupy

    def put(self, x64, dtype):
        return self.cupy.asarray(x64.astype(np.float16))

    def view(self, t, index):
        return t[index]

    def get(self, t, dtype):
        self.cupy.cuda.runtime.deviceSynchronize()
        return self.cupy.asnumpy(t).astype(np.float64)


class RawBackend(Backend):
    """DeviceArray for storage; strided views are TensorDesc over the parent's memory."""

    name = "raw"

    def __init__(self):
        import flashinfer_cy

        self.fc = flashinfer_cy

    def put(self, x64, dtype):
        return self.fc.DeviceArray.from_numpy(to_storage(x64, dtype), dtype=dtype)

    def view(self, t, index):
        host = np.empty(t.shape, dtype=np.uint16)  # 2-byte items: same byte strides
        sub = host[index]
        offset = sub.__array_interface__["data"][0] - host.__array_interface__["data"][0]
        desc = self.fc.TensorDesc(t.ptr + offset, sub.shape, t.dtype,
                                  strides=[s // 2 for s in sub.strides], owner=t)
        desc_index[id(desc)] = (t, index)
        return desc

    def get(self, t, dtype):
        if isinstance(t, self.fc.DeviceArray):
            return from_storage(t.numpy(), dtype)
        parent, index = desc_index[id(t)]
        return from_storage(parent.numpy(), dtype)[index]


desc_index: dict = {}


def available_backends():
    out = []
    for cls in (TorchBackend, CupyBackend, RawBackend):
        try:
            out.append(pytest.param(cls, id=cls.name))
        except Exception:  # noqa: BLE001
            pass
    return out


def make_backend(cls) -> Backend:
    try:
        return cls()
    except ImportError as exc:
        pytest.skip(f"{cls.name} backend unavailable: {exc}")
