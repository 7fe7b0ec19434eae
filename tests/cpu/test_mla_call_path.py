"""The batched MLA plan/run path end to end on the CPU: flashinfer_cy's real code (host
checks, pinned staging of the page table, stream ordering, workspaces, the kept frame,
prepared launches, graph-mode replans, the TVM-FFI call) against a stand-in module with
FlashInfer 0.6.3's exact MLA plan/run signatures that computes absorbed MLA on host memory
(fake_batch_mla.cc) and records the scalars it was handed, and a stand-in libcudart.so.13
(fake_cudart.c, an sm_90 device). Scenarios: tests/cpu/fake_kernel_driver.py (mla*), each
in its own interpreter."""

from __future__ import annotations

import sys

import pytest

from testmod_build import HERE, run_driver_scenario, stand_in_kernels

sys.path.insert(0, str(HERE.parent / "gpu"))


@pytest.fixture(scope="session")
def mla_stand_ins(tmp_path_factory):
    """(kernel dir with the stand-in under every MLA URI the scenarios plan, its lib dir)."""
    from fake_kernel_driver import mla_uris

    return stand_in_kernels(tmp_path_factory.mktemp("fake_mla"), HERE / "fake_batch_mla.cc",
                            mla_uris())


@pytest.mark.parametrize("scenario", ["mla", "mla_checks"])
def test_mla_call_path_against_stand_ins(scenario, mla_stand_ins):
    run_driver_scenario(*mla_stand_ins, scenario, timeout=300)
