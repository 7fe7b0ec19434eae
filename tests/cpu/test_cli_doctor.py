"""``python -m flashinfer_cy doctor``: output goes where sys.stdout points when it runs, and a
kernel source that locate() would fail on is reported as a failure, not as available."""

import contextlib
import io
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _wheelserver import ARCH, WHEEL_NAME, artifacts_env, build_wheel, rot_in_place, write_manifest  # noqa: E402,F401

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


# -- what doctor requires (see the module docstring of flashinfer_cy.cli) ------------------------
def fake_machine(monkeypatch, gpu: bool):
    """doctor's probes as on a machine with (or without) one GPU; the smoke kernel is stubbed."""
    def no_driver():
        raise RuntimeError("no CUDA driver (test)")

    monkeypatch.setattr(fcli, "_tvm_ffi", lambda: "libtvm_ffi (test)")  # no_cuda refuses the runtime
    monkeypatch.setattr(fcli, "_driver", (lambda: "CUDA driver API 13.0") if gpu else no_driver)
    monkeypatch.setattr(fcli, "_gpus", lambda: [(0, "Test GPU", (9, 0))])
    monkeypatch.setattr(fcli, "_cudart", lambda: "libcudart.so.13 (test)")
    monkeypatch.setattr(fcli, "_smoke_norm", lambda: "stubbed (test)")


@pytest.fixture
def nothing_cached(artifacts_env, monkeypatch):
    """A pinned wheel, an empty cache, and no network: no source can supply a module."""
    wheel = build_wheel(artifacts_env / NAME)
    write_manifest(artifacts_env / "manifest.json", wheel, "http://127.0.0.1:9/" + NAME)
    monkeypatch.setenv(settings.OFFLINE_ENV, "1")


def doctor_argv(*argv) -> tuple[int, str]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = fcli.main(["doctor", *argv])
    return code, buf.getvalue()


def test_missing_modules_fail_doctor_on_a_gpu_machine(nothing_cached, monkeypatch):
    fake_machine(monkeypatch, gpu=True)
    code, out = doctor_argv()
    assert "norm: missing" in out
    assert "[FAIL] kernel modules" in out and "missing: norm, page, gdn_prefill_sm90" in out
    assert "flashinfer-cy fetch" in out and "FLASHINFER_CY_KERNEL_DIR" in out
    assert "result: FAILED" in out and code == 1


def test_report_only_prints_the_same_and_exits_0(nothing_cached, monkeypatch):
    fake_machine(monkeypatch, gpu=True)
    code, out = doctor_argv("--report-only")
    assert "[FAIL] kernel modules" in out and "report only" in out and code == 0


def test_without_a_gpu_missing_modules_are_a_warning_that_names_them(nothing_cached, monkeypatch):
    """CI: a CPU machine without kernels passes, and is told what it lacks."""
    fake_machine(monkeypatch, gpu=False)
    code, out = doctor_argv()
    assert "[warn] kernel modules" in out and "missing: norm, page, gdn_prefill_sm90" in out
    assert "result: OK" in out and code == 0
    code, out = doctor_argv("--require-gpu")
    assert "[FAIL] kernel modules" in out and code == 1


def test_without_cuda_version_ci_machine_passes(artifacts_env, monkeypatch):
    """The CI machine: no GPU, no driver, no toolkit, so no wheel can even be chosen."""
    from flashinfer_cy.artifacts import host

    fake_machine(monkeypatch, gpu=False)
    monkeypatch.delenv(settings.CUDA_VERSION_ENV)
    monkeypatch.delenv(settings.MANIFEST_ENV)  # the packaged one
    monkeypatch.setattr(host, "PROBES", ())
    host._probe.cache_clear()
    try:
        code, out = doctor_argv()
    finally:
        host._probe.cache_clear()
    assert "norm: missing" in out and "[warn] kernel modules" in out and code == 0


def test_doctor_hashes_cached_modules(cached, artifacts_env, monkeypatch):
    """Bit rot that kept size and mtime passes the stat check; doctor hashes and fails."""
    fake_machine(monkeypatch, gpu=False)
    path = locate_module("norm")
    rot_in_place(path)
    assert locate_module("norm") == path  # the fast path trusts size + mtime (documented)
    code, out = doctor_argv()
    assert f"damaged: {path}: sha256" in out and "[FAIL] kernel cache" in out
    assert "fetch --verify" in out and code == 1
