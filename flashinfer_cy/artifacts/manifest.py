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

    def member_for(self, uri: str) -> str:
        return member_for(self.member_prefix, uri)

    def download_url(self) -> str:
        """The pinned URL, or ``$FLASHINFER_CY_WHEEL_BASE_URL/<filename>`` for a mirror."""
        base = settings.env(settings.WHEEL_BASE_URL_ENV)
        if base:
            return f"{base.rstrip('/')}/{quote(self.filename)}"
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

    def select(self, cuda: str, arch: str) -> WheelPin:
        key = self.cuda_keys.get(cuda)
        pin = self.pins.get(f"{key}/{arch}") if key else None
        if pin is None:
            raise UnsupportedPlatformError(
                f"no pinned kernel wheel for CUDA {cuda} on {arch}; supported: "
                + "; ".join(self.supported())
                + f" (set {settings.CUDA_VERSION_ENV} to override the detected CUDA version)"
            )
        return pin

    def by_filename(self, filename: str) -> WheelPin | None:
        return next((p for p in self.pins.values() if p.filename == filename), None)

    def by_sha256(self, sha256: str) -> WheelPin | None:
        return next((p for p in self.pins.values() if p.sha256 == sha256), None)


def _check_sha(value, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _SHA256.match(value):
        raise ArtifactError(f"manifest: {what} must be 64 lowercase hex digits, got {value!r}")
    return value


def parse_manifest(data: dict, source: str = "<memory>") -> Manifest:
    """Validate and convert the JSON document; malformed manifests fail loudly here, not later."""
    try:
        prefix = data["member_prefix"]
        pins = {}
        for key, archs in data["wheels"].items():
            for arch, w in archs.items():
                members = w.get("members")
                pins[f"{key}/{arch}"] = WheelPin(
                    key=f"{key}/{arch}",
                    filename=w["filename"],
                    url=w["url"],
                    sha256=_check_sha(w["sha256"], f"{key}/{arch} sha256"),
                    size=w.get("size"),
                    record_path=w.get("record_path"),
                    record_sha256=_check_sha(w.get("record_sha256"), f"{key}/{arch} record_sha256"),
                    members=dict(members) if members is not None else None,
                    member_prefix=prefix,
                    version=data["version"],
                )
        manifest = Manifest(data["package"], data["version"], prefix, dict(data["cuda"]), pins, source)
    except (KeyError, TypeError, AttributeError) as exc:
        raise ArtifactError(f"manifest {source} is malformed: {exc!r}") from exc
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
