"""Does a Binding line match a FlashInfer release's C++ declaration? One rule, two users.

tests/cpu/test_abi_tables.py runs :func:`first_mismatch` for every Binding and every
extracted release; ``Binding.function()`` (flashinfer_cy/_core/binding.pyx) runs
:func:`require_match` once per Binding, before its first call, against the release its
module was built from, so that a module of another release is an error, never a call
(docs/abi-versions.md, "Which version a kernel set is").
"""

from __future__ import annotations

import re

from . import TABLES_VERSION, export, module_key, versions
from ..errors import KernelVersionError

CSRC = "flashinfer/data/csrc/"

# Which Binding kinds (``!`` stripped) may carry each C++ parameter type (after
# tools/cxx_decls.normalize_type). TVM-FFI converts a DLTensor* (what T/T?/H pack) to
# TensorView and Optional<TensorView>; ints and floats by value; Array via an object handle.
CXX_KINDS = {
    "TensorView": {"T", "H"},
    "Optional<TensorView>": {"T?"},
    "int64_t": {"I"}, "int": {"I"}, "int32_t": {"I"}, "uint32_t": {"I"}, "uint64_t": {"I"},
    "double": {"F"}, "float": {"F"},
    "bool": {"B"},
    "DLDataType": {"D"},
    "Array<int64_t>": {"A"}, "Optional<Array<int64_t>>": {"A", "A?"},
    # An Array of Tensor *objects* (P1 below applies to its elements: packed as an ffi Array
    # of ffi::Tensor, never of DLTensor*), or None: the fused MoE runner's quant_scales.
    "Optional<Array<Tensor>>": {"A?"},
}
# ffi::Tensor / Optional<ffi::Tensor> accept a Tensor *object* (or None) only, never the
# DLTensor* a T argument packs (docs/flashinfer-abi.md pitfall P1). An Optional<Tensor> may be
# bound as T? only where the family is reviewed to always pass None, listed here.
P1_NONE_ONLY = {
    key: "kernels/attention.pyx pack_extras packs every T? of the generated "
         "ADDITIONAL_FUNC_PARAMS tail as None (custom mask, ALiBi, scales: unused)"
    for key in ("single_decode/fa2", "batch_decode/fa2", "single_prefill/fa2",
                "single_prefill/fa3", "batch_prefill/fa2", "batch_prefill/fa3")
}


def _kinds(signature):
    return [(n, k.rstrip("!")) for n, _, k in (item.partition(":") for item in signature.split())]


def _what(symbol, method_of):
    return f"export {symbol}" if method_of is None else f"method {symbol} of {method_of}()'s object"


def line_returns(written_for, uri, symbol, method_of=None):
    """What a line written for release ``written_for`` takes from a call: the return type
    that release declares for the export (None where its ABI file has no such export, e.g.
    a test double's module). The family's code reads results of that type and no other."""
    exp = export(written_for, uri, symbol, method_of)[1]
    return None if exp is None else exp["returns"]


def first_mismatch(version, uri, symbol, signature, method_of=None, returns=None):
    """None when ``signature`` matches the export in ``version`` (with ``method_of``: the
    method of the object that export returns), else the first difference, naming the C++
    declaration's file:line. ``returns``: the C++ return type the line's family reads
    (:func:`line_returns`); another one in ``version`` is a mismatch too (a plan that
    returns a tuple where the family takes an Array, and so on). None: not compared."""
    key = module_key(uri)
    module, exp = export(version, uri, symbol, method_of)
    if module is None:
        return f"module {key} is not built by flashinfer {version}"
    if exp is None:
        have = (module["exports"] if method_of is None else
                module.get("methods", {}).get(method_of, {}))
        return (f"{_what(symbol, method_of)} is not in module {key} of flashinfer {version} "
                f"(sources {module['sources']}; {'exports' if method_of is None else 'methods'}"
                f" {sorted(have)})")
    decl = exp["decl"] if exp["decl"].startswith("flashinfer/") else CSRC + exp["decl"]
    cxx = exp["params"]
    ours = _kinds(signature)
    declared = ", ".join(f"{t} {n}" for t, n in cxx)
    where = f"{decl}: {symbol}({declared})"
    if len(cxx) != len(ours):
        return (f"arity: flashinfer {version} declares {len(cxx)} arguments, the Binding "
                f"{len(ours)}; {where}")
    n_generated = exp.get("generated", {}).get("count", 0)
    for i, ((ctype, cname), (name, kind)) in enumerate(zip(cxx, ours)):
        if cname != name:
            return f"argument {i}: C++ {ctype} {cname}, Binding {name}:{kind}; {where}"
        generated = i >= len(cxx) - n_generated
        if ctype in ("Tensor", "Optional<Tensor>"):
            if ctype == "Optional<Tensor>" and kind == "T?" and generated and key in P1_NONE_ONLY:
                continue
            return (f"argument {i} ({cname}): C++ {ctype} takes a Tensor object, never the "
                    f"DLTensor* {kind} packs (P1); {where}")
        if kind not in CXX_KINDS.get(ctype, ()):
            return (f"argument {i} ({cname}): C++ {ctype} cannot take kind {kind} (allowed: "
                    f"{sorted(CXX_KINDS.get(ctype, ())) or 'none known'}); {where}")
    if returns is not None and exp["returns"] != returns:
        return (f"returns: flashinfer {version}'s {symbol} returns {exp['returns']}, the "
                f"line's family reads {returns}; {where}")
    return None


def abi_version(version: str) -> str:
    """The release whose ABI file describes ``version``: the local part ("+cu130") and a
    post-release suffix (same sources, repackaged) dropped."""
    return re.sub(r"\.post\d+$", "", version.split("+", 1)[0].strip())


def reviewed_reason(release: str, uri: str, symbol: str, method_of: str = None):
    """The reason :mod:`.known_differences` gives for ``symbol`` of module ``uri`` in
    ``release`` (None where it lists none): why a line is refused there, for the error."""
    from .known_differences import KNOWN_DIFFERENCES
    name = symbol if method_of is None else f"{method_of}().{symbol}"
    entry = KNOWN_DIFFERENCES.get((release, module_key(uri), name))
    return None if entry is None else entry["reason"]


def _reviewed(release, uri, symbol, method_of) -> str:
    reason = reviewed_reason(release, uri, symbol, method_of)
    if reason is None:
        return ""
    return f" Reviewed (flashinfer_cy/abi/known_differences.py): {reason}."


def missing_module_note(uri: str, symbol: str, release: str):
    """Why module ``uri`` cannot be found when the modules are expected to be of FlashInfer
    ``release`` (:func:`flashinfer_cy.artifacts.expected_flashinfer_version`): None unless
    that release has an extracted ABI without the module (0.7.x's gdn_prefill_sm90), else a
    sentence naming the releases that build it and the reviewed reason."""
    release = abi_version(release)
    if release not in versions() or export(release, uri, symbol)[0] is not None:
        return None
    having = [v for v in versions() if export(v, uri, symbol)[0] is not None]
    return (f"flashinfer {release}, the release these modules are expected to be of, builds "
            f"no module {module_key(uri)}; flashinfer {', '.join(having) or 'no extracted release'}"
            f" does.{_reviewed(release, uri, symbol, None)}")


def _way_out() -> str:
    from ..artifacts.settings import FLASHINFER_VERSION_ENV, KERNEL_DIR_ENV
    return (f"Use modules of flashinfer {TABLES_VERSION}: the pinned wheel (`flashinfer-cy "
            f"fetch`, with {KERNEL_DIR_ENV} unset), or build them with `python "
            f"tools/build_kernels.py --out DIR <uris>` (it writes DIR/flashinfer_version.txt) "
            f"and set {KERNEL_DIR_ENV}=DIR. If these modules are of a release you know, say "
            f"which with {FLASHINFER_VERSION_ENV}=<version> (docs/abi-versions.md)")


def require_match(uri: str, symbol: str, signature: str, version, version_from: str,
                  path: str, method_of: str = None, written_for: str = TABLES_VERSION) -> None:
    """Raise :class:`KernelVersionError` unless the module at ``path`` (module ``uri``, of
    FlashInfer ``version`` as ``version_from`` says; None: unknown) declares ``symbol``
    with exactly ``signature``. The tables are written for :data:`TABLES_VERSION`: that
    release passes (CI checks every line against it) unless its ABI has the module but not
    the export; another release with an (``method_of``: ``symbol`` is a method of the
    object export ``method_of`` returns)
    extracted ABI passes only where its declaration matches the line; an unknown release,
    or one without an ABI file, never does. The return type counts too: it must be the one
    ``written_for`` (the release the line is written for) declares."""
    where = f"module {uri!r} ({path})"
    supported = (f"supported: flashinfer {TABLES_VERSION}, and for the exports whose argument "
                 f"list did not change, {', '.join(v for v in versions() if v != TABLES_VERSION)}")
    if version is None:
        raise KernelVersionError(
            f"{where}: its flashinfer version is unknown ({version_from}); the bindings are "
            f"written for flashinfer {TABLES_VERSION}, and {symbol} is not called with an "
            f"argument list it may not declare ({supported}). {_way_out()}")
    release = abi_version(version)
    if release == TABLES_VERSION:
        module, exp = export(release, uri, symbol, method_of)
        if module is None or exp is not None:
            # CI checks every table line against this release; a module it has no ABI of
            # (a user's own, a test double) is the caller's word.
            return
    if release not in versions():
        raise KernelVersionError(
            f"{where} is flashinfer {version} ({version_from}); the bindings are written for "
            f"flashinfer {TABLES_VERSION} and no ABI of flashinfer {release} is extracted, so "
            f"{symbol} cannot be checked and is not called ({supported}). {_way_out()}")
    mismatch = first_mismatch(release, uri, symbol, signature, method_of,
                              line_returns(written_for, uri, symbol, method_of))
    if mismatch is None:
        return
    reviewed = _reviewed(release, uri, symbol, method_of)
    _, exp = export(release, uri, symbol, method_of)
    if exp is None:
        having = [v for v in versions() if export(v, uri, symbol, method_of)[1] is not None]
        raise KernelVersionError(
            f"{where} is flashinfer {version} ({version_from}); {symbol} is not in it: "
            f"{mismatch}. It exists in flashinfer {', '.join(having) or 'no extracted release'}"
            f" (the bindings are written for {TABLES_VERSION}).{reviewed} {_way_out()}")
    raise KernelVersionError(
        f"{where} is flashinfer {version} ({version_from}); the binding of {symbol} is "
        f"written for flashinfer {written_for} and flashinfer {release} declares another "
        f"argument list or return type ({mismatch}), so it is not called ({supported})."
        f"{reviewed} {_way_out()}")


__all__ = ["CXX_KINDS", "P1_NONE_ONLY", "abi_version", "first_mismatch", "line_returns",
           "missing_module_note", "require_match", "reviewed_reason"]
