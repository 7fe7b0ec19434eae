"""Bindings written for FlashInfer 0.6.3 calling a later release's export through a layout
(flashinfer_cy/abi/layouts.py): the grammar and its refusals, and the call path end to end
against CPU stand-ins (fake_layouts.cc) -- the typed API, the generic call, and a prepared
launch must all hand the export the release's argument list.

The stand-ins are registered under real module URIs, so the end-to-end scenarios run in a
child interpreter: a table Binding keeps the Function it first loaded for the whole process.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from testmod_build import HERE, compile_module

from flashinfer_cy.abi import layouts

BASE = "out:T! e:I a:I"


# ---------------------------------------------------------------------------- the grammar
def test_parse_rearranges_renames_and_adds_constants():
    sig, plan = layouts.parse(BASE, "out:T! a:I b:F=2.5 c:B=True d:T?=None x:I=e f:F=-1e-3")
    assert sig == "out:T! a:I b:F c:B d:T? x:I f:F"
    assert plan == (("arg", 0), ("arg", 2), ("const", "F", 2.5), ("const", "B", True),
                    ("const", "T?", None), ("arg", 1), ("const", "F", -1e-3))


def test_a_tensor_may_fill_an_optional_tensor():
    sig, plan = layouts.parse("x:T y:T!", "x:T y:T?!")
    assert sig == "x:T y:T?!" and plan == (("arg", 0), ("arg", 1))


@pytest.mark.parametrize("layout,message", [
    ("out:T! a:I", "leaves out the Binding's e"),
    ("out:T! a:I e:I zz:I", "'zz:I'"),
    ("out:T! a:F e:I", "the Binding's a is kind I, not F"),
    ("out:T! a:I e:I x:I=a", "a is used twice"),
    ("out:T! a:I e:I d:T?=0", "a T? constant is one of None"),
    ("out:T! a:I e:I c:B=1", "a B constant is one of True, False"),
    ("out:T! a:I e:I n:I=1.5", "not a constant of kind I"),
    ("out:T! a:I e:I n:I=99999999999999999999", "not a constant of kind I"),
    ("out:T! a:I e:I t:T=None", "not a constant of kind T"),
    ("out:T! a:I e", "expected name:KIND"),
])
def test_parse_refuses_what_is_not_a_rearrangement(layout, message):
    with pytest.raises(ValueError, match=None) as exc:
        layouts.parse(BASE, layout)
    assert message in str(exc.value), str(exc.value)


def test_insert_and_append():
    assert layouts.insert(BASE, "a", "z:B=False") == "out:T! e:I z:B=False a:I"
    assert layouts.append(BASE, "z:T?=None") == "out:T! e:I a:I z:T?=None"
    with pytest.raises(ValueError, match="'q' is not an argument"):
        layouts.insert(BASE, "q", "z:B=False")


def test_a_bad_layout_fails_at_table_construction():
    import flashinfer_cy as fc
    with pytest.raises(ValueError, match="leaves out the Binding's e"):
        fc.Binding("m", "probe", BASE, layouts={"0.7.4": "out:T! a:I"})


# ---------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def stand_in(tmp_path_factory):
    return compile_module(HERE / "fake_layouts.cc",
                          tmp_path_factory.mktemp("fake_layouts") / "layouts.so")


@pytest.mark.parametrize("scenario", ["top_k_renorm_0_7_4", "generic_probe", "no_layout_for_0_6_3"])
def test_call_path_through_a_layout(scenario, stand_in):
    res = subprocess.run([sys.executable, "-c", f"import test_release_layouts as t; "
                          f"t.child_{scenario}({str(stand_in)!r}); print('ok')"],
                         capture_output=True, text=True, timeout=120, cwd=HERE)
    assert res.returncode == 0 and res.stdout.strip().endswith("ok"), \
        f"scenario {scenario} failed:\n{res.stdout}\n{res.stderr}"


def _top_k_renorm_ref(p, k):
    p64 = p.astype(np.float64)
    pivot = -np.sort(-p64, axis=1)[:, k - 1:k]
    kept = np.where(p64 >= pivot, p64, 0.0)
    return kept / kept.sum(1, keepdims=True)


def _probs(rng, rows, cols):
    from fake_kernel_driver import aligned
    p = aligned((rows, cols), np.float32)
    p[...] = rng.permutation(rows * cols).reshape(rows, cols) + 1.0  # distinct: no ties
    p /= p.sum(1, keepdims=True)
    return p


def child_top_k_renorm_0_7_4(so):
    """fc.top_k_renorm_probs on a module of 0.7.4: the export receives 0.7.4's six
    arguments (is_deterministic False, as 0.7.4's Python API defaults it), computes the right
    answer, directly and as a prepared launch (twice)."""
    import flashinfer_cy as fc
    from flashinfer_cy._core import runtime
    from flashinfer_cy.kernels import sampling
    from fake_kernel_driver import aligned, cuda_view

    runtime._load_cudart = lambda: None  # no CUDA runtime: nothing here allocates
    mod = fc.load_module_path(so, uri="sampling", flashinfer_version="0.7.4")
    rng = np.random.default_rng()
    p = _probs(rng, 3, 40)
    out = aligned(p.shape, np.float32)
    states = aligned((1 << 20,), np.uint8)
    k = int(rng.integers(2, 30))
    for launch in ("call", "prepared", "prepared again"):
        out[...] = np.nan
        args = (cuda_view(p, "float32"), k)
        kw = dict(out=cuda_view(out, "float32"), row_states_buffer=cuda_view(states, "uint8"))
        before = mod.function("calls")()
        if launch == "call":
            fc.top_k_renorm_probs(*args, **kw)
        else:
            if launch == "prepared":
                prepared = fc.prepare(fc.top_k_renorm_probs, *args, **kw)
                assert mod.function("calls")() == before, "prepare() must launch nothing"
            prepared.launch()
        assert mod.function("calls")() == before + 1, launch
        assert mod.function("last_deterministic")() == 0, launch
        assert mod.function("last_row_states")() == states.ctypes.data, launch
        np.testing.assert_allclose(out, _top_k_renorm_ref(p, k), rtol=1e-6, atol=1e-7)
    assert sampling.TOP_K_RENORM_PROBS.module_signature == (
        "probs:T renorm_probs:T! maybe_top_k_arr:T? top_k_val:I is_deterministic:B "
        "row_states_buffer:T!")


def child_generic_probe(so):
    """Binding.__call__ and a prepared launch of it: each layout item -- moved argument,
    renamed argument, I/F/B/None constants -- reaches the export where its release wants it."""
    import flashinfer_cy as fc
    from flashinfer_cy._core import runtime
    from fake_kernel_driver import aligned

    runtime._load_cudart = lambda: None
    # 0.6.3 is the tables' release, the only one that accepts a module its ABI file does not
    # list (a test double): the layout mechanism is the same for every release.
    fc.load_module_path(so, uri="probe_mod", flashinfer_version="0.6.3")
    b = fc.Binding("probe_mod", "probe", "out:T! first:I last:I",
                   layouts={"0.6.3": "out:T! a:I=last b:F=2.5 c:B=True d:T?=None e:I=first "
                                     "f:F=-0.125"})
    assert b.module_signature is None  # nothing loaded yet
    out = aligned((6,), np.float64)
    rng = np.random.default_rng()
    first, last = (int(v) for v in rng.integers(-1 << 40, 1 << 40, 2))
    out[...] = np.nan
    b(out, first, last)
    np.testing.assert_array_equal(out, [last, 2.5, 1.0, 0.0, first, -0.125])
    assert b.module_signature == "out:T! a:I b:F c:B d:T? e:I f:F"
    assert b.signature == "out:T! first:I last:I"


def child_no_layout_for_0_6_3(so):
    """On the tables' own release a Binding with only a 0.7.4 layout calls its own list:
    the 0.7.4 stand-in then refuses the 5 arguments (TVM-FFI's arity check), a clean error,
    proving the layout is chosen by the module's release and nothing else."""
    import flashinfer_cy as fc
    from flashinfer_cy._core import runtime
    from flashinfer_cy.kernels import sampling
    from fake_kernel_driver import aligned, cuda_view

    runtime._load_cudart = lambda: None
    mod = fc.load_module_path(so, uri="sampling", flashinfer_version="0.6.3")
    line = sampling.TOP_K_RENORM_PROBS
    b = fc.Binding(line.uri, line.symbol, line.signature, layouts=line.layouts)
    p = _probs(np.random.default_rng(), 2, 8)
    out = aligned(p.shape, np.float32)
    states = aligned((64,), np.uint8)
    try:
        b(cuda_view(p, "float32"), cuda_view(out, "float32"), None, 2,
          cuda_view(states, "uint8"))
    except Exception as exc:  # noqa: BLE001 - TVM-FFI's own error type
        assert "argument" in str(exc).lower(), exc
    else:
        raise AssertionError("a 6-argument export took the 5 arguments of 0.6.3")
    assert mod.function("calls")() == 0
    assert b.module_signature == line.signature
