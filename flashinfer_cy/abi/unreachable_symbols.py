"""Undefined symbols a FlashInfer release's kernel modules reference but can never call.

Kernel modules are loaded with RTLD_NOW so that a missing symbol fails at load instead of
aborting the process mid-call (flashinfer_cy/_core/runtime.pyx). Some releases build modules
that reference template instantiations they never define: the dispatch macro names a case
that the code choosing the case never takes, and upstream loads modules lazily, so nothing
notices. When RTLD_NOW fails, the loader accepts a module only if every function it cannot
resolve is listed here for the module's release (docs/abi-versions.md, "Unreachable
symbols"). Each entry names the release, the template and why the reference is unreachable,
with the source that proves it; the match is on the mangled name (Itanium C++ ABI), read
with a regular expression, no demangler.

Keyed by the exact release (``abi_version``: "0.7.4+cu130" -> "0.7.4"): a new release
changes FA2DetermineCtaTileQ or the instantiation lists at will, so it gets no entry until its
sources are read. Pure Python, imported only when a module fails to load with RTLD_NOW.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .match import abi_version


@dataclass(frozen=True)
class UnreachableTemplate:
    """Instantiations of one function template that a release references and never calls."""

    release: str      # the FlashInfer release whose sources were read
    template: str     # the C++ template, with the template arguments that make it unreachable
    why: str          # the source that proves it is never called
    mangled: str      # regex, anchored at the start of the mangled name; groups qk, vo
    max_head_dim_vo: int  # unreachable only for HEAD_DIM_VO below this

    def matches(self, symbol: str) -> bool:
        m = re.match(self.mangled, symbol)
        return m is not None and int(m.group("vo")) < self.max_head_dim_vo


# 0.7.4: csrc/batch_prefill_{paged,ragged}_kernel_inst.jinja instantiate CTA_TILE_Q in
# {16, 64, 128} for head_dim_vo < 512 ({16} when head_dim_qk >= 512), while
# csrc/batch_prefill.cu dispatches plan_info.cta_tile_q through DISPATCH_CTA_TILE_Q
# (include/flashinfer/utils.cuh), whose switch also names 32.
_WHY_074 = ("the CTA_TILE_Q comes from the plan: include/flashinfer/attention/scheduler.cuh "
            "PrefillPlan sets plan_info.cta_tile_q = FA2DetermineCtaTileQ(...) "
            "(include/flashinfer/utils.cuh), which returns 32 only when head_dim_vo >= 512; "
            "csrc/batch_prefill_{paged,ragged}_kernel_inst.jinja therefore instantiate "
            "CTA_TILE_Q=32 only for head_dim_vo >= 512, while DISPATCH_CTA_TILE_Q "
            "(csrc/batch_prefill.cu) still names the case")

# <qk>, <vo>: the HEAD_DIM_QK / HEAD_DIM_VO template arguments, unsigned literals (Lj<n>E).
_HEAD_DIMS = r"ELj(?P<qk>\d+)ELj(?P<vo>\d+)E"

UNREACHABLE = {
    "0.7.4": (
        UnreachableTemplate(
            release="0.7.4",
            template="flashinfer::BatchPrefillWithPagedKVCacheDispatched<SAME_KV_STRIDES, "
                     "CTA_TILE_Q=32, HEAD_DIM_QK, HEAD_DIM_VO<512, ...>",
            why=_WHY_074,
            mangled=r"_ZN10flashinfer38BatchPrefillWithPagedKVCacheDispatchedILb[01]ELj32"
                    + _HEAD_DIMS,
            max_head_dim_vo=512),
        UnreachableTemplate(
            release="0.7.4",
            template="flashinfer::BatchPrefillWithRaggedKVCacheDispatched<CTA_TILE_Q=32, "
                     "HEAD_DIM_QK, HEAD_DIM_VO<512, ...>",
            why=_WHY_074,
            mangled=r"_ZN10flashinfer39BatchPrefillWithRaggedKVCacheDispatchedILj32"
                    + _HEAD_DIMS,
            max_head_dim_vo=512),
    ),
}


def entries(version) -> tuple:
    """The known-unreachable templates of FlashInfer ``version`` (None: unknown): () for a
    release with none listed, so its modules must resolve every symbol."""
    if version is None:
        return ()
    return UNREACHABLE.get(abi_version(version), ())


def known_unreachable(version, symbol: str):
    """The entry that lists ``symbol`` as unreachable in ``version``'s modules, or None."""
    return next((e for e in entries(version) if e.matches(symbol)), None)
