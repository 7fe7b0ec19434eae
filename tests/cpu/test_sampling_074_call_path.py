"""The sampling and top-k families on a flashinfer 0.7.4 module, end to end against CPU
stand-ins with 0.7.4's exact argument lists (fake_sampling_074.cc): the 0.7.4 line is
picked by the module's release, and the export receives the seed/offset (scalars, drawn
from a generator the way 0.7.4's flashinfer-python draws them, or device tensors), valid,
deterministic and the top-k options the layouts state; a prepared launch's
set(philox_seed=, philox_offset=) reaches seed_val / offset_val.

The stand-ins are registered under the real URIs, so each scenario runs in a child
interpreter (a table Binding keeps the Function it first loaded for the whole process).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from testmod_build import HERE, compile_module


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory):
    return compile_module(HERE / "fake_sampling_074.cc",
                          tmp_path_factory.mktemp("fake_sampling_074") / "sampling074.so")


@pytest.mark.parametrize("scenario", ["samplers_0_7_4", "prepared_0_7_4", "chain_0_7_4",
                                      "topk_0_7_4", "page_table_rows_0_7_4",
                                      "refused_on_0_6_3"])
def test_call_path_on_0_7_4(scenario, stand_in):
    res = subprocess.run([sys.executable, "-c", f"import test_sampling_074_call_path as t; "
                          f"t.child_{scenario}({str(stand_in)!r}); print('ok')"],
                         capture_output=True, text=True, timeout=120, cwd=HERE)
    assert res.returncode == 0 and res.stdout.strip().endswith("ok"), \
        f"scenario {scenario} failed:\n{res.stdout}\n{res.stderr}"


def _setup(so, uri, version):
    import flashinfer_cy as fc
    from flashinfer_cy._core import runtime

    runtime._load_cudart = lambda: None  # no CUDA runtime: every output is passed in
    return fc.load_module_path(so, uri=uri, flashinfer_version=version)


def _probs(rng, rows, vocab):
    from fake_kernel_driver import aligned
    p = aligned((rows, vocab), np.float32)
    p[...] = rng.random((rows, vocab)) + 0.1
    return p


def _outputs(batch):
    from fake_kernel_driver import aligned, cuda_view
    out, valid = aligned((batch,), np.int32), aligned((batch,), np.bool_)
    out[...], valid[...] = -1, False
    return out, valid, cuda_view(out, "int32"), cuda_view(valid, "bool")


def child_samplers_0_7_4(so):
    import flashinfer_cy as fc
    from flashinfer_cy.kernels import sampling
    from fake_kernel_driver import aligned, cuda_view

    mod = _setup(so, "sampling", "0.7.4")
    f = mod.function
    rng = np.random.default_rng()
    b, v = 5, 40
    p = cuda_view(_probs(rng, b, v), "float32")
    s, o = (int(x) for x in rng.integers(1, 1 << 62, 2))

    # scalars, valid written, deterministic passed through
    out, valid, out_v, valid_v = _outputs(b)
    got = fc.sampling_from_probs(p, None, False, seed=s, offset=o, out=out_v, valid=valid_v)
    assert got is out_v
    assert (f("last_seed")(), f("last_offset")(), f("last_seed_len")(),
            f("last_offset_len")()) == (s, o, 0, 0)
    assert f("last_det")() == 0 and f("last_valid")() == valid.ctypes.data
    assert list(out) == [i + 7 for i in range(b)] and valid.all()
    assert sampling.SAMPLING_FROM_PROBS_074.release == "0.7.4"

    # device seed/offset tensors ([1] and [batch]) reach maybe_seed_arr / maybe_offset_arr
    seed_t, off_t = aligned((1,), np.int64), aligned((b,), np.int64)
    seed_t[...], off_t[...] = s + 1, rng.integers(1, 1 << 62, b)
    out, valid, out_v, valid_v = _outputs(b)
    pair = fc.top_k_sampling_from_probs(p, 3, seed=cuda_view(seed_t, "int64"),
                                        offset=cuda_view(off_t, "int64"), return_valid=True,
                                        out=out_v, valid=valid_v)
    assert pair == (out_v, valid_v) and valid.all()
    assert (f("last_seed")(), f("last_offset")(), f("last_seed_len")(),
            f("last_offset_len")(), f("last_opts")(), f("last_det")()) == (
        s + 1, int(off_t[0]), 1, b, 3, 1)

    # a generator: 0.7.4's get_seed_and_offset hands the kernel the offset before the
    # reservation and leaves the generator advanced by batch * vocab rounded up to 4
    g = fc.SamplingGenerator(s, 8)
    out, _, out_v, _ = _outputs(b)
    fc.sampling_from_logits(p, generator=g, out=out_v)
    assert (f("last_seed")(), f("last_offset")(), f("last_seed_len")()) == (s, 8, 0)
    assert g.offset == 8 + (b * v + 3) // 4 * 4
    fc.sampling_from_logits(p, generator=g, out=out_v)
    assert f("last_offset")() == 8 + (b * v + 3) // 4 * 4


def child_prepared_0_7_4(so):
    import flashinfer_cy as fc
    from fake_kernel_driver import cuda_view

    mod = _setup(so, "sampling", "0.7.4")
    f = mod.function
    rng = np.random.default_rng()
    b = 3
    p = cuda_view(_probs(rng, b, 16), "float32")
    out, valid, out_v, valid_v = _outputs(b)
    prepared = fc.prepare(fc.sampling_from_probs, p, seed=1, offset=2, out=out_v,
                          valid=valid_v)
    assert f("calls")() == 0, "prepare() must launch nothing"
    for _ in range(2):
        s, o = (int(x) for x in rng.integers(1, 1 << 62, 2))
        prepared.set(philox_seed=s, philox_offset=o)  # the 0.6.3 names reach seed_val ...
        prepared.launch()
        assert (f("last_seed")(), f("last_offset")()) == (s, o)
    prepared.set(seed_val=5, offset_val=6)  # ... as do 0.7.4's own
    prepared.launch()
    assert (f("last_seed")(), f("last_offset")(), f("calls")()) == (5, 6, 3)


def child_chain_0_7_4(so):
    import flashinfer_cy as fc
    from fake_kernel_driver import aligned, cuda_view

    mod = _setup(so, "sampling", "0.7.4")
    f = mod.function
    rng = np.random.default_rng()
    b, n, v = 4, 3, 24
    draft = cuda_view(_probs(rng, b * n, v).reshape(b, n, v), "float32")
    target = cuda_view(_probs(rng, b * (n + 1), v).reshape(b, n + 1, v), "float32")
    ids = aligned((b, n), np.int32)
    ids[...] = rng.integers(0, v, (b, n))
    out = aligned((b, n + 1), np.int32)
    acc, emi = aligned((b,), np.int32), aligned((b,), np.int32)
    acc[...], emi[...] = 0, 0
    kw = dict(out=cuda_view(out, "int32"))
    args = (draft, cuda_view(ids, "int32"), target, cuda_view(acc, "int32"),
            cuda_view(emi, "int32"))
    g = fc.SamplingGenerator(77, 40)
    fc.chain_speculative_sampling(*args, False, g, **kw)
    # 0.7.4 reserves batch * (n + 2) and hands the old offset
    assert (f("last_seed")(), f("last_offset")(), f("last_det")()) == (77, 40, 0)
    assert g.offset == 40 + (b * (n + 2) + 3) // 4 * 4
    seed_t, off_t = aligned((b,), np.int64), aligned((1,), np.int64)
    seed_t[...], off_t[...] = rng.integers(1, 1 << 62, b), 123
    fc.chain_speculative_sampling(*args, seed=cuda_view(seed_t, "int64"),
                                  offset=cuda_view(off_t, "int64"), **kw)
    assert (f("last_seed")(), f("last_offset")(), f("last_seed_len")(),
            f("last_offset_len")(), f("last_det")()) == (int(seed_t[0]), 123, b, 1, 1)


def _topk_setup(so, rows, width):
    """The 0.7.4 topk stand-in loaded, an H100's SM count and shared memory, and random
    float32 scores ``[rows, width]``: (module, rng, scores)."""
    from flashinfer_cy._core import runtime
    from fake_kernel_driver import aligned

    mod = _setup(so, "topk", "0.7.4")
    runtime.device_multiprocessor_count = lambda d: 132
    runtime.device_max_shared_memory_per_block_optin = lambda d: 232448
    rng = np.random.default_rng()
    x = aligned((rows, width), np.float32)
    x[...] = rng.random((rows, width))
    return mod, rng, x


def child_topk_0_7_4(so):
    import flashinfer_cy as fc
    from flashinfer_cy.kernels import topk
    from fake_kernel_driver import aligned, cuda_view

    rows, width, k = 3, 64, 5
    mod, rng, x = _topk_setup(so, rows, width)
    idx, val = aligned((rows, k), np.int32), aligned((rows, k), np.float32)
    idx[...], val[...] = -1, np.nan
    states = aligned((1 << 20,), np.uint8)
    values, indices = fc.top_k(cuda_view(x, "float32"), k, values=cuda_view(val, "float32"),
                               indices=cuda_view(idx, "int32"),
                               row_states_buffer=cuda_view(states, "uint8"))
    # sorted_output, deterministic, tie_break, dsa_graph_safe: all 0.6.3's (False/0)
    assert mod.function("last_opts")() == 0
    np.testing.assert_array_equal(val, x[:, :k])
    np.testing.assert_array_equal(idx, np.tile(np.arange(k), (rows, 1)))
    assert topk.RADIX_TOPK.module_signature.startswith(
        "input:T output_indices:T! maybe_output_values:T?! maybe_row_states_buffer:T?!")


def child_page_table_rows_0_7_4(so):
    """0.7.4's page-table transform without row_to_batch takes exactly one table row per
    input row (its export checks it): a taller table is refused before the call, naming the
    release and the fix; the exact table and a taller one with row_to_batch are called."""
    import flashinfer_cy as fc
    from fake_kernel_driver import aligned, cuda_view

    rows, width, k = 3, 64, 4
    mod, rng, x = _topk_setup(so, rows, width)
    table = aligned((rows + 2, width), np.int32)
    table[...] = rng.integers(0, 1 << 20, (rows + 2, width))
    lens = aligned((rows,), np.int32)
    lens[...] = width
    states = aligned((1 << 20,), np.uint8)
    out = aligned((rows, k), np.int32)

    def call(tab, r2b=None):
        out[...] = -7
        return fc.top_k_page_table_transform(
            cuda_view(x, "float32"), cuda_view(tab, "int32"), cuda_view(lens, "int32"), k,
            r2b, out=cuda_view(out, "int32"), row_states_buffer=cuda_view(states, "uint8"))

    before = mod.function("calls")()
    try:
        call(table)
    except ValueError as exc:
        msg = str(exc)
        assert "src_page_table" in msg and "0.7.4" in msg and "expected 3 rows" in msg, msg
        assert "src_page_table[:3]" in msg, msg
    else:
        raise AssertionError("a 5-row table for 3 rows reached 0.7.4's export")
    assert mod.function("calls")() == before and (out == -7).all()

    exact = aligned((rows, width), np.int32)
    exact[...] = table[:rows]
    call(exact)
    np.testing.assert_array_equal(out, table[:rows, :k])
    assert mod.function("last_opts")() == 1000  # page_size 1, the other options 0.6.3's

    r2b = aligned((rows,), np.int32)
    r2b[...] = [4, 0, 2]
    call(table, cuda_view(r2b, "int32"))
    np.testing.assert_array_equal(out, table[[4, 0, 2], :k])


def child_refused_on_0_6_3(so):
    """A 0.6.3 module: valid=, return_valid= and seed tensors are refused naming 0.7.x,
    nothing is called."""
    import flashinfer_cy as fc
    from fake_kernel_driver import aligned, cuda_view

    mod = _setup(so, "sampling", "0.6.3")
    rng = np.random.default_rng()
    p = cuda_view(_probs(rng, 2, 8), "float32")
    out, valid, out_v, valid_v = _outputs(2)
    seed_t = aligned((1,), np.int64)
    calls = [lambda: fc.sampling_from_probs(p, seed=1, offset=2, out=out_v, valid=valid_v),
             lambda: fc.sampling_from_probs(p, seed=1, offset=2, out=out_v, return_valid=True),
             lambda: fc.sampling_from_logits(p, seed=cuda_view(seed_t, "int64"),
                                             offset=cuda_view(seed_t, "int64"), out=out_v)]
    for call in calls:
        try:
            call()
        except ValueError as exc:
            assert "0.7.x" in str(exc) and "0.6.3" in str(exc), exc
        else:
            raise AssertionError("a 0.7.x argument was taken by a 0.6.3 module")
    assert mod.function("calls")() == 0
