"""HTTP requests with timeouts, a minimum speed and bounded, backed-off retries (stdlib urllib:
honours *_proxy env). Every error that ends a download names the URL, what went wrong in words,
the settings that bounded it and what the user can do next."""

from __future__ import annotations

import errno
import logging
import time
from typing import Callable, TypeVar

from ..errors import ArtifactError, DownloadError
from . import settings
from .settings import HttpPolicy

log = logging.getLogger("flashinfer_cy.artifacts")

T = TypeVar("T")

# 4xx other than these mean "this URL is wrong", which no retry fixes.
_TRANSIENT_4XX = {408, 425, 429}

# A full or read-only disk, never the network: retrying only repeats the download to fail again.
# (Local file operations raise CacheAccessError, naming the path; this is the safety net.)
_LOCAL_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EROFS, getattr(errno, "EDQUOT", errno.ENOSPC)}


def warn(msg: str, *args) -> None:
    """A warning that says whose it is: without a logging set-up Python prints only the message."""
    log.warning("flashinfer_cy: " + msg, *args)


class TransientError(OSError):
    """A failure worth retrying that urllib would not raise itself (short body, bad Content-Range,
    a server too slow)."""


def open_url(url: str, policy: HttpPolicy, headers: dict[str, str] | None = None):
    """GET ``url``; the socket timeout bounds every connect and every read (a stalled server)."""
    import urllib.request  # lazy: keeps ``import flashinfer_cy.artifacts`` cheap

    request = urllib.request.Request(url, headers={"User-Agent": "flashinfer_cy", **(headers or {})})
    # A fresh opener reads *_proxy / no_proxy now; urlopen's global one froze them at first use.
    return urllib.request.build_opener().open(request, timeout=policy.timeout)


class SpeedGuard:
    """Abandons an attempt that gets less than ``policy.min_speed`` bytes/s over a window of
    ``policy.timeout`` seconds (like curl's --speed-limit/--speed-time): the socket timeout never
    fires on a server that trickles a byte now and then. The retry loop then resumes it."""

    def __init__(self, policy: HttpPolicy):
        self.policy = policy
        self._start = time.monotonic()
        self._got = 0

    def update(self, n: int) -> None:
        self._got += n
        elapsed = time.monotonic() - self._start
        if not self.policy.min_speed or elapsed < self.policy.timeout:
            return
        if self._got < self.policy.min_speed * elapsed:
            raise TransientError(
                f"too slow: {self._got} bytes in {elapsed:.1f} s, below {self.policy.min_speed:g} bytes/s "
                f"({settings.HTTP_MIN_SPEED_ENV}) over {self.policy.timeout:g} s ({settings.HTTP_TIMEOUT_ENV})")
        self._start, self._got = time.monotonic(), 0


def read_body(response, n: int, policy: HttpPolicy) -> bytes:
    """Up to ``n`` bytes of ``response`` (fewer when it ends early), under a :class:`SpeedGuard`."""
    guard, parts, got = SpeedGuard(policy), [], 0
    while got < n:
        block = response.read1(min(n - got, policy.chunk_size))
        if not block:
            break
        parts.append(block)
        got += len(block)
        guard.update(len(block))
    return b"".join(parts)


def describe(exc: BaseException, policy: HttpPolicy) -> str:
    """What went wrong, in words (not a repr): the HTTP status, the OS error, the timeout."""
    import http.client
    import urllib.error

    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, TimeoutError):  # socket.timeout is TimeoutError
        return f"timed out: no data for {policy.timeout:g} s ({settings.HTTP_TIMEOUT_ENV}={policy.timeout:g})"
    if isinstance(reason, http.client.IncompleteRead):
        return (f"the connection closed early ({len(reason.partial)} bytes read"
                + (f", {reason.expected} more expected)" if reason.expected is not None else ")"))
    if isinstance(reason, http.client.RemoteDisconnected):
        return "the server closed the connection without answering"
    if isinstance(reason, OSError) and reason.strerror:
        name = errno.errorcode.get(reason.errno) if isinstance(reason.errno, int) else None
        return reason.strerror + (f" ({name})" if name else "")
    return str(reason) or type(reason).__name__


def remedies() -> str:
    """What a user can do when the pinned wheel cannot be downloaded."""
    return (
        "What you can do: try again later; use a mirror that serves the same wheel "
        f"({settings.WHEEL_BASE_URL_ENV}=https://host/path); download the wheel another way and set "
        f"{settings.KERNEL_WHEEL_ENV}=/path/to/it.whl; build the modules with "
        f"`python tools/build_kernels.py --out DIR <uris>` and set {settings.KERNEL_DIR_ENV}=DIR; or fill "
        f"the cache where there is network (`flashinfer-cy fetch`) and set {settings.OFFLINE_ENV}=1 here"
    )


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"


def with_retries(what: str, policy: HttpPolicy, attempt_fn: Callable[[int], T], url: str | None = None) -> T:
    """Call ``attempt_fn(attempt)`` until it returns; retry network errors and 5xx, fail fast on 4xx.

    Errors of this library (checksum mismatch, unsafe member) propagate at once: retrying cannot
    change bytes that were already proven wrong.
    """
    import http.client
    import urllib.error

    source = f" from {url}" if url else ""
    last: BaseException | None = None
    attempts = policy.retries + 1
    for attempt in range(attempts):
        if attempt:
            pause = policy.delay(attempt)
            warn("%s: attempt %d of %d failed (%s); retrying in %.2f s", what, attempt, attempts,
                 describe(last, policy), pause)
            time.sleep(pause)
        try:
            return attempt_fn(attempt)
        except ArtifactError:
            raise
        except urllib.error.HTTPError as exc:
            exc.close()
            if 400 <= exc.code < 500 and exc.code not in _TRANSIENT_4XX:
                raise DownloadError(f"{what}{source} failed: {describe(exc, policy)} (not retried: the "
                                    f"URL is wrong or the file is not there). {remedies()}") from exc
            last = exc
        except (OSError, http.client.HTTPException) as exc:  # URLError, timeouts, resets, short reads
            if isinstance(exc, OSError) and exc.errno in _LOCAL_ERRNOS:
                raise DownloadError(f"{what}: local error, not retried: {exc}") from exc
            last = exc
    raise DownloadError(
        f"{what}{source} failed after {_plural(attempts, 'attempt')}: {describe(last, policy)}. Limits: "
        f"{policy.timeout:g} s without data per connect or read ({settings.HTTP_TIMEOUT_ENV}), at least "
        f"{policy.min_speed:g} bytes/s ({settings.HTTP_MIN_SPEED_ENV}), {_plural(policy.retries, 'retry', 'retries')} "
        f"({settings.HTTP_RETRIES_ENV}). {remedies()}"
    ) from last
