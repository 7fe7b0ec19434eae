#!/usr/bin/env python3
"""Compute the manifest pins of a kernel wheel (file or URL) and print a manifest entry.

    python tools/wheel_pins.py flashinfer_jit_cache-0.6.3+cu130-...-x86_64.whl
    python tools/wheel_pins.py https://.../flashinfer_jit_cache-...whl --into flashinfer_cy/artifacts/manifest.json

Prints ``{"<cuda key>": {"<arch>": {filename, url, sha256, size, record_path, record_sha256,
members}}}``, the shape of ``manifest.json``'s ``"wheels"`` object. The CUDA key comes from the
version's local tag (``+cu130``) and the arch from the platform tag, unless given. With a RECORD
hash and member list pinned, the library can fetch single members by HTTP Range (partial fetch).
``--into`` merges the entry into a manifest file in place. ``--check`` also hashes every member
against RECORD (reads the whole wheel once more).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import tempfile
import zipfile
from pathlib import Path

try:
    import flashinfer_cy.artifacts  # noqa: F401  (installed, or on PYTHONPATH)
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flashinfer_cy.artifacts.fsutil import sha256_file  # noqa: E402
from flashinfer_cy.artifacts.wheel import check_archive, find_record, parse_record  # noqa: E402

_FILENAME = re.compile(r"(?P<name>[^-]+)-(?P<version>[^-]+)-.*_(?P<arch>x86_64|aarch64)\.whl$")


def pins_for(wheel: Path, url: str, *, cuda_key: str | None = None, arch: str | None = None, check: bool = False) -> dict:
    """The manifest entry for ``wheel`` (a local file), to be downloaded from ``url``."""
    match = _FILENAME.match(wheel.name)
    if match:
        local = match["version"].partition("+")[2]
        cuda_key = cuda_key or local or None
        arch = arch or match["arch"]
    if not cuda_key or not arch:
        raise SystemExit(f"cannot tell the CUDA key / arch of {wheel.name}; pass --cuda-key and --arch")
    with zipfile.ZipFile(wheel) as zf:
        check_archive(zf)
        record_path = find_record(zf)
        record_bytes = zf.read(record_path)
        record = parse_record(record_bytes.decode("utf-8"))
        members = {}
        for info in zf.infolist():
            if info.is_dir() or info.filename == record_path:
                continue
            entry = record.get(info.filename)
            if entry is None or entry.size != info.file_size:
                raise SystemExit(f"{info.filename}: RECORD says {entry}, the zip says {info.file_size} bytes")
            if check:
                h = hashlib.sha256()
                with zf.open(info) as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        h.update(block)
                    if h.hexdigest() != entry.sha256:
                        raise SystemExit(f"{info.filename} does not match its RECORD hash")
            members[info.filename] = info.file_size
    return {
        cuda_key: {
            arch: {
                "filename": wheel.name,
                "url": url,
                "sha256": sha256_file(wheel),
                "size": wheel.stat().st_size,
                "record_path": record_path,
                "record_sha256": hashlib.sha256(record_bytes).hexdigest(),
                "members": dict(sorted(members.items())),
            }
        }
    }


def merge_into(manifest: Path, entry: dict) -> None:
    doc = json.loads(manifest.read_text())
    for key, archs in entry.items():
        doc["wheels"].setdefault(key, {}).update(archs)
    manifest.write_text(json.dumps(doc, indent=2) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wheel", help="wheel file or http(s) URL")
    parser.add_argument("--url", help="URL to record for a local file (default: the file's name)")
    parser.add_argument("--cuda-key", help="e.g. cu130 (default: the version's +cuXYZ tag)")
    parser.add_argument("--arch", choices=("x86_64", "aarch64"), help="default: from the platform tag")
    parser.add_argument("--check", action="store_true", help="also hash every member against RECORD")
    parser.add_argument("--into", type=Path, metavar="MANIFEST", help="merge the entry into this manifest.json")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        if args.wheel.startswith(("http://", "https://")):
            from urllib.parse import unquote

            from flashinfer_cy.artifacts.download import download_file

            url = args.wheel
            wheel = download_file(url, Path(tmp) / unquote(url.rsplit("/", 1)[-1]), None)  # computing, not checking
        else:
            wheel = Path(args.wheel)
            url = args.url or wheel.name
        entry = pins_for(wheel, url, cuda_key=args.cuda_key, arch=args.arch, check=args.check)
    if args.into:
        merge_into(args.into, entry)
    print(json.dumps(entry, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
