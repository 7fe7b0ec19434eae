"""Kernel modules that reference template instantiations their release never calls
(FlashInfer 0.7.4's FA2 batch prefill: CTA_TILE_Q=32 with head_dim_vo < 512) load, with
those symbols recorded; any other unresolved function still refuses the module at load.

The stand-in (fake_unreachable.cc) references 0.7.4's BatchPrefillWith{Paged,Ragged}-
KVCacheDispatched under the real mangled names and defines neither, so RTLD_NOW fails on it
exactly as on the H200 build. Every module here is loaded from its own copy of the file
(one path is one module for the whole process) and forgotten after the test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from testmod_build import HERE, child_pythonpath, compile_module  # noqa: E402

import flashinfer_cy as fc  # noqa: E402
from flashinfer_cy._core import runtime  # noqa: E402
from flashinfer_cy.abi import unreachable_symbols as us  # noqa: E402
from flashinfer_cy.errors import KernelNotFoundError  # noqa: E402

# The symbol 0.7.4's batch_prefill_with_kv_cache_..._head_dim_qk_128_head_dim_vo_128_... module
# failed to load on (the H200 report), and its ragged twin.
PAGED_32 = ("_ZN10flashinfer38BatchPrefillWithPagedKVCacheDispatchedILb0ELj32ELj128ELj128ELNS_"
            "15PosEncodingModeE0ELb0ELNS_8MaskModeE2ELb0ENS_16DefaultAttentionILb1ELb0ELb0ELb0"
            "EEE11PagedParamsEE9cudaErrorT8_PNS7_6DTypeOEPfbP11CUstream_st")
RAGGED_32 = ("_ZN10flashinfer39BatchPrefillWithRaggedKVCacheDispatchedILj32ELj128ELj128ELNS_"
             "15PosEncodingModeE0ELb0ELNS_8MaskModeE2ELb0ENS_16DefaultAttentionILb1ELb0ELb0ELb0"
             "EEE12RaggedParamsEE9cudaErrorT7_PNS7_6DTypeOEPfbP11CUstream_st")

VARIANTS = {  # name -> compiler flags of fake_unreachable.cc
    "unreachable": [],                                  # CTA_TILE_Q=32, head_dim_vo=128
    "cta64": ["-DFAKE_CTA_TILE_Q=64"],                  # instantiated, so reachable
    "vo512": ["-DFAKE_HEAD_DIM_VO=512"],                # CTA_TILE_Q=32 is selected there
    "extra": ["-DFAKE_EXTRA_MISSING"],                  # listed ones + an extern "C" one
}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("fake_unreachable")
    return {name: compile_module(HERE / "fake_unreachable.cc", root / f"{name}.so", flags)
            for name, flags in VARIANTS.items()}


@pytest.fixture
def load(built, tmp_path, monkeypatch):
    """``load(variant, version)``: load a fresh copy of a stand-in as FlashInfer ``version``."""
    monkeypatch.setattr(runtime, "_modules", dict(runtime._modules))
    count = iter(range(1000))

    def load_(variant, version):
        copy = tmp_path / f"{variant}-{next(count)}.so"
        shutil.copy(built[variant], copy)
        return fc.load_module_path(copy, flashinfer_version=version)
    return load_


def refusal(load, variant, version) -> str:
    """The message of the KernelNotFoundError that loading ``variant`` raises."""
    before = set(runtime._modules)
    with pytest.raises(KernelNotFoundError, match="cannot load kernel module") as exc:
        load(variant, version)
    assert set(runtime._modules) == before, "a refused module must not be kept"
    return str(exc.value)


# ------------------------------------------------------------------------------ the loader

@pytest.mark.parametrize("version", ["0.7.4", "0.7.4+cu130"])
def test_074_module_with_unreachable_instantiations_loads(load, version):
    m = load("unreachable", version)
    assert sorted(m.unreachable_symbols) == sorted([PAGED_32, RAGGED_32])
    assert "2 unreachable symbol(s) left unresolved" in repr(m)
    x = int.from_bytes(os.urandom(4), "little")
    assert m.function("add_one")(x) == x + 1  # its reachable exports work


@pytest.mark.parametrize("version", ["0.6.3", None])
def test_same_module_of_a_release_without_a_list_is_refused(load, version):
    msg = refusal(load, "unreachable", version)
    assert "undefined symbol" in msg and "BatchPrefillWith" in msg


@pytest.mark.parametrize("variant, expect", [
    ("cta64", "Lj64ELj128ELj128E"),       # a CTA_TILE_Q the plan does select
    ("vo512", "Lj32ELj128ELj512E"),       # CTA_TILE_Q=32 where head_dim_vo >= 512 selects it
])
def test_reachable_missing_instantiation_is_refused_and_named(load, variant, expect):
    msg = refusal(load, variant, "0.7.4")
    listed = msg.split("not known to be unreachable in flashinfer 0.7.4: ", 1)[1].split(", ")
    assert len(listed) == 2 and all(expect in name for name in listed), msg
    assert {n.split("Dispatched")[0] for n in listed} == {
        "_ZN10flashinfer38BatchPrefillWithPagedKVCache", "_ZN10flashinfer39BatchPrefillWithRaggedKVCache"}


def test_other_undefined_function_is_refused_naming_only_it(load):
    msg = refusal(load, "extra", "0.7.4")
    assert msg.endswith("not known to be unreachable in flashinfer 0.7.4: fake_missing_helper"), msg


def test_refused_when_the_symbols_cannot_be_listed(load, monkeypatch):
    monkeypatch.setitem(sys.modules, "elftools.elf.elffile", None)  # import fails
    assert "could not be listed" in refusal(load, "unreachable", "0.7.4")


_CHILD = """
import sys
import flashinfer_cy as fc
m = fc.load_module_path(sys.argv[1], flashinfer_version="0.7.4")
assert m.unreachable_symbols == (), m.unreachable_symbols
lazy = [n for n in ("elftools", "flashinfer_cy._core.undefined_symbols",
                    "flashinfer_cy.abi.unreachable_symbols") if n in sys.modules]
assert not lazy, f"a module that loads with RTLD_NOW imported {lazy}"
lazy_module = fc.load_module_path(sys.argv[2], flashinfer_version="0.7.4")
assert lazy_module.unreachable_symbols and "elftools" in sys.modules  # the check can see it
print("ok")
"""


def test_normal_module_loads_with_rtld_now_without_the_fallback(testmod_dir, built, tmp_path):
    shutil.copy(built["unreachable"], tmp_path / "lazy.so")
    res = subprocess.run([sys.executable, "-c", _CHILD, str(testmod_dir / "testmod" / "testmod.so"),
                          str(tmp_path / "lazy.so")], capture_output=True, text=True, timeout=120,
                         cwd=HERE,  # not the checkout: `-c` puts the cwd first on sys.path
                         env={**os.environ, "PYTHONPATH": child_pythonpath()})
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stdout + res.stderr


# ------------------------------------------------------------------------------- the table

def test_table_lists_the_074_instantiations_only():
    assert us.known_unreachable("0.7.4", PAGED_32).template.startswith(
        "flashinfer::BatchPrefillWithPagedKVCacheDispatched")
    assert us.known_unreachable("0.7.4", RAGGED_32).template.startswith(
        "flashinfer::BatchPrefillWithRaggedKVCacheDispatched")
    assert us.known_unreachable("0.7.4.post1", PAGED_32) is not None
    for version in ("0.6.3", "0.7.5", None):  # only releases whose sources were read
        assert us.known_unreachable(version, PAGED_32) is None


@pytest.mark.parametrize("symbol", [
    PAGED_32.replace("ILb0ELj32ELj128ELj128E", "ILb1ELj32ELj576ELj256E"),  # other dims, vo < 512
    RAGGED_32.replace("ILj32ELj128ELj128E", "ILj32ELj64ELj64E"),
])
def test_other_head_dims_below_512_match(symbol):
    assert us.known_unreachable("0.7.4", symbol) is not None


@pytest.mark.parametrize("symbol", [
    PAGED_32.replace("ELj32ELj128ELj128E", "ELj64ELj128ELj128E"),     # CTA_TILE_Q 64
    PAGED_32.replace("ELj32ELj128ELj128E", "ELj32ELj512ELj512E"),     # head_dim_vo 512
    RAGGED_32.replace("ILj32ELj128ELj128E", "ILj32ELj128ELj1024E"),
    PAGED_32.replace("ILb0ELj32ELj128ELj128E", "ILb0ELj16ELj32ELj128E"),  # 32 is not the tile
    PAGED_32.replace("Paged", "Pagex"),
    "_ZN10flashinfer28SinglePrefillWithKVCacheDispatchedILj32ELj128ELj128E",
])
def test_anything_else_does_not_match(symbol):
    assert us.known_unreachable("0.7.4", symbol) is None


def test_every_entry_says_release_template_and_why():
    for release, table in us.UNREACHABLE.items():
        for e in table:
            assert e.release == release and e.template and "FA2DetermineCtaTileQ" in e.why
