"""What GPU tests need: ``require_gpu()`` / ``require_module(uri)`` skip with the reason (no
driver, no device, which module is missing and how to get it). Imported by the tests as
``from gpu_env import ...`` (not from conftest: tests/cpu has a conftest too)."""

from __future__ import annotations

import functools

import pytest


@functools.lru_cache(maxsize=None)
def gpu_unavailable_reason() -> str | None:
    try:
        from cuda.bindings import driver
    except Exception as exc:  # noqa: BLE001
        return f"cuda-bindings not importable: {exc}"
    try:
        (err,) = driver.cuInit(0)
    except Exception as exc:  # noqa: BLE001 - e.g. libcuda.so.1 missing on CPU machines
        return f"no CUDA driver: {exc}"
    if int(err) != 0:
        return f"no CUDA driver/device: cuInit returned {err!r}"
    err, count = driver.cuDeviceGetCount()
    if int(err) != 0 or count == 0:
        return "no CUDA device visible"
    return None


@functools.lru_cache(maxsize=None)
def module_unavailable_reason(uri: str) -> str | None:
    from flashinfer_cy.artifacts import locate_module

    try:
        locate_module(uri)
    except Exception as exc:  # noqa: BLE001
        return f"kernel module {uri!r} unavailable: {exc}"
    return None


def require_gpu() -> None:
    reason = gpu_unavailable_reason()
    if reason:
        pytest.skip(reason)


def require_module(uri: str) -> None:
    require_gpu()
    reason = module_unavailable_reason(uri)
    if reason:
        pytest.skip(reason)


def in_child_process(test_fn=None, *, timeout=None, known_gpu_hang=None):
    """Run the test in a fresh interpreter: a device fault (a sticky CUDA error) then fails
    this one test instead of every later test in the session. Fixtures still resolve in
    the parent; the child re-runs the test by node id. ``timeout``: seconds before the
    child counts as hung (default CHILD_TIMEOUT_S).

    ``known_gpu_hang``: the reason a kernel outside this project is known to hang now and
    then in this test. When the child reports streams that never drained (hang_watchdog's
    "streams still busy"), the test is an expected failure with that reason; any other
    failure, a host-side hang included, still fails."""
    import functools
    import inspect
    import os
    import subprocess
    import sys

    if test_fn is None:
        return functools.partial(in_child_process, timeout=timeout,
                                 known_gpu_hang=known_gpu_hang)
    marker = "FLASHINFER_CY_CHILD_TEST"
    limit = timeout or CHILD_TIMEOUT_S

    @functools.wraps(test_fn)
    def wrapper(*args, **kwargs):
        if os.environ.get(marker) == test_fn.__name__:
            return test_fn(*args, **kwargs)
        node = f"{inspect.getsourcefile(test_fn)}::{test_fn.__name__}"
        env = dict(os.environ, **{marker: test_fn.__name__})
        child = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-x", "-p",
                                  "no:cacheprovider", node], env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        stacks = None
        try:
            out, err = child.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            stacks = native_stacks(child.pid)  # where it is stuck, before it is killed
            child.kill()
            out, err = child.communicate()
        if known_gpu_hang and "streams still busy" in out:
            # A context with a kernel that never finishes cannot be torn down: the child
            # reported the hang, then blocked at exit until it was killed.
            pytest.xfail(f"{known_gpu_hang}: {_hang_line(out)}")
        if stacks is not None:
            pytest.fail(f"HANG DETECTED: {node} did not finish in {limit} s in its child "
                        f"process; its threads were at:\n{stacks}\n{out[-3000:]}\n"
                        f"{err[-2000:]}", pytrace=False)
        if child.returncode != 0:
            pytest.fail(f"{node} failed in its child process (rc {child.returncode}):\n"
                        f"{out[-4000:]}\n{err[-2000:]}", pytrace=False)

    return wrapper


def _hang_line(out: str) -> str:
    return next((line for line in out.splitlines() if "streams still busy" in line), "")


# The slowest child test takes seconds (about 3 s, torch import included). A hang must be
# caught, and its stacks taken, well inside gpu_session.sh's whole-suite limit: at 150 s
# a hang of the gdn Qwen3-Next test outlived a 200 s suite limit with no stacks.
CHILD_TIMEOUT_S = 90


def native_stacks(pid: int) -> str:
    """Every thread's Python and native stack of process ``pid`` (py-spy, where installed)."""
    import shutil
    import subprocess

    spy = shutil.which("py-spy")
    if spy is None:
        return "(py-spy is not installed: no stacks)"
    r = subprocess.run([spy, "dump", "--native", "--pid", str(pid)], capture_output=True,
                       text=True, timeout=60)
    return (r.stdout + r.stderr)[-12000:]
