"""Read a FlashInfer module generator (``flashinfer/jit/*.py``) without running it.

flashinfer's ``gen_*_module`` functions need torch and a CUDA toolchain; to learn which csrc
files make a module and which extra parameters ``ADDITIONAL_FUNC_PARAMS`` expands to, it is
enough to follow their source: walk the generator's statements with the arguments we know
(``backend="fa3"``, ``fp8_enabled=False``...), take the branch an ``if`` picks when its test
can be evaluated (both branches otherwise, forgetting names they assign differently), step
into calls of functions of the same file with the arguments bound, and collect

* every string constant naming a ``.cu`` / ``.cpp`` file (kept when the file is in csrc), and
* the bound values of ``additional_tensor_names`` / ``additional_scalar_names`` /
  ``additional_scalar_dtypes`` where a callee takes them (the attention generators).
"""

from __future__ import annotations

import ast

UNKNOWN = object()


class _Deferred:
    """A name whose value is not known here: bound to an expression that does not evaluate
    (``d / "x.cu"``), or to different values by the two branches of an ``if`` we cannot
    decide. Its source files count where the name is used, not where it is assigned (it may
    be reassigned). ``alternatives``: ast nodes or plain values."""

    def __init__(self, *alternatives):
        self.alternatives = alternatives
_EXTRA_ARGS = ("additional_tensor_names", "additional_scalar_names", "additional_scalar_dtypes")
_SOURCE_SUFFIXES = (".cu", ".cpp", ".cc")


class _Walker:
    def __init__(self, tree: ast.Module, pinned: dict):
        self.functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
        self.pinned = pinned      # names whose value the generator's own code cannot tell
        self.sources = []
        self.extras = None
        self.depth = 0
        self.expanding = set()  # ids of _Deferred values being read (self-references)

    # ------------------------------------------------------------ expressions
    def eval(self, node, env):
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            v = env.get(node.id, UNKNOWN)
            return UNKNOWN if isinstance(v, _Deferred) else v
        if isinstance(node, (ast.List, ast.Tuple)):
            vals = [self.eval(e, env) for e in node.elts]
            return UNKNOWN if any(v is UNKNOWN for v in vals) else list(vals)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            v = self.eval(node.operand, env)
            return UNKNOWN if v is UNKNOWN else (not v)
        if isinstance(node, ast.BoolOp):
            vals = [self.eval(v, env) for v in node.values]
            if any(v is UNKNOWN or isinstance(v, _Deferred) for v in vals):
                return UNKNOWN
            return all(vals) if isinstance(node.op, ast.And) else any(vals)
        if isinstance(node, ast.Compare) and len(node.ops) == 1:
            a, b = self.eval(node.left, env), self.eval(node.comparators[0], env)
            if a is UNKNOWN or b is UNKNOWN:
                return UNKNOWN
            op = type(node.ops[0])
            try:
                return {ast.Eq: lambda: a == b, ast.NotEq: lambda: a != b,
                        ast.In: lambda: a in b, ast.NotIn: lambda: a not in b,
                        ast.Is: lambda: a is b, ast.IsNot: lambda: a is not b}[op]()
            except (KeyError, TypeError):
                return UNKNOWN
        if isinstance(node, ast.IfExp):
            t = self.eval(node.test, env)
            if t is UNKNOWN:
                return UNKNOWN
            return self.eval(node.body if t else node.orelse, env)
        return UNKNOWN

    def collect(self, node, env):
        """Source file names in an expression, and the same-file calls it makes."""
        if node is None:
            return
        if isinstance(node, ast.IfExp):
            t = self.eval(node.test, env)
            if t is not UNKNOWN:
                return self.collect(node.body if t else node.orelse, env)
        if isinstance(node, ast.JoinedStr):
            return  # an f-string names a generated file, not a csrc one
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if node.value.endswith(_SOURCE_SUFFIXES) and node.value not in self.sources:
                self.sources.append(node.value)
            return
        if isinstance(node, ast.Name):
            v = env.get(node.id, UNKNOWN)
            if isinstance(v, _Deferred):
                if id(v) in self.expanding:  # x = x + [...]: already being read
                    return
                self.expanding.add(id(v))
            for alt in (v.alternatives if isinstance(v, _Deferred) else [v]):
                if isinstance(alt, ast.AST):
                    self.collect(alt, env)
                    continue
                for s in (alt if isinstance(alt, list) else [alt]):
                    if isinstance(s, str) and s.endswith(_SOURCE_SUFFIXES) \
                            and s not in self.sources:
                        self.sources.append(s)
            self.expanding.discard(id(v))
            return
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id in self.functions:
            self.call(self.functions[node.func.id], node, env)
        for child in ast.iter_child_nodes(node):
            self.collect(child, env)

    def calls(self, node, env):
        """Step into the same-file calls of an expression, collecting nothing else."""
        for n in ast.walk(node):
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) \
                    and n.func.id in self.functions:
                self.call(self.functions[n.func.id], n, env)

    # ------------------------------------------------------------ statements
    def call(self, fn: ast.FunctionDef, call: ast.Call, env):
        if self.depth > 6:
            return
        a = fn.args
        names = [p.arg for p in a.posonlyargs + a.args]
        inner = {}
        defaults = a.defaults
        for p, d in zip(names[len(names) - len(defaults):], defaults):
            inner[p] = self.eval(d, {})
        for p, d in zip(a.kwonlyargs, a.kw_defaults):
            inner[p.arg] = self.eval(d, {}) if d is not None else UNKNOWN
        for p, arg in zip(names, call.args):
            inner[p] = self.eval(arg, env)
        for kw in call.keywords:
            if kw.arg:
                inner[kw.arg] = self.eval(kw.value, env)
        self.enter(fn, inner)

    def enter(self, fn: ast.FunctionDef, env: dict):
        env = dict(env)
        env.update(self.pinned)
        if all(n in env for n in _EXTRA_ARGS):
            vals = [env[n] for n in _EXTRA_ARGS]
            if any(v is UNKNOWN or isinstance(v, _Deferred) for v in vals):
                raise ValueError(f"{fn.name}: cannot tell its {_EXTRA_ARGS} from the source "
                                 f"(pin more names)")
            self.extras = dict(zip(_EXTRA_ARGS, vals))
        self.depth += 1
        self.block(fn.body, env)
        self.depth -= 1

    def block(self, stmts, env):
        for s in stmts:
            self.stmt(s, env)

    def stmt(self, s, env):
        if isinstance(s, ast.If):
            t = self.eval(s.test, env)
            if t is not UNKNOWN:
                return self.block(s.body if t else s.orelse, env)
            a, b = dict(env), dict(env)
            self.block(s.body, a)
            self.block(s.orelse, b)
            for k in set(a) | set(b):   # a name both branches agree on stays known
                va, vb = a.get(k, UNKNOWN), b.get(k, UNKNOWN)
                env[k] = va if va is not UNKNOWN and va == vb else _Deferred(va, vb)
            return
        if isinstance(s, (ast.Assign, ast.AnnAssign)):
            targets = s.targets if isinstance(s, ast.Assign) else [s.target]
            if s.value is None:
                return
            self.calls(s.value, env)
            for t in targets:
                pairs = [(t, s.value)]
                if isinstance(t, ast.Tuple) and isinstance(s.value, ast.Tuple) \
                        and len(t.elts) == len(s.value.elts):
                    pairs = list(zip(t.elts, s.value.elts))
                for target, value in pairs:
                    if isinstance(target, ast.Name) and target.id not in self.pinned:
                        v = self.eval(value, env)
                        env[target.id] = _Deferred(value) if v is UNKNOWN else v
            return
        if isinstance(s, ast.For):
            self.collect(s.iter, env)
            return self.block(s.body + s.orelse, env)
        if isinstance(s, (ast.With, ast.Try, ast.While)):
            self.block(s.body, env)
            for h in getattr(s, "handlers", []):
                self.block(h.body, env)
            return self.block(getattr(s, "orelse", []) + getattr(s, "finalbody", []), env)
        if isinstance(s, (ast.FunctionDef, ast.ClassDef, ast.Assert, ast.Raise)):
            return
        for child in ast.iter_child_nodes(s):
            self.collect(child, env)


def generator_facts(py_source: str, function: str, args: dict, pinned: dict) -> dict:
    """``{"sources": [file names in order], "extras": {additional_*: [...]} or None}`` of
    ``function`` in ``py_source`` called with ``args`` (the rest unknown), ``pinned`` names
    held fixed wherever they are assigned."""
    tree = ast.parse(py_source)
    w = _Walker(tree, pinned)
    if function not in w.functions:
        raise KeyError(f"no function {function} in the generator source")
    w.enter(w.functions[function], args)
    return {"sources": w.sources, "extras": w.extras}


def module_string(py_source: str, name: str) -> tuple:
    """``(value, line)`` of a module-level string constant (e.g. activation.py's template):
    line k of the value is line ``line + k - 1`` of the file."""
    for node in ast.parse(py_source).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name
                                                for t in node.targets):
            if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                return node.value.value, node.value.lineno
    raise KeyError(f"no module-level string {name}")


def module_dict_keys(py_source: str, name: str) -> list:
    for node in ast.parse(py_source).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name
                                                for t in node.targets):
            if isinstance(node.value, ast.Dict):
                return [ast.literal_eval(k) for k in node.value.keys]
    raise KeyError(f"no module-level dict {name}")
