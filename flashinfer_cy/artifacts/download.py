"""Resumable, verified download of one file: ``<dest>.part`` -> sha256 check -> atomic rename.

The caller holds the cache entry's lock, so exactly one process writes ``<dest>.part``; that is
what makes resuming a ``.part`` left by a killed process safe.
"""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path
from typing import Callable, Union

from ..errors import ChecksumMismatchError, DownloadError
from .fsutil import HASH_CHUNK, local_io, publish
from .net import SpeedGuard, TransientError, log, open_url, with_retries
from .settings import HttpPolicy

# progress: None = tqdm bar when stderr is a TTY, False = quiet, callable(done_bytes, total_or_None)
Progress = Union[None, bool, Callable[[int, Union[int, None]], None]]

_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def parse_content_range(value: str | None) -> tuple[int, int, int | None]:
    """``(first, last, total)`` from ``Content-Range: bytes first-last/total``."""
    match = _CONTENT_RANGE.fullmatch((value or "").strip())
    if not match:
        raise TransientError(f"bad Content-Range {value!r}")
    total = None if match[3] == "*" else int(match[3])
    return int(match[1]), int(match[2]), total


def human(n: int | None) -> str:
    if n is None:
        return "unknown size"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


class _Reporter:
    """Fans progress out to a tqdm bar (TTY only) and/or the caller's callback."""

    def __init__(self, progress: Progress, label: str):
        self.callback = progress if callable(progress) else None
        self.use_bar = progress is None and sys.stderr.isatty()
        self.label = label
        self.bar = None

    def __call__(self, done: int, total: int | None) -> None:
        if self.callback:
            self.callback(done, total)
        if self.use_bar:
            if self.bar is None:
                try:
                    from tqdm import tqdm  # lazy
                except ImportError:  # no bar rather than no download
                    self.use_bar = False
                    return
                self.bar = tqdm(total=total, initial=done, unit="B", unit_scale=True, desc=self.label, leave=False)
            self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class _Part:
    """The ``.part`` file and the running sha256 of its bytes (re-hashed only when foreign)."""

    def __init__(self, path: Path):
        self.path = path
        self.hasher = hashlib.sha256()
        self.size = 0
        self.inherited = False  # bytes came from an earlier process / attempt

    def sync(self) -> int:
        """Bring the hasher in line with the file on disk; return the resume offset."""
        with local_io(self.path, "read"):
            on_disk = self.path.stat().st_size if self.path.exists() else 0
            if on_disk != self.size:  # left by a killed process, or a write that failed half way
                self.hasher, self.size = hashlib.sha256(), 0
                with open(self.path, "rb") as f:
                    for block in iter(lambda: f.read(HASH_CHUNK), b""):
                        self.hasher.update(block)
                        self.size += len(block)
        self.inherited = self.inherited or self.size > 0
        return self.size

    def restart(self) -> None:
        with local_io(self.path, "remove"):
            self.path.unlink(missing_ok=True)
        self.hasher, self.size, self.inherited = hashlib.sha256(), 0, False


def download_file(
    url: str,
    dest: Path,
    sha256: str | None,
    *,
    size: int | None = None,
    policy: HttpPolicy | None = None,
    progress: Progress = None,
) -> Path:
    """Download ``url`` to ``dest`` (replacing it) and return ``dest``.

    Resumes ``dest.part`` with ``Range`` (after a reset, a timeout or a ``kill -9``), retries with
    backoff, and renames only after the sha256 matched, so ``dest`` never holds unverified bytes.
    Raises :class:`ChecksumMismatchError` (bytes discarded) or :class:`DownloadError`; a local
    write error (disk full, read-only, permissions) is a :class:`~.fsutil.CacheAccessError`
    naming the file, not retried: a network retry cannot fix it.
    ``sha256=None`` skips the check; only ``tools/wheel_pins.py`` does that, to *compute* a pin.
    """
    policy = policy or HttpPolicy.from_env()
    with local_io(dest.parent, "create"):
        dest.parent.mkdir(parents=True, exist_ok=True)
    part = _Part(dest.with_name(dest.name + ".part"))
    reporter = _Reporter(progress, dest.name)
    log.info("downloading %s (%s) from %s", dest.name, human(size), url)

    # A body that ended with neither a Content-Length nor a pinned size to measure it by: a
    # mismatching hash may only mean "cut short". Ask for the rest once; a 416 then proves the
    # bytes complete (and wrong), a 206 brings what was missing.
    probed = {"pending": False}

    def attempt(_n: int) -> Path:
        offset = part.sync()
        if size is not None and offset > size:
            part.restart()
            offset = 0
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        try:
            response = open_url(url, policy, headers)
        except Exception as exc:
            if getattr(exc, "code", None) == 416 and offset:  # .part already holds everything
                exc.close()
                return finish(complete=True)
            raise
        with response:
            expected_total = _expected_total(response, offset)
            if expected_total is not None and size is not None and expected_total != size:
                raise DownloadError(f"{url} is {expected_total} bytes, but the pin says {size}")
            # without a length from the server, the pin's size tells a short body from a whole one
            expected_total = size if expected_total is None else expected_total
            guard = SpeedGuard(policy)
            # Local I/O errors become CacheAccessError (never retried); only what the network
            # raises (resets, timeouts, short reads) is left to the retry loop.
            with local_io(part.path):
                out = open(part.path, "ab")
            try:
                while True:
                    block = response.read1(policy.chunk_size)  # keep what arrived before a reset
                    if not block:
                        break
                    with local_io(part.path):
                        out.write(block)
                    part.hasher.update(block)
                    part.size += len(block)
                    if size is not None and part.size > size:
                        raise DownloadError(f"{url} sent more than the pinned {size} bytes")
                    reporter(part.size, expected_total)
                    guard.update(len(block))
            finally:
                with local_io(part.path):
                    out.close()
        if expected_total is not None and part.size != expected_total:
            # urllib returns b"" on an early EOF instead of raising; resume from here
            raise TransientError(f"the connection closed at byte {part.size} of {expected_total}")
        return finish(complete=expected_total is not None)

    def _expected_total(response, offset: int) -> int | None:
        length = response.headers.get("Content-Length")
        if offset and response.status == 206:
            first, _last, total = parse_content_range(response.headers.get("Content-Range"))
            if first != offset:
                part.restart()
                raise TransientError(f"server resumed at {first}, asked for {offset}")
            return total
        if offset:  # 200: the server ignored Range; start over
            log.info("%s: server ignored Range, restarting from byte 0", url)
            part.restart()
        return int(length) if length is not None else None

    def finish(complete: bool) -> Path:
        actual = part.hasher.hexdigest()
        if sha256 is not None and actual != sha256:
            if not complete and not probed["pending"]:
                probed["pending"] = True
                raise TransientError(f"the body of unknown length ended at byte {part.size} and does "
                                     "not hash to the pin; asking for the rest in case it was cut short")
            inherited = part.inherited and not probed["pending"]
            part.restart()
            if inherited:  # a prefix from an earlier run may be stale: one clean retry
                raise TransientError(f"resumed download of {dest.name} hashed wrong; restarting")
            raise ChecksumMismatchError(f"{dest.name} from {url}", sha256, actual)
        with local_io(dest):
            publish(part.path, dest)
        return dest

    try:
        return with_retries(f"download of {dest.name}", policy, attempt, url)
    finally:
        reporter.close()
