"""Attention-state merging (cascade module) on the GPU.

The states are made from the definition: one attention of ``seq`` queries over ``L`` keys
(float64, fresh random data), its keys split into chunks; each chunk's normalised output
and base-2 log-sum-exp are the partial states. Merging them must give the attention over
all keys. Also bit-identical to flashinfer-python on the same module. Outputs are NaN
before each kernel runs."""

from __future__ import annotations

import math

import numpy as np
import pytest

import flashinfer_cy as fc
from gpu_env import require_module
from peer import assert_bits_equal, flashinfer_peer
from refs import TOL, round_to

torch = pytest.importorskip("torch")

DTYPES = ["float16", "bfloat16"]
HEAD_DIMS = [64, 128, 256, 512]


@pytest.fixture(autouse=True)
def _cascade_module():
    require_module("cascade")


def partial_states(rng, seq, heads, head_dim, chunk_lens):
    """Attention of [seq, heads, head_dim] queries over sum(chunk_lens) keys, in float64:
    ([(v_i, s_i) per chunk], (v, s) over all keys); s is log2(sum exp(score))."""
    n = sum(chunk_lens)
    q = rng.standard_normal((seq, heads, head_dim))
    k = rng.standard_normal((n, heads, head_dim))
    v = rng.standard_normal((n, heads, head_dim))
    scores = np.einsum("qhd,khd->qhk", q, k) / math.sqrt(head_dim) * 3.0  # spread-out lse

    def state(sc, vv):
        m = sc.max(axis=-1, keepdims=True)
        p = np.exp(sc - m)
        out = np.einsum("qhk,khd->qhd", p / p.sum(axis=-1, keepdims=True), vv)
        return out, (m[..., 0] + np.log(p.sum(axis=-1))) / math.log(2.0)

    bounds = np.cumsum([0] + list(chunk_lens))
    parts = [state(scores[..., a:b], v[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    return parts, state(scores, v)


def dev(x64, dtype):
    """A CUDA torch tensor of ``x64`` (float16/bfloat16/float32)."""
    return torch.tensor(x64, dtype=getattr(torch, dtype), device="cuda")


def host(t):
    return t.double().cpu().numpy()


def nan_like(shape, dtype):
    return torch.full(shape, float("nan"), dtype=getattr(torch, dtype), device="cuda")


# The kernels round v to the storage type and merge in float32; s is float32 throughout.
LSE_TOL = dict(rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("head_dim", HEAD_DIMS)
def test_merge_state_equals_attention_over_both_chunks(dtype, head_dim, rng):
    seq, heads = 37, 4
    (a, b), (v_ref, s_ref) = partial_states(rng, seq, heads, head_dim, [29, 51])
    v_a, v_b = dev(a[0], dtype), dev(b[0], dtype)
    s_a, s_b = dev(a[1], "float32"), dev(b[1], "float32")
    v_m, s_m = nan_like((seq, heads, head_dim), dtype), nan_like((seq, heads), "float32")
    out = fc.merge_state(v_a, s_a, v_b, s_b, v_m, s_m)
    assert out[0] is v_m and out[1] is s_m
    np.testing.assert_allclose(host(v_m), v_ref, **TOL[dtype])
    np.testing.assert_allclose(host(s_m), s_ref, **LSE_TOL)

    fi = flashinfer_peer()
    pv, ps = fi.merge_state(v_a, s_a, v_b, s_b)
    assert_bits_equal(v_m, pv, "merge_state v")
    assert_bits_equal(s_m, ps, "merge_state s")


def test_merge_state_allocates_device_arrays(rng):
    (a, b), (v_ref, s_ref) = partial_states(rng, 5, 2, 128, [3, 9])
    v_m, s_m = fc.merge_state(dev(a[0], "float16"), dev(a[1], "float32"),
                              dev(b[0], "float16"), dev(b[1], "float32"))
    assert isinstance(v_m, fc.DeviceArray) and v_m.shape == (5, 2, 128)
    assert v_m.dtype == "float16" and s_m.dtype == "float32" and s_m.shape == (5, 2)
    np.testing.assert_allclose(torch.from_dlpack(v_m).double().cpu().numpy(), v_ref,
                               **TOL["float16"])
    np.testing.assert_allclose(s_m.numpy().astype(np.float64), s_ref, **LSE_TOL)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("masked", [False, True], ids=["all-rows", "mask"])
def test_merge_state_in_place(dtype, masked, rng):
    seq, heads, head_dim = 23, 8, 128
    (a, b), (v_ref, s_ref) = partial_states(rng, seq, heads, head_dim, [17, 40])
    v, s = dev(a[0], dtype), dev(a[1], "float32")
    v_other, s_other = dev(b[0], dtype), dev(b[1], "float32")
    v_peer, s_peer = v.clone(), s.clone()
    mask = None
    keep = np.zeros(seq, dtype=bool)
    if masked:
        keep = rng.random(seq) < 0.4
        keep[0], keep[1] = True, False  # both kinds of row, always
        mask = torch.tensor(~keep, device="cuda")  # True: merge this row
    v_before, s_before = host(v), host(s)
    assert fc.merge_state_in_place(v, s, v_other, s_other, mask) is None
    got_v, got_s = host(v), host(s)
    np.testing.assert_allclose(got_v[~keep], v_ref[~keep], **TOL[dtype])
    np.testing.assert_allclose(got_s[~keep], s_ref[~keep], **LSE_TOL)
    np.testing.assert_array_equal(got_v[keep], v_before[keep])  # masked rows untouched
    np.testing.assert_array_equal(got_s[keep], s_before[keep])

    fi = flashinfer_peer()
    fi.merge_state_in_place(v_peer, s_peer, v_other, s_other, mask)
    assert_bits_equal(v, v_peer, "merge_state_in_place v")
    assert_bits_equal(s, s_peer, "merge_state_in_place s")


def test_merge_state_in_place_uint8_mask(rng):
    seq = 9
    (a, b), (v_ref, _) = partial_states(rng, seq, 2, 64, [4, 4])
    v, s = dev(a[0], "bfloat16"), dev(a[1], "float32")
    merge = rng.random(seq) < 0.5
    merge[0], merge[1] = True, False
    before = host(v)
    fc.merge_state_in_place(v, s, dev(b[0], "bfloat16"), dev(b[1], "float32"),
                            torch.tensor(merge.astype(np.uint8), device="cuda"))
    np.testing.assert_allclose(host(v)[merge], v_ref[merge], **TOL["bfloat16"])
    np.testing.assert_array_equal(host(v)[~merge], before[~merge])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seq, chunks", [
    (33, [7, 1, 30]),                  # num_states < seq: one block per row
    (6, [5, 9, 2, 11, 3, 8, 4, 6, 1]),  # num_states >= seq: one block per (row, head)
    (4, [13]),                          # one state: copied
], ids=["few-states", "many-states", "one-state"])
@pytest.mark.parametrize("head_dim", [64, 256])
def test_merge_states_equals_attention_over_all_chunks(dtype, seq, chunks, head_dim, rng):
    heads = 3
    parts, (v_ref, s_ref) = partial_states(rng, seq, heads, head_dim, chunks)
    v = dev(np.stack([p[0] for p in parts], axis=1), dtype)  # [seq, num_states, heads, d]
    s = dev(np.stack([p[1] for p in parts], axis=1), "float32")
    v_m, s_m = nan_like((seq, heads, head_dim), dtype), nan_like((seq, heads), "float32")
    fc.merge_states(v, s, v_m, s_m)
    np.testing.assert_allclose(host(v_m), v_ref, **TOL[dtype])
    np.testing.assert_allclose(host(s_m), s_ref, **LSE_TOL)

    fi = flashinfer_peer()
    pv, ps = fi.merge_states(v, s)
    assert_bits_equal(v_m, pv, "merge_states v")
    assert_bits_equal(s_m, ps, "merge_states s")


def test_merge_states_of_no_states_is_empty_attention():
    v = torch.empty((3, 0, 2, 128), dtype=torch.float16, device="cuda")
    s = torch.empty((3, 0, 2), dtype=torch.float32, device="cuda")
    v_m, s_m = nan_like((3, 2, 128), "float16"), nan_like((3, 2), "float32")
    fc.merge_states(v, s, v_m, s_m)
    # An empty state's lse is FlashInfer's "minus infinity", -math::inf (math.cuh): -5e4 in
    # 0.6.3 (so that fp16 arithmetic on it stays finite), IEEE -inf from 0.7 on (its merge
    # kernels guard (-inf) - (-inf) instead); seen on an H100 with 0.7.4 modules.
    release = fc.load_module("cascade").flashinfer_version or ""
    empty_lse = -math.inf if release.startswith("0.7.") else -5e4
    assert (host(v_m) == 0).all() and (host(s_m) == empty_lse).all()


def test_merges_follow_the_torch_stream(rng):
    """stream=None: the producer's current stream (torch's), as every call here."""
    (a, b), (v_ref, _) = partial_states(rng, 64, 4, 128, [100, 100])
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        v_a, s_a = dev(a[0], "float16"), dev(a[1], "float32")
        v_b, s_b = dev(b[0], "float16"), dev(b[1], "float32")
        v_m = nan_like((64, 4, 128), "float16")
        fc.merge_state(v_a, s_a, v_b, s_b, v_merged=v_m, s_merged=nan_like((64, 4), "float32"))
        got = v_m.double()  # queued on the side stream after the merge
    side.synchronize()
    np.testing.assert_allclose(got.cpu().numpy(), v_ref, **TOL["float16"])


def test_head_dim_512_with_the_most_heads_a_block_holds(rng):
    """32 heads of head_dim 512: 32 x 32 = 1024 threads, the block limit."""
    (a, b), (v_ref, _) = partial_states(rng, 3, 32, 512, [6, 6])
    v_m, _ = fc.merge_state(dev(a[0], "bfloat16"), dev(a[1], "float32"),
                            dev(b[0], "bfloat16"), dev(b[1], "float32"),
                            v_merged=nan_like((3, 32, 512), "bfloat16"))
    np.testing.assert_allclose(host(v_m), v_ref, **TOL["bfloat16"])


def test_merging_a_state_with_itself_changes_only_s(rng):
    """Exact case: half of v plus half of v is v (as stored); s grows by log2(2) = 1."""
    (a, _), _ = partial_states(rng, 4, 2, 64, [5, 1])
    v = dev(a[0], "float16")
    s = dev(a[1], "float32")
    v_m, s_m = fc.merge_state(v, s, v.clone(), s.clone())
    np.testing.assert_array_equal(torch.from_dlpack(v_m).double().cpu().numpy(),
                                  round_to(a[0], "float16"))
    np.testing.assert_allclose(s_m.numpy().astype(np.float64),
                               a[1].astype(np.float32).astype(np.float64) + 1.0, rtol=1e-6)
