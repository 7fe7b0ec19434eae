"""Another release's argument list for a Binding, written as a rearrangement of its own.

A Binding's signature is its export's argument list in the release the tables are written
for (:data:`TABLES_VERSION`); the kernel family fills a frame in that order. Where a later
release only *adds* arguments whose value the family can state (an optional tensor passed
as None, a hint left at "no promise") or renames/moves one, the Binding carries that
release's list as a **layout**, and calls a module of that release with the frame's values
rearranged -- no family code changes, and the layout is checked against that release's C++
declaration like any table line (tests/cpu/test_abi_tables.py; ``Binding.function``
before the first call).

A layout is the release's argument list, space-separated, each item one of::

    name:KIND              the Binding's own argument ``name`` (same kind; a T may be T?)
    name:KIND=base_name    the Binding's argument ``base_name``, under this release's name
    name:KIND=None         a constant: None (kind T?), True/False (B), an int (I), a float (F)

Every argument of the Binding appears exactly once (a release that drops or changes the
meaning of one needs family code, not a layout). Which value a constant should be is
reviewed against that release's Python wrapper and said next to the layout.
"""

from __future__ import annotations

import functools

# What a constant may be for each kind (the wrapper's value is written in the layout).
_CONSTANT_KINDS = {"T?": ("None",), "B": ("True", "False")}


def _items(signature: str):
    for item in signature.split():
        name, _, kind = item.partition(":")
        yield name, kind


def _strip(kind: str) -> str:
    return kind.rstrip("!")


@functools.lru_cache(maxsize=None)
def parse(base_signature: str, layout: str):
    """``(signature, plan)``: the layout's ``name:KIND`` list (what the release declares,
    for :func:`flashinfer_cy.abi.match.first_mismatch`) and, per argument of the release,
    ``("arg", index in the base signature)`` or ``("const", kind, value)``. ValueError
    naming the item for a layout that is not a rearrangement of ``base_signature``."""
    base = {name: (i, _strip(kind)) for i, (name, kind) in enumerate(_items(base_signature))}
    used = set()
    plan, sig = [], []
    for item in layout.split():
        head, eq, value = item.partition("=")
        name, _, kind = head.partition(":")
        if not name or not kind:
            raise ValueError(f"layout item {item!r}: expected name:KIND[=value]")
        k = _strip(kind)
        source = value if eq and value in base else (name if not eq else None)
        if source is not None:
            if source not in base:
                raise ValueError(f"layout item {item!r}: {source!r} is not an argument of the "
                                 f"Binding ({base_signature})")
            index, base_kind = base[source]
            if base_kind != k and (base_kind, k) != ("T", "T?"):  # a tensor fills an optional
                raise ValueError(f"layout item {item!r}: the Binding's {source} is kind "
                                 f"{base_kind}, not {k}")
            if source in used:
                raise ValueError(f"layout item {item!r}: {source} is used twice")
            used.add(source)
            plan.append(("arg", index))
        else:
            plan.append(("const", k, _constant(item, k, value)))
        sig.append(f"{name}:{kind}")
    missing = [n for n in base if n not in used]
    if missing:
        raise ValueError(f"layout leaves out the Binding's {', '.join(missing)}: a release "
                         f"that drops an argument needs family code, not a layout")
    return " ".join(sig), tuple(plan)


def _constant(item: str, kind: str, value: str):
    if kind in _CONSTANT_KINDS:
        if value not in _CONSTANT_KINDS[kind]:
            raise ValueError(f"layout item {item!r}: a {kind} constant is one of "
                             f"{', '.join(_CONSTANT_KINDS[kind])}")
        return {"None": None, "True": True, "False": False}[value]
    try:
        if kind == "I":
            v = int(value, 0)
            if not -(1 << 63) <= v < (1 << 63):
                raise ValueError
            return v
        if kind == "F":
            return float(value)
    except ValueError:
        pass
    raise ValueError(f"layout item {item!r}: not a constant of kind {kind} (T?: None, B: "
                     f"True/False, I: an int64, F: a float) nor an argument of the Binding")


def insert(base_signature: str, before: str, items: str) -> str:
    """The layout that is ``base_signature`` with ``items`` inserted before its argument
    ``before`` (the common case: a release added arguments in the middle)."""
    names = [n for n, _ in _items(base_signature)]
    if before not in names:
        raise ValueError(f"insert: {before!r} is not an argument of {base_signature!r}")
    parts = base_signature.split()
    at = names.index(before)
    return " ".join(parts[:at] + items.split() + parts[at:])


def append(base_signature: str, items: str) -> str:
    """The layout that is ``base_signature`` followed by ``items``."""
    return " ".join(base_signature.split() + items.split())


__all__ = ["append", "insert", "parse"]
