import numpy as np
import pytest

from gpu_env import require_gpu
from hang_watchdog import leave_if_wedged

_exit_status = [0]


def pytest_sessionfinish(session, exitstatus):
    _exit_status[0] = int(exitstatus)


def pytest_unconfigure(config):
    # After the report: a hung kernel would block the interpreter's exit (CUDA teardown).
    leave_if_wedged(_exit_status[0])


@pytest.fixture(autouse=True)
def _gpu_only():
    """Every test in tests/gpu skips (with the reason) on a machine without a usable GPU."""
    require_gpu()


@pytest.fixture
def rng(request):
    """Fresh random data every run; the seed is printed with any failure."""
    seed = int(np.random.SeedSequence().entropy % 2**32)
    request.node.user_properties.append(("seed", seed))
    print(f"seed={seed}")
    return np.random.default_rng(seed)
