"""A call frame kept after its checks (Cython-level only; no Python API)."""

from typing import Any, NoReturn

class CheckedFrame:
    def __init__(self, *args: Any, **kwargs: Any) -> NoReturn: ...
    @property
    def key(self) -> object: ...
