"""append_paged_kv_cache / append_paged_mla_kv_cache on the GPU, checked bit for bit.

Each case builds a batch on the host: requests with tokens already cached (partially filled
last pages), new tokens to append (some requests append nothing, one starts empty, one has
no pages at all), pages drawn from a shuffled pool (page numbers neither sorted nor
contiguous, some pages unused). The caches start as random "poison" bits; afterwards every
cache element must equal the expected array: the appended rows where the page table says,
the poison bits everywhere else. Appending is a copy, so equality is exact."""

from __future__ import annotations

import numpy as np
import pytest

import flashinfer_cy as fc
from devdata import BITS, download_bits, upload
from gpu_env import require_module

CACHED = np.array([0, 5, 16, 33, 7, 0])     # tokens already in the cache, per request
APPENDED = np.array([3, 1, 20, 0, 9, 0])    # tokens appended now
SPARE_PAGES = 3


@pytest.fixture(autouse=True)
def _page_module():
    require_module("page")


def build_batch(rng, page_size, cached=CACHED, appended=APPENDED):
    """Host page table after allocating pages for the new tokens, and where each appended
    row must land: (page number, slot in page) per row."""
    final = cached + appended
    pages = -(-final // page_size)
    pool = rng.permutation(int(pages.sum()) + SPARE_PAGES)
    kv_indices = pool[:pages.sum()].astype(np.int32)
    kv_indptr = np.concatenate([[0], np.cumsum(pages)]).astype(np.int32)
    last = np.where(pages > 0, final - (pages - 1) * page_size, 0).astype(np.int32)
    append_indptr = np.concatenate([[0], np.cumsum(appended)])
    seq_lens = fc.get_seq_lens(kv_indptr, last, page_size)
    np.testing.assert_array_equal(seq_lens, final)
    batch_indices, positions = fc.get_batch_indices_positions(append_indptr, seq_lens)
    page = kv_indices[kv_indptr[batch_indices] + positions // page_size]
    return dict(num_pages=len(pool), nnz=int(appended.sum()), kv_indices=kv_indices,
                kv_indptr=kv_indptr, kv_last_page_len=last, batch_indices=batch_indices,
                positions=positions, page=page, slot=positions % page_size)


def index_args(batch):
    return [upload(batch[n], "int32") for n in
            ("batch_indices", "positions", "kv_indices", "kv_indptr", "kv_last_page_len")]


def random_bits(rng, shape, dtype):
    info = np.iinfo(BITS[dtype])
    return rng.integers(0, info.max, size=shape, dtype=BITS[dtype], endpoint=True)


def page_shape(layout, page_size, heads, head_dim):
    return (page_size, heads, head_dim) if layout == "NHD" else (heads, page_size, head_dim)


def scatter(cache, rows, batch, layout):
    """Expected cache: ``rows[i]`` ([heads, head_dim]) written at its (page, slot)."""
    out = cache.copy()
    if layout == "NHD":
        out[batch["page"], batch["slot"]] = rows
    else:
        out[batch["page"], :, batch["slot"]] = rows
    return out


def describe(batch, **kw):
    return (f"{kw} page table: indptr {batch['kv_indptr'].tolist()} indices "
            f"{batch['kv_indices'].tolist()} last {batch['kv_last_page_len'].tolist()}")


def assert_bits_equal(got, want, what, ctx):
    bad = np.argwhere(got != want)
    assert bad.size == 0, (f"{what}: {len(bad)} of {want.size} elements differ, first at "
                           f"{tuple(bad[0])} (got {got[tuple(bad[0])]:#x}, want "
                           f"{want[tuple(bad[0])]:#x}); {ctx}")


# ------------------------------------------------------------------------------ MHA

@pytest.mark.parametrize("layout", ["NHD", "HND"])
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float8_e4m3fn"])
@pytest.mark.parametrize("head_dim, heads", [(64, 8), (128, 4), (256, 2), (512, 1)], ids=str)
@pytest.mark.parametrize("page_size", [1, 5, 16])
def test_append_writes_exactly_the_new_rows(layout, dtype, head_dim, heads, page_size, rng):
    batch = build_batch(rng, page_size)
    shape = (batch["num_pages"],) + page_shape(layout, page_size, heads, head_dim)
    k0, v0 = random_bits(rng, shape, dtype), random_bits(rng, shape, dtype)
    rows_k = random_bits(rng, (batch["nnz"], heads, head_dim), dtype)
    rows_v = random_bits(rng, (batch["nnz"], heads, head_dim), dtype)
    k_cache, v_cache = upload(k0, dtype), upload(v0, dtype)
    idx = index_args(batch)
    ret = fc.append_paged_kv_cache(upload(rows_k, dtype), upload(rows_v, dtype), idx[0],
                                   idx[1], k_cache, v_cache, *idx[2:], kv_layout=layout)
    assert ret is None
    ctx = describe(batch, layout=layout, dtype=dtype, heads=heads, head_dim=head_dim)
    assert_bits_equal(download_bits(k_cache, dtype), scatter(k0, rows_k, batch, layout),
                      "paged_k_cache", ctx)
    assert_bits_equal(download_bits(v_cache, dtype), scatter(v0, rows_v, batch, layout),
                      "paged_v_cache", ctx)


@pytest.mark.parametrize("layout", ["NHD", "HND"])
def test_strided_views_of_a_combined_kv_buffer(layout, rng):
    """K and V caches as the two halves of one [pages, 2, ...] buffer (upstream's 5-D
    layout), and keys/values as column halves of one [nnz, 2 * heads, head_dim] tensor:
    every stride honoured, nothing written outside the views."""
    dtype, heads, head_dim, page_size = "bfloat16", 4, 128, 16
    batch = build_batch(rng, page_size)
    inner = page_shape(layout, page_size, heads, head_dim)
    n, item = batch["num_pages"], 2
    kv0 = random_bits(rng, (n, 2) + inner, dtype)
    rows0 = random_bits(rng, (batch["nnz"], 2 * heads, head_dim), dtype)
    kv, rows = upload(kv0, dtype), upload(rows0, dtype)
    page_elems = int(np.prod(inner))
    inner_strides = (inner[1] * head_dim, head_dim, 1)
    strides = (2 * page_elems,) + inner_strides
    k_cache = fc.TensorDesc(kv.ptr, (n,) + inner, dtype, strides=strides, owner=kv)
    v_cache = fc.TensorDesc(kv.ptr + page_elems * item, (n,) + inner, dtype, strides=strides,
                            owner=kv)
    row_strides = (2 * heads * head_dim, head_dim, 1)
    key = fc.TensorDesc(rows.ptr, (batch["nnz"], heads, head_dim), dtype,
                        strides=row_strides, owner=rows)
    value = fc.TensorDesc(rows.ptr + heads * head_dim * item, (batch["nnz"], heads, head_dim),
                          dtype, strides=row_strides, owner=rows)
    idx = index_args(batch)
    fc.append_paged_kv_cache(key, value, idx[0], idx[1], k_cache, v_cache, *idx[2:],
                             kv_layout=layout)
    want = kv0.copy()
    want[:, 0] = scatter(kv0[:, 0], rows0[:, :heads], batch, layout)
    want[:, 1] = scatter(kv0[:, 1], rows0[:, heads:], batch, layout)
    assert_bits_equal(download_bits(kv, dtype), want, "combined kv buffer",
                      describe(batch, layout=layout))


def test_most_heads_one_block_allows(rng):
    """64 heads x 128 dims of float16 is exactly 1024 threads per block, the kernel's limit."""
    dtype, heads, head_dim, page_size = "float16", 64, 128, 4
    batch = build_batch(rng, page_size)
    shape = (batch["num_pages"], page_size, heads, head_dim)
    k0 = random_bits(rng, shape, dtype)
    rows = random_bits(rng, (batch["nnz"], heads, head_dim), dtype)
    k_cache, v_cache = upload(k0, dtype), upload(k0, dtype)
    idx = index_args(batch)
    fc.append_paged_kv_cache(upload(rows, dtype), upload(rows, dtype), idx[0], idx[1],
                             k_cache, v_cache, *idx[2:])
    want = scatter(k0, rows, batch, "NHD")
    assert_bits_equal(download_bits(k_cache, dtype), want, "paged_k_cache", describe(batch))
    assert_bits_equal(download_bits(v_cache, dtype), want, "paged_v_cache", describe(batch))


def test_nothing_to_append_leaves_the_cache_alone(rng):
    batch = build_batch(rng, 8, appended=np.zeros_like(APPENDED))
    shape = (batch["num_pages"], 8, 2, 64)
    k0 = random_bits(rng, shape, "float16")
    k_cache, v_cache = upload(k0, "float16"), upload(k0, "float16")
    empty = fc.DeviceArray.empty((0, 2, 64), "float16")
    idx = index_args(batch)
    fc.append_paged_kv_cache(empty, empty, idx[0], idx[1], k_cache, v_cache, *idx[2:])
    assert_bits_equal(download_bits(k_cache, "float16"), k0, "paged_k_cache", describe(batch))


def test_torch_tensors_on_the_current_stream(rng):
    torch = pytest.importorskip("torch")
    heads, head_dim, page_size = 8, 128, 16
    batch = build_batch(rng, page_size)
    shape = (batch["num_pages"], page_size, heads, head_dim)
    k_cache = torch.randn(shape, device="cuda", dtype=torch.float16)
    v_cache = torch.randn(shape, device="cuda", dtype=torch.float16)
    k0, v0 = k_cache.clone(), v_cache.clone()
    key = torch.randn(batch["nnz"], heads, head_dim, device="cuda", dtype=torch.float16)
    value = torch.randn_like(key)
    idx = {n: torch.tensor(batch[n], device="cuda") for n in
           ("batch_indices", "positions", "kv_indices", "kv_indptr", "kv_last_page_len")}
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        fc.append_paged_kv_cache(key, value, idx["batch_indices"], idx["positions"], k_cache,
                                 v_cache, idx["kv_indices"], idx["kv_indptr"],
                                 idx["kv_last_page_len"])
    s.synchronize()
    page = torch.tensor(batch["page"], device="cuda", dtype=torch.long)
    slot = torch.tensor(batch["slot"], device="cuda", dtype=torch.long)
    k0[page, slot] = key
    v0[page, slot] = value
    assert torch.equal(k_cache, k0), describe(batch)
    assert torch.equal(v_cache, v0), describe(batch)


# ------------------------------------------------------------------------------ MLA

@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float8_e4m3fn"])
@pytest.mark.parametrize("page_size", [1, 7, 64])
def test_mla_append_writes_exactly_the_new_rows(dtype, page_size, rng):
    batch = build_batch(rng, page_size)
    n, nnz = batch["num_pages"], batch["nnz"]
    ckv0 = random_bits(rng, (n, page_size, 512), dtype)
    kpe0 = random_bits(rng, (n, page_size, 64), dtype)
    rows_ckv = random_bits(rng, (nnz, 512), dtype)
    rows_kpe = random_bits(rng, (nnz, 64), dtype)
    ckv, kpe = upload(ckv0, dtype), upload(kpe0, dtype)
    idx = index_args(batch)
    assert fc.append_paged_mla_kv_cache(upload(rows_ckv, dtype), upload(rows_kpe, dtype),
                                        idx[0], idx[1], ckv, kpe, *idx[2:]) is None
    want_ckv, want_kpe = ckv0.copy(), kpe0.copy()
    want_ckv[batch["page"], batch["slot"]] = rows_ckv
    want_kpe[batch["page"], batch["slot"]] = rows_kpe
    ctx = describe(batch, dtype=dtype)
    assert_bits_equal(download_bits(ckv, dtype), want_ckv, "ckv_cache", ctx)
    assert_bits_equal(download_bits(kpe, dtype), want_kpe, "kpe_cache", ctx)


def test_mla_strided_rows(rng):
    """Rows of [nnz, 576] (ckv | kpe side by side, as a fused projection produces them)."""
    dtype, page_size = "bfloat16", 16
    batch = build_batch(rng, page_size)
    n, nnz = batch["num_pages"], batch["nnz"]
    ckv0 = random_bits(rng, (n, page_size, 512), dtype)
    kpe0 = random_bits(rng, (n, page_size, 64), dtype)
    fused0 = random_bits(rng, (nnz, 576), dtype)
    fused = upload(fused0, dtype)
    rows_ckv = fc.TensorDesc(fused.ptr, (nnz, 512), dtype, strides=(576, 1), owner=fused)
    rows_kpe = fc.TensorDesc(fused.ptr + 512 * 2, (nnz, 64), dtype, strides=(576, 1),
                             owner=fused)
    ckv, kpe = upload(ckv0, dtype), upload(kpe0, dtype)
    idx = index_args(batch)
    fc.append_paged_mla_kv_cache(rows_ckv, rows_kpe, idx[0], idx[1], ckv, kpe, *idx[2:])
    want_ckv, want_kpe = ckv0.copy(), kpe0.copy()
    want_ckv[batch["page"], batch["slot"]] = fused0[:, :512]
    want_kpe[batch["page"], batch["slot"]] = fused0[:, 512:]
    assert_bits_equal(download_bits(ckv, dtype), want_ckv, "ckv_cache", describe(batch))
    assert_bits_equal(download_bits(kpe, dtype), want_kpe, "kpe_cache", describe(batch))
