"""Resolution order (a) kernel dir, (b) local wheel, (c) installed package, (d) cache, (e) download."""

import hashlib
import json
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _wheelserver import (  # noqa: E402,F401
    ARCH, WHEEL_NAME, artifacts_env, build_wheel, served_wheel, write_manifest,
)

from flashinfer_cy.artifacts import (  # noqa: E402
    describe_sources, fetch_modules, locate_module, locate_module_ex, platform_info, settings, where_is,
)
from flashinfer_cy.errors import (  # noqa: E402
    ArtifactError, ChecksumMismatchError, KernelNotFoundError, UnsupportedPlatformError,
)

NAME = WHEEL_NAME.format(arch=ARCH)
NOWHERE = "http://127.0.0.1:9/" + NAME  # discard port: any request would fail loudly


@pytest.fixture
def local_wheel(artifacts_env):
    """A wheel on disk, pinned by the manifest but at an unreachable URL."""
    wheel = build_wheel(artifacts_env / NAME)
    write_manifest(artifacts_env / "manifest.json", wheel, NOWHERE)
    return wheel


@pytest.mark.parametrize("bad", ["../norm", "a/b", "", "norm/../x", ".hidden", 7])
def test_malformed_uri_is_value_error(artifacts_env, bad):
    with pytest.raises(ValueError, match="uri"):
        locate_module(bad)


def test_a_kernel_dir_wins(served_wheel, tmp_path, monkeypatch):
    server, wheel, _ = served_wheel
    kdir = tmp_path / "built"
    (kdir / "norm").mkdir(parents=True)
    (kdir / "norm" / "norm.so").write_bytes(b"mine")
    (kdir / "page.so").write_bytes(b"flat layout")
    monkeypatch.setenv(settings.KERNEL_DIR_ENV, str(kdir))
    assert locate_module_ex("norm") == ("kernel_dir", kdir / "norm" / "norm.so")
    assert locate_module("page") == kdir / "page.so"
    assert where_is("norm") == ("kernel_dir", kdir / "norm" / "norm.so")
    assert server.gets() == []
    # a module the directory lacks falls through to the later steps
    assert where_is("gdn_prefill_sm90") == ("download", None)
    assert locate_module_ex("gdn_prefill_sm90", progress=False)[0] == "download"


def test_b_local_wheel_pinned_by_name(local_wheel, monkeypatch):
    monkeypatch.setenv(settings.KERNEL_WHEEL_ENV, str(local_wheel["path"]))
    assert where_is("norm") == ("local_wheel", None)
    step, path = locate_module_ex("norm")
    assert step == "local_wheel" and path.read_bytes() == local_wheel["modules"]["norm"]
    assert path.is_relative_to(Path(settings.cache_root()) / local_wheel["sha256"])  # extracted into the cache
    assert where_is("norm") == ("local_wheel", path)


def test_b_local_wheel_renamed_is_matched_by_hash(local_wheel, monkeypatch, artifacts_env):
    renamed = local_wheel["path"].rename(artifacts_env / "renamed.whl")
    monkeypatch.setenv(settings.KERNEL_WHEEL_ENV, str(renamed))
    assert locate_module_ex("page")[0] == "local_wheel"


def test_b_local_wheel_wrong_user_sha_extracts_nothing(local_wheel, monkeypatch):
    monkeypatch.setenv(settings.KERNEL_WHEEL_ENV, str(local_wheel["path"]))
    monkeypatch.setenv(settings.KERNEL_WHEEL_SHA256_ENV, "cd" * 32)
    with pytest.raises(ChecksumMismatchError, match="local wheel") as info:
        locate_module("norm")
    assert info.value.expected == "cd" * 32 and info.value.actual == local_wheel["sha256"]
    assert not (Path(settings.cache_root()) / ("cd" * 32) / "files").exists()


def test_b_unpinned_wheel_needs_user_sha(artifacts_env, local_wheel, monkeypatch):
    other = build_wheel(artifacts_env / "custom.whl")
    monkeypatch.setenv(settings.KERNEL_WHEEL_ENV, str(other["path"]))
    with pytest.raises(ArtifactError, match=f"{settings.KERNEL_WHEEL_SHA256_ENV}.*{re.escape(NAME)}"):
        locate_module("norm")
    monkeypatch.setenv(settings.KERNEL_WHEEL_SHA256_ENV, other["sha256"].upper())
    assert locate_module("norm").read_bytes() == other["modules"]["norm"]


def test_b_module_missing_from_local_wheel_falls_through(served_wheel, artifacts_env, monkeypatch):
    server, wheel, _ = served_wheel
    small = build_wheel(artifacts_env / "small.whl", {"norm": b"only norm"})
    monkeypatch.setenv(settings.KERNEL_WHEEL_ENV, str(small["path"]))
    monkeypatch.setenv(settings.KERNEL_WHEEL_SHA256_ENV, small["sha256"])
    assert locate_module_ex("norm")[0] == "local_wheel"
    step, path = locate_module_ex("page", progress=False)
    assert step == "download" and path.read_bytes() == wheel["modules"]["page"]


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """A fake installed flashinfer_jit_cache whose __init__ raises if anybody imports it."""
    def make(version):
        site = tmp_path / f"site-{version}"
        pkg = site / "flashinfer_jit_cache"
        (pkg / "jit_cache" / "norm").mkdir(parents=True)
        (pkg / "__init__.py").write_text("raise ImportError('must not be imported')\n")
        (pkg / "jit_cache" / "norm" / "norm.so").write_bytes(b"installed norm")
        dist = site / f"flashinfer_jit_cache-{version}.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: flashinfer-jit-cache\nVersion: {version}\n")
        monkeypatch.syspath_prepend(str(site))
        return pkg
    return make


def test_c_installed_package_found_without_import(local_wheel, installed):
    pkg = installed("0.6.3+cu130")
    assert where_is("norm") == ("installed_package", pkg / "jit_cache" / "norm" / "norm.so")
    assert locate_module_ex("norm") == ("installed_package", pkg / "jit_cache" / "norm" / "norm.so")
    assert "flashinfer_jit_cache" not in sys.modules
    row = [r for r in describe_sources() if r["step"] == "installed_package"][0]
    assert row["configured"] and row["status"] == "version 0.6.3+cu130"


@pytest.mark.parametrize("version", ["0.6.30", "0.6.2+cu130", "0.6.3+cu129"])
def test_c_installed_package_wrong_version_skipped(local_wheel, installed, version):
    installed(version)
    assert where_is("norm") == ("download", None)
    row = [r for r in describe_sources() if r["step"] == "installed_package"][0]
    assert not row["configured"] and version in row["status"]


def test_c_installed_package_of_the_selected_release(local_wheel, installed, monkeypatch):
    """FLASHINFER_CY_FLASHINFER_VERSION picks the installed package's release too: an installed
    0.7.4 serves a 0.7.4 selection and not the default, and the 0.6.3 one the reverse."""
    pkg = installed("0.7.4+cu130")
    row = [r for r in describe_sources() if r["step"] == "installed_package"][0]
    assert not row["configured"] and "need 0.6.3" in row["status"]
    monkeypatch.setenv(settings.FLASHINFER_VERSION_ENV, "0.7.4")
    assert where_is("norm") == ("installed_package", pkg / "jit_cache" / "norm" / "norm.so")


def test_d_cache_serves_offline_after_download(served_wheel, monkeypatch):
    server, wheel, _ = served_wheel
    assert locate_module_ex("norm", progress=False)[0] == "download"
    server.log.clear()
    monkeypatch.setenv(settings.OFFLINE_ENV, "1")
    assert locate_module_ex("norm")[0] == "cache"
    # the full wheel stays cached: another module is extracted from it without the network
    assert where_is("page") == ("cache", None)
    step, path = locate_module_ex("page")
    assert step == "cache" and path.read_bytes() == wheel["modules"]["page"]
    assert server.gets() == []


def test_e_offline_without_cache_is_clear(local_wheel, monkeypatch):
    monkeypatch.setenv(settings.OFFLINE_ENV, "1")
    assert where_is("norm") == ("missing", None)
    with pytest.raises(KernelNotFoundError, match=settings.OFFLINE_ENV):
        locate_module("norm")


def test_unsupported_cuda_lists_supported(local_wheel, monkeypatch):
    monkeypatch.setenv(settings.CUDA_VERSION_ENV, "12.8")
    with pytest.raises(UnsupportedPlatformError, match=r"CUDA 12\.8.*CUDA 13\.0 \(cu130\).*CUDA 13\.1 \(cu130\)"):
        locate_module("norm")
    assert where_is("norm") == ("missing", None)
    assert platform_info()["wheel"].startswith("none:")


def test_cuda_13_1_uses_cu130_wheel(served_wheel, monkeypatch):
    server, wheel, _ = served_wheel
    monkeypatch.setenv(settings.CUDA_VERSION_ENV, "13.1")
    assert locate_module("norm", progress=False).read_bytes() == wheel["modules"]["norm"]
    assert platform_info()["wheel"].startswith("cu130/")


def test_fetch_modules_default_and_full(served_wheel):
    server, wheel, _ = served_wheel
    paths = fetch_modules(progress=False)
    assert set(paths) == {"norm", "page", "gdn_prefill_sm90"}
    for uri, path in paths.items():
        assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(wheel["modules"][uri]).digest()
    with pytest.raises(KernelNotFoundError, match="no_such_module"):
        fetch_modules(["no_such_module"], progress=False)


def test_describe_sources_rows(served_wheel, tmp_path, monkeypatch):
    monkeypatch.setenv(settings.KERNEL_DIR_ENV, str(tmp_path / "absent"))
    rows = describe_sources()
    assert [r["step"] for r in rows] == ["kernel_dir", "local_wheel", "installed_package", "cache", "download"]
    assert [r["order"] for r in rows] == list("abcde")
    assert all(set(r) == {"step", "order", "configured", "location", "status"} for r in rows)
    assert rows[0]["configured"] and rows[0]["status"] == "does not exist"
    assert "CUDA 13.0" in rows[3]["status"] and rows[4]["status"].startswith("full download")
    json.dumps(rows)  # plain data, printable by doctor --json
