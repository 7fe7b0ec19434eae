"""Kernel module URIs per flashinfer release: parse, format, presets, expected exports.

Pure Python (no torch, no flashinfer) so that CI and ``build_kernels.py --list`` /
``--no-build`` work anywhere. A URI is the module name the runtime asks for; it is
also the build directory name and the ``.so`` stem (``<dir>/<uri>/<uri>.so``).

The templates mirror ``flashinfer/jit/attention/modules.py`` (``get_*_uri``) of each
release, see docs/flashinfer-abi.md §4.1 and :data:`RELEASES`. Field names are the keyword
arguments of the matching ``gen_*_module`` generator, so a parsed URI can be passed
to the generator as-is once dtype tokens are mapped to torch dtypes. Every function takes
``version`` (default :data:`DEFAULT_VERSION`); an unknown one is a ValueError.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from dataclasses import dataclass

DEFAULT_VERSION = "0.6.3"  # the release flashinfer_cy's tables are written for
FLASHINFER_VERSION = DEFAULT_VERSION  # older name of the default

# Tokens of flashinfer's filename_safe_dtype_map that make sense per slot.
FLOAT_DTYPES = ("f16", "bf16", "e4m3", "e5m2")
IDX_DTYPES = ("i32", "i64")

_FIELD_RE = {
    "dtype_q": FLOAT_DTYPES,
    "dtype_kv": FLOAT_DTYPES,
    "dtype_o": FLOAT_DTYPES,
    "dtype_idx": IDX_DTYPES,
}
_INT_FIELDS = {"head_dim_qk", "head_dim_vo", "head_dim_ckv", "head_dim_kpe"}
_BOOL_FIELDS = {"use_sliding_window", "use_logits_soft_cap", "use_fp16_qk_reduction", "use_profiler"}


@dataclass(frozen=True)
class Family:
    name: str
    template: str           # str.format template over generator kwargs
    generator: str          # "module:function" in flashinfer
    exports: tuple          # names exported as __tvm_ffi_<name> (what the runtime calls)
    has_backend: bool = False  # URI ends in "_sm90" iff backend == "fa3"
    fixed_kwargs: tuple = ()   # generator kwargs the URI does not spell (name, value) pairs
    # FA2's own suffix and generator where a release names its FA2 module apart (0.7.4's
    # batch prefill: "_kv_stride_equal", the module its AOT wheel ships): (suffix, generator)
    fa2_variant: tuple = ()

    def field_names(self) -> list:
        return re.findall(r"\{(\w+)\}", self.template)


_ATTN = "flashinfer.jit.attention.modules"
_QKV = "dtype_q_{dtype_q}_dtype_kv_{dtype_kv}_dtype_o_{dtype_o}_"
_TAIL = "posenc_{pos_encoding_mode}_use_swa_{use_sliding_window}_use_logits_cap_{use_logits_soft_cap}"

_FAMILIES_063 = (
    Family("norm", "norm", "flashinfer.jit.norm:gen_norm_module",
           ("rmsnorm", "fused_add_rmsnorm", "gemma_rmsnorm", "gemma_fused_add_rmsnorm")),
    Family("page", "page", "flashinfer.jit.page:gen_page_module",
           ("append_paged_kv_cache", "append_paged_mla_kv_cache")),
    Family("sampling", "sampling", "flashinfer.jit.sampling:gen_sampling_module",
           ("softmax", "sampling_from_probs", "sampling_from_logits", "top_k_sampling_from_probs",
            "min_p_sampling_from_probs", "top_p_sampling_from_probs",
            "top_k_top_p_sampling_from_probs", "top_k_renorm_probs", "top_p_renorm_probs",
            "top_k_mask_logits", "chain_speculative_sampling")),
    Family("gdn_prefill", "gdn_prefill_sm90", "flashinfer.jit.gdn:gen_gdn_prefill_sm90_module",
           ("gdn_prefill",)),
    Family("rope", "rope", "flashinfer.jit.rope:gen_rope_module",
           ("apply_rope", "apply_llama31_rope", "apply_rope_pos_ids",
            "apply_llama31_rope_pos_ids", "apply_rope_pos_ids_cos_sin_cache")),
    *(Family(f"{act}_and_mul", f"{act}_and_mul",
             "flashinfer.jit.activation:gen_act_and_mul_module", (f"{act}_and_mul",),
             fixed_kwargs=(("act_func_name", act),))
      for act in ("silu", "gelu", "gelu_tanh")),
    Family("cascade", "cascade", "flashinfer.jit.cascade:gen_cascade_module",
           ("merge_state", "merge_state_in_place", "merge_states")),
    Family("topk", "topk", "flashinfer.jit.topk:gen_topk_module",
           ("radix_topk", "radix_topk_page_table_transform", "radix_topk_ragged_transform",
            "can_implement_filtered_topk")),
    Family("single_decode",
           "single_decode_with_kv_cache_" + _QKV + "head_dim_qk_{head_dim_qk}_head_dim_vo_{head_dim_vo}_" + _TAIL,
           _ATTN + ":gen_single_decode_module", ("run",)),
    Family("batch_decode",
           "batch_decode_with_kv_cache_" + _QKV
           + "dtype_idx_{dtype_idx}_head_dim_qk_{head_dim_qk}_head_dim_vo_{head_dim_vo}_" + _TAIL,
           _ATTN + ":gen_batch_decode_module", ("plan", "run")),
    Family("single_prefill",
           "single_prefill_with_kv_cache_" + _QKV + "head_dim_qk_{head_dim_qk}_head_dim_vo_{head_dim_vo}_"
           + _TAIL + "_f16qk_{use_fp16_qk_reduction}",
           _ATTN + ":gen_single_prefill_module", ("run",), has_backend=True),
    Family("batch_prefill",
           "batch_prefill_with_kv_cache_" + _QKV
           + "dtype_idx_{dtype_idx}_head_dim_qk_{head_dim_qk}_head_dim_vo_{head_dim_vo}_"
           + _TAIL + "_f16qk_{use_fp16_qk_reduction}",
           _ATTN + ":gen_batch_prefill_module", ("plan", "ragged_run", "paged_run"), has_backend=True),
    Family("batch_mla",
           "batch_mla_attention_" + _QKV
           + "dtype_idx_{dtype_idx}_head_dim_ckv_{head_dim_ckv}_head_dim_kpe_{head_dim_kpe}_profiler_{use_profiler}",
           _ATTN + ":gen_batch_mla_module", ("plan", "run"), has_backend=True),
    # CUTLASS fused MoE for sm90 (issue 21; kernels/fused_moe.py): 154 generated CUTLASS
    # translation units plus ~25 others (docs/moe-build.md).
    Family("fused_moe_90", "fused_moe_90",
           "flashinfer.jit.fused_moe:gen_cutlass_fused_moe_sm90_module", ("init",)),
)



def _field_pattern(field: str) -> str:
    if field in _FIELD_RE:
        return "(?P<%s>%s)" % (field, "|".join(_FIELD_RE[field]))
    if field in _INT_FIELDS:
        return r"(?P<%s>[1-9][0-9]{0,3})" % field
    if field in _BOOL_FIELDS:
        return "(?P<%s>True|False)" % field  # Python str(bool): capitalized
    if field == "pos_encoding_mode":
        return "(?P<pos_encoding_mode>[012])"  # none / rope-llama / alibi
    raise AssertionError(field)


def _compile(family: Family) -> re.Pattern:
    parts = re.split(r"(\{\w+\})", family.template)
    body = "".join(_field_pattern(p[1:-1]) if p.startswith("{") else re.escape(p) for p in parts)
    suffix = "(?P<sm90>_sm90)?" if family.has_backend else ""
    if family.fa2_variant:  # exactly one of FA2's suffix and FA3's
        suffix = "(?:(?P<sm90>_sm90)|%s)" % re.escape(family.fa2_variant[0])
    return re.compile(body + suffix)




def _placeholder_template(family: Family) -> str:
    """Human-readable grammar for error messages."""
    def ph(m):
        field = m.group(1)
        if field in _FIELD_RE:
            return "<" + "|".join(_FIELD_RE[field]) + ">"
        if field in _BOOL_FIELDS:
            return "<True|False>"
        return "<0|1|2>" if field == "pos_encoding_mode" else "<int>"
    tail = "[_sm90]" if family.has_backend else ""
    if family.fa2_variant:
        tail = "<%s|_sm90>" % family.fa2_variant[0]
    return re.sub(r"\{(\w+)\}", ph, family.template) + tail


@dataclass(frozen=True)
class ModuleSpec:
    uri: str
    family: Family
    kwargs: dict  # generator kwargs; dtypes still as URI tokens ("f16", "i32", ...)

    @property
    def exports(self) -> tuple:
        return self.family.exports

    @property
    def generator(self) -> str:
        """The flashinfer generator ("module:function") that makes this module."""
        if self.family.fa2_variant and self.kwargs.get("backend") == "fa2":
            return self.family.fa2_variant[1]
        return self.family.generator


def parse_uri(uri: str, version: str = DEFAULT_VERSION) -> ModuleSpec:
    """Map a URI of flashinfer ``version`` back to its generator kwargs, or raise ValueError
    saying why not (naming the release when the module does not exist in it)."""
    rel = release(version)
    for key, why in rel.absent.items():
        if uri == key or uri.startswith(key + "_"):
            raise ValueError(f"{uri!r} does not exist in flashinfer {rel.version}: {why}")
    for family, pattern in rel.patterns:
        m = pattern.fullmatch(uri)
        if not m:
            continue
        kwargs = dict(family.fixed_kwargs)
        for field in family.field_names():
            value = m.group(field)
            if field in _BOOL_FIELDS:
                value = value == "True"
            elif field in _INT_FIELDS or field == "pos_encoding_mode":
                value = int(value)
            kwargs[field] = value
        if family.has_backend:
            kwargs["backend"] = "fa3" if m.group("sm90") else "fa2"
        spec = ModuleSpec(uri, family, kwargs)
        assert format_uri(family.name, kwargs, version) == uri, uri  # grammar is unambiguous
        return spec
    # Name the family the URI was presumably meant for, with its grammar.
    for family in rel.families:
        stem = family.template.split("{", 1)[0]
        if "{" in family.template and uri.startswith(stem.split("_dtype_")[0]):
            raise ValueError(f"malformed {family.name} URI {uri!r} for flashinfer {rel.version}; "
                             f"expected {_placeholder_template(family)}")
    known = ", ".join(f.template for f in rel.families if "{" not in f.template)
    prefixes = ", ".join(f.template.split("_dtype_")[0] + "_..." for f in rel.families if "{" in f.template)
    raise ValueError(f"unknown kernel module URI {uri!r} for flashinfer {rel.version}; "
                     f"expected one of {known} or {prefixes}")


def format_uri(family: str, kwargs: dict, version: str = DEFAULT_VERSION) -> str:
    fam = release(version).family[family]
    uri = fam.template.format(**{k: kwargs[k] for k in fam.field_names()})
    if fam.has_backend:
        if kwargs["backend"] not in ("fa2", "fa3"):
            raise ValueError(f"backend must be fa2 or fa3, got {kwargs['backend']!r}")
        uri += "_sm90" if kwargs["backend"] == "fa3" else (fam.fa2_variant or ("",))[0]
    return uri


# ---------------------------------------------------------------------------------------
# Presets. Same fixed choices as upstream aot.py: pos_encoding_mode 0, no fp16 qk
# reduction, int32 indices, q = kv = o dtype.
# ---------------------------------------------------------------------------------------

def attention_uri(family: str, dtype: str = "f16", head_dim: int = 128, swa: bool = False,
                  cap: bool = False, backend: str = "fa2", kv: str | None = None,
                  version: str = DEFAULT_VERSION) -> str:
    """An attention module URI; ``kv`` is the KV cache's dtype token (default: ``dtype``)."""
    kwargs = dict(dtype_q=dtype, dtype_kv=kv or dtype, dtype_o=dtype, dtype_idx="i32",
                  head_dim_qk=head_dim, head_dim_vo=head_dim, pos_encoding_mode=0,
                  use_sliding_window=swa, use_logits_soft_cap=cap,
                  use_fp16_qk_reduction=False, backend=backend)
    return format_uri(family, kwargs, version)


def _test_preset(version: str = DEFAULT_VERSION) -> list:
    def uri(*args, **kw):
        return attention_uri(*args, version=version, **kw)
    uris = []
    for dtype in ("f16", "bf16"):
        uris += [uri("batch_decode", dtype), uri("single_decode", dtype),
                 uri("single_prefill", dtype), uri("batch_prefill", dtype),
                 uri("batch_prefill", dtype, backend="fa3")]
        # fp8 (e4m3) KV cache with 16-bit q: FA2 only
        uris += [uri("batch_decode", dtype, kv="e4m3"), uri("batch_prefill", dtype, kv="e4m3"),
                 uri("single_decode", dtype, kv="e4m3"), uri("single_prefill", dtype, kv="e4m3")]
    uris += [uri("batch_decode", "f16", head_dim=64),
             uri("batch_decode", "f16", swa=True, cap=True)]
    return uris


def mla_uri(dtype: str = "bf16", backend: str = "fa2", head_dim_ckv: int = 512,
            head_dim_kpe: int = 64, version: str = DEFAULT_VERSION) -> str:
    """A batched MLA module URI (q = kv = o dtype, int32 indices, no profiler)."""
    return format_uri("batch_mla", dict(dtype_q=dtype, dtype_kv=dtype, dtype_o=dtype,
                                        dtype_idx="i32", head_dim_ckv=head_dim_ckv,
                                        head_dim_kpe=head_dim_kpe, use_profiler=False,
                                        backend=backend), version)


def _presets(families, version) -> dict:
    """The same preset names for every release; a preset whose modules a release lacks is absent."""
    names = {f.name for f in families}
    presets = {
        "core": ["norm", "page"],
        # What a decode step needs besides attention (issue 16's kernels).
        "decode_step": ["rope", "silu_and_mul", "gelu_and_mul", "gelu_tanh_and_mul", "sampling",
                        "cascade", "topk"],
        "gdn": ["gdn_prefill_sm90"] if "gdn_prefill" in names else None,
        "sampling": ["sampling"],
        # What the project's GPU tests load (attention only; they also need @core).
        "test": _test_preset(version),
        # Batched MLA (DeepSeek ckv 512 / kpe 64), FA2 and FA3 (sm90), f16 and bf16.
        "mla": [mla_uri(dtype, backend, version=version) for dtype in ("f16", "bf16")
                for backend in ("fa2", "fa3")] if "batch_mla" in names else None,
    }
    presets["all"] = list(dict.fromkeys(presets["core"] + presets["decode_step"] + (presets["gdn"] or [])
                                        + presets["test"] + (presets["mla"] or [])))
    return {k: v for k, v in presets.items() if v is not None}


@dataclass(frozen=True)
class Release:
    """One flashinfer release: its URI grammar (families), presets, and what it lacks."""

    version: str
    families: tuple
    absent: dict  # URI or "@preset" -> why this release has no such module

    @functools.cached_property  # frozen: cached_property writes __dict__ directly
    def family(self) -> dict:
        return {f.name: f for f in self.families}

    @functools.cached_property
    def patterns(self) -> list:
        return [(f, _compile(f)) for f in self.families]

    @functools.cached_property
    def presets(self) -> dict:
        return _presets(self.families, self.version)


_NO_GDN = ("0.7.x removed jit/gdn.py and gdn_prefill_launcher.cu: on sm_90 its GDN prefill is a "
           "CuTe-DSL kernel compiled inside its Python process, not a module to build "
           "(docs/abi-versions.md, \"GDN prefill and 0.7.4\")")


def _families_074() -> tuple:
    """0.6.3 -> 0.7.4 for the families here (read from the 0.7.4 wheel's flashinfer/jit):
    gdn_prefill_sm90 is gone; batch_mla's URI gains ``_planabi2`` before the backend suffix (its
    plan() packs a new plan_info). The other URIs are unchanged for the variants we build:
    0.7.4's other new suffixes (``_token_head_sf``, ``_kv_stride_independent``,
    ``page_nvfp4_4over6``, ``fp4x2_e2m1`` KV) name variants not built here.
    The FA2 batch prefill module is 0.7.4's ``_kv_stride_equal`` one
    (``_gen_batch_prefill_primary_module``): what its AOT wheel ships and its
    BatchPrefillWith*KVCacheWrapper loads, paged kernels for K and V of identical strides only
    (the public ``gen_batch_prefill_module`` makes the plain URI, dispatching on strides at run
    time, which neither the wheel nor flashinfer-python uses).
    ``fused_moe_90`` keeps its name: 0.7.4's gen_cutlass_fused_moe_sm90_module names it
    ``fused_moe_90_h20_prebuilt_d`` only when torch sees a 78-SM device (an H20) at build
    time, a variant for that part that is not built here (the generic module runs on every
    sm_90 part)."""
    out = []
    for f in _FAMILIES_063:
        if f.name == "gdn_prefill":  # gone
            continue
        if f.name == "batch_mla":
            f = dataclasses.replace(f, template=f.template + "_planabi2")
        if f.name == "batch_prefill":
            f = dataclasses.replace(f, fa2_variant=(
                "_kv_stride_equal", _ATTN + ":_gen_batch_prefill_primary_module"))
        out.append(f)
    return tuple(out)


RELEASES = {
    "0.6.3": Release("0.6.3", _FAMILIES_063, {}),
    "0.7.4": Release("0.7.4", _families_074(), {"gdn_prefill_sm90": _NO_GDN, "@gdn": _NO_GDN}),
}


def release(version: str = DEFAULT_VERSION) -> Release:
    if version not in RELEASES:
        raise ValueError(f"flashinfer {version!r} is not a release tools/kernel_uris.py knows; known: "
                         f"{', '.join(RELEASES)} (adding one: docs/abi-versions.md)")
    return RELEASES[version]


# The default release's tables, under their old names.
FAMILIES = _FAMILIES_063
FAMILY = RELEASES[DEFAULT_VERSION].family
PRESETS = RELEASES[DEFAULT_VERSION].presets


def expand(names, version: str = DEFAULT_VERSION) -> list:
    """Expand "@preset" names, validate every URI against ``version``, drop duplicates keeping order."""
    rel = release(version)
    presets = rel.presets
    out = []
    for name in names:
        if name.startswith("@"):
            if name in rel.absent:
                raise ValueError(f"preset {name} has no modules in flashinfer {rel.version}: {rel.absent[name]}")
            if name[1:] not in presets:
                raise ValueError(f"unknown preset {name!r}; known: "
                                 + ", ".join("@" + p for p in presets))
            out += presets[name[1:]]
        else:
            parse_uri(name, version)
            out.append(name)
    return list(dict.fromkeys(out))
