"""The array library under the step: everything that is not a FlashInfer kernel (buffers,
GEMMs, the embedding gather, argmax, copies, the stream, CUDA graphs).

Two back-ends with one interface, so the model code is the same for both:

* :class:`TorchBackend` -- bfloat16 (or float16), torch's current stream, ``torch.cuda.CUDAGraph``;
* :class:`CupyBackend` -- float16 (CuPy has no bfloat16), GEMMs through cuBLAS's C API, its own
  non-blocking stream (CUDA graphs cannot capture the legacy default stream), graphs via
  ``stream.begin_capture()`` / ``end_capture()``. Never imports torch.

Every method that writes takes ``out``/``dst``: the step's buffers are allocated once, which
is what a CUDA graph needs, and nothing inside a captured step allocates.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import numpy.typing as npt


class TorchBackend:
    name = "torch"

    def __init__(self, dtype: str = "bfloat16", device: int = 0) -> None:
        import torch

        self.torch = torch
        self.dtype = dtype
        self.device = torch.device("cuda", device)
        self._dtypes = {"bfloat16": torch.bfloat16, "float16": torch.float16,
                        "float32": torch.float32, "int32": torch.int32, "int64": torch.int64}
        torch.cuda.set_device(self.device)

    def stream(self) -> Any:
        """The stream work goes to now (torch's current stream: the capture stream while a
        graph is being captured)."""
        return self.torch.cuda.current_stream()

    def empty(self, shape: tuple[int, ...], dtype: str | None = None) -> Any:
        return self.torch.empty(shape, dtype=self._dtypes[dtype or self.dtype], device=self.device)

    def kernel_view(self, x: Any) -> Any:
        """What the kernels are given for ``x``: the tensor itself (torch's DLPack exchange
        API, no allocation, and it announces torch's current stream)."""
        return x

    def upload(self, host: npt.NDArray[Any], dtype: str | None = None) -> Any:
        t = self.torch.from_numpy(np.ascontiguousarray(host))
        return t.to(device=self.device, dtype=self._dtypes[dtype or self.dtype])

    def copy_from_host(self, dst: Any, host: npt.NDArray[Any]) -> None:
        # Not copy_ from the NumPy array itself: from pageable memory torch synchronizes the
        # stream, so the GPU would idle while the host prepares every step. Staged in pinned
        # memory (torch's caching host allocator keeps the block until the copy has run),
        # the copy is queued like the step's kernels.
        src = self.torch.from_numpy(np.ascontiguousarray(host)).pin_memory()
        dst[:host.shape[0]].copy_(src, non_blocking=True)

    def matmul(self, a: Any, w: Any, out: Any) -> None:
        """``out = a @ w.T`` (``w`` in HF's [out_features, in_features] layout)."""
        self.torch.matmul(a, w.t(), out=out)

    def gather_rows(self, table: Any, ids: Any, out: Any) -> None:
        self.torch.index_select(table, 0, ids, out=out)

    def copy(self, dst: Any, src: Any) -> None:
        """``dst[...] = src``, converting the dtype (e.g. logits to float32)."""
        dst.copy_(src)

    def argmax(self, x: Any, out: Any) -> None:
        self.torch.argmax(x, dim=-1, out=out)

    def to_host(self, x: Any) -> npt.NDArray[Any]:
        host: npt.NDArray[Any] = (x.float() if x.is_floating_point() else x).cpu().numpy()
        return host

    def synchronize(self) -> None:
        self.torch.cuda.synchronize(self.device)

    def capture(self, step: Callable[[], None]) -> Callable[[], None]:
        """Capture ``step`` (already run eagerly once: a warm-up) into a graph; returns the
        replay, which runs on the current stream."""
        graph = self.torch.cuda.CUDAGraph()
        with self.torch.cuda.graph(graph):
            step()
        return graph.replay  # type: ignore[no-any-return]

    def timer(self) -> Callable[[], float]:
        """Start a GPU timer on the current stream; calling the result stops it and returns
        the milliseconds between (synchronizing)."""
        start = self.torch.cuda.Event(enable_timing=True)
        end = self.torch.cuda.Event(enable_timing=True)
        start.record()

        def stop() -> float:
            end.record()
            end.synchronize()
            return float(start.elapsed_time(end))
        return stop


class CupyBackend:
    name = "cupy"

    def __init__(self, dtype: str = "float16", device: int = 0) -> None:
        import cupy

        if dtype != "float16":
            raise ValueError(f"dtype: CuPy has no bfloat16; only float16 here, got {dtype!r}")
        self.cp = cupy
        self.dtype = dtype
        cupy.cuda.Device(device).use()
        self._stream = cupy.cuda.Stream(non_blocking=True)
        self._stream.use()  # every CuPy call of this thread goes to it from now on
        from cublas_gemm import CublasGemm  # CuPy's matmul cannot be graph-captured

        self._gemm = CublasGemm(cupy, self._stream.ptr)

    def stream(self) -> Any:
        return self._stream

    def empty(self, shape: tuple[int, ...], dtype: str | None = None) -> Any:
        return self.cp.empty(shape, dtype=dtype or self.dtype)

    def kernel_view(self, x: Any) -> Any:
        """A ``fc.TensorDesc`` of ``x``'s pointer: CuPy's ``__dlpack__`` would make the
        legacy default stream wait on the current one at every call, which a CUDA graph
        capture cannot record (and which costs host time)."""
        import flashinfer_cy as fc

        return fc.TensorDesc(int(x.data.ptr), x.shape, str(x.dtype),
                             strides=tuple(s // x.itemsize for s in x.strides),
                             device=x.device.id, owner=x)

    def upload(self, host: npt.NDArray[Any], dtype: str | None = None) -> Any:
        return self.cp.asarray(np.ascontiguousarray(host, dtype=dtype or self.dtype))

    def copy_from_host(self, dst: Any, host: npt.NDArray[Any]) -> None:
        dst[:host.shape[0]].set(np.ascontiguousarray(host), stream=self._stream)

    def matmul(self, a: Any, w: Any, out: Any) -> None:
        """``out = a @ w.T`` by cuBLAS on this back-end's stream (cublas_gemm.py: CuPy's
        own matmul refuses to run while the stream is being captured)."""
        self._gemm.matmul_t(a, w, out)

    def gather_rows(self, table: Any, ids: Any, out: Any) -> None:
        self.cp.take(table, ids, axis=0, out=out)

    def copy(self, dst: Any, src: Any) -> None:
        self.cp.copyto(dst, src, casting="unsafe")

    def argmax(self, x: Any, out: Any) -> None:
        self.cp.argmax(x, axis=-1, out=out)

    def to_host(self, x: Any) -> npt.NDArray[Any]:
        return x.get(stream=self._stream)  # type: ignore[no-any-return]

    def synchronize(self) -> None:
        self._stream.synchronize()

    def capture(self, step: Callable[[], None]) -> Callable[[], None]:
        stream = self._stream
        stream.begin_capture()
        try:
            step()
        finally:
            graph = stream.end_capture()
        return lambda: graph.launch(stream=stream)

    def timer(self) -> Callable[[], float]:
        start, end = self.cp.cuda.Event(), self.cp.cuda.Event()
        start.record(self._stream)

        def stop() -> float:
            end.record(self._stream)
            end.synchronize()
            return float(self.cp.cuda.get_elapsed_time(start, end))
        return stop


def make_backend(name: str, dtype: str | None = None) -> TorchBackend | CupyBackend:
    if name == "torch":
        return TorchBackend(dtype or "bfloat16")
    if name == "cupy":
        return CupyBackend(dtype or "float16")
    raise ValueError(f"backend: 'torch' or 'cupy', got {name!r}")
