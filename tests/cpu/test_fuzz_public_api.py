"""Every public callable of flashinfer_cy, and every function a shipped .pyi declares,
called with hostile arguments in a child process (fuzz_public_api.py): a Python exception
is an answer, a signal death a failure that prints the reproducing call.

Bounded: FLASHINFER_CY_FUZZ_SECONDS of calls (default 30), seed FLASHINFER_CY_FUZZ_SEED
(default 0, deterministic); set either to fuzz longer or elsewhere."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from testmod_build import child_pythonpath

HERE = Path(__file__).parent
REPO = HERE.parents[1]


def test_hostile_arguments_never_kill_the_process(tmp_path):
    seconds = float(os.environ.get("FLASHINFER_CY_FUZZ_SECONDS", "30"))
    seed = os.environ.get("FLASHINFER_CY_FUZZ_SEED", "0")
    (tmp_path / "kernels").mkdir()
    env = {**os.environ, "PYTHONPATH": child_pythonpath(),
           "CUDA_VISIBLE_DEVICES": "", "FLASHINFER_CY_OFFLINE": "1",
           "FLASHINFER_CY_KERNEL_DIR": str(tmp_path / "kernels"),
           "FLASHINFER_CY_FUZZ_SECONDS": str(seconds), "FLASHINFER_CY_FUZZ_SEED": seed}
    cmd = [sys.executable, str(HERE / "fuzz_public_api.py"), str(tmp_path)]

    def last_call():
        f = tmp_path / "last_call.txt"
        return f.read_text().strip() if f.is_file() else "(none recorded)"

    def rerun(text):
        case = re.search(r"case (\d+)", text)
        return (f"FLASHINFER_CY_FUZZ_SEED={seed} FLASHINFER_CY_FUZZ_CASE="
                f"{case.group(1) if case else '?'} PYTHONPATH={child_pythonpath()} "
                f"{sys.executable} {cmd[1]} <scratch dir>")

    try:
        res = subprocess.run(cmd, env=env, capture_output=True, text=True,
                             timeout=seconds + 120)
    except subprocess.TimeoutExpired:
        text = last_call()
        pytest.fail(f"the fuzzer hung in: {text}\nrerun: {rerun(text)}")
    if res.returncode < 0:
        text = last_call()
        pytest.fail(f"killed by {signal.Signals(-res.returncode).name} in: {text}\n"
                    f"rerun: {rerun(text)}\n{res.stderr[-3000:]}")
    assert res.returncode == 0, res.stderr[-3000:]
    called = re.search(r"(\d+) of (\d+) targets called", res.stdout)
    assert called and called.group(1) == called.group(2), res.stdout
    assert int(called.group(2)) > 100, res.stdout  # the walk found the surface
