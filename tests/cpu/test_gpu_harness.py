"""The GPU suite's hang handling, exercised without a GPU: tests/gpu/gpu_env.in_child_process
(only a known GPU hang is an expected failure) and hang_watchdog's pytest hooks (a session
whose CUDA teardown would block still exits after its report). Each case is a small pytest
session in a subprocess, on test files written here."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

GPU_TESTS = Path(__file__).resolve().parent.parent / "gpu"

# tests/gpu/conftest.py's hooks, without its GPU-only fixture (these sessions run anywhere).
CONFTEST = f"""
import sys
sys.path.insert(0, {str(GPU_TESTS)!r})
from hang_watchdog import pytest_sessionfinish, pytest_unconfigure
"""

# Timeouts: long enough for a child to start on a loaded 2-core CI machine where it must
# finish or report first; the host hang only has to outlast its own.
CHILD_CASES = """
import atexit, time
import pytest
import hang_watchdog
from gpu_env import in_child_process

def _blocked_teardown():  # what a context with a kernel that never finishes does at exit
    atexit.register(time.sleep, 60)

@in_child_process(timeout=15, known_gpu_hang="kernel X hangs")
def test_known_gpu_hang():
    _blocked_teardown()
    pytest.fail("HANG DETECTED: chains did not complete within 1 s (1 of 4 streams still busy)",
                pytrace=False)

@in_child_process(timeout=8, known_gpu_hang="kernel X hangs")
def test_host_hang_still_fails():
    time.sleep(60)

@in_child_process(timeout=30, known_gpu_hang="kernel X hangs")
def test_wrong_result_still_fails():
    assert 1 == 2, "wrong result"

@in_child_process(timeout=30, known_gpu_hang="kernel X hangs")
def test_passing_test_passes():
    pass
"""


def _session(tmp_path: Path, name: str, source: str, *args: str):
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / name).write_text(source)
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rxXfE", "-p",
                          "no:cacheprovider", "-p", "no:randomly", name, *args],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    return res, time.monotonic() - t0


def test_only_a_known_gpu_hang_is_an_expected_failure(tmp_path):
    res, _ = _session(tmp_path, "test_child_cases.py", CHILD_CASES)
    out = res.stdout
    assert "XFAIL test_child_cases.py::test_known_gpu_hang - kernel X hangs" in out, out
    assert "FAILED test_child_cases.py::test_host_hang_still_fails" in out, out
    assert "HANG DETECTED" in out, out
    assert "FAILED test_child_cases.py::test_wrong_result_still_fails" in out, out
    assert "2 failed, 1 passed, 1 xfailed" in out, out


def test_a_wedged_session_reports_then_exits(tmp_path):
    source = """
import atexit, time
import pytest
import hang_watchdog

def test_hung():
    atexit.register(time.sleep, 60)
    hang_watchdog._wedged_by.append("test_hung")
    pytest.fail("HANG DETECTED: x (1 of 1 streams still busy)", pytrace=False)

def test_fine():
    pass
"""
    res, took = _session(tmp_path, "test_wedged.py", source)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "1 failed, 1 passed" in res.stdout, res.stdout
    # the teardown blocks for 60 s: well under that means the session did not wait for it
    assert took < 45, f"the session waited for its blocked teardown ({took:.0f} s)"
