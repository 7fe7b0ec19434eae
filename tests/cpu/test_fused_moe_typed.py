"""The typed CUTLASS fused MoE call (``CutlassFusedMoE.fused_moe`` / ``prepare``) and the
environment allocator it needs, end to end on the CPU: the stand-in ``fused_moe_90`` module
(fake_fused_moe.cc, FlashInfer 0.6.3's exact signatures) allocates its workspace through
TVM-FFI's environment allocator as 0.6.3's runner does, and records the allocation and every
operand it got; the stand-in libcudart (fake_cudart.c) serves cudaMallocAsync/cudaFreeAsync
from host memory and says on which stream. Checked:

* the allocator: installed for each call only (the thread's previous allocator back after
  it, a failing call included), memory ordered on the call's stream and freed on it, a
  workspace the runner keeps freed when the runner goes; the same call without it fails
  "allocator is nullptr";
* per mode (bfloat16, float16, fp8 per-tensor, DeepSeek fp8 block scale): every operand at
  the runner as given (no copy), ``quant_scales`` as an Array of Tensor objects over the
  caller's memory with the mode's shapes, each released once, the scalars in place;
* the prepared launch of the decode shape, an allocated output, zero tokens;
* every bad argument of each mode refused, naming it, before any call, nothing leaked.

FlashInfer 0.7.4 (``fused_moe_stand_in_074``: the stand-in built with -DFAKE_MOE_074, 0.7.4's
exact signatures, in a kernel dir marked 0.7.4): the same calls through 0.7.4's lines -- init's
layout, run_moe's own line with upstream's values for the added arguments, the GEMM2 tactic
in the combined list -- and the workspace: sized by the runner's get_workspace_size (the
stand-in's size is a function of every argument and of the runner, and it refuses a smaller
buffer), the stream's cached one for eager calls, a workspace of its own for a prepared
launch and under graph capture, no environment allocator. The 0.6.3 lines are refused there
(require_match, and the stand-in's typed arity check), as 0.7.4's are on 0.6.3's, and a
module marked with the other release makes no runner.

Each scenario runs in its own interpreter (fused_moe_typed_driver.py), so the stand-in never
shadows a real module in this process."""

from __future__ import annotations

import pytest

from testmod_build import run_driver

MODES = ["bf16", "fp16", "fp8", "block"]


@pytest.mark.parametrize("scenario", [
    "allocator_on_the_call_stream", "without_allocator_the_call_fails",
    "previous_allocator_restored", "profile_workspace_lives_with_the_runner"])
def test_environment_allocator(scenario, fused_moe_stand_in):
    run_driver("fused_moe_typed_driver.py", fused_moe_stand_in, scenario)


@pytest.mark.parametrize("mode", MODES)
def test_fused_moe_packs_every_argument(mode, fused_moe_stand_in):
    run_driver("fused_moe_typed_driver.py", fused_moe_stand_in, "modes_record", mode)


@pytest.mark.parametrize("scenario", [
    "biases_and_scalar_forms", "output_allocated_on_the_call_stream",
    "zero_tokens_makes_no_call", "prepared_decode", "tensor_array_ownership"])
def test_fused_moe_calls(scenario, fused_moe_stand_in):
    run_driver("fused_moe_typed_driver.py", fused_moe_stand_in, scenario)


@pytest.mark.parametrize("mode", MODES)
def test_bad_inputs_are_refused_naming_the_argument(mode, fused_moe_stand_in):
    run_driver("fused_moe_typed_driver.py", fused_moe_stand_in, "bad_inputs", mode)


# ----------------------------------------------------------------------------- 0.7.4

@pytest.mark.parametrize("mode", MODES)
def test_074_packs_every_argument(mode, fused_moe_stand_in_074):
    run_driver("fused_moe_typed_driver.py", fused_moe_stand_in_074, "modes_record", mode)


@pytest.mark.parametrize("scenario", [
    "workspace_074", "workspace_while_capturing_074", "open_ended_074", "prepared_decode",
    "biases_and_scalar_forms", "output_allocated_on_the_call_stream",
    "zero_tokens_makes_no_call"])
def test_074_calls(scenario, fused_moe_stand_in_074):
    run_driver("fused_moe_typed_driver.py", fused_moe_stand_in_074, scenario)


@pytest.mark.parametrize("mode", MODES)
def test_074_bad_inputs_are_refused_naming_the_argument(mode, fused_moe_stand_in_074):
    run_driver("fused_moe_typed_driver.py", fused_moe_stand_in_074, "bad_inputs", mode)


def test_063_refuses_074_lines(fused_moe_stand_in):
    run_driver("fused_moe_typed_driver.py", fused_moe_stand_in, "release_lines_063")


@pytest.mark.parametrize("label", ["0.6.3", "0.7.4"])
def test_a_module_of_the_other_release_makes_no_runner(label, fused_moe_stand_in,
                                                       fused_moe_stand_in_074):
    """0.7.4's stand-in labelled 0.6.3, 0.6.3's labelled 0.7.4: init gets the labelled
    release's argument list, which the module refuses."""
    so, env = fused_moe_stand_in_074 if label == "0.6.3" else fused_moe_stand_in
    env = {k: v for k, v in env.items() if k != "FLASHINFER_CY_KERNEL_DIR"}
    run_driver("fused_moe_typed_driver.py", (so, dict(env, FUSED_MOE_LABEL=label)),
               "mislabelled")
