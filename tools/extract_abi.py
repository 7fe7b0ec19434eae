#!/usr/bin/env python3
"""Extract the C ABI of the FlashInfer modules flashinfer_cy binds, per FlashInfer release.

Reads a flashinfer-python wheel (or an unpacked one): every ``TVM_FFI_DLL_EXPORT_TYPED_FUNC``
in ``flashinfer/data/csrc``, the declaration of the function it exports, and, per module we
use, the csrc files its generator in ``flashinfer/jit`` compiles (several modules export
``run`` / ``plan``), the parameters the attention generators append through
``ADDITIONAL_FUNC_PARAMS`` and the gated-activation modules' jinja template. Writes
``flashinfer_cy/abi/flashinfer-<version>.json``: per module, its sources and, per export,
the return type, the ordered ``[C++ type, name]`` parameters and the declaration's
``file:line``. tests/cpu/test_abi_tables.py checks every ``Binding`` line against it.

    python tools/extract_abi.py --all                 # regenerate every committed version
    python tools/extract_abi.py --version 0.7.4       # pip-download that wheel and extract
    python tools/extract_abi.py path/to/wheel-or-dir  # a local wheel or unpacked tree
    python tools/extract_abi.py --diff 0.6.3 0.7.4    # what changed between two JSON files
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cxx_decls import (find_declarations, find_exports, find_served_methods,  # noqa: E402
                       parse_params, strip_comments)
from jit_sources import generator_facts, module_dict_keys, module_string  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ABI_DIR = ROOT / "flashinfer_cy" / "abi"
CSRC = "flashinfer/data/csrc/"
JIT = "flashinfer/jit/"
_CXX_SUFFIXES = (".cu", ".cuh", ".cpp", ".cc", ".h", ".inc")

# Names a generator cannot tell from its own source: what our modules are built with
# (no fp8 q tensor cores, no RoPE/ALiBi in the kernel, fp32 qk accumulation, no nvfp4 KV).
_PINNED = {"fp8_enabled": False, "pos_encoding_mode": 0, "use_fp16_qk_reduction": False,
           "use_token_head_sf": False, "nvfp4_4over6": False}

_ATTN = "attention/modules.py"
# Module key -> (generator file under flashinfer/jit, generator function, known arguments).
# Fixed modules are keyed by their URI; attention modules by family/backend, since every
# URI of a family and backend has the same sources and argument list (dtypes, head dims,
# swa and soft cap are template arguments only).
MODULES = {
    "norm": ("norm.py", "gen_norm_module", {}),
    "page": ("page.py", "gen_page_module", {}),
    "rope": ("rope.py", "gen_rope_module", {}),
    "sampling": ("sampling.py", "gen_sampling_module", {}),
    "cascade": ("cascade.py", "gen_cascade_module", {}),
    "topk": ("topk.py", "gen_topk_module", {}),
    "gdn_prefill_sm90": ("gdn.py", "gen_gdn_prefill_sm90_module", {}),
    "single_decode/fa2": (_ATTN, "gen_single_decode_module", {}),
    "batch_decode/fa2": (_ATTN, "gen_batch_decode_module", {}),
    "single_prefill/fa2": (_ATTN, "gen_single_prefill_module", {"backend": "fa2"}),
    "single_prefill/fa3": (_ATTN, "gen_single_prefill_module", {"backend": "fa3"}),
    "batch_prefill/fa2": (_ATTN, "gen_batch_prefill_module", {"backend": "fa2"}),
    "batch_prefill/fa3": (_ATTN, "gen_batch_prefill_module", {"backend": "fa3"}),
    "batch_mla/fa2": (_ATTN, "gen_batch_mla_module", {"backend": "fa2"}),
    "batch_mla/fa3": (_ATTN, "gen_batch_mla_module", {"backend": "fa3"}),
}
# Modules whose ADDITIONAL_FUNC_PARAMS comes from their config template rather than the
# generator's additional_* lists: batch_mla_config.jinja defines it as ", Tensor
# profiler_buffer" under FLASHINFER_ENABLE_PROFILER only, which the URIs we load
# (profiler_False) are built without, and empty otherwise (checked by _config_extras).
CONFIG_EXTRAS = {"batch_mla/fa2": "batch_mla_config.jinja",
                 "batch_mla/fa3": "batch_mla_config.jinja"}
_NO_EXTRAS = {"additional_tensor_names": [], "additional_scalar_names": [],
              "additional_scalar_dtypes": []}
# Modules whose exports return a module object serving methods (TVM-FFI ``ModuleObj``
# subclasses, looked up by name through ``GetFunction``): module key -> (generator file,
# generator, the helper that lists its csrc files, {export: class of the object it returns}).
# Their sources are the ``FLASHINFER_CSRC_DIR / "..."`` files the helper lists that export
# something; each returning export's methods go under the entry's "methods".
RUNNER_MODULES = {
    "fused_moe_90": ("fused_moe.py", "gen_cutlass_fused_moe_sm90_module",
                     "gen_cutlass_fused_moe_module", {"init": "FusedMoeRunner"}),
}
# Modules generated whole from a template string: activation.py's act_and_mul template, one
# module "<act>_and_mul" per key of act_func_def_str.
ACTIVATION = ("activation.py", "activation_templ", "act_func_def_str")


class Tree:
    """The csrc and jit files of one flashinfer-python release (wheel or unpacked folder),
    read on demand (0.7.x ships some 400 MB of csrc)."""

    def __init__(self, path: Path):
        path = Path(path)
        if path.is_file():
            self._zip = zipfile.ZipFile(path)
            names = self._zip.namelist()
            self._base = None
        else:
            base = path if (path / "data" / "csrc").is_dir() else path / "flashinfer"
            if not (base / "data" / "csrc").is_dir():
                raise SystemExit(f"{path}: no flashinfer/data/csrc (not a flashinfer-python tree)")
            self._zip, self._base = None, base
            names = ["flashinfer/" + f.relative_to(base).as_posix() for f in base.rglob("*")
                     if f.is_file()]
        self.names = sorted(n for n in names if self._wanted(n))
        self._csrc = [n[len(CSRC):] for n in self.names if n.startswith(CSRC)]
        self._text, self._stripped = {}, {}
        m = re.search(r"__version__\s*=\s*[\"']([^\"']+)", self.text("flashinfer/_build_meta.py"))
        if not m:
            raise SystemExit(f"{path}: no flashinfer/_build_meta.py __version__")
        self.version = m.group(1)

    @staticmethod
    def _wanted(n: str) -> bool:
        return (n.startswith(CSRC) and n.endswith(_CXX_SUFFIXES + (".jinja",))) or \
            (n.startswith(JIT) and n.endswith(".py")) or n == "flashinfer/_build_meta.py"

    def text(self, name: str) -> str:
        """File ``name`` (path from the wheel root); "" when the release has none."""
        if name not in self._text:
            if name not in self.names:
                return ""
            raw = (self._zip.read(name) if self._zip else
                   (self._base / name[len("flashinfer/"):]).read_bytes())
            self._text[name] = raw.decode("utf-8", "replace")
        return self._text[name]

    def raw(self, rel: str) -> str:
        """csrc file ``rel`` as shipped."""
        return self.text(CSRC + rel)

    def cxx(self, rel: str) -> str:
        """csrc file ``rel`` with comments and directives blanked."""
        if rel not in self._stripped:
            self._stripped[rel] = strip_comments(self.raw(rel))
        return self._stripped[rel]

    def csrc_files(self):
        return self._csrc

    def find_csrc(self, name: str):
        """A generator names a file relative to csrc, or by base name when it copies it."""
        if CSRC + name in self.names:
            return name
        hits = [f for f in self._csrc if f.rsplit("/", 1)[-1] == name]
        return hits[0] if len(hits) == 1 else None


def all_exports(tree: Tree) -> dict:
    """csrc file -> [(export, function, line)] for every exporting file of the tree."""
    out = {}
    for rel in tree.csrc_files():
        if rel.endswith((".h", ".cuh")) or "TVM_FFI_DLL_EXPORT_TYPED_FUNC" not in tree.raw(rel):
            continue
        hits = find_exports(tree.cxx(rel))
        if hits:
            out[rel] = hits
    return out


def resolve(tree: Tree, fn: str, export_file: str, export_line: int, module_files: list):
    """The declaration of ``fn`` that the export in ``export_file`` sees: the last one
    before the export in that file, else one in the module's other sources, else anywhere
    in csrc (a header). Raises LookupError when there is none."""
    decls = [d for d in find_declarations(tree.cxx(export_file), fn, export_file)
             if d.line < export_line]
    if decls:
        return decls[-1]
    base = fn.split("::")[-1]
    for group in (module_files, tree.csrc_files()):
        for rel in group:
            if rel == export_file or base not in tree.raw(rel):
                continue
            decls = find_declarations(tree.cxx(rel), fn, rel)
            if decls:
                return decls[0]
    raise LookupError(f"{export_file}:{export_line}: no declaration of {fn}")


def generated_params(extras: dict) -> list:
    """What flashinfer/jit/attention/utils.py generate_additional_params appends (checked to
    still read so by _check_generator_rule)."""
    out = [("Optional<Tensor>" if n.startswith("maybe") else "Tensor", n)
           for n in extras["additional_tensor_names"]]
    out += list(zip(extras["additional_scalar_dtypes"], extras["additional_scalar_names"]))
    return [list(p) for p in out]


def _check_generator_rule(tree: Tree):
    src = tree.text(JIT + "attention/utils.py")
    if not src:
        return  # no attention generators in this tree
    if 'f", Optional<ffi::Tensor> {var}"' not in src or 'else f", ffi::Tensor {var}"' not in src:
        raise SystemExit("flashinfer/jit/attention/utils.py generate_additional_params no longer "
                         "reads as this tool assumes (Optional<ffi::Tensor> for maybe_*, "
                         "ffi::Tensor otherwise): update generated_params()")


def _export_entry(decl, decl_file_line: str, extras=None, extras_from=None) -> dict:
    params = [list(p) for p in decl.params]
    entry = {"returns": decl.returns, "decl": decl_file_line, "params": params}
    if decl.has_generated:
        if extras is None:
            raise SystemExit(f"{decl_file_line}: ADDITIONAL_FUNC_PARAMS but the generator "
                             f"passed no additional_* lists")
        entry["params"] = params + generated_params(extras)
        entry["generated"] = {"count": len(entry["params"]) - len(params), "from": extras_from}
    return entry


def _config_extras(tree: Tree, template: str) -> dict:
    """No generated parameters, once the config template is seen to define
    ADDITIONAL_FUNC_PARAMS empty outside its profiler branch (what a profiler_False URI
    is built with)."""
    text = tree.raw(template)
    m = re.search(r"#ifdef FLASHINFER_ENABLE_PROFILER(.*?)#else(.*?)#endif", text, re.S)
    if not m or not re.search(r"#define ADDITIONAL_FUNC_PARAMS\s*\n", m.group(2)):
        raise SystemExit(f"{template}: ADDITIONAL_FUNC_PARAMS is no longer empty without "
                         f"FLASHINFER_ENABLE_PROFILER: update CONFIG_EXTRAS")
    return _NO_EXTRAS


def module_entry(tree: Tree, key: str) -> dict:
    jit_file, function, args = MODULES[key]
    py = tree.text(JIT + jit_file)
    if f"def {function}(" not in py:
        return None  # this release has no such generator (the module disappeared)
    facts = generator_facts(py, function, args, _PINNED)
    if key in CONFIG_EXTRAS and facts["extras"] is None:
        facts["extras"] = _config_extras(tree, CONFIG_EXTRAS[key])
    sources = [s for s in (tree.find_csrc(n) for n in facts["sources"]) if s]
    gen = f"flashinfer/jit/{jit_file}:{function}"
    if args:
        gen += "(" + ", ".join(f"{k}={v!r}" for k, v in args.items()) + ")"
    entry = {"generator": gen, "sources": sources, "exports": {}}
    for rel in sources:
        for export, fn, line in find_exports(tree.cxx(rel)):
            if export in entry["exports"]:
                raise SystemExit(f"{key}: export {export} in two sources")
            decl = resolve(tree, fn, rel, line, sources)
            entry["exports"][export] = _export_entry(
                decl, f"{decl.path}:{decl.line}", facts["extras"],
                f"flashinfer/jit/{jit_file}:{function}")
    return entry


def _py_function(py: str, name: str) -> str:
    """The text of top-level ``def name(`` in ``py`` ("" when there is none)."""
    m = re.search(rf"^def {name}\(.*?(?=^[\w@]|\Z)", py, re.S | re.M)
    return m.group(0) if m else ""


def runner_entry(tree: Tree, key: str) -> dict:
    jit_file, function, helper, returns = RUNNER_MODULES[key]
    py = tree.text(JIT + jit_file)
    gen = _py_function(py, function)
    if not gen:
        return None
    if f"return {helper}(" not in gen:
        raise SystemExit(f"{JIT}{jit_file}:{function} no longer returns {helper}(...): "
                         f"update RUNNER_MODULES")
    listed = re.findall(r'FLASHINFER_CSRC_DIR\s*/\s*"([^"]+)"', _py_function(py, helper))
    sources = [rel for rel in listed if rel in tree.csrc_files()
               and "TVM_FFI_DLL_EXPORT_TYPED_FUNC" in tree.raw(rel)]
    entry = {"generator": f"flashinfer/jit/{jit_file}:{function}", "sources": sources,
             "exports": {}, "methods": {}}
    for rel in sources:
        for export, fn, line in find_exports(tree.cxx(rel)):
            if export in entry["exports"]:
                raise SystemExit(f"{key}: export {export} in two sources")
            decl = resolve(tree, fn, rel, line, sources)
            entry["exports"][export] = _export_entry(decl, f"{decl.path}:{decl.line}")
            if export not in returns:
                continue
            if decl.returns != "Module":
                raise SystemExit(f"{key}: {export} returns {decl.returns}, not a Module")
            entry["methods"][export] = {
                m.name: _export_entry(m, f"{rel}:{m.line}")
                for m in find_served_methods(tree.cxx(rel), returns[export], rel)}
    missing = set(returns) - set(entry["methods"])
    if missing:
        raise SystemExit(f"{key}: no export {sorted(missing)} in {sources}")
    return entry


def activation_entries(tree: Tree) -> dict:
    jit_file, templ_name, defs_name = ACTIVATION
    py = tree.text(JIT + jit_file)
    if templ_name not in py:
        return {}  # a release without these generated modules
    templ, first_line = module_string(py, templ_name)
    where = f"flashinfer/jit/{jit_file}"
    out = {}
    for act in module_dict_keys(py, defs_name):
        func = act + "_and_mul"
        text = re.sub(r"\{\{\s*func_name\s*\}\}", func, templ)
        text = re.sub(r"\{%.*?%\}|\{\{.*?\}\}", " ", text, flags=re.S)
        text = strip_comments(text)
        exports = find_exports(text)
        entry = {"generator": f"{where}:gen_act_and_mul_module(act_func_name={act!r})",
                 "sources": [f"{where}:{templ_name}"], "exports": {}}
        for export, fn, line in exports:
            decls = [d for d in find_declarations(text, fn) if d.line < line]
            if not decls:
                raise SystemExit(f"{where}: no declaration of {fn}")
            line = first_line + decls[-1].line - 1
            entry["exports"][export] = _export_entry(decls[-1], f"{where}:{line}")
        out[func] = entry
    return out


def extract(tree: Tree) -> dict:
    _check_generator_rule(tree)
    modules = {}
    for key in MODULES:
        entry = module_entry(tree, key)
        if entry is not None:
            modules[key] = entry
    for key in RUNNER_MODULES:
        entry = runner_entry(tree, key)
        if entry is not None:
            modules[key] = entry
    modules.update(activation_entries(tree))
    return {"flashinfer": tree.version, "tool": "tools/extract_abi.py",
            "modules": dict(sorted(modules.items()))}


def unresolved(tree: Tree) -> list:
    """Exports anywhere in csrc whose declaration this tool cannot find (a report only:
    the JSON keeps the modules we bind)."""
    bad = []
    for rel, hits in all_exports(tree).items():
        for export, fn, line in hits:
            try:
                resolve(tree, fn, rel, line, [])
            except LookupError as e:
                bad.append(str(e))
    return bad


def dumps(data: dict) -> str:
    """JSON with one export per line: small, and a version diff reads line by line."""
    lines = ["{", f'  "flashinfer": {json.dumps(data["flashinfer"])},',
             f'  "tool": {json.dumps(data["tool"])},', '  "modules": {']
    mods = list(data["modules"].items())
    for i, (key, m) in enumerate(mods):
        lines.append(f"    {json.dumps(key)}: {{")
        lines.append(f'      "generator": {json.dumps(m["generator"])},')
        lines.append(f'      "sources": {json.dumps(m["sources"])},')
        lines.append('      "exports": {')
        ex = list(m["exports"].items())
        for j, (name, e) in enumerate(ex):
            comma = "," if j < len(ex) - 1 else ""
            lines.append(f"        {json.dumps(name)}: {json.dumps(e)}{comma}")
        if "methods" not in m:
            lines.append("      }")
        else:  # per returning export, its object's methods, one per line
            lines += ["      },", '      "methods": {']
            objs = list(m["methods"].items())
            for j, (export, methods) in enumerate(objs):
                lines.append(f"        {json.dumps(export)}: {{")
                for k, (name, e) in enumerate(methods.items()):
                    comma = "," if k < len(methods) - 1 else ""
                    lines.append(f"          {json.dumps(name)}: {json.dumps(e)}{comma}")
                lines.append("        }" + ("," if j < len(objs) - 1 else ""))
            lines.append("      }")
        lines.append("    }" + ("," if i < len(mods) - 1 else ""))
    lines += ["  }", "}", ""]
    return "\n".join(lines)


def output_path(version: str) -> Path:
    return ABI_DIR / f"flashinfer-{version}.json"


def committed_versions() -> list:
    return sorted(p.stem.split("-", 1)[1] for p in ABI_DIR.glob("flashinfer-*.json"))


def download(version: str, into: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", f"flashinfer-python=={version}",
                    "--no-deps", "--only-binary", ":all:", "-q", "-d", str(into)], check=True)
    wheels = list(into.glob(f"flashinfer_python-{version}-*.whl"))
    if len(wheels) != 1:
        raise SystemExit(f"pip download gave {wheels}, expected one flashinfer_python wheel")
    return wheels[0]


def write(tree: Tree) -> Path:
    out = output_path(tree.version)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(dumps(extract(tree)))
    return out


def _both(a: dict, b: dict, what: str, prefix: str, lines: list):
    """(key, a[key], b[key]) of the keys both have; an "added"/"removed" line for the rest."""
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if va is None or vb is None:
            lines.append(f"{prefix}{k}: {what} {'added' if va is None else 'removed'}")
        else:
            yield k, va, vb


def diff(a: dict, b: dict) -> list:
    """Human-readable differences of the modules in two extracted files."""
    lines = []
    for key, ma, mb in _both(a["modules"], b["modules"], "module", "", lines):
        if ma["sources"] != mb["sources"]:
            lines.append(f"{key}: sources {ma['sources']} -> {mb['sources']}")
        tables = [(key, ma["exports"], mb["exports"], "export")]
        for ex, oa, ob in _both(ma.get("methods", {}), mb.get("methods", {}), "object",
                                key + ".", lines):
            tables.append((f"{key}.{ex}()", oa, ob, "method"))
        for prefix, ta, tb, what in tables:
            for ex, ea, eb in _both(ta, tb, what, prefix + ".", lines):
                if ea["returns"] != eb["returns"]:
                    lines.append(f"{prefix}.{ex}: returns {ea['returns']} -> {eb['returns']}")
                if ea["params"] != eb["params"]:
                    lines.append(f"{prefix}.{ex}: {_param_diff(ea['params'], eb['params'])}")
    return lines


def _param_diff(pa: list, pb: list) -> str:
    names_a, names_b = [p[1] for p in pa], [p[1] for p in pb]
    parts = []
    for t, n in pb:
        if n not in names_a:
            parts.append(f"+{t} {n}")
    for t, n in pa:
        if n not in names_b:
            parts.append(f"-{t} {n}")
    ta, tb = dict((n, t) for t, n in pa), dict((n, t) for t, n in pb)
    for n in names_a:
        if n in tb and ta[n] != tb[n]:
            parts.append(f"{n}: {ta[n]} -> {tb[n]}")
    common_a = [n for n in names_a if n in tb]
    common_b = [n for n in names_b if n in ta]
    if common_a != common_b:
        parts.append("order of kept params changed")
    return "; ".join(parts) or "params changed"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source", nargs="?", help="flashinfer-python wheel or unpacked folder")
    ap.add_argument("--version", help="pip-download flashinfer-python==VERSION and extract it")
    ap.add_argument("--all", action="store_true", help="regenerate every committed version")
    ap.add_argument("--diff", nargs=2, metavar=("OLD", "NEW"), help="compare two versions' files")
    ap.add_argument("--report", action="store_true",
                    help="also list csrc exports whose declaration cannot be found")
    args = ap.parse_args(argv)
    if args.diff:
        a, b = (json.loads(output_path(v).read_text()) for v in args.diff)
        print("\n".join(diff(a, b)) or "no differences")
        return 0
    if args.source:
        jobs = [Path(args.source)]
    elif args.version or args.all:
        jobs = [args.version] if args.version else committed_versions()
    else:
        ap.error("give a wheel/folder, --version or --all")
    with tempfile.TemporaryDirectory() as tmp:
        for job in jobs:
            tree = Tree(job if isinstance(job, Path) else download(job, Path(tmp)))
            print(f"flashinfer {tree.version}: wrote {write(tree).relative_to(ROOT)}")
            if args.report:
                bad = unresolved(tree)
                print(f"  {len(bad)} csrc exports without a readable declaration")
                for line in bad:
                    print("   ", line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
