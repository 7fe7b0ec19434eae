"""The cache over time: bit rot that keeps size and mtime (full-verify mode), a read-only cache
holding a damaged module, and temporaries a killed extraction left behind."""

import errno
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _wheelserver import (  # noqa: E402,F401
    ARCH, NEUTRAL_CWD, PREFIX, PYTHON, WHEEL_NAME, artifacts_env, build_wheel, refuse_locks, rot_in_place,
    run_cli, served_wheel, subprocess_env, write_manifest,
)

from flashinfer_cy.artifacts import fetch_modules, locate_module, settings  # noqa: E402
from flashinfer_cy.errors import CacheAccessError  # noqa: E402

NAME = WHEEL_NAME.format(arch=ARCH)
NORM = f"{PREFIX}norm/norm.so"



@pytest.fixture
def cached(artifacts_env):
    """norm extracted from a local wheel into the pinned entry; the pin's URL is unreachable."""
    wheel = build_wheel(artifacts_env / NAME)
    write_manifest(artifacts_env / "manifest.json", wheel, "http://127.0.0.1:9/" + NAME)
    paths = fetch_modules(["norm"], wheel=wheel["path"])
    wheel["entry"] = Path(settings.cache_root()) / wheel["sha256"]
    wheel["norm"] = paths["norm"]
    return wheel


# -- 17. bit rot ------------------------------------------------------------------------------------
def test_fetch_verify_replaces_a_module_that_rotted_in_place(served_wheel, capsys):
    server, wheel, _ = served_wheel
    path = locate_module("norm", progress=False)  # the whole wheel is cached too
    rot_in_place(path)
    assert locate_module("norm") == path and path.read_bytes() != wheel["modules"]["norm"]  # stat: trusted
    requests = len(server.gets())
    code, out = run_cli(["fetch", "--modules", "norm", "--verify"], capsys)
    assert code == 0 and path.read_bytes() == wheel["modules"]["norm"]
    assert len(server.gets()) == requests  # repaired from the cached wheel, no download


def test_full_verify_setting_rehashes_on_every_lookup(cached, monkeypatch):
    monkeypatch.setenv(settings.KERNEL_WHEEL_ENV, str(cached["path"]))
    rot_in_place(cached["norm"])
    monkeypatch.setenv(settings.VERIFY_ENV, "full")
    assert locate_module("norm") == cached["norm"]
    assert cached["norm"].read_bytes() == cached["modules"]["norm"]  # re-extracted from the wheel


def test_verify_setting_is_checked(cached, monkeypatch):
    monkeypatch.setenv(settings.VERIFY_ENV, "always")
    with pytest.raises(ValueError, match="FLASHINFER_CY_VERIFY='always'"):
        locate_module("norm")


# -- 18. a read-only cache --------------------------------------------------------------------------
@pytest.fixture
def read_only(monkeypatch):
    refuse_locks(monkeypatch, errno.EROFS, "Read-only file system")


def test_damaged_module_in_read_only_cache_is_named(cached, read_only):
    cached["norm"].write_bytes(b"garbage")  # size changed: the stat check hashes it
    with pytest.raises(CacheAccessError) as info:
        locate_module("norm")
    msg = str(info.value)
    assert f"damaged in the cache: {cached['norm']}: sha256" in msg and "Read-only file system" in msg
    assert "cache verify" in msg and settings.CACHE_DIR_ENV in msg and info.value.errno == errno.EROFS


def test_cache_verify_reports_a_read_only_cache_without_the_lock(cached, read_only, capsys):
    rot_in_place(cached["norm"])
    code, out = run_cli(["cache", "verify"], capsys)
    assert code == 1 and "without repairing" in out.out
    assert f"DAMAGED {cached['norm']} (sha256 differs from RECORD; not removed" in out.out
    assert cached["norm"].exists() and out.err == ""


def test_cache_verify_read_only_and_intact_exits_0(cached, read_only, capsys):
    code, out = run_cli(["cache", "verify"], capsys)
    assert code == 0 and "all files intact" in out.out


# -- 19. temporaries of a killed extraction ---------------------------------------------------------
def plant_leftovers(entry: Path, name: str) -> list[Path]:
    temps = [entry / "files" / PREFIX / "page" / ".page.so.0badc0de.tmp", entry / ".index.json.12345678.tmp"]
    for path in temps:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(4 << 20))
    part = entry / f"{name}.part"  # a resumable download: kept
    part.write_bytes(b"resume me")
    return temps + [part]


def test_next_fetch_sweeps_stale_temporaries(cached):
    *temps, part = plant_leftovers(cached["entry"], NAME)
    fetch_modules(["norm"], wheel=cached["path"])  # already cached: nothing to extract
    assert not any(p.exists() for p in temps) and part.read_bytes() == b"resume me"


def test_sweep_skips_an_entry_another_process_works_in(cached):
    *temps, _ = plant_leftovers(cached["entry"], NAME)
    holder = subprocess.Popen(
        [PYTHON, "-c", "import sys, time, filelock\nwith filelock.FileLock(sys.argv[1]):\n"
                       "    print('held', flush=True)\n    time.sleep(30)\n", str(cached["entry"] / ".lock")],
        env=subprocess_env(), cwd=NEUTRAL_CWD, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        fetch_modules(["norm"], wheel=cached["path"])  # its temporaries may be in flight: left alone
        assert time.monotonic() - started < 10 and all(p.exists() for p in temps)
    finally:
        holder.kill()
        holder.wait(timeout=10)
