"""The on-disk cache: one directory per wheel, named by the wheel's sha256.

::

    <root>/<wheel sha256>/
        .lock                  filelock: one downloader / extractor per entry across processes
        <wheel filename>       the verified wheel (absent when members came by partial fetch)
        <wheel filename>.part  an interrupted download, resumed by the next run
        RECORD                 the wheel's verified RECORD: the expected sha256 of every member
        index.json             {"files": {member: {size, mtime_ns, sha256}}, "wheel": {...}, "record": {...}}
        source.json            filename and URL of the last source, for ``cache list``
        files/<member path>    extracted members, e.g. files/flashinfer_jit_cache/jit_cache/norm/norm.so

The index lets a later process trust a file after one ``stat`` (size and mtime unchanged); any
difference triggers a full hash against RECORD, and a mismatch makes the caller re-extract.
Bytes that rot without changing size or mtime pass that check: ``FLASHINFER_CY_VERIFY=full``
(or ``full_verify=True``, ``fetch --verify``, ``doctor``, ``cache verify``) hashes every time.
RECORD itself is checked against its pinned hash, else the hash noted when it was written.

Anything found where the cache keeps a file (a directory, a special file) or where it keeps a
directory (a file) is damage: it is removed under the lock before the file is written again.
Every file is published by an atomic rename, so readers never need the lock.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import threading
from pathlib import Path

from ..errors import ArtifactError
from .fsutil import CacheAccessError, access_error, local_io, sha256_file, write_atomic
from .net import log, warn
from .wheel import RecordEntry, parse_record

_process_lock = threading.RLock()  # serialises this process's threads around an entry
_file_locks: dict = {}  # one FileLock per entry: a second instance would deadlock on flock

META_FILES = ("RECORD", "index.json", "source.json")


class CacheEntry:
    def __init__(self, root: Path, sha256: str, filename: str | None = None, record_sha256: str | None = None,
                 *, full_verify: bool | None = None):
        from . import settings

        self.root = root
        # hash cached files on every check instead of trusting an unchanged size and mtime
        self.full_verify = settings.verify_full() if full_verify is None else full_verify
        self.sha256 = sha256
        self.dir = root / sha256
        self.filename = filename
        self.record_sha256 = record_sha256  # RECORD's pinned hash, when the manifest has one
        self.problems: list[str] = []  # damage met on the way, for the messages of later errors
        self._record: dict[str, RecordEntry] | None = None
        self._record_checked = False  # RECORD matched a pinned or noted hash (not merely parsed)

    # -- paths -------------------------------------------------------------------------------
    @property
    def wheel_path(self) -> Path | None:
        return self.dir / self.filename if self.filename else None

    def file_path(self, member: str) -> Path:
        return self.dir / "files" / member

    @contextlib.contextmanager
    def lock(self, timeout: float | None = None):
        """Hold the entry's cross-process lock (and this process's); re-entrant in one thread.

        ``timeout=None`` waits as long as another process or thread works in the entry;
        otherwise ``filelock.Timeout`` is raised after ``timeout`` seconds (``0``: at once).
        A cache that cannot be written raises :class:`~.fsutil.CacheAccessError` naming the path.
        """
        from filelock import FileLock, Timeout  # lazy

        path = str(self.dir / ".lock")
        if os.path.lexists(self.dir) and not self.dir.is_dir():  # nothing to lock it with: no repair
            raise CacheAccessError(f"cache entry {self.dir} is not a directory; remove it")
        with local_io(self.dir, "create"):
            self.dir.mkdir(parents=True, exist_ok=True)
        if not _process_lock.acquire(timeout=-1 if timeout is None else max(timeout, 0)):
            raise Timeout(path)
        try:
            lock = _file_locks.get(path) or _file_locks.setdefault(path, FileLock(path))
            try:
                try:
                    lock.acquire(timeout=0)
                except Timeout:
                    if timeout is not None and timeout <= 0:
                        raise
                    log.info("waiting for another process working in %s", self.dir)
                    lock.acquire(timeout=-1 if timeout is None else timeout)
            except Timeout:
                raise
            except OSError as exc:  # a read-only or foreign cache: say so, with the path
                raise access_error(Path(path), exc, "lock") from exc
            try:
                yield
            finally:
                lock.release()
        finally:
            _process_lock.release()

    # -- damage ------------------------------------------------------------------------------
    def _damaged(self, path: Path, why: str, *, quiet: bool = False) -> None:
        note = f"{path}: {why}"
        if note not in self.problems:
            self.problems.append(note)
            if not quiet:
                warn("%s in the cache is damaged (%s)", path, why)

    def remove_damaged(self, path: Path, why: str, *, quiet: bool = False) -> None:
        """Remove damage at ``path`` (lock held); :class:`CacheAccessError` if it cannot be."""
        if not os.path.lexists(path):
            return
        if not quiet:
            self._damaged(path, why + "; removed")
        with local_io(path, "remove"):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()

    def make_room(self, path: Path) -> None:
        """Before publishing the regular file ``path`` of this entry (lock held): remove a
        directory or special file at ``path`` and any non-directory where one of its parent
        directories belongs (a rename cannot replace them, and mkdir fails on them)."""
        current = self.dir
        for part in path.relative_to(self.dir).parts[:-1]:
            current = current / part
            if os.path.lexists(current) and not current.is_dir():
                self.remove_damaged(current, "a file where the cache keeps a directory")
        if os.path.lexists(path) and not path.is_file():
            self.remove_damaged(path, "a directory or special file where the cache keeps a file")

    def misplaced(self) -> list[tuple[Path, str]]:
        """``(path, what is wrong)`` for each thing that is not what the cache keeps there
        (for ``cache verify``); a file where a directory belongs shows up as a stray member."""
        found = []

        def check(path: Path, want_dir: bool = False) -> None:
            if os.path.lexists(path) and not (path.is_dir() if want_dir else path.is_file()):
                found.append((path, "a file where a directory belongs" if want_dir else
                              "a directory where a file belongs" if path.is_dir() else "not a regular file"))

        for name in META_FILES:
            check(self.dir / name)
        if self.wheel_path:
            check(self.wheel_path)
        files = self.dir / "files"
        check(files, want_dir=True)
        if not files.is_dir():
            return found
        record = self.record() or {}
        for path in sorted(files.rglob("*")):
            if any(parent == bad for bad, _ in found for parent in path.parents):
                continue  # inside something already condemned
            if path.is_dir() and not path.is_symlink():
                if str(path.relative_to(files)) in record:  # a directory where a module belongs
                    check(path)
            else:
                check(path)  # a fifo, socket, device or dangling link
        return found

    def _write(self, path: Path, data: bytes) -> None:
        self.make_room(path)
        write_atomic(path, data)

    # -- RECORD ------------------------------------------------------------------------------
    def _read_file(self, path: Path) -> bytes | None:
        """Bytes of the cache file ``path``; None when absent or not a regular file (damage)."""
        try:
            if not stat.S_ISREG(path.stat().st_mode):
                self._damaged(path, "not a regular file")
                return None
            return path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):  # absent, or the entry is no directory (lock() says so)
            return None
        except OSError as exc:
            raise access_error(path, exc, "read") from exc

    def record(self) -> dict[str, RecordEntry] | None:
        """The cached RECORD, or None when it is missing or damaged (the caller derives it again
        from a verified wheel). A RECORD whose bytes differ from its pinned hash, or from the
        hash noted when it was written, is damaged: it never outvotes the sha256-verified wheel."""
        if self._record is None:
            path = self.dir / "RECORD"
            data = self._read_file(path)
            if data is None:
                return None
            seen = self._seen("record", "RECORD") or {}
            expected = self.record_sha256 or seen.get("sha256")
            actual = hashlib.sha256(data).hexdigest()
            if expected and actual != expected:
                self._damaged(path, f"sha256 {actual}, expected {expected}")
                return None
            try:
                self._record = parse_record(data.decode("utf-8"), str(path))
            except (ArtifactError, UnicodeDecodeError) as exc:
                self._damaged(path, str(exc))
                return None
            self._record_checked = bool(expected)
        return self._record

    @property
    def record_checked(self) -> bool:
        """Did RECORD match a pinned or noted hash? (False for one that merely parses.)"""
        return self.record() is not None and self._record_checked

    def store_record(self, data: bytes) -> None:
        """Publish RECORD (taken from a verified wheel, or checked against its pin) and note its
        hash, so that later damage to it is recognised (lock held)."""
        path = self.dir / "RECORD"
        self._write(path, data)
        self._record = None
        self._note("record", "RECORD", path, hashlib.sha256(data).hexdigest())

    def store_source(self, filename: str, url: str | None) -> None:
        """Remember where the entry's bytes came from last (``cache list``); lock held."""
        doc = {"filename": filename, "url": url}
        if self.source() != doc:
            self._write(self.dir / "source.json", json.dumps(doc).encode())

    def source(self) -> dict:
        try:
            doc = json.loads((self.dir / "source.json").read_text())
        except (OSError, ValueError):
            return {}
        return doc if isinstance(doc, dict) else {}

    # -- the stat index ----------------------------------------------------------------------
    def _index(self) -> dict:
        try:
            index = json.loads((self.dir / "index.json").read_text())
        except (OSError, ValueError):  # absent, unreadable or torn: only a memo, rebuilt by hashing
            return {}
        return index if isinstance(index, dict) else {}

    def _seen(self, section: str, key: str) -> dict | None:
        entries = self._index().get(section)
        seen = entries.get(key) if isinstance(entries, dict) else None
        return seen if isinstance(seen, dict) else None

    def _note(self, section: str, key: str, path: Path, sha256: str) -> None:
        """Remember that ``path`` hashed to ``sha256`` at its current size/mtime (lock held)."""
        st = path.stat()
        index = self._index()
        if not isinstance(index.get(section), dict):
            index[section] = {}
        index[section][key] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256}
        self._write(self.dir / "index.json", json.dumps(index, sort_keys=True).encode())

    def _valid(self, section: str, key: str, path: Path, expected: str, *, full: bool) -> bool:
        try:
            st = path.stat()
        except OSError:
            return False
        if not stat.S_ISREG(st.st_mode):  # a directory or special file: damage, replaced under the lock
            return False
        seen = self._seen(section, key)
        if not full and seen == {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": expected}:
            return True
        try:
            actual = sha256_file(path)
        except OSError as exc:
            raise access_error(path, exc, "read") from exc
        if actual != expected:  # noted for the messages of later errors; the caller repairs or says
            self._damaged(path, f"sha256 {actual}, expected {expected}", quiet=True)
            return False
        try:
            # Only a memo: never wait for it behind another process's download (where_is, and
            # lookups in a read-only shared cache, must not block or fail for it).
            with self.lock(timeout=0):
                self._note(section, key, path, expected)
        except OSError:  # filelock.Timeout (busy), or a cache we cannot write: memo not saved
            pass
        return True

    def member_ok(self, member: str, *, full: bool | None = None) -> bool:
        """Is the extracted ``member`` present and equal to RECORD's hash? (cheap unless changed,
        or unless ``full`` / :attr:`full_verify`)"""
        full = self.full_verify if full is None else full
        record = self.record()
        expected = record.get(member) if record else None
        if expected is None or not expected.sha256:
            return False
        return self._valid("files", member, self.file_path(member), expected.sha256, full=full)

    def note_member(self, member: str) -> None:
        self._note("files", member, self.file_path(member), self.record()[member].sha256)

    def wheel_ok(self, *, full: bool | None = None) -> bool:
        full = self.full_verify if full is None else full
        path = self.wheel_path
        return bool(path) and self._valid("wheel", path.name, path, self.sha256, full=full)

    def note_wheel(self) -> None:
        self._note("wheel", self.wheel_path.name, self.wheel_path, self.sha256)

    def drop_wheel(self, why: str) -> None:
        """Remove the cached wheel, e.g. after its bytes stopped hashing to the pin (lock held)."""
        self.remove_damaged(self.wheel_path, why)

    def present_wheel(self) -> str | None:
        """File name of the wheel actually cached here, preferring the one source.json names."""
        named = self.source().get("filename")
        named = named if isinstance(named, str) else None
        present = sorted(p.name for p in self.dir.glob("*.whl"))
        if named in present or not present:
            return named
        return present[0]

    def sweep_temporaries(self) -> list[Path]:
        """Remove the temporary files a killed extraction or write left (``.<name>.<hex>.tmp``);
        lock held. Every writer in an entry holds its lock, so none of them is in flight now.
        ``.part`` downloads are kept: the next download resumes them."""
        removed = []
        for path in self.dir.rglob(".*.tmp"):
            try:
                if path.is_file() and not path.is_symlink():
                    path.unlink()
                    removed.append(path)
            except OSError:  # a sweep is housekeeping: never fail the fetch that triggered it
                pass
        if removed:
            log.info("removed %d stale temporary file(s) in %s", len(removed), self.dir)
        return removed

    def extracted_members(self) -> list[str]:
        files = self.dir / "files"
        if not files.is_dir():
            return []
        return sorted(str(p.relative_to(files)) for p in files.rglob("*") if p.is_file() and not p.name.startswith("."))


def entries(root: Path) -> list[CacheEntry]:
    """Every entry directory under ``root`` (names that look like a sha256)."""
    if not root.is_dir():
        return []
    out = []
    for d in sorted(root.iterdir()):
        if d.is_dir() and len(d.name) == 64 and all(c in "0123456789abcdef" for c in d.name):
            entry = CacheEntry(root, d.name)
            # the wheel file present, not only the name recorded first: a local wheel of another
            # name may have filled the entry before the pinned wheel was downloaded into it
            entry.filename = entry.present_wheel()
            out.append(entry)
    return out
