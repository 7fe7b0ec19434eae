"""Host and GPU cost of the CUTLASS fused MoE (``fused_moe_90``), flashinfer_cy side by side
with flashinfer-python's ``cutlass_fused_moe`` on the same module, in one run (issue 21's
benchmark). Not yet run on a GPU: no fused MoE module has been built to the end
(docs/moe-build.md).

Shapes (DeepSeek-V3-like expert layer): 64 experts, top-8, hidden 7168, intermediate 2048,
DeepSeek fp8 block scale (bf16 activations, fp8 e4m3 weights in 128x128 blocks); decode = 1
token, prefill = 1024 tokens (``--tokens``). ``--mode bf16`` / ``fp8`` (per-tensor) run
those modes instead.
Rows, all with enable_pdl=True and the runner's default tactics:
  flashinfer_cy           CutlassFusedMoE.fused_moe(...) with torch tensors, ``output=``
                          given, written in the timed loop
  prepared launch         CutlassFusedMoE.prepare(...) once, then launch() in the loop
  flashinfer-python       flashinfer.fused_moe.cutlass_fused_moe(...) on the same module

Host time per call: bursts right after a synchronize, rows interleaved burst by burst,
median over rounds (tools/bench_norm.py); GPU time: CUDA events around a burst queued
behind a spin kernel (bench_norm.gpu_us). "GPU vs peer" is the issue's 2 % check. The
outputs of the three rows are compared bit for bit once before timing.

    python tools/bench_fused_moe.py [--tokens 1 1024] [--mode block|bf16|fp8] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_norm import LoopBurst, gpu_us, host_us_interleaved  # noqa: E402

OURS, PREPARED, PEER = "flashinfer_cy (torch tensors)", "flashinfer_cy prepared launch", \
    "flashinfer-python"
FP8_MAX = 448.0


def problem(torch, mode: str, tokens: int, experts: int, top_k: int, hidden: int, inter: int,
            seed: int = 0):
    """Random device inputs of ``mode`` (made on the GPU: a 64-expert, 7168-wide layer is
    gigabytes); the routing picks ``top_k`` distinct experts per token."""
    dev, bf16 = "cuda", torch.bfloat16
    g = torch.Generator(device=dev).manual_seed(seed)
    x = torch.randn(tokens, hidden, device=dev, generator=g).to(bf16)
    ids = torch.rand(tokens, experts, device=dev, generator=g).argsort(dim=1)[:, :top_k]
    weights = torch.rand(tokens, top_k, device=dev, generator=g)
    weights = (weights / weights.sum(dim=1, keepdim=True)).float()
    p = dict(x=x, ids=ids.to(torch.int32).contiguous(), weights=weights.contiguous())
    def weights(*shape):
        return torch.randn(*shape, device=dev, generator=g) / shape[-1] ** 0.5

    if mode == "bf16":
        p["w1"] = weights(experts, 2 * inter, hidden).to(bf16)
        p["w2"] = weights(experts, hidden, inter).to(bf16)
        p["scales"], p["args"], p["kwargs"] = None, ("bfloat16", "bfloat16"), {}
        return p
    fp8 = torch.float8_e4m3fn
    if mode == "fp8":  # flashinfer-python's per-tensor recipe (tests/gpu/test_fused_moe.py)
        w1, w2 = weights(experts, 2 * inter, hidden), weights(experts, hidden, inter)
        a1 = x.float().abs().amax() / FP8_MAX
        w1s, w2s = (w.abs().amax(dim=(1, 2)) / FP8_MAX for w in (w1, w2))
        fc2_quant = torch.tensor(FP8_MAX / 32.0, device=dev)
        p["x"] = (x.float() / a1).to(fp8)
        p["w1"], p["w2"] = (w1 / w1s[:, None, None]).to(fp8), (w2 / w2s[:, None, None]).to(fp8)
        p["scales"] = [(w1s * a1).contiguous(), fc2_quant, (w2s / fc2_quant).contiguous(), a1]
        p["args"], p["kwargs"] = ("float8_e4m3fn", "float8_e4m3fn", "bfloat16"), {}
        return p

    def blocked(e, n, k):  # fp8 weights and their per-128x128-block float32 scales
        b = weights(e, n, k).view(e, n // 128, 128, k // 128, 128)
        s = b.abs().amax(dim=(2, 4)) / FP8_MAX
        q = (b / s[:, :, None, :, None]).view(e, n, k).to(fp8)
        return q, s.float().contiguous()

    p["w1"], s1 = blocked(experts, 2 * inter, hidden)
    p["w2"], s2 = blocked(experts, hidden, inter)
    p["scales"], p["args"], p["kwargs"] = [s1, s2], ("bfloat16", "float8_e4m3fn"), \
        {"block_scale": True}
    return p


def rows(torch, fc, fi, p, mode):
    """name -> callable (LoopBurst rows where the call is written in the loop)."""
    m = fc.CutlassFusedMoE(*p["args"], **p["kwargs"])
    tokens, hidden = p["x"].shape
    out = {name: torch.empty(tokens, hidden, device="cuda", dtype=torch.bfloat16)
           for name in (OURS, PREPARED, PEER)}
    group = {OURS: LoopBurst(
        "m.fused_moe(x, ids, w, w1, w2, bf16, scales, output=o, enable_pdl=True)",
        m=m, x=p["x"], ids=p["ids"], w=p["weights"], w1=p["w1"], w2=p["w2"],
        bf16=torch.bfloat16, scales=p["scales"], o=out[OURS])}
    step = m.prepare(p["x"], p["ids"], p["weights"], p["w1"], p["w2"], torch.bfloat16,
                     p["scales"], output=out[PREPARED], enable_pdl=True)
    group[PREPARED] = LoopBurst("step.launch()", step=step)
    if fi is not None:
        group[PEER] = LoopBurst(
            "moe(x, ids, w, w1, w2, bf16, scales, output=o, enable_pdl=True, "
            "use_deepseek_fp8_block_scale=block)",
            moe=fi.fused_moe.cutlass_fused_moe, x=p["x"], ids=p["ids"], w=p["weights"],
            w1=p["w1"], w2=p["w2"], bf16=torch.bfloat16, scales=p["scales"] or [],
            o=out[PEER], block=mode == "block")
    return group, out


def run_once_and_compare(torch, group, out) -> dict:
    """Each row once on NaN-poisoned outputs: row name -> whether its output has the bits of
    ours (and is fully written)."""
    for o in out.values():
        o.fill_(float("nan"))
    for fn in group.values():
        fn.fn(1)
    torch.cuda.synchronize()
    ref = out[OURS].view(torch.uint8)
    return {name: bool(torch.equal(out[name].view(torch.uint8), ref)
                       and not torch.isnan(out[name]).any()) for name in group}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", type=int, nargs="+", default=[1, 1024])
    ap.add_argument("--mode", choices=("block", "bf16", "fp8"), default="block")
    ap.add_argument("--experts", type=int, default=64)
    ap.add_argument("--top-k", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=7168)
    ap.add_argument("--inter", type=int, default=2048)
    ap.add_argument("--bursts", type=int, default=50)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    import torch

    import flashinfer_cy as fc
    try:
        import flashinfer as fi
    except Exception as exc:  # noqa: BLE001 - a missing peer is reported, not fatal
        print(f"# flashinfer-python unavailable: {exc!r}")
        fi = None
    sync = torch.cuda.synchronize
    report = {"device": torch.cuda.get_device_name(), "host": platform.node(),
              "mode": args.mode, "shapes": {}}
    for tokens in args.tokens:
        p = problem(torch, args.mode, tokens, args.experts, args.top_k, args.hidden,
                    args.inter)
        group, out = rows(torch, fc, fi, p, args.mode)
        same = run_once_and_compare(torch, group, out)
        burst = 20 if tokens == 1 else 5
        host = host_us_interleaved(group, sync, args.bursts, burst)
        gpu = {name: gpu_us(torch, (lambda f=fn: f.fn(1)), 10, burst)
               for name, fn in group.items()}
        label = (f"{args.mode}: {tokens} token(s), {args.experts} experts, top-{args.top_k}, "
                 f"hidden {args.hidden}, inter {args.inter}")
        print(f"\n{label}\n{'row':34s} {'host us':>10s} {'GPU us':>10s}  bits = ours")
        for name in group:
            print(f"{name:34s} {host[name]:10.2f} {gpu[name]:10.2f}  {same[name]}")
        if PEER in gpu:
            print(f"# GPU vs peer (target within 2 %): "
                  f"{100 * (gpu[OURS] / gpu[PEER] - 1):+.2f} %")
        report["shapes"][str(tokens)] = {"host_us": host, "gpu_us": gpu, "bits_equal": same}
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
