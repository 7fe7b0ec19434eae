"""The CUTLASS fused MoE runner's lifecycle and method calls end to end on the CPU, against a
stand-in ``fused_moe_90`` module with FlashInfer 0.6.3's exact signatures (fake_fused_moe.cc):
``init`` returns a TVM-FFI module object whose ``GetFunction`` serves the runner's methods.
Checked: one runner per configuration, methods looked up once and callable many times,
release exactly once (after the last Python reference, method Function and prepared launch),
every run_moe scalar where the C++ lambda reads it, unknown names and empty objects as clear
errors, and a clean exit with runners alive. Each scenario runs in its own interpreter
(fused_moe_driver.py), so the stand-in never shadows a real module in this process."""

from __future__ import annotations

import pytest

from testmod_build import run_driver


@pytest.mark.parametrize("scenario", [
    "lifecycle", "method_keeps_runner", "run_moe_record", "prepared_launch_keeps_runner",
    "unknown_and_dead", "init_refused", "no_cycles", "exit_with_live_runner"])
def test_runner_against_stand_in(scenario, fused_moe_stand_in):
    run_driver("fused_moe_driver.py", fused_moe_stand_in, scenario)
