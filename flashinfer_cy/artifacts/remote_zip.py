"""A read-only, seekable file over HTTP Range requests, so ``zipfile`` can read a remote wheel.

``zipfile`` reads the end-of-central-directory record, then the central directory, then only the
local header and compressed bytes of the members opened; each read here becomes one ranged GET.
That is the whole partial-fetch trick: no hand-written zip parser, and the same extraction code
serves local and remote wheels.
"""

from __future__ import annotations

import io

from ..errors import ArtifactError
from .download import parse_content_range
from .net import TransientError, open_url, read_body, with_retries
from .settings import HttpPolicy


class RangeNotSupported(ArtifactError):
    """The server answered a Range request with the whole body (200): fall back to a full download.

    An ArtifactError so that neither the retry loop nor ``wheel.reading`` (which labels other
    exceptions raised while reading a member as corruption) swallows it on its way to the fallback.
    """


class HttpRangeFile(io.RawIOBase):
    def __init__(self, url: str, policy: HttpPolicy | None = None, *, tail: int = 64 << 10, readahead: int = 64 << 10):
        super().__init__()
        self.url = url
        self.policy = policy or HttpPolicy.from_env()
        self.readahead = readahead
        self.requests = 0
        self.bytes_received = 0
        self._pos = 0
        # The zip directory lives at the end: one suffix request gets it (and the size) at once.
        data, self.size = self._get(f"-{tail}", None)
        self._tail = (self.size - len(data), data)
        self._buf = self._tail

    def _get(self, spec: str, first: int | None) -> tuple[bytes, int]:
        """GET ``Range: bytes=<spec>``; return ``(body, total size)``."""

        def attempt(_n: int) -> tuple[bytes, int]:
            with open_url(self.url, self.policy, {"Range": f"bytes={spec}"}) as response:
                self.requests += 1
                if response.status != 206:
                    raise RangeNotSupported(f"{self.url} answered a Range request with {response.status}")
                start, last, total = parse_content_range(response.headers.get("Content-Range"))
                if total is None or (first is not None and start != first):
                    raise TransientError(f"unexpected Content-Range {response.headers.get('Content-Range')!r}")
                body = read_body(response, last - start + 1, self.policy)  # a trickle fails too
                self.bytes_received += len(body)
                if len(body) != last - start + 1:
                    raise TransientError(f"short read: {len(body)} of {last - start + 1} bytes")
                return body, total

        return with_retries(f"range request bytes={spec}", self.policy, attempt, self.url)

    # -- io protocol -------------------------------------------------------------------------
    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise OSError(f"negative seek position {base + offset}")
        self._pos = base + offset
        return self._pos

    def _cached(self, start: int, end: int) -> bytes:
        """The longest prefix of [start, end) held in memory (the last fetch or the tail)."""
        for seg_start, seg in (self._buf, self._tail):
            if seg_start <= start < seg_start + len(seg):
                return seg[start - seg_start : min(end, seg_start + len(seg)) - seg_start]
        return b""

    def read(self, n: int = -1) -> bytes:
        end = self.size if n is None or n < 0 else min(self.size, self._pos + n)
        parts = []
        while self._pos < end:
            data = self._cached(self._pos, end)
            if not data:  # fetch only what memory lacks; never re-fetch bytes the tail holds
                fetch_end = min(self.size, max(end, self._pos + self.readahead))
                if self._pos < self._tail[0] < fetch_end:
                    fetch_end = self._tail[0]
                body, _ = self._get(f"{self._pos}-{fetch_end - 1}", self._pos)
                self._buf = (self._pos, body)
                data = body[: end - self._pos]
            parts.append(data)
            self._pos += len(data)
        return b"".join(parts)

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)
