# Stub for the compiled module flashinfer_cy/kernels/batch_run.pyx.
"""The run half of the plan/run wrappers: the checked run with its kept frame, the prepared
launch."""

from flashinfer_cy._typing import TensorLike
from flashinfer_cy.kernels.batch_plan import BatchPlanner

class CheckedRunner(BatchPlanner):
    """A BatchPlanner whose plans are run through the checked, kept frame."""

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
    def repoint(self, q: int | None = None, out: int | None = None, lse: int | None = None,
                q_pe: int | None = None) -> None:
        """Point q (MLA: q_nope) / out / lse / q_pe (MLA) at other memory of the same shape
        (integer addresses)."""
