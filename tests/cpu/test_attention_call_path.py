"""The batch-decode plan/run path end to end on the CPU: flashinfer_cy's real code (host
checks, pinned staging ring, events, stream ordering, workspaces, the kept frame of repeated
run() calls, the TVM-FFI call) against a stand-in module with FlashInfer 0.6.3's exact
plan/run signatures that computes decode attention on host memory (fake_batch_decode.cc),
and a stand-in libcudart.so.13 (fake_cudart.c). Outputs are checked against the float64
reference the GPU tests use. Each scenario runs in its own interpreter (the stand-in
libcudart must be first on its LD_LIBRARY_PATH before anything loads the real one)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from testmod_build import HERE, compile_c_library, compile_module, mark_kernel_dir

sys.path.insert(0, str(HERE.parent / "gpu"))


@pytest.fixture(scope="session")
def stand_ins(tmp_path_factory):
    """(kernel dir with the stand-in under every URI the scenarios plan, its lib dir)."""
    from fake_kernel_driver import decode_uris

    root = tmp_path_factory.mktemp("fake_attention")
    lib = compile_c_library(HERE / "fake_cudart.c", root / "lib" / "libcudart.so.13").parent
    so = compile_module(HERE / "fake_batch_decode.cc", root / "batch_decode.so")
    kernels = mark_kernel_dir(root / "kernels")
    for uri in decode_uris():
        (kernels / uri).mkdir(parents=True)
        os.symlink(so, kernels / uri / f"{uri}.so")
    return kernels, lib


@pytest.mark.parametrize("scenario", ["decode", "decode_repeated_runs",
                                      "decode_plan_failure_and_streams"])
def test_decode_call_path_against_stand_ins(scenario, stand_ins):
    kernels, lib = stand_ins
    env = dict(os.environ, FLASHINFER_CY_KERNEL_DIR=str(kernels), FLASHINFER_CY_OFFLINE="1",
               LD_LIBRARY_PATH=os.pathsep.join(filter(None, [str(lib),
                                                             os.environ.get("LD_LIBRARY_PATH")])))
    res = subprocess.run([sys.executable, str(HERE / "fake_kernel_driver.py"), str(kernels),
                          scenario], capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 0 and res.stdout.strip().endswith("ok"), \
        f"scenario {scenario} failed (rc {res.returncode}):\n{res.stdout}\n{res.stderr}"
