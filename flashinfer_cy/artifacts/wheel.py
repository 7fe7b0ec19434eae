"""Reading members out of a (local or remote) wheel safely: RECORD hashes, path and size checks."""

from __future__ import annotations

import base64
import contextlib
import csv
import hashlib
import io
import stat
from pathlib import Path, PurePosixPath
from typing import NamedTuple

from ..errors import (ArtifactError, ChecksumMismatchError, CorruptWheelError, KernelNotFoundError,
                      UnsafeMemberError)
from .fsutil import local_io, publish, temp_beside

EXTRACT_CHUNK = 1 << 20



@contextlib.contextmanager
def reading(what: str):
    """Turn whatever zipfile and its decompressors raise on broken bytes (zlib.error, EOFError,
    lzma/bz2 errors, NotImplementedError for an unknown method, BadZipFile for a bad CRC or
    header) into a :class:`CorruptWheelError` naming ``what``. Errors of this library (a failed
    range request is a DownloadError) pass through unchanged."""
    try:
        yield
    except (ArtifactError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - the decompressors' error types are open-ended
        kind = type(exc).__name__
        if type(exc).__module__ != "builtins":  # "zlib.error", not a bare "error"
            kind = f"{type(exc).__module__}.{kind}"
        raise CorruptWheelError(f"cannot read {what}: {kind}: {exc}") from exc


class RecordEntry(NamedTuple):
    sha256: str | None  # hex
    size: int | None


def parse_record(text: str, what: str = "RECORD") -> dict[str, RecordEntry]:
    """Parse a wheel ``RECORD`` (``path,sha256=<urlsafe-b64>,size`` per line; PEP 376/427).

    A malformed line raises :class:`ArtifactError` naming ``what`` (the file) and the line.
    """
    entries: dict[str, RecordEntry] = {}
    row: list[str] = []
    reader = csv.reader(io.StringIO(text))
    try:
        for row in reader:
            if not row:
                continue
            path, digest, size = row
            sha = None
            if digest:
                algo, _, b64 = digest.partition("=")
                if algo == "sha256":
                    raw = base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4))
                    if len(raw) != 32:
                        raise ValueError("a sha256 digest is 32 bytes")
                    sha = raw.hex()
            entries[path] = RecordEntry(sha, int(size) if size else None)
    except (ValueError, csv.Error):  # wrong column count, bad base64 (binascii.Error), bad size
        raise ArtifactError(f"{what} is malformed: line {reader.line_num} is {row!r}") from None
    return entries


def record_line(path: str, data: bytes) -> str:
    """The RECORD line for ``data`` (used by tools and tests that build wheels)."""
    b64 = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={b64},{len(data)}"


def check_member_name(name: str) -> None:
    """Refuse names that could land outside the extraction directory."""
    posix = PurePosixPath(name)
    if (
        not name
        or "\\" in name
        or "\x00" in name
        or posix.is_absolute()
        or name[1:2] == ":"  # C:... on Windows
        or ".." in posix.parts
    ):
        raise UnsafeMemberError(f"unsafe wheel member name {name!r} (absolute, '..' or odd characters)")


def check_archive(zf) -> None:
    """Refuse the whole wheel if any member is unsafe: a hostile archive is not half-trusted."""
    for info in zf.infolist():
        check_member_name(info.filename)
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise UnsafeMemberError(f"wheel member {info.filename!r} is a symlink")
        if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):  # 0 = type unrecorded
            raise UnsafeMemberError(f"wheel member {info.filename!r} is not a regular file (mode {mode:o})")


def find_record(zf, record_path: str | None = None) -> str:
    """The RECORD member: the pinned path, or the single top-level ``*.dist-info/RECORD``."""
    if record_path:
        return record_path
    found = [n for n in zf.namelist() if n.count("/") == 1 and n.endswith(".dist-info/RECORD")]
    if len(found) != 1:
        raise ArtifactError(f"wheel has {len(found)} top-level .dist-info/RECORD files, expected 1")
    return found[0]


def read_record(zf, record_path: str | None, record_sha256: str | None, what: str) -> tuple[bytes, dict[str, RecordEntry]]:
    """Read RECORD, verify it against its pin when there is one, and parse it."""
    name = find_record(zf, record_path)
    try:
        with reading(f"{name} of {what}"):
            data = zf.read(name)
    except KeyError:
        raise ArtifactError(f"{what} has no {name}") from None
    if record_sha256:
        actual = hashlib.sha256(data).hexdigest()
        if actual != record_sha256:
            raise ChecksumMismatchError(f"{name} of {what}", record_sha256, actual)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ArtifactError(f"{name} of {what} is not UTF-8: {exc}") from None
    return data, parse_record(text, f"{name} of {what}")


def extract_member(zf, member: str, dest: Path, expected: RecordEntry, what: str) -> None:
    """Stream ``member`` to a temp file, check size and sha256 against RECORD, then publish."""
    try:
        info = zf.getinfo(member)
    except KeyError:
        raise KernelNotFoundError(f"{member} is not in {what}") from None
    check_member_name(info.filename)
    if not expected.sha256 or expected.size is None:
        raise UnsafeMemberError(f"{member} has no sha256/size in the RECORD of {what}; refusing it")
    if info.file_size != expected.size:
        raise UnsafeMemberError(
            f"{member}: zip says {info.file_size} bytes, RECORD says {expected.size}; refusing it"
        )
    with local_io(dest):
        out, tmp = temp_beside(dest)
    try:
        h, written = hashlib.sha256(), 0
        with local_io(dest), out:  # any OSError left here is a local write: disk full, quota, EROFS
            with reading(f"{member} of {what}"):  # zipfile checks the local header name and the CRC
                src = zf.open(info)
            with src:
                while True:
                    with reading(f"{member} of {what}"):
                        block = src.read(EXTRACT_CHUNK)
                    if not block:
                        break
                    written += len(block)
                    if written > expected.size:  # a zip bomb / lying header: stop reading
                        raise UnsafeMemberError(f"{member} is larger than the declared {expected.size} bytes")
                    h.update(block)
                    out.write(block)
        if h.hexdigest() != expected.sha256:
            raise ChecksumMismatchError(f"{member} in {what}", expected.sha256, h.hexdigest())
        with local_io(dest):
            tmp.chmod(0o755)
            publish(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
