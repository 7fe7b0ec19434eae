"""Atomic file publication: readers see either nothing or a complete, fsynced file."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO

HASH_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(HASH_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (best effort where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def publish(tmp: Path, dest: Path) -> None:
    """fsync ``tmp`` then rename it over ``dest`` (same directory, so the rename is atomic)."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, dest)
    fsync_dir(dest.parent)


def temp_beside(dest: Path) -> tuple[BinaryIO, Path]:
    """An open temp file in ``dest``'s directory, named so ``cache clean`` can recognise leftovers."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    return os.fdopen(fd, "wb"), Path(name)


def write_atomic(dest: Path, data: bytes) -> None:
    f, tmp = temp_beside(dest)
    try:
        with f:
            f.write(data)
        publish(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
