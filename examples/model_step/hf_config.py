"""HF ``config.json`` -> :class:`ModelConfig` for the two families this example runs:
Llama (Llama-3 rope scaling included) and Qwen3 (per-head q/k RMSNorm).

Both spellings of RoPE settings are read: the older top-level ``rope_theta`` +
``rope_scaling`` (what checkpoints on the Hub carry) and transformers 5's
``rope_parameters`` dict. Anything the step does not implement (biases, sliding windows,
other rope types, other activations) raises ``ValueError`` naming the key, instead of
running a model that would silently compute something else.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ARCHITECTURES = {"llama": "LlamaForCausalLM", "qwen3": "Qwen3ForCausalLM"}
HEAD_DIMS = (64, 128, 256)        # FlashInfer's attention modules (and rope) cover these
DECODE_GROUP_SIZES = (1, 2, 3, 4, 8)  # q heads per kv head the batch decode kernels take


@dataclass(frozen=True)
class Llama3Rope:
    """``rope_type: llama3`` frequency scaling (flashinfer's ``apply_llama31_rope``)."""

    factor: float
    low_freq_factor: float
    high_freq_factor: float
    original_max_position_embeddings: int


@dataclass(frozen=True)
class ModelConfig:
    model_type: str                # "llama" or "qwen3"
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float
    rope_theta: float
    rope_llama3: Llama3Rope | None
    tie_word_embeddings: bool
    max_position_embeddings: int

    @property
    def qk_norm(self) -> bool:
        """Qwen3 normalises each q and k head (over head_dim) before RoPE."""
        return self.model_type == "qwen3"

    @property
    def q_size(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.num_kv_heads * self.head_dim


def read_config(source: str | Path | dict[str, Any]) -> ModelConfig:
    """A model directory, a ``config.json`` path, or the parsed dict."""
    if isinstance(source, dict):
        raw = source
    else:
        path = Path(source)
        if path.is_dir():
            path = path / "config.json"
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: expected a JSON object, got {type(raw).__name__}")
    return parse_config(raw)


def parse_config(raw: dict[str, Any]) -> ModelConfig:
    model_type = raw.get("model_type")
    if model_type not in ARCHITECTURES:
        raise ValueError(f"model_type: expected one of {sorted(ARCHITECTURES)}, got {model_type!r}")
    archs = raw.get("architectures")
    if archs is not None and archs != [ARCHITECTURES[model_type]]:
        raise ValueError(f"architectures: expected [{ARCHITECTURES[model_type]!r}] for "
                         f"model_type {model_type!r}, got {archs!r}")

    hidden = _int(raw, "hidden_size")
    heads = _int(raw, "num_attention_heads")
    kv_heads = _int(raw, "num_key_value_heads", default=heads)
    head_dim_default = hidden // heads if hidden % heads == 0 else None
    if raw.get("head_dim") is None and head_dim_default is None:
        raise ValueError(f"head_dim: absent, and hidden_size {hidden} is not a multiple of "
                         f"num_attention_heads {heads}")
    head_dim = _int(raw, "head_dim", default=head_dim_default)
    if head_dim not in HEAD_DIMS:
        raise ValueError(f"head_dim: must be one of {HEAD_DIMS} (FlashInfer's attention "
                         f"modules), got {head_dim}")
    if heads % kv_heads or heads // kv_heads not in DECODE_GROUP_SIZES:
        raise ValueError(f"num_key_value_heads: num_attention_heads / num_key_value_heads must "
                         f"be one of {DECODE_GROUP_SIZES} (the batch decode kernels' group "
                         f"sizes), got {heads} / {kv_heads}")

    _require(raw, "hidden_act", "silu", default="silu")
    _require(raw, "attention_bias", False, default=False)
    _require(raw, "mlp_bias", False, default=False)
    if model_type == "qwen3":
        _require(raw, "use_sliding_window", False, default=False)

    theta, llama3 = _rope(raw, model_type)
    eps = raw.get("rms_norm_eps", 1e-6)
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not (
            math.isfinite(eps) and eps > 0):
        raise ValueError(f"rms_norm_eps: expected a finite number > 0, got {eps!r}")
    tie = raw.get("tie_word_embeddings", False)
    if not isinstance(tie, bool):
        raise ValueError(f"tie_word_embeddings: expected true or false, got {tie!r}")
    return ModelConfig(
        model_type=model_type, vocab_size=_int(raw, "vocab_size"), hidden_size=hidden,
        intermediate_size=_int(raw, "intermediate_size"),
        num_layers=_int(raw, "num_hidden_layers"), num_heads=heads, num_kv_heads=kv_heads,
        head_dim=head_dim, rms_norm_eps=float(eps), rope_theta=theta, rope_llama3=llama3,
        tie_word_embeddings=tie,
        max_position_embeddings=_int(raw, "max_position_embeddings", default=1 << 20))


def _rope(raw: dict[str, Any], model_type: str) -> tuple[float, Llama3Rope | None]:
    params = raw.get("rope_parameters") or raw.get("rope_scaling") or {}
    if not isinstance(params, dict):
        raise ValueError(f"rope_parameters: expected an object, got {params!r}")
    if any(isinstance(v, dict) for v in params.values()):
        raise ValueError("rope_parameters: per-layer-type RoPE settings are not supported")
    rope_type = params.get("rope_type", params.get("type", "default"))
    theta = params.get("rope_theta", raw.get("rope_theta", 10000.0))
    if not isinstance(theta, (int, float)) or isinstance(theta, bool) or not (
            math.isfinite(theta) and theta > 0):
        raise ValueError(f"rope_theta: expected a finite number > 0, got {theta!r}")
    partial = params.get("partial_rotary_factor", raw.get("partial_rotary_factor", 1.0))
    if partial != 1.0:
        raise ValueError(f"partial_rotary_factor: only 1.0 (rotate all of head_dim) is "
                         f"supported, got {partial!r}")
    if rope_type == "default":
        return float(theta), None
    if rope_type != "llama3" or model_type != "llama":
        raise ValueError(f"rope_type: {model_type} supports 'default'"
                         f"{' and llama3' if model_type == 'llama' else ''}, got {rope_type!r}")
    where = "rope_parameters" if raw.get("rope_parameters") else "rope_scaling"
    vals = {}
    for key in ("factor", "low_freq_factor", "high_freq_factor"):
        v = params.get(key)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not (
                math.isfinite(v) and v > 0):
            raise ValueError(f"{where}.{key}: expected a finite number > 0, got {v!r}")
        vals[key] = float(v)
    if vals["high_freq_factor"] <= vals["low_freq_factor"]:
        raise ValueError(f"{where}.high_freq_factor: must exceed low_freq_factor, got "
                         f"{vals['high_freq_factor']} <= {vals['low_freq_factor']}")
    # transformers fills this in from max_position_embeddings when the file omits it.
    old = params.get("original_max_position_embeddings", raw.get("max_position_embeddings"))
    if not isinstance(old, int) or isinstance(old, bool) or old <= 0:
        raise ValueError(f"{where}.original_max_position_embeddings: expected an int > 0, "
                         f"got {old!r}")
    return float(theta), Llama3Rope(vals["factor"], vals["low_freq_factor"],
                                    vals["high_freq_factor"], old)


def _int(raw: dict[str, Any], key: str, default: int | None = None) -> int:
    v = raw.get(key, default)
    if v is None:
        raise ValueError(f"{key}: missing from config.json")
    if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
        raise ValueError(f"{key}: expected an int > 0, got {v!r}")
    return v


def _require(raw: dict[str, Any], key: str, want: object, default: object) -> None:
    got = raw.get(key, default)
    if got != want:
        raise ValueError(f"{key}: only {want!r} is supported by this example, got {got!r}")
