"""Download errors a user can act on, and transport faults told apart from bad bytes.

Every failure names the URL, the status or OS error in words, the limits (and their settings)
and what to do next; a body cut short without a Content-Length is resumed, not called
tampering; a server that trickles bytes is abandoned after the minimum-speed window.
"""

import hashlib
import logging
import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # helper next to this file, any import mode
from _wheelserver import WheelServer, refused_url  # noqa: E402

from flashinfer_cy.artifacts import settings  # noqa: E402
from flashinfer_cy.artifacts.download import download_file  # noqa: E402
from flashinfer_cy.artifacts.remote_zip import HttpRangeFile  # noqa: E402
from flashinfer_cy.artifacts.settings import HttpPolicy  # noqa: E402
from flashinfer_cy.errors import ChecksumMismatchError, DownloadError, SettingsError  # noqa: E402

BLOB = os.urandom(2 << 20)
SHA = hashlib.sha256(BLOB).hexdigest()
FAST = HttpPolicy(timeout=0.3, retries=2, backoff=0.01)
REMEDIES = ("FLASHINFER_CY_WHEEL_BASE_URL", "FLASHINFER_CY_KERNEL_WHEEL", "FLASHINFER_CY_KERNEL_DIR",
            "tools/build_kernels.py", "FLASHINFER_CY_OFFLINE", "flashinfer-cy fetch")


@pytest.fixture
def server():
    with WheelServer({"blob.bin": BLOB}, max_lifetime=60) as srv:
        yield srv


def fail(url, tmp_path, policy=FAST, **kw) -> str:
    with pytest.raises(DownloadError) as info:
        download_file(url, tmp_path / "blob.bin", SHA, policy=policy, progress=False, **kw)
    return str(info.value)


def assert_actionable(msg: str, url: str) -> None:
    assert url in msg, msg
    assert "FLASHINFER_CY_HTTP_TIMEOUT" in msg and "FLASHINFER_CY_HTTP_RETRIES" in msg, msg
    for hint in REMEDIES:
        assert hint in msg, (hint, msg)
    for repr_ in ("Error(", "Error'>", "<HTTPError", "<urlopen"):
        assert repr_ not in msg, msg


def test_http_500_names_url_status_limits_and_what_to_do(server, tmp_path):
    server.faults.extend([("status", 500)] * 10)
    msg = fail(server.url("blob.bin"), tmp_path)
    assert "after 3 attempts: HTTP 500 Internal Server Error" in msg and "0.3 s" in msg
    assert_actionable(msg, server.url("blob.bin"))


def test_refused_connection_in_words(tmp_path):
    url = refused_url("blob.bin")
    msg = fail(url, tmp_path)
    assert "Connection refused (ECONNREFUSED)" in msg
    assert_actionable(msg, url)


def test_timeout_names_value_and_setting(server, tmp_path):
    server.faults.extend([("stall", 0)] * 3)
    msg = fail(server.url("blob.bin"), tmp_path)
    assert "timed out: no data for 0.3 s (FLASHINFER_CY_HTTP_TIMEOUT=0.3)" in msg
    assert_actionable(msg, server.url("blob.bin"))


def test_one_attempt_is_singular(server, tmp_path):
    server.faults.append(("status", 503))
    msg = fail(server.url("blob.bin"), tmp_path, HttpPolicy(timeout=0.3, retries=0))
    assert "after 1 attempt: HTTP 503" in msg and "0 retries" in msg and "1 attempts" not in msg


def test_404_is_not_retried_and_says_what_to_do(server, tmp_path):
    msg = fail(server.url("missing.bin"), tmp_path)
    assert "HTTP 404 Not Found" in msg and "not retried" in msg
    assert server.url("missing.bin") in msg and all(h in msg for h in REMEDIES)


def test_retry_warnings_carry_the_package_prefix(server, tmp_path, caplog):
    server.faults.append(("status", 502))
    with caplog.at_level(logging.WARNING, logger="flashinfer_cy.artifacts"):
        download_file(server.url("blob.bin"), tmp_path / "b", SHA, policy=FAST, progress=False)
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.startswith("flashinfer_cy: download of b: attempt 1 of 3 failed (HTTP 502 Bad Gateway)")


# -- a body without Content-Length that ends early ----------------------------------------------
def test_short_body_without_length_is_resumed_when_size_is_pinned(server, tmp_path, caplog):
    server.faults.append(("nolength", 1 << 20))
    with caplog.at_level(logging.WARNING, logger="flashinfer_cy.artifacts"):
        dest = download_file(server.url("blob.bin"), tmp_path / "b", SHA, size=len(BLOB), policy=FAST,
                             progress=False)
    assert dest.read_bytes() == BLOB
    first, second = server.gets()
    assert first["sent"] == 1 << 20 and second["range"] == f"bytes={1 << 20}-" and second["status"] == 206
    # measured by the pinned size, before any hashing (not the unknown-length probe)
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"the connection closed at byte {1 << 20} of {len(BLOB)}" in warning, warning


def test_short_body_without_any_length_is_resumed(server, tmp_path):
    server.faults.append(("nolength", 1 << 20))
    dest = download_file(server.url("blob.bin"), tmp_path / "b", SHA, policy=FAST, progress=False)
    assert dest.read_bytes() == BLOB
    assert [r["status"] for r in server.gets()] == [200, 206]


def test_whole_body_without_length_and_wrong_hash_is_a_mismatch(server, tmp_path):
    server.faults.append(("nolength", len(BLOB)))
    with pytest.raises(ChecksumMismatchError):
        download_file(server.url("blob.bin"), tmp_path / "b", "0" * 64, policy=FAST, progress=False)
    assert [r["status"] for r in server.gets()] == [200, 416]  # the probe proved it complete
    assert list(tmp_path.iterdir()) == []


# -- a server trickling one byte per second ------------------------------------------------------
TRICKLE = HttpPolicy(timeout=1.5, retries=1, backoff=0.01)  # 1 byte/s never trips a 1.5 s timeout


def test_trickling_server_is_abandoned_by_the_speed_rule(server, tmp_path):
    server.faults.extend([("trickle", 30)] * 2)
    started = time.monotonic()
    msg = fail(server.url("blob.bin"), tmp_path, TRICKLE)
    assert time.monotonic() - started < 10
    assert "too slow" in msg and "FLASHINFER_CY_HTTP_MIN_SPEED" in msg and "1024 bytes/s" in msg


def test_trickle_then_healthy_resumes(server, tmp_path):
    server.faults.append(("trickle", 30))
    dest = download_file(server.url("blob.bin"), tmp_path / "b", SHA, policy=TRICKLE, progress=False)
    assert dest.read_bytes() == BLOB
    first, second = server.gets()
    assert first["sent"] >= 1 and second["range"] == f"bytes={first['sent']}-"


def test_trickle_on_a_range_request_is_abandoned(server):
    server.faults.extend([("trickle", 30)] * 2)
    started = time.monotonic()
    with pytest.raises(DownloadError, match="too slow"):
        HttpRangeFile(server.url("blob.bin"), TRICKLE, tail=4096)
    assert time.monotonic() - started < 10


def test_min_speed_setting(monkeypatch):
    monkeypatch.setenv(settings.HTTP_MIN_SPEED_ENV, "0")
    assert HttpPolicy.from_env().min_speed == 0
    monkeypatch.delenv(settings.HTTP_MIN_SPEED_ENV)
    assert HttpPolicy.from_env().min_speed == HttpPolicy.min_speed == 1024
    monkeypatch.setenv(settings.HTTP_MIN_SPEED_ENV, "-1")
    with pytest.raises(SettingsError, match="FLASHINFER_CY_HTTP_MIN_SPEED"):
        HttpPolicy.from_env()
