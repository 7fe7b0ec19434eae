"""Environment variables and tunables of the artifacts layer, read at call time.

Read lazily (never cached at import) so tests and long-running programs can change them.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

from ..errors import ArtifactError

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


def _number(name: str, default: float, kind=float) -> float:
    raw = env(name)
    if raw is None:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ArtifactError(f"{name}={raw!r} is not a {kind.__name__}") from None
    if value < 0:
        raise ArtifactError(f"{name}={raw!r} must be >= 0")
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
            timeout=_number(HTTP_TIMEOUT_ENV, cls.timeout),
            retries=int(_number(HTTP_RETRIES_ENV, cls.retries, int)),
            backoff=_number(HTTP_BACKOFF_ENV, cls.backoff),
        )
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def delay(self, attempt: int) -> float:
        """Backoff before ``attempt`` (1-based retry count), "equal jitter" so racing ranks spread out."""
        full = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        return full / 2 + random.uniform(0, full / 2)
