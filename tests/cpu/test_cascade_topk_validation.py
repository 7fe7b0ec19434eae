"""Argument checking of the cascade (attention-state merge) and top-k APIs, on a machine
without a GPU.

Tensors are ``TensorDesc`` descriptors of fake CUDA pointers, each in its own address
range (the APIs refuse outputs that overlap their inputs). Every bad input must raise the
named error before any kernel module is loaded or CUDA is touched (``no_cuda``); every good
input must get that far. The top-k checks that need the device (SM count, shared memory)
run against a stand-in H100 (132 SMs, 227 KiB of opt-in shared memory per block). Also the
ABI tables against FlashInfer 0.6.3's binding sources."""

from __future__ import annotations

import itertools

import pytest

import flashinfer_cy as fc
from cuda_guard import fake_cai_driver, no_cuda, raises, reaches_cuda, written_read_only
from producers import CAI, ReadOnly
from flashinfer_cy._core import runtime
from flashinfer_cy.kernels import cascade, topk

PTR = 0x7F0000000000       # 64-byte aligned, never dereferenced
SPAN = 1 << 36             # address range of each fake tensor (larger than any used here)
_regions = itertools.count()


@pytest.fixture(autouse=True)
def _no_cuda(monkeypatch):
    no_cuda(monkeypatch)


def fresh() -> int:
    """The start of an address range no other fake tensor uses."""
    return PTR + next(_regions) * SPAN


def T(shape, dtype="float16", strides=None, offset=0, device=0, device_type="cuda", at=None):
    """A fake tensor in a fresh address range (``at``: an address inside another's)."""
    base = at if at is not None else fresh()
    return fc.TensorDesc(base + offset, shape, dtype, strides=strides, device=device,
                         device_type=device_type)


# ----------------------------------------------------------------------------- cascade

S, H, D = 5, 8, 128


def ms(dtype="float16", **over):
    """merge_state with valid [S, H, D] arguments, keyword overrides."""
    args = dict(v_a=T((S, H, D), dtype), s_a=T((S, H), "float32"), v_b=T((S, H, D), dtype),
                s_b=T((S, H), "float32"))
    args.update(over)
    return lambda: fc.merge_state(**args)


def msip(dtype="float16", **over):
    args = dict(v=T((S, H, D), dtype), s=T((S, H), "float32"), v_other=T((S, H, D), dtype),
                s_other=T((S, H), "float32"))
    args.update(over)
    return lambda: fc.merge_state_in_place(**args)


def mss(states=3, dtype="float16", heads=H, head_dim=D, **over):
    args = dict(v=T((S, states, heads, head_dim), dtype), s=T((S, states, heads), "float32"))
    args.update(over)
    return lambda: fc.merge_states(**args)


@pytest.mark.parametrize("call", [
    ms(), ms("bfloat16"),
    ms(v_merged=T((S, H, D)), s_merged=T((S, H), "float32")),
    ms(v_merged=T((S, H, D))), ms(s_merged=T((S, H), "float32")),
    # the most heads one block holds: 1024 threads of head_dim / vec
    ms(v_a=T((S, 128, 64)), s_a=T((S, 128), "float32"), v_b=T((S, 128, 64)),
       s_b=T((S, 128), "float32")),
    ms(v_a=T((S, 32, 512)), s_a=T((S, 32), "float32"), v_b=T((S, 32, 512)),
       s_b=T((S, 32), "float32")),
    msip(), msip("bfloat16"), msip(mask=T((S,), "bool")), msip(mask=T((S,), "uint8")),
    mss(), mss(dtype="bfloat16"), mss(states=0), mss(states=1),
    # num_states >= seq_len: one block per (row, head), so any head count
    mss(states=S, heads=200), mss(head_dim=256),
    mss(v_merged=T((S, H, D)), s_merged=T((S, H), "float32")),
], ids=["ms", "ms-bf16", "ms-out", "ms-v-out", "ms-s-out", "ms-128x64", "ms-32x512",
        "ip", "ip-bf16", "ip-mask-bool", "ip-mask-u8", "mss", "mss-bf16", "mss-0", "mss-1",
        "mss-many-heads", "mss-256", "mss-out"])
def test_cascade_valid_arguments_reach_the_kernel(call):
    reaches_cuda(call)


@pytest.mark.parametrize("call, exc, words", [
    (ms(v_a=T((S, H, D), "float32")), TypeError, "v_a: expected dtype float16 or bfloat16"),
    (ms(v_b=T((S, H, D), "bfloat16")), TypeError, r"v_b: expected dtype float16 \(same as v_a\)"),
    (ms(s_a=T((S, H), "float16")), TypeError, "s_a: expected dtype float32"),
    (ms(s_b=T((S, H), "float64")), TypeError, r"s_b: expected dtype float32 \(same as s_a\)"),
    (ms(v_a=T((S, H * D))), ValueError, r"v_a: expected 3 dimensions \[seq_len"),
    (ms(v_a=T((S, H, 96)), v_b=T((S, H, 96))), ValueError, "v_a: head_dim .* must be one of"),
    (ms(v_b=T((S, H + 1, D))), ValueError, r"v_b: expected shape \(5, 8, 128\)"),
    (ms(s_a=T((S, H + 1), "float32")), ValueError, r"s_a: expected size 8 \(\(5, 8\) from v_a\)"),
    (ms(s_a=T((S, H, 1), "float32")), ValueError, "s_a: expected 2 dimensions"),
    (ms(s_b=T((S + 1, H), "float32")), ValueError, r"s_b: expected shape \(5, 8\)"),
    (ms(v_a=T((S, H, D), strides=(H * D * 2, D, 1))), ValueError,
     "v_a: expected a contiguous"),
    (ms(v_b=T((S, H, D), strides=(H * D, 1, H))), ValueError, "v_b: expected a contiguous"),
    (ms(s_a=T((S, H), "float32", strides=(1, S))), ValueError, "s_a: expected a contiguous"),
    (ms(v_a=T((S, H, D), offset=8)), ValueError, "v_a: data pointer .* aligned to 16 bytes"),
    (ms(v_b=T((S, H, D), offset=2)), ValueError, "v_b: data pointer .* aligned to 16"),
    (ms(v_a=T((S, H, D), device_type="cpu")), ValueError, "v_a: expected a CUDA tensor"),
    (ms(v_b=T((S, H, D), device=1)), ValueError, "v_b: expected a tensor on cuda:0"),
    (ms(s_a=T((S, H), "float32", device=1)), ValueError, "s_a: expected a tensor on cuda:0"),
    (ms(v_a=T((S, 129, 64)), s_a=T((S, 129), "float32"), v_b=T((S, 129, 64)),
        s_b=T((S, 129), "float32")), ValueError, "129 heads of head_dim 64 exceed one thread block"),
    (ms(v_a=T((S, 33, 256)), s_a=T((S, 33), "float32"), v_b=T((S, 33, 256)),
        s_b=T((S, 33), "float32")), ValueError, r"at most 32 heads for head_dim 256"),
    # 32-bit element offsets: 2**32 elements are refused, never wrapped
    (ms(v_a=T((2**25, 1, 128)), s_a=T((2**25, 1), "float32"), v_b=T((2**25, 1, 128)),
        s_b=T((2**25, 1), "float32")), ValueError, "v_a: the kernel addresses elements with 32-bit"),
    (ms(v_merged=T((S, H, D), "bfloat16")), TypeError, r"v_merged: expected dtype float16 \(same as v_a\)"),
    (ms(v_merged=T((S, H, 64))), ValueError, r"v_merged: expected size 128"),
    (ms(v_merged=T((S, H, D), offset=4)), ValueError, "v_merged: data pointer"),
    (ms(v_merged=T((S, H, D), strides=(H * D, 1, H))), ValueError, "v_merged: expected a contiguous"),
    (ms(s_merged=T((S, H), "float16")), TypeError, "s_merged: expected dtype float32"),
    (ms(s_merged=T((S, H + 1), "float32")), ValueError, "s_merged: expected size 8"),
    (ms(s_merged=T((S, H), "float32", device=1)), ValueError, "s_merged: expected a tensor on cuda:0"),
    (ms(v_merged=T((S, H, D), device_type="cpu")), ValueError, "v_merged: expected a CUDA tensor"),
    (ms(stream="not a stream"), TypeError, "stream"),
    (msip(v=T((S, H, D), "float32")), TypeError, "v: expected dtype float16 or bfloat16"),
    (msip(v_other=T((S, H, D), "bfloat16")), TypeError, "v_other: expected dtype float16"),
    (msip(s=T((S, H), "bfloat16")), TypeError, "s: expected dtype float32"),
    (msip(s_other=T((S, 1), "float32")), ValueError, "s_other: expected shape"),
    (msip(v_other=T((S, H, D), offset=16 * 3 + 2)), ValueError, "v_other: data pointer"),
    (msip(mask=T((S,), "int32")), TypeError, "mask: expected dtype bool or uint8"),
    (msip(mask=T((S,), "int8")), TypeError, "mask: expected dtype bool or uint8"),
    (msip(mask=T((S + 1,), "bool")), ValueError, r"mask: expected size 5 \(seq_len"),
    (msip(mask=T((S, 1), "bool")), ValueError, "mask: expected 1 dimensions"),
    (msip(mask=T((S,), "bool", strides=(2,))), ValueError, "mask: expected a contiguous"),
    (msip(mask=T((S,), "bool", device=1)), ValueError, "mask: expected a tensor on cuda:0"),
    (msip(mask=T((S,), "bool", device_type="cpu")), ValueError, "mask: expected a CUDA tensor"),
    (mss(v=T((S, 3, H * D))), ValueError, r"v: expected 4 dimensions \[seq_len, num_states"),
    (mss(s=T((S, 3, H), "float16")), TypeError, "s: expected dtype float32"),
    (mss(s=T((S, 4, H), "float32")), ValueError, r"s: expected size 3 \(\(5, 3, 8\) from v\)"),
    (mss(s=T((S, 3), "float32")), ValueError, "s: expected 3 dimensions"),
    (mss(heads=65, v=T((S, 3, 65, 128)), s=T((S, 3, 65), "float32")), ValueError,
     "65 heads of head_dim 128 exceed"),
    (mss(states=S, v=T((S, S, 65536, 64)), s=T((S, S, 65536), "float32")), ValueError,
     "at most 65535 heads when num_states >= seq_len"),
    (mss(v_merged=T((S, 3, H, D))), ValueError, "v_merged: expected 3 dimensions"),
    (mss(s_merged=T((S, 3, H), "float32")), ValueError, "s_merged: expected 2 dimensions"),
], ids=lambda x: x if isinstance(x, str) else None)
def test_cascade_bad_arguments_raise_before_cuda(call, exc, words):
    raises(call, exc, words)


def test_cascade_outputs_must_not_overlap_inputs():
    v_a, s_a = T((S, H, D)), T((S, H), "float32")
    raises(ms(v_a=v_a, s_a=s_a, v_merged=T((S, H, D), at=v_a.ptr + 256)), ValueError,
           "v_merged: the kernel writes it, so it must not overlap v_a")
    raises(ms(v_a=v_a, s_a=s_a, v_merged=T((S, H, D)), s_merged=s_a), ValueError,
           "s_merged: .* must not overlap s_a")
    v = T((S, H, D))
    raises(msip(v=v, v_other=T((S, H, D), at=v.ptr + 2 * H * D)), ValueError,
           "v: the kernel writes it, so it must not overlap v_other")
    s = T((S, H), "float32")
    raises(msip(s=s, mask=T((S,), "bool", at=s.ptr + 4)), ValueError,
           "s: .* must not overlap mask")
    vs = T((S, 3, H, D))
    raises(mss(v=vs, v_merged=T((S, H, D), at=vs.ptr)), ValueError,
           "v_merged: .* must not overlap v ")
    # every pair: the last input, and the two outputs (or in-place states) with each other
    s_b = T((S, H), "float32")
    raises(ms(s_b=s_b, s_merged=T((S, H), "float32", at=s_b.ptr + 4)), ValueError,
           "s_merged: .* must not overlap s_b")
    vm = T((S, H, D))
    raises(ms(v_merged=vm, s_merged=T((S, H), "float32", at=vm.ptr + 64)), ValueError,
           "v_merged: the kernel writes it, so it must not overlap s_merged")
    raises(msip(v=v, s=T((S, H), "float32", at=v.ptr + 64)), ValueError,
           "v: the kernel writes it, so it must not overlap s ")
    raises(msip(s=s, mask=T((S,), "bool"), s_other=T((S, H), "float32", at=s.ptr)),
           ValueError, "s: .* must not overlap s_other")
    # adjacent, not overlapping: fine
    reaches_cuda(ms(v_a=v_a, s_a=s_a, v_merged=T((S, H, D), at=v_a.ptr + S * H * D * 2)))


def test_cascade_nothing_to_merge_is_a_no_op_without_cuda():
    """Zero rows with the outputs given: no module, no CUDA, the outputs returned."""
    vm, sm = T((0, H, D)), T((0, H), "float32")
    out = fc.merge_state(T((0, H, D)), T((0, H), "float32"), T((0, H, D)),
                         T((0, H), "float32"), vm, sm)
    assert out == (vm, sm)
    assert fc.merge_state_in_place(T((0, H, D)), T((0, H), "float32"), T((0, H, D)),
                                   T((0, H), "float32")) is None
    assert fc.merge_states(T((0, 2, H, D)), T((0, 2, H), "float32"), vm, sm) == (vm, sm)
    with pytest.raises(TypeError, match="stream"):
        fc.merge_states(T((0, 2, H, D)), T((0, 2, H), "float32"), vm, sm, stream=1.5)


# ----------------------------------------------------------------------------- top-k

R, W, K = 7, 1000, 64


@pytest.fixture
def h100(monkeypatch):
    """The device queries answer as an H100 would; anything further still touches CUDA."""
    monkeypatch.setattr(runtime, "device_multiprocessor_count", lambda d: 132)
    monkeypatch.setattr(runtime, "device_max_shared_memory_per_block_optin", lambda d: 232448)


def tk(dtype="float32", rows=R, width=W, k=K, **over):
    args = dict(input=T((rows, width), dtype), k=k)
    args.update(over)
    return lambda: fc.top_k(**args)


def ptt(dtype="float32", rows=R, width=W, k=K, **over):
    args = dict(input=T((rows, width), dtype), src_page_table=T((rows, width), "int32"),
                lengths=T((rows,), "int32"), k=k)
    args.update(over)
    return lambda: fc.top_k_page_table_transform(**args)


def rgt(dtype="float32", rows=R, width=W, k=K, **over):
    args = dict(input=T((rows, width), dtype), offsets=T((rows,), "int32"),
                lengths=T((rows,), "int32"), k=k)
    args.update(over)
    return lambda: fc.top_k_ragged_transform(**args)


@pytest.mark.parametrize("call", [
    tk(), tk("float16"), tk("bfloat16"), tk(k=W), tk(k=1), tk(width=151936, k=2048),
    # odd widths load one element at a time: any element-aligned pointer is fine
    tk("float16", width=50257, input=T((R, 50257), "float16", offset=2)),
    tk(values=T((R, K), "float32"), indices=T((R, K), "int32")),
    tk(row_states_buffer=T((1 << 20,), "uint8")),
    tk(k=True + 4), tk(sorted=False), tk(sorted=0),
    ptt(), ptt("bfloat16"), ptt(k=W + 5), ptt(row_to_batch=T((R,), "int32"),
                                             src_page_table=T((2, W), "int32")),
    ptt(out=T((R, K), "int32")), ptt(src_page_table=T((R, 3), "int32")),
    rgt(), rgt("float16"), rgt(k=5000), rgt(out=T((R, K), "int32")),
], ids=["tk", "tk-f16", "tk-bf16", "tk-k=w", "tk-k1", "tk-vocab", "tk-odd", "tk-out",
        "tk-states", "tk-k-int", "tk-unsorted", "tk-sorted-0", "ptt", "ptt-bf16", "ptt-k>w",
        "ptt-r2b", "ptt-out", "ptt-narrow-table", "rgt", "rgt-f16", "rgt-k>w", "rgt-out"])
def test_topk_valid_arguments_reach_the_device(call, h100):
    reaches_cuda(call)


@pytest.mark.parametrize("call, exc, words", [
    (tk(input=T((R, W), "int32")), TypeError, "input: expected dtype float32, float16 or bfloat16"),
    (tk(input=T((R, W), "float64")), TypeError, "input: expected dtype float32"),
    (tk(input=T((R, 2, W), "float32")), ValueError, "input: expected 2 dimensions"),
    (tk(input=T((W,), "float32")), ValueError, "input: expected 2 dimensions"),
    (tk(input=T((R, W), "float32", strides=(2 * W, 1))), ValueError, "input: expected a contiguous"),
    (tk(input=T((R, W), "float32", strides=(1, R))), ValueError, "input: expected a contiguous"),
    (tk(input=T((R, 0), "float32")), ValueError, "input: rows must have at least one score"),
    (ptt(input=T((R, 0), "float32")), ValueError, "input: rows must have at least one score"),
    (tk(input=T((R, W), "float32", device_type="cpu")), ValueError, "input: expected a CUDA tensor"),
    # width 1000 of float32 loads 4-element vectors: 16-byte aligned row starts
    (tk(input=T((R, W), "float32", offset=4)), ValueError, "input: data pointer .* aligned to 16"),
    (tk(input=T((R, 1002), "float16", offset=2)), ValueError, "input: data pointer .* aligned to 4"),
    (tk(input=T((2**16, 2**16), "float32")), ValueError, "input: the kernels address scores with 32-bit"),
    (tk(input=T((1, 2**31), "float16")), ValueError, "input: the kernels address scores"),
    (tk(k=0), ValueError, "k: expected 1 <= k"),
    (tk(k=-3), ValueError, "k: expected 1 <= k"),
    (tk(k=2**31), ValueError, "k: expected 1 <= k"),
    (tk(k=W + 1), ValueError, r"k: expected 1 <= k <= width \(1000\), got 1001"),
    (tk(k=64.0), TypeError, "k: expected an int"),
    (tk(k=True), TypeError, "k: expected an int"),
    (tk(k="64"), TypeError, "k: expected an int"),
    (tk(k=None), TypeError, "k: expected an int"),
    (tk(sorted=True), ValueError, "sorted: True is not supported"),
    (tk(sorted="no"), TypeError, "sorted: expected False"),
    (tk(sorted=None), TypeError, "sorted: expected False"),
    (tk(indices=T((R, K), "int64")), TypeError, "indices: expected dtype int32"),
    (tk(indices=T((R, K + 1), "int32")), ValueError, r"indices: expected size 64 \(k\)"),
    (tk(indices=T((R + 1, K), "int32")), ValueError, r"indices: expected size 7 \(rows of input\)"),
    (tk(indices=T((R, K), "int32", strides=(1, R))), ValueError, "indices: expected a contiguous"),
    (tk(indices=T((R, K), "int32", device=1)), ValueError, "indices: expected a tensor on cuda:0"),
    (tk(values=T((R, K), "float16")), TypeError, "values: expected dtype float32"),
    (tk(values=T((R, K, 1), "float32")), ValueError, "values: expected 2 dimensions"),
    (tk(row_states_buffer=T((1 << 20,), "int32")), TypeError, "row_states_buffer: expected dtype uint8"),
    (tk(row_states_buffer=T((1, 1 << 20), "uint8")), ValueError, "row_states_buffer: expected 1 dimensions"),
    (tk(row_states_buffer=T((1 << 20,), "uint8", offset=1)), ValueError,
     "row_states_buffer: data pointer .* aligned to 4"),
    (tk(row_states_buffer=T((1 << 20,), "uint8", strides=(2,))), ValueError,
     "row_states_buffer: expected a contiguous"),
    (tk(row_states_buffer=T((1 << 20,), "uint8", device=1)), ValueError,
     "row_states_buffer: expected a tensor on cuda:0"),
    (ptt(src_page_table=T((R, W), "int64")), TypeError, "src_page_table: expected dtype int32"),
    (ptt(src_page_table=T((R * W,), "int32")), ValueError, "src_page_table: expected 2 dimensions"),
    (ptt(src_page_table=T((R, W), "int32", strides=(2 * W, 1))), ValueError,
     "src_page_table: expected a contiguous"),
    (ptt(src_page_table=T((R - 1, W), "int32")), ValueError,
     "src_page_table: without row_to_batch, row i of input reads row i"),
    (ptt(src_page_table=T((R, W), "int32", device=1)), ValueError, "src_page_table: expected a tensor on cuda:0"),
    (ptt(row_to_batch=T((R,), "int64")), TypeError, "row_to_batch: expected dtype int32"),
    (ptt(row_to_batch=T((R + 1,), "int32")), ValueError, r"row_to_batch: expected size 7 \(rows of input\)"),
    (ptt(lengths=T((R,), "int64")), TypeError, "lengths: expected dtype int32"),
    (ptt(lengths=T((R,), "int32", strides=(2,))), ValueError, "lengths: expected a contiguous"),
    (ptt(lengths=T((R, 1), "int32")), ValueError, "lengths: expected 1 dimensions"),
    (ptt(lengths=T((R,), "int32", device_type="cpu")), ValueError, "lengths: expected a CUDA tensor"),
    (ptt(out=T((R, K), "int64")), TypeError, "out: expected dtype int32"),
    (ptt(out=T((R, K - 1), "int32")), ValueError, r"out: expected size 64 \(k\)"),
    (ptt(k=0), ValueError, "k: expected 1 <= k"),
    (ptt(input=T((R, W), "int8")), TypeError, "input: expected dtype float32"),
    (ptt(rows=2**16, input=T((2**16, 100), "float32"), src_page_table=T((2**16, 100), "int32"),
         lengths=T((2**16,), "int32"), k=2**16), ValueError, r"k: rows \* k must be < 2\*\*32"),
    (rgt(offsets=T((R,), "int64")), TypeError, "offsets: expected dtype int32"),
    (rgt(offsets=T((R - 1,), "int32")), ValueError, "offsets: expected size 7"),
    (rgt(lengths=T((R,), "float32")), TypeError, "lengths: expected dtype int32"),
    (rgt(lengths=T((R,), "int32", device=1)), ValueError, "lengths: expected a tensor on cuda:0"),
    (rgt(out=T((R, K), "float32")), TypeError, "out: expected dtype int32"),
    (rgt(out=T((R, K), "int32", device_type="cpu")), ValueError, "out: expected a CUDA tensor"),
    (rgt(k=2.5), TypeError, "k: expected an int"),
], ids=lambda x: x if isinstance(x, str) else None)
def test_topk_bad_arguments_raise_before_cuda(call, exc, words):
    raises(call, exc, words)


def test_topk_outputs_must_not_overlap_other_operands(h100):
    x = T((R, W), "float32")
    raises(tk(input=x, values=T((R, K), "float32", at=x.ptr + 64)), ValueError,
           "values: the kernel writes it, so it must not overlap input")
    ix = T((R, K), "int32")
    raises(tk(indices=ix, values=T((R, K), "float32", at=ix.ptr + 4)), ValueError,
           "indices: .* must not overlap values")
    st = T((1 << 20,), "uint8")
    raises(tk(row_states_buffer=st, indices=T((R, K), "int32", at=st.ptr)), ValueError,
           "indices: .* must not overlap row_states_buffer")
    raises(tk(input=x, row_states_buffer=T((1 << 20,), "uint8", at=x.ptr + 16)), ValueError,
           "row_states_buffer: .* must not overlap input")
    ln = T((R,), "int32")
    raises(ptt(lengths=ln, out=T((R, K), "int32", at=ln.ptr)), ValueError,
           "out: .* must not overlap lengths")
    raises(rgt(offsets=ln, out=T((R, K), "int32", at=ln.ptr - 4 * R * K + 4)), ValueError,
           "out: .* must not overlap offsets")


def test_topk_rows_wider_than_the_resident_blocks_are_refused(h100):
    """RadixTopKMultiCTA splits a row into ceil(width / chunk) blocks that wait for each
    other; more blocks than SMs would never all be resident (a GPU hang). float32 chunks on
    the stand-in H100: (232448 - 2080) / 4 = 57592 scores; 132 SMs."""
    reaches_cuda(tk(rows=1, width=132 * 57592, k=8, input=T((1, 132 * 57592), "float32")))
    raises(tk(rows=1, width=132 * 57592 + 1, k=8, input=T((1, 132 * 57592 + 1), "float32")),
           ValueError, "input: rows of 7602145 scores need 133 co-resident thread blocks")
    raises(rgt(rows=1, width=2**25, input=T((1, 2**25), "bfloat16"), offsets=T((1,), "int32"),
               lengths=T((1,), "int32")), ValueError, "at most 15204288 bfloat16 scores")


def test_topk_row_states_buffer_must_hold_every_group(h100):
    """width 100000 of float32 takes 2 blocks per row, so min(132 // 2, rows) groups of
    3092 bytes: 7 rows need 21644 bytes."""
    def call(nbytes):
        return tk(width=100000, input=T((R, 100000), "float32"),
                  row_states_buffer=T((nbytes,), "uint8"))
    raises(call(21643), ValueError, "row_states_buffer: this call needs at least 21644 bytes")
    reaches_cuda(call(21644))
    # one block per row: no row states needed at all
    reaches_cuda(tk(row_states_buffer=T((0,), "uint8")))


def test_topk_nothing_to_select_is_a_no_op_without_cuda():
    vals, idx, out = T((0, K), "float32"), T((0, K), "int32"), T((0, K), "int32")
    assert fc.top_k(T((0, W), "float32"), K, values=vals, indices=idx) == (vals, idx)
    assert fc.top_k_ragged_transform(T((0, W), "float32"), T((0,), "int32"),
                                     T((0,), "int32"), K, out=out) is out
    assert fc.top_k_page_table_transform(T((0, W), "float32"), T((0, W), "int32"),
                                         T((0,), "int32"), K, out=out) is out
    with pytest.raises(TypeError, match="stream"):
        fc.top_k(T((0, W), "float32"), K, values=vals, indices=idx, stream="s")


# ----------------------------------------------------------------------------- alignment

@pytest.mark.parametrize("call, words", [
    (lambda: ms(s_b=CAI(fresh() + 2, (S, H))), "s_b: data pointer .* aligned to 4"),
    (lambda: ms(s_merged=CAI(fresh() + 2, (S, H))), "s_merged: data pointer .* aligned to 4"),
    (lambda: msip(s=CAI(fresh() + 6, (S, H))), "s: data pointer .* aligned to 4"),
    (lambda: tk(indices=CAI(fresh() + 2, (R, K), typestr="<i4")),
     "indices: data pointer .* aligned to 4"),
    (lambda: tk(values=CAI(fresh() + 2, (R, K))), "values: data pointer .* aligned to 4"),
    (lambda: ptt(lengths=CAI(fresh() + 2, (R,), typestr="<i4")),
     "lengths: data pointer .* aligned to 4"),
    (lambda: ptt(src_page_table=CAI(fresh() + 1, (R, W), typestr="<i4")),
     "src_page_table: data pointer .* aligned to 4"),
    (lambda: rgt(offsets=CAI(fresh() + 2, (R,), typestr="<i4")),
     "offsets: data pointer .* aligned to 4"),
], ids=lambda x: x if isinstance(x, str) else None)
def test_item_misaligned_pointers_are_refused(call, words, monkeypatch):
    """TensorDesc refuses item-misaligned pointers itself; a CUDA Array Interface producer
    does not, so the APIs check (the kernels load whole items)."""
    fake_cai_driver(monkeypatch)
    raises(call(), ValueError, words)


# ----------------------------------------------------------------------------- read-only

@pytest.mark.parametrize("build, name, value, written", [
    (ms, "v_merged", T((S, H, D)), True),
    (ms, "s_merged", T((S, H), "float32"), True),
    (ms, "v_a", T((S, H, D)), False),
    (ms, "s_b", T((S, H), "float32"), False),
    (msip, "v", T((S, H, D)), True),
    (msip, "s", T((S, H), "float32"), True),
    (msip, "v_other", T((S, H, D)), False),
    (msip, "mask", T((S,), "uint8"), False),
    (mss, "v_merged", T((S, H, D)), True),
    (mss, "v", T((S, 3, H, D)), False),
    (tk, "values", T((R, K), "float32"), True),
    (tk, "indices", T((R, K), "int32"), True),
    (tk, "row_states_buffer", T((1 << 20,), "uint8"), True),
    (tk, "input", T((R, W), "float32"), False),
    (ptt, "out", T((R, K), "int32"), True),
    (ptt, "src_page_table", T((R, W), "int32"), False),
    (rgt, "out", T((R, K), "int32"), True),
    (rgt, "offsets", T((R,), "int32"), False),
])
def test_read_only_tensors_are_refused_where_the_kernel_writes(build, name, value, written,
                                                               h100):
    written_read_only(build(**{name: ReadOnly(value)}), name, written)


# ----------------------------------------------------------------------------- ABI tables

@pytest.mark.parametrize("binding, names, writes", [
    (cascade.MERGE_STATE, "v_a s_a v_b s_b v_merged s_merged", "v_merged s_merged"),
    (cascade.MERGE_STATE_IN_PLACE, "v s v_other s_other mask", "v s"),
    (cascade.MERGE_STATES, "v s v_merged s_merged", "v_merged s_merged"),
    (topk.RADIX_TOPK, "input output_indices output_values maybe_row_states_buffer top_k",
     "output_indices output_values maybe_row_states_buffer"),
    (topk.RADIX_TOPK_PAGE_TABLE_TRANSFORM,
     "input output_page_table src_page_table maybe_row_to_batch lengths "
     "maybe_row_states_buffer top_k", "output_page_table maybe_row_states_buffer"),
    (topk.RADIX_TOPK_RAGGED_TRANSFORM,
     "input output_indices offsets lengths maybe_row_states_buffer top_k",
     "output_indices maybe_row_states_buffer"),
    (topk.CAN_IMPLEMENT_FILTERED_TOPK, "", ""),
])
def test_abi_tables_match_flashinfer_0_6_3(binding, names, writes):
    """Argument order of csrc/flashinfer_cascade_binding.cu and flashinfer_topk_binding.cu;
    "!" on what the kernels write."""
    assert binding.names == tuple(names.split())
    assert binding.writes == tuple(writes.split())
    assert binding.uri == ("cascade" if binding.symbol.startswith("merge") else "topk")
