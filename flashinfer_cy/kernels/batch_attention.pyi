# Stub for the compiled module flashinfer_cy/kernels/batch_attention.pyx.
"""Batched attention with a plan/run split: batch decode and batch prefill (ragged and paged,
FA2 and FA3), prepared launches, CUDA-graph-safe plans."""

from typing import Any, Final, Literal, TypeVar, overload

from flashinfer_cy._core.array import DeviceArray
from flashinfer_cy._core.runtime import Array
from flashinfer_cy._typing import (Backend, DTypeLike, HostIndices, KVLayout, PagedKVCache,
                                   StreamLike, TensorLike)

_Out = TypeVar("_Out", bound=TensorLike)
_Lse = TypeVar("_Lse", bound=TensorLike)

DEFAULT_FLOAT_WORKSPACE_BYTES: Final[int]
DEFAULT_INT_WORKSPACE_BYTES: Final[int]
MIN_WORKSPACE_BYTES: Final[int]

class Plan:
    """What plan() planned; owns the kernel's plan-info Array (released with the Plan).
    Immutable; valid for run() until its wrapper plans again (``generation``)."""

    @property
    def kind(self) -> Literal["decode", "paged_prefill", "ragged_prefill"]: ...
    @property
    def backend(self) -> Literal["fa2", "fa3"]: ...
    @property
    def uri(self) -> str: ...
    @property
    def dtype(self) -> str: ...
    @property
    def kv_dtype(self) -> str: ...
    @property
    def kv_layout(self) -> str: ...
    @property
    def device(self) -> int: ...
    @property
    def batch_size(self) -> int: ...
    @property
    def num_qo_heads(self) -> int: ...
    @property
    def num_kv_heads(self) -> int: ...
    @property
    def head_dim(self) -> int: ...
    @property
    def page_size(self) -> int: ...
    @property
    def window_left(self) -> int: ...
    @property
    def causal(self) -> bool: ...
    @property
    def use_cuda_graph(self) -> bool: ...
    @property
    def logits_soft_cap(self) -> float: ...
    @property
    def sm_scale(self) -> float: ...
    @property
    def rope_scale(self) -> float: ...
    @property
    def rope_theta(self) -> float: ...
    @property
    def total_num_rows(self) -> int: ...
    @property
    def planned_num_rows(self) -> int: ...
    @property
    def total_kv_rows(self) -> int: ...
    @property
    def min_num_pages(self) -> int: ...
    @property
    def generation(self) -> int: ...
    @property
    def plan_info(self) -> Array: ...
    @property
    def stream_handle(self) -> int: ...
    def frozen_key(self) -> tuple[Any, ...]:
        """What a CUDA graph bakes in: replans in graph mode must keep it."""

class PreparedRun:
    """A run with every argument packed once: launch() is one GIL-free kernel call. After
    the wrapper plans again, the next launch() rebinds (PlanMismatchError if the tensors no
    longer fit)."""

    # Made by ``wrapper.prepare(...)`` only: calling the class raises TypeError (a cdef
    # class __init__ reports (*args, **kwargs) at run time).
    def __init__(self, *args: object, **kwargs: object) -> None: ...
    @property
    def out(self) -> TensorLike | None: ...  # prepare()'s out (or a DeviceArray); None after repoint(out=)
    @property
    def lse(self) -> TensorLike | None: ...
    @property
    def stream_handle(self) -> int: ...
    def launch(self) -> TensorLike | None:
        """Run the prepared call; returns ``out`` (None once ``repoint(out=...)`` moved it
        to memory the caller owns). Asynchronous."""
    def repoint(self, q: int | None = None, out: int | None = None, lse: int | None = None) -> None:
        """Point q / out / lse at other memory of the same shape (integer addresses)."""

class _BatchAttention:
    def __init__(
        self,
        kv_layout: KVLayout = "NHD",
        *,
        use_cuda_graph: bool = False,
        backend: Backend = "auto",
        device: int = 0,
        float_workspace_buffer: TensorLike | None = None,
        int_workspace_buffer: TensorLike | None = None,
        float_workspace_bytes: int = ...,
        int_workspace_bytes: int = ...,
        max_num_pages: int | None = None,
        max_total_num_rows: int | None = None,
        pinned_slots: int = 4,
    ) -> None: ...
    @property
    def kv_layout(self) -> str: ...
    @property
    def use_cuda_graph(self) -> bool: ...
    @property
    def backend(self) -> str: ...
    @property
    def device(self) -> int: ...
    @property
    def current_plan(self) -> Plan | None: ...
    @property
    def generation(self) -> int: ...
    @property
    def pinned_ring_size(self) -> int: ...
    @property
    def pinned_ring_waits(self) -> int: ...
    def workspace_buffers(self) -> tuple[Any, Any]:
        """(float workspace, int workspace) once allocated (after the first plan)."""

# run() overloads: ``out`` (given or a new DeviceArray), or ``(out, lse)`` with
# return_lse=True (lse float32 [rows, num_qo_heads], base 2).
class BatchDecodeWithPagedKVCache(_BatchAttention):
    """Batched decode (one query token per request) over a paged KV cache."""

    def __init__(self, kv_layout: KVLayout = "NHD", **kwargs: Any) -> None: ...
    def plan(
        self,
        indptr: HostIndices,
        indices: HostIndices | TensorLike,
        last_page_len: HostIndices,
        num_qo_heads: int,
        num_kv_heads: int,
        head_dim: int,
        page_size: int,
        *,
        window_left: int = -1,
        logits_soft_cap: float = 0.0,
        sm_scale: float | None = None,
        rope_scale: float = 1.0,
        rope_theta: float = 1e4,
        q_data_type: DTypeLike = "float16",
        kv_data_type: DTypeLike | None = None,
        stream: StreamLike | None = None,
    ) -> Plan: ...
    @overload
    def run(
        self,
        q: TensorLike,
        paged_kv_cache: PagedKVCache,
        *,
        out: None = None,
        lse: TensorLike | None = None,
        return_lse: Literal[False] = False,
        enable_pdl: bool | None = None,
        plan: Plan | None = None,
        stream: StreamLike | None = None,
    ) -> DeviceArray: ...
    @overload
    def run(
        self,
        q: TensorLike,
        paged_kv_cache: PagedKVCache,
        *,
        out: _Out,
        lse: TensorLike | None = None,
        return_lse: Literal[False] = False,
        enable_pdl: bool | None = None,
        plan: Plan | None = None,
        stream: StreamLike | None = None,
    ) -> _Out: ...
    @overload
    def run(
        self,
        q: TensorLike,
        paged_kv_cache: PagedKVCache,
        *,
        out: None = None,
        lse: None = None,
        return_lse: Literal[True],
        enable_pdl: bool | None = None,
        plan: Plan | None = None,
        stream: StreamLike | None = None,
    ) -> tuple[DeviceArray, DeviceArray]: ...
    @overload
    def run(
        self,
        q: TensorLike,
        paged_kv_cache: PagedKVCache,
        *,
        out: _Out,
        lse: None = None,
        return_lse: Literal[True],
        enable_pdl: bool | None = None,
        plan: Plan | None = None,
        stream: StreamLike | None = None,
    ) -> tuple[_Out, DeviceArray]: ...
    @overload
    def run(
        self,
        q: TensorLike,
        paged_kv_cache: PagedKVCache,
        *,
        out: None = None,
        lse: _Lse,
        return_lse: Literal[True],
        enable_pdl: bool | None = None,
        plan: Plan | None = None,
        stream: StreamLike | None = None,
    ) -> tuple[DeviceArray, _Lse]: ...
    @overload
    def run(
        self,
        q: TensorLike,
        paged_kv_cache: PagedKVCache,
        *,
        out: _Out,
        lse: _Lse,
        return_lse: Literal[True],
        enable_pdl: bool | None = None,
        plan: Plan | None = None,
        stream: StreamLike | None = None,
    ) -> tuple[_Out, _Lse]: ...
    @overload
    def run(
        self,
        q: TensorLike,
        paged_kv_cache: PagedKVCache,
        *,
        out: TensorLike | None = None,
        lse: TensorLike | None = None,
        return_lse: bool = False,
        enable_pdl: bool | None = None,
        plan: Plan | None = None,
        stream: StreamLike | None = None,
    ) -> DeviceArray | TensorLike | tuple[TensorLike, TensorLike]: ...
    def prepare(
        self,
        q: TensorLike,
        paged_kv_cache: PagedKVCache,
        out: TensorLike | None = None,
        *,
        lse: TensorLike | None = None,
        enable_pdl: bool | None = None,
        stream: StreamLike | None = None,
    ) -> PreparedRun: ...

class BatchPrefillWithPagedKVCache(_BatchAttention):
    """Batched prefill / append (``qo_indptr`` rows per request) over a paged KV cache."""

    def __init__(self, kv_layout: KVLayout = "NHD", **kwargs: Any) -> None: ...
    def plan(
        self,
        qo_indptr: HostIndices,
        paged_kv_indptr: HostIndices,
        paged_kv_indices: HostIndices | TensorLike,
        paged_kv_last_page_len: HostIndices,
        num_qo_heads: int,
        num_kv_heads: int,
        head_dim: int,
        page_size: int,
        *,
        causal: bool = False,
        window_left: int = -1,
        logits_soft_cap: float = 0.0,
        sm_scale: float | None = None,
        rope_scale: float = 1.0,
        rope_theta: float = 1e4,
        q_data_type: DTypeLike = "float16",
        kv_data_type: DTypeLike | None = None,
        stream: StreamLike | None = None,
    ) -> Plan: ...
    @overload
    def run(
        self,
        q: TensorLike,
        paged_kv_cache: PagedKVCache,
        *,
        out: None = None,
        lse: TensorLike | None = None,
        return_lse: Literal[False] = False,
        enable_pdl: bool | None = None,
        plan: Plan | None = None,
        stream: StreamLike | None = None,
    ) -> DeviceArray: ...
    @overload
    def run(
        self,
        q: TensorLike,
        paged_kv_cache: PagedKVCache,
        *,
        out: _Out,
        lse: TensorLike | None = None,
        return_lse: Literal[False] = False,
        enable_pdl: bool | None = None,
        plan: Plan | None = None,
        stream: StreamLike | None = None,
    ) -> _Out: ...
    @overload
    def run(
        self,
        q: TensorLike,
        paged_kv_cache: PagedKVCache,
        *,
        out: None = None,
        lse: None = None,
        return_lse: Literal[True],
        enable_pdl: bool | None = None,
        plan: Plan | None = None,
        stream: StreamLike | None = None,
    ) -> tuple[DeviceArray, DeviceArray]: ...
    @overload
    def run(
        self,
        q: TensorLike,
        paged_kv_cache: PagedKVCache,
        *,
        out: _Out,
        lse: None = None,
        return_lse: Literal[True],
        enable_pdl: bool | None = None,
        plan: Plan | None = None,
        stream: StreamLike | None = None,
    ) -> tuple[_Out, DeviceArray]: ...
    @overload
    def run(
        self,
        q: TensorLike,
        paged_kv_cache: PagedKVCache,
        *,
        out: None = None,
        lse: _Lse,
        return_lse: Literal[True],
        enable_pdl: bool | None = None,
        plan: Plan | None = None,
        stream: StreamLike | None = None,
    ) -> tuple[DeviceArray, _Lse]: ...
    @overload
    def run(
        self,
        q: TensorLike,
        paged_kv_cache: PagedKVCache,
        *,
        out: _Out,
        lse: _Lse,
        return_lse: Literal[True],
        enable_pdl: bool | None = None,
        plan: Plan | None = None,
        stream: StreamLike | None = None,
    ) -> tuple[_Out, _Lse]: ...
    @overload
    def run(
        self,
        q: TensorLike,
        paged_kv_cache: PagedKVCache,
        *,
        out: TensorLike | None = None,
        lse: TensorLike | None = None,
        return_lse: bool = False,
        enable_pdl: bool | None = None,
        plan: Plan | None = None,
        stream: StreamLike | None = None,
    ) -> DeviceArray | TensorLike | tuple[TensorLike, TensorLike]: ...
    def prepare(
        self,
        q: TensorLike,
        paged_kv_cache: PagedKVCache,
        out: TensorLike | None = None,
        *,
        lse: TensorLike | None = None,
        enable_pdl: bool | None = None,
        stream: StreamLike | None = None,
    ) -> PreparedRun: ...

class BatchPrefillWithRaggedKVCache(_BatchAttention):
    """Batched prefill over packed (ragged) K/V."""

    def __init__(self, kv_layout: KVLayout = "NHD", **kwargs: Any) -> None: ...
    def plan(
        self,
        qo_indptr: HostIndices,
        kv_indptr: HostIndices,
        num_qo_heads: int,
        num_kv_heads: int,
        head_dim: int,
        *,
        causal: bool = False,
        window_left: int = -1,
        logits_soft_cap: float = 0.0,
        sm_scale: float | None = None,
        rope_scale: float = 1.0,
        rope_theta: float = 1e4,
        q_data_type: DTypeLike = "float16",
        kv_data_type: DTypeLike | None = None,
        stream: StreamLike | None = None,
    ) -> Plan: ...
    @overload
    def run(
        self,
        q: TensorLike,
        k: TensorLike,
        v: TensorLike,
        *,
        out: None = None,
        lse: TensorLike | None = None,
        return_lse: Literal[False] = False,
        enable_pdl: bool | None = None,
        plan: Plan | None = None,
        stream: StreamLike | None = None,
    ) -> DeviceArray: ...
    @overload
    def run(
        self,
        q: TensorLike,
        k: TensorLike,
        v: TensorLike,
        *,
        out: _Out,
        lse: TensorLike | None = None,
        return_lse: Literal[False] = False,
        enable_pdl: bool | None = None,
        plan: Plan | None = None,
        stream: StreamLike | None = None,
    ) -> _Out: ...
    @overload
    def run(
        self,
        q: TensorLike,
        k: TensorLike,
        v: TensorLike,
        *,
        out: None = None,
        lse: None = None,
        return_lse: Literal[True],
        enable_pdl: bool | None = None,
        plan: Plan | None = None,
        stream: StreamLike | None = None,
    ) -> tuple[DeviceArray, DeviceArray]: ...
    @overload
    def run(
        self,
        q: TensorLike,
        k: TensorLike,
        v: TensorLike,
        *,
        out: _Out,
        lse: None = None,
        return_lse: Literal[True],
        enable_pdl: bool | None = None,
        plan: Plan | None = None,
        stream: StreamLike | None = None,
    ) -> tuple[_Out, DeviceArray]: ...
    @overload
    def run(
        self,
        q: TensorLike,
        k: TensorLike,
        v: TensorLike,
        *,
        out: None = None,
        lse: _Lse,
        return_lse: Literal[True],
        enable_pdl: bool | None = None,
        plan: Plan | None = None,
        stream: StreamLike | None = None,
    ) -> tuple[DeviceArray, _Lse]: ...
    @overload
    def run(
        self,
        q: TensorLike,
        k: TensorLike,
        v: TensorLike,
        *,
        out: _Out,
        lse: _Lse,
        return_lse: Literal[True],
        enable_pdl: bool | None = None,
        plan: Plan | None = None,
        stream: StreamLike | None = None,
    ) -> tuple[_Out, _Lse]: ...
    @overload
    def run(
        self,
        q: TensorLike,
        k: TensorLike,
        v: TensorLike,
        *,
        out: TensorLike | None = None,
        lse: TensorLike | None = None,
        return_lse: bool = False,
        enable_pdl: bool | None = None,
        plan: Plan | None = None,
        stream: StreamLike | None = None,
    ) -> DeviceArray | TensorLike | tuple[TensorLike, TensorLike]: ...
    def prepare(
        self,
        q: TensorLike,
        k: TensorLike,
        v: TensorLike,
        out: TensorLike | None = None,
        *,
        lse: TensorLike | None = None,
        enable_pdl: bool | None = None,
        stream: StreamLike | None = None,
    ) -> PreparedRun: ...
