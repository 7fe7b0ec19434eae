"""Decode-step throughput of a random-weight Llama-3 / Qwen3-shaped model through
flashinfer_cy: tokens/s and host µs per decode step, eager / prepared / CUDA graph; the same
loop on flashinfer-python's kernels when ``import flashinfer`` works (torch back-end; eager, and
replayed from a CUDA graph when its step captures), and
transformers' own eager forward as context when it is installed. Also the step's GPU-only
time (CUDA events around graph replays) and where an eager step's host time goes.

    python examples/model_step/bench.py --layers 8 --hidden 4096 --heads 32 --kv-heads 8 \\
        --vocab 32000 --batch 32 --context 1024 [--backend cupy] [--arch qwen3]

Needs a CUDA GPU, torch or CuPy, and the norm, page, rope, silu_and_mul and FA2 batch
prefill/decode modules for the dtype (bfloat16 on torch, float16 on CuPy), head_dim 128.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from array_backends import make_backend  # noqa: E402
from hf_config import ModelConfig, parse_config  # noqa: E402
from model import Model  # noqa: E402
from sampling import sample  # noqa: E402
from weights import LayerWeights, Weights  # noqa: E402


def random_weights(be: Any, cfg: ModelConfig, rng: np.random.Generator) -> Weights[Any]:
    """Device weights of the right shapes (uploaded per tensor; values ~ N(0, 1/fan_in),
    norms ~ 1), built without a checkpoint: a large model's file would take minutes."""
    h, i, d = cfg.hidden_size, cfg.intermediate_size, cfg.head_dim

    def rand(*shape: int) -> Any:
        return be.upload(rng.standard_normal(shape, dtype=np.float32) / math.sqrt(shape[-1]))

    def norm(n: int) -> Any:
        return be.upload(1 + 0.1 * rng.standard_normal(n, dtype=np.float32))

    layers = [LayerWeights(
        input_norm=norm(h), qkv=rand(cfg.q_size + 2 * cfg.kv_size, h),
        q_norm=norm(d) if cfg.qk_norm else None, k_norm=norm(d) if cfg.qk_norm else None,
        o=rand(h, cfg.q_size), post_norm=norm(h), gate_up=rand(2 * i, h), down=rand(h, i))
        for _ in range(cfg.num_layers)]
    embed = rand(cfg.vocab_size, h)
    return Weights(embed=embed, lm_head=embed if cfg.tie_word_embeddings else rand(
        cfg.vocab_size, h), final_norm=norm(h), layers=layers)


class Timed:
    """A proxy that adds the wall time of every method call of ``obj`` to ``buckets[key]``
    (``buckets[other[name]]`` for the methods named in ``other``)."""

    def __init__(self, obj: Any, key: str, buckets: dict[str, float],
                 other: dict[str, str] | None = None) -> None:
        self._obj, self._key, self._buckets, self._other = obj, key, buckets, other or {}

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._obj, name)
        if not callable(attr):
            return attr

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return attr(*args, **kwargs)
            finally:
                self._buckets[self._other.get(name, self._key)] += time.perf_counter() - t0
        return timed


def run_mode(model: Model, be: Any, prompts: list[Any], mode: str, steps: int,
             warmup: int = 3) -> tuple[float, float]:
    """(tokens/s, median host µs of model.decode) over ``steps`` greedy steps."""
    model.start_over()
    tok = be.empty((len(prompts),), "int64")
    sample(be, model.prefill(prompts), tok)
    for _ in range(warmup):
        sample(be, model.decode(tok, mode), tok)
    be.synchronize()
    host = []
    t_start = time.perf_counter()
    for _ in range(steps):
        t0 = time.perf_counter()
        logits = model.decode(tok, mode)
        host.append(time.perf_counter() - t0)
        sample(be, logits, tok)
    be.synchronize()
    wall = time.perf_counter() - t_start
    return len(prompts) * steps / wall, float(np.median(host)) * 1e6


def gpu_time_of_graph(model: Model, be: Any, replays: int = 20) -> float:
    """Milliseconds of GPU time per replay of the captured step (no host work between)."""
    replay = model.replay_of("graph")
    assert replay is not None, "run the graph mode first"
    replay()
    stop = be.timer()
    for _ in range(replays):
        replay()
    ms: float = stop() / replays
    return ms


def host_breakdown(model: Model, be: Any, prompts: list[Any], steps: int,
                   ops_mode: str = "eager") -> dict[str, float]:
    """µs per eager step with ``ops_mode``'s kernels: FlashInfer kernel calls, the wrapper's
    plan, array-library calls (GEMMs, gather, copies), and the Python in between (the
    proxies' own cost included)."""
    buckets = {"flashinfer calls": 0.0, "array library (GEMMs...)": 0.0, "decode plan": 0.0}
    model.start_over()
    tok = be.empty((len(prompts),), "int64")
    sample(be, model.prefill(prompts), tok)
    model.add_decode_ops("timed", Timed(model._ops[ops_mode], "flashinfer calls", buckets,
                                        {"plan_decode": "decode plan"}))
    model.be = Timed(be, "array library (GEMMs...)", buckets)
    total = 0.0
    try:
        for _ in range(steps):
            t0 = time.perf_counter()
            logits = model.decode(tok, "timed")
            total += time.perf_counter() - t0
            sample(be, logits, tok)
        be.synchronize()
    finally:
        model.be = be
    out = {k: v / steps * 1e6 for k, v in buckets.items()}
    out["python"] = total / steps * 1e6 - sum(out.values())
    return out


def flashinfer_python_ops(model: Model, cfg: ModelConfig) -> Any:
    import flashinfer
    import torch

    from step_kernels import FlashInferPythonOps

    buf = model.decode_buffers()
    ws = torch.empty(128 << 20, dtype=torch.uint8, device="cuda")
    wrapper = flashinfer.BatchDecodeWithPagedKVCacheWrapper(
        ws, "NHD", use_cuda_graph=True, paged_kv_indptr_buffer=buf.kv_indptr,
        paged_kv_indices_buffer=buf.kv_indices, paged_kv_last_page_len_buffer=buf.kv_last)
    return FlashInferPythonOps(cfg, wrapper)


def transformers_step_ms(cfg: ModelConfig, raw: dict[str, Any], batch: int, context: int,
                         steps: int) -> float:
    """ms per greedy decode step of transformers' eager model (bf16), batch x context."""
    import torch
    import transformers

    hf_cfg = transformers.AutoConfig.for_model(**raw)
    with torch.device("cuda"):
        model = transformers.AutoModelForCausalLM.from_config(hf_cfg).to(torch.bfloat16)
    ids = torch.randint(0, cfg.vocab_size, (batch, context), device="cuda")
    with torch.no_grad():
        out = model(input_ids=ids, use_cache=True)
        past, tok = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(steps):
            out = model(input_ids=tok, past_key_values=past, use_cache=True)
            past, tok = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / steps * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", choices=("torch", "cupy"), default="torch")
    ap.add_argument("--arch", choices=("llama", "qwen3"), default="llama")
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=4096)
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--intermediate", type=int, default=None, help="default: 3.5 x hidden")
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--context", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=50)
    args = ap.parse_args()

    raw = {"model_type": args.arch, "vocab_size": args.vocab, "hidden_size": args.hidden,
           "intermediate_size": args.intermediate or (args.hidden * 7 // 2 // 256 * 256),
           "num_hidden_layers": args.layers, "num_attention_heads": args.heads,
           "num_key_value_heads": args.kv_heads, "head_dim": 128,
           "tie_word_embeddings": args.arch == "qwen3", "max_position_embeddings": 1 << 16,
           "rope_theta": 500000.0 if args.arch == "llama" else 1e6}
    if args.arch == "llama":
        raw["rope_scaling"] = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                               "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
    cfg = parse_config(raw)
    be = make_backend(args.backend)
    rng = np.random.default_rng(0)
    pages = args.batch * -(-(args.context + 2 * args.steps + 16) // 16)
    model = Model(cfg, random_weights(be, cfg, rng), be, max_pages=pages)
    prompts = [rng.integers(0, cfg.vocab_size, args.context) for _ in range(args.batch)]
    print(f"{args.arch}: {cfg.num_layers} layers, hidden {cfg.hidden_size}, heads "
          f"{cfg.num_heads}/{cfg.num_kv_heads}, vocab {cfg.vocab_size}; batch {args.batch}, "
          f"context {args.context}; {be.name} {be.dtype}")

    rows: list[tuple[str, float, float]] = []
    for mode in ("eager", "prepared", "graph"):
        rows.append((f"flashinfer_cy {mode}", *run_mode(model, be, prompts, mode, args.steps)))
    gpu_ms = gpu_time_of_graph(model, be)
    if be.name == "torch":
        try:
            model.add_decode_ops("flashinfer-python", flashinfer_python_ops(model, cfg),
                                 graph=True)
            rows.append(("flashinfer-python eager",
                         *run_mode(model, be, prompts, "flashinfer-python", args.steps)))
        except Exception as exc:  # noqa: BLE001 - not installed, or its kernels not built
            print(f"(flashinfer-python column skipped: {type(exc).__name__}: {exc})")
        else:
            try:  # its own wrapper in use_cuda_graph mode, captured like ours
                rows.append(("flashinfer-python graph", *run_mode(
                    model, be, prompts, "flashinfer-python graph", args.steps)))
            except Exception as exc:  # noqa: BLE001 - the peer's step did not capture
                print(f"(flashinfer-python graph row skipped: {type(exc).__name__}: {exc})")
    print(f"\n{'decode step':28s} {'tokens/s':>10s} {'host µs/step':>13s}")
    for name, tps, host in rows:
        print(f"{name:28s} {tps:10.0f} {host:13.1f}")
    print(f"\nGPU time per step (CUDA events around graph replays): {gpu_ms * 1e3:.1f} µs")
    calls = {}
    for who, ops_mode in (("flashinfer_cy", "eager"), ("flashinfer_cy prepared", "prepared"),
                          ("flashinfer-python", "flashinfer-python")):
        if ops_mode not in model._ops:
            continue
        parts = host_breakdown(model, be, prompts, min(args.steps, 20), ops_mode)
        total = sum(parts.values())
        calls[who] = parts["flashinfer calls"]
        print(f"{who} step host time {total:.0f} µs:",
              ", ".join(f"{k} {v:.0f} µs ({100 * v / total:.0f}%)" for k, v in parts.items()))
    if "flashinfer-python" in calls:
        for who in ("flashinfer_cy", "flashinfer_cy prepared"):
            print(f"FlashInfer-call host time, {who} / flashinfer-python: "
                  f"{calls[who] / calls['flashinfer-python']:.2f}x (target <= 0.6x)")
    if be.name == "torch":
        try:
            ms = transformers_step_ms(cfg, raw, args.batch, args.context, min(args.steps, 10))
            print(f"transformers eager forward (bf16, context): {ms:.2f} ms/step, "
                  f"{args.batch / ms * 1e3:.0f} tokens/s")
        except Exception as exc:  # noqa: BLE001 - optional context
            print(f"(transformers column skipped: {type(exc).__name__}: {exc})")


if __name__ == "__main__":
    main()
