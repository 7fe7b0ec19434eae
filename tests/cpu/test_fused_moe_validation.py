"""Configuration checking of the CUTLASS fused MoE runner API, on a machine without a GPU:
every configuration outside the supported modes raises a TypeError/ValueError naming the
argument before the kernel module is loaded (``no_cuda`` turns a load into a failure), and
every supported one gets as far as loading it. The runner's method lines are table lines of
the object ``init`` returns (their C++ check: test_abi_tables.py)."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import flashinfer_cy as fc
from cuda_guard import no_cuda, raises, reaches_cuda
from flashinfer_cy.kernels import fused_moe as moe


@pytest.fixture(autouse=True)
def _no_cuda(monkeypatch):
    no_cuda(monkeypatch)


@pytest.mark.parametrize("act,weight,out,block_scale", list(moe.MODES))
def test_supported_modes_reach_the_module(act, weight, out, block_scale):
    reaches_cuda(lambda: fc.CutlassFusedMoE(act, weight, out, block_scale=block_scale))


def test_output_dtype_defaults_to_the_activation_dtype_and_dtype_objects_work():
    reaches_cuda(lambda: fc.CutlassFusedMoE("bfloat16", "bfloat16"))
    reaches_cuda(lambda: fc.CutlassFusedMoE(np.dtype("float16"), np.dtype("float16")))
    raises(lambda: fc.CutlassFusedMoE("float8_e4m3fn", "float8_e4m3fn"), ValueError,
           "output_dtype=float8_e4m3fn")  # fp8 output: upstream refuses it too


@pytest.mark.parametrize("args,kwargs,words", [
    (("float32", "float32"), {}, "activation_dtype=float32"),
    (("bfloat16", "float16"), {}, "weight_dtype=float16"),
    (("float16", "float16", "bfloat16"), {}, "output_dtype=bfloat16"),
    (("bfloat16", "float8_e4m3fn"), {}, "block_scale=False"),  # weight-only fp8: not covered
    (("bfloat16", "bfloat16"), {"block_scale": True}, "block_scale=True"),
    (("float8_e4m3fn", "float8_e4m3fn", "bfloat16"), {"block_scale": True}, "block_scale=True"),
    (("uint8", "uint8"), {}, "not a supported fused MoE configuration"),
])
def test_unsupported_configurations_raise_before_the_module(args, kwargs, words):
    raises(lambda: fc.CutlassFusedMoE(*args, **kwargs), ValueError, words)


@pytest.mark.parametrize("args,kwargs,words", [
    ((3, "bfloat16"), {}, "activation_dtype"),
    (("bfloat16", None), {}, "weight_dtype"),
    (("bfloat16", "bfloat16", 1.5), {}, "output_dtype"),
    (("bfloat16", "float8_e4m3fn"), {"block_scale": 1}, "block_scale"),
])
def test_bad_argument_types_raise_before_the_module(args, kwargs, words):
    raises(lambda: fc.CutlassFusedMoE(*args, **kwargs), TypeError, words)


def test_method_lines_are_methods_of_init():
    assert moe.INIT.method_of is None and moe.INIT.symbol == "init"
    assert set(moe.METHODS) == {"run_gemm_profile", "get_tactic_num", "get_gemm1_tactic_count",
                                "get_gemm2_tactic_count", "run_moe", "run_moe_min_latency"}
    for name, b in moe.METHODS.items():
        assert (b.uri, b.symbol, b.method_of) == (moe.URI, name, "init")
    assert moe.METHODS["run_moe"].writes == ("output",)


def test_a_method_line_takes_no_layouts():
    with pytest.raises(ValueError, match="method line"):
        fc.Binding("fused_moe_90", "run_moe", "x:I", method_of="init",
                   layouts={"0.7.4": "x:I"})


# flashinfer-python 0.6.3's flashinfer.fused_moe.cutlass_fused_moe parameters (core.py).
UPSTREAM_PARAMETERS = (
    "input token_selected_experts token_final_scales fc1_expert_weights fc2_expert_weights "
    "output_dtype quant_scales fc1_expert_biases fc2_expert_biases input_sf swiglu_alpha "
    "swiglu_beta swiglu_limit tp_size tp_rank ep_size ep_rank cluster_size cluster_rank output "
    "enable_alltoall use_deepseek_fp8_block_scale use_w4_group_scaling use_mxfp8_act_scaling "
    "min_latency_mode use_packed_weights tune_max_num_tokens enable_pdl activation_type").split()


def test_fused_moe_takes_upstreams_argument_names():
    """The typed call's parameters are flashinfer-python's (the first seven in its order),
    plus the tactic pair upstream's autotuner picks and the stream; the configuration
    flags belong to the constructor."""
    params = list(inspect.signature(fc.CutlassFusedMoE.fused_moe).parameters)[1:]
    assert params[:7] == UPSTREAM_PARAMETERS[:7]
    assert set(params) - set(UPSTREAM_PARAMETERS) == {"profile_ids", "stream"}
    prep = inspect.signature(fc.CutlassFusedMoE.prepare).parameters
    assert list(prep)[1:] == ["args", "kwargs"]  # forwarded to fused_moe as they are
