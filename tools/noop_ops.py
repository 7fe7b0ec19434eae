"""The decode-step calls that tools/host_overhead_cpu.py (wall clock) and
tools/host_overhead_instr.py (instructions, under callgrind) measure, against no-op exports
with FlashInfer 0.6.3's exact signatures (tools/c_floor/noop_exports.cc) and the CPU tests'
stand-in libcudart (tests/cpu/fake_cudart.c: "device" memory is host memory, so the calls
that allocate -- the composed samplers' intermediates -- run too).

``build()`` compiles both into a folder (in the parent process); ``run_with_stand_ins()``
starts the measuring interpreter with that folder first on LD_LIBRARY_PATH (the dynamic
loader reads it only at start-up); ``decode_step_ops()`` (in that interpreter) loads the
no-op library under each module URI and returns each op as its general API call, its
prepared launch, its bare Binding call and the C floors of the prepared launch; with
torch installed (CPU-only is enough), the same with CPU torch tensors that pass for CUDA ones
(``torch_as_cuda``), so that torch's describe cost is measured as on a GPU.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, NamedTuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "cpu"))

NOOP_ENV = "FLASHINFER_CY_NOOP_EXPORTS"  # the no-op library's path, set for the child


def build(folder: Path) -> tuple[Path, Path]:
    """(no-op exports library, folder holding the stand-in libcudart.so.13)."""
    from testmod_build import compile_c_library, compile_module

    so = compile_module(ROOT / "tools/c_floor/noop_exports.cc", folder / "noop_exports.so")
    cudart = compile_c_library(ROOT / "tests/cpu/fake_cudart.c",
                               folder / "lib" / "libcudart.so.13")
    return so, cudart.parent


def run_with_stand_ins(folder: Path, argv: list[str], prefix: list[str] = ()) -> \
        subprocess.CompletedProcess:
    """``[*prefix, python, *argv]`` with the stand-ins built in ``folder`` and loadable."""
    so, lib = build(folder)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])), PYTHONHASHSEED="0")
    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(lib),
                                                           os.environ.get("LD_LIBRARY_PATH")]))
    env[NOOP_ENV] = str(so)
    return subprocess.run([*prefix, sys.executable, *argv], env=env, check=False)


class Op(NamedTuple):
    """One decode-step call in every form the tools measure."""
    api: Callable[[], object]        # the general API, written out as a caller writes it
    prepared: Callable[[], object]   # fc.prepare(...).launch
    bare: Callable[[], object]       # the bare Binding (no checks; a composed call's last)
    floor: Callable[[int], float]    # the C floor: n launches of the prepared call from C
    torch_floor: Callable[[int], float] | None  # that, plus torch's exchange-API calls


def torch_as_cuda(folder: Path) -> None:
    """Make flashinfer_cy take CPU torch tensors for CUDA ones, in this (measuring) process
    only: torch.Tensor's exchange table becomes one that forwards to torch's own describe
    function and relabels the device (tools/c_floor/relabel_exchange.cc), so the measured
    calls pay what describing a torch tensor costs, exact type and all (a subclass would
    make torch's own type check slower). Built in ``folder``; needs torch."""
    import ctypes

    import torch
    from testmod_build import compile_module

    so = ctypes.CDLL(str(compile_module(ROOT / "tools/c_floor/relabel_exchange.cc",
                                        folder / "relabel_exchange.so")))
    so.fcy_relabelled_exchange_api.restype = ctypes.c_void_p
    so.fcy_relabelled_exchange_api.argtypes = [ctypes.c_void_p]
    pointer = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_char_p)(
        ("PyCapsule_GetPointer", ctypes.pythonapi))
    capsule = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.c_void_p, ctypes.c_char_p,
                                ctypes.c_void_p)(("PyCapsule_New", ctypes.pythonapi))
    name = b"dlpack_exchange_api"
    _keep.extend([so, name])  # the library and the capsule's name outlive the capsule
    torch.Tensor.__dlpack_c_exchange_api__ = capsule(
        so.fcy_relabelled_exchange_api(pointer(torch.Tensor.__dlpack_c_exchange_api__, name)),
        name, None)


_keep: list = []


def decode_step_ops(torch_folder: Path | None = None) -> dict[str, Op]:
    """name -> :class:`Op`, every form already called once. Tensors: descriptors of
    never-dereferenced device memory, or (``torch_folder``: where to build the relabelling
    table) CPU torch tensors taken for CUDA ones (:func:`torch_as_cuda`), which also gives
    the floor with torch's exchange-API calls."""
    import flashinfer_cy as fc
    from flashinfer_cy.kernels.activation import SILU_AND_MUL
    from flashinfer_cy.kernels.cascade import MERGE_STATE
    from flashinfer_cy.kernels.norm import RMSNORM
    from flashinfer_cy.kernels.page import APPEND_PAGED_KV_CACHE
    from flashinfer_cy.kernels.rope import APPLY_ROPE_POS_IDS
    from flashinfer_cy.kernels.sampling import (SAMPLING_FROM_PROBS,
                                                TOP_P_SAMPLING_FROM_PROBS)

    so = os.environ[NOOP_ENV]
    for uri in ("cascade", "sampling", "rope", "silu_and_mul", "norm", "page"):
        fc.load_module_path(so, uri=uri, flashinfer_version="0.6.3")

    base, mb = 0x7F0000000000, 1 << 20
    if torch_folder is None:
        def T(shape, dtype="float16", i=0):  # never-dereferenced device memory
            return fc.TensorDesc(base + i * mb, shape, dtype, device_type="cuda")
    else:
        import torch
        torch_as_cuda(torch_folder)

        def T(shape, dtype="float16", i=0):
            return torch.zeros(shape, dtype=getattr(torch, dtype))

    va, vb, vo = T((1, 32, 128)), T((1, 32, 128), i=1), T((1, 32, 128), i=2)
    sa, sb, so_ = T((1, 32), "float32", 3), T((1, 32), "float32", 4), T((1, 32), "float32", 5)
    probs, ids = T((1, 151936), "float32", 6), T((1,), "int32", 8)
    q, k, pos = T((1, 32, 128), i=9), T((1, 8, 128), i=10), T((1,), "int32", 11)
    x, act = T((1, 28672), i=12), T((1, 14336), i=13)
    h, w, hn = T((1, 4096), i=14), T((4096,), i=15), T((1, 4096), i=16)
    # the composed sampler's intermediates and its top-k row states are allocated from the
    # stand-in libcudart on the thread's default stream (NULL)
    stage = fc.TensorDesc(base + 17 * mb, (1, 151936), "float32", device_type="cuda")
    # paged-KV append, a decode step's shape: 1 token, 8 KV heads x 128, 16-token pages
    ak, av = T((1, 8, 128), i=18), T((1, 8, 128), i=19)
    kc, vc = T((64, 16, 8, 128), i=20), T((64, 16, 8, 128), i=24)
    bidx, apos = T((1,), "int32", 28), T((1,), "int32", 29)
    kvi, kvp, kvl = T((4,), "int32", 30), T((2,), "int32", 31), T((1,), "int32", 32)

    # (fn, args, kwargs) for prepare(), the same call written out (as a caller writes it:
    # no ``*args, **kwargs`` unpacking in the measured call), the bare Binding call, the
    # tensors the call takes (what the torch floor describes)
    calls = {
        "rmsnorm 1x4096": (
            (fc.rmsnorm, (h, w), dict(out=hn, enable_pdl=False)),
            lambda: fc.rmsnorm(h, w, out=hn, enable_pdl=False),
            lambda: RMSNORM(hn, h, w, 1e-6, False), (h, w, hn)),
        "rope pos_ids 1x32/8x128 in place": (
            (fc.apply_rope_pos_ids_inplace, (q, k, pos), {}),
            lambda: fc.apply_rope_pos_ids_inplace(q, k, pos),
            lambda: APPLY_ROPE_POS_IDS(q, k, q, k, pos, 128, False, 1.0, 1e4), (q, k, pos)),
        "silu_and_mul 1x14336": (
            (fc.silu_and_mul, (x,), dict(out=act, enable_pdl=False)),
            lambda: fc.silu_and_mul(x, out=act, enable_pdl=False),
            lambda: SILU_AND_MUL(act, x, False), (x, act)),
        "sampling_from_probs 1x151936": (
            (fc.sampling_from_probs, (probs,), dict(seed=0, offset=0, out=ids)),
            lambda: fc.sampling_from_probs(probs, seed=0, offset=0, out=ids),
            lambda: SAMPLING_FROM_PROBS(probs, ids, None, True, 0, 0), (probs, ids)),
        "merge_state 1x32x128": (
            (fc.merge_state, (va, sa, vb, sb), dict(v_merged=vo, s_merged=so_)),
            lambda: fc.merge_state(va, sa, vb, sb, v_merged=vo, s_merged=so_),
            lambda: MERGE_STATE(va, sa, vb, sb, vo, so_), (va, sa, vb, sb, vo, so_)),
        "append_paged_kv_cache 1x8x128": (
            (fc.append_paged_kv_cache, (ak, av, bidx, apos, kc, vc, kvi, kvp, kvl), {}),
            lambda: fc.append_paged_kv_cache(ak, av, bidx, apos, kc, vc, kvi, kvp, kvl),
            lambda: APPEND_PAGED_KV_CACHE(ak, av, bidx, apos, kc, vc, kvi, kvp, kvl, 0),
            (ak, av, bidx, apos, kc, vc, kvi, kvp, kvl)),
        # three exports; "Binding" is its last stage alone
        "top_k_top_p_from_logits 1x151936": (
            (fc.top_k_top_p_sampling_from_logits, (probs, 50, 0.9),
             dict(seed=0, offset=0, out=ids)),
            lambda: fc.top_k_top_p_sampling_from_logits(probs, 50, 0.9, seed=0, offset=0,
                                                        out=ids),
            lambda: TOP_P_SAMPLING_FROM_PROBS(stage, ids, None, None, 0.9, True, 0, 0),
            (probs, ids)),
        # tools/bench_decode_step.py's call: the sampled ids allocated per call (the
        # prepared launch returns the ones it allocated when prepared)
        "top_k_top_p_from_logits, new ids": (
            (fc.top_k_top_p_sampling_from_logits, (probs, 50, 0.9), dict(seed=0, offset=0)),
            lambda: fc.top_k_top_p_sampling_from_logits(probs, 50, 0.9, seed=0, offset=0),
            lambda: TOP_P_SAMPLING_FROM_PROBS(stage, ids, None, None, 0.9, True, 0, 0),
            (probs,)),
    }
    ops = {}
    for name, ((fn, a, kw), api, bare, tensors) in calls.items():
        p = fc.prepare(fn, *a, **kw)
        op = Op(api, p.launch, bare, lambda n, p=p: p._c_burst_us(n),
                None if torch_folder is None else
                lambda n, p=p, t=tensors: p._c_burst_us(n, t))
        for call in (api, p.launch, bare):
            call()
        ops[name] = op
    return ops
