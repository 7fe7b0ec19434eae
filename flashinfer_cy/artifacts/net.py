"""HTTP requests with timeouts and bounded, backed-off retries (stdlib urllib: honours *_proxy env)."""

from __future__ import annotations

import errno
import logging
import time
from typing import Callable, TypeVar

from ..errors import ArtifactError, DownloadError
from .settings import HttpPolicy

log = logging.getLogger("flashinfer_cy.artifacts")

T = TypeVar("T")

# 4xx other than these mean "this URL is wrong", which no retry fixes.
_TRANSIENT_4XX = {408, 425, 429}

# A full or read-only disk, never the network: retrying only repeats the download to fail again.
# (Local file operations raise CacheAccessError, naming the path; this is the safety net.)
_LOCAL_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EROFS, getattr(errno, "EDQUOT", errno.ENOSPC)}


class TransientError(OSError):
    """A failure worth retrying that urllib would not raise itself (short body, bad Content-Range)."""


def open_url(url: str, policy: HttpPolicy, headers: dict[str, str] | None = None):
    """GET ``url``; the socket timeout bounds every connect and every read (a stalled server)."""
    import urllib.request  # lazy: keeps ``import flashinfer_cy.artifacts`` cheap

    request = urllib.request.Request(url, headers={"User-Agent": "flashinfer_cy", **(headers or {})})
    # A fresh opener reads *_proxy / no_proxy now; urlopen's global one froze them at first use.
    return urllib.request.build_opener().open(request, timeout=policy.timeout)


def with_retries(what: str, policy: HttpPolicy, attempt_fn: Callable[[int], T]) -> T:
    """Call ``attempt_fn(attempt)`` until it returns; retry network errors and 5xx, fail fast on 4xx.

    Errors of this library (checksum mismatch, unsafe member) propagate at once: retrying cannot
    change bytes that were already proven wrong.
    """
    import http.client
    import urllib.error

    last: BaseException | None = None
    attempts = policy.retries + 1
    for attempt in range(attempts):
        if attempt:
            pause = policy.delay(attempt)
            log.warning("%s: attempt %d/%d failed (%s); retrying in %.2fs", what, attempt, attempts, last, pause)
            time.sleep(pause)
        try:
            return attempt_fn(attempt)
        except ArtifactError:
            raise
        except urllib.error.HTTPError as exc:
            exc.close()
            if 400 <= exc.code < 500 and exc.code not in _TRANSIENT_4XX:
                raise DownloadError(f"{what}: HTTP {exc.code} {exc.reason} from {exc.url}") from exc
            last = exc
        except (OSError, http.client.HTTPException) as exc:  # URLError, timeouts, resets, short reads
            if isinstance(exc, OSError) and exc.errno in _LOCAL_ERRNOS:
                raise DownloadError(f"{what}: local error, not retried: {exc}") from exc
            last = exc
    raise DownloadError(f"{what}: giving up after {attempts} attempts; last error: {last!r}") from last
