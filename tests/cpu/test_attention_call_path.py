"""The batch-decode plan/run path end to end on the CPU: flashinfer_cy's real code (host
checks, pinned staging ring, events, stream ordering, workspaces, the kept frame of repeated
run() calls, the TVM-FFI call) against a stand-in module with FlashInfer 0.6.3's exact
plan/run signatures that computes decode attention on host memory (fake_batch_decode.cc),
and a stand-in libcudart.so.13 (fake_cudart.c). Outputs are checked against the float64
reference the GPU tests use. Each scenario runs in its own interpreter (the stand-in
libcudart must be first on its LD_LIBRARY_PATH before anything loads the real one)."""

from __future__ import annotations

import sys

import pytest

from testmod_build import HERE, run_driver_scenario, stand_in_kernels

sys.path.insert(0, str(HERE.parent / "gpu"))


@pytest.fixture(scope="session")
def stand_ins(tmp_path_factory):
    """(kernel dir with the stand-in under every URI the scenarios plan, its lib dir)."""
    from fake_kernel_driver import decode_uris

    return stand_in_kernels(tmp_path_factory.mktemp("fake_attention"),
                            HERE / "fake_batch_decode.cc", decode_uris())


@pytest.mark.parametrize("scenario", ["decode", "decode_repeated_runs",
                                      "decode_plan_failure_and_streams"])
def test_decode_call_path_against_stand_ins(scenario, stand_ins):
    run_driver_scenario(*stand_ins, scenario)


@pytest.fixture(scope="session")
def probe_stand_ins(tmp_path_factory):
    """The decode stand-in built with FAKE_LAYOUT_PROBE: its run takes one more argument."""
    from fake_kernel_driver import decode_uris

    return stand_in_kernels(tmp_path_factory.mktemp("fake_attention_probe"),
                            HERE / "fake_batch_decode.cc", decode_uris(),
                            ["-DFAKE_LAYOUT_PROBE"])


@pytest.mark.parametrize("scenario", ["decode", "decode_plan_failure_and_streams"])
def test_every_run_path_calls_through_the_release_layout(scenario, probe_stand_ins):
    """The decode scenarios against a stand-in whose run takes one argument more, reached
    only through a layout (flashinfer_cy/abi/layouts.py): run() with a new and a kept frame,
    and prepared launches (before and after a replan), all hand it the layout's list."""
    run_driver_scenario(*probe_stand_ins, scenario, FAKE_LAYOUT_PROBE="1")
