"""Sampling on a FlashInfer 0.7.x module (tools/gpu_session.sh's KDIR_074 pass): the forms
0.6.3 does not have. Skipped on a 0.6.3 module (test_sampling.py covers what both share).

* device seed/offset tensors (int64, length 1 and ``batch``): the same ids as 0.7.x's
  flashinfer-python given the same tensors, and as our own call given the same ints;
* CUDA graphs: a captured sampler reads its seed/offset tensors at replay, so advancing the
  offset on the device between replays gives new draws -- two replays differ, and the draws
  of many replays follow the target distribution (chi-squared, significance 1e-6), where a
  graph captured with scalar seeds replays the same ids every time;
* ``valid``: all True for ordinary distributions, returned with ``return_valid=True``.

Inputs are fresh random data each run (``rng`` prints its seed); outputs are poisoned."""

from __future__ import annotations

import numpy as np
import pytest

import flashinfer_cy as fc
from gpu_env import require_module
from peer import assert_bits_equal, flashinfer_peer
from test_sampling import (STAT_VOCAB, assert_follows, gpu, ids_out, random_probs,
                           stat_distribution)

torch = pytest.importorskip("torch")


@pytest.fixture(autouse=True)
def _release_07():
    require_module("sampling")
    release = fc.load_module("sampling").flashinfer_version or ""
    if not release.startswith("0.7."):
        pytest.skip(f"needs a flashinfer 0.7.x sampling module; this kernel set is {release!r}")


def seed_tensors(seed, offset, n=1):
    return (torch.full((n,), seed, dtype=torch.int64, device="cuda"),
            torch.full((n,), offset, dtype=torch.int64, device="cuda"))


@pytest.mark.parametrize("n", [1, "batch"])
def test_device_seed_offset_match_peer_and_ints(n, rng):
    fi = flashinfer_peer()
    batch, vocab = 33, 32000
    probs = random_probs(rng, batch, vocab)
    seed, offset = int(rng.integers(0, 2**62)), int(rng.integers(0, 2**40)) * 4
    s_t, o_t = seed_tensors(seed, offset, batch if n == "batch" else 1)
    for name, ours, theirs in (
            ("sampling_from_probs", lambda **g: fc.sampling_from_probs(probs, **g),
             lambda **g: fi.sampling.sampling_from_probs(probs, **g)),
            ("top_p", lambda **g: fc.top_p_sampling_from_probs(probs, 0.8, **g),
             lambda **g: fi.sampling.top_p_sampling_from_probs(probs, 0.8, **g)),
            ("top_k", lambda **g: fc.top_k_sampling_from_probs(probs, 40, **g),
             lambda **g: fi.sampling.top_k_sampling_from_probs(probs, 40, **g))):
        out = ids_out(batch)
        got = ours(seed=s_t, offset=o_t, out=out)
        want = theirs(seed=s_t, offset=o_t)
        assert_bits_equal(torch.from_dlpack(got) if not torch.is_tensor(got) else got, want,
                          f"{name} tensor seed/offset")
        if n == 1:  # one seed for all rows: the same draws as the ints
            ints = ids_out(batch)
            ours(seed=seed, offset=offset, out=ints)
            assert_bits_equal(out, ints, f"{name} tensor vs int seed/offset")


def test_return_valid(rng):
    batch = 17
    probs = random_probs(rng, batch, 4096)
    valid = torch.zeros(batch, dtype=torch.bool, device="cuda")
    out, v = fc.top_p_sampling_from_probs(probs, 0.9, seed=1, offset=0, return_valid=True,
                                          out=ids_out(batch), valid=valid)
    assert v is valid and bool(valid.all())


def test_graph_replays_draw_anew_with_device_offsets(rng):
    """Replays advance the device offset (a kernel in the graph's stream before each
    replay): consecutive replays differ, and 40 replays of 1024 rows follow the target."""
    p64, p32 = stat_distribution(rng)
    rows, replays = 1024, 40
    probs = gpu(np.tile(p32, (rows, 1)))
    out = ids_out(rows)
    valid = torch.empty(rows, dtype=torch.bool, device="cuda")
    s_t, o_t = seed_tensors(int(rng.integers(0, 2**62)), 0)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        fc.sampling_from_probs(probs, seed=s_t, offset=o_t, out=out, valid=valid)  # warm up
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g, stream=s):
        fc.sampling_from_probs(probs, seed=s_t, offset=o_t, out=out, valid=valid)
    counts = np.zeros(STAT_VOCAB, np.int64)
    previous = None
    for i in range(replays):
        o_t.add_(4)  # one Philox draw of four 32-bit numbers per row, as upstream reserves
        out.fill_(-7)
        g.replay()
        ids = out.cpu().numpy()
        assert (ids >= 0).all(), f"replay {i}: unwritten ids"
        if previous is not None:
            assert (ids != previous).any(), f"replay {i} drew exactly what replay {i-1} drew"
        previous = ids
        counts += np.bincount(ids, minlength=STAT_VOCAB)
    assert_follows(counts, p64, "graph replays with device offsets")


def test_graph_with_scalar_seeds_replays_the_same_ids(rng):
    """The contrast: scalars are baked into the graph (docs/api.md warns of it)."""
    probs = random_probs(rng, 256, 1000)
    out = ids_out(256)
    valid = torch.empty(256, dtype=torch.bool, device="cuda")
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        fc.sampling_from_probs(probs, seed=5, offset=8, out=out, valid=valid)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g, stream=s):
        fc.sampling_from_probs(probs, seed=5, offset=8, out=out, valid=valid)
    g.replay()
    first = out.clone()
    out.fill_(-7)
    g.replay()
    assert_bits_equal(out, first, "scalar-seeded replays")
