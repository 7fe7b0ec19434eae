# Stub for the compiled module flashinfer_cy/kernels/batch_mla.pyx.
"""Batched MLA paged attention (DeepSeek-style, absorbed form) with a plan/run split, FA2
and FA3, prepared launches, CUDA-graph-safe plans."""

from typing import Any, Final, Literal, TypeVar, overload

from flashinfer_cy._core.array import DeviceArray
from flashinfer_cy._typing import DTypeLike, HostIndices, StreamLike, TensorLike
from flashinfer_cy.kernels.batch_plan import PlanBase
from flashinfer_cy.kernels.batch_run import CheckedRunner, PreparedRun

_Out = TypeVar("_Out", bound=TensorLike)
_Lse = TypeVar("_Lse", bound=TensorLike)

MLA_MAX_WORKS: Final[int]

class MLAPlan(PlanBase):
    """What BatchMLAPagedAttention.plan() planned; owns the plan-info Array."""

    @property
    def kind(self) -> Literal["mla"]: ...
    @property
    def backend(self) -> Literal["fa2", "fa3"]: ...
    @property
    def num_heads(self) -> int: ...
    @property
    def head_dim_ckv(self) -> int: ...
    @property
    def head_dim_kpe(self) -> int: ...
    def frozen_key(self) -> tuple[Any, ...]:
        """What a CUDA graph bakes in: replans in graph mode must keep it."""

# Constructor: BatchPlanner's (keyword-only: use_cuda_graph, backend, device, workspaces,
# max_num_pages, max_total_num_rows, pinned_slots).
class BatchMLAPagedAttention(CheckedRunner):
    """Batched MLA paged attention with a plan/run split."""

    @property
    def current_plan(self) -> MLAPlan | None: ...
    def plan(
        self,
        qo_indptr: HostIndices,
        kv_indptr: HostIndices,
        kv_indices: HostIndices | TensorLike,
        kv_len_arr: HostIndices,
        num_heads: int,
        head_dim_ckv: int,
        head_dim_kpe: int,
        page_size: int,
        causal: bool,
        sm_scale: float,
        q_data_type: DTypeLike = "float16",
        kv_data_type: DTypeLike | None = None,
        *,
        stream: StreamLike | None = None,
    ) -> MLAPlan: ...
    @overload
    def run(
        self,
        q_nope: TensorLike,
        q_pe: TensorLike,
        ckv_cache: TensorLike,
        kpe_cache: TensorLike,
        out: None = None,
        lse: TensorLike | None = None,
        return_lse: Literal[False] = False,
        *,
        return_lse_base_on_e: bool = False,
        plan: MLAPlan | None = None,
        stream: StreamLike | None = None,
    ) -> DeviceArray: ...
    @overload
    def run(
        self,
        q_nope: TensorLike,
        q_pe: TensorLike,
        ckv_cache: TensorLike,
        kpe_cache: TensorLike,
        out: _Out,
        lse: TensorLike | None = None,
        return_lse: Literal[False] = False,
        *,
        return_lse_base_on_e: bool = False,
        plan: MLAPlan | None = None,
        stream: StreamLike | None = None,
    ) -> _Out: ...
    @overload
    def run(
        self,
        q_nope: TensorLike,
        q_pe: TensorLike,
        ckv_cache: TensorLike,
        kpe_cache: TensorLike,
        out: TensorLike | None = None,
        lse: TensorLike | None = None,
        *,
        return_lse: Literal[True],
        return_lse_base_on_e: bool = False,
        plan: MLAPlan | None = None,
        stream: StreamLike | None = None,
    ) -> tuple[TensorLike, TensorLike]: ...
    @overload
    def run(
        self,
        q_nope: TensorLike,
        q_pe: TensorLike,
        ckv_cache: TensorLike,
        kpe_cache: TensorLike,
        out: TensorLike | None = None,
        lse: TensorLike | None = None,
        return_lse: bool = False,
        *,
        return_lse_base_on_e: bool = False,
        plan: MLAPlan | None = None,
        stream: StreamLike | None = None,
    ) -> DeviceArray | TensorLike | tuple[TensorLike, TensorLike]: ...
    def prepare(
        self,
        q_nope: TensorLike,
        q_pe: TensorLike,
        ckv_cache: TensorLike,
        kpe_cache: TensorLike,
        out: TensorLike | None = None,
        *,
        lse: TensorLike | None = None,
        return_lse_base_on_e: bool = False,
        stream: StreamLike | None = None,
    ) -> PreparedRun: ...
