"""Bad settings and bad manifests are refused up front, naming the variable or the field."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _wheelserver import ARCH, WHEEL_NAME, artifacts_env, build_wheel, write_manifest  # noqa: E402,F401

from flashinfer_cy.artifacts import describe_sources, locate_module, locate_module_ex, settings  # noqa: E402
from flashinfer_cy.artifacts.manifest import load_manifest  # noqa: E402
from flashinfer_cy.artifacts.settings import HttpPolicy  # noqa: E402
from flashinfer_cy.errors import ArtifactError  # noqa: E402

NAME = WHEEL_NAME.format(arch=ARCH)
NOWHERE = "http://127.0.0.1:9/" + NAME


@pytest.fixture
def local_wheel(artifacts_env, monkeypatch):
    """An unpinned wheel given by FLASHINFER_CY_KERNEL_WHEEL (needs a user sha256)."""
    pinned = build_wheel(artifacts_env / NAME)
    write_manifest(artifacts_env / "manifest.json", pinned, NOWHERE)
    mine = build_wheel(artifacts_env / "mine.whl")
    monkeypatch.setenv(settings.OFFLINE_ENV, "1")
    monkeypatch.setenv(settings.KERNEL_WHEEL_ENV, str(mine["path"]))
    return mine


# -- 10. FLASHINFER_CY_KERNEL_WHEEL_SHA256 -------------------------------------------------------
@pytest.mark.parametrize("form", ["{}", "sha256:{}", "SHA256:{}", " {} "])
def test_user_sha256_forms(local_wheel, monkeypatch, form):
    monkeypatch.setenv(settings.KERNEL_WHEEL_SHA256_ENV, form.format(local_wheel["sha256"].upper()))
    step, path = locate_module_ex("norm")
    assert step == "local_wheel" and path.read_bytes() == local_wheel["modules"]["norm"]
    assert path.is_relative_to(Path(settings.cache_root()) / local_wheel["sha256"])


@pytest.mark.parametrize("bad", ["../../escaped", "abc", "sha256:", "md5:" + "a" * 32, "g" * 64, "a" * 65])
def test_bad_user_sha256_is_value_error_and_creates_nothing(local_wheel, artifacts_env, monkeypatch, bad):
    monkeypatch.setenv(settings.KERNEL_WHEEL_SHA256_ENV, bad)
    with pytest.raises(ValueError, match=settings.KERNEL_WHEEL_SHA256_ENV) as info:
        locate_module("norm")
    assert isinstance(info.value, ArtifactError)
    assert sorted(p.name for p in artifacts_env.iterdir()) == sorted([NAME, "manifest.json", "mine.whl"])


# -- 11. manifest fields -------------------------------------------------------------------------
def _set(*path_and_value):
    *path, value = path_and_value

    def mutate(doc):
        target = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return mutate


PLAIN = "filename must be a plain file name"
BAD_MANIFESTS = {
    "sha256 null": (_set("wheels", "cu130", ARCH, "sha256", None), f"wheels.cu130.{ARCH}.sha256 is missing or null"),
    "cuda a list": (_set("cuda", ["13.0"]), "cuda must be an object"),
    "cuda value a number": (_set("cuda", "13.0", 130), r"cuda\.13\.0 must be a string"),
    "wheels a list": (_set("wheels", []), "wheels must be an object"),
    "arch a string": (_set("wheels", "cu130", "x"), "wheels.cu130 must be an object"),
    "size a string": (_set("wheels", "cu130", ARCH, "size", "123"), f"wheels.cu130.{ARCH}.size must be an integer"),
    "size negative": (_set("wheels", "cu130", ARCH, "size", -1), "size must be an integer >= 0"),
    "size a bool": (_set("wheels", "cu130", ARCH, "size", True), "size must be an integer"),
    "members a list": (_set("wheels", "cu130", ARCH, "members", ["x"]), "members must be an object"),
    "member size a string": (_set("wheels", "cu130", ARCH, "members", {"x": "1"}),
                             r"members\['x'\] must be an integer"),
    "filename with a path": (_set("wheels", "cu130", ARCH, "filename", "../../../escaped.whl"), PLAIN),
    "filename is ..": (_set("wheels", "cu130", ARCH, "filename", ".."), PLAIN),
    "filename with a backslash": (_set("wheels", "cu130", ARCH, "filename", "a\\b.whl"), PLAIN),
    "url a number": (_set("wheels", "cu130", ARCH, "url", 7), "url must be a string"),
    "record_path escapes": (_set("wheels", "cu130", ARCH, "record_path", "../RECORD"), "record_path: unsafe"),
    "package missing": (lambda doc: doc.pop("package"), "package is missing"),
    "empty document": (lambda doc: doc.clear(), "package is missing"),
}


@pytest.mark.parametrize("case", sorted(BAD_MANIFESTS))
def test_bad_manifest_field_is_named(artifacts_env, case):
    mutate, message = BAD_MANIFESTS[case]
    path = artifacts_env / "manifest.json"
    write_manifest(path, {"sha256": "ab" * 32, "size": 1, "record_path": None, "record_sha256": None, "members": None},
                   NOWHERE)
    doc = json.loads(path.read_text())
    mutate(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(ArtifactError, match=f"manifest {path} is malformed: .*{message}"):
        load_manifest()


def test_manifest_that_is_not_an_object(artifacts_env):
    (artifacts_env / "manifest.json").write_text("[]")
    with pytest.raises(ArtifactError, match="must be an object, got list"):
        load_manifest()


# -- 12. HTTP settings and the mirror URL --------------------------------------------------------
@pytest.mark.parametrize("var,value", [
    (settings.HTTP_TIMEOUT_ENV, "nan"), (settings.HTTP_TIMEOUT_ENV, "inf"), (settings.HTTP_TIMEOUT_ENV, "0"),
    (settings.HTTP_TIMEOUT_ENV, "-1"), (settings.HTTP_TIMEOUT_ENV, "1e300"), (settings.HTTP_TIMEOUT_ENV, "soon"),
    (settings.HTTP_BACKOFF_ENV, "inf"), (settings.HTTP_BACKOFF_ENV, "-0.5"), (settings.HTTP_BACKOFF_ENV, "nan"),
    (settings.HTTP_RETRIES_ENV, "1e3"), (settings.HTTP_RETRIES_ENV, "-1"), (settings.HTTP_RETRIES_ENV, "2.5"),
])
def test_bad_http_setting_is_value_error_naming_it(monkeypatch, var, value):
    monkeypatch.setenv(var, value)
    with pytest.raises(ValueError, match=f"{var}={value!r}"):
        HttpPolicy.from_env()


@pytest.mark.parametrize("var,value", [(settings.HTTP_TIMEOUT_ENV, "0.5"), (settings.HTTP_BACKOFF_ENV, "0"),
                                       (settings.HTTP_RETRIES_ENV, "0")])
def test_good_http_settings(monkeypatch, var, value):
    monkeypatch.setenv(var, value)
    HttpPolicy.from_env()


@pytest.mark.parametrize("base", ["mirror.local/wheels", "mirror.local:8080/wheels", "//mirror.local/w", "http:///w"])
def test_mirror_url_without_scheme_is_value_error(artifacts_env, monkeypatch, base):
    write_manifest(artifacts_env / "manifest.json", build_wheel(artifacts_env / NAME), NOWHERE)
    monkeypatch.setenv(settings.WHEEL_BASE_URL_ENV, base)
    with pytest.raises(ValueError, match=settings.WHEEL_BASE_URL_ENV):
        locate_module("norm", progress=False)
    row = [r for r in describe_sources() if r["step"] == "download"][0]
    assert row["status"].startswith("unusable:") and settings.WHEEL_BASE_URL_ENV in row["status"]


@pytest.mark.parametrize("base", ["https://mirror.example/whl/", "file:///srv/wheels", "http://127.0.0.1:8080"])
def test_mirror_url_forms(monkeypatch, base):
    monkeypatch.delenv(settings.MANIFEST_ENV, raising=False)
    monkeypatch.setenv(settings.WHEEL_BASE_URL_ENV, base)
    url = load_manifest().select("13.0", "x86_64").download_url()
    assert url.startswith(base.rstrip("/") + "/flashinfer_jit_cache-0.6.3%2Bcu130")

