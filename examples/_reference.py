"""Shared by the examples: the float64 NumPy reference of RMSNorm and the comparison."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]


def rmsnorm_ref(x: npt.ArrayLike, w: npt.ArrayLike, eps: float = 1e-6,
                gemma: bool = False) -> F64:
    """``x / sqrt(mean(x**2, last axis) + eps) * w`` (``* (1 + w)`` for Gemma), in float64."""
    x64 = np.asarray(x, dtype=np.float64)
    w64 = np.asarray(w, dtype=np.float64)
    rms: F64 = np.sqrt(np.mean(x64 * x64, axis=-1, keepdims=True) + eps)
    scale = 1.0 + w64 if gemma else w64
    out: F64 = x64 / rms * scale
    return out


def check(name: str, got: npt.ArrayLike, want: npt.ArrayLike, tol: float = 2e-2) -> None:
    """Print the max abs error and fail loudly past ``tol`` (a 16-bit result)."""
    got64: F64 = np.asarray(got, dtype=np.float64)
    want64: F64 = np.asarray(want, dtype=np.float64)
    err = float(np.max(np.abs(got64 - want64))) if got64.size else 0.0
    print(f"{name:<40} max |err| = {err:.2e}")
    if not err <= tol:
        raise SystemExit(f"{name}: error {err} above tolerance {tol}")


def bf16_bits_to_f32(bits: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    """bfloat16 as stored (uint16 bit patterns, what ``DeviceArray.numpy()`` returns for
    bfloat16) to float32: the high half of a float32."""
    u16 = np.asarray(bits, dtype=np.uint16)
    out: npt.NDArray[np.float32] = (u16.astype(np.uint32) << 16).view(np.float32)
    return out


def decode_attention_ref(q: npt.ArrayLike, k_cache: npt.ArrayLike, v_cache: npt.ArrayLike,
                         pages: list[npt.NDArray[np.int32]], lens: list[int]) -> F64:
    """Decode attention in float64: ``q [batch, Hq, D]`` against each request's pages of
    NHD caches ``[num_pages, page_size, Hkv, D]`` (first ``lens[b]`` slots), GQA by
    ``Hq // Hkv``, scale ``1/sqrt(D)``. Returns ``[batch, Hq, D]``."""
    q64 = np.asarray(q, dtype=np.float64)
    k64 = np.asarray(k_cache, dtype=np.float64)
    v64 = np.asarray(v_cache, dtype=np.float64)
    batch, hq, d = q64.shape
    group = hq // k64.shape[2]
    out: F64 = np.zeros_like(q64)
    for b in range(batch):
        ks = k64[pages[b]].reshape(-1, k64.shape[2], d)[:lens[b]]  # [len, Hkv, D]
        vs = v64[pages[b]].reshape(-1, v64.shape[2], d)[:lens[b]]
        for h in range(hq):
            s = ks[:, h // group] @ q64[b, h] / np.sqrt(d)
            p = np.exp(s - s.max())
            out[b, h] = (p / p.sum()) @ vs[:, h // group]
    return out
