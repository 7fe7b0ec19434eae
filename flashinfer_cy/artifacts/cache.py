"""The on-disk cache: one directory per wheel, named by the wheel's sha256.

::

    <root>/<wheel sha256>/
        .lock                  filelock: one downloader / extractor per entry across processes
        <wheel filename>       the verified wheel (absent when members came by partial fetch)
        <wheel filename>.part  an interrupted download, resumed by the next run
        RECORD                 the wheel's verified RECORD: the expected sha256 of every member
        index.json             {"files": {member: {size, mtime_ns, sha256}}, "wheel": {...}}
        source.json            filename and URL, for ``cache list``
        files/<member path>    extracted members, e.g. files/flashinfer_jit_cache/jit_cache/norm/norm.so

The index lets a later process trust a file after one ``stat`` (size and mtime unchanged); any
difference triggers a full hash against RECORD, and a mismatch makes the caller re-extract.
"""

from __future__ import annotations

import contextlib
import json
import threading
from pathlib import Path

from .fsutil import sha256_file, write_atomic
from .net import log
from .wheel import RecordEntry, parse_record

_process_lock = threading.RLock()  # serialises this process's threads around an entry
_file_locks: dict = {}  # one FileLock per entry: a second instance would deadlock on flock


class CacheEntry:
    def __init__(self, root: Path, sha256: str, filename: str | None = None):
        self.root = root
        self.sha256 = sha256
        self.dir = root / sha256
        self.filename = filename
        self._record: dict[str, RecordEntry] | None = None

    # -- paths -------------------------------------------------------------------------------
    @property
    def wheel_path(self) -> Path | None:
        return self.dir / self.filename if self.filename else None

    def file_path(self, member: str) -> Path:
        return self.dir / "files" / member

    @contextlib.contextmanager
    def lock(self, timeout: float | None = None):
        """Hold the entry's cross-process lock (and this process's); re-entrant in one thread.

        ``timeout=None`` waits as long as another process downloads; otherwise
        ``filelock.Timeout`` is raised after ``timeout`` seconds.
        """
        from filelock import FileLock, Timeout  # lazy

        self.dir.mkdir(parents=True, exist_ok=True)
        path = str(self.dir / ".lock")
        with _process_lock:
            lock = _file_locks.get(path) or _file_locks.setdefault(path, FileLock(path))
            try:
                lock.acquire(timeout=0)
            except Timeout:
                if timeout is not None and timeout <= 0:
                    raise
                log.info("waiting for another process working in %s", self.dir)
                lock.acquire(timeout=-1 if timeout is None else timeout)
            try:
                yield
            finally:
                lock.release()

    # -- RECORD ------------------------------------------------------------------------------
    def record(self) -> dict[str, RecordEntry] | None:
        if self._record is None:
            try:
                self._record = parse_record((self.dir / "RECORD").read_text(encoding="utf-8"))
            except FileNotFoundError:
                return None
        return self._record

    def store_record(self, data: bytes) -> None:
        write_atomic(self.dir / "RECORD", data)
        self._record = None

    def store_source(self, filename: str, url: str | None) -> None:
        path = self.dir / "source.json"
        if not path.exists():
            write_atomic(path, json.dumps({"filename": filename, "url": url}).encode())

    def source(self) -> dict:
        try:
            return json.loads((self.dir / "source.json").read_text())
        except (OSError, ValueError):
            return {}

    # -- the stat index ----------------------------------------------------------------------
    def _index(self) -> dict:
        try:
            return json.loads((self.dir / "index.json").read_text())
        except (OSError, ValueError):
            return {}

    def _note(self, section: str, key: str, path: Path, sha256: str) -> None:
        """Remember that ``path`` hashed to ``sha256`` at its current size/mtime (lock held)."""
        st = path.stat()
        index = self._index()
        index.setdefault(section, {})[key] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256}
        write_atomic(self.dir / "index.json", json.dumps(index, sort_keys=True).encode())

    def _valid(self, section: str, key: str, path: Path, expected: str, *, full: bool) -> bool:
        try:
            st = path.stat()
        except OSError:
            return False
        seen = self._index().get(section, {}).get(key)
        if not full and seen == {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": expected}:
            return True
        if sha256_file(path) != expected:
            return False
        try:
            with self.lock():
                self._note(section, key, path, expected)
        except OSError:  # a read-only shared cache: the file is fine, only the memo is not saved
            pass
        return True

    def member_ok(self, member: str, *, full: bool = False) -> bool:
        """Is the extracted ``member`` present and equal to RECORD's hash? (cheap unless changed)"""
        record = self.record()
        expected = record.get(member) if record else None
        if expected is None or not expected.sha256:
            return False
        return self._valid("files", member, self.file_path(member), expected.sha256, full=full)

    def note_member(self, member: str) -> None:
        self._note("files", member, self.file_path(member), self.record()[member].sha256)

    def wheel_ok(self, *, full: bool = False) -> bool:
        path = self.wheel_path
        return bool(path) and self._valid("wheel", path.name, path, self.sha256, full=full)

    def note_wheel(self) -> None:
        self._note("wheel", self.wheel_path.name, self.wheel_path, self.sha256)

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
            entry.filename = entry.source().get("filename")
            out.append(entry)
    return out
