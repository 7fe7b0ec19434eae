"""Which FlashInfer release a kernel set is, and Bindings that refuse a release whose
argument list differs (issue 19 item 3; docs/abi-versions.md "Which version a kernel set is").

The version comes from the module's source (flashinfer_cy.artifacts.locate_module_source):
the kernel dir's flashinfer_version.txt, the wheel file name, the installed
flashinfer_jit_cache, or FLASHINFER_CY_FLASHINFER_VERSION. A Binding checks it once, before
its first call: the stand-in module (fake_versions.cc, 0.6.3's argument lists) counts the
calls that reach its sampling_from_probs and radix_topk, so "refused" means never called.
"""

from __future__ import annotations

import io
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _wheelserver import ARCH, WHEEL_NAME, artifacts_env, build_wheel, write_manifest  # noqa: E402,F401
from testmod_build import HERE, compile_module, mark_kernel_dir  # noqa: E402

import flashinfer_cy as fc  # noqa: E402
from flashinfer_cy._core import runtime  # noqa: E402
from flashinfer_cy.abi import match  # noqa: E402
from flashinfer_cy.artifacts import fetch_modules, locate_module_source, settings  # noqa: E402
from flashinfer_cy.artifacts.cli import print_sources  # noqa: E402
from flashinfer_cy.errors import KernelVersionError, SettingsError  # noqa: E402
from flashinfer_cy.kernels import gdn, norm, sampling, topk  # noqa: E402

URIS = ("norm", "sampling", "topk", "gdn_prefill_sm90")
NAME = WHEEL_NAME.format(arch=ARCH)


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory):
    return compile_module(HERE / "fake_versions.cc",
                          tmp_path_factory.mktemp("fake_versions") / "versions.so")


@pytest.fixture
def kernel_set(stand_in, tmp_path, monkeypatch):
    """``make(version)``: a FLASHINFER_CY_KERNEL_DIR holding the stand-in under every URI,
    marked as ``version`` (None: no marker), replacing the last one. Modules loaded here are
    forgotten after."""
    before = dict(runtime._modules)
    monkeypatch.delenv(settings.FLASHINFER_VERSION_ENV, raising=False)
    monkeypatch.setenv(settings.OFFLINE_ENV, "1")

    def make(version):
        # a module is looked up by URI once per process: each set starts from none loaded
        monkeypatch.setattr(runtime, "_modules", dict(before))
        root = tmp_path / f"kernels-{version}"
        for uri in URIS:
            if not (root / uri).is_dir():  # never overwrite a file that may be dlopen'd
                (root / uri).mkdir(parents=True)
                shutil.copy(stand_in, root / uri / f"{uri}.so")
        if version is not None:
            mark_kernel_dir(root, version)
        monkeypatch.setenv(settings.KERNEL_DIR_ENV, str(root))
        return root
    return make


def fresh(table_line):
    """A new Binding with a table's line (a table's own Binding caches its Function for the
    whole process)."""
    return fc.Binding(table_line.uri, table_line.symbol, table_line.signature)


def refused_calls(uri):
    """Calls that reached the stand-in's sampling_from_probs / radix_topk (each URI's file
    is its own copy, its own counter)."""
    return fc.load_module(uri).function("refused_calls")()


def call_rmsnorm(b):
    rng = np.random.default_rng()
    x = rng.standard_normal((4, 64)).astype(np.float32)
    w = rng.standard_normal(64).astype(np.float32)
    out = np.full_like(x, np.nan)
    b(out, x, w, 1e-6, False)
    x64 = x.astype(np.float64)
    ref = x64 / np.sqrt((x64 * x64).mean(-1, keepdims=True) + 1e-6) * w
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)


CHANGED = {  # 0.7.4 changed their argument lists (known_differences.py)
    "sampling_from_probs": (sampling.SAMPLING_FROM_PROBS, lambda: (
        np.full((2, 8), 0.125, np.float32), np.zeros(2, np.int32), None, False, 1, 2)),
    "radix_topk": (topk.RADIX_TOPK, lambda: (
        np.random.default_rng().standard_normal((2, 8)).astype(np.float32),
        np.zeros((2, 2), np.int32), np.zeros((2, 2), np.float32), None, 2)),
}


# ----------------------------------------------------------------- the check at first call
def test_unchanged_export_runs_on_another_release(kernel_set):
    kernel_set("0.7.4")  # norm.rmsnorm is unchanged in 0.7.4
    b = fresh(norm.RMSNORM)
    call_rmsnorm(b)
    call_rmsnorm(b)


@pytest.mark.parametrize("symbol", sorted(CHANGED))
def test_changed_export_is_refused_never_called(kernel_set, symbol):
    line, args = CHANGED[symbol]
    kernel_set("0.6.3")  # control: on the release the tables are for, the call arrives
    fresh(line)(*args())
    assert refused_calls(line.uri) == 1
    root = kernel_set("0.7.4")
    b = fresh(line)
    for _ in range(2):  # refused at every attempt, never called
        with pytest.raises(KernelVersionError) as exc:
            b(*args())
        assert refused_calls(line.uri) == 0
    msg = str(exc.value)
    for part in (f"module {line.uri!r}", str(root / line.uri), "flashinfer 0.7.4",
                 f"{root / 'flashinfer_version.txt'}", "written for flashinfer 0.6.3",
                 f"arity: flashinfer 0.7.4 declares", "supported: flashinfer 0.6.3",
                 "FLASHINFER_CY_FLASHINFER_VERSION", "tools/build_kernels.py",
                 "the pinned wheel"):
        assert part in msg, (part, msg)
    assert isinstance(exc.value, fc.FlashInferError) and isinstance(exc.value, RuntimeError)


def test_missing_module_or_export_names_the_release_that_has_it(kernel_set):
    kernel_set("0.7.4")  # 0.7.x has no gdn_prefill_sm90 module
    with pytest.raises(KernelVersionError, match=r"gdn_prefill is not in it: module "
                       r"gdn_prefill_sm90 is not built by flashinfer 0.7.4.*It exists in "
                       r"flashinfer 0\.6\.3 .*Reviewed \(flashinfer_cy/abi/known_differences"
                       r"\.py\): 0\.7\.x builds no GDN prefill module for sm_90: .*CuTe-DSL"):
        fresh(gdn.GDN_PREFILL).load()
    kernel_set("0.6.3")  # an export only 0.7.4 has, asked of a 0.6.3 module
    b = fc.Binding("norm", "fused_qk_rmsnorm_rope", "input:T out:T!")
    with pytest.raises(KernelVersionError, match=r"fused_qk_rmsnorm_rope is not in it: export "
                       r"fused_qk_rmsnorm_rope is not in module norm of flashinfer 0\.6\.3.*"
                       r"It exists in flashinfer 0\.7\.4 "):
        b.load()


def test_unknown_version_is_refused_until_vouched_for(kernel_set, monkeypatch):
    root = kernel_set(None)
    with pytest.raises(KernelVersionError) as exc:
        call_rmsnorm(fresh(norm.RMSNORM))
    msg = str(exc.value)
    assert "flashinfer version is unknown" in msg and "flashinfer_version.txt" in msg
    assert f"{settings.KERNEL_DIR_ENV}={root}" in msg and "FLASHINFER_CY_FLASHINFER_VERSION" in msg
    monkeypatch.setenv(settings.FLASHINFER_VERSION_ENV, "0.6.3")
    kernel_set(None)  # the same files, loaded afresh: the setting vouches for them
    call_rmsnorm(fresh(norm.RMSNORM))
    assert fc.load_module("norm").version_from == settings.FLASHINFER_VERSION_ENV


def test_release_without_an_abi_file_is_refused(kernel_set):
    kernel_set("0.5.0")
    with pytest.raises(KernelVersionError, match=r"is flashinfer 0\.5\.0 .*no ABI of flashinfer "
                       r"0\.5\.0 is extracted.*supported: flashinfer 0\.6\.3, and for the exports "
                       r"whose argument list did not change, 0\.7\.4"):
        call_rmsnorm(fresh(norm.RMSNORM))


def test_the_check_runs_once_per_binding(kernel_set, monkeypatch):
    kernel_set("0.7.4")
    seen = []
    real = match.require_match
    monkeypatch.setattr(match, "require_match", lambda *a: seen.append(a[:2]) or real(*a))
    b = fresh(norm.RMSNORM)
    for _ in range(3):
        call_rmsnorm(b)
    assert seen == [("norm", "rmsnorm")]
    call_rmsnorm(fresh(norm.RMSNORM))  # another Binding checks for itself
    assert len(seen) == 2


def test_load_module_path_takes_the_version_from_its_caller(stand_in, tmp_path, monkeypatch):
    monkeypatch.setattr(runtime, "_modules", dict(runtime._modules))
    monkeypatch.delenv(settings.FLASHINFER_VERSION_ENV, raising=False)
    so = tmp_path / "sampling.so"
    shutil.copy(stand_in, so)
    mod = fc.load_module_path(so, uri="sampling")
    assert mod.flashinfer_version is None and "without flashinfer_version=" in mod.version_from
    with pytest.raises(KernelVersionError, match="flashinfer version is unknown"):
        fresh(sampling.SAMPLING_FROM_PROBS).load()
    assert fc.load_module_path(so, uri="sampling", flashinfer_version="0.7.4") is mod
    assert mod.flashinfer_version == "0.7.4"
    with pytest.raises(KernelVersionError, match="flashinfer 0.7.4 declares another"):
        fresh(sampling.SAMPLING_FROM_PROBS).load()
    with pytest.raises(KernelVersionError, match=r"loaded as flashinfer 0\.7\.4 .* now says "
                       r"flashinfer 0\.6\.3"):
        fc.load_module_path(so, flashinfer_version="0.6.3")
    for bad in (63, "", b"0.6.3"):
        with pytest.raises(TypeError, match="flashinfer_version: expected a FlashInfer version"):
            fc.load_module_path(so, flashinfer_version=bad)


# ----------------------------------------------------------------- the version of each source
def test_kernel_dir_marker(kernel_set, tmp_path):
    root = kernel_set("0.7.4")
    assert tuple(locate_module_source("norm")) == (
        "kernel_dir", root / "norm" / "norm.so", "0.7.4", str(root / "flashinfer_version.txt"))
    (root / "flashinfer_version.txt").write_text("latest\n")
    src = locate_module_source("norm")
    assert src.flashinfer_version is None and "does not hold a version" in src.version_from
    (root / "flashinfer_version.txt").unlink()
    src = locate_module_source("norm")
    assert src.flashinfer_version is None and "has no flashinfer_version.txt" in src.version_from


def test_override_beats_the_marker_and_is_checked(kernel_set, monkeypatch):
    kernel_set("0.6.3")
    monkeypatch.setenv(settings.FLASHINFER_VERSION_ENV, "0.7.4")
    src = locate_module_source("norm")
    assert (src.flashinfer_version, src.version_from) == ("0.7.4", settings.FLASHINFER_VERSION_ENV)
    monkeypatch.setenv(settings.FLASHINFER_VERSION_ENV, "latest")
    with pytest.raises(SettingsError, match="FLASHINFER_CY_FLASHINFER_VERSION='latest'"):
        locate_module_source("norm")


@pytest.fixture
def pinned(artifacts_env):
    wheel = build_wheel(artifacts_env / NAME)
    write_manifest(artifacts_env / "manifest.json", wheel, "http://127.0.0.1:9/" + NAME)
    return wheel


def test_local_wheel_version_is_its_file_name(pinned, artifacts_env, monkeypatch):
    other = artifacts_env / NAME.replace("0.6.3", "0.7.4")  # the pinned bytes, another name
    shutil.copy(pinned["path"], other)
    monkeypatch.setenv(settings.KERNEL_WHEEL_ENV, str(other))
    src = locate_module_source("norm")
    assert (src.step, src.flashinfer_version, src.version_from) == (
        "local_wheel", "0.7.4", f"wheel {other.name}")


def test_cache_version_is_the_pinned_wheel_name(pinned, monkeypatch):
    fetch_modules(["norm"], wheel=pinned["path"])
    monkeypatch.setenv(settings.OFFLINE_ENV, "1")
    src = locate_module_source("norm")
    assert (src.step, src.flashinfer_version, src.version_from) == ("cache", "0.6.3", f"wheel {NAME}")
    buf = io.StringIO()
    print_sources(["norm"], out=buf, verify=False)  # what doctor prints
    assert f"norm: cache {src.path}\n      flashinfer 0.6.3 (wheel {NAME})" in buf.getvalue()


def test_installed_package_version(pinned, tmp_path, monkeypatch):
    site = tmp_path / "site"
    pkg = site / "flashinfer_jit_cache"
    (pkg / "jit_cache" / "norm").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise ImportError('must not be imported')\n")
    (pkg / "jit_cache" / "norm" / "norm.so").write_bytes(b"installed norm")
    dist = site / "flashinfer_jit_cache-0.6.3.post1+cu130.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: flashinfer-jit-cache\n"
                                   "Version: 0.6.3.post1+cu130\n")
    monkeypatch.syspath_prepend(str(site))
    src = locate_module_source("norm")
    assert (src.step, src.flashinfer_version, src.version_from) == (
        "installed_package", "0.6.3.post1", "installed flashinfer_jit_cache 0.6.3.post1+cu130")
    assert match.abi_version(src.flashinfer_version) == "0.6.3"  # a post release: same ABI


def test_doctor_says_an_unmarked_kernel_dir_is_refused(kernel_set):
    kernel_set(None)
    buf = io.StringIO()
    print_sources(["norm"], out=buf, verify=False)
    assert "flashinfer version: unknown" in buf.getvalue()
    assert "Bindings refuse to call it" in buf.getvalue()
