"""CUTLASS fused MoE on Hopper (FlashInfer 0.6.3's ``fused_moe_90`` module): the runner.

**Not yet run on a GPU.** What this module does today, verified on the CPU against a
stand-in module with the same C++ signatures (tests/cpu/fake_fused_moe.cc): the runner's
lifecycle and its method calls. The module's one kernel export, ``init``, returns a
``FusedMoeRunner`` (a TVM-FFI module object); everything else is a method that object
serves by name (``GetFunction``): the tactic counts, the GEMM profiler and ``run_moe``.

* one runner per configuration (dtypes and quantization mode) while something uses it:
  :class:`CutlassFusedMoE` objects of one configuration share it; it is released once,
  when the last of them, of their method Functions and of any prepared launch holding
  one is gone (each method holds the runner: its C++ lambda points at the runner without
  a reference of its own);
* each method is looked up once per runner and cached; calls release the GIL and run on
  the caller's stream, like every export call.

Not done yet (next step, needs the GPU): packing ``run_moe``'s 24 arguments from a typed
``fused_moe(...)`` with full validation (``quant_scales`` must be an ``ffi::Array`` of
``ffi::Tensor`` *objects*), and the GPU tests. Two facts that step must handle: 0.6.3's
runner allocates its workspace itself on every ``run_moe`` (``alloc_tensor`` through
TVM-FFI's DLPack allocator, which nothing in this package installs yet: without one the
call fails with "allocator is nullptr"), and has no workspace-size query (0.7.x adds
``get_workspace_size`` and a ``workspace_buffer`` argument).
"""

from __future__ import annotations

import threading
import weakref

from flashinfer_cy._core.binding import Binding

__all__ = ["CutlassFusedMoE"]

URI = "fused_moe_90"

# fused_moe/cutlass_backend/flashinfer_cutlass_fused_moe_binding.cu: the export, then the
# methods FusedMoeRunner::GetFunction serves (its typed lambdas' parameters, in order).
INIT = Binding(URI, "init", "activation_dtype:D weight_dtype:D output_dtype:D "
               "use_deepseek_fp8_block_scale:B use_w4_group_scaling:B "
               "use_mxfp8_act_scaling:B use_packed_weights:B")
_SCALARS = ("tp_size:I tp_rank:I ep_size:I ep_rank:I cluster_size:I cluster_rank:I "
            "enable_alltoall:B min_latency_mode:B profile_ids:A enable_pdl:B "
            "base_activation_type:I")
_OPERANDS = ("output:T! input:T token_selected_experts:T token_final_scales:T? "
             "fc1_expert_weights:T fc1_expert_biases:T? fc2_expert_weights:T "
             "fc2_expert_biases:T? quant_scales:A? input_sf:T? swiglu_alpha:T? "
             "swiglu_beta:T? swiglu_limit:T? ")
METHODS = {
    "run_gemm_profile": Binding(
        URI, "run_gemm_profile",
        "input:T fc1_expert_weights:T fc1_expert_biases:T? fc2_expert_weights:T "
        "fc2_expert_biases:T? top_k:I tp_size:I tp_rank:I ep_size:I ep_rank:I "
        "cluster_size:I cluster_rank:I enable_alltoall:B min_latency_mode:B gemm_idx:I "
        "profile_id:I do_preparation:B enable_pdl:B activation_type:I", method_of="init"),
    "get_tactic_num": Binding(URI, "get_tactic_num", "", method_of="init"),
    "get_gemm1_tactic_count": Binding(URI, "get_gemm1_tactic_count", "", method_of="init"),
    "get_gemm2_tactic_count": Binding(URI, "get_gemm2_tactic_count", "", method_of="init"),
    "run_moe": Binding(URI, "run_moe", _OPERANDS + _SCALARS, device="input",
                       method_of="init"),
    "run_moe_min_latency": Binding(
        URI, "run_moe_min_latency",
        _OPERANDS + "num_active_experts_per_node:T! experts_to_token_score:T! "
        "active_expert_global_ids:T! " + _SCALARS, device="input", method_of="init"),
}

# The configurations this package accepts, as (activation, weight, output, block scale):
# the modes of issue 21 that the 0.6.3 runner's constructor builds a runner for.
_F16, _BF16, _FP8 = "float16", "bfloat16", "float8_e4m3fn"
MODES = {
    (_F16, _F16, _F16, False): "float16",
    (_BF16, _BF16, _BF16, False): "bfloat16",
    (_FP8, _FP8, _F16, False): "fp8 per-tensor, float16 output",
    (_FP8, _FP8, _BF16, False): "fp8 per-tensor, bfloat16 output",
    (_BF16, _FP8, _BF16, True): "DeepSeek fp8 block-scale (128x128 blocks)",
}


def _dtype_name(value, name: str) -> str:
    """A dtype given as a name or a framework dtype (``torch.bfloat16``, numpy's float16)."""
    if isinstance(value, str):
        text = value
    elif hasattr(value, "name") and isinstance(getattr(value, "name"), str):  # numpy dtype
        text = value.name
    else:
        text = str(value)
        if not text.startswith("torch."):
            raise TypeError(f"{name}: expected a dtype name such as 'bfloat16', got {value!r}")
    return text.removeprefix("torch.")


def _mode(activation_dtype, weight_dtype, output_dtype, block_scale):
    if not isinstance(block_scale, bool):
        raise TypeError(f"block_scale: expected True or False, got {block_scale!r}")
    act = _dtype_name(activation_dtype, "activation_dtype")
    weight = _dtype_name(weight_dtype, "weight_dtype")
    out = act if output_dtype is None else _dtype_name(output_dtype, "output_dtype")
    key = (act, weight, out, block_scale)
    if key not in MODES:
        known = "; ".join(f"activation={a}, weight={w}, output={o}, block_scale={b} ({what})"
                          for (a, w, o, b), what in MODES.items())
        raise ValueError(f"activation_dtype={act}, weight_dtype={weight}, output_dtype={out}, "
                         f"block_scale={block_scale}: not a supported fused MoE configuration; "
                         f"supported: {known}")
    return key


class _Runner:
    """One ``FusedMoeRunner`` (the ModuleObject ``init`` returned) and what was asked of it."""

    def __init__(self, key):
        act, weight, out, block_scale = key
        self.key = key
        self.obj = INIT(act, weight, out, block_scale, False, False, False)
        kind = self.obj.kind
        if kind != "fused_moe_runner":
            raise TypeError(f"{URI}.init returned a {kind!r} module object, not the fused MoE "
                            f"runner (is {INIT.load()!r} FlashInfer's fused_moe_90 module?)")
        self.counts = None

    def method(self, name: str):
        """The Function of method ``name`` on this runner (checked, looked up once)."""
        return METHODS[name].method(self.obj, INIT)

    def call(self, name: str, args, stream):
        return METHODS[name](*args, stream=stream, method=self.method(name))


_lock = threading.Lock()
_runners: "weakref.WeakValueDictionary[tuple, _Runner]" = weakref.WeakValueDictionary()


def _runner_for(key) -> _Runner:
    """The live runner of configuration ``key``, made on first use (and again after every
    user of the previous one is gone)."""
    with _lock:
        runner = _runners.get(key)
        if runner is None:
            runner = _Runner(key)
            _runners[key] = runner
        return runner


class CutlassFusedMoE:
    """A CUTLASS fused MoE runner of FlashInfer's ``fused_moe_90`` module (Hopper).
    **Not yet run on a GPU** (module docstring): this proves the runner's lifecycle and
    method calls; the typed ``fused_moe(...)`` call is the next step.

    ``activation_dtype``, ``weight_dtype``, ``output_dtype`` (default: the activation
    dtype), ``block_scale`` (DeepSeek fp8 128x128 block scales) must be one of
    :data:`MODES`: float16 or bfloat16 throughout; fp8 (e4m3) activations and weights with
    float16 or bfloat16 output (per-tensor scales); bfloat16 activations with fp8 weights
    and ``block_scale=True``. Anything else is a ValueError, before any module is loaded.

    Objects of one configuration share one runner (made on first use, by the module's
    ``init``); it is released when the last of them, and of the method Functions and
    prepared launches that hold it, is gone.
    """

    def __init__(self, activation_dtype, weight_dtype, output_dtype=None, *,
                 block_scale=False):
        self._runner = _runner_for(_mode(activation_dtype, weight_dtype, output_dtype,
                                         block_scale))

    @property
    def configuration(self) -> tuple:
        """(activation dtype, weight dtype, output dtype, block_scale)."""
        return self._runner.key

    @property
    def tactic_counts(self) -> tuple:
        """(GEMM1 tactics, GEMM2 tactics) the runner offers, asked once. A profile id
        pair for ``run_moe`` is (GEMM1 index, GEMM2 index), -1 each for the runner's
        default (the first tactic of each GEMM; with block scale the runner always uses
        its fixed 128x16x128 tile and ignores the ids)."""
        r = self._runner
        if r.counts is None:
            r.counts = (r.call("get_gemm1_tactic_count", (), None),
                        r.call("get_gemm2_tactic_count", (), None))
        return r.counts

    @property
    def num_tactics(self) -> int:
        """All tactics of both GEMMs (the runner's ``get_tactic_num``)."""
        return self._runner.call("get_tactic_num", (), None)

    def method(self, name: str):
        """The :class:`~flashinfer_cy._core.runtime.Function` of runner method ``name``
        (one of :data:`METHODS`; KeyError otherwise), for the generic call path
        (``METHODS[name](*args, method=...)``). It keeps the runner alive."""
        if name not in METHODS:
            raise KeyError(f"{name!r}: the fused MoE runner's methods are {sorted(METHODS)}")
        return self._runner.method(name)

    def call(self, name: str, *args, stream=None):
        """Call runner method ``name`` with its C++ arguments in order, packed by its
        table line (:data:`METHODS`): the open-ended path (no checks beyond the kinds)."""
        if name not in METHODS:
            raise KeyError(f"{name!r}: the fused MoE runner's methods are {sorted(METHODS)}")
        return self._runner.call(name, args, stream)

    def __repr__(self):
        act, weight, out, block_scale = self._runner.key
        return (f"CutlassFusedMoE(activation_dtype={act!r}, weight_dtype={weight!r}, "
                f"output_dtype={out!r}, block_scale={block_scale})")
