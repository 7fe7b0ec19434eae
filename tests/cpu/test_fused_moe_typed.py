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
