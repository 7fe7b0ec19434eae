"""Row-wise top-k (topk module) on the GPU, against numpy and flashinfer-python.

The k results of a row come in no particular order, and which of several entries equal to
the k-th largest value are chosen is not specified, so a result is checked by what must
hold: indices unique and in range, each value the input's value at its index, and the
values, sorted, equal to numpy's k largest (bit for bit; they are copies). That pins the
index set down exactly except among ties. flashinfer-python on the same module must pass
the same checks and give the same sorted values bit for bit. Outputs are poisoned (NaN,
-7) before each kernel; inputs are fresh random data. Sizes: real vocabularies (151936,
32000, 50258: odd widths load one element at a time), batches 1, 7, 257, k 1, 64, 2048,
on all three of the kernel's paths (FilteredTopK, one-block and multi-block radix)."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

import flashinfer_cy as fc
from flashinfer_cy.kernels import topk as fc_topk
from gpu_env import require_module
from peer import assert_bits_equal, flashinfer_peer

torch = pytest.importorskip("torch")

POISON_INDEX = -7


@pytest.fixture(autouse=True)
def _topk_module():
    require_module("topk")


def peer_topk():
    flashinfer_peer()
    return importlib.import_module("flashinfer.topk")


def scores(rng, shape, dtype):
    """Random scores on the device and their exact float64 values."""
    t = torch.tensor(rng.standard_normal(shape) * 4.0, dtype=getattr(torch, dtype),
                     device="cuda")
    return t, t.double().cpu().numpy()


def check_top_k(x64, k, values, indices, what):
    """``values``/``indices`` ([rows, k], host) are a top-k of each row of ``x64``."""
    rows, width = x64.shape
    assert values.shape == indices.shape == (rows, k), (what, values.shape)
    assert not np.isnan(values).any(), f"{what}: unwritten values"
    assert ((indices >= 0) & (indices < width)).all(), f"{what}: index out of range"
    srt = np.sort(indices, axis=1)
    assert (srt[:, 1:] != srt[:, :-1]).all(), f"{what}: an index chosen twice"
    np.testing.assert_array_equal(values, np.take_along_axis(x64, indices, axis=1),
                                  err_msg=f"{what}: value != input[index]")
    want = -np.sort(-x64, axis=1)[:, :k]
    np.testing.assert_array_equal(-np.sort(-values, axis=1), want,
                                  err_msg=f"{what}: not the k largest")


@pytest.mark.parametrize("dtype, rows, width, k", [
    ("float32", 7, 32000, 64),        # FilteredTopK
    ("float16", 257, 50258, 1),       # one-block radix, odd-ish width (vectors of 2)
    ("bfloat16", 1, 151936, 2048),    # multi-block radix (2 blocks per row)
    ("float32", 7, 151936, 2048),     # multi-block radix (3 blocks per row)
    ("float16", 7, 50257, 64),        # odd width: scalar loads
    ("bfloat16", 257, 32000, 64),
    ("float32", 1, 2048, 2048),       # k == width
], ids=str)
def test_top_k_against_numpy_and_the_peer(dtype, rows, width, k, rng):
    x, x64 = scores(rng, (rows, width), dtype)
    values = torch.full((rows, k), float("nan"), dtype=x.dtype, device="cuda")
    indices = torch.full((rows, k), POISON_INDEX, dtype=torch.int32, device="cuda")
    out = fc.top_k(x, k, values=values, indices=indices)
    assert out[0] is values and out[1] is indices
    v, i = values.double().cpu().numpy(), indices.cpu().numpy()
    check_top_k(x64, k, v, i, "ours")

    pv, pi = peer_topk().top_k(x, k)
    check_top_k(x64, k, pv.double().cpu().numpy(), pi.cpu().numpy(), "flashinfer-python")
    assert_bits_equal(torch.sort(values, dim=1, descending=True)[0],
                      torch.sort(pv, dim=1, descending=True)[0], "sorted top-k values")


def test_top_k_allocates_and_reuses_its_row_states(rng):
    """Outputs omitted: DeviceArrays. Several calls on one stream share the cached row
    states of the multi-block path, which each call must leave zeroed for the next."""
    for _ in range(3):
        x, x64 = scores(rng, (5, 151936), "float32")
        values, indices = fc.topk(x, 300)
        assert isinstance(values, fc.DeviceArray) and values.dtype == "float32"
        assert indices.dtype == "int32" and indices.shape == (5, 300)
        check_top_k(x64, 300, values.numpy().astype(np.float64), indices.numpy(), "cached")


def test_top_k_with_a_caller_row_states_buffer(rng):
    states = fc.DeviceArray.zeros((fc_topk.ROW_STATES_MIN_BYTES,), "uint8")
    for _ in range(2):
        x, x64 = scores(rng, (3, 151936), "bfloat16")
        values, indices = fc.top_k(x, 64, row_states_buffer=states)
        check_top_k(x64, 64, torch.from_dlpack(values).double().cpu().numpy(),
                    indices.numpy(), "caller's row states")


def test_can_implement_filtered_topk_matches_the_peer():
    assert fc.can_implement_filtered_topk() == peer_topk().can_implement_filtered_topk()


# ----------------------------------------------------------------------------- transforms

def lengths_for(rng, rows, max_len, k):
    """Row lengths covering max_len (first: a one-row batch selects), 0, exactly k, below
    and above k."""
    lens = rng.integers(0, max_len + 1, rows)
    for i, n in enumerate([max_len, 0, min(k, max_len), max(0, min(k - 1, max_len)),
                           min(k + 1, max_len)][:rows]):
        lens[i] = n
    return lens.astype(np.int32)


def check_selected(x64, lens, k, cols, what):
    """``cols`` [rows, k] (host) are, per row, the columns of a top-k of ``x64[i, :len]``
    (any order), or, for ``len <= k``, ``0..len-1`` in order followed by -1."""
    for i, n in enumerate(lens):
        row = cols[i]
        if n <= k:
            np.testing.assert_array_equal(row[:n], np.arange(n), err_msg=f"{what} row {i}")
            assert (row[n:] == -1).all(), f"{what} row {i}: padding is not -1"
            continue
        assert ((row >= 0) & (row < n)).all(), f"{what} row {i}: column out of range"
        assert len(set(row.tolist())) == k, f"{what} row {i}: a column chosen twice"
        np.testing.assert_array_equal(np.sort(x64[i, row])[::-1],
                                      -np.sort(-x64[i, :n])[:k],
                                      err_msg=f"{what} row {i}: not the k largest")


def page_table_columns(out, table, batch_of_row):
    """Undo the page-table mapping (table rows are permutations: entries are unique)."""
    cols = np.full(out.shape, -1, dtype=np.int64)
    for i in range(out.shape[0]):
        where = {int(e): c for c, e in enumerate(table[batch_of_row[i]])}
        cols[i] = [where[int(e)] if e != -1 else -1 for e in out[i]]  # KeyError: not in it
    return cols


TRANSFORM_CASES = [
    ("float32", 7, 4096, 256),       # FilteredTopK
    ("bfloat16", 257, 2000, 64),
    ("float32", 1, 151936, 2048),    # multi-block radix
    ("float16", 3, 100, 128),        # k > max_len: every row is padding
    ("float16", 7, 32000, 1),
]


def topk_release():
    """The FlashInfer release of the topk module the tests run on (the kernel dir's)."""
    from flashinfer_cy._core import runtime
    from flashinfer_cy.abi.match import abi_version

    return abi_version(runtime.load_module("topk").flashinfer_version)


@pytest.mark.parametrize("dtype, rows, max_len, k", TRANSFORM_CASES, ids=str)
@pytest.mark.parametrize("mapped", [False, True], ids=["row=batch", "row_to_batch"])
def test_page_table_transform(dtype, rows, max_len, k, mapped, rng):
    x, x64 = scores(rng, (rows, max_len), dtype)
    lens = lengths_for(rng, rows, max_len, k)
    batch = rows + 2
    table = np.stack([rng.permutation(max_len * 4)[:max_len] for _ in range(batch)])
    batch_of_row = rng.integers(0, batch, rows) if mapped else np.arange(rows)
    t_table = torch.tensor(table, dtype=torch.int32, device="cuda")
    t_lens = torch.tensor(lens, device="cuda")
    r2b = torch.tensor(batch_of_row.astype(np.int32), device="cuda") if mapped else None
    out = torch.full((rows, k), POISON_INDEX, dtype=torch.int32, device="cuda")
    if not mapped and topk_release() != "0.6.3":
        # 0.7.4's export takes exactly one table row per input row without row_to_batch
        # (0.6.3 reads the first rows of a taller table): refused before the call.
        with pytest.raises(ValueError, match=r"src_page_table: .* exactly one page-table row"):
            fc.top_k_page_table_transform(x, t_table, t_lens, k, None, out=out)
        assert (out == POISON_INDEX).all()
        table, t_table = table[:rows], t_table[:rows]
    assert fc.top_k_page_table_transform(x, t_table, t_lens, k, r2b, out=out) is out
    got = out.cpu().numpy()
    check_selected(x64, lens, k, page_table_columns(got, table, batch_of_row), "ours")

    peer = peer_topk().top_k_page_table_transform(x, t_table, t_lens, k, r2b).cpu().numpy()
    check_selected(x64, lens, k, page_table_columns(peer, table, batch_of_row), "peer")
    if dtype == "float32":  # float32 normals: no ties, one answer
        np.testing.assert_array_equal(np.sort(got, axis=1), np.sort(peer, axis=1))


@pytest.mark.parametrize("dtype, rows, max_len, k", TRANSFORM_CASES, ids=str)
def test_ragged_transform(dtype, rows, max_len, k, rng):
    x, x64 = scores(rng, (rows, max_len), dtype)
    lens = lengths_for(rng, rows, max_len, k)
    offsets = np.cumsum(np.concatenate([[0], lens[:-1]])).astype(np.int32) + 1000
    t_off, t_lens = torch.tensor(offsets, device="cuda"), torch.tensor(lens, device="cuda")
    out = fc.top_k_ragged_transform(x, t_off, t_lens, k)
    assert isinstance(out, fc.DeviceArray) and out.dtype == "int32"
    got = out.numpy().astype(np.int64)
    cols = np.where(got == -1, -1, got - offsets[:, None])
    check_selected(x64, lens, k, cols, "ours")

    peer = peer_topk().top_k_ragged_transform(x, t_off, t_lens, k).cpu().numpy()
    pcols = np.where(peer == -1, -1, peer.astype(np.int64) - offsets[:, None])
    check_selected(x64, lens, k, pcols, "peer")
    if dtype == "float32":  # no ties: one answer
        np.testing.assert_array_equal(np.sort(got, axis=1), np.sort(peer, axis=1))


def test_ragged_transform_poisoned_output_is_fully_written(rng):
    x, x64 = scores(rng, (4, 3000), "float16")
    lens = np.array([3000, 10, 0, 64], dtype=np.int32)
    out = torch.full((4, 64), POISON_INDEX, dtype=torch.int32, device="cuda")
    fc.top_k_ragged_transform(x, torch.zeros(4, dtype=torch.int32, device="cuda"),
                              torch.tensor(lens, device="cuda"), 64, out=out)
    got = out.cpu().numpy()
    assert (got != POISON_INDEX).all()
    check_selected(x64, lens, 64, np.where(got == -1, -1, got), "poisoned")
