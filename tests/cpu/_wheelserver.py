"""Test helpers for the artifacts layer: a synthetic kernel wheel and a loopback HTTP server.

The server binds 127.0.0.1 only, runs in daemon threads, stops itself after ``max_lifetime``
seconds, records every request (Range header, status, body bytes sent) and can inject faults:
HTTP status codes, a connection reset mid-body, a stall, a body without Content-Length that ends
early, a trickle of one byte per second (every one bounded in time), ignoring Range, throttling.
``refused_url()`` gives a loopback URL on which nothing listens.
"""

from __future__ import annotations

import collections
import hashlib
import http.server
import io
import json
import os
import platform
import socket
import stat
import struct
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from flashinfer_cy.artifacts import settings
from flashinfer_cy.artifacts.wheel import record_line

PREFIX = "flashinfer_jit_cache/jit_cache/"
DIST_INFO = "flashinfer_jit_cache-0.6.3+cu130.dist-info"
WHEEL_NAME = "flashinfer_jit_cache-0.6.3+cu130-cp39-abi3-manylinux_2_28_{arch}.whl"
ARCH = {"amd64": "x86_64", "arm64": "aarch64"}.get(platform.machine().lower(), platform.machine())
ATTN_URIS = [f"batch_decode_with_kv_cache_dtype_q_f16_head_dim_{d}_use_swa_{s}" for d in (64, 128, 256) for s in (False, True)]
MODULE_SIZE = 256 << 10


def module_bytes(uri: str, size: int = MODULE_SIZE) -> bytes:
    """Fake ``.so`` content: half random (incompressible), half zeros, so inflate really works."""
    rand = os.urandom(size // 2)
    return (uri.encode() + rand + bytes(size))[:size]


def build_wheel(path: Path, modules: dict[str, bytes] | None = None, *, extra=(), record_overrides=None) -> dict:
    """Write a wheel shaped like flashinfer_jit_cache; return {"sha256", "size", "modules", "record_sha256"...}.

    ``extra``: (name, bytes, unix mode) members added as-is (for hostile-archive tests).
    ``record_overrides``: {member: RECORD line} to make RECORD lie.
    """
    if modules is None:
        modules = {u: module_bytes(u) for u in ("norm", "page", "gdn_prefill_sm90", *ATTN_URIS)}
    members = {"flashinfer_jit_cache/__init__.py": b"raise ImportError('tests must never import this')\n"}
    members.update({f"{PREFIX}{u}/{u}.so": data for u, data in modules.items()})
    members[f"{DIST_INFO}/METADATA"] = b"Metadata-Version: 2.1\nName: flashinfer-jit-cache\nVersion: 0.6.3+cu130\n"
    members[f"{DIST_INFO}/WHEEL"] = b"Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: cp39-abi3-manylinux_2_28\n"
    lines = [record_line(name, data) for name, data in members.items()]
    for name, line in (record_overrides or {}).items():
        lines = [line if l.startswith(name + ",") else l for l in lines]
    record = ("\n".join(lines + [f"{DIST_INFO}/RECORD,,"]) + "\n").encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, (2024, 1, 1, 0, 0, 0))
            info.external_attr = (stat.S_IFREG | 0o755) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
        for name, data, mode in extra:
            info = zipfile.ZipInfo(name, (2024, 1, 1, 0, 0, 0))
            info.external_attr = mode << 16
            zf.writestr(info, data)
        zf.writestr(f"{DIST_INFO}/RECORD", record)
    blob = path.read_bytes()
    return {
        "path": path,
        "sha256": hashlib.sha256(blob).hexdigest(),
        "size": len(blob),
        "modules": modules,
        "record": record,
        "record_sha256": hashlib.sha256(record).hexdigest(),
        "record_path": f"{DIST_INFO}/RECORD",
        "members": {name: len(data) for name, data in members.items()},
    }


def write_manifest(path: Path, wheel: dict, url: str, *, partial: bool = False) -> Path:
    """A manifest pinning ``wheel`` at ``url`` for this machine's arch, CUDA 13.0 and 13.1."""
    entry = {
        "filename": Path(url).name if "/" in url else url,
        "url": url,
        "sha256": wheel["sha256"],
        "size": wheel["size"],
        "record_path": wheel["record_path"] if partial else None,
        "record_sha256": wheel["record_sha256"] if partial else None,
        "members": wheel["members"] if partial else None,
    }
    doc = {
        "schema": 1, "package": "flashinfer_jit_cache", "version": "0.6.3", "member_prefix": PREFIX,
        "cuda": {"13.0": "cu130", "13.1": "cu130"}, "wheels": {"cu130": {ARCH: entry}},
    }
    path.write_text(json.dumps(doc))
    return path


class WheelServer:
    """Serves ``files`` ({name: bytes}) on 127.0.0.1; see module docstring."""

    CHUNK = 16 << 10

    def __init__(self, files: dict[str, bytes], *, max_lifetime: float = 120.0):
        self.files = dict(files)
        self.ignore_range = False
        self.throttle = 0.0  # seconds slept after each CHUNK of body
        # consumed one per GET: ("status", code) | ("reset", n) | ("stall", n) | ("nolength", n) | ("trickle", s)
        # n: body bytes sent first; "nolength": no Content-Length, close after n bytes;
        # "trickle": one byte per second for at most s seconds, then close
        self.faults = collections.deque()
        self.log: list[dict] = []
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 10  # a stuck client cannot pin a thread forever

            def log_message(self, *args):
                pass

            def do_GET(self):
                owner._serve(self)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._watchdog = threading.Timer(max_lifetime, self.stop)
        self._watchdog.daemon = True

    def __enter__(self):
        self._thread.start()
        self._watchdog.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        if not self._stopped.is_set():
            self._stopped.set()
            self._watchdog.cancel()
            self.httpd.shutdown()
            self.httpd.server_close()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def gets(self, name: str | None = None) -> list[dict]:
        with self._lock:
            return [r for r in self.log if name is None or r["path"] == name]

    def bytes_sent(self, name: str | None = None) -> int:
        return sum(r["sent"] for r in self.gets(name))

    # -- request handling --------------------------------------------------------------------
    def _serve(self, h):
        name = unquote(urlsplit(h.path).path.lstrip("/"))  # absolute-form when used as a proxy
        rec = {"path": name, "target": h.path, "range": h.headers.get("Range"), "status": None, "sent": 0}
        with self._lock:
            self.log.append(rec)
            fault = self.faults.popleft() if self.faults else None
        data = self.files.get(name)
        if data is None or (fault and fault[0] == "status"):
            rec["status"] = 404 if data is None else fault[1]
            h.send_response(rec["status"])
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        start, end, status = 0, len(data), 200
        if rec["range"] and not self.ignore_range:
            parsed = _parse_range(rec["range"], len(data))
            if parsed is None:
                rec["status"] = 416
                h.send_response(416)
                h.send_header("Content-Range", f"bytes */{len(data)}")
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
            start, end, status = *parsed, 206
        rec["status"] = status
        kind = fault[0] if fault else None
        h.send_response(status)
        if kind == "nolength":  # the body ends when the connection closes: early, here
            h.send_header("Connection", "close")
            h.close_connection = True
            end = min(end, start + fault[1])
        else:
            h.send_header("Content-Length", str(end - start))
        h.send_header("Accept-Ranges", "bytes")
        if status == 206:
            h.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
        h.end_headers()
        pos = start
        try:
            if kind == "trickle":
                deadline = time.monotonic() + fault[1]
                while pos < end and time.monotonic() < deadline and not self._stopped.is_set():
                    h.wfile.write(data[pos : pos + 1])
                    h.wfile.flush()
                    pos += 1
                    rec["sent"] += 1
                    self._stopped.wait(1.0)
                h.close_connection = True
                return
            while pos < end:
                if fault and fault[0] in ("reset", "stall") and pos - start >= fault[1]:
                    if fault[0] == "reset":  # RST instead of FIN: the client sees ECONNRESET
                        h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        h.connection.close()
                    else:
                        self._stopped.wait(5.0)  # bounded stall
                    h.close_connection = True
                    return
                chunk = data[pos : min(end, pos + self.CHUNK)]
                h.wfile.write(chunk)
                pos += len(chunk)
                rec["sent"] += len(chunk)
                if self.throttle:
                    time.sleep(self.throttle)
        except OSError:  # client went away (killed, timed out, or aborted a 200 to a Range)
            h.close_connection = True


def refused_url(name: str = "x.whl") -> str:
    """A loopback URL on which nothing listens (connecting is refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/{name}"


def _parse_range(value: str, size: int):
    if not value.startswith("bytes=") or "," in value:
        return None
    first, _, last = value[6:].partition("-")
    if not first:  # suffix: last N bytes
        n = int(last)
        return (max(0, size - n), size) if n > 0 else None
    first = int(first)
    end = min(size, int(last) + 1) if last else size
    return (first, end) if first < size and first < end else None


def run_cli(argv, capsys):
    """``(exit status, captured out/err)`` of the artifacts subcommands run in this process."""
    import argparse

    from flashinfer_cy.artifacts import cli

    parser = argparse.ArgumentParser(prog="flashinfer-cy")
    cli.add_subcommands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args), capsys.readouterr()


def rot_in_place(path: Path) -> None:
    """Flip one byte of ``path``, keeping its size and mtime (what the cache's stat index compares)."""
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def refuse_locks(monkeypatch, err: int, text: str) -> None:
    """Taking an entry's lock fails as it does in a cache this user cannot write (root ignores
    permission bits, so tests make filelock fail the way it does there)."""
    import filelock

    def acquire(self, *args, **kwargs):
        raise OSError(err, text, self.lock_file)

    monkeypatch.setattr(filelock.FileLock, "acquire", acquire)


# -- fixtures ----------------------------------------------------------------------------------
@pytest.fixture
def artifacts_env(tmp_path, monkeypatch):
    """A clean environment: private cache and manifest paths, CUDA 13.0, fast timeouts/backoff."""
    for var in settings.ALL_ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)  # loopback requests must not go to a CI proxy
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv(settings.CACHE_DIR_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(settings.MANIFEST_ENV, str(tmp_path / "manifest.json"))
    monkeypatch.setenv(settings.CUDA_VERSION_ENV, "13.0")
    monkeypatch.setenv(settings.HTTP_TIMEOUT_ENV, "2")
    monkeypatch.setenv(settings.HTTP_RETRIES_ENV, "3")
    monkeypatch.setenv(settings.HTTP_BACKOFF_ENV, "0.01")
    return tmp_path


@pytest.fixture
def served_wheel(artifacts_env):
    """(server, wheel info, manifest path): the synthetic wheel served and pinned (full download)."""
    name = WHEEL_NAME.format(arch=ARCH)
    wheel = build_wheel(artifacts_env / name)
    with WheelServer({name: wheel["path"].read_bytes()}) as server:
        manifest = write_manifest(artifacts_env / "manifest.json", wheel, server.url(name))
        yield server, wheel, manifest


def subprocess_env() -> dict:
    """os.environ plus a PYTHONPATH that finds this flashinfer_cy (installed or in-tree).

    The root is appended, so a PYTHONPATH the test run already has keeps precedence.
    """
    import flashinfer_cy.artifacts as pkg

    root = str(Path(pkg.__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), root) if p)
    return env


PYTHON = sys.executable
# Child interpreters started with -c put their cwd first on sys.path; run them outside the
# checkout so they import the installed flashinfer_cy, not the uncompiled source tree.
NEUTRAL_CWD = tempfile.gettempdir()
