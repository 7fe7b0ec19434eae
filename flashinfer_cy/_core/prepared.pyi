# Stub for the compiled module flashinfer_cy/_core/prepared.pyx.
"""Prepared launches for any kernel function: checks and packing once, then one GIL-free
call per kernel each launch."""

from typing import Any, Callable

from flashinfer_cy._core.binding import Recorder
from flashinfer_cy._typing import StreamLike

class PreparedCall(Recorder):
    """The kernel calls one call of a flashinfer_cy function makes, checked and packed
    once. Made by :func:`prepare`."""

    @property
    def result(self) -> Any: ...
    def launch(self, stream: StreamLike | None = None) -> Any:
        """Run the recorded kernel calls in order; returns what the function returned."""
    def set(self, call: int | None = None, **values: int | float | bool) -> None:
        """Change per-launch scalars (``Binding(per_launch=...)``) by ABI argument name."""
    def repoint(self, call: int | None = None, **addresses: int) -> None:
        """Point tensor arguments (by ABI name) at other memory of the same layout."""
    @property
    def num_calls(self) -> int: ...
    @property
    def arguments(self) -> list[tuple[str, tuple[str, ...]]]: ...
    @property
    def stream_handles(self) -> list[int]: ...

def prepare(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> PreparedCall:
    """Check and pack ``fn(*args, **kwargs)`` once, launching nothing."""
