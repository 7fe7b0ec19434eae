"""The batched MLA plan/run path end to end on the CPU: flashinfer_cy's real code (host
checks, pinned staging of the page table, stream ordering, workspaces, the kept frame,
prepared launches, graph-mode replans, the TVM-FFI call) against a stand-in module with
FlashInfer's exact MLA plan/run signatures that computes absorbed MLA on host memory
(fake_batch_mla.cc) and records the arguments it was handed, and a stand-in libcudart.so.13
(fake_cudart.c, an sm_90 device). Scenarios: tests/cpu/fake_kernel_driver.py (mla*), each
in its own interpreter.

Two kernel dirs: 0.6.3's stand-in under 0.6.3's names, and 0.7.4's (-DFAKE_MLA_074) under
0.7.4's ``_planabi2`` names, marked 0.7.4: there the names asked for, the plan line (a
tuple returned, the schedule's copy left to flashinfer_cy) and the run's 18 arguments (the
layout's constant scales) are 0.7.4's in every path -- run(), the kept frame, prepared
launches, graph mode. Without the layout the 0.7.4 stand-in refuses the call (TVM-FFI's
arity check); without the copy its run finds no schedule; either fails the scenario."""

from __future__ import annotations

import sys

import pytest

from testmod_build import HERE, run_driver_scenario, stand_in_kernels

sys.path.insert(0, str(HERE.parent / "gpu"))

RELEASES = {"0.6.3": [], "0.7.4": ["-DFAKE_MLA_074"]}


@pytest.fixture(scope="session", params=sorted(RELEASES))
def mla_stand_ins(request, tmp_path_factory):
    """(kernel dir of one release with the stand-in under every MLA URI the scenarios plan,
    its lib dir)."""
    from fake_kernel_driver import mla_uris

    release = request.param
    return stand_in_kernels(tmp_path_factory.mktemp(f"fake_mla_{release}"),
                            HERE / "fake_batch_mla.cc", mla_uris(release), RELEASES[release],
                            version=release)


@pytest.mark.parametrize("scenario", ["mla", "mla_checks"])
def test_mla_call_path_against_stand_ins(scenario, mla_stand_ins):
    run_driver_scenario(*mla_stand_ins, scenario, timeout=300)


@pytest.mark.parametrize("smem_per_sm", ["233472", "167936", "102400"])  # KV tile 64, 32, 16
def test_mla_refusals_against_stand_ins(smem_per_sm, mla_stand_ins):
    """plan()/run()/prepare() refuse what FlashInfer's MLA would get silently wrong
    (mla_limits_driver.py): causal tile boundaries that drop a key (FA3, and FA2 with the KV
    tile the device's shared memory picks), 0.6.3's 32-bit page offsets, q_nope / q_pe
    views past 32-bit row offsets, the planner's int32 split arithmetic."""
    run_driver_scenario(*mla_stand_ins, "mla_limits", timeout=300,
                        FAKE_CUDART_SMEM_PER_SM=smem_per_sm)


def test_a_module_that_is_not_its_release_is_refused_at_plan(tmp_path):
    """0.6.3's stand-in under 0.7.4's names, marked 0.7.4: its plan's Array is not 0.7.4's
    (plan info, staged bytes) -- a KernelVersionError, not a run on an unstaged schedule."""
    from fake_kernel_driver import mla_uris

    kernels, lib = stand_in_kernels(tmp_path, HERE / "fake_batch_mla.cc", mla_uris("0.7.4"),
                                    version="0.7.4")
    run_driver_scenario(kernels, lib, "mla_not_its_release")
