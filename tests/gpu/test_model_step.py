"""examples/model_step against transformers: random-init LlamaForCausalLM (GQA, Llama-3 rope
scaling) and Qwen3ForCausalLM (q/k norm, tied embeddings), saved with save_pretrained and
loaded by the example's safetensors loader; 4 ragged prompts (1, 17, 200, 513 tokens),
ragged prefill, then 32 greedy decode steps.

Reference: HF's eager forward in float32 over the same tokens (prompt + our generated tokens,
one prompt at a time, positions from 0). Tolerance from the dtype: HF's own bfloat16 (float16)
run over the same tokens measures what 16-bit storage costs; ours may be at most
``ERR_FACTOR`` times worse (relative RMS) and ``MAX_FACTOR`` times worse (max abs). Both use
16-bit storage with float32 accumulation and differ only in operation order (fused GEMMs,
FlashAttention's online softmax, RoPE tables in float32 where HF rounds cos/sin to 16 bits),
so the errors are of one size; a wrong RoPE convention, GQA head mapping, missing q/k norm or
scale gives relative errors of order 1, two orders above. Greedy tokens must equal HF-f32's
argmax except where HF-f32's own margin between the two tokens is within twice our error on
that row (a tie at this precision); such steps are counted and bounded.

Eager, prepared and graph-replayed decode steps are fed the same tokens and must give
bit-identical logits (and a second prefill the same bits as the first).

The CuPy back-end (float16) runs in a child process in which ``import torch`` fails, on the
same safetensors file; HF runs in this process.

Kernel modules (tools/kernel_uris.py ``attention_uri``): norm, page, rope, silu_and_mul,
batch_decode_with_kv_cache_dtype_q_bf16_dtype_kv_bf16_dtype_o_bf16_dtype_idx_i32_head_dim_qk_128_head_dim_vo_128_posenc_0_use_swa_False_use_logits_cap_False,
batch_prefill_with_kv_cache_dtype_q_bf16_dtype_kv_bf16_dtype_o_bf16_dtype_idx_i32_head_dim_qk_128_head_dim_vo_128_posenc_0_use_swa_False_use_logits_cap_False_f16qk_False,
batch_decode_with_kv_cache_dtype_q_f16_dtype_kv_f16_dtype_o_f16_dtype_idx_i32_head_dim_qk_128_head_dim_vo_128_posenc_0_use_swa_False_use_logits_cap_False,
batch_prefill_with_kv_cache_dtype_q_f16_dtype_kv_f16_dtype_o_f16_dtype_idx_i32_head_dim_qk_128_head_dim_vo_128_posenc_0_use_swa_False_use_logits_cap_False_f16qk_False
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from flashinfer_cy.kernels.attention_uri import variant
from gpu_env import require_module

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "model_step"
sys.path.insert(0, str(EXAMPLE))

PROMPT_LENS = (1, 17, 200, 513)
STEPS = 32
ERR_FACTOR = 2.0   # ours vs HF-f32, relative RMS, over HF-16-bit vs HF-f32
MAX_FACTOR = 4.0   # the same for the largest absolute error (a noisier statistic)
TIE_SLACK = 2      # greedy ties allowed beyond ERR_FACTOR x HF-16bit's own flips (_check_greedy)
COMMON = dict(vocab_size=32000, hidden_size=1024, intermediate_size=2816,
              num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=2, head_dim=128,
              max_position_embeddings=4096, initializer_range=0.05)


def _modules(dtype):
    for uri in ("norm", "page", "rope", "silu_and_mul"):
        require_module(uri)
    for family in ("batch_decode", "batch_prefill"):
        require_module(variant(family, dtype, 128, -1, 0.0, "fa2").uri)


def _hf_config(arch):
    import transformers

    v5 = int(transformers.__version__.split(".")[0]) >= 5
    if arch == "llama":
        # original_max_position_embeddings 64 (not 8192): with prompts of <= 545 tokens the
        # Llama-3 frequency scaling then changes most rotary frequencies, so a scaling bug
        # shows; 8192 would leave it invisible at these positions.
        scaling = dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                       original_max_position_embeddings=64)
        rope = (dict(rope_parameters=dict(scaling, rope_theta=10000.0)) if v5 else
                dict(rope_theta=10000.0, rope_scaling=scaling))
        return transformers.LlamaConfig(**COMMON, **rope, rms_norm_eps=1e-5,
                                        tie_word_embeddings=False)
    rope = (dict(rope_parameters=dict(rope_type="default", rope_theta=1e6)) if v5 else
            dict(rope_theta=1e6))
    return transformers.Qwen3Config(**COMMON, **rope, rms_norm_eps=1e-6,
                                    tie_word_embeddings=True)


@pytest.fixture(scope="module", params=["llama", "qwen3"])
def checkpoint(request, tmp_path_factory):
    """(arch, model dir, HF float32 model on the GPU, prompts)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("safetensors")
    if not torch.cuda.is_available():
        pytest.skip("torch sees no CUDA device")
    seed = int(np.random.SeedSequence().entropy % 2**31)
    print(f"seed={seed}")
    torch.manual_seed(seed)
    arch = request.param
    with torch.device("cuda"):
        model = transformers.AutoModelForCausalLM.from_config(_hf_config(arch),
                                                              attn_implementation="eager")
    with torch.no_grad():  # RMSNorm weights init to ones: perturb them so a swap shows
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1 + 0.2 * torch.randn_like(p))
    model.eval()
    path = tmp_path_factory.mktemp(arch)
    model.save_pretrained(path)  # safetensors
    rng = np.random.default_rng(seed)
    prompts = [rng.integers(0, COMMON["vocab_size"], n).astype(np.int64) for n in PROMPT_LENS]
    return arch, path, model, prompts


def _hf_logits(torch, model, seqs):
    """HF eager forward of each sequence alone: float64 logits [len, vocab] each."""
    out = []
    with torch.no_grad():
        for s in seqs:
            ids = torch.from_numpy(s).cuda()[None]
            out.append(model(input_ids=ids, use_cache=False).logits[0].double().cpu().numpy())
    return out


def _hf_16bit(torch, hf32, dtype):
    """HF's model in 16 bits, RoPE frequencies kept in float32 as HF computes them at init
    (``.to(dtype)`` would round the ``inv_freq`` buffers too, inflating HF's error and so
    loosening the tolerance)."""
    hf16 = copy.deepcopy(hf32).to(dtype)
    f32_bufs = dict(hf32.named_buffers())
    for name, module in hf16.named_modules():
        if "inv_freq" in module._buffers:
            module._buffers["inv_freq"] = f32_bufs[f"{name}.inv_freq"].clone()
    return hf16


def _rel_rms(a, ref):
    return float(np.sqrt(np.mean((a - ref) ** 2)) / np.sqrt(np.mean(ref ** 2)))


def _compare(what, ours, ref, hf16):
    """Error of ours vs the float32 reference, bounded by HF's own 16-bit error."""
    e_ours, e_hf = _rel_rms(ours, ref), _rel_rms(hf16, ref)
    m_ours, m_hf = float(np.abs(ours - ref).max()), float(np.abs(hf16 - ref).max())
    print(f"{what}: rel rms ours {e_ours:.3e} vs HF-16bit {e_hf:.3e}; "
          f"max abs ours {m_ours:.3e} vs HF-16bit {m_hf:.3e}")
    assert np.isfinite(ours).all(), f"{what}: non-finite logits"
    assert e_ours <= ERR_FACTOR * e_hf, (
        f"{what}: relative RMS error {e_ours:.3e} > {ERR_FACTOR} x HF-16bit's {e_hf:.3e}")
    assert m_ours <= MAX_FACTOR * m_hf, (
        f"{what}: max abs error {m_ours:.3e} > {MAX_FACTOR} x HF-16bit's {m_hf:.3e}")


def _check_greedy(what, tokens, ours_rows, ref_rows, ref16_rows):
    """tokens[i] = argmax(ours_rows[i]); HF-f32's argmax must agree unless the f32 margin
    between the two tokens is within twice our error on that row (a tie at this precision).
    How many ties to expect depends on how flat the model's distributions are, so the
    count is bounded by HF's own 16-bit run on the same rows: its argmax flips against
    HF-f32 measure the flat rows; ours, whose error is within ERR_FACTOR of HF-16bit's
    (checked by _compare), may flip at most ERR_FACTOR times as often, plus TIE_SLACK for
    the noise of counting a handful of events."""
    ties = 0
    for i, tok in enumerate(tokens):
        want = int(np.argmax(ref_rows[i]))
        assert tok == int(np.argmax(ours_rows[i]))
        if tok == want:
            continue
        margin = ref_rows[i][want] - ref_rows[i][tok]
        err = np.abs(ours_rows[i] - ref_rows[i]).max()
        assert margin <= 2 * err, (f"{what}: step {i}: token {tok} but HF-f32 picks {want} by "
                                   f"a margin {margin:.3e} > 2 x our error {err:.3e}")
        ties += 1
    hf_flips = int(sum(np.argmax(ref16_rows[i]) != np.argmax(ref_rows[i])
                       for i in range(len(tokens))))
    print(f"{what}: {ties} ties of {len(tokens)} greedy steps; HF-16bit flips {hf_flips}")
    assert ties <= ERR_FACTOR * hf_flips + TIE_SLACK, (
        f"{what}: {ties} of {len(tokens)} steps were ties; HF's 16-bit run flips {hf_flips}")


def _check_against_hf(torch, arch, hf32, prompts, prefill_all, step_logits, tokens, hf16):
    """prefill_all: our logits of every prompt token [sum(lens), V]; step_logits [STEPS, B, V]
    (step t consumed tokens[:, t]); tokens [B, STEPS + 1] (tokens[:, 0] from the prefill)."""
    seqs = [np.concatenate([p, tokens[b, :STEPS]]) for b, p in enumerate(prompts)]
    ref, ref16 = _hf_logits(torch, hf32, seqs), _hf_logits(torch, hf16, seqs)
    offs = np.concatenate([[0], np.cumsum([len(p) for p in prompts])])
    pre = [(prefill_all[offs[b]:offs[b + 1]], ref[b][:len(p)], ref16[b][:len(p)])
           for b, p in enumerate(prompts)]
    _compare(f"{arch} prefill", *(np.concatenate(x) for x in zip(*pre)))
    dec = [(step_logits[:, b], ref[b][len(p):], ref16[b][len(p):]) for b, p in enumerate(prompts)]
    _compare(f"{arch} decode", *(np.concatenate(x) for x in zip(*dec)))
    for b, p in enumerate(prompts):  # every greedy token: the prefill's, then each step's
        rows = np.concatenate([prefill_all[offs[b + 1] - 1][None], step_logits[:, b]])
        _check_greedy(f"{arch} prompt {b}", tokens[b], rows, ref[b][len(p) - 1:],
                      ref16[b][len(p) - 1:])


def run_model(be, path, prompts, steps=STEPS):
    """Prefill (every token's logits) then greedy decode in each mode on the same tokens.
    Returns (prefill logits, {mode: [steps, B, V]}, tokens [B, steps + 1], prefills equal)."""
    from model import MODES, Model
    from sampling import sample

    batch = len(prompts)
    pages = sum(-(-(len(p) + steps) // 16) for p in prompts) + 8
    model = Model.from_pretrained(path, be, max_pages=pages)
    next_tok = be.empty((batch,), "int64")
    tokens = np.zeros((batch, steps + 1), dtype=np.int64)
    results, prefill_first, prefills_equal = {}, None, True
    for mode in MODES:
        model.start_over()
        all_logits = be.to_host(model.prefill(prompts, logits_of_all_tokens=True))
        if prefill_first is None:
            prefill_first = all_logits
            last = np.cumsum([len(p) for p in prompts]) - 1
            tokens[:, 0] = all_logits[last].argmax(-1)
        prefills_equal &= bool(np.array_equal(all_logits.view(np.uint32),
                                              prefill_first.view(np.uint32)))
        rows = []
        for t in range(steps):
            be.copy_from_host(next_tok, tokens[:, t])
            logits = model.decode(next_tok, mode)
            if mode == "eager":
                sample(be, logits, next_tok)  # greedy on the device, as a real loop would
                tokens[:, t + 1] = be.to_host(next_tok)
            rows.append(be.to_host(logits))
        results[mode] = np.stack(rows)
    assert prefill_first is not None
    return prefill_first, results, tokens, prefills_equal


def _assert_modes_identical(results):
    for mode in ("prepared", "graph"):
        assert np.array_equal(results[mode].view(np.uint32), results["eager"].view(np.uint32)), (
            f"{mode} decode logits differ from eager's: max diff "
            f"{np.abs(results[mode] - results['eager']).max():.3e}")


def test_torch_bf16_matches_transformers(checkpoint):
    import torch

    from array_backends import TorchBackend

    _modules("bfloat16")
    arch, path, hf32, prompts = checkpoint
    prefill_all, results, tokens, prefills_equal = run_model(TorchBackend("bfloat16"), path,
                                                             prompts)
    assert prefills_equal, "a second prefill of the same prompts gave other logits"
    _assert_modes_identical(results)
    hf16 = _hf_16bit(torch, hf32, torch.bfloat16)
    _check_against_hf(torch, arch, hf32, prompts, prefill_all, results["eager"], tokens, hf16)


def test_cupy_f16_without_torch_matches_transformers(checkpoint, tmp_path):
    import torch

    pytest.importorskip("cupy")
    _modules("float16")
    arch, path, hf32, prompts = checkpoint
    np.savez(tmp_path / "prompts.npz", *prompts)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT), str(EXAMPLE), os.environ.get("PYTHONPATH", "")]))
    child = subprocess.run([sys.executable, str(Path(__file__).with_name("model_step_cupy_child.py")),
                            str(path), str(tmp_path / "prompts.npz"), str(tmp_path / "out.npz")],
                           env=env, capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, f"child failed:\n{child.stdout[-3000:]}\n{child.stderr[-3000:]}"
    got = np.load(tmp_path / "out.npz")
    assert bool(got["torch_import_failed"]), "torch was importable in the CuPy child"
    assert bool(got["prefills_equal"]), "CuPy: a second prefill gave other logits"
    results = {m: got[m] for m in ("eager", "prepared", "graph")}
    _assert_modes_identical(results)
    hf16 = _hf_16bit(torch, hf32, torch.float16)
    _check_against_hf(torch, f"{arch} cupy", hf32, prompts, got["prefill"], results["eager"],
                      got["tokens"], hf16)
