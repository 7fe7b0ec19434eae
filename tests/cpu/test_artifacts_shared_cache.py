"""A cache shared between users, read-only, on a full disk, or busy with another download:
lookups of what is there keep working, everything else is one clear error naming the path."""

import errno
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _wheelserver import (  # noqa: E402,F401
    ARCH, NEUTRAL_CWD, PYTHON, WHEEL_NAME, artifacts_env, build_wheel, refuse_locks, run_cli, served_wheel,
    subprocess_env, write_manifest,
)

from flashinfer_cy.artifacts import (  # noqa: E402
    fetch_modules, locate_module, locate_module_ex, settings, where_is,
)
from flashinfer_cy.artifacts.cache import CacheEntry  # noqa: E402
from flashinfer_cy.artifacts.fsutil import CacheAccessError, write_atomic  # noqa: E402
from flashinfer_cy.artifacts.net import with_retries  # noqa: E402
from flashinfer_cy.artifacts.settings import HttpPolicy  # noqa: E402
from flashinfer_cy.errors import DownloadError, KernelNotFoundError  # noqa: E402

NAME = WHEEL_NAME.format(arch=ARCH)
NOWHERE = "http://127.0.0.1:9/" + NAME


@pytest.fixture
def cached(artifacts_env):
    """norm extracted into the cache from a local wheel; the pin's URL is unreachable."""
    wheel = build_wheel(artifacts_env / NAME)
    write_manifest(artifacts_env / "manifest.json", wheel, NOWHERE)
    fetch_modules(["norm"], wheel=wheel["path"])
    return wheel



# -- 2. files other users can read ---------------------------------------------------------------
@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_cache_files_get_the_mode_a_new_file_gets(artifacts_env, umask):
    wheel = build_wheel(artifacts_env / NAME)
    write_manifest(artifacts_env / "manifest.json", wheel, NOWHERE)
    old = os.umask(umask)
    try:
        fetch_modules(["norm"], wheel=wheel["path"])
        write_atomic(artifacts_env / "plain", b"x")
    finally:
        os.umask(old)
    d = Path(settings.cache_root()) / wheel["sha256"]
    for path in (d / "RECORD", d / "index.json", d / "source.json", artifacts_env / "plain"):
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path


# -- 3. a read-only cache ------------------------------------------------------------------------
@pytest.fixture
def read_only(monkeypatch):
    refuse_locks(monkeypatch, errno.EACCES, "Permission denied")


def test_read_only_cache_serves_what_it_has(cached, read_only, monkeypatch):
    path = Path(settings.cache_root()) / cached["sha256"] / "files" / "flashinfer_jit_cache/jit_cache/norm/norm.so"
    os.utime(path)  # a stale stat index: re-hashed, and the memo it cannot save is skipped
    for offline in ("1", "0"):
        monkeypatch.setenv(settings.OFFLINE_ENV, offline)
        assert locate_module_ex("norm") == ("cache", path)
        assert where_is("norm") == ("cache", path)


def test_read_only_cache_missing_module_offline_is_the_promised_error(cached, read_only, monkeypatch):
    monkeypatch.setenv(settings.OFFLINE_ENV, "1")
    with pytest.raises(KernelNotFoundError, match=f"not in the cache.*{settings.OFFLINE_ENV}"):
        locate_module("page")
    with pytest.raises(KernelNotFoundError, match="downloading is off"):
        locate_module("page", download=False)


def test_read_only_cache_missing_module_online_names_the_lock(cached, read_only):
    with pytest.raises(CacheAccessError, match=r"cannot lock .*/\.lock: Permission denied") as info:
        locate_module("page")
    assert isinstance(info.value, OSError) and info.value.errno == errno.EACCES


@pytest.mark.parametrize("argv", [["cache", "clean"], ["cache", "clean", "--all"],
                                  ["fetch", "--modules", "page"]])
def test_cli_on_read_only_cache_is_one_error_line(cached, read_only, monkeypatch, capsys, argv):
    if argv[-1] == "--all":
        monkeypatch.setattr(shutil, "rmtree", lambda path: (_ for _ in ()).throw(
            PermissionError(errno.EACCES, "Permission denied", str(path))))
    code, out = run_cli(argv, capsys)
    lines = out.err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith("error: ") and "Permission denied" in lines[0]


@pytest.mark.skipif(not (hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("setpriv")),
                    reason="needs root and setpriv to run a process that cannot write the cache")
def test_really_read_only_cache_in_another_process(cached, artifacts_env):
    """The cache belongs to another user; this process (root without DAC override) reads it."""
    os.chmod(artifacts_env, 0o755)
    for path in [artifacts_env / "cache", *(artifacts_env / "cache").rglob("*")]:
        os.chown(path, 65534, 65534, follow_symlinks=False)
    code = ("import sys\nfrom flashinfer_cy.artifacts import locate_module_ex as l\nprint(l('norm')[0])\n"
            "try:\n    l('page')\nexcept Exception as e:\n    print(type(e).__name__)\n")
    env = dict(subprocess_env(), **{settings.OFFLINE_ENV: "1"})
    drop = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
    out = subprocess.run([*drop, PYTHON, "-c", code], env=env, cwd=NEUTRAL_CWD, capture_output=True, text=True,
                         timeout=60)
    assert out.stdout.split() == ["cache", "KernelNotFoundError"], out.stderr
    out = subprocess.run([*drop, PYTHON, "-m", "flashinfer_cy", "cache", "verify"], env=env, cwd=NEUTRAL_CWD,
                         capture_output=True, text=True, timeout=60)
    # verified without the lock it cannot take, nothing to repair
    assert out.returncode == 0 and "cannot lock" in out.stdout and "all files intact" in out.stdout, out


# -- 9. local write errors are not network errors ------------------------------------------------
def _limit_file_size(limit):
    def preexec():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    return preexec


CHILD = ("import sys\nfrom flashinfer_cy.artifacts import fetch_modules\n"
         "try:\n    fetch_modules(['norm'], wheel=sys.argv[1] or None, progress=False)\n"
         "except Exception as e:\n    print(type(e).__name__, e)\n")


def test_full_disk_while_downloading_is_not_retried(served_wheel, artifacts_env):
    server, wheel, _ = served_wheel
    out = subprocess.run([PYTHON, "-c", CHILD, ""], env=subprocess_env(), cwd=NEUTRAL_CWD, capture_output=True,
                         text=True, timeout=60, preexec_fn=_limit_file_size(300_000))
    part = Path(settings.cache_root()) / wheel["sha256"] / (NAME + ".part")
    assert out.stdout.startswith(f"CacheAccessError cannot write {part}: File too large"), out.stdout + out.stderr
    assert len(server.gets()) == 1  # a full disk is not a flaky network


def test_full_disk_while_extracting_names_the_file(artifacts_env):
    wheel = build_wheel(artifacts_env / NAME)
    write_manifest(artifacts_env / "manifest.json", wheel, NOWHERE)
    out = subprocess.run([PYTHON, "-c", CHILD, str(wheel["path"])], env=subprocess_env(), cwd=NEUTRAL_CWD,
                         capture_output=True, text=True, timeout=60, preexec_fn=_limit_file_size(100_000))
    dest = Path(settings.cache_root()) / wheel["sha256"] / "files" / "flashinfer_jit_cache/jit_cache/norm/norm.so"
    assert out.stdout.startswith(f"CacheAccessError cannot write {dest}: File too large"), out.stdout + out.stderr
    assert not [p for p in dest.parent.parent.rglob("*") if p.is_file()]  # no half-written module, no temp


def test_retry_loop_does_not_retry_a_full_disk():
    calls = []

    def attempt(n):
        calls.append(n)
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(DownloadError, match="not retried"):
        with_retries("download x", HttpPolicy(retries=3, backoff=0), attempt)
    assert calls == [0]


# -- 13. a read-only query never waits behind another download -----------------------------------
def test_where_is_does_not_wait_for_a_busy_entry(cached):
    entry = CacheEntry(Path(settings.cache_root()), cached["sha256"])
    module = entry.file_path("flashinfer_jit_cache/jit_cache/norm/norm.so")
    os.utime(module)  # stale stat index: where_is re-hashes, and would like to save the memo
    held, release = threading.Event(), threading.Event()

    def downloader():  # another thread (the same holds for another process) works in the entry
        with entry.lock():
            held.set()
            release.wait(30)

    worker = threading.Thread(target=downloader, daemon=True)
    worker.start()
    assert held.wait(10)
    answer = []
    query = threading.Thread(target=lambda: answer.append(where_is("norm")), daemon=True)
    query.start()
    query.join(5)
    answered_while_busy = not query.is_alive()
    release.set()
    worker.join(10)
    query.join(10)
    assert answered_while_busy and answer == [("cache", module)]


def test_cache_list_survives_a_temp_file_vanishing_under_it(cached, monkeypatch, capsys):
    """Another process publishes (renames away) its temp file between the walk and the stat."""
    d = Path(settings.cache_root()) / cached["sha256"]
    gone = d / ".index.json.1234.tmp"
    real_rglob = Path.rglob
    monkeypatch.setattr(Path, "rglob", lambda self, pattern: [*real_rglob(self, pattern), gone])
    monkeypatch.setattr(Path, "is_file", lambda self: self == gone or os.path.isfile(self))
    code, out = run_cli(["cache", "list"], capsys)
    assert code == 0 and cached["sha256"][:16] in out.out and out.err == ""
