"""Run flashinfer_cy's rope, activation and prepare() APIs against the CPU stand-ins
(fake_decode_step.cc). Executed in a subprocess by test_decode_step_call_path.py, so the
stand-ins registered under the real module URIs never leak into other tests:

    python decode_step_driver.py <stand-in .so> <scenario>
"""

from __future__ import annotations

import gc
import sys
from pathlib import Path

import numpy as np

import flashinfer_cy as fc
from flashinfer_cy._core import runtime
from fake_kernel_driver import aligned, cuda_view, put

URIS = ("rope", "silu_and_mul", "gelu_and_mul", "gelu_tanh_and_mul", "norm")
ROPE = dict(interleave=True, rope_scale=2.5, rope_theta=1e4)  # what the stand-in expects
LLAMA31 = dict(low_freq_factor=1.0, high_freq_factor=4.0, old_context_len=8192)


def _fill(rng, shape):
    a = aligned(shape, np.uint16)
    a[...] = rng.integers(0, 1 << 16, shape, dtype=np.uint16)
    return a


def marked(x, pos, rotary_dim):
    """What the stand-in writes: the rotated part plus the position, 16-bit wrap-around."""
    out = x.copy()
    out[..., :rotary_dim] = (x[..., :rotary_dim].astype(np.int64)
                             + np.asarray(pos)[:, None, None]) % (1 << 16)
    return out


def packed(rng, nnz=6, hq=4, hk=2, hd=128):
    qkv = _fill(rng, (nnz, hq + 2 * hk, hd))
    row = (hq + 2 * hk) * hd
    q = cuda_view(qkv, "float16", (nnz, hq, hd), (row, hd, 1))
    k = cuda_view(qkv, "float16", (nnz, hk, hd), (row, hd, 1), hq * hd * 2)
    return qkv, q, k


def scenario_rope_pos_ids():
    rng = np.random.default_rng(1)
    for idx_dtype, np_idx in (("int32", np.int32), ("int64", np.int64)):
        for llama31 in (False, True):
            qkv, q, k = packed(rng)
            before = qkv.copy()
            pos = aligned((6,), np_idx)
            pos[:] = rng.integers(0, 5000, 6)
            qo, ko = _fill(rng, (6, 4, 128)), _fill(rng, (6, 2, 128))
            fn = fc.apply_llama31_rope_pos_ids if llama31 else fc.apply_rope_pos_ids
            extra = LLAMA31 if llama31 else {}
            ret = fn(q, k, cuda_view(pos, idx_dtype), 64, **ROPE, **extra,
                     q_rope=cuda_view(qo, "float16"), k_rope=cuda_view(ko, "float16"))
            assert len(ret) == 2
            np.testing.assert_array_equal(qo, marked(before[:, :4], pos, 64))
            np.testing.assert_array_equal(ko, marked(before[:, 4:6], pos, 64))
            np.testing.assert_array_equal(qkv, before)  # out of place: inputs untouched
            inplace = (fc.apply_llama31_rope_pos_ids_inplace if llama31
                       else fc.apply_rope_pos_ids_inplace)
            assert inplace(q, k, cuda_view(pos, idx_dtype), 64, **ROPE, **extra) is None
            np.testing.assert_array_equal(qkv[:, :4], marked(before[:, :4], pos, 64))
            np.testing.assert_array_equal(qkv[:, 4:6], marked(before[:, 4:6], pos, 64))
            np.testing.assert_array_equal(qkv[:, 6:], before[:, 6:])  # v untouched


def scenario_rope_ragged():
    rng = np.random.default_rng(2)
    lens, offsets = [2, 0, 3, 1], np.array([7, 100, 0, 4000], np.int32)
    indptr = np.concatenate([[0], np.cumsum(lens)]).astype(np.int32)
    pos = np.concatenate([o + np.arange(n) for o, n in zip(offsets, lens)])
    for llama31 in (False, True):
        qkv, q, k = packed(rng)
        before = qkv.copy()
        ind, off = aligned((5,), np.int32), aligned((4,), np.int32)
        ind[:], off[:] = indptr, offsets
        fn = fc.apply_llama31_rope_inplace if llama31 else fc.apply_rope_inplace
        fn(q, k, cuda_view(ind, "int32"), cuda_view(off, "int32"), None, **ROPE,
           **(LLAMA31 if llama31 else {}))
        np.testing.assert_array_equal(qkv[:, :4], marked(before[:, :4], pos, 128))
        np.testing.assert_array_equal(qkv[:, 4:6], marked(before[:, 4:6], pos, 128))


def scenario_rope_cos_sin_cache():
    rng = np.random.default_rng(3)
    query, key = _fill(rng, (5, 4 * 128)), _fill(rng, (5, 2 * 128))
    cache = aligned((50, 64), np.float32)
    cache[:] = rng.standard_normal((50, 64))
    pos = aligned((5,), np.int64)
    pos[:] = rng.integers(0, 50, 5)
    qo, ko = _fill(rng, (5, 4 * 128)), _fill(rng, (5, 2 * 128))
    fc.apply_rope_with_cos_sin_cache(cuda_view(pos, "int64"), cuda_view(query, "float16"),
                                     cuda_view(key, "float16"), 128,
                                     cuda_view(cache, "float32"), is_neox=False,
                                     query_out=cuda_view(qo, "float16"),
                                     key_out=cuda_view(ko, "float16"))
    want_q = marked(query.reshape(5, 4, 128), pos, 64).reshape(5, -1)
    np.testing.assert_array_equal(qo, want_q)
    np.testing.assert_array_equal(ko, marked(key.reshape(5, 2, 128), pos, 64).reshape(5, -1))


def scenario_activation():
    rng = np.random.default_rng(4)
    for fn in (fc.silu_and_mul, fc.gelu_and_mul, fc.gelu_tanh_and_mul):
        for shape, pdl in (((3, 64), False), ((2, 3, 32), True)):
            x = _fill(rng, shape)
            out = _fill(rng, shape[:-1] + (shape[-1] // 2,))
            d = shape[-1] // 2
            ret = fn(cuda_view(x, "bfloat16"), out=cuda_view(out, "bfloat16"), enable_pdl=pdl)
            assert ret is not None
            want = ((x[..., :d] ^ x[..., d:]).astype(np.int64) + pdl) % (1 << 16)
            np.testing.assert_array_equal(out, want)


def scenario_prepare():
    rng = np.random.default_rng(5)
    x, x2 = _fill(rng, (4, 64)), _fill(rng, (4, 64))
    out = aligned((4, 32), np.uint16)
    out[:] = 0xFFFF
    desc_out = cuda_view(out, "float16")
    p = fc.prepare(fc.silu_and_mul, cuda_view(x, "float16"), out=desc_out, enable_pdl=True)
    gc.collect()  # the input's descriptor exists only inside p now
    assert (out == 0xFFFF).all(), "prepare() launched the kernel"
    assert p.num_calls == 1 and p.arguments == [("silu_and_mul", ("out", "input",
                                                                   "enable_pdl"))]
    assert p.launch() is desc_out
    np.testing.assert_array_equal(out, ((x[:, :32] ^ x[:, 32:]).astype(np.int64) + 1) % 65536)
    x[:] = rng.integers(0, 1 << 16, x.shape, dtype=np.uint16)  # same memory, new values
    p.launch()
    np.testing.assert_array_equal(out, ((x[:, :32] ^ x[:, 32:]).astype(np.int64) + 1) % 65536)
    p.repoint(input=x2.ctypes.data)
    p.launch()
    np.testing.assert_array_equal(out, ((x2[:, :32] ^ x2[:, 32:]).astype(np.int64) + 1) % 65536)
    for bad, exc, words in (dict(input=x2.ctypes.data + 2), ValueError, "aligned like"), \
            (dict(nothing=16), ValueError, "no tensor argument"), \
            (dict(input=1.5), TypeError, "integer device address"):
        try:
            p.repoint(**bad)
        except exc as e:
            assert words in str(e), e
        else:
            raise AssertionError(f"repoint({bad}) accepted")
    try:
        p.set(enable_pdl=False)
    except ValueError as e:
        assert "not a per-launch argument" in str(e), e
    else:
        raise AssertionError("set(enable_pdl=) accepted")

    # several launches of an in-place prepared rope apply it several times
    qkv, q, k = packed(rng)
    before = qkv.copy()
    pos = aligned((6,), np.int32)
    pos[:] = rng.integers(0, 100, 6)
    r = fc.prepare(fc.apply_rope_pos_ids_inplace, q, k, cuda_view(pos, "int32"), 64, **ROPE)
    np.testing.assert_array_equal(qkv, before)
    r.launch()
    r.launch()
    np.testing.assert_array_equal(qkv[:, :4], marked(before[:, :4], 2 * pos, 64))

    # a failed check raises from prepare() and leaves no recorder behind
    try:
        fc.prepare(fc.silu_and_mul, cuda_view(x, "float16"), out=cuda_view(x, "float16"))
    except ValueError:
        pass
    else:
        raise AssertionError("bad out accepted")
    out[:] = 0
    assert fc.silu_and_mul(cuda_view(x, "float16"), out=desc_out, enable_pdl=False) is desc_out
    np.testing.assert_array_equal(out, x[:, :32] ^ x[:, 32:])  # ran: not recorded
    try:
        fc.prepare(fc.prepare, fc.silu_and_mul, cuda_view(x, "float16"), out=desc_out)
    except RuntimeError as e:
        assert "already capturing" in str(e), e
    else:
        raise AssertionError("nested prepare accepted")


def scenario_alloc_stream():
    """An output the call allocates is ordered on the stream the kernel runs on: stream=,
    else the thread's use_stream() stream (never stream 0 while the kernel runs elsewhere).
    Needs the stand-in libcudart.so.13 (fake_cudart.c), which records the stream."""
    import ctypes

    cudart = ctypes.CDLL("libcudart.so.13")
    cudart.fake_cudart_last_malloc_stream.restype = ctypes.c_void_p
    rng = np.random.default_rng()
    x, w = _fill(rng, (3, 64)), _fill(rng, (64,))
    qkv, q, k = packed(rng)
    pos = put(rng.integers(0, 1000, 6).astype(np.int32))
    calls = {
        "rmsnorm": lambda **kw: fc.rmsnorm(cuda_view(x, "float16"), cuda_view(w, "float16"),
                                           enable_pdl=False, **kw),
        "silu_and_mul": lambda **kw: fc.silu_and_mul(cuda_view(x, "float16"),
                                                     enable_pdl=False, **kw),
        "apply_rope_pos_ids": lambda **kw: fc.apply_rope_pos_ids(
            q, k, cuda_view(pos, "int32"), **ROPE, **kw),
    }
    for name, call in calls.items():
        for how, stream in (("use_stream", 0x5A00), ("stream=", 0x5B00)):
            if how == "use_stream":
                with fc.use_stream(stream):
                    call()
            else:
                with fc.use_stream(0x5C00):  # stream= wins over the thread's stream
                    call(stream=stream)
            got = cudart.fake_cudart_last_malloc_stream() or 0
            assert got == stream, f"{name} ({how}): output allocated on {got:#x}, " \
                                  f"the kernel runs on {stream:#x}"
    out = fc.rmsnorm(cuda_view(x, "float16"), cuda_view(w, "float16"), enable_pdl=False)
    np.testing.assert_array_equal(out.numpy().view(np.uint16), x ^ w)  # the allocated output is what the kernel wrote


if __name__ == "__main__":
    so, scenario = Path(sys.argv[1]), sys.argv[2]
    if scenario != "alloc_stream":
        runtime._load_cudart = lambda: None  # no CUDA runtime: leave the current device alone
    for uri in URIS:
        fc.load_module_path(so, uri=uri, flashinfer_version="0.6.3")  # its signatures' release
    globals()[f"scenario_{scenario}"]()
    print("ok")
