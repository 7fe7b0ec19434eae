"""Environment variables and tunables of the artifacts layer, read at call time.

Read lazily (never cached at import) so tests and long-running programs can change them.
"""

from __future__ import annotations

import math
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import SettingsError

KERNEL_DIR_ENV = "FLASHINFER_CY_KERNEL_DIR"  # (a) directory of <uri>/<uri>.so
KERNEL_WHEEL_ENV = "FLASHINFER_CY_KERNEL_WHEEL"  # (b) a local kernel wheel file
KERNEL_WHEEL_SHA256_ENV = "FLASHINFER_CY_KERNEL_WHEEL_SHA256"  # (b) its sha256 when not pinned
CACHE_DIR_ENV = "FLASHINFER_CY_CACHE_DIR"
WHEEL_BASE_URL_ENV = "FLASHINFER_CY_WHEEL_BASE_URL"  # mirror: <base>/<wheel filename>
OFFLINE_ENV = "FLASHINFER_CY_OFFLINE"  # 1 = never touch the network
CUDA_VERSION_ENV = "FLASHINFER_CY_CUDA_VERSION"  # e.g. "13.0"; skips detection
MANIFEST_ENV = "FLASHINFER_CY_MANIFEST"  # another manifest.json (maintainers, tests)
HTTP_TIMEOUT_ENV = "FLASHINFER_CY_HTTP_TIMEOUT"  # seconds without a byte before giving up
HTTP_RETRIES_ENV = "FLASHINFER_CY_HTTP_RETRIES"  # retries after the first attempt
HTTP_BACKOFF_ENV = "FLASHINFER_CY_HTTP_BACKOFF"  # first backoff in seconds, doubled per retry

ALL_ENV_VARS = (
    KERNEL_DIR_ENV, KERNEL_WHEEL_ENV, KERNEL_WHEEL_SHA256_ENV, CACHE_DIR_ENV, WHEEL_BASE_URL_ENV,
    OFFLINE_ENV, CUDA_VERSION_ENV, MANIFEST_ENV, HTTP_TIMEOUT_ENV, HTTP_RETRIES_ENV, HTTP_BACKOFF_ENV,
)

_TRUE = {"1", "true", "yes", "on"}


def env(name: str) -> str | None:
    """The variable's value, or None when unset or blank."""
    value = os.environ.get(name, "").strip()
    return value or None


def offline() -> bool:
    return (env(OFFLINE_ENV) or "").lower() in _TRUE


def cache_root() -> Path:
    """``$FLASHINFER_CY_CACHE_DIR``, else the OS user cache dir (``~/.cache/flashinfer_cy``)."""
    override = env(CACHE_DIR_ENV)
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("flashinfer_cy", appauthor=False))


def kernel_wheel_sha256() -> str | None:
    """``$FLASHINFER_CY_KERNEL_WHEEL_SHA256`` as 64 lowercase hex digits ("sha256:" prefix allowed).

    It names a cache directory, so anything else (a path, a typo) is refused before it is used.
    """
    raw = env(KERNEL_WHEEL_SHA256_ENV)
    if raw is None:
        return None
    value = raw.lower()
    value = value[len("sha256:"):] if value.startswith("sha256:") else value
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise SettingsError(f"{KERNEL_WHEEL_SHA256_ENV}={raw!r} is not a sha256 (64 hex digits, "
                            "optionally prefixed with 'sha256:')")
    return value


# Schemes urllib can fetch from; without one a mirror URL would be read as a scheme ("host:port").
_URL_SCHEMES = ("http", "https", "ftp", "file")


def wheel_base_url() -> str | None:
    """``$FLASHINFER_CY_WHEEL_BASE_URL`` without its trailing '/', checked to be a URL."""
    from urllib.parse import urlsplit

    base = env(WHEEL_BASE_URL_ENV)
    if base is None:
        return None
    parts = urlsplit(base)
    if parts.scheme.lower() not in _URL_SCHEMES or (parts.scheme.lower() != "file" and not parts.netloc):
        raise SettingsError(f"{WHEEL_BASE_URL_ENV}={base!r} is not a URL like https://host/path "
                            f"(scheme one of {', '.join(_URL_SCHEMES)})")
    return base.rstrip("/")


_MAX_SECONDS = 1e6  # ~11 days; far larger values overflow the socket layer's clock arithmetic


def _number(name: str, default: float, kind=float, *, positive: bool = False, maximum: float = math.inf) -> float:
    """A number in [0, maximum] (> 0 when ``positive``): NaN, inf or a 0 timeout would hang,
    overflow or spin instead of failing, so they are refused here with the variable's name."""
    raw = env(name)
    if raw is None:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not {'an integer' if kind is int else 'a number'}") from None
    if not (0 <= value <= maximum) or (positive and value == 0):  # NaN fails every comparison
        raise SettingsError(f"{name}={raw!r} must be {'> 0' if positive else '>= 0'}"
                            + (f" and <= {maximum:.0f}" if maximum < math.inf else ""))
    return value


@dataclass(frozen=True)
class HttpPolicy:
    """Timeouts and bounded retries for every HTTP request of this layer."""

    timeout: float = 30.0  # socket timeout: a stalled server fails after this long
    retries: int = 5  # attempts = retries + 1
    backoff: float = 1.0  # sleep before retry k is backoff * 2**(k-1), with jitter
    max_backoff: float = 30.0
    chunk_size: int = 1 << 20

    @classmethod
    def from_env(cls, **overrides) -> "HttpPolicy":
        values = dict(
            timeout=_number(HTTP_TIMEOUT_ENV, cls.timeout, positive=True, maximum=_MAX_SECONDS),
            retries=int(_number(HTTP_RETRIES_ENV, cls.retries, int)),
            backoff=_number(HTTP_BACKOFF_ENV, cls.backoff, maximum=_MAX_SECONDS),
        )
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def delay(self, attempt: int) -> float:
        """Backoff before ``attempt`` (1-based retry count), "equal jitter" so racing ranks spread out."""
        full = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        return full / 2 + random.uniform(0, full / 2)
