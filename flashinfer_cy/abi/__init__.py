"""FlashInfer's C ABI, per release, for the modules flashinfer_cy binds.

``flashinfer-<version>.json`` files, written by ``tools/extract_abi.py`` from the
flashinfer-python wheel of that release (docs/abi-versions.md): per module, the csrc files
that make it and, per export, the return type, the ``[C++ type, name]`` parameters in order
(the attention generators' ADDITIONAL_FUNC_PARAMS expanded) and the declaration's file:line.
tests/cpu/test_abi_tables.py checks every ``Binding`` line against every version here, and
:mod:`.match` checks a Binding against its module's version before its first call;
:mod:`.known_differences` lists, reviewed and with the reason, where a Binding does not
match a version. Pure Python, loaded on demand (``import flashinfer_cy`` does not read it).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

_DIR = Path(__file__).resolve().parent

# The release the Binding tables are written for: the pinned kernel wheel's and
# tools/build_kernels.py's. Modules of another release are checked line by line
# (match.require_match) before a Binding first calls them.
TABLES_VERSION = "0.6.3"

# URI prefix of each attention family (flashinfer/jit/attention/modules.py get_*_uri); a
# module of the family is keyed "<family>/<backend>", fa3 when the URI ends in "_sm90".
_ATTENTION_PREFIXES = {
    "single_decode_with_kv_cache_": "single_decode",
    "batch_decode_with_kv_cache_": "batch_decode",
    "single_prefill_with_kv_cache_": "single_prefill",
    "batch_prefill_with_kv_cache_": "batch_prefill",
    "batch_mla_attention_": "batch_mla",
}


def versions() -> list:
    """The FlashInfer versions with an extracted ABI, oldest first."""
    def key(v):
        return tuple(int(p) if p.isdigit() else p for p in v.replace("-", ".").split("."))
    return sorted((p.stem.split("-", 1)[1] for p in _DIR.glob("flashinfer-*.json")), key=key)


@functools.lru_cache(maxsize=None)
def load(version: str) -> dict:
    """The extracted ABI of FlashInfer ``version`` (KeyError naming the known ones)."""
    path = _DIR / f"flashinfer-{version}.json"
    if not path.is_file():
        raise KeyError(f"no extracted ABI for flashinfer {version}; have {versions()}")
    return json.loads(path.read_text())


def module_key(uri: str) -> str:
    """The key of module ``uri`` in an ABI file: the URI itself for a fixed module ("norm",
    "rope", "silu_and_mul"...), "<family>/<fa2|fa3>" for an attention module."""
    for prefix, family in _ATTENTION_PREFIXES.items():
        if uri.startswith(prefix):
            return f"{family}/{'fa3' if uri.endswith('_sm90') else 'fa2'}"
    return uri


def export(version: str, uri: str, symbol: str, method_of: str = None):
    """``(module entry, export entry)`` of ``symbol`` in module ``uri`` for ``version``;
    either is None where that release has no such module or export. ``method_of``: look
    ``symbol`` up among the methods of the module object export ``method_of`` returns (the
    module entry's ``"methods"``, e.g. the fused MoE runner's, served by ``GetFunction``)."""
    module = load(version)["modules"].get(module_key(uri))
    if module is None:
        return None, None
    if method_of is not None:
        return module, module.get("methods", {}).get(method_of, {}).get(symbol)
    return module, module["exports"].get(symbol)
