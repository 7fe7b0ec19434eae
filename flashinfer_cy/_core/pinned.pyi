# Stub for the compiled module flashinfer_cy/_core/pinned.pyx.
"""Page-locked host buffers for plan(), the events that say when they may be reused, and the
stream queries planning needs. A ring slot is reused only once the event recorded after its
host->device copies has completed."""


from flashinfer_cy._core.tensor import TensorDesc

class Event:
    """A timing-free CUDA event on ``device``."""

    def __new__(cls, device: int = 0) -> Event: ...
    def record(self, stream_handle: int) -> None: ...
    def query(self) -> bool:
        """True when all work captured by the last record() has completed."""
    def synchronize(self) -> None: ...
    @property
    def handle(self) -> int: ...

class PinnedSlot:
    """One page-locked int-workspace mirror plus a staging area for H2D copies."""

    def __new__(cls, kernel_bytes: int, device: int) -> PinnedSlot: ...
    @property
    def kernel_desc(self) -> TensorDesc: ...
    @property
    def staging_address(self) -> int: ...

class PinnedRing:
    """A few PinnedSlots, reused once their last copies have run."""

    def __new__(cls, kernel_bytes: int, device: int = 0, max_slots: int = 4) -> PinnedRing: ...
    @property
    def size(self) -> int: ...
    @property
    def waits(self) -> int: ...
    def in_flight(self) -> int:
        """How many slots still wait for their copies."""
