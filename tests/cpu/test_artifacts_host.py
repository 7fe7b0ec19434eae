"""CUDA version / arch detection and manifest validation; none of it may need a GPU."""

import json
import sys
import types
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _wheelserver import artifacts_env  # noqa: E402,F401

from flashinfer_cy.artifacts import host, settings  # noqa: E402
from flashinfer_cy.artifacts.manifest import load_manifest, parse_manifest  # noqa: E402
from flashinfer_cy.errors import ArtifactError, UnsupportedPlatformError  # noqa: E402


@pytest.fixture
def no_probe_cache(artifacts_env, monkeypatch):
    monkeypatch.delenv(settings.CUDA_VERSION_ENV)
    for var in ("CUDA_HOME", "CUDA_PATH", "CUDA_ROOT"):
        monkeypatch.delenv(var, raising=False)
    host._probe.cache_clear()
    yield monkeypatch
    host._probe.cache_clear()


def test_every_probe_survives_this_machine():
    for probe in host.PROBES:  # no GPU/driver here: must return None or a version, never raise
        result = probe()
        assert result is None or result.count(".") == 1


def test_driver_version_via_cuda_python(no_probe_cache):
    fake = types.ModuleType("cuda.bindings")
    fake.driver = types.SimpleNamespace(cuDriverGetVersion=lambda: (0, 13010))
    no_probe_cache.setitem(sys.modules, "cuda.bindings", fake)
    assert host.detect_cuda_version() == ("13.1", "driver (cuda-python)")


def test_driver_error_falls_back_to_toolkit_version_json(no_probe_cache, tmp_path):
    fake = types.ModuleType("cuda.bindings")
    fake.driver = types.SimpleNamespace(cuDriverGetVersion=lambda: (_ for _ in ()).throw(RuntimeError("no driver")))
    no_probe_cache.setitem(sys.modules, "cuda.bindings", fake)
    no_probe_cache.setattr(host, "_driver_via_libcuda", lambda: None)
    no_probe_cache.setattr(host, "PROBES", (host._driver_via_cuda_python, host._driver_via_libcuda,
                                            host._toolkit_version_json))
    (tmp_path / "version.json").write_text(json.dumps({"cuda": {"name": "CUDA SDK", "version": "13.0.2"}}))
    no_probe_cache.setenv("CUDA_HOME", str(tmp_path))
    assert host.detect_cuda_version() == ("13.0", "toolkit (version.json)")


def test_nothing_found_is_clear(no_probe_cache):
    no_probe_cache.setattr(host, "PROBES", ())
    with pytest.raises(UnsupportedPlatformError, match=settings.CUDA_VERSION_ENV):
        host.detect_cuda_version()


@pytest.mark.parametrize("value", ["13", "thirteen", "13.0-rc"])
def test_bad_override_is_clear(artifacts_env, monkeypatch, value):
    monkeypatch.setenv(settings.CUDA_VERSION_ENV, value)
    with pytest.raises(UnsupportedPlatformError, match="not a CUDA version"):
        host.detect_cuda_version()


def test_packaged_manifest_pins(monkeypatch):
    monkeypatch.delenv(settings.MANIFEST_ENV, raising=False)
    manifest = load_manifest()
    assert manifest.select("13.0", "x86_64") is manifest.select("13.1", "x86_64")
    assert manifest.select("13.0", "x86_64").sha256 == "e5b0560aa02befa2964c76b8f9302959ed9fb2f558765b974753d68c4f8b4e1e"
    assert manifest.select("13.1", "aarch64").sha256 == "458fcf5a854334062503ce28bd6521c16029d2248246532421e824e8273b8a81"
    assert manifest.select("13.0", "aarch64").member_for("norm") == "flashinfer_jit_cache/jit_cache/norm/norm.so"
    with pytest.raises(UnsupportedPlatformError, match=r"CUDA 12\.9 on x86_64; supported: CUDA 13\.0"):
        manifest.select("12.9", "x86_64")
    with pytest.raises(UnsupportedPlatformError, match="ppc64le"):
        manifest.select("13.0", "ppc64le")


def test_mirror_url(monkeypatch):
    monkeypatch.delenv(settings.MANIFEST_ENV, raising=False)
    monkeypatch.setenv(settings.WHEEL_BASE_URL_ENV, "https://mirror.example/whl/")
    pin = load_manifest().select("13.0", "x86_64")
    assert pin.download_url() == "https://mirror.example/whl/flashinfer_jit_cache-0.6.3%2Bcu130-cp39-abi3-manylinux_2_28_x86_64.whl"


@pytest.mark.parametrize("breakage", ["bad_sha", "missing_key", "dangling_cuda"])
def test_malformed_manifest_fails_loudly(breakage):
    doc = json.loads((Path(host.__file__).with_name("manifest.json")).read_text())
    if breakage == "bad_sha":
        doc["wheels"]["cu130"]["x86_64"]["sha256"] = "xyz"
    elif breakage == "missing_key":
        del doc["wheels"]["cu130"]["x86_64"]["url"]
    else:
        doc["cuda"]["13.2"] = "cu132"
    with pytest.raises(ArtifactError, match="manifest"):
        parse_manifest(doc)
