import pytest

from gpu_env import require_gpu


@pytest.fixture(autouse=True)
def _gpu_only():
    """Every test in tests/gpu skips (with the reason) on a machine without a usable GPU."""
    require_gpu()
