"""Download faults: resume after reset, wrong sha256, 404/500, stall, Range ignored, stale .part."""

import hashlib
import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # helper next to this file, any import mode
from _wheelserver import WheelServer, artifacts_env, served_wheel  # noqa: E402,F401

from flashinfer_cy.artifacts import locate_module, settings  # noqa: E402
from flashinfer_cy.artifacts.download import download_file  # noqa: E402
from flashinfer_cy.artifacts.settings import HttpPolicy  # noqa: E402
from flashinfer_cy.errors import ChecksumMismatchError, DownloadError  # noqa: E402

BLOB = os.urandom(3 << 20)
SHA = hashlib.sha256(BLOB).hexdigest()
FAST = HttpPolicy(timeout=0.3, retries=2, backoff=0.01)


@pytest.fixture
def server():
    with WheelServer({"blob.bin": BLOB}) as srv:
        yield srv


def test_happy_path_and_callback(server, tmp_path):
    seen = []
    dest = download_file(server.url("blob.bin"), tmp_path / "blob.bin", SHA, policy=FAST,
                         progress=lambda done, total: seen.append((done, total)))
    assert dest.read_bytes() == BLOB
    assert seen[-1] == (len(BLOB), len(BLOB)) and all(a <= b for (a, _), (b, _) in zip(seen, seen[1:]))
    assert not (tmp_path / "blob.bin.part").exists()
    assert len(server.gets()) == 1


def test_resume_after_connection_reset(server, tmp_path):
    server.faults.append(("reset", 1 << 20))  # RST after 1 MiB
    dest = download_file(server.url("blob.bin"), tmp_path / "blob.bin", SHA, policy=FAST, progress=False)
    assert dest.read_bytes() == BLOB
    first, second = server.gets()
    assert first["range"] is None and second["range"].startswith("bytes=") and second["status"] == 206
    resumed_at = int(second["range"][6:-1])
    assert 0 < resumed_at <= first["sent"]  # nothing received twice beyond what the reset lost
    assert second["sent"] == len(BLOB) - resumed_at


def test_wrong_sha256_discards_bytes(server, tmp_path):
    with pytest.raises(ChecksumMismatchError) as info:
        download_file(server.url("blob.bin"), tmp_path / "blob.bin", "0" * 64, policy=FAST, progress=False)
    assert info.value.expected == "0" * 64 and info.value.actual == SHA and "blob.bin" in str(info.value)
    assert list(tmp_path.iterdir()) == []  # neither the file nor a .part survives
    assert len(server.gets()) == 1  # a proven-wrong body is not fetched again


def test_404_fails_fast_with_clear_error(server, tmp_path):
    with pytest.raises(DownloadError, match=r"missing\.bin failed: HTTP 404 Not Found"):
        download_file(server.url("missing.bin"), tmp_path / "x", SHA, policy=FAST, progress=False)
    assert len(server.gets()) == 1  # a wrong URL is not retried


def test_500_bounded_retries_then_error(server, tmp_path):
    server.faults.extend([("status", 500)] * 10)
    with pytest.raises(DownloadError, match="after 3 attempts: HTTP 500"):
        download_file(server.url("blob.bin"), tmp_path / "blob.bin", SHA, policy=FAST, progress=False)
    assert len(server.gets()) == FAST.retries + 1


def test_transient_500_then_success(server, tmp_path):
    server.faults.extend([("status", 503), ("status", 500)])
    assert download_file(server.url("blob.bin"), tmp_path / "b", SHA, policy=FAST, progress=False).read_bytes() == BLOB
    assert [r["status"] for r in server.gets()] == [503, 500, 200]


def test_stalled_server_times_out(server, tmp_path):
    server.faults.extend([("stall", 4096)] * 10)
    started = time.monotonic()
    with pytest.raises(DownloadError, match="timed out"):
        download_file(server.url("blob.bin"), tmp_path / "blob.bin", SHA, policy=FAST, progress=False)
    assert time.monotonic() - started < 3 * (FAST.timeout + 1)
    assert len(server.gets()) == FAST.retries + 1


def test_stall_then_resume(server, tmp_path):
    server.faults.append(("stall", 1 << 20))
    assert download_file(server.url("blob.bin"), tmp_path / "b", SHA, policy=FAST, progress=False).read_bytes() == BLOB
    assert server.gets()[1]["status"] == 206


def test_range_ignored_restarts_from_zero(server, tmp_path):
    server.ignore_range = True
    server.faults.append(("reset", 1 << 20))
    assert download_file(server.url("blob.bin"), tmp_path / "b", SHA, policy=FAST, progress=False).read_bytes() == BLOB
    first, second = server.gets()
    assert second["range"] and second["status"] == 200 and second["sent"] == len(BLOB)


def test_stale_part_with_wrong_bytes_is_replaced(server, tmp_path):
    (tmp_path / "blob.bin.part").write_bytes(os.urandom(1000))  # left by some other run, garbage
    assert download_file(server.url("blob.bin"), tmp_path / "blob.bin", SHA, policy=FAST, progress=False).read_bytes() == BLOB
    assert server.gets()[0]["range"] == "bytes=1000-" and server.gets()[1]["range"] is None


def test_complete_part_left_before_rename(server, tmp_path):
    (tmp_path / "blob.bin.part").write_bytes(BLOB)  # killed between last byte and rename
    assert download_file(server.url("blob.bin"), tmp_path / "blob.bin", SHA, policy=FAST, progress=False).read_bytes() == BLOB
    assert [r["status"] for r in server.gets()] == [416]


def test_locate_downloads_pinned_wheel_with_env_timeouts(served_wheel, monkeypatch):
    server, wheel, _ = served_wheel
    monkeypatch.setenv(settings.HTTP_TIMEOUT_ENV, "0.3")
    monkeypatch.setenv(settings.HTTP_RETRIES_ENV, "1")
    server.faults.extend([("stall", 0)] * 2)
    with pytest.raises(DownloadError, match="failed after 2 attempts"):
        locate_module("norm", progress=False)
    path = locate_module("norm", progress=False)  # the server is healthy again
    assert path.read_bytes() == wheel["modules"]["norm"]


def test_mirror_base_url(served_wheel, monkeypatch):
    server, wheel, _ = served_wheel
    name = wheel["path"].name
    server.files = {f"mirror/{name}": wheel["path"].read_bytes()}
    monkeypatch.setenv(settings.WHEEL_BASE_URL_ENV, server.url("mirror/"))
    assert locate_module("page", progress=False).read_bytes() == wheel["modules"]["page"]
    assert server.gets()[0]["path"] == f"mirror/{name}"


def test_proxy_env_is_honoured(server, tmp_path, monkeypatch):
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{server.port}")  # the test server plays the proxy
    url = "http://wheels.invalid/blob.bin"  # unresolvable: only a proxy can answer
    assert download_file(url, tmp_path / "b", SHA, policy=FAST, progress=False).read_bytes() == BLOB
    assert server.gets()[0]["target"] == url


def test_progress_bar_only_on_a_tty(server, tmp_path, monkeypatch, capsys):
    download_file(server.url("blob.bin"), tmp_path / "quiet", SHA, policy=FAST)
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    download_file(server.url("blob.bin"), tmp_path / "loud", SHA, policy=FAST)
    err = capsys.readouterr().err
    assert "loud" in err and "3.15M" in err
