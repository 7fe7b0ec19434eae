"""examples/model_step on the CPU: the HF config reader, the safetensors loader and the
page allocator (no GPU, no torch). Checkpoints are written here with safetensors.numpy under
HF's tensor names, with fresh random values, so a loader that swapped, dropped or
mis-fused a tensor fails."""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

safetensors_numpy = pytest.importorskip("safetensors.numpy")

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "model_step"))
from hf_config import parse_config, read_config  # noqa: E402
from pages import PageAllocator, PoolExhaustedError  # noqa: E402
from weights import expected_shapes, load_weights  # noqa: E402


def llama_config(**over):
    raw = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 96,
           "hidden_size": 64, "intermediate_size": 80, "num_hidden_layers": 2,
           "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 64,
           "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "tie_word_embeddings": False,
           "max_position_embeddings": 4096, "hidden_act": "silu",
           "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                            "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}
    raw.update(over)
    return raw


def qwen3_config(**over):
    raw = {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "vocab_size": 96,
           "hidden_size": 64, "intermediate_size": 48, "num_hidden_layers": 2,
           "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 64,
           "rms_norm_eps": 1e-6, "tie_word_embeddings": True, "use_sliding_window": False,
           "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0}}
    raw.update(over)
    return raw


def write_checkpoint(tmp_path, raw, rng, drop=(), add=None, reshape=None):
    """HF-named random tensors for ``raw``; returns the tensors written."""
    cfg = parse_config(raw)
    tensors = {name: rng.standard_normal(shape).astype(np.float32)
               for name, shape in expected_shapes(cfg).items() if name not in drop}
    tensors.update(add or {})
    for name, shape in (reshape or {}).items():
        tensors[name] = rng.standard_normal(shape).astype(np.float32)
    (tmp_path / "config.json").write_text(json.dumps(raw))
    safetensors_numpy.save_file(tensors, str(tmp_path / "model.safetensors"),
                                metadata={"format": "pt"})
    return tensors


def test_llama_config_both_rope_spellings():
    old = parse_config(llama_config())
    new_raw = llama_config()
    del new_raw["rope_scaling"], new_raw["rope_theta"]
    new_raw["rope_parameters"] = dict(llama_config()["rope_scaling"], rope_theta=500000.0)
    new = parse_config(new_raw)
    assert old == new
    assert old.rope_theta == 500000.0 and old.rope_llama3 is not None
    assert (old.rope_llama3.factor, old.rope_llama3.low_freq_factor,
            old.rope_llama3.high_freq_factor,
            old.rope_llama3.original_max_position_embeddings) == (8.0, 1.0, 4.0, 8192)
    assert not old.qk_norm and old.q_size == 256 and old.kv_size == 128


def test_qwen3_config_and_defaults():
    cfg = parse_config(qwen3_config())
    assert cfg.qk_norm and cfg.tie_word_embeddings and cfg.rope_llama3 is None
    assert cfg.rope_theta == 1e6 and cfg.num_kv_heads == 1
    # head_dim defaults to hidden / heads (Llama configs without head_dim)
    raw = llama_config(hidden_size=512, num_attention_heads=4)
    del raw["head_dim"]
    assert parse_config(raw).head_dim == 128


def test_read_config_from_directory(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(qwen3_config()))
    assert read_config(tmp_path) == parse_config(qwen3_config())


@pytest.mark.parametrize("make, change, match", [
    (llama_config, {"model_type": "mistral"}, "model_type"),
    (llama_config, {"architectures": ["Qwen3ForCausalLM"]}, "architectures"),
    (llama_config, {"hidden_act": "gelu"}, "hidden_act"),
    (llama_config, {"attention_bias": True}, "attention_bias"),
    (llama_config, {"mlp_bias": True}, "mlp_bias"),
    (llama_config, {"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "rope_type"),
    (llama_config, {"rope_scaling": {"rope_type": "llama3", "factor": 8.0,
                                     "low_freq_factor": 4.0, "high_freq_factor": 1.0}},
     "high_freq_factor"),
    (llama_config, {"rope_scaling": {"rope_type": "llama3", "factor": float("nan"),
                                     "low_freq_factor": 1.0, "high_freq_factor": 4.0}},
     "factor"),
    (llama_config, {"partial_rotary_factor": 0.5}, "partial_rotary_factor"),
    (llama_config, {"head_dim": 96}, "head_dim"),
    (llama_config, {"num_key_value_heads": 3}, "num_key_value_heads"),
    (llama_config, {"num_attention_heads": 32, "num_key_value_heads": 2}, "num_key_value_heads"),
    (llama_config, {"vocab_size": None}, "vocab_size"),
    (llama_config, {"num_hidden_layers": 2.0}, "num_hidden_layers"),
    (llama_config, {"rms_norm_eps": 0}, "rms_norm_eps"),
    (llama_config, {"tie_word_embeddings": "yes"}, "tie_word_embeddings"),
    (qwen3_config, {"use_sliding_window": True}, "use_sliding_window"),
    (qwen3_config, {"rope_parameters": {"rope_type": "llama3", "factor": 8.0,
                                        "low_freq_factor": 1.0, "high_freq_factor": 4.0}},
     "rope_type"),
])
def test_unsupported_config_values_raise(make, change, match):
    with pytest.raises(ValueError, match=match):
        parse_config(make(**change))


@pytest.mark.parametrize("make", [llama_config, qwen3_config])
def test_loader_fuses_and_ties(tmp_path, make):
    rng = np.random.default_rng()
    raw = make()
    written = write_checkpoint(tmp_path, raw, rng)
    cfg = read_config(tmp_path)
    uploaded = []

    def to_device(a):
        uploaded.append(a.shape)
        return a.copy()

    w = load_weights(tmp_path, cfg, to_device)
    assert len(w.layers) == cfg.num_layers
    np.testing.assert_array_equal(w.embed, written["model.embed_tokens.weight"])
    np.testing.assert_array_equal(w.final_norm, written["model.norm.weight"])
    if cfg.tie_word_embeddings:
        assert w.lm_head is w.embed
    else:
        np.testing.assert_array_equal(w.lm_head, written["lm_head.weight"])
    for n, lw in enumerate(w.layers):
        p = f"model.layers.{n}."
        q, k, v = (written[p + f"self_attn.{x}_proj.weight"] for x in "qkv")
        np.testing.assert_array_equal(lw.qkv, np.concatenate([q, k, v]))
        assert lw.qkv.shape == ((cfg.num_heads + 2 * cfg.num_kv_heads) * cfg.head_dim,
                                cfg.hidden_size)
        np.testing.assert_array_equal(lw.gate_up, np.concatenate(
            [written[p + "mlp.gate_proj.weight"], written[p + "mlp.up_proj.weight"]]))
        np.testing.assert_array_equal(lw.o, written[p + "self_attn.o_proj.weight"])
        np.testing.assert_array_equal(lw.down, written[p + "mlp.down_proj.weight"])
        np.testing.assert_array_equal(lw.input_norm, written[p + "input_layernorm.weight"])
        np.testing.assert_array_equal(lw.post_norm,
                                      written[p + "post_attention_layernorm.weight"])
        if cfg.qk_norm:
            np.testing.assert_array_equal(lw.q_norm, written[p + "self_attn.q_norm.weight"])
            np.testing.assert_array_equal(lw.k_norm, written[p + "self_attn.k_norm.weight"])
        else:
            assert lw.q_norm is None and lw.k_norm is None
    # embed, final norm, lm_head unless tied; per layer 6 tensors (+ q/k norms): fused, once
    assert len(uploaded) == 2 + (not cfg.tie_word_embeddings) + cfg.num_layers * (
        6 + 2 * cfg.qk_norm)


def test_loader_tied_checkpoint_with_lm_head_copy(tmp_path):
    rng = np.random.default_rng()
    raw = qwen3_config()
    copy = rng.standard_normal((96, 64)).astype(np.float32)
    write_checkpoint(tmp_path, raw, rng, add={"lm_head.weight": copy})
    w = load_weights(tmp_path, read_config(tmp_path), lambda a: a)
    assert w.lm_head is w.embed  # tied: the embedding is the head, the copy is ignored


def _write_raw_safetensors(path, entries):
    """A safetensors file written byte by byte (numpy has no bfloat16 to hand to
    safetensors.numpy): u64 header length, JSON header, data."""
    header, blobs, offset = {}, [], 0
    for name, (dtype, shape, data) in entries.items():
        header[name] = {"dtype": dtype, "shape": list(shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def test_loader_reads_bfloat16_exactly(tmp_path):
    rng = np.random.default_rng()
    raw = qwen3_config(num_hidden_layers=1)
    cfg = parse_config(raw)
    entries, want = {}, {}
    for name, shape in expected_shapes(cfg).items():
        bits = (rng.standard_normal(shape).astype(np.float32).view(np.uint32) >> 16).astype(
            np.uint16)
        entries[name] = ("BF16", shape, bits.astype("<u2").tobytes())
        want[name] = (bits.astype(np.uint32) << 16).view(np.float32)
    _write_raw_safetensors(tmp_path / "model.safetensors", entries)
    w = load_weights(tmp_path, cfg, lambda a: a)
    assert w.embed.dtype == np.float32
    np.testing.assert_array_equal(w.embed, want["model.embed_tokens.weight"])
    np.testing.assert_array_equal(w.layers[0].k_norm,
                                  want["model.layers.0.self_attn.k_norm.weight"])
    np.testing.assert_array_equal(w.layers[0].gate_up, np.concatenate(
        [want["model.layers.0.mlp.gate_proj.weight"], want["model.layers.0.mlp.up_proj.weight"]]))


def test_loader_sharded_index(tmp_path):
    rng = np.random.default_rng()
    raw = llama_config()
    cfg = parse_config(raw)
    names = sorted(expected_shapes(cfg))
    tensors = {n: rng.standard_normal(s).astype(np.float32)
               for n, s in expected_shapes(cfg).items()}
    halves = {"a.safetensors": names[::2], "b.safetensors": names[1::2]}
    for fname, part in halves.items():
        safetensors_numpy.save_file({n: tensors[n] for n in part}, str(tmp_path / fname))
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {n: f for f, part in halves.items() for n in part}}))
    w = load_weights(tmp_path, cfg, lambda a: a)
    np.testing.assert_array_equal(w.layers[1].o, tensors["model.layers.1.self_attn.o_proj.weight"])


@pytest.mark.parametrize("case, match", [
    ("missing", "lacks 1 tensor.*model.layers.1.mlp.up_proj.weight"),
    ("missing_head", "lacks 1 tensor.*lm_head.weight"),
    ("extra", "would not use.*q_proj.bias"),
    ("shape", r"model.layers.0.self_attn.k_proj.weight: expected shape \(128, 64\), got \(64, 64\)"),
    ("dtype", "model.norm.weight: dtype I32 is not supported"),
])
def test_loader_errors_name_the_tensor(tmp_path, case, match):
    rng = np.random.default_rng()
    raw = llama_config()
    kwargs = {
        "missing": dict(drop=("model.layers.1.mlp.up_proj.weight",)),
        "missing_head": dict(drop=("lm_head.weight",)),
        "extra": dict(add={"model.layers.0.self_attn.q_proj.bias":
                           np.zeros(256, dtype=np.float32)}),
        "shape": dict(reshape={"model.layers.0.self_attn.k_proj.weight": (64, 64)}),
        "dtype": dict(add={"model.norm.weight": np.arange(64, dtype=np.int32)}),
    }[case]
    write_checkpoint(tmp_path, raw, rng, **kwargs)
    with pytest.raises(ValueError, match=match):
        load_weights(tmp_path, read_config(tmp_path), lambda a: a)


def test_loader_no_checkpoint(tmp_path):
    with pytest.raises(ValueError, match="no model.safetensors"):
        load_weights(tmp_path, parse_config(llama_config()), lambda a: a)


# ------------------------------------------------------------------------- page allocator

def _check_disjoint(alloc, seq_ids):
    pages = np.concatenate([alloc.pages(s) for s in seq_ids]) if seq_ids else np.zeros(0)
    assert len(set(pages.tolist())) == len(pages), "a page is shared"
    assert len(pages) + alloc.num_free == alloc.num_pages, "a page leaked"
    assert ((pages >= 0) & (pages < alloc.num_pages)).all()


def test_layout_of_ragged_lengths():
    import flashinfer_cy as fc

    alloc = PageAllocator(num_pages=64, page_size=16)
    lens = [1, 17, 200, 513]
    for i, n in enumerate(lens):
        alloc.allocate(i, n)
    indptr, indices, last = alloc.layout([0, 1, 2, 3])
    assert indptr.dtype == indices.dtype == last.dtype == np.int32
    assert indptr.tolist() == [0, 1, 3, 16, 49]
    assert last.tolist() == [1, 1, 8, 1]
    assert fc.get_seq_lens(indptr, last, 16).tolist() == lens
    for i in range(4):
        assert indices[indptr[i]:indptr[i + 1]].tolist() == alloc.pages(i).tolist()
    _check_disjoint(alloc, [0, 1, 2, 3])
    # another order: the arrays follow seq_ids' order
    indptr2, indices2, last2 = alloc.layout([3, 0])
    assert indptr2.tolist() == [0, 33, 34] and last2.tolist() == [1, 1]
    assert indices2.tolist() == alloc.pages(3).tolist() + alloc.pages(0).tolist()


def test_grow_crosses_page_boundaries_and_free_returns_pages():
    alloc = PageAllocator(num_pages=8, page_size=4)
    alloc.allocate("a", 3)
    alloc.allocate("b", 4)
    assert alloc.num_free == 6
    alloc.grow("a")                       # 4 tokens: still one page
    assert len(alloc.pages("a")) == 1 and alloc.layout(["a"])[2].tolist() == [4]
    alloc.grow("a")                       # 5: a second page
    assert len(alloc.pages("a")) == 2 and alloc.layout(["a"])[2].tolist() == [1]
    alloc.grow("b", 9)                    # 13 tokens: 4 pages, last holds 1
    assert alloc.length("b") == 13 and alloc.layout(["b"])[2].tolist() == [1]
    _check_disjoint(alloc, ["a", "b"])
    freed = set(alloc.pages("b").tolist())
    alloc.free("b")
    assert alloc.num_free == 6
    alloc.allocate("c", 16)               # reuses b's pages
    assert set(alloc.pages("c").tolist()) == freed
    _check_disjoint(alloc, ["a", "c"])
    with pytest.raises(KeyError, match="'b'"):
        alloc.length("b")


def test_exhaustion_raises_and_changes_nothing():
    alloc = PageAllocator(num_pages=4, page_size=8)
    alloc.allocate(0, 24)                 # 3 pages
    before = (alloc.pages(0).tolist(), alloc.num_free, alloc.length(0))
    with pytest.raises(PoolExhaustedError, match="1 free page"):
        alloc.allocate(1, 9)              # needs 2
    with pytest.raises(PoolExhaustedError):
        alloc.grow(0, 9)                  # 33 tokens: needs 2 more
    assert (alloc.pages(0).tolist(), alloc.num_free, alloc.length(0)) == before
    with pytest.raises(KeyError):
        alloc.length(1)
    alloc.grow(0, 8)                      # exactly the last page
    assert alloc.num_free == 0
    with pytest.raises(PoolExhaustedError):
        alloc.grow(0)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, None])
def test_allocator_argument_errors(bad):
    with pytest.raises(ValueError, match="num_pages"):
        PageAllocator(bad, 16)
    alloc = PageAllocator(4, 16)
    with pytest.raises(ValueError, match="length"):
        alloc.allocate(0, bad)
    alloc.allocate(0, 1)
    with pytest.raises(ValueError, match="already allocated"):
        alloc.allocate(0, 1)
    with pytest.raises(ValueError, match="n:"):
        alloc.grow(0, bad)


def test_random_operations_never_share_pages():
    import flashinfer_cy as fc

    rng = np.random.default_rng()
    alloc = PageAllocator(num_pages=40, page_size=int(rng.choice([1, 4, 16])))
    lens: dict[int, int] = {}
    for step in range(400):
        op = rng.integers(3)
        try:
            if op == 0:
                n = int(rng.integers(1, 50))
                alloc.allocate(step, n)
                lens[step] = n
            elif op == 1 and lens:
                s = int(rng.choice(list(lens)))
                n = int(rng.integers(1, 20))
                alloc.grow(s, n)
                lens[s] += n
            elif lens:
                s = int(rng.choice(list(lens)))
                alloc.free(s)
                del lens[s]
        except PoolExhaustedError:
            pass
        ids = list(lens)
        _check_disjoint(alloc, ids)
        if ids:
            indptr, _, last = alloc.layout(ids)
            assert fc.get_seq_lens(indptr, last, alloc.page_size).tolist() == [lens[s] for s in ids]


# ------------------------------------------------------------------ decode modes (no GPU)

class HostBackend:
    """The back-end interface on NumPy arrays (no GPU): enough to drive Model.decode's
    host side. ``capture`` records the step and returns a replay that reruns it."""

    name, dtype = "host", "float32"

    def __init__(self):
        self.captures, self.replays = 0, 0

    def stream(self):
        return 0

    def empty(self, shape, dtype=None):
        return np.full(shape, 7, dtype=dtype or self.dtype)  # poisoned, not zeros

    def kernel_view(self, x):
        return x

    def upload(self, host, dtype=None):
        return np.ascontiguousarray(host, dtype=dtype or self.dtype)

    def copy_from_host(self, dst, host):
        dst[:host.shape[0]] = host

    def matmul(self, a, w, out):
        np.matmul(a, w.T, out=out)

    def gather_rows(self, table, ids, out):
        np.take(table, ids, axis=0, out=out)

    def copy(self, dst, src):
        np.copyto(dst, src, casting="unsafe")

    def capture(self, step):
        self.captures += 1
        step()

        def replay():
            self.replays += 1
            step()
        return replay


class RecordingOps:
    """A decode-ops set that logs (its tag, the call) for every kernel call and plan."""

    def __init__(self, tag, log):
        self.tag, self.log = tag, log

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *a, **k: self.log.append((self.tag, name))


def _decode_model(log):
    from model import Model
    from weights import LayerWeights, Weights

    cfg = parse_config(qwen3_config())
    rng = np.random.default_rng(1)
    h, i, d = cfg.hidden_size, cfg.intermediate_size, cfg.head_dim
    r = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    layers = [LayerWeights(input_norm=r(h), qkv=r(cfg.q_size + 2 * cfg.kv_size, h),
                           q_norm=r(d), k_norm=r(d), o=r(h, cfg.q_size), post_norm=r(h),
                           gate_up=r(2 * i, h), down=r(h, i)) for _ in range(cfg.num_layers)]
    embed = r(cfg.vocab_size, h)
    be = HostBackend()
    model = Model(cfg, Weights(embed=embed, lm_head=embed, final_norm=r(h), layers=layers),
                  be, max_pages=16)
    model._ops = {"eager": RecordingOps("eager", log), "prepared": RecordingOps("prep", log)}
    model.seqs = [0, 1]  # as if prefilled: prompts of 5 and 17 tokens
    model.alloc.allocate(0, 5)
    model.alloc.allocate(1, 17)
    return model, be, cfg


def test_decode_modes_use_their_ops_and_graph_modes_capture_once():
    log = []
    model, be, cfg = _decode_model(log)
    tok = np.array([3, 9], dtype=np.int64)
    # plan, begin; per layer: norm, q norm, k norm, rope, append, attention, post norm, act;
    # the final norm
    per_step = 1 + 1 + cfg.num_layers * 8 + 1

    model.decode(tok, "prepared")
    assert {t for t, _ in log} == {"prep"} and len(log) == per_step
    assert log[0] == ("prep", "plan_decode")
    log.clear()

    out = model.decode(tok, "graph")  # warm-up eagerly, then captured: the eager ops
    assert be.captures == 1 and {t for t, _ in log} == {"eager"} and len(log) == 2 * per_step - 1
    assert out.shape == (2, cfg.vocab_size) and np.isfinite(out).all()
    log.clear()
    model.decode(tok, "graph")  # replayed: a plan on the host, the kernels by the replay
    assert be.captures == 1 and be.replays == 1 and len(log) == per_step
    assert model.alloc.length(0) == 8 and model.alloc.length(1) == 20  # grew at every step

    peer = RecordingOps("peer", log)
    model.add_decode_ops("peer", peer, graph=True)
    log.clear()
    model.decode(tok, "peer graph")
    assert be.captures == 2 and {t for t, _ in log} == {"peer"}
    assert model.replay_of("peer graph") is not None
    assert model.replay_of("graph") is not model.replay_of("peer graph")
    with pytest.raises(ValueError, match="mode: one of .*'peer graph'"):
        model.decode(tok, "fastest")
