import numpy as np
import pytest

from gpu_env import require_gpu
from hang_watchdog import pytest_sessionfinish, pytest_unconfigure  # noqa: F401 (hooks)


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
