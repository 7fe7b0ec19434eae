"""Wait for GPU work with a deadline: a stream that does not drain within the timeout fails
the test with ``HANG DETECTED`` instead of blocking the whole session.

Completion is polled through CUDA events (cuda.bindings runtime), never through a blocking
synchronize. After a hang the device is stuck, so later tests that use the watchdog skip
(naming the test that hung) rather than each waiting out their own timeout.
"""

from __future__ import annotations

import time

import pytest

HANG_TIMEOUT_S = 60.0
_wedged_by: list[str] = []


def wedged() -> bool:
    return bool(_wedged_by)


# pytest hooks, imported by tests/gpu/conftest.py: the session's exit status is kept, and
# after the report a session whose kernel never finished leaves at once (tearing down a
# CUDA context that still runs a kernel blocks forever, so a normal exit would hang).
_exit_status = [0]


def pytest_sessionfinish(session, exitstatus):
    _exit_status[0] = int(exitstatus)


def pytest_unconfigure(config):
    if _wedged_by:
        import os
        import sys

        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_exit_status[0] or 1)


def require_responsive_device() -> None:
    if _wedged_by:
        pytest.skip(f"the GPU is still busy with a hung kernel from {_wedged_by[0]}")


def _check(err, what: str) -> None:
    from cuda.bindings import runtime as rt

    if err != rt.cudaError_t.cudaSuccess:
        raise AssertionError(f"{what} failed: {err!r}")


def create_stream() -> int:
    """A new blocking stream (it orders after work on the legacy default stream, where
    DeviceArray.from_numpy copies inputs). Returns the raw handle."""
    from cuda.bindings import runtime as rt

    err, s = rt.cudaStreamCreate()
    _check(err, "cudaStreamCreate")
    return int(s)


def destroy_stream(handle: int) -> None:
    from cuda.bindings import runtime as rt

    rt.cudaStreamDestroy(handle)


def wait_for(streams, what: str, timeout: float = HANG_TIMEOUT_S) -> float:
    """Block until all work queued so far on ``streams`` (raw handles; 0 = legacy default
    stream) has finished; returns the seconds waited. Fails with HANG DETECTED after
    ``timeout`` seconds, and with the CUDA error if a kernel faulted."""
    from cuda.bindings import runtime as rt

    if isinstance(streams, int):
        streams = [streams]
    events = []
    try:
        for s in streams:
            err, ev = rt.cudaEventCreateWithFlags(rt.cudaEventDisableTiming)
            _check(err, "cudaEventCreateWithFlags")
            events.append(ev)
            (err,) = rt.cudaEventRecord(ev, s)
            _check(err, f"cudaEventRecord on stream {s:#x}")
        t0 = time.monotonic()
        pending = list(events)
        while pending:
            still = []
            for ev in pending:
                (err,) = rt.cudaEventQuery(ev)
                if err == rt.cudaError_t.cudaErrorNotReady:
                    still.append(ev)
                elif err != rt.cudaError_t.cudaSuccess:
                    raise AssertionError(f"{what}: the GPU reported {err!r} (kernel fault?)")
            pending = still
            waited = time.monotonic() - t0
            if pending and waited > timeout:
                _wedged_by.append(what)
                pytest.fail(f"HANG DETECTED: {what} did not complete within {timeout:.0f} s "
                            f"({len(pending)} of {len(events)} streams still busy)",
                            pytrace=False)
            if pending:
                time.sleep(0.0005)
        return time.monotonic() - t0
    finally:
        if not _wedged_by:  # destroying events of a wedged device may itself block
            for ev in events:
                rt.cudaEventDestroy(ev)
