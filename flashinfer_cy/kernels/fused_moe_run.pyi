# Stub for the compiled module flashinfer_cy/kernels/fused_moe_run.pyx.
"""The typed ``run_moe`` call of the CUTLASS fused MoE runner: every argument checked for the
mode, ``quant_scales`` built as an ``ffi::Array`` of Tensor objects, one GIL-free call."""

from typing import Final

from flashinfer_cy._core.binding import Binding
from flashinfer_cy._core.runtime import Array, Function
from flashinfer_cy._typing import StreamLike, TensorLike

ARGUMENTS: Final[list[str]]
ARGUMENTS_074: Final[list[str]]
SWIZZLED_INPUT_SF_074: Final[bool]
NVFP4_4OVER6_CODE_074: Final[int]
WORKSPACE_SIZE_ARGUMENTS: Final[list[str]]
WORKSPACE_SCRATCH: Final[str]
ACTIVATIONS: Final[dict[str, int]]
MAX_EXPERTS_PER_RANK: Final[int]
MAX_TOP_K: Final[int]
BLOCK: Final[int]

class MoESpec:
    """A runner configuration as the checks need it."""

    def __init__(self, act: str, weight: str, out: str, block_scale: bool) -> None: ...
    @property
    def act(self) -> int: ...
    @property
    def weight(self) -> int: ...
    @property
    def out(self) -> int: ...
    @property
    def block_scale(self) -> bool: ...
    @property
    def out_name(self) -> str: ...
    @property
    def align(self) -> int:
        """The multiple ``hidden`` and ``inter`` must be."""
    @property
    def scale_names(self) -> tuple[str, ...]:
        """The names of the ``quant_scales`` entries this mode takes, in order."""

class WorkspaceSize:
    """0.7.x's ``get_workspace_size`` on one runner, the last answer kept."""

    def __init__(self, line: Binding, fn: Function) -> None: ...
    @property
    def asked(self) -> int:
        """How often the runner was asked (the rest were answered from the last one)."""

def run_moe(spec: MoESpec, b: Binding, method: Function, workspace: WorkspaceSize | None,
            input: TensorLike,
            token_selected_experts: TensorLike, token_final_scales: TensorLike,
            fc1_expert_weights: TensorLike, fc2_expert_weights: TensorLike,
            quant_scales: list[TensorLike] | tuple[TensorLike, ...] | None,
            fc1_expert_biases: TensorLike | None, fc2_expert_biases: TensorLike | None,
            input_sf: TensorLike | None, tp_size: int, tp_rank: int, ep_size: int,
            ep_rank: int, output: TensorLike | None, activation_type: str | int,
            enable_pdl: bool | None, profile_ids: Array | None,
            stream: StreamLike | None) -> TensorLike:
    """Check everything, then call ``method`` (the runner's ``run_moe``, of line ``b``)
    once; returns ``output`` (a DeviceArray on the call's stream when None). ``workspace``:
    None for 0.6.3's line, the runner's get_workspace_size for 0.7.4's."""
