"""The paged KV cache's page allocator: host-side bookkeeping only (numpy, no GPU).

A pool of ``num_pages`` pages of ``page_size`` token slots. Each sequence owns a list of
pages, never shared with another; a sequence of length ``n`` holds ``ceil(n / page_size)``
pages. ``layout(seq_ids)`` gives the three arrays FlashInfer's paged kernels read, in the
order of ``seq_ids``: ``kv_indptr [batch + 1]``, ``kv_indices`` (the page table) and
``kv_last_page_len [batch]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

I32 = npt.NDArray[np.int32]


class PoolExhaustedError(RuntimeError):
    """Not enough free pages; the allocator is left exactly as it was."""


class PageAllocator:
    def __init__(self, num_pages: int, page_size: int) -> None:
        for name, v in (("num_pages", num_pages), ("page_size", page_size)):
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"{name}: expected an int > 0, got {v!r}")
        self.num_pages, self.page_size = num_pages, page_size
        self._free = list(range(num_pages - 1, -1, -1))  # a stack: page 0 is handed out first
        self._pages: dict[Any, list[int]] = {}
        self._lens: dict[Any, int] = {}

    @property
    def num_free(self) -> int:
        return len(self._free)

    def pages_for(self, length: int) -> int:
        return -(-length // self.page_size)

    def allocate(self, seq_id: Any, length: int) -> None:
        """A new sequence of ``length`` tokens (its prompt)."""
        if seq_id in self._pages:
            raise ValueError(f"seq_id: {seq_id!r} is already allocated")
        _check_length(length, "length")
        self._pages[seq_id] = self._take(self.pages_for(length), f"a sequence of {length} tokens")
        self._lens[seq_id] = length

    def grow(self, seq_id: Any, n: int = 1) -> None:
        """``n`` more tokens for ``seq_id``: a new page whenever the last one is full."""
        _check_length(n, "n")
        old = self.length(seq_id)
        need = self.pages_for(old + n) - len(self._pages[seq_id])
        self._pages[seq_id] += self._take(need, f"{n} more token(s) of sequence {seq_id!r}")
        self._lens[seq_id] = old + n

    def free(self, seq_id: Any) -> None:
        self.length(seq_id)  # raises for an unknown id
        self._free.extend(reversed(self._pages.pop(seq_id)))
        del self._lens[seq_id]

    def length(self, seq_id: Any) -> int:
        if seq_id not in self._lens:
            raise KeyError(f"seq_id: {seq_id!r} is not allocated")
        return self._lens[seq_id]

    def pages(self, seq_id: Any) -> I32:
        self.length(seq_id)
        return np.asarray(self._pages[seq_id], dtype=np.int32)

    def layout(self, seq_ids: list[Any]) -> tuple[I32, I32, I32]:
        """``(kv_indptr, kv_indices, kv_last_page_len)`` for these sequences, in order."""
        for s in seq_ids:
            self.length(s)  # raises for an unknown id
        counts = [len(self._pages[s]) for s in seq_ids]
        indptr = np.zeros(len(seq_ids) + 1, dtype=np.int32)
        np.cumsum(counts, out=indptr[1:])
        indices = np.fromiter((p for s in seq_ids for p in self._pages[s]), dtype=np.int32,
                              count=int(indptr[-1]))
        lens = np.array([self._lens[s] for s in seq_ids], dtype=np.int64)
        last = (lens - (np.asarray(counts, dtype=np.int64) - 1) * self.page_size).astype(np.int32)
        return indptr, indices, last

    def _take(self, count: int, what: str) -> list[int]:
        if count > len(self._free):
            raise PoolExhaustedError(f"the KV cache pool has {len(self._free)} free page(s) of "
                                     f"{self.page_size} slots; {what} needs {count}")
        return [self._free.pop() for _ in range(count)]


def _check_length(v: int, name: str) -> None:
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v <= 0:
        raise ValueError(f"{name}: expected an int > 0, got {v!r}")
