# Stub for the compiled module flashinfer_cy/_core/stream.pyx.
"""What a ``stream=`` argument may be, turned into a ``cudaStream_t``."""

from typing import overload

from flashinfer_cy._typing import StreamLike

@overload
def as_stream_handle(stream: None) -> None: ...
@overload
def as_stream_handle(stream: StreamLike) -> int:
    """The raw ``cudaStream_t`` value for any accepted stream form (``None`` -> ``None``).
    Raises TypeError for an unsupported object, ValueError for a handle outside
    ``[0, 2**64)``."""
