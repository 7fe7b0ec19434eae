# Stub for the compiled module flashinfer_cy/kernels/batch_attention.pyx.
"""Batched attention with a plan/run split: batch decode and batch prefill (ragged and paged,
FA2 and FA3), prepared launches, CUDA-graph-safe plans."""

from typing import Any, Literal, TypeVar, overload

from flashinfer_cy._core.array import DeviceArray
from flashinfer_cy.kernels.batch_plan import DEFAULT_FLOAT_WORKSPACE_BYTES as DEFAULT_FLOAT_WORKSPACE_BYTES
from flashinfer_cy.kernels.batch_plan import DEFAULT_INT_WORKSPACE_BYTES as DEFAULT_INT_WORKSPACE_BYTES
from flashinfer_cy.kernels.batch_plan import MIN_WORKSPACE_BYTES as MIN_WORKSPACE_BYTES
from flashinfer_cy.kernels.batch_plan import PlanBase
from flashinfer_cy.kernels.batch_run import CheckedRunner
from flashinfer_cy.kernels.batch_run import PreparedRun as PreparedRun
from flashinfer_cy._typing import (Backend, DTypeLike, HostIndices, KVLayout, PagedKVCache,
                                   StreamLike, TensorLike)

_Out = TypeVar("_Out", bound=TensorLike)
_Lse = TypeVar("_Lse", bound=TensorLike)

class Plan(PlanBase):
    """What plan() planned; owns the kernel's plan-info Array (released with the Plan).
    Immutable; valid for run() until its wrapper plans again (``generation``)."""

    @property
    def kind(self) -> Literal["decode", "paged_prefill", "ragged_prefill"]: ...
    @property
    def backend(self) -> Literal["fa2", "fa3"]: ...
    @property
    def kv_layout(self) -> str: ...
    @property
    def num_qo_heads(self) -> int: ...
    @property
    def num_kv_heads(self) -> int: ...
    @property
    def head_dim(self) -> int: ...
    @property
    def window_left(self) -> int: ...
    @property
    def logits_soft_cap(self) -> float: ...
    @property
    def rope_scale(self) -> float: ...
    @property
    def rope_theta(self) -> float: ...
    @property
    def total_kv_rows(self) -> int: ...
    def frozen_key(self) -> tuple[Any, ...]:
        """What a CUDA graph bakes in: replans in graph mode must keep it."""

class _BatchAttention(CheckedRunner):
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
    def current_plan(self) -> Plan | None: ...

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
