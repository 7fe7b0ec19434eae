"""Many processes, one download; a download killed with SIGKILL resumes on the next run."""

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _wheelserver import NEUTRAL_CWD, PYTHON, artifacts_env, served_wheel, subprocess_env  # noqa: E402,F401

from flashinfer_cy.artifacts import locate_module  # noqa: E402

LOCATE = "import sys; from flashinfer_cy.artifacts import locate_module; print(locate_module(sys.argv[1], progress=False))"


def test_eight_processes_download_once(served_wheel):
    server, wheel, _ = served_wheel
    server.throttle = 0.01  # ~0.7 s for the wheel, so all eight overlap
    procs = [subprocess.Popen([PYTHON, "-c", LOCATE, "norm"], env=subprocess_env(), cwd=NEUTRAL_CWD,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(8)]
    results = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in results]
    paths = {out.strip() for out, _ in results}
    assert len(paths) == 1
    assert Path(paths.pop()).read_bytes() == wheel["modules"]["norm"]
    gets = server.gets(wheel["path"].name)
    assert len(gets) == 1 and gets[0]["sent"] == wheel["size"], gets


def test_kill_9_mid_download_then_rerun_resumes(served_wheel, artifacts_env):
    server, wheel, _ = served_wheel
    server.throttle = 0.02  # ~1.5 s for the whole wheel
    part = artifacts_env / "cache" / wheel["sha256"] / (wheel["path"].name + ".part")
    proc = subprocess.Popen([PYTHON, "-c", LOCATE, "norm"], env=subprocess_env(), cwd=NEUTRAL_CWD,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not (part.exists() and part.stat().st_size > wheel["size"] // 3):
        assert proc.poll() is None and time.monotonic() < deadline, "download finished or hung before the kill"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    left = part.stat().st_size
    server.throttle = 0
    path = locate_module("norm", progress=False)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == hashlib.sha256(wheel["modules"]["norm"]).hexdigest()
    first, second = server.gets(wheel["path"].name)
    assert second["range"] == f"bytes={left}-" and second["status"] == 206
    assert second["sent"] == wheel["size"] - left  # only the missing tail travelled again
    assert not part.exists()
