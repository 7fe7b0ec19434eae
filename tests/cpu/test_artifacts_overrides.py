"""Overriding a pinned hash for a download, settings that would be silently ignored, and the
offline message's advice."""

import logging
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _wheelserver import (  # noqa: E402,F401
    ARCH, WHEEL_NAME, WheelServer, artifacts_env, build_wheel, write_manifest,
)

from flashinfer_cy.artifacts import locate_module, settings  # noqa: E402
from flashinfer_cy.errors import ChecksumMismatchError, KernelNotFoundError  # noqa: E402

NAME = WHEEL_NAME.format(arch=ARCH)


@pytest.fixture
def other_build(artifacts_env):
    """The manifest pins one build (partial fetch on); the server has another under the same name."""
    (artifacts_env / "pinned").mkdir()
    pinned = build_wheel(artifacts_env / "pinned" / NAME)
    served = build_wheel(artifacts_env / NAME)
    with WheelServer({NAME: served["path"].read_bytes()}, max_lifetime=60) as server:
        write_manifest(artifacts_env / "manifest.json", pinned, server.url(NAME), partial=True)
        yield server, served


def test_pinned_hash_refuses_another_build(other_build):
    with pytest.raises(ChecksumMismatchError):
        locate_module("norm", progress=False)


def test_wheel_sha256_setting_overrides_the_pin_for_a_download(other_build, monkeypatch):
    server, served = other_build
    monkeypatch.setenv(settings.WHEEL_SHA256_ENV, "sha256:" + served["sha256"].upper())
    assert locate_module("norm", progress=False).read_bytes() == served["modules"]["norm"]
    assert server.gets()[0]["range"] is None  # the pinned RECORD is another build's: whole wheel, hashed
    assert (Path(settings.cache_root()) / served["sha256"] / NAME).is_file()


def test_wheel_sha256_setting_still_refuses_wrong_bytes(other_build, monkeypatch):
    monkeypatch.setenv(settings.WHEEL_SHA256_ENV, "ab" * 32)
    with pytest.raises(ChecksumMismatchError, match="expected " + "ab" * 32):
        locate_module("norm", progress=False)


def test_local_wheel_hash_without_the_wheel_warns_that_it_is_ignored(other_build, monkeypatch, caplog):
    _, served = other_build
    monkeypatch.setenv(settings.KERNEL_WHEEL_SHA256_ENV, served["sha256"])
    monkeypatch.setenv(settings.OFFLINE_ENV, "1")
    with caplog.at_level(logging.WARNING, logger="flashinfer_cy.artifacts"), pytest.raises(KernelNotFoundError):
        locate_module("norm")
    (warning,) = [r.getMessage() for r in caplog.records if "ignored" in r.getMessage()]
    assert warning.startswith(f"flashinfer_cy: {settings.KERNEL_WHEEL_SHA256_ENV} is ignored")
    assert settings.WHEEL_SHA256_ENV in warning


def test_missing_kernel_dir_warns_that_it_is_ignored(other_build, monkeypatch, caplog, tmp_path):
    monkeypatch.setenv(settings.KERNEL_DIR_ENV, str(tmp_path / "no-such-dir"))
    monkeypatch.setenv(settings.OFFLINE_ENV, "1")
    with caplog.at_level(logging.WARNING, logger="flashinfer_cy.artifacts"), pytest.raises(KernelNotFoundError):
        locate_module("norm")
    assert any("no-such-dir is not a directory; it is ignored" in r.getMessage() for r in caplog.records)


def test_offline_message_names_the_console_script_and_the_build_route(other_build, monkeypatch):
    monkeypatch.setenv(settings.OFFLINE_ENV, "1")
    with pytest.raises(KernelNotFoundError) as info:
        locate_module("norm")
    msg = str(info.value)
    assert "run `flashinfer-cy fetch`" in msg and "run `python -m flashinfer_cy fetch`" not in msg
    assert "tools/build_kernels.py" in msg and settings.KERNEL_DIR_ENV in msg and settings.KERNEL_WHEEL_ENV in msg
