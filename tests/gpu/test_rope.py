"""RoPE on the GPU: every form against a float64 numpy reference written from the
definition, and bit for bit against flashinfer-python on the same module.

Inputs are fresh random data (q/k as views into a packed QKV buffer, so the leading strides
are not the packed ones); outputs are NaN-poisoned before each call."""

from __future__ import annotations

import math

import numpy as np
import pytest

import flashinfer_cy as fc
from gpu_env import require_module
from peer import assert_bits_equal, flashinfer_peer

torch = pytest.importorskip("torch")

DTYPES = ["float16", "bfloat16"]
# The kernels compute angles with fast sin/cos in float32 and round once to the output
# type: positions up to a few thousand give angle errors near 1e-3 rad, below bf16's step.
TOL = {"float16": dict(rtol=1e-2, atol=1e-2), "bfloat16": dict(rtol=3e-2, atol=3e-2)}


@pytest.fixture(autouse=True)
def _rope_module():
    require_module("rope")


def inv_freq(rotary_dim, theta, scale, llama31=None):
    """Per pair i (0 <= i < rotary_dim/2): the angle per position, as the kernels define it."""
    f = theta ** (-2.0 * np.arange(rotary_dim // 2) / rotary_dim)
    if llama31 is None:
        return f / scale
    low, high, old = llama31
    # smooth in [0, 1]: 0 -> the scaled frequency, 1 -> the original (pos_enc.cuh)
    a = old / (2 * math.pi * high - 2 * math.pi * low)
    b = -1.0 / (high / low - 1.0)
    smooth = np.clip(f * a + b, 0.0, 1.0)
    return (1 - smooth) * (f / scale) + smooth * f


def rope_ref(x, pos, rotary_dim, interleave, freq=None, cos_sin=None):
    """x [nnz, heads, head_dim] float64, pos [nnz]; the first rotary_dim of each head
    rotated by pos * freq (or by the cos/sin rows of a cache), the rest copied."""
    out = x.copy()
    half = rotary_dim // 2
    if cos_sin is None:
        ang = pos[:, None].astype(np.float64) * freq[None, :]
        cos, sin = np.cos(ang), np.sin(ang)
    else:
        cos, sin = cos_sin[pos, :half], cos_sin[pos, half:]
    cos, sin = cos[:, None, :], sin[:, None, :]
    if interleave:
        x1, x2 = x[..., 0:rotary_dim:2], x[..., 1:rotary_dim:2]
        out[..., 0:rotary_dim:2] = x1 * cos - x2 * sin
        out[..., 1:rotary_dim:2] = x2 * cos + x1 * sin
    else:
        x1, x2 = x[..., :half], x[..., half:rotary_dim]
        out[..., :half] = x1 * cos - x2 * sin
        out[..., half:rotary_dim] = x2 * cos + x1 * sin
    return out


def packed_qk(rng, nnz, hq, hk, hd, dtype):
    """q and k as strided views of one [nnz, hq + 2*hk, hd] buffer (as after a QKV GEMM)."""
    tdt = getattr(torch, dtype)
    qkv64 = rng.standard_normal((nnz, hq + 2 * hk, hd))
    qkv = torch.tensor(qkv64, dtype=tdt, device="cuda")
    ref = qkv.double().cpu().numpy()  # the rounded values the kernel sees
    return qkv, qkv[:, :hq], qkv[:, hq:hq + hk], ref[:, :hq], ref[:, hq:hq + hk]


def nan_like(t):
    return torch.full(t.shape, float("nan"), dtype=t.dtype, device=t.device)


def host(t):
    torch.cuda.synchronize()
    return t.double().cpu().numpy()


CASES = [  # nnz, q heads, k heads, head_dim, rotary_dim, interleave
    (1, 32, 8, 128, None, False),
    (37, 16, 2, 128, 64, False),
    (37, 16, 2, 128, 64, True),
    (129, 8, 8, 64, None, True),
    (20, 4, 1, 256, 128, False),
    (5, 2, 2, 512, None, False),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("llama31", [False, True], ids=["rope", "llama31"])
@pytest.mark.parametrize("idx_dtype", ["int32", "int64"])
def test_pos_ids(dtype, case, llama31, idx_dtype, rng):
    nnz, hq, hk, hd, rd, il = case
    _, q, k, q64, k64 = packed_qk(rng, nnz, hq, hk, hd, dtype)
    pos = rng.integers(0, 4096, nnz)
    pos_t = torch.tensor(pos, dtype=getattr(torch, idx_dtype), device="cuda")
    rdim = rd or hd
    if llama31:
        scale, theta, extra = 8.0, 5e5, (1.0, 4.0, 8192.0)
        freq = inv_freq(rdim, theta, scale, extra)
        qo, ko = nan_like(q), nan_like(k)
        ret = fc.apply_llama31_rope_pos_ids(q, k, pos_t, rd, il, scale, theta, *extra,
                                            q_rope=qo, k_rope=ko)
    else:
        scale, theta = 1.0 + rng.random(), 1e4
        freq = inv_freq(rdim, theta, scale)
        qo, ko = nan_like(q), nan_like(k)
        ret = fc.apply_rope_pos_ids(q, k, pos_t, rd, il, scale, theta, q_rope=qo, k_rope=ko)
    assert ret[0] is qo and ret[1] is ko
    np.testing.assert_allclose(host(qo), rope_ref(q64, pos, rdim, il, freq), **TOL[dtype])
    np.testing.assert_allclose(host(ko), rope_ref(k64, pos, rdim, il, freq), **TOL[dtype])

    fi = flashinfer_peer()
    if llama31:
        pq, pk = fi.rope.apply_llama31_rope_pos_ids(q, k, pos_t, rd, il, scale, theta, *extra)
    else:
        pq, pk = fi.rope.apply_rope_pos_ids(q, k, pos_t, rd, il, scale, theta)
    assert_bits_equal(qo, pq, "q_rope")
    assert_bits_equal(ko, pk, "k_rope")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("llama31", [False, True], ids=["rope", "llama31"])
def test_ragged_indptr_offsets_and_inplace(dtype, llama31, rng):
    lens = [1, 17, 0, 64, 5]
    offsets = rng.integers(0, 2000, len(lens))
    indptr = np.concatenate([[0], np.cumsum(lens)])
    nnz = int(indptr[-1])
    qkv, q, k, q64, k64 = packed_qk(rng, nnz, 8, 2, 128, dtype)
    pos = np.concatenate([o + np.arange(n) for o, n in zip(offsets, lens)])
    ind_t = torch.tensor(indptr, dtype=torch.int32, device="cuda")
    off_t = torch.tensor(offsets, dtype=torch.int32, device="cuda")
    args = (64, False, 2.0, 1e4) + ((1.0, 4.0, 8192.0) if llama31 else ())
    freq = inv_freq(64, 1e4, 2.0, (1.0, 4.0, 8192.0) if llama31 else None)
    fn = fc.apply_llama31_rope if llama31 else fc.apply_rope
    fn_inplace = fc.apply_llama31_rope_inplace if llama31 else fc.apply_rope_inplace
    qo, ko = fn(q, k, ind_t, off_t, *args)  # allocated: DeviceArray
    qo_t, ko_t = torch.from_dlpack(qo), torch.from_dlpack(ko)
    np.testing.assert_allclose(host(qo_t), rope_ref(q64, pos, 64, False, freq), **TOL[dtype])
    np.testing.assert_allclose(host(ko_t), rope_ref(k64, pos, 64, False, freq), **TOL[dtype])

    fi = flashinfer_peer()
    peer_fn = fi.rope.apply_llama31_rope if llama31 else fi.rope.apply_rope
    pq, pk = peer_fn(q, k, ind_t, off_t, *args)
    assert_bits_equal(qo_t, pq, "q_rope")
    assert_bits_equal(ko_t, pk, "k_rope")
    v_before = qkv[:, 10:].clone()
    assert fn_inplace(q, k, ind_t, off_t, *args) is None
    assert_bits_equal(q, pq, "q in place")
    assert_bits_equal(k, pk, "k in place")
    assert torch.equal(qkv[:, 10:], v_before)  # v untouched


def cos_sin_cache(max_pos, rotary_dim, theta=1e4):
    f = theta ** (-2.0 * np.arange(rotary_dim // 2) / rotary_dim)
    ang = np.arange(max_pos)[:, None] * f[None, :]
    return np.concatenate([np.cos(ang), np.sin(ang)], axis=1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hd,rd", [(128, 128), (128, 64), (64, 64), (256, 128)])
@pytest.mark.parametrize("is_neox", [True, False])
@pytest.mark.parametrize("idx_dtype", ["int32", "int64"])
def test_cos_sin_cache(dtype, hd, rd, is_neox, idx_dtype, rng):
    nnz, hq, hk, max_pos = 19, 8, 2, 4096
    tdt = getattr(torch, dtype)
    query = torch.tensor(rng.standard_normal((nnz, hq * hd)), dtype=tdt, device="cuda")
    key = torch.tensor(rng.standard_normal((nnz, hk * hd)), dtype=tdt, device="cuda")
    cache64 = cos_sin_cache(max_pos, rd)
    cache = torch.tensor(cache64, dtype=torch.float32, device="cuda")
    c32 = cache.double().cpu().numpy()
    pos = rng.integers(0, max_pos, nnz)
    pos_t = torch.tensor(pos, dtype=getattr(torch, idx_dtype), device="cuda")
    qo, ko = nan_like(query), nan_like(key)
    fc.apply_rope_with_cos_sin_cache(pos_t, query, key, hd, cache, is_neox, query_out=qo,
                                     key_out=ko)
    q64 = query.double().cpu().numpy().reshape(nnz, hq, hd)
    k64 = key.double().cpu().numpy().reshape(nnz, hk, hd)
    want_q = rope_ref(q64, pos, rd, not is_neox, cos_sin=c32).reshape(nnz, -1)
    want_k = rope_ref(k64, pos, rd, not is_neox, cos_sin=c32).reshape(nnz, -1)
    np.testing.assert_allclose(host(qo), want_q, **TOL[dtype])
    np.testing.assert_allclose(host(ko), want_k, **TOL[dtype])

    fi = flashinfer_peer()
    pq, pk = fi.rope.apply_rope_with_cos_sin_cache(pos_t, query, key, hd, cache, is_neox)
    assert_bits_equal(qo, pq, "query_out")
    assert_bits_equal(ko, pk, "key_out")
    fc.apply_rope_with_cos_sin_cache_inplace(pos_t, query, key, hd, cache, is_neox)
    assert_bits_equal(query, pq, "query in place")
    assert_bits_equal(key, pk, "key in place")


def test_refusals_before_the_kernel(rng):
    """What the kernels would misread is refused, naming the argument."""
    q = torch.zeros(4, 8, 128, dtype=torch.float16, device="cuda")
    k = torch.zeros(4, 2, 128, dtype=torch.float16, device="cuda")
    pos = torch.zeros(4, dtype=torch.int32, device="cuda")
    with pytest.raises(ValueError, match="head_dim"):
        fc.apply_rope_pos_ids(q[..., :96], k[..., :96], pos)
    with pytest.raises(ValueError, match="rotary_dim"):
        fc.apply_rope_pos_ids(q, k, pos, rotary_dim=40)
    with pytest.raises(ValueError, match="pos_ids"):
        fc.apply_rope_pos_ids(q, k, pos[:3])
    with pytest.raises(TypeError, match="pos_ids"):
        fc.apply_rope_pos_ids(q, k, pos.float())
    with pytest.raises(ValueError, match="q_rope"):
        fc.apply_rope_pos_ids(q, k, pos, q_rope=torch.empty(4, 8, 64, dtype=torch.float16,
                                                            device="cuda"))
    buf = torch.zeros(5 * 8 * 128, dtype=torch.float16, device="cuda")
    shifted = buf[128:128 + 4 * 8 * 128].view(4, 8, 128)  # shares bytes with q, not a view of it
    with pytest.raises(ValueError, match="q_rope: .*must not overlap q"):
        fc.apply_rope_pos_ids(buf[:4 * 8 * 128].view(4, 8, 128), k, pos, q_rope=shifted)
