"""Reading members out of a (local or remote) wheel safely: RECORD hashes, path and size checks."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import stat
from pathlib import Path, PurePosixPath
from typing import NamedTuple

from ..errors import ArtifactError, ChecksumMismatchError, KernelNotFoundError, UnsafeMemberError
from .fsutil import publish, temp_beside

EXTRACT_CHUNK = 1 << 20


class RecordEntry(NamedTuple):
    sha256: str | None  # hex
    size: int | None


def parse_record(text: str) -> dict[str, RecordEntry]:
    """Parse a wheel ``RECORD`` (``path,sha256=<urlsafe-b64>,size`` per line; PEP 376/427)."""
    entries = {}
    for row in csv.reader(io.StringIO(text)):
        if not row:
            continue
        if len(row) != 3:
            raise ArtifactError(f"malformed RECORD line: {row!r}")
        path, digest, size = row
        sha = None
        if digest:
            algo, _, b64 = digest.partition("=")
            if algo == "sha256":
                sha = base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4)).hex()
        entries[path] = RecordEntry(sha, int(size) if size else None)
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
        data = zf.read(name)
    except KeyError:
        raise ArtifactError(f"{what} has no {name}") from None
    if record_sha256:
        actual = hashlib.sha256(data).hexdigest()
        if actual != record_sha256:
            raise ChecksumMismatchError(f"{name} of {what}", record_sha256, actual)
    return data, parse_record(data.decode("utf-8"))


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
    out, tmp = temp_beside(dest)
    try:
        h, written = hashlib.sha256(), 0
        with out, zf.open(info) as src:  # zipfile checks the local header name and the CRC
            while block := src.read(EXTRACT_CHUNK):
                written += len(block)
                if written > expected.size:  # a zip bomb / lying header: stop reading
                    raise UnsafeMemberError(f"{member} is larger than the declared {expected.size} bytes")
                h.update(block)
                out.write(block)
        if h.hexdigest() != expected.sha256:
            raise ChecksumMismatchError(f"{member} in {what}", expected.sha256, h.hexdigest())
        tmp.chmod(0o755)
        publish(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
