"""Find C++ function declarations in FlashInfer's csrc tree, well enough for its binding files.

Not a C++ parser: it strips comments, finds ``name(`` followed by a balanced parameter list
and ``;`` or ``{``, and keeps the match when the text before the name (back to the previous
``;``, ``{`` or ``}``) reads as a return type. That covers every form the binding sources use:
free functions, ``ns::fn`` and ``Class::fn`` names, ``static``/``inline`` specifiers,
templates, default arguments and the attention modules' ``ADDITIONAL_FUNC_PARAMS`` macro.
Pure Python, used by tools/extract_abi.py and its CPU tests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

EXPORT_RE = re.compile(
    r"TVM_FFI_DLL_EXPORT_TYPED_FUNC\s*\(\s*(\w+)\s*,\s*&?\s*((?:\w+::)*\w+)\s*\)")
GENERATED_PARAMS = "ADDITIONAL_FUNC_PARAMS"  # filled per module by flashinfer/jit/attention

_COMMENT_RE = re.compile(r'("(?:\\.|[^"\\\n])*")|//[^\n]*|/\*.*?\*/', re.S)
_DIRECTIVE_RE = re.compile(r"^[ \t]*#(?:[^\n]*\\\n)*[^\n]*", re.M)  # with continuations
_SPECIFIERS = re.compile(r"\b(static|inline|extern\s*\"C\"|TVM_FFI_INLINE|__host__|constexpr|"
                         r"virtual|explicit|FLASHINFER_API)\b|\[\[\w+\]\]")
_TYPE_RE = re.compile(r"^[\w:<>,\s\*&]+$")
_NOT_TYPES = {"return", "else", "new", "delete", "throw", "case", "goto", "using", "typedef",
              "if", "while", "for", "switch", "sizeof", "do"}
_QUALIFIERS = re.compile(r"\s*(const|noexcept|override|final)\b")
_NS_PREFIX = re.compile(r"\b(?:tvm::)?ffi::")


def strip_comments(text: str) -> str:
    """Comments and preprocessor directives (a multi-line #define's body would read as
    code) replaced by as many newlines, so line numbers stay right; strings kept."""
    def repl(m):
        return m.group(1) if m.group(1) else "\n" * m.group(0).count("\n")
    text = _COMMENT_RE.sub(repl, text)
    return _DIRECTIVE_RE.sub(lambda m: "\n" * m.group(0).count("\n"), text)


def normalize_type(t: str) -> str:
    """``const tvm::ffi::Optional<ffi::Tensor>&`` -> ``Optional<Tensor>``: cv/ref qualifiers
    and the tvm::ffi namespace do not change how TVM-FFI converts an argument."""
    t = re.sub(r"\bconst\b|&", " ", t)
    t = _NS_PREFIX.sub("", t)
    t = re.sub(r"\s+", " ", t).strip()
    return re.sub(r"\s*([<>,*])\s*", r"\1", t)


def split_top_level(s: str, sep: str = ",") -> list:
    parts, depth, cur = [], 0, []
    for ch in s:
        if ch in "<([{":
            depth += 1
        elif ch in ">)]}":
            depth -= 1
        if ch == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


def parse_params(text: str) -> tuple:
    """``(params, has_generated)``: params as ``[(type, name)]`` in order; has_generated says
    the list ended in ADDITIONAL_FUNC_PARAMS (appended by the module generator)."""
    has_generated = GENERATED_PARAMS in text
    text = text.replace(GENERATED_PARAMS, " ")
    params = []
    for raw in split_top_level(text):
        p = split_top_level(raw, "=")[0].strip()
        if not p or p == "void":
            continue
        m = re.match(r"^(.*?)(\w+)\s*$", p, re.S)
        if not m or not m.group(1).strip():
            raise ValueError(f"cannot read parameter {p!r}")
        params.append((normalize_type(m.group(1)), m.group(2)))
    return params, has_generated


def _closing_paren(text: str, open_at: int) -> int:
    depth = 0
    for i in range(open_at, len(text)):
        if text[i] == "(":
            depth += 1
        elif text[i] == ")":
            depth -= 1
            if depth == 0:
                return i
    return -1


def _return_type(prefix: str):
    """The return type in the text before a function name, or None if it is no declaration."""
    prefix = re.sub(r"\b(public|private|protected)\s*:", " ", prefix)
    prefix = re.sub(r"^\s*template\s*<[^;{}]*?>\s*(?=\w)", " ", prefix)
    prefix = _SPECIFIERS.sub(" ", prefix).strip()
    if not prefix or not _TYPE_RE.match(prefix) or set(re.findall(r"\w+", prefix)) & _NOT_TYPES:
        return None
    return normalize_type(prefix)


@dataclass
class Decl:
    name: str          # as written (may be qualified)
    returns: str
    params: list       # [(type, name)]
    has_generated: bool
    path: str = ""
    line: int = 0
    extra: dict = field(default_factory=dict)


def find_declarations(text: str, name: str, path: str = "") -> list:
    """Every declaration or definition of function ``name`` (last component of a qualified
    name) in ``text`` (comments already stripped), in file order."""
    base = name.split("::")[-1]
    out = []
    for m in re.finditer(r"(?<![\w.>])((?:\w+::)*" + re.escape(base) + r")\s*\(", text):
        close = _closing_paren(text, m.end() - 1)
        if close < 0:
            continue
        rest = text[close + 1:close + 200]
        while True:
            q = _QUALIFIERS.match(rest)
            if not q:
                break
            rest = rest[q.end():]
        if not rest.lstrip()[:1] in (";", "{"):
            continue
        start = max(text.rfind(c, 0, m.start()) for c in ";{}") + 1
        ret = _return_type(text[start:m.start()])
        if ret is None:
            continue
        try:
            params, gen = parse_params(text[m.end():close])
        except ValueError:
            continue
        out.append(Decl(m.group(1), ret, params, gen, path, text.count("\n", 0, m.start()) + 1))
    return out


def find_exports(text: str, path: str = "") -> list:
    """``[(export_name, function_name, line)]`` of every TVM_FFI_DLL_EXPORT_TYPED_FUNC."""
    return [(m.group(1), m.group(2), text.count("\n", 0, m.start()) + 1)
            for m in EXPORT_RE.finditer(text)]


_SERVED_RE = re.compile(r'name\s*==\s*"(\w+)"\s*\)\s*\{\s*return\s+(?:\w+::)*Function::FromTyped'
                        r'\s*\(\s*\[[^\]]*\]\s*\(')


def find_served_methods(text: str, class_name: str, path: str = "") -> list:
    """The methods a ``ModuleObj`` subclass serves from its ``GetFunction(name)``: one
    ``Decl`` per ``if (name == "m") { return Function::FromTyped([captures](params) -> R
    {...}); }`` branch of ``class_name``'s GetFunction (comments already stripped), the
    lambda's parameters in order, its return type (``void`` when the lambda declares none)
    and the line its parameter list starts on. Raises ValueError when the class or its
    GetFunction is not there, or a branch does not read so (the tool must not silently
    miss a method)."""
    cls = re.search(r"\bclass\s+" + re.escape(class_name) + r"\b[^;{]*\{", text)
    if not cls:
        raise ValueError(f"{path}: no class {class_name}")
    gf = re.compile(r"GetFunction\s*\(").search(text, cls.end())
    if not gf:
        raise ValueError(f"{path}: class {class_name} has no GetFunction")
    body_open = text.index("{", _closing_paren(text, gf.end() - 1))
    depth, end = 0, body_open
    for end in range(body_open, len(text)):
        depth += {"{": 1, "}": -1}.get(text[end], 0)
        if depth == 0:
            break
    body = text[body_open:end]
    branches = re.findall(r'name\s*==\s*"(\w+)"', body)
    out = []
    for m in _SERVED_RE.finditer(body):
        at = body_open + m.end() - 1
        close = _closing_paren(text, at)
        params, _ = parse_params(text[at + 1:close])
        ret = re.match(r"\s*(?:mutable\s*)?(?:->\s*([^{]+?))?\s*\{", text[close + 1:])
        if not ret:
            raise ValueError(f"{path}: cannot read the lambda of method {m.group(1)}")
        out.append(Decl(m.group(1), normalize_type(ret.group(1) or "void"), params, False, path,
                        text.count("\n", 0, at) + 1))
    if [d.name for d in out] != branches:
        raise ValueError(f"{path}: {class_name}::GetFunction serves {branches}, read "
                         f"{[d.name for d in out]} (a branch this tool cannot read)")
    return out
