"""Partial fetch: only the central directory, RECORD and the needed members travel (HTTP Range)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _wheelserver import (  # noqa: E402,F401
    ARCH, ATTN_URIS, PREFIX, PYTHON, WHEEL_NAME, WheelServer, artifacts_env, build_wheel, subprocess_env,
)

from flashinfer_cy.artifacts import locate_module, locate_module_ex, where_is  # noqa: E402
from flashinfer_cy.errors import ChecksumMismatchError, KernelNotFoundError  # noqa: E402

WHEEL_PINS = Path(__file__).resolve().parents[2] / "tools" / "wheel_pins.py"
NAME = WHEEL_NAME.format(arch=ARCH)


def pin_with_tool(server, url, manifest_path, **overrides):
    """Run tools/wheel_pins.py on the served URL and write the manifest it implies."""
    out = subprocess.run([PYTHON, str(WHEEL_PINS), url], env=subprocess_env(), capture_output=True,
                         text=True, timeout=60, check=True).stdout
    entry = json.loads(out)["cu130"][ARCH]
    entry.update(overrides)
    manifest_path.write_text(json.dumps({
        "schema": 1, "package": "flashinfer_jit_cache", "version": "0.6.3", "member_prefix": PREFIX,
        "cuda": {"13.0": "cu130"}, "wheels": {"cu130": {ARCH: entry}},
    }))
    server.log.clear()
    return entry


@pytest.fixture
def partial(artifacts_env):
    def make(**wheel_kwargs):
        wheel = build_wheel(artifacts_env / NAME, **wheel_kwargs)
        server = WheelServer({NAME: wheel["path"].read_bytes()}).__enter__()
        servers.append(server)
        entry = pin_with_tool(server, server.url(NAME), artifacts_env / "manifest.json")
        return server, wheel, entry

    servers = []
    yield make
    for s in servers:
        s.stop()


def test_wheel_pins_tool_output(partial):
    server, wheel, entry = partial()
    assert entry["sha256"] == wheel["sha256"] and entry["size"] == wheel["size"]
    assert entry["record_sha256"] == wheel["record_sha256"] and entry["record_path"] == wheel["record_path"]
    assert entry["members"] == wheel["members"] and entry["filename"] == NAME


def test_partial_fetch_sends_only_needed_bytes(partial, capsys, artifacts_env):
    server, wheel, entry = partial()
    uri = ATTN_URIS[0]
    step, path = locate_module_ex(uri, progress=False)
    assert step == "download" and path.read_bytes() == wheel["modules"][uri]
    gets = server.gets()
    assert all(g["status"] == 206 for g in gets), gets  # never the whole wheel
    sent = server.bytes_sent()
    import zipfile

    with zipfile.ZipFile(wheel["path"]) as zf:
        compressed = zf.getinfo(f"{PREFIX}{uri}/{uri}.so").compress_size
    # tail (64 KiB, holds central directory + RECORD here) + the member with its local header/readahead
    assert compressed <= sent <= compressed + 3 * (64 << 10), (sent, compressed)
    assert sent < wheel["size"] / 4
    with capsys.disabled():
        print(f"\n[partial fetch] one {len(wheel['modules'][uri])}-byte module ({compressed} compressed): "
              f"{sent} bytes in {len(gets)} requests; full wheel: {wheel['size']} bytes")
    entry_dir = artifacts_env / "cache" / wheel["sha256"]
    assert path.is_relative_to(entry_dir) and not list(entry_dir.glob("*.whl*"))  # no wheel, no .part


def test_partial_fetch_second_module_reuses_record(partial):
    server, wheel, _ = partial()
    locate_module("norm", progress=False)
    server.log.clear()
    assert locate_module("page", progress=False).read_bytes() == wheel["modules"]["page"]
    assert server.bytes_sent() < len(wheel["modules"]["page"]) + 3 * (64 << 10)
    server.log.clear()
    assert where_is("page")[0] == "cache" and locate_module("page").exists() and server.gets() == []


def test_range_ignored_falls_back_to_full_download(partial):
    server, wheel, _ = partial()
    server.ignore_range = True
    step, path = locate_module_ex("norm", progress=False)
    assert step == "download" and path.read_bytes() == wheel["modules"]["norm"]
    statuses = [g["status"] for g in server.gets()]
    assert statuses == [200, 200], statuses  # the Range probe got 200 (abandoned), then one full GET
    assert server.gets()[1]["sent"] == wheel["size"]


def test_record_pin_mismatch_extracts_nothing(partial, artifacts_env):
    server, wheel, entry = partial()
    manifest = json.loads((artifacts_env / "manifest.json").read_text())
    manifest["wheels"]["cu130"][ARCH]["record_sha256"] = "ab" * 32
    (artifacts_env / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ChecksumMismatchError, match="RECORD") as info:
        locate_module("norm", progress=False)
    assert info.value.expected == "ab" * 32 and info.value.actual == wheel["record_sha256"]
    entry_dir = artifacts_env / "cache" / wheel["sha256"]
    assert not (entry_dir / "files").exists() and not (entry_dir / "RECORD").exists()


def test_member_not_matching_record_is_refused(partial, artifacts_env):
    lie = f"{PREFIX}norm/norm.so,sha256=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA,{256 << 10}"
    server, wheel, _ = partial(record_overrides={f"{PREFIX}norm/norm.so": lie})
    with pytest.raises(ChecksumMismatchError, match="norm.so"):
        locate_module("norm", progress=False)
    files = artifacts_env / "cache" / wheel["sha256"] / "files"
    assert not files.exists() or not [p for p in files.rglob("*") if p.is_file()]


def test_unknown_module_fails_before_any_request(partial):
    server, _, _ = partial()
    with pytest.raises(KernelNotFoundError, match="not in the pinned wheel"):
        locate_module("batch_decode_with_kv_cache_no_such_variant")
    assert server.gets() == []
    assert where_is("batch_decode_with_kv_cache_no_such_variant") == ("missing", None)


def test_partial_fetch_survives_a_reset(partial):
    server, wheel, _ = partial()
    server.faults.extend([("ok", 0), ("reset", 20000)])  # the tail arrives, the member range resets
    assert locate_module(ATTN_URIS[1], progress=False).read_bytes() == wheel["modules"][ATTN_URIS[1]]
    statuses = [g["status"] for g in server.gets()]
    assert statuses.count(206) == len(statuses) and len(statuses) >= 3


def test_range_file_reads_match_local_bytes(artifacts_env):
    """Property: any seek/read sequence over HTTP returns exactly the local file's bytes."""
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies
    from flashinfer_cy.artifacts.remote_zip import HttpRangeFile
    from flashinfer_cy.artifacts.settings import HttpPolicy

    blob = bytes(range(256)) * 1200  # 300 KiB, position-dependent content
    with WheelServer({"b": blob}) as server:
        @hypothesis.settings(max_examples=25, deadline=None)
        @hypothesis.given(st.lists(st.tuples(st.integers(-1000, len(blob) + 1000), st.integers(-1, 200_000)),
                                   min_size=1, max_size=6))
        def check(ops):
            f = HttpRangeFile(server.url("b"), HttpPolicy(timeout=2, retries=0), tail=4096, readahead=8192)
            assert f.size == len(blob)
            for pos, n in ops:
                pos = max(0, pos)
                f.seek(pos)
                want = blob[pos:] if n < 0 else blob[pos : pos + n]
                assert f.read(n) == want
                assert f.tell() == pos + len(want)

        check()
