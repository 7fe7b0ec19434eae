"""Argument checking of the rope and gated-activation APIs and of prepare(), on a machine
without a GPU: every bad input raises the named error before any kernel module is loaded
or CUDA is touched (no_cuda turns either into a TouchedCuda failure); every good input gets
as far as that point. TensorDesc descriptors of fake CUDA pointers stand in for tensors."""

from __future__ import annotations

import pytest

import flashinfer_cy as fc
from cuda_guard import no_cuda, raises, reaches_cuda
from producers import ReadOnly

PTR = 0x7F0000000000  # 64-byte aligned, never dereferenced
MB = 1 << 20


@pytest.fixture(autouse=True)
def _no_cuda(monkeypatch):
    no_cuda(monkeypatch)


def T(shape, dtype="float16", strides=None, offset=0, device=0, device_type="cuda"):
    return fc.TensorDesc(PTR + offset, shape, dtype, strides=strides, device=device,
                         device_type=device_type)


# ----------------------------------------------------------------------------- rope

NNZ, HQ, HK, HD = 4, 8, 2, 128


def rope_args(**over):
    """Valid out-of-place pos_ids arguments (q, k as views of one packed QKV buffer)."""
    row = (HQ + 2 * HK) * HD
    args = dict(q=T((NNZ, HQ, HD), strides=(row, HD, 1)),
                k=T((NNZ, HK, HD), strides=(row, HD, 1), offset=HQ * HD * 2),
                pos_ids=T((NNZ,), "int32", offset=MB),
                q_rope=T((NNZ, HQ, HD), offset=2 * MB), k_rope=T((NNZ, HK, HD), offset=3 * MB))
    args.update(over)
    return args


def pos_ids(**over):
    a = rope_args(**over)
    return lambda: fc.apply_rope_pos_ids(a.pop("q"), a.pop("k"), a.pop("pos_ids"), **a)


@pytest.mark.parametrize("over", [
    {}, dict(rotary_dim=64), dict(rotary_dim=64, interleave=True), dict(interleave=True,
                                                                        rotary_dim=8),
    dict(pos_ids=T((NNZ,), "int64", offset=MB)),
    dict(q=T((NNZ, HQ, 64)), k=T((NNZ, HK, 64), offset=MB // 2), q_rope=T((NNZ, HQ, 64),
         offset=2 * MB), k_rope=T((NNZ, HK, 64), offset=3 * MB)),
    {n: T(s, "bfloat16", offset=o) for n, s, o in (("q", (NNZ, HQ, HD), 0),
                                                    ("k", (NNZ, HK, HD), MB // 2),
                                                    ("q_rope", (NNZ, HQ, HD), 2 * MB),
                                                    ("k_rope", (NNZ, HK, HD), 3 * MB))},
    dict(q=T((0, HQ, HD)), k=T((0, HK, HD), offset=MB // 2), pos_ids=T((0,), "int32"),
         q_rope=T((0, HQ, HD), offset=2 * MB), k_rope=T((0, HK, HD), offset=3 * MB)),
], ids=str)
def test_rope_valid_calls_reach_cuda(over):
    if over.get("q") is not None and over["q"].shape[0] == 0:
        assert pos_ids(**over)() == (over["q_rope"], over["k_rope"])  # nothing to launch
        return
    reaches_cuda(pos_ids(**over))


@pytest.mark.parametrize("over,exc,words", [
    (dict(q=T((NNZ, HQ, HD), "float32")), TypeError, "q: expected dtype"),
    (dict(q=T((NNZ, HQ, HD), device_type="cpu")), ValueError, "q: .*CUDA"),
    (dict(q=T((NNZ * HQ, HD))), ValueError, "q: expected 3 dimensions"),
    (dict(k=T((NNZ + 1, HK, HD), offset=MB // 2)), ValueError, "k: expected size 4"),
    (dict(k=T((NNZ, HK, 64), offset=MB // 2)), ValueError, "k: expected size 128"),
    (dict(k=T((NNZ, HK, HD), "bfloat16", offset=MB // 2)), TypeError, "k: .*dtype"),
    (dict(q=T((NNZ, HQ, 96)), k=T((NNZ, HK, 96), offset=MB // 2)), ValueError, "head_dim"),
    (dict(q=T((NNZ, HQ, HD), offset=8)), ValueError, "q: data pointer .* 16-byte"),
    (dict(q=T((NNZ, HQ, HD), strides=(HQ * HD + 4, HD, 1))), ValueError, "q: stride"),
    (dict(q=T((NNZ, HQ, HD), strides=(HQ * HD * 2, HD * 2, 2))), ValueError, "q: .*contig"),
    (dict(pos_ids=T((NNZ,), "float32", offset=MB)), TypeError, "pos_ids: expected dtype"),
    (dict(pos_ids=T((NNZ - 1,), "int32", offset=MB)), ValueError, "pos_ids: expected size"),
    (dict(pos_ids=T((NNZ, 1), "int32", offset=MB)), ValueError, "pos_ids: expected 1"),
    (dict(q_rope=T((NNZ, HQ, 64), offset=2 * MB)), ValueError, "q_rope"),
    (dict(k_rope=T((NNZ, HK, HD), "bfloat16", offset=3 * MB)), TypeError, "k_rope"),
    (dict(k_rope=T((NNZ, HK, HD), offset=3 * MB, device=1)), ValueError, "k_rope"),
    (dict(q_rope=T((NNZ, HQ, HD), offset=256)), ValueError, "q_rope: .*must not overlap q"),
    (dict(q_rope=ReadOnly(T((NNZ, HQ, HD), offset=2 * MB))), ValueError, "q_rope"),
    (dict(rotary_dim=40), ValueError, "rotary_dim: expected a multiple of 16"),
    (dict(rotary_dim=8), ValueError, "rotary_dim: expected a multiple of 16"),
    (dict(rotary_dim=256), ValueError, "rotary_dim"),
    (dict(rotary_dim=0), ValueError, "rotary_dim"),
    (dict(rotary_dim=64.0), TypeError, "rotary_dim"),
    (dict(rotary_dim=True), TypeError, "rotary_dim"),
    (dict(interleave="yes"), TypeError, "interleave"),
    (dict(interleave=None), TypeError, "interleave"),
    (dict(rope_scale=0.0), ValueError, "rope_scale"),
    (dict(rope_scale=float("nan")), ValueError, "rope_scale"),
    (dict(rope_theta=float("inf")), ValueError, "rope_theta"),
    (dict(rope_theta="1e4"), TypeError, "rope_theta"),
    (dict(stream="abc"), TypeError, "stream"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_rope_refusals(over, exc, words):
    raises(pos_ids(**over), exc, words)


def test_rope_inplace_read_only_refused():
    a = rope_args(q=ReadOnly(rope_args()["q"]))
    raises(lambda: fc.apply_rope_pos_ids_inplace(a["q"], a["k"], a["pos_ids"]), ValueError,
           "q")


def test_rope_ragged_and_llama31_checks():
    a = rope_args()
    ind, off = T((3,), "int32", offset=4 * MB), T((2,), "int32", offset=5 * MB)
    reaches_cuda(lambda: fc.apply_rope(a["q"], a["k"], ind, off, q_rope=a["q_rope"],
                                       k_rope=a["k_rope"]))
    raises(lambda: fc.apply_rope(a["q"], a["k"], T((2,), "int32"), off), ValueError,
           "indptr: expected size 3")
    raises(lambda: fc.apply_rope(a["q"], a["k"], ind, T((2,), "int64")), TypeError,
           "offsets: must have indptr's dtype")
    for kw, words in ((dict(low_freq_factor=4.0, high_freq_factor=4.0), "high_freq_factor"),
                      (dict(low_freq_factor=0.0), "low_freq_factor"),
                      (dict(old_context_len=-1), "old_context_len"),
                      (dict(high_freq_factor=float("nan")), "high_freq_factor")):
        raises(lambda: fc.apply_llama31_rope_pos_ids_inplace(a["q"], a["k"], a["pos_ids"],
                                                             **kw), ValueError, words)


def cache_call(**over):
    args = dict(positions=T((NNZ,), "int64", offset=MB), query=T((NNZ, HQ * HD)),
                key=T((NNZ, HK * HD), offset=MB // 2), head_size=HD,
                cos_sin_cache=T((4096, 64), "float32", offset=4 * MB),
                query_out=T((NNZ, HQ * HD), offset=2 * MB),
                key_out=T((NNZ, HK * HD), offset=3 * MB))
    args.update(over)
    return lambda: fc.apply_rope_with_cos_sin_cache(**args)


def test_cos_sin_cache_checks():
    reaches_cuda(cache_call())
    reaches_cuda(cache_call(is_neox=False, cos_sin_cache=T((10, 128), "float32", offset=4 * MB)))
    raises(cache_call(cos_sin_cache=T((4096, 64), "float16", offset=4 * MB)), TypeError,
           "cos_sin_cache: expected dtype float32")
    raises(cache_call(cos_sin_cache=T((0, 64), "float32", offset=4 * MB)), ValueError,
           "cos_sin_cache: has no positions")
    raises(cache_call(cos_sin_cache=T((64, 40), "float32", offset=4 * MB)), ValueError,
           "rotary_dim")
    raises(cache_call(query=T((NNZ, HQ * HD + 64))), ValueError, "query: expected .*head_size")
    raises(cache_call(head_size=0), TypeError, "head_size")
    raises(cache_call(head_size=10**400), ValueError, "head_size: expected a positive int below")  # not OverflowError
    raises(cache_call(positions=T((NNZ,), "float32", offset=MB)), TypeError, "positions")
    raises(cache_call(key_out=T((NNZ, HK * HD), offset=MB // 2 + 512)), ValueError,
           "key_out: .*must not overlap key")


# ----------------------------------------------------------------------------- activation

@pytest.mark.parametrize("fn", [fc.silu_and_mul, fc.gelu_and_mul, fc.gelu_tanh_and_mul])
def test_activation_checks(fn):
    x, out = T((4, 256)), T((4, 128), offset=MB)
    reaches_cuda(lambda: fn(x, out=out, enable_pdl=False))
    reaches_cuda(lambda: fn(T((2, 3, 16)), out=T((2, 3, 8), offset=MB), enable_pdl=True))
    assert fn(T((0, 256)), out=T((0, 128), offset=MB), enable_pdl=False) is not None
    for bad, exc, words in [
        (dict(input=T((4, 256), "float32")), TypeError, "input: expected dtype"),
        (dict(input=T((4, 24))), ValueError, "input: the last dimension"),
        (dict(input=T((4, 8))), ValueError, "input: the last dimension"),
        (dict(input=T((4, 256), strides=(512, 1))), ValueError, "input: .*contiguous"),
        (dict(input=T((4, 256), offset=8)), ValueError, "input: data pointer"),
        (dict(input=T((256,))), ValueError, "out: expected shape"),
        (dict(out=T((4, 256), offset=MB)), ValueError, "out: expected shape"),
        (dict(out=T((4, 128), "bfloat16", offset=MB)), TypeError, "out"),
        (dict(out=T((4, 128), offset=MB + 4)), ValueError, "out: data pointer"),
        (dict(out=T((4, 128), strides=(256, 1), offset=MB)), ValueError, "out: .*contiguous"),
        (dict(out=ReadOnly(T((4, 128), offset=MB))), ValueError, "out"),
        (dict(out=T((4, 128), offset=MB, device=1)), ValueError, "out"),
        (dict(enable_pdl="no"), TypeError, "enable_pdl"),
        (dict(input=None), TypeError, "input"),
    ]:
        kw = dict(input=x, out=out, enable_pdl=False)
        kw.update(bad)
        raises(lambda: fn(**kw), exc, words)


# ----------------------------------------------------------------------------- prepare

def test_prepare_checks_like_the_call_and_launches_nothing():
    x, out = T((4, 256)), T((4, 128), offset=MB)
    raises(lambda: fc.prepare(fc.silu_and_mul, T((4, 24)), out=out), ValueError,
           "input: the last dimension")
    # the checks pass, then loading the module for the recorded call is what touches CUDA
    reaches_cuda(lambda: fc.prepare(fc.silu_and_mul, x, out=out, enable_pdl=False))
    # an empty input records no call: launch() does nothing
    p = fc.prepare(fc.silu_and_mul, T((0, 256)), out=T((0, 128)), enable_pdl=False)
    assert p.num_calls == 0 and p.launch() is not None
    raises(lambda: fc.prepare(42), TypeError, "kernel function")
    with pytest.raises(TypeError, match="made by flashinfer_cy.prepare"):
        fc.PreparedCall()
    wrapper = fc.BatchDecodeWithPagedKVCache()
    raises(lambda: fc.prepare(wrapper.run, None, None), TypeError, "its own prepare")


def test_binding_per_launch_must_name_scalars():
    b = fc.Binding("m", "f", "x:T seed:I scale:F flag:B", per_launch=("seed", "scale", "flag"))
    assert b.launch_scalars == ("seed", "scale", "flag")
    with pytest.raises(ValueError, match="per_launch"):
        fc.Binding("m", "f", "x:T seed:I", per_launch=("x",))
    with pytest.raises(ValueError, match="per_launch"):
        fc.Binding("m", "f", "x:T seed:I", per_launch=("nope",))


def test_activation_empty_input_takes_any_strides():
    """A (0, 2d) tensor addresses no memory; torch and CuPy export it with strides (0, 0)."""
    out = fc.silu_and_mul(T((0, 256), strides=(0, 0)), out=T((0, 128), strides=(0, 0)),
                          enable_pdl=False)
    assert out is not None
