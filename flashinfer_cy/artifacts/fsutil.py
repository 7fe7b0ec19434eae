"""Atomic file publication: readers see either nothing or a complete, fsynced file."""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from pathlib import Path
from typing import BinaryIO

from ..errors import ArtifactError, CacheAccessError

HASH_CHUNK = 1 << 20



def access_error(path: Path, exc: OSError, doing: str = "write") -> CacheAccessError:
    err = CacheAccessError(f"cannot {doing} {path}: {exc.strerror or exc}")
    err.errno = exc.errno  # `except OSError` callers may still look at errno
    return err


@contextlib.contextmanager
def local_io(path: Path, doing: str = "write"):
    """Turn an OSError of a local file operation into a :class:`CacheAccessError` naming ``path``
    (so a full disk is not mistaken for a network error and retried)."""
    try:
        yield
    except ArtifactError:
        raise
    except OSError as exc:
        raise access_error(path, exc, doing) from exc


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


def temp_beside(dest: Path, mode: int = 0o666) -> tuple[BinaryIO, Path]:
    """An open temp file in ``dest``'s directory, named so ``cache clean`` can recognise leftovers.

    Created with ``mode`` filtered by the umask, like any new file (``mkstemp``'s fixed 0600 would
    make RECORD and the index unreadable to the other users of a shared cache).
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = dest.parent / f".{dest.name}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, flags, mode)
        except FileExistsError:  # a name another writer picked: draw again
            continue
        return os.fdopen(fd, "wb"), tmp
    raise FileExistsError(f"no free temporary name beside {dest}")


def write_atomic(dest: Path, data: bytes) -> None:
    """Publish ``data`` as ``dest``; an OSError becomes a :class:`CacheAccessError` naming ``dest``."""
    with local_io(dest):
        f, tmp = temp_beside(dest)
        try:
            with f:
                f.write(data)
            publish(tmp, dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
