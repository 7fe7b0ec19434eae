"""Weights from a safetensors checkpoint (HF tensor names), in the layout the step uses.

``load_weights(model_dir, config, to_device)`` reads one tensor at a time with the
``safetensors`` package (numpy), checks its name, dtype and shape against the config, fuses
what the step runs as one GEMM (q/k/v into ``qkv``, gate/up into ``gate_up``: the order
``silu_and_mul`` expects), and hands each result to ``to_device`` right away, so the host
holds at most one layer. Linear weights keep HF's ``[out_features, in_features]`` layout:
the step computes ``x @ w.T``.

Every problem raises ``ValueError`` naming the tensor: a missing or unexpected tensor, a
wrong shape, a dtype other than F32/F16/BF16. bfloat16 tensors come back as float32 (numpy
has no bfloat16; the conversion is exact).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Generic, TypeVar

import numpy as np
import numpy.typing as npt
from safetensors import safe_open

from hf_config import ModelConfig

T = TypeVar("T")
HostArray = npt.NDArray[Any]
DTYPES = ("F32", "F16", "BF16")
# Buffers some older checkpoints carry that the step recomputes; skipped, not an error.
IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


@dataclass
class LayerWeights(Generic[T]):
    input_norm: T          # [hidden]
    qkv: T                 # [(heads + 2 kv_heads) * head_dim, hidden]: q, k, v rows
    q_norm: T | None       # [head_dim] (Qwen3)
    k_norm: T | None
    o: T                   # [hidden, heads * head_dim]
    post_norm: T           # [hidden]
    gate_up: T             # [2 * intermediate, hidden]: gate rows, then up rows
    down: T                # [hidden, intermediate]


@dataclass
class Weights(Generic[T]):
    embed: T               # [vocab, hidden]
    lm_head: T             # [vocab, hidden]; the embed object itself when tied
    final_norm: T          # [hidden]
    layers: list[LayerWeights[T]]


def expected_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor name the checkpoint must hold, with its HF shape."""
    h, i, d = cfg.hidden_size, cfg.intermediate_size, cfg.head_dim
    shapes: dict[str, tuple[int, ...]] = {
        "model.embed_tokens.weight": (cfg.vocab_size, h),
        "model.norm.weight": (h,),
    }
    if not cfg.tie_word_embeddings:
        shapes["lm_head.weight"] = (cfg.vocab_size, h)
    for n in range(cfg.num_layers):
        p = f"model.layers.{n}."
        shapes.update({
            p + "input_layernorm.weight": (h,),
            p + "self_attn.q_proj.weight": (cfg.q_size, h),
            p + "self_attn.k_proj.weight": (cfg.kv_size, h),
            p + "self_attn.v_proj.weight": (cfg.kv_size, h),
            p + "self_attn.o_proj.weight": (h, cfg.q_size),
            p + "post_attention_layernorm.weight": (h,),
            p + "mlp.gate_proj.weight": (i, h),
            p + "mlp.up_proj.weight": (i, h),
            p + "mlp.down_proj.weight": (h, i),
        })
        if cfg.qk_norm:
            shapes[p + "self_attn.q_norm.weight"] = (d,)
            shapes[p + "self_attn.k_norm.weight"] = (d,)
    return shapes


class Checkpoint:
    """The tensors of a model directory: ``model.safetensors``, or the shards named by
    ``model.safetensors.index.json``; or a single ``.safetensors`` file."""

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        files: dict[str, Path] = {}
        if path.is_file():
            shards = [path]
        elif (path / "model.safetensors").is_file():
            shards = [path / "model.safetensors"]
        elif (path / "model.safetensors.index.json").is_file():
            with open(path / "model.safetensors.index.json", encoding="utf-8") as f:
                weight_map = json.load(f)["weight_map"]
            shards = sorted({path / name for name in weight_map.values()})
        else:
            raise ValueError(f"{path}: no model.safetensors or model.safetensors.index.json")
        for shard in shards:
            with safe_open(str(shard), framework="numpy") as f:
                for name in f.keys():
                    if name in files:
                        raise ValueError(f"{name}: in both {files[name]} and {shard}")
                    files[name] = shard
        self.files = files

    def names(self) -> set[str]:
        return set(self.files)

    def read(self, name: str, shape: tuple[int, ...]) -> HostArray:
        """One tensor, checked against ``shape``; bfloat16 as float32."""
        if name not in self.files:
            raise ValueError(f"{name}: missing from the checkpoint")
        with safe_open(str(self.files[name]), framework="numpy") as f:
            sl = f.get_slice(name)
            dtype, got = sl.get_dtype(), tuple(sl.get_shape())
            if got != shape:
                raise ValueError(f"{name}: expected shape {shape}, got {got}")
            if dtype not in DTYPES:
                raise ValueError(f"{name}: dtype {dtype} is not supported (expected one of "
                                 f"{', '.join(DTYPES)})")
            if dtype != "BF16":
                return np.asarray(f.get_tensor(name))
        return _read_bf16_as_float32(self.files[name], name, shape)


def _read_bf16_as_float32(path: Path, name: str, shape: tuple[int, ...]) -> HostArray:
    """numpy cannot hold bfloat16 (safetensors' numpy reader refuses it), so read the raw
    bits through the file's header (the documented safetensors layout: a little-endian
    u64 header length, the JSON header, then the data) and widen them exactly."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        begin, end = json.loads(f.read(n))[name]["data_offsets"]
        f.seek(8 + n + begin)
        bits = np.frombuffer(f.read(end - begin), dtype="<u2")
    return (bits.astype(np.uint32) << 16).view(np.float32).reshape(shape)


def check_names(cfg: ModelConfig, ckpt: Checkpoint) -> None:
    want = expected_shapes(cfg)
    have = {n for n in ckpt.names() if not n.endswith(IGNORED_SUFFIXES)}
    if cfg.tie_word_embeddings:
        have.discard("lm_head.weight")  # some tied checkpoints still carry a copy
    missing, extra = sorted(set(want) - have), sorted(have - set(want))
    if missing:
        raise ValueError(f"checkpoint lacks {len(missing)} tensor(s) the config needs: "
                         f"{', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}")
    if extra:
        raise ValueError(f"checkpoint has {len(extra)} tensor(s) this {cfg.model_type} step "
                         f"would not use (biases? another architecture?): "
                         f"{', '.join(extra[:8])}{' ...' if len(extra) > 8 else ''}")


def load_weights(path: str | Path, cfg: ModelConfig,
                 to_device: Callable[[HostArray], T]) -> Weights[T]:
    """Read, check, fuse and upload every tensor (see the module docstring)."""
    ckpt = Checkpoint(path)
    check_names(cfg, ckpt)
    shapes = expected_shapes(cfg)

    def get(name: str) -> HostArray:
        return ckpt.read(name, shapes[name])

    layers = []
    for n in range(cfg.num_layers):
        p = f"model.layers.{n}."
        attn, mlp = p + "self_attn.", p + "mlp."
        qkv = np.concatenate([get(attn + "q_proj.weight"), get(attn + "k_proj.weight"),
                              get(attn + "v_proj.weight")])
        gate_up = np.concatenate([get(mlp + "gate_proj.weight"), get(mlp + "up_proj.weight")])
        layers.append(LayerWeights(
            input_norm=to_device(get(p + "input_layernorm.weight")),
            qkv=to_device(qkv),
            q_norm=to_device(get(attn + "q_norm.weight")) if cfg.qk_norm else None,
            k_norm=to_device(get(attn + "k_norm.weight")) if cfg.qk_norm else None,
            o=to_device(get(attn + "o_proj.weight")),
            post_norm=to_device(get(p + "post_attention_layernorm.weight")),
            gate_up=to_device(gate_up),
            down=to_device(get(mlp + "down_proj.weight"))))
    embed = to_device(get("model.embed_tokens.weight"))
    lm_head = embed if cfg.tie_word_embeddings else to_device(get("lm_head.weight"))
    return Weights(embed=embed, lm_head=lm_head, final_norm=to_device(get("model.norm.weight")),
                   layers=layers)
