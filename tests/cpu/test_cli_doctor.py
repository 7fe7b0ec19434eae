"""``python -m flashinfer_cy doctor``: output goes where sys.stdout points when it runs, and a
kernel source that locate() would fail on is reported as a failure, not as available."""

import contextlib
import io
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _wheelserver import ARCH, WHEEL_NAME, artifacts_env, build_wheel, write_manifest  # noqa: E402,F401

import flashinfer_cy.cli as fcli  # noqa: E402
from cuda_guard import no_cuda  # noqa: E402
from flashinfer_cy.artifacts import fetch_modules, locate_module, settings, where_is  # noqa: E402
from flashinfer_cy.errors import ArtifactError  # noqa: E402

NAME = WHEEL_NAME.format(arch=ARCH)


@pytest.fixture(autouse=True)
def _no_cuda(monkeypatch):
    """doctor runs in this process: it must not load the CUDA runtime (on a GPU machine it
    would, and stay loaded: later tests' guards patch the Python entry points, which a
    loaded runtime bypasses, and their deliberately fake stream handles then reach the
    driver). Its cuda-runtime and smoke steps report the refusal instead."""
    no_cuda(monkeypatch)


@pytest.fixture
def cached(artifacts_env):
    wheel = build_wheel(artifacts_env / NAME)
    write_manifest(artifacts_env / "manifest.json", wheel, "http://127.0.0.1:9/" + NAME)
    fetch_modules(["norm"], wheel=wheel["path"])
    return wheel


def doctor() -> tuple[int, str]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):  # after flashinfer_cy.cli was imported
        code = fcli.main(["doctor"])
    return code, buf.getvalue()


def test_doctor_writes_to_the_current_stdout(cached):
    _, out = doctor()  # the exit status depends on the machine's GPU (the smoke test)
    assert "] python " in out and "] flashinfer_cy " in out  # the report lines, not only the prints
    assert "norm: cache " in out and "] kernel sources" not in out


def test_report_resolves_stdout_when_printing(capsys):
    fcli.Report().line(fcli.OK, "x", "y")
    assert "[  ok] x" in capsys.readouterr().out


def test_unusable_local_wheel_is_a_doctor_failure(cached, artifacts_env, monkeypatch):
    (artifacts_env / "other.whl").write_bytes(b"not a wheel")
    monkeypatch.setenv(settings.KERNEL_WHEEL_ENV, str(artifacts_env / "other.whl"))
    monkeypatch.setenv(settings.OFFLINE_ENV, "1")
    with pytest.raises(ArtifactError, match="matches no pinned wheel"):
        locate_module("norm")
    with pytest.raises(ArtifactError, match="matches no pinned wheel"):  # where_is agrees with locate
        where_is("norm")
    code, out = doctor()
    assert "norm: error: kernel wheel" in out and "norm: cache" not in out
    assert "[FAIL] kernel sources" in out and "result: FAILED" in out and code == 1
