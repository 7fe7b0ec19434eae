"""Argument checking of the page-append and gdn_prefill APIs, on a machine without a GPU.

Tensors are ``TensorDesc`` descriptors of fake CUDA pointers: validation reads only their
shapes, dtypes, strides, devices and addresses. Every bad input must raise the named error
before any kernel module is loaded or CUDA is touched (the ``no_cuda`` fixture turns either
into a ``TouchedCuda`` failure); every good input must get as far as that point. Also: the
host-side index helpers and the ABI tables against FlashInfer 0.6.3's bindings."""

from __future__ import annotations

import numpy as np
import pytest

import flashinfer_cy as fc
from cuda_guard import no_cuda, raises, reaches_cuda, written_read_only
from producers import ReadOnly
from flashinfer_cy.kernels import gdn, page

PTR = 0x7F0000000000  # 64-byte aligned, never dereferenced


@pytest.fixture(autouse=True)
def _no_cuda(monkeypatch):
    no_cuda(monkeypatch)


def T(shape, dtype="float16", strides=None, offset=0, device=0, device_type="cuda"):
    return fc.TensorDesc(PTR + offset, shape, dtype, strides=strides, device=device,
                         device_type=device_type)


# ----------------------------------------------------------------------------- append (MHA)

NNZ, H, HD, P, PAGES, B = 5, 4, 128, 16, 10, 2


def mha_args(**over):
    """Valid NHD arguments, with keyword overrides."""
    args = dict(append_key=T((NNZ, H, HD)), append_value=T((NNZ, H, HD)),
                batch_indices=T((NNZ,), "int32"), positions=T((NNZ,), "int32"),
                paged_k_cache=T((PAGES, P, H, HD)), paged_v_cache=T((PAGES, P, H, HD)),
                kv_indices=T((7,), "int32"), kv_indptr=T((B + 1,), "int32"),
                kv_last_page_len=T((B,), "int32"))
    args.update(over)
    return args


def append(**over):
    layout = over.pop("kv_layout", "NHD")
    return lambda: fc.append_paged_kv_cache(**mha_args(**over), kv_layout=layout)


@pytest.mark.parametrize("over", [
    {},
    dict(kv_layout="HND", paged_k_cache=T((PAGES, H, P, HD)), paged_v_cache=T((PAGES, H, P, HD))),
    dict(kv_layout="hnd", paged_k_cache=T((PAGES, H, P, HD)), paged_v_cache=T((PAGES, H, P, HD))),
    {n: T(s, "bfloat16") for n, s in (("append_key", (NNZ, H, HD)), ("append_value", (NNZ, H, HD)),
                                      ("paged_k_cache", (PAGES, P, H, HD)),
                                      ("paged_v_cache", (PAGES, P, H, HD)))},
    {n: T(s, "float8_e4m3fn") for n, s in (("append_key", (NNZ, H, HD)),
                                           ("append_value", (NNZ, H, HD)),
                                           ("paged_k_cache", (PAGES, P, H, HD)),
                                           ("paged_v_cache", (PAGES, P, H, HD)))},
    # keys/values as column halves of [nnz, 2H, hd]; caches as halves of [pages, 2, P, H, hd]
    dict(append_key=T((NNZ, H, HD), strides=(2 * H * HD, HD, 1)),
         append_value=T((NNZ, H, HD), strides=(2 * H * HD, HD, 1), offset=H * HD * 2),
         paged_k_cache=T((PAGES, P, H, HD), strides=(2 * P * H * HD, H * HD, HD, 1)),
         paged_v_cache=T((PAGES, P, H, HD), strides=(2 * P * H * HD, H * HD, HD, 1),
                         offset=P * H * HD * 2)),
    # 64 heads x 128 dims of float16: exactly the 1024 threads a block may have
    dict(append_key=T((NNZ, 64, HD)), append_value=T((NNZ, 64, HD)),
         paged_k_cache=T((PAGES, P, 64, HD)), paged_v_cache=T((PAGES, P, 64, HD))),
], ids=["nhd", "hnd", "hnd-lowercase", "bf16", "fp8", "strided-views", "1024-threads"])
def test_append_valid_arguments_reach_the_kernel(over):
    reaches_cuda(append(**over))


@pytest.mark.parametrize("over, exc, words", [
    (dict(paged_k_cache=T((PAGES, P, H, HD), "float32"), paged_v_cache=T((PAGES, P, H, HD), "float32")),
     TypeError, "paged_k_cache: expected dtype float16, bfloat16"),
    (dict(append_key=T((NNZ, H, HD), "bfloat16")), TypeError,
     r"append_key: expected dtype float16 \(same as paged_k_cache\)"),
    (dict(append_value=T((NNZ, H, HD), "float32")), TypeError, "append_value: expected dtype"),
    (dict(paged_v_cache=T((PAGES, P, H, HD), "bfloat16")), TypeError, "paged_v_cache: expected dtype"),
    (dict(paged_k_cache=T((PAGES, P, H * HD))), ValueError, "paged_k_cache: expected 4 dimensions"),
    (dict(paged_k_cache=T((PAGES, P, H, 96)), paged_v_cache=T((PAGES, P, H, 96))), ValueError,
     "head_dim .* must be one of"),
    (dict(append_key=T((NNZ, H + 1, HD))), ValueError, "append_key: expected size 4 .num_kv_heads"),
    (dict(append_key=T((NNZ, H, 64))), ValueError, "append_key: expected size 128 .head_dim"),
    (dict(kv_layout="HND"), ValueError, "append_key: expected size 16 .num_kv_heads"),
    (dict(append_value=T((NNZ + 1, H, HD))), ValueError, "append_value: expected shape"),
    (dict(paged_v_cache=T((PAGES + 1, P, H, HD))), ValueError, "paged_v_cache: expected shape"),
    (dict(paged_v_cache=T((PAGES, P, H, HD), strides=(2 * P * H * HD, H * HD, HD, 1))),
     ValueError, "paged_v_cache: strides must equal paged_k_cache's"),
    (dict(append_key=T((NNZ, H, HD), strides=(H * HD * 2, HD * 2, 2))), ValueError,
     "append_key: the last dimension must be contiguous"),
    (dict(paged_k_cache=T((PAGES, P, H, HD), strides=(P * H * HD, H * HD, 1, H)),
          paged_v_cache=T((PAGES, P, H, HD), strides=(P * H * HD, H * HD, 1, H))),
     ValueError, "paged_k_cache: the last dimension must be contiguous"),
    (dict(append_key=T((NNZ, H, HD), offset=2)), ValueError, "append_key: data pointer .* aligned to 16"),
    (dict(paged_k_cache=T((PAGES, P, H, HD), offset=8), paged_v_cache=T((PAGES, P, H, HD), offset=8)),
     ValueError, "paged_k_cache: data pointer"),
    (dict(append_value=T((NNZ, H, HD), strides=(H * HD + 4, HD, 1))), ValueError,
     "append_value: stride 516 of dimension 0 must be a non-negative multiple of 8"),
    (dict(append_key=T((NNZ, H, HD), strides=(-H * HD, HD, 1))), ValueError,
     "append_key: stride -512 of dimension 0"),
    (dict(paged_k_cache=T((PAGES, P, H, HD), strides=(2**32, H * HD, HD, 1)),
          paged_v_cache=T((PAGES, P, H, HD), strides=(2**32, H * HD, HD, 1))),
     ValueError, "paged_k_cache: strides must be < 2..32"),
    (dict(append_key=T((NNZ, 65, HD)), append_value=T((NNZ, 65, HD)),
          paged_k_cache=T((PAGES, P, 65, HD)), paged_v_cache=T((PAGES, P, 65, HD))),
     ValueError, "65 kv heads of head_dim 128 need 1040 threads"),
    (dict(paged_k_cache=T((PAGES, 0, H, HD)), paged_v_cache=T((PAGES, 0, H, HD))), ValueError,
     "num_kv_heads and page_size must be > 0"),
    (dict(batch_indices=T((NNZ,), "int64")), TypeError, "batch_indices: expected dtype int32"),
    (dict(positions=T((NNZ - 1,), "int32")), ValueError,
     r"positions: expected size 5 \(nnz, rows of append_key\) in dimension 0"),
    (dict(batch_indices=T((NNZ + 1,), "int32")), ValueError,
     r"batch_indices: expected size 5 \(nnz, rows of append_key\)"),
    (dict(positions=T((NNZ, 1), "int32")), ValueError, "positions: expected 1 dimensions"),
    (dict(kv_indptr=T((B,), "int32")), ValueError, r"kv_indptr: expected size 3 \(batch \+ 1"),
    (dict(kv_last_page_len=T((B,), "float32")), TypeError, "kv_last_page_len: expected dtype int32"),
    (dict(kv_indices=T((7,), "int32", strides=(2,))), ValueError,
     "kv_indices: expected a contiguous"),
    (dict(kv_indices=np.zeros(7, np.int32)), ValueError, "kv_indices: expected a CUDA tensor"),
    (dict(kv_indptr=T((B + 1,), "int32", device=1)), ValueError,
     "kv_indptr: expected a tensor on cuda:0"),
    (dict(append_value=T((NNZ, H, HD), device=1)), ValueError, "append_value: expected a tensor on cuda:0"),
    (dict(kv_indices=T((2**28,), "int32")), ValueError, "exceed the kernel's 32-bit slot arithmetic"),
    (dict(kv_indices=T((0,), "int32")), ValueError,
     "append_key: 5 rows to append but the page table is empty"),
    (dict(kv_last_page_len=T((0,), "int32"), kv_indptr=T((1,), "int32")), ValueError,
     "page table is empty"),
    (dict(kv_layout="NDH"), ValueError, "kv_layout: expected 'NHD' or 'HND'"),
    (dict(kv_layout=0), TypeError, "kv_layout: expected 'NHD' or 'HND'"),
    (dict(append_key=None), TypeError, "append_key: expected a tensor, got None"),
])
def test_append_bad_arguments_raise_before_cuda(over, exc, words):
    raises(append(**over), exc, words)


def test_append_nothing_is_a_no_op_without_cuda():
    empty = T((0, H, HD))
    assert fc.append_paged_kv_cache(**mha_args(append_key=empty, append_value=empty,
                                               batch_indices=T((0,), "int32"),
                                               positions=T((0,), "int32"))) is None


# ----------------------------------------------------------------------------- append (MLA)

def mla(**over):
    args = dict(append_ckv=T((NNZ, 512)), append_kpe=T((NNZ, 64)),
                batch_indices=T((NNZ,), "int32"), positions=T((NNZ,), "int32"),
                ckv_cache=T((PAGES, P, 512)), kpe_cache=T((PAGES, P, 64)),
                kv_indices=T((7,), "int32"), kv_indptr=T((B + 1,), "int32"),
                kv_last_page_len=T((B,), "int32"))
    args.update(over)
    return lambda: fc.append_paged_mla_kv_cache(**args)


@pytest.mark.parametrize("over", [
    {},
    dict(append_ckv=T((NNZ, 512), strides=(576, 1)), append_kpe=T((NNZ, 64), strides=(576, 1), offset=1024)),
    {n: T(s, "bfloat16") for n, s in (("append_ckv", (NNZ, 512)), ("append_kpe", (NNZ, 64)),
                                      ("ckv_cache", (PAGES, P, 512)), ("kpe_cache", (PAGES, P, 64)))},
], ids=["f16", "fused-rows", "bf16"])
def test_mla_valid_arguments_reach_the_kernel(over):
    reaches_cuda(mla(**over))


@pytest.mark.parametrize("over, exc, words", [
    (dict(ckv_cache=T((PAGES, P, 256))), ValueError, "ckv_cache: expected size 512"),
    (dict(kpe_cache=T((PAGES, P, 32))), ValueError, "kpe_cache: expected size 64"),
    (dict(kpe_cache=T((PAGES + 1, P, 64))), ValueError, "kpe_cache: expected size 10 .num_pages"),
    (dict(kpe_cache=T((PAGES, P + 1, 64))), ValueError, "kpe_cache: expected size 16 .page_size"),
    (dict(append_ckv=T((NNZ, 256))), ValueError, "append_ckv: expected size 512"),
    (dict(append_kpe=T((NNZ + 1, 64))), ValueError, "append_kpe: expected size 5"),
    (dict(append_kpe=T((NNZ, 64), "bfloat16")), TypeError, "append_kpe: expected dtype float16"),
    (dict(kpe_cache=T((PAGES, P, 64), device=2)), ValueError, "kpe_cache: expected a tensor on cuda:0"),
    (dict(append_ckv=T((NNZ, 512), offset=2)), ValueError, "append_ckv: data pointer .* aligned to 4"),
    (dict(append_ckv=T((NNZ, 512), strides=(513, 1))), ValueError, "append_ckv: stride 513"),
    (dict(ckv_cache=T((PAGES, P, 512), "float32"), kpe_cache=T((PAGES, P, 64), "float32")),
     TypeError, "ckv_cache: expected dtype"),
    (dict(positions=T((NNZ,), "int64")), TypeError, "positions: expected dtype int32"),
    (dict(positions=T((NNZ + 2,), "int32")), ValueError,
     r"positions: expected size 5 \(nnz, rows of append_ckv\)"),
])
def test_mla_bad_arguments_raise_before_cuda(over, exc, words):
    raises(mla(**over), exc, words)


# ----------------------------------------------------------------------------- gdn_prefill

N, SEQS = 20, 3


def gdn_call(heads=(4, 4, 4), dtype="float16", **over):
    hq, hk, hv = heads
    h = max(hq, hv)
    args = dict(q=T((N, hq, 128), dtype), k=T((N, hk, 128), dtype), v=T((N, hv, 128), dtype),
                cu_seqlens=T((SEQS + 1,), "int64"))
    full = dict(initial_state=T((SEQS, h, 128, 128), "float32"), alpha=T((N, h), "float32"),
                beta=T((N, h), "float32"), output=T((N, h, 128), dtype),
                output_state=T((SEQS, h, 128, 128), "float32"), workspace=T((1 << 20,), "uint8"))
    for name in list(over):
        if name in full and over[name] == "ok":
            over[name] = full[name]
    args.update(over)
    q, k, v, cu = (args.pop(n) for n in ("q", "k", "v", "cu_seqlens"))
    return lambda: fc.gdn_prefill(q, k, v, cu, **args)


ALL = dict(initial_state="ok", alpha="ok", beta="ok", output="ok", output_state="ok",
           workspace="ok")


@pytest.mark.parametrize("heads", [(4, 4, 4), (6, 2, 2), (8, 1, 1), (2, 2, 4), (1, 1, 8)],
                         ids=["mha", "gqa3", "gqa8", "gva2", "gva8"])
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("options", ["none", "all"])
def test_gdn_valid_arguments_reach_the_device_check(heads, dtype, options):
    """Validation passes; the next step asks CUDA for the compute capability."""
    reaches_cuda(gdn_call(heads, dtype, **(dict(ALL) if options == "all" else {})))


H4 = (4, 4, 4)


@pytest.mark.parametrize("heads, over, exc, words", [
    (H4, dict(q=T((N, 4, 128), "float32")), TypeError, "q: expected dtype float16 or bfloat16"),
    (H4, dict(k=T((N, 4, 128), "bfloat16")), TypeError, r"k: expected dtype float16 \(same as q\)"),
    (H4, dict(q=T((N, 4, 64)), k=T((N, 4, 64)), v=T((N, 4, 64))), ValueError,
     "q: expected size 128 .head_size"),
    (H4, dict(v=T((N + 1, 4, 128))), ValueError, "v: expected size 20 .packed tokens"),
    (H4, dict(q=T((N, 4 * 128))), ValueError, "q: expected 3 dimensions"),
    (H4, dict(q=T((N, 4, 128), strides=(4 * 128 * 2, 128, 1))), ValueError,
     "q: expected a contiguous"),
    (H4, dict(k=T((N, 4, 128), offset=8)), ValueError, "k: data pointer .* aligned to 16"),
    (H4, dict(q=T((N, 4, 128), device_type="cpu")), ValueError, "q: expected a CUDA tensor"),
    (H4, dict(v=T((N, 4, 128), device=1)), ValueError, "v: expected a tensor on cuda:0"),
    ((4, 3, 3), {}, ValueError, r"q_heads >= v_heads \(GQA\) needs .* got q/k/v heads 4/3/3"),
    ((4, 2, 1), {}, ValueError, "GQA.* got q/k/v heads 4/2/1"),
    ((2, 1, 4), {}, ValueError, r"v_heads > q_heads \(GVA\) needs .* 2/1/4"),
    ((2, 2, 5), {}, ValueError, "GVA.* 2/2/5"),
    ((0, 0, 0), {}, ValueError, "q: the head count must be > 0"),
    (H4, dict(cu_seqlens=T((SEQS + 1,), "int32")), TypeError, "cu_seqlens: expected dtype int64"),
    (H4, dict(cu_seqlens=T((SEQS + 1, 1), "int64")), ValueError, "cu_seqlens: expected 1 dim"),
    (H4, dict(cu_seqlens=T((0,), "int64")), ValueError, "cu_seqlens: expected num_seqs"),
    (H4, dict(cu_seqlens=T((1,), "int64")), ValueError, "no sequences .* q has 20 tokens"),
    (H4, dict(cu_seqlens=np.zeros(4, np.int64)), ValueError, "cu_seqlens: expected a CUDA tensor"),
    ((2, 2, 4), dict(alpha=T((N, 2), "float32")), ValueError, "alpha: expected size 4"),
    (H4, dict(alpha=T((N, 4), "float16")), TypeError, "alpha: expected dtype float32"),
    (H4, dict(beta=T((N - 1, 4), "float32")), ValueError, "beta: expected size 20"),
    (H4, dict(beta=T((N, 4), "float32", strides=(1, N))), ValueError, "beta: expected a contig"),
    (H4, dict(initial_state=T((SEQS, 4, 128, 128), "bfloat16")), TypeError,
     "initial_state: expected dtype float32"),
    (H4, dict(initial_state=T((SEQS + 1, 4, 128, 128), "float32")), ValueError,
     "initial_state: expected size 3"),
    ((6, 2, 2), dict(initial_state=T((SEQS, 2, 128, 128), "float32")), ValueError,
     "initial_state: expected size 6"),
    (H4, dict(output=T((N, 4, 128), "bfloat16")), TypeError, "output: expected dtype float16"),
    ((2, 2, 4), dict(output=T((N, 2, 128))), ValueError, r"output: expected size 4 \(max"),
    (H4, dict(output_state=T((SEQS, 4, 128, 64), "float32")), ValueError, "output_state: expected size 128"),
    (H4, dict(output_state=T((SEQS, 4, 128, 128), "float32", offset=4)), ValueError,
     "output_state: data pointer"),
    (H4, dict(workspace=T((4096,), "float32")), TypeError, "workspace: expected dtype uint8"),
    (H4, dict(workspace=T((64, 64), "uint8")), ValueError, "workspace: expected 1 dimensions"),
    (H4, dict(workspace=T((4096,), "uint8", offset=16)), ValueError, "workspace: .* aligned to 64"),
    (H4, dict(q=T((0, 4, 128)), k=T((0, 4, 128)), v=T((0, 4, 128))), ValueError,
     "3 sequences but no tokens"),
    (H4, dict(scale=float("nan")), ValueError, "scale: expected a finite number"),
    (H4, dict(scale="1"), TypeError, "scale: expected a float"),
    (H4, dict(scale=True), TypeError, "scale: expected a float"),
    (H4, dict(stream="s"), TypeError, "stream"),
])
def test_gdn_bad_arguments_raise_before_cuda(heads, over, exc, words):
    raises(gdn_call(heads, **over), exc, words)


def test_gdn_positional_options_are_refused():
    with pytest.raises(TypeError):
        fc.gdn_prefill(T((N, 4, 128)), T((N, 4, 128)), T((N, 4, 128)),
                       T((SEQS + 1,), "int64"), None)


# ----------------------------------------------------------------------------- read-only

@pytest.mark.parametrize("build, name, value, written", [
    (append, "paged_k_cache", T((PAGES, P, H, HD)), True),
    (append, "paged_v_cache", T((PAGES, P, H, HD)), True),
    (append, "append_key", T((NNZ, H, HD)), False),
    (append, "kv_indices", T((7,), "int32"), False),
    (mla, "ckv_cache", T((PAGES, P, 512)), True),
    (mla, "kpe_cache", T((PAGES, P, 64)), True),
    (mla, "append_kpe", T((NNZ, 64)), False),
    (gdn_call, "output", T((N, 4, 128)), True),
    (gdn_call, "output_state", T((SEQS, 4, 128, 128), "float32"), True),
    (gdn_call, "workspace", T((1 << 20,), "uint8"), True),  # the kernel's TMA descriptors
    (gdn_call, "q", T((N, 4, 128)), False),
    (gdn_call, "initial_state", T((SEQS, 4, 128, 128), "float32"), False),
])
def test_read_only_tensors_are_refused_where_the_kernel_writes(build, name, value, written):
    """A tensor exported read-only (a JAX array, a numpy array with writeable=False) is
    fine as an input; where the kernel writes it is refused, naming the argument."""
    written_read_only(build(**{name: ReadOnly(value)}), name, written)


# ----------------------------------------------------------------------------- host helpers

def test_batch_indices_positions_match_upstream_example():
    bi, pos = fc.get_batch_indices_positions([0, 1, 3, 6, 10], [5, 5, 5, 5])
    assert bi.dtype == np.int32 and pos.dtype == np.int32
    np.testing.assert_array_equal(bi, [0, 1, 1, 2, 2, 2, 3, 3, 3, 3])
    np.testing.assert_array_equal(pos, [4, 3, 4, 2, 3, 4, 1, 2, 3, 4])


def test_seq_lens_from_a_page_table():
    # pages [3, 1, 0, 2], last page fill [13, 8, 0, 6], page size 16
    lens = fc.get_seq_lens([0, 3, 4, 4, 6], [13, 8, 0, 6], 16)
    np.testing.assert_array_equal(lens, [45, 8, 0, 22])
    assert lens.dtype == np.int32


def test_upstream_docstring_batch_round_trip():
    lens = fc.get_seq_lens([0, 3, 4, 6, 8], [13, 8, 9, 6], 16)
    bi, pos = fc.get_batch_indices_positions([0, 45, 53, 78, 100], lens, 100)
    np.testing.assert_array_equal(np.bincount(bi), [45, 8, 25, 22])
    np.testing.assert_array_equal(pos[:45], np.arange(45))
    np.testing.assert_array_equal(pos[45:53], np.arange(8))


@pytest.mark.parametrize("call, exc, words", [
    (lambda: fc.get_batch_indices_positions([0, 2], [1]), ValueError, "request 0 appends 2"),
    (lambda: fc.get_batch_indices_positions([1, 2], [5]), ValueError, "must start with 0"),
    (lambda: fc.get_batch_indices_positions([0, 3, 2], [5, 5]), ValueError, "non-decreasing"),
    (lambda: fc.get_batch_indices_positions([0, 2], [5, 5]), ValueError, "expected 3 entries"),
    (lambda: fc.get_batch_indices_positions([0, 2], [5], nnz=4), ValueError, "nnz: expected"),
    (lambda: fc.get_batch_indices_positions([0.0, 2.0], [5]), TypeError, "integer array"),
    (lambda: fc.get_seq_lens([0, 1], [1, 1], 16), ValueError, "expected 3 entries"),
    (lambda: fc.get_seq_lens([0, 2, 1], [1, 1], 16), ValueError, "non-decreasing"),
    (lambda: fc.get_seq_lens([0, 1], [1], 0), ValueError, "page_size"),
    # int32 limits: refused before anything of that size is allocated, never wrapped
    (lambda: fc.get_batch_indices_positions([0, 2**40], [2**40]), ValueError, "int32"),
    (lambda: fc.get_batch_indices_positions([0, 2], [2**31]), ValueError, "int32"),
    (lambda: fc.get_seq_lens([0, 2**27], [16], 16), ValueError, "int32"),
])
def test_host_helpers_reject_inconsistent_tables(call, exc, words):
    raises(call, exc, words)


# ----------------------------------------------------------------------------- ABI tables

@pytest.mark.parametrize("binding, names", [
    (page.APPEND_PAGED_KV_CACHE,
     "append_key append_value batch_indices positions paged_k_cache paged_v_cache kv_indices "
     "kv_indptr kv_last_page_len layout"),
    (page.APPEND_PAGED_MLA_KV_CACHE,
     "append_ckv append_kpe batch_indices positions ckv_cache kpe_cache kv_indices kv_indptr "
     "kv_last_page_len"),
    (gdn.GDN_PREFILL,
     "output output_state q k v cu_seqlens input_state alpha beta scale workspace_buffer"),
])
def test_abi_tables_match_flashinfer_0_6_3(binding, names):
    """Argument order of csrc/flashinfer_page_binding.cu and csrc/gdn_prefill_launcher.cu."""
    assert binding.names == tuple(names.split())
    assert binding.nargs == len(names.split())


@pytest.mark.parametrize("binding, writes", [
    (page.APPEND_PAGED_KV_CACHE, ("paged_k_cache", "paged_v_cache")),
    (page.APPEND_PAGED_MLA_KV_CACHE, ("ckv_cache", "kpe_cache")),
    (gdn.GDN_PREFILL, ("output", "output_state", "workspace_buffer")),
])
def test_abi_tables_mark_what_the_kernels_write(binding, writes):
    assert binding.writes == writes
