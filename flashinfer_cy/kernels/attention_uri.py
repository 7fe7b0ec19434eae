"""Attention module URIs of flashinfer 0.6.3, which of them the prebuilt wheel holds, and
how a missing one is reported. Pure Python: importable and testable without CUDA.

Naming (docs/flashinfer-abi.md §4.1; flashinfer/jit/attention/modules.py ``get_*_uri``):
booleans are Python ``str(bool)``; ``use_swa = window_left >= 0``; ``use_logits_cap =
logits_soft_cap > 0``; batch and single prefill end in ``_sm90`` iff the backend is FA3.
tools/kernel_uris.py (the builder's parser) follows the same rules; a CPU test checks that
the two agree on every variant this package asks for.

flashinfer 0.7.x names its FA2 batch prefill module ``..._kv_stride_equal``: the one its AOT
wheel ships and its wrappers load (``_gen_batch_prefill_primary_module``; paged kernels for K
and V of identical strides, which its paged run checks). The public generator's plain URI
(strides dispatched at run time) is in neither. Which name is asked for follows the release
the modules are expected to be of, as for MLA's ``_planabi2`` below.
"""

from __future__ import annotations

import functools

# URI dtype tokens (flashinfer's filename_safe_dtype_map) of the dtype names we accept.
DTYPE_TOKENS = {"float16": "f16", "bfloat16": "bf16", "float8_e4m3fn": "e4m3"}
SUPPORTED_DTYPES = ("float16", "bfloat16")     # q / output dtypes this package supports
FP8_KV = "float8_e4m3fn"                       # the one KV dtype that may differ from q's
HEAD_DIMS = (64, 128, 256)                     # FA2 and FA3 grids of the wheel (qk == vo)

FAMILIES = ("single_decode", "batch_decode", "single_prefill", "batch_prefill")
BACKENDS = ("auto", "fa2", "fa3")

BUILD_HINT = "python tools/build_kernels.py --out .kernels {uri}"

_QKV = "dtype_q_{q}_dtype_kv_{kv}_dtype_o_{o}_"
_TAIL = "posenc_0_use_swa_{swa}_use_logits_cap_{cap}"
_TEMPLATES = {
    "single_decode": "single_decode_with_kv_cache_" + _QKV + "head_dim_qk_{d}_head_dim_vo_{d}_" + _TAIL,
    "batch_decode": ("batch_decode_with_kv_cache_" + _QKV + "dtype_idx_i32_head_dim_qk_{d}_head_dim_vo_{d}_"
                     + _TAIL),
    "single_prefill": ("single_prefill_with_kv_cache_" + _QKV + "head_dim_qk_{d}_head_dim_vo_{d}_" + _TAIL
                       + "_f16qk_False"),
    "batch_prefill": ("batch_prefill_with_kv_cache_" + _QKV + "dtype_idx_i32_head_dim_qk_{d}_head_dim_vo_{d}_"
                      + _TAIL + "_f16qk_False"),
}


class Variant:
    """One compiled attention module: what its URI encodes. (A plain class rather than a
    dataclass: ``import flashinfer_cy`` stays cheap.)"""

    __slots__ = ("family", "dtype", "head_dim", "use_swa", "use_logits_cap", "backend",
                 "kv_dtype", "release", "uri")

    def __init__(self, family: str, dtype: str, head_dim: int, use_swa: bool,
                 use_logits_cap: bool, backend: str = "fa2", kv_dtype: str | None = None,
                 release: str = "0.6.3"):
        self.family = family
        self.dtype = dtype                    # q = o dtype name
        self.kv_dtype = kv_dtype or dtype     # dtype, or float8_e4m3fn (FA2 fp8 KV cache)
        self.head_dim = head_dim              # head_dim_qk == head_dim_vo
        self.use_swa = bool(use_swa)
        self.use_logits_cap = bool(use_logits_cap)
        self.backend = backend                # "fa2" or "fa3" (fa3: batch_prefill only)
        renamed = family == "batch_prefill" and backend == "fa2"
        # the release whose name the URI is ("0.6.3" for every release that kept 0.6.3's)
        self.release = release if renamed and release in FA2_PREFILL_SUFFIX else "0.6.3"
        tok = DTYPE_TOKENS[dtype]
        self.uri = _TEMPLATES[family].format(q=tok, kv=DTYPE_TOKENS[self.kv_dtype], o=tok,
                                             d=head_dim, swa=self.use_swa,
                                             cap=self.use_logits_cap) + (
            "_sm90" if backend == "fa3" else FA2_PREFILL_SUFFIX.get(self.release, "")
            if renamed else "")

    def _key(self):
        return (self.family, self.dtype, self.kv_dtype, self.head_dim, self.use_swa,
                self.use_logits_cap, self.backend, self.release)

    def __eq__(self, other):
        return isinstance(other, Variant) and self._key() == other._key()

    def __hash__(self):
        return hash(self._key())

    def __repr__(self):
        return f"Variant({self.uri!r})"

    @property
    def in_prebuilt_wheel(self) -> bool:
        return in_prebuilt_wheel(self)


# release (ABI file) -> its FA2 batch prefill module's suffix; a release not listed: 0.6.3's
FA2_PREFILL_SUFFIX = {"0.7.4": "_kv_stride_equal"}


def _abi_release(release: str | None) -> str:
    """``release`` (default: the release the modules are expected to be of,
    flashinfer_cy.artifacts.expected_flashinfer_version) as its ABI file's name."""
    from flashinfer_cy.abi.match import abi_version
    if release is None:
        from flashinfer_cy.artifacts import expected_flashinfer_version
        release = expected_flashinfer_version()
    return abi_version(release)


def _wheel_names_as(renames: dict) -> str:
    """Under which release's name the wheel the wheel steps use (the pinned release, or the
    one FLASHINFER_CY_FLASHINFER_VERSION names) holds a module that ``renames`` (release ->
    suffix) renamed: that release where it renamed it, else 0.6.3."""
    from flashinfer_cy.abi.match import abi_version
    from flashinfer_cy.artifacts import settings
    wheel = abi_version(settings.flashinfer_version() or "0.6.3")
    return wheel if wheel in renames else "0.6.3"


def variant(family: str, dtype: str, head_dim: int, window_left: int, logits_soft_cap: float,
            backend: str = "fa2", kv_dtype: str | None = None,
            release: str | None = None) -> Variant:
    """The module a call with these runtime arguments needs (URI flags follow the values);
    ``kv_dtype`` defaults to ``dtype``. ``release``: whose name to ask for where a release
    renamed the module (0.7.x's FA2 batch prefill); default: the release the modules are
    expected to be of (flashinfer_cy.artifacts.expected_flashinfer_version), asked only then."""
    if family == "batch_prefill" and backend == "fa2":
        release = _abi_release(release)
    else:
        release = "0.6.3"  # the name every release here kept
    return _variant(family, dtype, int(head_dim), window_left >= 0, logits_soft_cap > 0, backend,
                    kv_dtype or dtype, release)


@functools.lru_cache(maxsize=256)  # one Variant per configuration: single ops ask every call
def _variant(family, dtype, head_dim, use_swa, use_cap, backend, kv_dtype,
             release="0.6.3") -> Variant:
    if family not in FAMILIES:
        raise ValueError(f"family: expected one of {FAMILIES}, got {family!r}")
    if backend not in ("fa2", "fa3"):
        raise ValueError(f"backend: expected 'fa2' or 'fa3' here, got {backend!r}")
    if backend == "fa3" and family not in ("batch_prefill", "single_prefill"):
        # Decode has no FA3 kernel at all. Single prefill has one (flashinfer JIT-builds it),
        # but the prebuilt wheel lacks it: in_prebuilt_wheel() says so and the build
        # command is offered when the module is missing.
        raise ValueError(f"{family} has no FA3 (_sm90) kernel in flashinfer 0.6.3; use backend='fa2'")
    if kv_dtype != dtype and not (kv_dtype == FP8_KV and backend == "fa2"):
        # Worded for every caller: a plan's kv_data_type, a single op's k/v dtype, backend=.
        raise ValueError(f"backend: {backend} has no kernel for a {kv_dtype} KV cache with "
                         f"{dtype} q in flashinfer 0.6.3 (fp8 KV: kv_data_type {FP8_KV} "
                         f"runs on backend 'fa2' or 'auto')")
    return Variant(family, dtype, head_dim, use_swa, use_cap, backend, kv_dtype, release)


def in_prebuilt_wheel(v: Variant) -> bool:
    """Whether flashinfer-jit-cache 0.6.3 ships ``v`` (aot.py default grid, doc §4.3): FA2
    single/batch prefill and decode, FA3 batch prefill only (sm90 wheels); head dims
    64/128/256; every swa/cap combination; posenc 0, no fp16-qk reduction, int32 indices.
    A module under a later release's name (0.7.4's FA2 batch prefill): in that release's
    wheel only, when the wheel steps use it (FLASHINFER_CY_FLASHINFER_VERSION)."""
    if v.family == "batch_prefill" and v.backend == "fa2" and (
            v.release != _wheel_names_as(FA2_PREFILL_SUFFIX)):
        return False
    if v.dtype not in SUPPORTED_DTYPES or v.head_dim not in HEAD_DIMS:
        return False
    if v.kv_dtype != v.dtype:  # FA2 builds (f16|bf16 q, e4m3 KV) for all four families
        return v.kv_dtype == FP8_KV and v.backend == "fa2"
    if v.backend == "fa3":
        return v.family == "batch_prefill"
    return True


def fa3_possible(family: str, dtype: str, head_dim: int) -> bool:
    """Upstream's ``is_fa3_backend_supported`` for what this package supports (no custom
    mask, no RoPE/ALiBi, no fp16-qk reduction) plus the wheel's FA3 grid."""
    return family == "batch_prefill" and in_prebuilt_wheel(
        Variant(family, dtype, head_dim, False, False, "fa3"))


def missing_module_message(v: Variant, reason: str) -> str:
    release = getattr(v, "release", "0.6.3")
    if release != "0.6.3":  # a module under another release's name (MLA's _planabi2)
        return (f"attention kernel module {v.uri!r} (flashinfer {release}'s name, the release "
                f"the kernel modules are expected to be of) is not available. Build it with "
                f"`python tools/build_kernels.py --flashinfer-version {release} --out DIR "
                f"{v.uri}` into the kernel dir of that release, FLASHINFER_CY_KERNEL_DIR=DIR "
                f"(details: {reason})")
    where = ("it is in the prebuilt flashinfer-jit-cache 0.6.3 wheel but could not be found or fetched"
             if v.in_prebuilt_wheel else
             "it is not in the prebuilt flashinfer-jit-cache 0.6.3 wheel (doc §4.3)")
    return (f"attention kernel module {v.uri!r} is not available: {where}. Build it with "
            f"`{BUILD_HINT.format(uri=v.uri)}` and set FLASHINFER_CY_KERNEL_DIR=.kernels "
            f"(details: {reason})")


# ----------------------------------------------------------------------------------- MLA
# Batched MLA paged attention (flashinfer/jit/attention/modules.py get_batch_mla_uri):
# q = kv = o dtype, int32 indices, no profiler; "_sm90" iff FA3. flashinfer 0.7.x adds
# "_planabi2" before "_sm90": its plan returns (plan info, staged int-workspace bytes) and
# leaves the page-locked -> device copy of the schedule to its caller (another plan ABI
# under another name). Which spelling is asked for follows the release the modules are
# expected to be of (flashinfer_cy.artifacts.expected_flashinfer_version); the loaded
# module's own release then picks the plan line and run layout (kernels/attention.pyx).

MLA_HEAD_DIMS = ((512, 64),)   # (head_dim_ckv, head_dim_kpe) of the prebuilt wheel (aot.py)
_MLA_TEMPLATE = ("batch_mla_attention_dtype_q_{t}_dtype_kv_{t}_dtype_o_{t}_dtype_idx_i32_"
                 "head_dim_ckv_{ckv}_head_dim_kpe_{kpe}_profiler_False")
# release (ABI file) -> its suffix after profiler_False; a release not listed: 0.6.3's name
MLA_PLAN_ABI_SUFFIX = {"0.7.4": "_planabi2"}
MLA_RELEASES = ("0.6.3", *MLA_PLAN_ABI_SUFFIX)  # the releases whose MLA modules are bound


class MLAVariant:
    """One batched MLA module: what its URI encodes (family "batch_mla"), and the release
    whose name it is (``release``: "0.6.3" for every release that kept that name)."""

    __slots__ = ("family", "dtype", "kv_dtype", "head_dim_ckv", "head_dim_kpe", "backend",
                 "release", "uri")

    def __init__(self, dtype: str, head_dim_ckv: int, head_dim_kpe: int, backend: str = "fa2",
                 release: str = "0.6.3"):
        self.family = "batch_mla"
        self.dtype = self.kv_dtype = dtype
        self.head_dim_ckv = head_dim_ckv
        self.head_dim_kpe = head_dim_kpe
        self.backend = backend
        self.release = release if release in MLA_PLAN_ABI_SUFFIX else "0.6.3"
        self.uri = (_MLA_TEMPLATE.format(t=DTYPE_TOKENS[dtype], ckv=head_dim_ckv,
                                         kpe=head_dim_kpe)
                    + MLA_PLAN_ABI_SUFFIX.get(self.release, "")
                    + ("_sm90" if backend == "fa3" else ""))

    def __eq__(self, other):
        return isinstance(other, MLAVariant) and self.uri == other.uri

    def __hash__(self):
        return hash(self.uri)

    def __repr__(self):
        return f"MLAVariant({self.uri!r})"

    @property
    def in_prebuilt_wheel(self) -> bool:
        """flashinfer-jit-cache 0.6.3 (and 0.7.4, under its name) builds FA2 and (sm90
        wheels) FA3 MLA modules for float16 and bfloat16 with ckv 512 / kpe 64 (aot.py):
        in the wheel the wheel steps use (the pinned release, or the one
        FLASHINFER_CY_FLASHINFER_VERSION names) when it names modules as ``release``."""
        return (self.release == _wheel_names_as(MLA_PLAN_ABI_SUFFIX)
                and self.dtype in SUPPORTED_DTYPES
                and (self.head_dim_ckv, self.head_dim_kpe) in MLA_HEAD_DIMS)


def mla_variant(dtype: str, head_dim_ckv: int, head_dim_kpe: int, backend: str = "fa2",
                release: str | None = None) -> MLAVariant:
    """The MLA module of these dimensions, under the name of FlashInfer ``release`` (default:
    the release the modules are expected to be of, flashinfer_cy.artifacts
    .expected_flashinfer_version)."""
    return _mla_variant(dtype, head_dim_ckv, head_dim_kpe, backend, _abi_release(release))


@functools.lru_cache(maxsize=64)
def _mla_variant(dtype, head_dim_ckv, head_dim_kpe, backend, release) -> MLAVariant:
    if dtype not in SUPPORTED_DTYPES:
        raise ValueError(f"dtype: MLA modules are float16 or bfloat16, got {dtype!r}")
    if backend not in ("fa2", "fa3"):
        raise ValueError(f"backend: expected 'fa2' or 'fa3' here, got {backend!r}")
    return MLAVariant(dtype, int(head_dim_ckv), int(head_dim_kpe), backend, release)
