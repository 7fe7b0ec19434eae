"""The pinned kernel wheels (``manifest.json``) and the choice of one for this machine."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping
from urllib.parse import quote

from ..errors import ArtifactError, UnsupportedPlatformError
from . import settings

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def member_for(prefix: str, uri: str) -> str:
    """Zip member holding module ``uri`` (upstream aot.py writes ``<name>/<name>.so``)."""
    return f"{prefix}{uri}/{uri}.so"


@dataclass(frozen=True)
class WheelPin:
    """One pinned wheel: where to get it and the hashes that make its bytes trustworthy."""

    key: str  # "cu130/x86_64"
    filename: str
    url: str
    sha256: str
    size: int | None
    record_path: str | None  # "<dist>-<ver>.dist-info/RECORD"; None = find it in the zip
    record_sha256: str | None  # pinned RECORD hash: enables partial fetch
    members: Mapping[str, int] | None  # member path -> uncompressed size, if known
    member_prefix: str  # "flashinfer_jit_cache/jit_cache/"
    version: str  # "0.6.3"
    trust: str | None = None  # None: pinned in the manifest; else "index <page URL>" that gave the sha256

    def trust_source(self) -> str:
        """Where the sha256 the wheel is checked against comes from, for ``doctor``."""
        return f"sha256 from the {self.trust}" if self.trust else "sha256 pinned in the manifest"

    def member_for(self, uri: str) -> str:
        return member_for(self.member_prefix, uri)

    def download_url(self) -> str:
        """The pinned URL, or ``$FLASHINFER_CY_WHEEL_BASE_URL/<filename>`` for a mirror."""
        base = settings.wheel_base_url()
        if base:
            return f"{base}/{quote(self.filename)}"
        return self.url


@dataclass(frozen=True)
class Manifest:
    package: str
    version: str
    member_prefix: str
    cuda_keys: Mapping[str, str]  # "13.1" -> "cu130"
    pins: Mapping[str, WheelPin]  # "cu130/x86_64" -> pin
    source: str  # file it was read from, for messages

    def supported(self) -> list[str]:
        """Human list of supported (CUDA, arch) pairs, for error messages."""
        out = []
        for cuda, key in sorted(self.cuda_keys.items()):
            archs = sorted(p.key.split("/")[1] for p in self.pins.values() if p.key.startswith(key + "/"))
            out.append(f"CUDA {cuda} ({key}): {', '.join(archs)}")
        return out

    def _unsupported(self, cuda: str, arch: str) -> UnsupportedPlatformError:
        return UnsupportedPlatformError(
            f"no pinned kernel wheel for CUDA {cuda} on {arch}; supported: "
            + "; ".join(self.supported())
            + f" (set {settings.CUDA_VERSION_ENV} to override the detected CUDA version)"
        )

    def cuda_key(self, cuda: str, arch: str) -> str:
        """The wheel flavour (``cu130``) for CUDA ``cuda``: the one the pins use, for any release."""
        key = self.cuda_keys.get(cuda)
        if key is None:
            raise self._unsupported(cuda, arch)
        return key

    def select(self, cuda: str, arch: str) -> WheelPin:
        pin = self.pins.get(f"{self.cuda_key(cuda, arch)}/{arch}")
        if pin is None:
            raise self._unsupported(cuda, arch)
        return pin

    def by_filename(self, filename: str) -> WheelPin | None:
        return next((p for p in self.pins.values() if p.filename == filename), None)

    def by_sha256(self, sha256: str) -> WheelPin | None:
        return next((p for p in self.pins.values() if p.sha256 == sha256), None)


class _Bad(Exception):
    """One field of the manifest is wrong; ``parse_manifest`` adds the file name."""


_JSON_NAMES = {dict: "an object", str: "a string", int: "an integer"}


def _field(doc: dict, key: str, where: str, kind: type, *, optional: bool = False):
    """``doc[key]`` checked to be a ``kind`` (or absent/null when ``optional``)."""
    value = doc.get(key)
    if value is None:
        if optional:
            return None
        raise _Bad(f"{where}{key} is missing or null")
    if not isinstance(value, kind) or isinstance(value, bool):  # JSON true is no size
        raise _Bad(f"{where}{key} must be {_JSON_NAMES[kind]}, got {value!r}")
    return value


def _sha(doc: dict, key: str, where: str, *, optional: bool = False) -> str | None:
    value = _field(doc, key, where, str, optional=optional)
    if value is not None and not _SHA256.match(value):
        raise _Bad(f"{where}{key} must be 64 lowercase hex digits, got {value!r}")
    return value


def _count(value, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _Bad(f"{what} must be an integer >= 0, got {value!r}")
    return value


def _pin(w, key: str, arch: str, data: dict) -> WheelPin:
    where = f"wheels.{key}.{arch}."
    if not isinstance(w, dict):
        raise _Bad(f"wheels.{key}.{arch} must be an object, got {w!r}")
    filename = _field(w, "filename", where, str)
    # the cached wheel is <entry>/<filename>: a path in it would write outside the cache entry
    if filename in ("", ".", "..") or any(c in filename for c in "/\\\0"):
        raise _Bad(f"{where}filename must be a plain file name (no path separators, not '..'), got {filename!r}")
    record_path = _field(w, "record_path", where, str, optional=True)
    if record_path is not None:
        from .wheel import check_member_name

        try:
            check_member_name(record_path)
        except ArtifactError as exc:
            raise _Bad(f"{where}record_path: {exc}") from None
    members = _field(w, "members", where, dict, optional=True)
    size = _field(w, "size", where, int, optional=True)
    return WheelPin(
        key=f"{key}/{arch}",
        filename=filename,
        url=_field(w, "url", where, str),
        sha256=_sha(w, "sha256", where),
        size=None if size is None else _count(size, f"{where}size"),
        record_path=record_path,
        record_sha256=_sha(w, "record_sha256", where, optional=True),
        members=None if members is None else {str(m): _count(n, f"{where}members[{m!r}]") for m, n in members.items()},
        member_prefix=data["member_prefix"],
        version=data["version"],
    )


def parse_manifest(data: dict, source: str = "<memory>") -> Manifest:
    """Validate and convert the JSON document; malformed manifests fail loudly here, not later,
    with an :class:`ArtifactError` naming the file and the field."""
    try:
        if not isinstance(data, dict):
            raise _Bad(f"the document must be an object, got {type(data).__name__}")
        for key in ("package", "version", "member_prefix"):
            _field(data, key, "", str)
        cuda = _field(data, "cuda", "", dict)
        for version, key in cuda.items():
            _field(cuda, version, "cuda.", str)
        pins = {}
        for key, archs in _field(data, "wheels", "", dict).items():
            for arch, w in _field(data["wheels"], key, "wheels.", dict).items():
                pins[f"{key}/{arch}"] = _pin(w, key, arch, data)
        manifest = Manifest(data["package"], data["version"], data["member_prefix"], dict(cuda), pins, source)
    except _Bad as exc:
        raise ArtifactError(f"manifest {source} is malformed: {exc}") from None
    for cuda, key in manifest.cuda_keys.items():
        if not any(k.startswith(key + "/") for k in pins):
            raise ArtifactError(f"manifest {source}: CUDA {cuda} maps to {key!r}, which has no wheels")
    return manifest


_loaded: dict[str, Manifest] = {}


def load_manifest(path: str | Path | None = None) -> Manifest:
    """The packaged manifest, or ``$FLASHINFER_CY_MANIFEST`` / ``path`` when given (memoized per file)."""
    path = Path(path or settings.env(settings.MANIFEST_ENV) or Path(__file__).with_name("manifest.json"))
    try:
        key = f"{path.resolve()}@{path.stat().st_mtime_ns}"  # an edited file is re-read
    except OSError as exc:
        raise ArtifactError(f"cannot read manifest {path}: {exc}") from exc
    if key not in _loaded:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"cannot read manifest {path}: {exc}") from exc
        _loaded[key] = parse_manifest(data, str(path))
    return _loaded[key]
