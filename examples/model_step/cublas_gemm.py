"""``out = a @ w.T`` in float16 through cuBLAS's C API, for the CuPy back-end.

Why not ``cupy.matmul``: CuPy refuses every cuBLAS call while its stream is being captured
into a CUDA graph (``cublas.setStream`` raises NotImplementedError), so a decode step
with GEMMs could not be captured. cuBLAS itself supports capture when the handle's stream
and workspace are fixed beforehand, which is what this does: one handle of our own, bound
once to the back-end's stream with a workspace we own, so nothing inside a captured step
sets a stream or allocates. It is used in every mode (prefill, eager, prepared, graph), so
the modes compute bit-identical logits.

The library is the libcublas CuPy itself loaded (found in /proc/self/maps), so the two
never differ in version.
"""

from __future__ import annotations

import ctypes
import weakref
from typing import Any

CUBLAS_OP_N, CUBLAS_OP_T = 0, 1
CUDA_R_16F = 2
CUBLAS_COMPUTE_32F = 68
CUBLAS_GEMM_DEFAULT = -1
WORKSPACE_BYTES = 32 << 20  # cuBLAS asks for at most 32 MiB on Hopper (its docs)


def _libcublas(cupy: Any) -> ctypes.CDLL:
    cupy.cuda.device.get_cublas_handle()  # makes CuPy load libcublas
    with open("/proc/self/maps") as maps:
        paths = {line.split()[-1] for line in maps if "/libcublas.so" in line}
    for path in sorted(paths):
        return ctypes.CDLL(path)
    for name in ("libcublas.so.13", "libcublas.so.12"):
        try:
            return ctypes.CDLL(name)
        except OSError:
            pass
    raise OSError("libcublas is not loaded in this process and was not found by name")


class CublasGemm:
    """float16 GEMMs on one stream, with float32 accumulation (CUBLAS_COMPUTE_32F)."""

    def __init__(self, cupy: Any, stream_ptr: int) -> None:
        lib = _libcublas(cupy)
        self._gemm = lib.cublasGemmEx
        self._gemm.argtypes = [
            ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int,
            ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
            ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
            ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int]
        handle = ctypes.c_void_p()
        self._check(lib.cublasCreate_v2(ctypes.byref(handle)), "cublasCreate")
        self._handle = handle
        weakref.finalize(self, lib.cublasDestroy_v2, handle)
        self._workspace = cupy.empty(WORKSPACE_BYTES, dtype=cupy.uint8)
        self._check(lib.cublasSetStream_v2(handle, ctypes.c_void_p(stream_ptr)),
                    "cublasSetStream")
        # after the stream: cublasSetStream resets the workspace to cuBLAS's own
        self._check(lib.cublasSetWorkspace_v2(handle, ctypes.c_void_p(self._workspace.data.ptr),
                                              ctypes.c_size_t(WORKSPACE_BYTES)),
                    "cublasSetWorkspace")
        self._one, self._zero = ctypes.c_float(1.0), ctypes.c_float(0.0)

    @staticmethod
    def _check(status: int, what: str) -> None:
        if status != 0:
            raise RuntimeError(f"{what} failed: cublasStatus_t {status}")

    def matmul_t(self, a: Any, w: Any, out: Any) -> None:
        """``out[m, n] = a[m, k] @ w[n, k].T``; all float16, C-contiguous. In cuBLAS's
        column-major terms: out^T (n x m) = w (k x n)^T @ a^T (k x m)."""
        m, k = a.shape
        n = w.shape[0]
        if w.shape[1] != k or out.shape != (m, n):
            raise ValueError(f"matmul_t: a {a.shape}, w {w.shape}, out {out.shape}")
        for name, x in (("a", a), ("w", w), ("out", out)):
            if x.dtype.name != "float16" or not x.flags.c_contiguous:
                raise ValueError(f"matmul_t: {name} must be C-contiguous float16")
        if m == 0:
            return
        self._check(self._gemm(
            self._handle, CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, ctypes.byref(self._one),
            w.data.ptr, CUDA_R_16F, k, a.data.ptr, CUDA_R_16F, k, ctypes.byref(self._zero),
            out.data.ptr, CUDA_R_16F, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT), "cublasGemmEx")
