"""The rope, gated-activation and prepare() call paths end to end on the CPU, against
stand-in modules with FlashInfer 0.6.3's exact export signatures (fake_decode_step.cc):
argument order, kinds, strides and scalars as the kernels receive them, and a prepared
launch's relaunch / repoint / refusals. Each scenario runs in its own interpreter
(decode_step_driver.py), so the stand-ins never shadow real modules in this process."""

from __future__ import annotations

import subprocess
import sys

import pytest

from testmod_build import HERE, compile_module


@pytest.fixture(scope="session")
def stand_in(tmp_path_factory):
    return compile_module(HERE / "fake_decode_step.cc",
                          tmp_path_factory.mktemp("fake_decode_step") / "decode_step.so")


@pytest.mark.parametrize("scenario", ["rope_pos_ids", "rope_ragged", "rope_cos_sin_cache",
                                      "activation", "prepare"])
def test_call_path_against_stand_in_kernels(scenario, stand_in):
    res = subprocess.run([sys.executable, str(HERE / "decode_step_driver.py"), str(stand_in),
                          scenario], capture_output=True, text=True, timeout=120, cwd=HERE)
    assert res.returncode == 0 and res.stdout.strip().endswith("ok"), \
        f"scenario {scenario} failed:\n{res.stdout}\n{res.stderr}"


def test_allocated_outputs_follow_the_kernels_stream(stand_in, tmp_path):
    """rmsnorm, silu_and_mul and rope without ``out``: the output is allocated (stream-ordered)
    on the stream the kernel runs on -- ``stream=``, else the thread's use_stream() stream --
    as the stand-in libcudart.so.13 records."""
    import os

    from testmod_build import compile_c_library

    lib = compile_c_library(HERE / "fake_cudart.c", tmp_path / "lib" / "libcudart.so.13").parent
    env = dict(os.environ, LD_LIBRARY_PATH=os.pathsep.join(
        filter(None, [str(lib), os.environ.get("LD_LIBRARY_PATH")])))
    res = subprocess.run([sys.executable, str(HERE / "decode_step_driver.py"), str(stand_in),
                          "alloc_stream"], capture_output=True, text=True, timeout=120,
                         cwd=HERE, env=env)
    assert res.returncode == 0 and res.stdout.strip().endswith("ok"), \
        f"alloc_stream failed:\n{res.stdout}\n{res.stderr}"
