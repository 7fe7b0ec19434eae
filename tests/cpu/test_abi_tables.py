"""Every Binding line against FlashInfer's own C++ declarations, for every extracted release.

Calling an export with the wrong argument list is silent memory corruption, so each
``Binding(uri, symbol, "name:KIND ...")`` of every kernel family is checked against
flashinfer_cy/abi/flashinfer-<version>.json (tools/extract_abi.py) by
flashinfer_cy.abi.match.first_mismatch (the rule the runtime applies to a module of another
release before a Binding's first call): the export exists in
that module's sources, same arity, same parameter names in order, and each KIND can carry
the C++ type, and the export returns what the line's family reads (the return type of the
release the line is written for). Bindings are discovered, not listed: every Binding in the globals (and
dicts/tuples/lists) of every flashinfer_cy.kernels module, plus the attention Bindings made
per URI from SIGNATURES for every variant the code can produce. A difference a release is
known to have must be in flashinfer_cy/abi/known_differences.py, with the reason; it is
reported as xfail, and fails when it changes or goes away.
"""

from __future__ import annotations

import importlib
import itertools
import pkgutil

import pytest

import flashinfer_cy.kernels as kernels_pkg
from flashinfer_cy import abi
from flashinfer_cy._core.binding import Binding
from flashinfer_cy.abi import layouts
from flashinfer_cy.abi.known_differences import KNOWN_DIFFERENCES
# The one comparison, shared with the runtime check (Binding.function -> require_match).
from flashinfer_cy.abi.match import P1_NONE_ONLY, first_mismatch, line_returns


# ---------------------------------------------------------------------------- discovery
def _bindings_in(obj, where, depth=0):
    if isinstance(obj, Binding):
        yield where, obj
    elif depth < 3 and isinstance(obj, dict):
        for k, v in obj.items():
            yield from _bindings_in(v, f"{where}[{k!r}]", depth + 1)
    elif depth < 3 and isinstance(obj, (tuple, list)):
        for i, v in enumerate(obj):
            yield from _bindings_in(v, f"{where}[{i}]", depth + 1)


def _attention_bindings(mod):
    """The Bindings ``binding_for`` makes from ``SIGNATURES`` (and ``RELEASE_SIGNATURES``),
    for one URI of every variant attention_uri.variant accepts (dtype, swa, soft cap, fp8 KV:
    the URI changes, the argument list must not), and for MLA under each release's name."""
    from flashinfer_cy.kernels import attention_uri as U
    for family, backend, symbol in mod.SIGNATURES:
        if family == "batch_mla":  # one module per dtype and head dims, no other flags
            for dtype, (ckv, kpe), release in itertools.product(
                    U.SUPPORTED_DTYPES, U.MLA_HEAD_DIMS, U.MLA_RELEASES):
                b = mod.binding_for(U.mla_variant(dtype, ckv, kpe, backend, release), symbol)
                assert abi.module_key(b.uri) == f"{family}/{backend}", b.uri
                yield f"{mod.__name__}.SIGNATURES[{(family, backend, symbol)!r}] ({b.uri})", b
            continue
        for dtype, window, cap, kv in itertools.product(
                U.SUPPORTED_DTYPES, (-1, 64), (0.0, 30.0), (None, U.FP8_KV)):
            try:
                v = U.variant(family, dtype, U.HEAD_DIMS[0], window, cap, backend, kv)
            except ValueError:
                continue  # a combination the package refuses: no module is ever asked for
            b = mod.binding_for(v, symbol)
            assert abi.module_key(b.uri) == f"{family}/{backend}", b.uri
            yield f"{mod.__name__}.SIGNATURES[{(family, backend, symbol)!r}] ({b.uri})", b


def exported_as(b) -> str:
    """The name a line is checked (and keyed in known_differences) by: the export, or
    ``<export>().<method>`` for a method of the object an export returns."""
    return b.symbol if b.method_of is None else f"{b.method_of}().{b.symbol}"


def discover():
    """[(where, Binding)] of every kernel family, one per distinct (module, symbol,
    signature, release the line is written for)."""
    found, seen = [], set()
    for info in pkgutil.iter_modules(kernels_pkg.__path__):
        mod = importlib.import_module(f"{kernels_pkg.__name__}.{info.name}")
        hits = [h for name, value in vars(mod).items() if not name.startswith("__")
                for h in _bindings_in(value, f"{mod.__name__}.{name}")]
        if hasattr(mod, "SIGNATURES") and hasattr(mod, "binding_for"):
            hits += list(_attention_bindings(mod))
        for where, b in hits:
            key = (abi.module_key(b.uri), exported_as(b), b.signature, b.written_for)
            if key not in seen:
                seen.add(key)
                found.append((where, b))
    return found


BINDINGS = discover()
VERSIONS = abi.versions()
# release -> {(module key, symbol)} of the exports with a line written for that release
RELEASE_LINES = {}
for _, _b in BINDINGS:
    if _b.written_for != abi.TABLES_VERSION:
        RELEASE_LINES.setdefault(_b.written_for, set()).add((abi.module_key(_b.uri), _b.symbol))


# ---------------------------------------------------------------------------- tests
def test_discovery_finds_every_family():
    """A discovery that silently found nothing would pass every check below."""
    keys = {abi.module_key(b.uri) for _, b in BINDINGS}
    expected = {"norm", "page", "gdn_prefill_sm90", "single_decode/fa2", "batch_decode/fa2",
                "single_prefill/fa2", "single_prefill/fa3", "batch_prefill/fa2",
                "batch_prefill/fa3", "batch_mla/fa2", "batch_mla/fa3", "fused_moe_90"}
    assert expected <= keys, sorted(expected - keys)
    assert VERSIONS and "0.6.3" in VERSIONS


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("where,b", BINDINGS,
                         ids=[f"{abi.module_key(b.uri)}.{exported_as(b)}"
                              + ("" if b.written_for == abi.TABLES_VERSION else
                                 f"@{b.written_for}") for _, b in BINDINGS])
def test_binding_matches_the_release(version, where, b):
    # A line written for a later release (a family's second line for an export) calls
    # modules of that release only; the tables' line is not called on a release that has
    # its own line for the export (the family picks that one).
    if version != b.written_for and (b.written_for != abi.TABLES_VERSION
                                     or (abi.module_key(b.uri), b.symbol) in
                                     RELEASE_LINES.get(version, ())):
        return
    # A release with a layout is called with that argument list: it is what must match.
    signature = b.signature
    if version in b.layouts:
        signature = layouts.parse(b.signature, b.layouts[version])[0]
    mismatch = first_mismatch(version, b.uri, b.symbol, signature, b.method_of,
                              line_returns(b.written_for, b.uri, b.symbol, b.method_of))
    known = KNOWN_DIFFERENCES.get((version, abi.module_key(b.uri), exported_as(b)))
    if known is None:
        assert mismatch is None, (f"{where} = Binding({b.uri!r}, {b.symbol!r}, "
                                  f"{signature!r}) does not match flashinfer {version}: "
                                  f"{mismatch}")
        return
    assert mismatch is not None, (f"known_differences lists {version} {b.symbol} "
                                  f"({known['reason']}) but the Binding now matches: drop it")
    assert mismatch.startswith(known["expect"]), (
        f"{where}: flashinfer {version} differs otherwise than reviewed ({known['expect']!r}): "
        f"{mismatch}")
    pytest.xfail(f"known flashinfer {version} difference: {known['reason']} -- {mismatch}")


def test_every_layout_is_for_another_extracted_release():
    """A layout for the tables' own release, or for a release with no ABI file, would never
    be checked against a C++ declaration."""
    for where, b in BINDINGS:
        for version in b.layouts:
            assert version in VERSIONS and version != abi.TABLES_VERSION, (where, version)


def test_release_lines_are_for_extracted_releases_and_beside_a_tables_line():
    """A line for another release is checked against that release only: it must have an
    ABI file, and the tables' line of the same export must exist (the family's default),
    unless the tables' release has no such export or method at all (0.7.4's fused MoE
    get_workspace_size): then there is nothing to stand beside."""
    tables = {(abi.module_key(b.uri), b.symbol) for _, b in BINDINGS
              if b.written_for == abi.TABLES_VERSION}
    only_later = {(abi.module_key(b.uri), b.symbol) for _, b in BINDINGS
                  if b.written_for != abi.TABLES_VERSION
                  and abi.export(abi.TABLES_VERSION, b.uri, b.symbol, b.method_of)[1] is None}
    assert RELEASE_LINES, "the sampling family's 0.7.4 lines were not discovered"
    assert ("fused_moe_90", "get_workspace_size") in only_later, only_later
    for version, exports in RELEASE_LINES.items():
        assert version in VERSIONS and version != abi.TABLES_VERSION, version
        assert exports - only_later <= tables, sorted(exports - only_later - tables)


def test_every_known_difference_names_a_binding():
    """An entry for an export nothing binds is a typo, not a reviewed difference."""
    bound = {(abi.module_key(b.uri), exported_as(b)) for _, b in BINDINGS}
    for version, key, symbol in KNOWN_DIFFERENCES:
        assert version in VERSIONS, version
        assert (key, symbol) in bound, (key, symbol)


# The checker itself must be able to fail: plant mismatches in a real line.
_NORM = "out:T! input:T weight:T eps:F enable_pdl:B"


@pytest.mark.parametrize("signature,expect", [
    ("input:T out:T! weight:T eps:F enable_pdl:B",
     "argument 0: C++ TensorView out, Binding input"),
    ("out:T! input:T weight:T eps:F",
     "arity: flashinfer 0.6.3 declares 5 arguments, the Binding 4"),
    ("out:T! input:T weight:T eps:I enable_pdl:B",
     "argument 3 (eps): C++ double cannot take kind I"),
    ("out:T! input:T weight:T? eps:F enable_pdl:B", "argument 2 (weight): C++ TensorView cannot"),
])
def test_planted_mismatch_is_reported(signature, expect):
    assert first_mismatch("0.6.3", "norm", "rmsnorm", _NORM) is None
    msg = first_mismatch("0.6.3", "norm", "rmsnorm", signature)
    assert msg is not None and msg.startswith(expect), msg
    assert "flashinfer/data/csrc/flashinfer_norm_binding.cu:18" in msg


def test_p1_tensor_objects_are_flagged():
    # layernorm takes ffi::Tensor: bound as T it would get a DLTensor* (P1)
    msg = first_mismatch("0.6.3", "norm", "layernorm", "out:T! input:T gamma:T beta:T eps:F")
    assert msg is not None and "P1" in msg and "argument 0 (out)" in msg
    # a generated Optional<ffi::Tensor> is accepted only for the reviewed None-only families
    sig = dict((k[2], v[0]) for k, v in _signatures().items()
               if k[:2] == ("single_decode", "fa2"))["run"]
    uri = "single_decode_with_kv_cache_dtype_q_f16_dtype_kv_f16_dtype_o_f16_head_dim_qk_128_" \
          "head_dim_vo_128_posenc_0_use_swa_False_use_logits_cap_False"
    assert first_mismatch("0.6.3", uri, "run", sig) is None
    P1_NONE_ONLY.pop("single_decode/fa2")
    try:
        assert "P1" in first_mismatch("0.6.3", uri, "run", sig)
    finally:
        P1_NONE_ONLY["single_decode/fa2"] = "restored"


def _served(version):
    return {(key, export, name) for key, m in abi.load(version)["modules"].items()
            for export, methods in m.get("methods", {}).items() for name in methods}


def test_every_method_of_a_returned_object_is_bound():
    """The methods the tables' release serves from an object an export returns (the fused
    MoE runner's GetFunction) each have a line, checked above like an export's; a line
    written for a later release is a method that release serves."""
    bound = {(abi.module_key(b.uri), b.method_of, b.symbol) for _, b in BINDINGS
             if b.method_of is not None and b.written_for == abi.TABLES_VERSION}
    served = _served(abi.TABLES_VERSION)
    assert served, "the extracted ABI lists no methods (tools/extract_abi.py RUNNER_MODULES)"
    assert served == bound, (sorted(served - bound), sorted(bound - served))
    for version in VERSIONS:
        later = {(abi.module_key(b.uri), b.method_of, b.symbol) for _, b in BINDINGS
                 if b.method_of is not None and b.written_for == version}
        assert later <= _served(version), (version, sorted(later - _served(version)))


def test_planted_method_mismatch_is_reported():
    from flashinfer_cy.kernels.fused_moe import METHODS
    b = METHODS["run_moe"]
    assert first_mismatch("0.6.3", b.uri, "run_moe", b.signature, "init") is None
    items = b.signature.split()
    items[13], items[14] = items[14], items[13]  # tp_rank before tp_size
    msg = first_mismatch("0.6.3", b.uri, "run_moe", " ".join(items), "init")
    assert msg.startswith("argument 13: C++ int64_t tp_size, Binding tp_rank"), msg
    assert "flashinfer_cutlass_fused_moe_binding.cu:721" in msg
    # a method is not an export, nor the other way round
    assert first_mismatch("0.6.3", b.uri, "run_moe", b.signature).startswith(
        "export run_moe is not in module fused_moe_90")
    assert first_mismatch("0.6.3", b.uri, "init", "x:D", "init").startswith(
        "method init of init()'s object is not in module fused_moe_90")
    # Optional<Array<Tensor>> quant_scales takes an object or None, never a tensor (P1)
    items = b.signature.split()
    items[8] = "quant_scales:T?"
    assert "cannot take kind T?" in first_mismatch("0.6.3", b.uri, "run_moe", " ".join(items),
                                                   "init")


def test_planted_074_method_mismatches_are_reported():
    """The fused MoE lines a 0.7.4 runner is called with -- init's layout, run_moe's and
    get_workspace_size's own lines -- fail like any other: an argument moved, left out or
    of another kind, and the tables' lines against 0.7.4."""
    from flashinfer_cy.kernels.fused_moe import INIT, METHODS, METHODS_074

    init = layouts.parse(INIT.signature, INIT.layouts["0.7.4"])[0]
    assert first_mismatch("0.7.4", INIT.uri, "init", init) is None
    assert first_mismatch("0.7.4", INIT.uri, "init", INIT.signature).startswith(
        "arity: flashinfer 0.7.4 declares 9 arguments, the Binding 7")
    items = init.split()
    assert items[7:] == ["use_fused_finalize:B", "use_wfp4afp8_humming:B"]
    msg = first_mismatch("0.7.4", INIT.uri, "init", " ".join(items[:7] + items[:6:-1]))
    assert msg.startswith("argument 7: C++ bool use_fused_finalize, Binding "
                          "use_wfp4afp8_humming"), msg

    run = METHODS_074["run_moe"]
    assert first_mismatch("0.7.4", run.uri, "run_moe", run.signature, "init") is None
    assert first_mismatch("0.7.4", run.uri, "run_moe", METHODS["run_moe"].signature,
                          "init").startswith("arity: flashinfer 0.7.4 declares 30 arguments, "
                                             "the Binding 24")
    assert first_mismatch("0.6.3", run.uri, "run_moe", run.signature, "init").startswith(
        "arity: flashinfer 0.6.3 declares 24 arguments, the Binding 30")
    items = run.signature.split()
    assert items[13:17] == ["clamped_relu2_limit:T?", "situ_beta:T?", "situ_linear_beta:T?",
                            "swizzled_input_sf:B"]
    assert items[28:] == ["workspace_buffer:T?!", "nvfp4_4over6_code:I"]
    msg = first_mismatch("0.7.4", run.uri, "run_moe", " ".join(items[:28] + items[:27:-1]),
                         "init")
    assert msg.startswith("argument 28: C++ Optional<TensorView> workspace_buffer, Binding "
                          "nvfp4_4over6_code"), msg
    assert "flashinfer_cutlass_fused_moe_binding.cu:833" in msg
    msg = first_mismatch("0.7.4", run.uri, "run_moe",
                         " ".join(items[:16] + ["swizzled_input_sf:I"] + items[17:]), "init")
    assert msg.startswith("argument 16 (swizzled_input_sf): C++ bool cannot take kind I"), msg

    size = METHODS_074["get_workspace_size"]
    assert first_mismatch("0.7.4", size.uri, "get_workspace_size", size.signature,
                          "init") is None
    assert first_mismatch("0.6.3", size.uri, "get_workspace_size", size.signature,
                          "init").startswith("method get_workspace_size of init()'s object "
                                             "is not in module fused_moe_90 of flashinfer 0.6.3")
    items = size.signature.split()
    items[1], items[2] = items[2], items[1]  # inter before hidden
    msg = first_mismatch("0.7.4", size.uri, "get_workspace_size", " ".join(items), "init")
    assert msg.startswith("argument 1: C++ int64_t hidden_size, Binding inter_size"), msg
    assert "flashinfer_cutlass_fused_moe_binding.cu:881" in msg


@pytest.mark.parametrize("backend,decl", [("fa2", "batch_mla_binding.cu:30"),
                                          ("fa3", "batch_mla_sm90_binding.cu:30")])
def test_planted_mla_mismatches_are_reported(backend, decl):
    """The MLA lines a 0.7.4 module is called with -- the run's layout, the plan's own line --
    fail like any other: scales swapped or of another kind, the layout left out, and the
    0.7.4 plan line (its family reads a tuple) against 0.6.3's plan (an Array)."""
    from flashinfer_cy.kernels import attention_uri as U
    from flashinfer_cy.kernels.attention import binding_for

    run = binding_for(U.mla_variant("bfloat16", 512, 64, backend, "0.7.4"), "run")
    sig = layouts.parse(run.signature, run.layouts["0.7.4"])[0]
    assert first_mismatch("0.7.4", run.uri, "run", sig) is None
    assert first_mismatch("0.7.4", run.uri, "run", run.signature).startswith(
        "arity: flashinfer 0.7.4 declares 18 arguments, the Binding 15")
    items = sig.split()
    assert items[15:] == ["ckv_scale:F", "kpe_scale:F", "maybe_ckv_scale_arr:T?"]
    msg = first_mismatch("0.7.4", run.uri, "run", " ".join(items[:15] + [items[16], items[15],
                                                                         items[17]]))
    assert msg.startswith("argument 15: C++ double ckv_scale, Binding kpe_scale"), msg
    assert decl in msg
    msg = first_mismatch("0.7.4", run.uri, "run", " ".join(items[:17] + ["maybe_ckv_scale_arr:F"]))
    assert msg.startswith("argument 17 (maybe_ckv_scale_arr): C++ Optional<TensorView> cannot "
                          "take kind F"), msg

    old = binding_for(U.mla_variant("bfloat16", 512, 64, backend, "0.6.3"), "plan")
    new = binding_for(U.mla_variant("bfloat16", 512, 64, backend, "0.7.4"), "plan")
    assert (old.written_for, new.written_for) == ("0.6.3", "0.7.4")
    assert old.signature == new.signature  # the arguments did not change: the result did
    reads_tuple = line_returns("0.7.4", new.uri, "plan")
    assert reads_tuple == "Tuple<Array<int64_t>,int64_t>"
    assert first_mismatch("0.7.4", new.uri, "plan", new.signature, None, reads_tuple) is None
    # (the tables' line on 0.7.4: test_planted_return_type_mismatch_is_reported)
    msg = first_mismatch("0.6.3", old.uri, "plan", new.signature, None, reads_tuple)
    assert msg.startswith("returns: flashinfer 0.6.3's plan returns Array<int64_t>, the line's "
                          "family reads Tuple"), msg


def test_planted_return_type_mismatch_is_reported():
    """Same arguments, another result: 0.7.4's MLA plan returns a tuple where the tables'
    line's family reads 0.6.3's Array (compared only when the reader's type is given)."""
    from flashinfer_cy.kernels import attention_uri as U
    from flashinfer_cy.kernels.attention import binding_for

    plan = binding_for(U.mla_variant("bfloat16", 512, 64, "fa2", "0.6.3"), "plan")
    reads = line_returns(plan.written_for, plan.uri, "plan")
    assert reads == "Array<int64_t>"
    assert first_mismatch("0.6.3", plan.uri, "plan", plan.signature, None, reads) is None
    assert first_mismatch("0.7.4", plan.uri, "plan", plan.signature) is None
    msg = first_mismatch("0.7.4", plan.uri, "plan", plan.signature, None, reads)
    assert msg.startswith("returns: flashinfer 0.7.4's plan returns Tuple<Array<int64_t>,"
                          "int64_t>, the line's family reads Array<int64_t>"), msg
    assert "flashinfer/data/csrc/batch_mla_binding.cu:25" in msg
    assert line_returns("0.6.3", "norm", "no_such_export") is None


def test_missing_export_and_module_are_reported():
    assert first_mismatch("0.6.3", "norm", "no_such_export", _NORM).startswith(
        "export no_such_export is not in module norm")
    assert first_mismatch("0.6.3", "no_such_module", "x", _NORM).startswith(
        "module no_such_module is not built")


def _signatures():
    from flashinfer_cy.kernels.attention import SIGNATURES
    return SIGNATURES


def test_discovery_reaches_containers():
    """A family that keeps its Bindings in a dict or tuple (not module globals) is found."""
    rope = Binding("rope", "apply_rope_pos_ids", "q:T k:T q_rope:T! k_rope:T! pos_ids:T "
                   "rotary_dim:I interleave:B rope_scale:F rope_theta:F", device="q")
    table = {"ops": (rope,), "n": 1}
    assert list(_bindings_in(table, "fam.TABLE")) == [("fam.TABLE['ops'][0]", rope)]
    assert first_mismatch("0.6.3", rope.uri, rope.symbol, rope.signature) is None
