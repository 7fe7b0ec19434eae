"""Inputs that used to kill the process (SIGSEGV / SIGBUS) or slip through validation, each
refused now with a TypeError / ValueError / KernelNotFoundError naming what is wrong.

What crashed is run in a child process (``in_child``): a regression is a failed test that
names the signal, not a dead test run. Everything else runs under the no-CUDA guard, so a
refusal is proved to come before any kernel module is loaded or CUDA is touched."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from testmod_build import child_pythonpath

import flashinfer_cy as fc
from cuda_guard import no_cuda, raises, reaches_cuda
from producers import Forged

HERE = Path(__file__).parent
REPO = HERE.parents[1]
PTR = 0x7F0000000000  # aligned, never dereferenced
D = 128


def in_child(code: str, env: dict | None = None) -> str:
    """Run ``code`` in a fresh interpreter; fail on a signal death or a non-zero exit.
    Returns its stdout (the code prints what it caught)."""
    res = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
        timeout=120, cwd=HERE,
        env={**os.environ, "PYTHONPATH": child_pythonpath(),
             **(env or {})})
    assert res.returncode >= 0, f"killed by signal {-res.returncode}:\n{code}\n{res.stderr}"
    assert res.returncode == 0, f"exit {res.returncode}:\n{code}\n{res.stderr[-3000:]}"
    return res.stdout


def T(shape, dtype="float16", strides=None, ptr=PTR, device_type="cuda"):
    return fc.TensorDesc(ptr, shape, dtype, strides=strides, device_type=device_type)


# --------------------------------------------------------------- 1. call_generic, Function

def test_call_generic_refuses_none_and_unmade_functions():
    out = in_child("""
        from flashinfer_cy._core.binding import call_generic
        from flashinfer_cy._core.runtime import Function
        for fn in (None, Function.__new__(Function)):
            try:
                call_generic(fn, (), None)
            except TypeError as exc:
                print("TypeError:", exc)
    """)
    assert out.count("TypeError:") == 2, out
    assert "not made by Module.function" in out, out


# ------------------------------------------------------------ 2. damaged kernel module files

def _shared_library() -> Path:
    import tvm_ffi  # noqa: F401 - only its location: its lib/ holds a real shared library

    return Path(sys.modules["tvm_ffi"].__file__).parent / "lib" / "libtvm_ffi.so"


def _truncated(tmp_path: Path, name: str, keep: int, drop_sections: bool = False) -> Path:
    data = bytearray(_shared_library().read_bytes()[:keep])
    if drop_sections:  # e_shoff = 0: only the loadable segments tell that bytes are missing
        data[0x28:0x30] = bytes(8)
    path = tmp_path / name
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("keep, drop_sections, words", [
    (4096, False, "section header table"),
    (4096, True, "loadable segment"),
    (40, False, "ELF header"),
])
def test_truncated_module_file_is_refused_before_dlopen(tmp_path, keep, drop_sections, words):
    path = _truncated(tmp_path, "half.so", keep, drop_sections)
    out = in_child(f"""
        import flashinfer_cy as fc
        try:
            fc.load_module_path({str(path)!r})
        except fc.KernelNotFoundError as exc:
            print(exc)
    """)
    assert str(path) in out and "damaged" in out and words in out, out


def test_truncated_module_in_the_kernel_dir_is_refused(tmp_path):
    (tmp_path / "norm").mkdir()
    shutil.copy(_truncated(tmp_path, "half.so", 4096), tmp_path / "norm" / "norm.so")
    out = in_child("""
        import flashinfer_cy as fc
        try:
            fc.load_module("norm")
        except fc.KernelNotFoundError as exc:
            print(exc)
    """, env={"FLASHINFER_CY_KERNEL_DIR": str(tmp_path), "FLASHINFER_CY_OFFLINE": "1"})
    assert "norm.so is damaged" in out and "again" in out, out


def test_whole_module_files_still_load(testmod_dir):
    from flashinfer_cy._core.elf_check import elf_problem

    assert elf_problem(str(testmod_dir / "testmod" / "testmod.so")) is None
    assert elf_problem(str(_shared_library())) is None


# ----------------------------------------------- 3. DLPack tensors with NULL shape / strides

@pytest.fixture
def guarded(monkeypatch):
    no_cuda(monkeypatch)


W = T((8,))  # rmsnorm's weight for a [4, 8] input


@pytest.mark.parametrize("versioned", [True, False], ids=["versioned", "legacy"])
def test_dlpack_capsule_with_null_shape_is_refused(versioned):
    out = in_child(f"""
        import flashinfer_cy as fc
        from producers import Forged
        w = fc.TensorDesc({PTR}, (8,), "float16")
        try:
            fc.rmsnorm(Forged(shape=Forged.NULL, ndim=2, versioned={versioned}), w)
        except ValueError as exc:
            print(exc)
    """)
    assert "input: the producer gave 2 dimensions but a NULL shape array" in out, out


def test_exchange_api_with_null_shape_is_refused():
    out = in_child("""
        import numpy as np
        import flashinfer_cy as fc
        from producers import exchange_type
        x = exchange_type()(np.zeros((4, 8), np.float32), null_shape=True)
        try:
            fc.rmsnorm(x, fc.TensorDesc(0x7F0000000000, (8,), "float32"))
        except (ValueError, TypeError) as exc:
            print(exc)
    """)
    assert "NULL shape array" in out, out


@pytest.mark.parametrize("versioned", [True, False], ids=["versioned", "legacy"])
def test_dlpack_null_strides_read_as_row_major(guarded, versioned):
    # DLPack < 1.2 defines NULL strides as compact row-major; 1.2 forbids them without
    # changing that meaning: nothing to refuse, and nothing may read through them.
    reaches_cuda(lambda: fc.rmsnorm(Forged(versioned=versioned), W))
    reaches_cuda(lambda: fc.rmsnorm(Forged(versioned=versioned, minor=0), W))


def test_dlpack_null_data_with_elements_is_refused(guarded):
    raises(lambda: fc.rmsnorm(Forged(data=0), W), ValueError, "input: NULL data pointer")
    raises(lambda: fc.rmsnorm(Forged(data=0, versioned=False), W), ValueError, "NULL data")


def test_dlpack_negative_sizes_are_refused(guarded):
    raises(lambda: fc.rmsnorm(Forged(shape=(4, -8), strides=(8, 1)), W), ValueError,
           "input: sizes must be >= 0")


# ------------------------------------------------------------------- 4. the stream table

@pytest.mark.parametrize("args", [(2, -1, 0), (-1, 0, 0), (2, 1 << 16, 0), (1 << 20, 0, 0)])
def test_env_stream_refuses_indices_outside_the_table(args):
    out = in_child(f"""
        from flashinfer_cy._core import runtime
        for call in (lambda: runtime._env_set_stream(*{args}),
                     lambda: runtime._env_get_stream(*{args[:2]})):
            try:
                call()
            except ValueError as exc:
                print(exc)
    """)
    assert out.count("expected a") == 2, out


# ------------------------------------------------------------ 5. workspaces at construction

WRAPPERS = (fc.BatchDecodeWithPagedKVCache, fc.BatchPrefillWithPagedKVCache,
            fc.BatchPrefillWithRaggedKVCache)


@pytest.mark.parametrize("buffer, exc, words", [
    ("abc", TypeError, "expected a tensor"),
    (0, TypeError, "expected a tensor"),
    (np.zeros(1 << 20, np.uint8), ValueError, "expected a CUDA tensor"),
    (T((1 << 20,), "int32"), TypeError, "expected dtype uint8"),
    (T((3,), "uint8"), ValueError, "3 bytes is less than any plan takes"),
    (T((1024, 1024), "uint8"), ValueError, "expected 1 dimensions"),
    (T((1 << 20,), "uint8", strides=(2,)), ValueError, "contiguous"),
    (T((1 << 20,), "uint8", ptr=PTR + 1), ValueError, "16-byte aligned"),
])
def test_constructors_refuse_bad_workspaces(guarded, buffer, exc, words):
    for cls in WRAPPERS:
        for name in ("float_workspace_buffer", "int_workspace_buffer"):
            raises(lambda: cls(**{name: buffer}), exc, f"{name}: .*{words}")


def test_constructors_refuse_tiny_workspace_sizes(guarded):
    for cls in WRAPPERS:
        for name in ("float_workspace_bytes", "int_workspace_bytes"):
            raises(lambda: cls(**{name: 3}), ValueError, f"{name}: 3 bytes")


def test_good_workspaces_are_kept(guarded):
    f, i = T((1 << 20,), "uint8"), T((1 << 16,), "uint8", ptr=PTR + (1 << 20))
    for cls in WRAPPERS:
        w = cls(float_workspace_buffer=f, int_workspace_buffer=i)
        assert w.workspace_buffers() == (f, i)


# ------------------------------------------------------------------------ 6. strict bools

def _decode_plan(w, **over):
    args = dict(indptr=np.array([0, 2]), indices=np.array([1, 0]), last_page_len=np.array([5]),
                num_qo_heads=8, num_kv_heads=8, head_dim=D, page_size=16)
    return w.plan(**{**args, **over})


@pytest.mark.parametrize("bad", ["abc", object(), 1j, None, 2, 0.0])
def test_bool_arguments_are_strict(guarded, bad):
    from flashinfer_cy._core.array import stream_scratch

    q, k = T((10, 16, D)), T((40, 4, D))
    paged = fc.BatchPrefillWithPagedKVCache(backend="fa2")
    ragged = fc.BatchPrefillWithRaggedKVCache(backend="fa2")
    qo = np.array([0, 3])
    calls = {
        "use_cuda_graph": [lambda: cls(use_cuda_graph=bad) for cls in WRAPPERS],
        "causal": [lambda: fc.single_prefill(q, k, k, causal=bad, backend="fa2"),
                   lambda: paged.plan(qo, np.array([0, 1]), np.array([0]), np.array([5]),
                                      16, 4, D, 16, causal=bad),
                   lambda: ragged.plan(qo, np.array([0, 5]), 16, 4, D, causal=bad)],
        "return_lse": [lambda: fc.single_prefill(q, k, k, return_lse=bad, backend="fa2"),
                       lambda: fc.single_decode(T((16, D)), k, k, return_lse=bad),
                       lambda: fc.BatchDecodeWithPagedKVCache().run(
                           T((1, 8, D)), (T((2, 16, 8, D)), T((2, 16, 8, D))), return_lse=bad)],
        "serialize": [lambda: fc.Binding("m", "f", "x:T", serialize=bad)],
        "zero": [lambda: stream_scratch("test scratch", 0, None, 64, zero=bad)],  # array.pyi
    }
    for name, fns in calls.items():
        for call in fns:
            raises(call, TypeError, f"{name}: expected True")
    if bad is not None:  # __dlpack__(copy=None) is the array API's "either"
        raises(lambda: W.__dlpack__(copy=bad), TypeError, "copy: expected")


def test_real_bools_still_pass(guarded):
    q, k = T((10, 16, D)), T((40, 4, D))
    for flag in (True, False, np.bool_(True), 1, 0):
        reaches_cuda(lambda: fc.single_prefill(q, k, k, causal=flag, return_lse=flag,
                                               backend="fa2"))
    assert fc.BatchDecodeWithPagedKVCache(use_cuda_graph=np.bool_(False)).use_cuda_graph is False


# ---------------------------------------------------- 7. views whose addresses overflow

HUGE = (2**62, D, 1)


def test_overflowing_strides_are_refused_everywhere(guarded):
    from test_page_gdn_validation import append, mla

    span = "span more bytes than int64"
    raises(append(append_key=T((5, 4, D), strides=HUGE)), ValueError, f"append_key: .*{span}")
    raises(append(paged_k_cache=T((10, 16, 4, D), strides=(2**61, 4 * D, D, 1))),
           ValueError, f"paged_k_cache: .*{span}")
    raises(mla(append_ckv=T((5, 512), strides=(2**62, 1))), ValueError, f"append_ckv: .*{span}")
    k = T((40, 4, D))
    raises(lambda: fc.single_prefill(T((10, 16, D), strides=HUGE), k, k, backend="fa2"),
           ValueError, f"q: .*{span}")
    raises(lambda: fc.single_prefill(T((10, 16, D)), T((40, 4, D), strides=HUGE), k,
                                     backend="fa2"), ValueError, f"k: .*{span}")
    raises(lambda: fc.rmsnorm(T((4, D), strides=(2**62, 1)), T((D,))), ValueError, span)
    # the generic path too (one check in to_dltensor, not one per family)
    raises(lambda: fc.Binding("m", "f", "x:T")(T((4, D), strides=(-(2**62), 1))),
           ValueError, f"x: .*{span}")
    # an address range that wraps past 2**64
    raises(lambda: fc.rmsnorm(T((4, D), ptr=2**64 - 64), T((D,))), ValueError, span)


def test_large_but_valid_strides_pass(guarded):
    # a dimension of size 1 is never stepped over; an empty tensor addresses nothing
    generic = fc.Binding("m", "f", "x:T")
    for shape, strides in (((1, D), (2**62, 1)), ((0, D), (2**62, 1)), ((4, D), (2**40, 1)),
                           ((4, D), (-(2**40), 1))):
        reaches_cuda(lambda: generic(T(shape, strides=strides)))


# ------------------------------------------------------------- 8. dtypes in byte order

@pytest.mark.parametrize("over", [dict(q_data_type=np.dtype(">f2")),
                                  dict(kv_data_type=np.dtype(">f2"))])
def test_plan_refuses_non_native_dtypes(guarded, over):
    raises(lambda: _decode_plan(fc.BatchDecodeWithPagedKVCache(), **over), TypeError,
           f"{next(iter(over))}: '>f2' is not in this machine's byte order")
    reaches_cuda(lambda: _decode_plan(fc.BatchDecodeWithPagedKVCache(),
                                      q_data_type=np.dtype("<f2")))


# ----------------------------------------------------------- 9. page bookkeeping ranges

@pytest.mark.parametrize("indptr, last, page_size, words", [
    ([0, 1], [99], 16, "kv_last_page_len\\[0\\] = 99"),
    ([0, 1], [-7], 16, "kv_last_page_len\\[0\\] = -7"),
    ([0, 1], [0], 16, "kv_last_page_len\\[0\\] = 0"),
    ([0, 0, 2], [3, 5], 16, "kv_last_page_len\\[0\\] = 3 .*0 when it has none"),
    ([0, 1], [5], 2**64 - 1, "page_size"),
    ([0, 1], [5], 2**31, "page_size"),
    ([0, 2**31 + 2], [5], 16, "do not fit in int32"),
])
def test_get_seq_lens_refuses_impossible_pages(indptr, last, page_size, words):
    raises(lambda: fc.get_seq_lens(np.array(indptr), np.array(last), page_size), ValueError,
           words)


def test_get_seq_lens_still_counts():
    rng = np.random.default_rng(7)
    pages = rng.integers(0, 6, 20)
    page_size = int(rng.integers(1, 64))
    last = np.where(pages > 0, rng.integers(1, page_size + 1, 20), 0)
    indptr = np.concatenate([[0], np.cumsum(pages)])
    expect = [max(p - 1, 0) * page_size + (lp if p else 0) for p, lp in zip(pages, last)]
    assert fc.get_seq_lens(indptr, last, page_size).tolist() == expect


def test_plans_refuse_indptr_not_from_zero(guarded):
    raises(lambda: _decode_plan(fc.BatchDecodeWithPagedKVCache(), indptr=np.array([1, 3]),
                                indices=np.array([0, 1, 2])),
           ValueError, "indptr: must start at 0, got indptr\\[0\\] = 1")
    paged = fc.BatchPrefillWithPagedKVCache(backend="fa2")
    raises(lambda: paged.plan(np.array([0, 3]), np.array([2, 3]), np.array([0, 1, 2]),
                              np.array([5]), 16, 4, D, 16),
           ValueError, "paged_kv_indptr: must start at 0")
