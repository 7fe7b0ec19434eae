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
WHEEL_SHA256_ENV = "FLASHINFER_CY_WHEEL_SHA256"  # (e) the downloaded wheel's sha256 instead of the pin
WHEEL_INDEX_URL_ENV = "FLASHINFER_CY_WHEEL_INDEX_URL"  # (d)/(e) PEP 503 index for releases without a pin
DEFAULT_WHEEL_INDEX_URL = "https://flashinfer.ai/whl/{cuda}"  # FlashInfer's own, one per CUDA flavour
CACHE_DIR_ENV = "FLASHINFER_CY_CACHE_DIR"
WHEEL_BASE_URL_ENV = "FLASHINFER_CY_WHEEL_BASE_URL"  # mirror: <base>/<wheel filename>
OFFLINE_ENV = "FLASHINFER_CY_OFFLINE"  # 1 = never touch the network
VERIFY_ENV = "FLASHINFER_CY_VERIFY"  # "full" = re-hash cached files on every lookup
CUDA_VERSION_ENV = "FLASHINFER_CY_CUDA_VERSION"  # e.g. "13.0"; skips detection
MANIFEST_ENV = "FLASHINFER_CY_MANIFEST"  # another manifest.json (maintainers, tests)
HTTP_TIMEOUT_ENV = "FLASHINFER_CY_HTTP_TIMEOUT"  # seconds without a byte before giving up
HTTP_MIN_SPEED_ENV = "FLASHINFER_CY_HTTP_MIN_SPEED"  # bytes/s over HTTP_TIMEOUT seconds, else abandon
HTTP_RETRIES_ENV = "FLASHINFER_CY_HTTP_RETRIES"  # retries after the first attempt
HTTP_BACKOFF_ENV = "FLASHINFER_CY_HTTP_BACKOFF"  # first backoff in seconds, doubled per retry
FLASHINFER_VERSION_ENV = "FLASHINFER_CY_FLASHINFER_VERSION"  # the modules' FlashInfer release, e.g. "0.6.3"
TVM_FFI_LIB_ENV = "FLASHINFER_CY_TVM_FFI_LIB"  # read by the core (runtime.pyx), listed for the docs


@dataclass(frozen=True)
class Setting:
    """One environment variable as the docs describe it (``tests/cpu/test_artifacts_settings_doc.py``
    checks that README.md and docs/api.md carry exactly :func:`markdown_table`)."""

    name: str
    default: str
    meaning: str


def _settings_table() -> tuple[Setting, ...]:
    p = HttpPolicy  # the defaults are the code's, not a copy
    return (
        Setting(KERNEL_DIR_ENV, "unset",
                "directory of `<uri>/<uri>.so` (or `<uri>.so`), e.g. from `tools/build_kernels.py`; "
                "looked at first; its files are used as they are (not verified)"),
        Setting(KERNEL_WHEEL_ENV, "unset",
                "a local `flashinfer_jit_cache` wheel: its sha256 is checked against the pin (found by "
                f"file name or hash) or `{KERNEL_WHEEL_SHA256_ENV}`, then modules are extracted into the cache"),
        Setting(KERNEL_WHEEL_SHA256_ENV, "unset",
                f"the sha256 the `{KERNEL_WHEEL_ENV}` wheel must have when no pin matches it "
                f"(64 hex digits, `sha256:` prefix allowed); ignored, with a warning, without `{KERNEL_WHEEL_ENV}`"),
        Setting(CACHE_DIR_ENV, "OS user cache dir (`~/.cache/flashinfer_cy`)", "where modules and wheels are cached"),
        Setting(OFFLINE_ENV, "`0`",
                "`1`/`true`/`yes`/`on`: never touch the network; modules come from the steps before the download"),
        Setting(VERIFY_ENV, "`stat`",
                "`stat`: a cached file whose size and mtime did not change since it was hashed is trusted; "
                "`full`: re-hash cached modules and wheels on every lookup (bit rot; `fetch --verify` once)"),
        Setting(WHEEL_BASE_URL_ENV, "unset (the pinned URL)",
                "a mirror: the wheel is downloaded from `<base>/<wheel file name>`"),
        Setting(WHEEL_SHA256_ENV, "unset (the manifest's pin)",
                "the sha256 the downloaded wheel must have instead of the pinned one (a mirror serving "
                "another build); the whole wheel is then downloaded and checked (no partial fetch)"),
        Setting(WHEEL_INDEX_URL_ENV, f"`{DEFAULT_WHEEL_INDEX_URL}`",
                f"PEP 503 index (`{{cuda}}` = the CUDA flavour, e.g. `cu130`) that names the wheel and its sha256 "
                f"(`#sha256=` on the link) when `{FLASHINFER_VERSION_ENV}` asks for a release `manifest.json` "
                "does not pin; https only (http only to loopback); links without a sha256 and yanked ones are refused"),
        Setting(CUDA_VERSION_ENV, "detected (driver, then toolkit)",
                "CUDA `major.minor` that picks the pinned wheel, e.g. `13.0`"),
        Setting(MANIFEST_ENV, "the packaged `manifest.json`",
                "another manifest (maintainers, tests): replaces every pin, URL and hash"),
        Setting(HTTP_TIMEOUT_ENV, f"`{p.timeout:g}`",
                "seconds a connect or a read may wait for data; also the window of the speed rule"),
        Setting(HTTP_MIN_SPEED_ENV, f"`{p.min_speed:g}`",
                f"bytes/s: an attempt that receives less than this over `{HTTP_TIMEOUT_ENV}` seconds is "
                "abandoned and resumed (a trickling server); `0` turns the rule off"),
        Setting(HTTP_RETRIES_ENV, f"`{p.retries}`",
                "retries after the first attempt (5xx, 408/425/429, resets, timeouts, short bodies); other 4xx fail at once"),
        Setting(HTTP_BACKOFF_ENV, f"`{p.backoff:g}`",
                f"seconds before the first retry, doubled per retry up to {p.max_backoff:g} s, with jitter"),
        Setting(FLASHINFER_VERSION_ENV, "detected from the source",
                "the FlashInfer release the kernel modules are, e.g. `0.6.3`, instead of what their source says "
                "(the kernel dir's `flashinfer_version.txt`, the wheel's or installed package's version); "
                "vouches for a kernel dir without that marker. Each Binding is checked against that release's "
                "ABI before its first call. Also picks the release of the installed package, cache and download: "
                f"the pinned wheel for the pinned release, else the one `{WHEEL_INDEX_URL_ENV}` names"),
        Setting(TVM_FFI_LIB_ENV, "the installed `apache-tvm-ffi`'s", "use this `libtvm_ffi.so` instead"),
    )


def markdown_table() -> str:
    """The settings as the Markdown table that README.md and docs/api.md carry."""
    rows = ["| Variable | Default | Meaning |", "|---|---|---|"]
    rows += [f"| `{s.name}` | {s.default} | {s.meaning} |" for s in _settings_table()]
    return "\n".join(rows) + "\n"


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


def verify_full() -> bool:
    """``$FLASHINFER_CY_VERIFY=full``: re-hash cached files on every lookup (default ``stat``)."""
    value = (env(VERIFY_ENV) or "stat").lower()
    if value not in ("stat", "full"):
        raise SettingsError(f"{VERIFY_ENV}={value!r} must be 'stat' (trust an unchanged size and mtime) "
                            "or 'full' (re-hash on every lookup)")
    return value == "full"


VERSION_RE = re.compile(r"[0-9]+(\.[0-9]+)+([A-Za-z0-9.+_-]*)")


def flashinfer_version() -> str | None:
    """``$FLASHINFER_CY_FLASHINFER_VERSION``: the FlashInfer release of the kernel modules,
    whatever their source says (None: detect it)."""
    raw = env(FLASHINFER_VERSION_ENV)
    if raw is not None and not VERSION_RE.fullmatch(raw):
        raise SettingsError(f"{FLASHINFER_VERSION_ENV}={raw!r} is not a FlashInfer version like 0.6.3")
    return raw


def _sha256_setting(name: str) -> str | None:
    """``$name`` as 64 lowercase hex digits ("sha256:" prefix allowed).

    It names a cache directory, so anything else (a path, a typo) is refused before it is used.
    """
    raw = env(name)
    if raw is None:
        return None
    value = raw.lower()
    value = value[len("sha256:"):] if value.startswith("sha256:") else value
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise SettingsError(f"{name}={raw!r} is not a sha256 (64 hex digits, optionally prefixed with 'sha256:')")
    return value


def kernel_wheel_sha256() -> str | None:
    """``$FLASHINFER_CY_KERNEL_WHEEL_SHA256``: what the local wheel must hash to."""
    return _sha256_setting(KERNEL_WHEEL_SHA256_ENV)


def wheel_sha256() -> str | None:
    """``$FLASHINFER_CY_WHEEL_SHA256``: what the downloaded wheel must hash to, instead of the pin."""
    return _sha256_setting(WHEEL_SHA256_ENV)


def ignored() -> list[str]:
    """A sentence for each setting that is set but has no effect (a typo'd path, a hash without
    its wheel), so that it is not silently ignored."""
    notes = []
    kdir = env(KERNEL_DIR_ENV)
    if kdir and not Path(kdir).expanduser().is_dir():
        notes.append(f"{KERNEL_DIR_ENV}={kdir} is not a directory; it is ignored")
    if env(KERNEL_WHEEL_SHA256_ENV) and not env(KERNEL_WHEEL_ENV):
        notes.append(f"{KERNEL_WHEEL_SHA256_ENV} is ignored: it applies to the wheel {KERNEL_WHEEL_ENV} "
                     f"names, which is not set (to override the hash of a download, set {WHEEL_SHA256_ENV})")
    return notes


_warned: set[str] = set()


def warn_ignored() -> None:
    """Log each :func:`ignored` note once per process."""
    from .net import warn

    for note in ignored():
        if note not in _warned:
            _warned.add(note)
            warn("%s", note)


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


def wheel_index_url() -> str:
    """``$FLASHINFER_CY_WHEEL_INDEX_URL`` (default FlashInfer's) without its trailing '/'.

    https only: the index's hashes are what an unpinned wheel is trusted by. http is allowed to
    loopback alone (a local mirror, the tests)."""
    from urllib.parse import urlsplit

    url = env(WHEEL_INDEX_URL_ENV) or DEFAULT_WHEEL_INDEX_URL
    if not urlsplit(url).netloc or not secure_url(url):
        raise SettingsError(f"{WHEEL_INDEX_URL_ENV}={url!r} is not an https:// URL like {DEFAULT_WHEEL_INDEX_URL} "
                            "(http:// only to 127.0.0.1, ::1 or localhost)")
    return url.rstrip("/")


LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


def secure_url(url: str) -> bool:
    """https, or http to loopback (a local mirror, the tests): what index hashes may travel over."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme == "https" or (scheme == "http" and parts.hostname in LOOPBACK_HOSTS)

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
    min_speed: float = 1024.0  # bytes/s over each ``timeout`` window: a trickling server fails too
    retries: int = 5  # attempts = retries + 1
    backoff: float = 1.0  # sleep before retry k is backoff * 2**(k-1), with jitter
    max_backoff: float = 30.0
    chunk_size: int = 1 << 20

    @classmethod
    def from_env(cls, **overrides) -> "HttpPolicy":
        values = dict(
            timeout=_number(HTTP_TIMEOUT_ENV, cls.timeout, positive=True, maximum=_MAX_SECONDS),
            min_speed=_number(HTTP_MIN_SPEED_ENV, cls.min_speed),
            retries=int(_number(HTTP_RETRIES_ENV, cls.retries, int)),
            backoff=_number(HTTP_BACKOFF_ENV, cls.backoff, maximum=_MAX_SECONDS),
        )
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def delay(self, attempt: int) -> float:
        """Backoff before ``attempt`` (1-based retry count), "equal jitter" so racing ranks spread out."""
        full = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        return full / 2 + random.uniform(0, full / 2)


# the artifacts layer's variables (the core's FLASHINFER_CY_TVM_FFI_LIB is only documented here)
ALL_ENV_VARS = tuple(s.name for s in _settings_table() if s.name != TVM_FFI_LIB_ENV)
