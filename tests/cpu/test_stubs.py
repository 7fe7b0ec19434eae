"""The type stubs (``.pyi`` next to each compiled module) cannot silently rot.

* every name in ``flashinfer_cy.__all__`` is declared where a type checker looks for it
  (the stub of the compiled module it comes from, or the Python module itself);
* every compiled module -- in the installed package and in the source tree -- has a stub,
  and ``py.typed`` is there;
* stub and runtime module agree on their public names, both ways (module level and the
  members of each class);
* with mypy installed: ``mypy.stubtest`` finds no signature mismatch, and
  ``mypy --strict`` passes on ``examples/`` and on the stubs themselves.

Runs against whatever ``import flashinfer_cy`` finds (the installed wheel in CI).
"""

from __future__ import annotations

import ast
import importlib
import importlib.machinery
import importlib.util
import inspect
import os
import subprocess
import sys
import sysconfig
import types
from pathlib import Path

import pytest

import flashinfer_cy as fc

PKG = Path(fc.__file__).resolve().parent
REPO = Path(__file__).resolve().parents[2]
SRC_PKG = REPO / "flashinfer_cy"
EXT_SUFFIXES = tuple(importlib.machinery.EXTENSION_SUFFIXES)


def _module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root.parent)
    return ".".join((*rel.parts[:-1], rel.name.split(".")[0]))


def compiled_modules() -> dict[str, Path]:
    """Module name -> extension file, for the package ``import flashinfer_cy`` loads."""
    return {_module_name(p, PKG): p for p in sorted(PKG.rglob("*"))
            if p.name.endswith(EXT_SUFFIXES)}


def stub_path(module: str) -> Path:
    return PKG.parent.joinpath(*module.split(".")).with_suffix(".pyi")


def _bound_names(body: list[ast.stmt]) -> dict[str, ast.stmt]:
    names: dict[str, ast.stmt] = {}
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names[node.name] = node
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    names[target.id] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = node
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                names[(alias.asname or alias.name).split(".")[0]] = node
    return names


def _is_type_check_only(node: ast.stmt) -> bool:
    decorators = getattr(node, "decorator_list", [])
    return any((isinstance(d, ast.Name) and d.id == "type_check_only")
               or (isinstance(d, ast.Attribute) and d.attr == "type_check_only")
               for d in decorators)


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _defined_here(obj: object, module: types.ModuleType) -> bool:
    """Not imported from elsewhere: modules and classes/functions of other modules are."""
    if isinstance(obj, types.ModuleType):
        return False
    if inspect.isclass(obj) or inspect.isroutine(obj):
        return getattr(obj, "__module__", None) == module.__name__
    return True  # data: constants, tables, Binding lines


# ----------------------------------------------------------------------------- presence

def test_py_typed_is_shipped():
    assert (PKG / "py.typed").is_file(), f"{PKG / 'py.typed'} is missing (PEP 561)"


def test_every_compiled_module_has_a_stub():
    mods = compiled_modules()
    assert mods, f"no compiled modules under {PKG}"
    missing = [f"{m} ({p.name})" for m, p in mods.items() if not stub_path(m).is_file()]
    assert not missing, f"compiled modules without a .pyi stub next to them: {missing}"


@pytest.mark.skipif(not SRC_PKG.is_dir(), reason="no source tree beside the tests")
def test_every_pyx_in_the_source_tree_has_a_stub():
    missing = [str(p.relative_to(REPO)) for p in sorted(SRC_PKG.rglob("*.pyx"))
               if not p.with_suffix(".pyi").is_file()]
    assert not missing, f".pyx modules without a .pyi stub: {missing}"


def test_all_public_names_are_declared_in_the_stubs():
    """Each ``__all__`` name, followed the way a type checker does: from the ``from M import
    name`` in ``__init__.py`` to M's stub (compiled M) or M's source (Python M)."""
    init = parse(PKG / "__init__.py")
    origin: dict[str, str] = {}
    for node in init.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                origin[alias.asname or alias.name] = node.module
    local = _bound_names(init.body)
    compiled = compiled_modules()
    problems = []
    for name in fc.__all__:
        module = origin.get(name)
        if module is None:
            if name not in local:
                problems.append(f"{name}: neither imported nor defined in __init__.py")
            continue
        if module in compiled:
            path = stub_path(module)
            if not path.is_file():
                problems.append(f"{name}: {module} is compiled and has no stub {path.name}")
                continue
        else:
            spec = importlib.util.find_spec(module)
            assert spec is not None and spec.origin, module
            path = Path(spec.origin)
        if name not in _bound_names(parse(path).body):
            problems.append(f"{name}: not declared in {path.relative_to(PKG.parent)}")
    assert not problems, "\n".join(problems)


# ----------------------------------------------------------------------------- agreement

@pytest.mark.parametrize("module", sorted(compiled_modules()))
def test_stub_and_runtime_agree_on_names(module):
    path = stub_path(module)
    if not path.is_file():
        pytest.fail(f"{module} has no stub (see test_every_compiled_module_has_a_stub)")
    mod = importlib.import_module(module)
    stub = _bound_names(parse(path).body)
    stub_imports = {n for n, node in stub.items() if isinstance(node, (ast.Import, ast.ImportFrom))}
    problems = []

    for name in dir(mod):
        if name.startswith("_") or not _defined_here(getattr(mod, name), mod):
            continue
        if name not in stub:
            problems.append(f"{name}: public at run time, missing from {path.name}")
    for name, node in stub.items():
        if name.startswith("_") or name in stub_imports or _is_type_check_only(node):
            continue
        if not hasattr(mod, name):
            problems.append(f"{name}: in {path.name}, gone from the module")

    for name, node in stub.items():
        if not isinstance(node, ast.ClassDef) or _is_type_check_only(node):
            continue
        cls = getattr(mod, name, None)
        if not inspect.isclass(cls):
            continue
        members = _bound_names(node.body)
        for attr in vars(cls):
            if not attr.startswith("_") and attr not in members:
                problems.append(f"{name}.{attr}: public at run time, missing from {path.name}")
        for attr in members:
            if not attr.startswith("_") and not hasattr(cls, attr):
                problems.append(f"{name}.{attr}: in {path.name}, gone from the class")
    assert not problems, "\n".join(problems)


# ----------------------------------------------------------------------------- mypy

_needs_mypy = pytest.mark.skipif(importlib.util.find_spec("mypy") is None,
                                 reason="mypy is not installed (pip install mypy)")


def _in_site_packages(path: Path) -> bool:
    roots = {Path(sysconfig.get_paths()[k]).resolve() for k in ("purelib", "platlib")}
    return path.resolve() in roots


@_needs_mypy
def test_stubtest_finds_no_mismatch(tmp_path):
    """Signatures (names, kinds, defaults) of the stubs against the compiled modules."""
    env = dict(os.environ)
    if not _in_site_packages(PKG.parent):  # editable/in-place: point mypy at the stubs
        env["MYPYPATH"] = str(PKG.parent)
    allow = tmp_path / "allowlist.txt"
    # What Cython adds to every module/cdef class (the C-API capsule for cimport users,
    # doctest table, pickling helpers): not API, not in the stubs.
    allow.write_text("\n".join([".*\\.__pyx_capi__", ".*\\.__test__",
                                ".*\\.__reduce_cython__", ".*\\.__setstate_cython__"]) + "\n",
                     encoding="utf-8")
    # --ignore-disjoint-bases: cdef classes are C layouts (PEP 800 @disjoint_base); nothing
    # in the API invites multiple inheritance from two of them.
    helptext = subprocess.run([sys.executable, "-m", "mypy.stubtest", "--help"],
                              capture_output=True, text=True).stdout
    extra = ["--ignore-disjoint-bases"] if "--ignore-disjoint-bases" in helptext else []
    cmd = [sys.executable, "-m", "mypy.stubtest", "--concise", "--ignore-unused-allowlist",
           *extra, "--allowlist", str(allow),
           "--mypy-config-file", str(tmp_path / "none.toml"), *sorted(compiled_modules())]
    (tmp_path / "none.toml").write_text("[tool.mypy]\n", encoding="utf-8")
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, f"stubtest:\n{proc.stdout}\n{proc.stderr}"


@_needs_mypy
@pytest.mark.skipif(not (REPO / "examples").is_dir() or not SRC_PKG.is_dir(),
                    reason="no examples/ and source tree beside the tests")
def test_mypy_strict_examples_and_stubs(tmp_path):
    stubs = [str(p.relative_to(REPO)) for p in sorted(SRC_PKG.rglob("*.pyi"))]
    cmd = [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / "cache"),
           "examples", *stubs]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(cmd[2:])}:\n{proc.stdout}\n{proc.stderr}"
