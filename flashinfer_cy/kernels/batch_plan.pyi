# Stub for the compiled module flashinfer_cy/kernels/batch_plan.pyx.
"""The plan half of the plan/run wrappers: host index arrays, staging through the pinned
ring, workspaces, stream ordering, the base of every Plan."""

from typing import Any, Final

from flashinfer_cy._core.runtime import Array
from flashinfer_cy._typing import Backend, TensorLike

DEFAULT_FLOAT_WORKSPACE_BYTES: Final[int]
DEFAULT_INT_WORKSPACE_BYTES: Final[int]
MIN_WORKSPACE_BYTES: Final[int]

class PlanBase:
    """What every wrapper's plan has; owns the kernel's plan-info Array (released with the
    plan). Immutable; valid for run() until its wrapper plans again (``generation``)."""

    @property
    def kind(self) -> str: ...
    @property
    def backend(self) -> str: ...
    @property
    def uri(self) -> str: ...
    @property
    def dtype(self) -> str: ...
    @property
    def kv_dtype(self) -> str: ...
    @property
    def device(self) -> int: ...
    @property
    def batch_size(self) -> int: ...
    @property
    def page_size(self) -> int: ...
    @property
    def causal(self) -> bool: ...
    @property
    def use_cuda_graph(self) -> bool: ...
    @property
    def sm_scale(self) -> float: ...
    @property
    def total_num_rows(self) -> int: ...
    @property
    def planned_num_rows(self) -> int: ...
    @property
    def min_num_pages(self) -> int: ...
    @property
    def generation(self) -> int: ...
    @property
    def plan_info(self) -> Array: ...
    @property
    def stream_handle(self) -> int: ...

class BatchPlanner:
    """Workspaces, pinned ring, metadata buffer and stream ordering of one wrapper."""

    def __init__(
        self,
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
    def use_cuda_graph(self) -> bool: ...
    @property
    def backend(self) -> str: ...
    @property
    def device(self) -> int: ...
    @property
    def current_plan(self) -> PlanBase | None: ...
    @property
    def generation(self) -> int: ...
    @property
    def pinned_ring_size(self) -> int: ...
    @property
    def pinned_ring_waits(self) -> int: ...
    def workspace_buffers(self) -> tuple[Any, Any]:
        """(float workspace, int workspace) once allocated (after the first plan)."""
