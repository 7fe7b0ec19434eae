"""CUTLASS fused MoE on Hopper (FlashInfer's ``fused_moe_90`` module, 0.6.3 and 0.7.4).

**Not yet run on a GPU.** Verified on the CPU against a stand-in module with the same C++
signatures (tests/cpu/fake_fused_moe.cc): the runner's lifecycle, its method calls, the typed
``fused_moe(...)`` call's checks and packing, and the workspace allocation path. The
module's one kernel export, ``init``, returns a ``FusedMoeRunner`` (a TVM-FFI module
object); everything else is a method that object serves by name (``GetFunction``): the
tactic counts, the GEMM profiler and ``run_moe``.

* one runner per configuration (dtypes and quantization mode) while something uses it:
  :class:`CutlassFusedMoE` objects of one configuration share it; it is released once,
  when the last of them, of their method Functions and of any prepared launch holding
  one is gone (each method holds the runner: its C++ lambda points at the runner without
  a reference of its own);
* each method is looked up once per runner and cached; calls release the GIL and run on
  the caller's stream, like every export call;
* ``fused_moe(...)`` checks every argument for the mode (flashinfer_cy/kernels/
  fused_moe_run.pyx), builds ``quant_scales`` as the ``ffi::Array`` of ``ffi::Tensor``
  objects the runner takes, and makes one call; ``prepare(...)`` does all of that once
  for a prepared launch (the decode step's shape);
* 0.6.3's runner allocates its workspace itself on every ``run_moe`` (``alloc_tensor``,
  TVM-FFI's environment DLPack allocator; it has no workspace-size query): the run and
  profile methods are ``Binding(..., env_alloc=True)`` lines, so every call installs
  flashinfer_cy's allocator (cudaMallocAsync / cudaFreeAsync on the call's stream,
  include/flashinfer_cy/env_alloc.h) in the calling thread for the call;
* 0.7.4's runner takes the workspace from its caller (``workspace_buffer``) and sizes it
  with its own ``get_workspace_size`` method: the runner made by a 0.7.4 module (``init``
  with 0.7.4's layout) is called through :data:`METHODS_074`, and ``fused_moe(...)`` asks
  ``get_workspace_size`` for the call's shape (the last answer kept per runner) and passes
  the stream's cached workspace (``stream_scratch``, grown when a shape needs more), or,
  under ``prepare()`` or while the stream captures a graph, a workspace of its own that the
  prepared launch or the graph keeps. Its run line installs no allocator; the profile
  method still allocates its own (``env_alloc``).
"""

from __future__ import annotations

import threading
import weakref

from flashinfer_cy._core.binding import Binding
from flashinfer_cy._core.prepared import prepare as _prepare
from flashinfer_cy._core.runtime import int_array
from flashinfer_cy.abi import layouts as _layouts
from flashinfer_cy.abi import TABLES_VERSION
from flashinfer_cy.kernels.fused_moe_run import (ARGUMENTS, ARGUMENTS_074, MoESpec,
                                                 WorkspaceSize, run_moe)

__all__ = ["CutlassFusedMoE"]

URI = "fused_moe_90"
_074 = "0.7.4"

# fused_moe/cutlass_backend/flashinfer_cutlass_fused_moe_binding.cu: the export, then the
# methods FusedMoeRunner::GetFunction serves (its typed lambdas' parameters, in order). The
# run and profile methods allocate their workspaces with alloc_tensor (env_alloc).
_INIT = ("activation_dtype:D weight_dtype:D output_dtype:D use_deepseek_fp8_block_scale:B "
         "use_w4_group_scaling:B use_mxfp8_act_scaling:B use_packed_weights:B")
# 0.7.4's init adds two flags, passed as 0.7.4's cutlass_fused_moe passes them for the modes
# here: use_fused_finalize True (its default outside torch's deterministic mode, and what
# 0.6.3's runner always does: moe_kernels.h use_fused_finalize_ = true), and
# use_wfp4afp8_humming False (the MXFP4-weight x fp8 Hopper path, not a mode here).
INIT = Binding(URI, "init", _INIT, layouts={_074: _layouts.append(
    _INIT, "use_fused_finalize:B=True use_wfp4afp8_humming:B=False")})
_SCALARS = ("tp_size:I tp_rank:I ep_size:I ep_rank:I cluster_size:I cluster_rank:I "
            "enable_alltoall:B min_latency_mode:B profile_ids:A? enable_pdl:B "
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
        "profile_id:I do_preparation:B enable_pdl:B activation_type:I", method_of="init",
        env_alloc=True),
    "get_tactic_num": Binding(URI, "get_tactic_num", "", method_of="init"),
    "get_gemm1_tactic_count": Binding(URI, "get_gemm1_tactic_count", "", method_of="init"),
    "get_gemm2_tactic_count": Binding(URI, "get_gemm2_tactic_count", "", method_of="init"),
    "run_moe": Binding(URI, "run_moe", _OPERANDS + _SCALARS, device="input",
                       method_of="init", env_alloc=True),
    "run_moe_min_latency": Binding(
        URI, "run_moe_min_latency",
        _OPERANDS + "num_active_experts_per_node:T! experts_to_token_score:T! "
        "active_expert_global_ids:T! " + _SCALARS, device="input", method_of="init",
        env_alloc=True),
}

# flashinfer 0.7.4's runner (written_for="0.7.4"; the profile and tactic methods are the
# tables' lines: 0.7.4 declares them alike). Its run_moe takes four more arguments after
# swiglu_limit (clamped_relu2_limit, situ_beta, situ_linear_beta: the parameters of
# activations not bound here, None; swizzled_input_sf: how input_sf is laid out, unused
# without input_sf, True as 0.7.4's cutlass_fused_moe passes it), then the caller's
# workspace_buffer and nvfp4_4over6_code (-1, NVFP4_4OVER6_CODE_FROM_ENV, what
# cutlass_fused_moe passes when nvfp4_4over6 is not given; only NVFP4 modes read it).
# The workspace is sized by the runner's own get_workspace_size (a method 0.6.3 lacks) and
# always given by the typed call (fused_moe_run.pyx), so the run line installs no
# environment allocator: a run without workspace_buffer would need one (the runner would
# alloc_tensor) and is refused by call() before it reaches the runner. run_gemm_profile
# still allocates its own (env_alloc, the tables' line).
_NEW_074 = ("clamped_relu2_limit:T? situ_beta:T? situ_linear_beta:T? swizzled_input_sf:B ")
_SCALARS_074 = _SCALARS + " workspace_buffer:T?! nvfp4_4over6_code:I"
METHODS_074 = {
    **{name: METHODS[name] for name in ("run_gemm_profile", "get_tactic_num",
                                        "get_gemm1_tactic_count", "get_gemm2_tactic_count")},
    "run_moe": Binding(URI, "run_moe", _OPERANDS + _NEW_074 + _SCALARS_074, device="input",
                       method_of="init", written_for=_074),
    # (no run_moe_min_latency: 0.7.4's has 33 arguments, more than a call frame holds
    # (binding.pxd MAX_ARGS), and flashinfer-python never calls it: its cutlass_fused_moe
    # raises NotImplementedError for min_latency_mode in 0.6.3 and 0.7.4 alike.
    # abi/known_differences.py)
    "get_workspace_size": Binding(
        URI, "get_workspace_size",
        "num_rows:I hidden_size:I inter_size:I num_experts_total:I experts_per_token:I "
        "tp_size:I tp_rank:I ep_size:I ep_rank:I min_latency_mode:B base_activation_type:I",
        method_of="init", written_for=_074),
}
# Each release's runner methods, by the release of the module init was called on.
RELEASE_METHODS = {"0.6.3": METHODS, _074: METHODS_074}
# The run methods' argument naming the caller's workspace, in the releases that take one.
_WORKSPACE_ARG = "workspace_buffer"

# run_moe packs each release's line by position (fused_moe_run.pyx): the lines must be
# those lists, checked once here rather than on every call.
for _line, _names in ((METHODS["run_moe"], ARGUMENTS), (METHODS_074["run_moe"], ARGUMENTS_074)):
    if list(_line.names) != list(_names):
        raise AssertionError(f"{_line!r} is not packed as fused_moe_run's {_names}")
del _line, _names

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
        # the lines of the module's release (INIT's first call loaded it): a release
        # without its own lines gets the tables', whose first method call refuses it
        self.release = INIT.release
        self.lines = RELEASE_METHODS.get(self.release, METHODS)
        self.counts = None
        self.spec = MoESpec(act, weight, out, block_scale)
        self.profiles = {}  # (gemm1, gemm2) -> its Array<int64>, made once
        # 0.7.x: the runner's get_workspace_size on this runner, its last answer kept
        self.workspace = (WorkspaceSize(self.lines["get_workspace_size"],
                                        self.method("get_workspace_size"))
                          if "get_workspace_size" in self.lines else None)

    def query(self, name: str):
        """A tactic query (no arguments) straight through its Function, never recorded by a
        prepare() in progress (a prepared launch is the run_moe call only)."""
        return self.method(name)()

    def tactic_counts(self):
        if self.counts is None:
            self.counts = (self.query("get_gemm1_tactic_count"),
                           self.query("get_gemm2_tactic_count"))
        return self.counts

    def profile_ids(self, value):
        """``value`` (None, or a (GEMM1, GEMM2) tactic index pair, -1 for the default) as
        run_moe's ``profile_ids`` argument, checked against the runner's tactic counts."""
        if value is None:
            return None
        if type(value) is tuple and len(value) == 2 and type(value[0]) is int \
                and type(value[1]) is int:  # (bools equal ints: they must not match a key)
            array = self.profiles.get(value)  # the pair of a previous call, checked then
            if array is not None:
                return array
        try:
            pair = tuple(value)
        except TypeError:
            raise TypeError(f"profile_ids: expected None or a (gemm1, gemm2) pair of tactic "
                            f"indices, got {value!r}") from None
        if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, int) for v in pair):
            raise TypeError(f"profile_ids: expected None or a (gemm1, gemm2) pair of int "
                            f"tactic indices, got {value!r}")
        for which, index, count in zip(("gemm1", "gemm2"), pair, self.tactic_counts()):
            if not -1 <= index < count:
                raise ValueError(f"profile_ids: the {which} index must be -1 (the runner's "
                                 f"default) or 0..{count - 1} (this runner's {which} "
                                 f"tactics), got {index}")
        array = self.profiles.get(pair)
        if array is None:
            gemm1, gemm2 = pair
            if self.release == _074 and gemm2 != -1:
                # 0.7.x's runner takes the GEMM2 index in the combined tactic list only
                # (setRunnerProfiles: [gemm1 count, gemm1 + gemm2 count)); 0.6.3's took
                # the index within GEMM2's tactics as well
                gemm2 += self.tactic_counts()[0]
            array = self.profiles[pair] = int_array([gemm1, gemm2])
        return array

    def line(self, name: str):
        """Method ``name``'s table line for this runner's release (KeyError naming the
        release's methods)."""
        b = self.lines.get(name)
        if b is None:
            raise KeyError(f"{name!r}: the fused MoE runner of flashinfer "
                           f"{self.release or TABLES_VERSION} serves {sorted(self.lines)}"
                           + ("; get_workspace_size is 0.7.x's" if name == "get_workspace_size"
                              else ""))
        return b

    def method(self, name: str):
        """The Function of method ``name`` on this runner (checked, looked up once)."""
        return self.line(name).method(self.obj, INIT)

    def call(self, name: str, args, stream):
        b = self.line(name)
        at = b.arg_index(_WORKSPACE_ARG)
        if at >= 0 and len(args) == b.nargs and args[at] is None:
            raise ValueError(
                f"{name}: workspace_buffer is None; flashinfer {self.release}'s runner would "
                f"allocate it through TVM-FFI's environment allocator, which this line does "
                f"not install: pass a 1-D uint8 CUDA buffer of the bytes get_workspace_size "
                f"answers for the call (or use fused_moe(), which does)")
        return b(*args, stream=stream, method=self.method(name))


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
    **Not yet run on a GPU** (module docstring): verified on the CPU against a stand-in.

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
        its fixed 128x16x128 tile and ignores the ids). The GEMM2 index counts within
        GEMM2's tactics on either release (0.7.x's runner takes it in the combined list:
        ``fused_moe`` adds the GEMM1 count for it)."""
        return self._runner.tactic_counts()

    @property
    def release(self) -> str:
        """The FlashInfer release of the loaded module, whose runner lines this object
        calls (:data:`RELEASE_METHODS`)."""
        return self._runner.release

    @property
    def methods(self) -> dict:
        """The runner's method lines of that release, by name: :data:`METHODS` (0.6.3),
        :data:`METHODS_074` (0.7.4)."""
        return dict(self._runner.lines)

    @property
    def num_tactics(self) -> int:
        """All tactics of both GEMMs (the runner's ``get_tactic_num``)."""
        return self._runner.query("get_tactic_num")

    def fused_moe(self, input, token_selected_experts, token_final_scales,
                  fc1_expert_weights, fc2_expert_weights, output_dtype=None,
                  quant_scales=None, *, fc1_expert_biases=None, fc2_expert_biases=None,
                  input_sf=None, tp_size=1, tp_rank=0, ep_size=1, ep_rank=0, output=None,
                  activation_type="swiglu", enable_pdl=None, profile_ids=None, stream=None):
        """The routed MLP of a mixture of experts, one GIL-free ``run_moe`` call
        (flashinfer-python's ``cutlass_fused_moe``, argument names included; the math and
        the modes' ``quant_scales``: flashinfer_cy/kernels/fused_moe_run.pyx).

        ``input`` ``[tokens, hidden]`` (the activation dtype); ``token_selected_experts``
        int32 and ``token_final_scales`` float32, both ``[tokens, top_k]`` (top_k 1..8);
        ``fc1_expert_weights`` ``[E, 2 * inter, hidden]`` and ``fc2_expert_weights``
        ``[E, hidden, inter]`` (the weight dtype; ``E`` the experts on this rank, 1..256);
        ``output_dtype``: the runner's (given: must match); ``quant_scales``: per mode (none
        for float16/bfloat16); biases ``[E, 2 * inter]`` and ``[E, hidden]`` of the output
        dtype, both or neither; ``tp_size``/``tp_rank``, ``ep_size``/``ep_rank``: this
        rank's shard (the weights are the shard; ``E * ep_size`` experts in all);
        ``activation_type``: ``"swiglu"`` (default) or ``"geglu"`` (or flashinfer's
        ``ActivationType``); ``profile_ids``: a (GEMM1, GEMM2) tactic pair
        (:attr:`tactic_counts`, -1 each for the runner's default; None: the defaults, as
        flashinfer-python without tuning). Everything contiguous, on one CUDA device.
        Expert ids are not range-checked (they are device values; no sync is made).
        ``output`` ``[tokens, hidden]``: allocated as a DeviceArray on the call's stream
        when None. Returns ``output``. Asynchronous on ``stream``."""
        r = self._runner
        if output_dtype is not None:
            name = _dtype_name(output_dtype, "output_dtype")
            if name != r.key[2]:
                raise ValueError(f"output_dtype: this runner was made for {r.key[2]} output, "
                                 f"got {name} (make a CutlassFusedMoE with that output_dtype)")
        return run_moe(r.spec, r.lines["run_moe"], r.method("run_moe"), r.workspace, input,
                       token_selected_experts, token_final_scales, fc1_expert_weights,
                       fc2_expert_weights, quant_scales, fc1_expert_biases, fc2_expert_biases,
                       input_sf, tp_size, tp_rank, ep_size, ep_rank, output, activation_type,
                       enable_pdl, r.profile_ids(profile_ids), stream)

    def prepare(self, *args, **kwargs):
        """:meth:`fused_moe`'s checks and packing once (``quant_scales`` built once), for a
        :class:`~flashinfer_cy.PreparedCall` whose ``launch()`` makes the same ``run_moe``
        call, GIL-free, without re-checking: the decode step's fixed shape. Arguments as
        :meth:`fused_moe`; the launch holds the runner and every tensor given. On 0.6.3
        each launch allocates the runner's workspace again, stream-ordered on the launch's
        stream (nothing waits; that runner has no way to take a workspace from outside); on
        0.7.4 the launch holds a workspace of its own, sized by ``get_workspace_size`` at
        prepare time, and passes it at every launch (no allocation per launch)."""
        return _prepare(_fused_moe, self, *args, **kwargs)

    def method(self, name: str):
        """The :class:`~flashinfer_cy._core.runtime.Function` of runner method ``name``
        (one of :attr:`methods`; KeyError otherwise), for the generic call path
        (``methods[name](*args, method=...)``). It keeps the runner alive."""
        return self._runner.method(name)

    def call(self, name: str, *args, stream=None):
        """Call runner method ``name`` with its C++ arguments in order, packed by its
        table line (:attr:`methods`): the open-ended path (no checks beyond the kinds; on
        0.7.x a run method's ``workspace_buffer`` must be given, ValueError otherwise)."""
        return self._runner.call(name, args, stream)

    def __repr__(self):
        act, weight, out, block_scale = self._runner.key
        return (f"CutlassFusedMoE(activation_dtype={act!r}, weight_dtype={weight!r}, "
                f"output_dtype={out!r}, block_scale={block_scale})")


def _fused_moe(moe: CutlassFusedMoE, *args, **kwargs):
    # prepare() refuses a method of an object with its own prepare(): this is what
    # CutlassFusedMoE.prepare records.
    return moe.fused_moe(*args, **kwargs)
