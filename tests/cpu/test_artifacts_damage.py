"""Broken bytes and a damaged cache: corrupt compressed data, bit rot in the cached wheel,
directories where files belong (and the reverse), a damaged RECORD, a renamed local wheel.

Every case ends in a repaired cache or in an ArtifactError naming the path, never in a raw
zlib/OS traceback or in good files deleted."""

import hashlib
import io
import os
import re
import struct
import sys
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _wheelserver import (  # noqa: E402,F401
    ARCH, PREFIX, WHEEL_NAME, WheelServer, artifacts_env, build_wheel, run_cli, served_wheel, write_manifest,
)

from flashinfer_cy.artifacts import (  # noqa: E402
    fetch_modules, locate_module, locate_module_ex, settings, where_is,
)
from flashinfer_cy.artifacts.cli import cmd_cache_verify  # noqa: E402
from flashinfer_cy.artifacts.fsutil import CacheAccessError  # noqa: E402
from flashinfer_cy.artifacts.wheel import CorruptWheelError, parse_record  # noqa: E402
from flashinfer_cy.errors import ArtifactError, KernelNotFoundError  # noqa: E402

NAME = WHEEL_NAME.format(arch=ARCH)
NOWHERE = "http://127.0.0.1:9/" + NAME  # discard port: any request would fail loudly
NORM = f"{PREFIX}norm/norm.so"



def corrupt_member(blob: bytes, member: str, how: str) -> bytes:
    """``blob`` (a zip) with ``member`` broken: its deflate stream overwritten, or its
    compression method set to one zipfile does not know (local header and central directory)."""
    out = bytearray(blob)
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        info = zf.getinfo(member)
    local = info.header_offset
    if how == "deflate":
        name_len, extra_len = struct.unpack_from("<HH", out, local + 26)
        data = local + 30 + name_len + extra_len
        out[data : data + 8] = b"\xff" * 8  # an invalid block type right at the start
    else:
        struct.pack_into("<H", out, local + 8, 99)
        central = out.find(b"PK\x01\x02")
        while out[central + 46 : central + 46 + len(member)] != member.encode():
            central = out.find(b"PK\x01\x02", central + 1)
        struct.pack_into("<H", out, central + 10, 99)
    return bytes(out)


def corrupt_in_place(path: Path, member: str) -> None:
    """Bit rot: the member's compressed bytes change, the file's size and mtime do not."""
    st = path.stat()
    path.write_bytes(corrupt_member(path.read_bytes(), member, "deflate"))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.fixture
def local_wheel(artifacts_env):
    """A wheel on disk, pinned by the manifest but at an unreachable URL."""
    wheel = build_wheel(artifacts_env / NAME)
    write_manifest(artifacts_env / "manifest.json", wheel, NOWHERE)
    return wheel


def entry_dir(wheel) -> Path:
    return Path(settings.cache_root()) / wheel["sha256"]


# -- 1. corrupt compressed data ------------------------------------------------------------------
@pytest.mark.parametrize("how", ["deflate", "method"])
def test_corrupt_member_in_partial_fetch_is_artifact_error(artifacts_env, how):
    wheel = build_wheel(artifacts_env / NAME)
    with WheelServer({NAME: corrupt_member(wheel["path"].read_bytes(), NORM, how)}) as server:
        write_manifest(artifacts_env / "manifest.json", wheel, server.url(NAME), partial=True)
        with pytest.raises(CorruptWheelError, match=re.escape(f"{NORM} of wheel {server.url(NAME)}")):
            locate_module("norm", progress=False)
    files = entry_dir(wheel) / "files"
    assert not files.exists() or not [p for p in files.rglob("*") if p.is_file()]


@pytest.mark.parametrize("how", ["deflate", "method"])
def test_corrupt_member_in_local_wheel_is_artifact_error(artifacts_env, monkeypatch, how):
    good = build_wheel(artifacts_env / "good.whl")
    bad = artifacts_env / "bad.whl"
    bad.write_bytes(corrupt_member(good["path"].read_bytes(), NORM, how))
    write_manifest(artifacts_env / "manifest.json", good, NOWHERE)
    monkeypatch.setenv(settings.KERNEL_WHEEL_ENV, str(bad))
    monkeypatch.setenv(settings.KERNEL_WHEEL_SHA256_ENV, hashlib.sha256(bad.read_bytes()).hexdigest())
    with pytest.raises(ArtifactError, match=re.escape(f"{NORM} of wheel {bad}")):
        locate_module("norm")
    assert locate_module("page").read_bytes() == good["modules"]["page"]  # the other members are fine


def test_bit_rot_in_cached_wheel_drops_it_then_downloads_again(served_wheel, monkeypatch, capsys):
    server, wheel, _ = served_wheel
    fetch_modules(["page"], full=True, progress=False)
    cached = entry_dir(wheel) / NAME
    corrupt_in_place(cached, NORM)  # the stat index still vouches for it
    monkeypatch.setenv(settings.OFFLINE_ENV, "1")
    with pytest.raises(KernelNotFoundError, match=re.escape(f"damaged in the cache: {cached}")):
        locate_module("norm")
    assert not cached.exists()  # its sha256 no longer matched the pin: dropped, not kept forever
    code, out = run_cli(["fetch", "--modules", "norm"], capsys)
    assert code == 1 and out.err.startswith("error: ") and "Traceback" not in out.err
    monkeypatch.delenv(settings.OFFLINE_ENV)
    server.log.clear()
    step, path = locate_module_ex("norm", progress=False)
    assert step == "download" and path.read_bytes() == wheel["modules"]["norm"]
    assert cached.exists() and len(server.gets()) == 1


def test_bit_rot_found_while_extracting_downloads_again(served_wheel):
    server, wheel, _ = served_wheel
    fetch_modules(["page"], full=True, progress=False)
    corrupt_in_place(entry_dir(wheel) / NAME, NORM)
    server.log.clear()
    assert locate_module("norm", progress=False).read_bytes() == wheel["modules"]["norm"]
    assert [g["sent"] for g in server.gets()] == [wheel["size"]]


# -- 4. a directory where a file belongs, a file where a directory belongs -----------------------
DAMAGE = {
    "member is a directory": lambda d: (d / "files" / NORM).mkdir(parents=True),
    "member's directory is a file": lambda d: _file(d / "files" / PREFIX / "norm"),
    "files is a file": lambda d: _file(d / "files"),
    "RECORD is a directory": lambda d: (d / "RECORD").mkdir(parents=True),
    "index.json is a directory": lambda d: (d / "index.json").mkdir(parents=True),
    "source.json is a directory": lambda d: (d / "source.json").mkdir(parents=True),
}


def _file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"in the way")


@pytest.mark.parametrize("damage", sorted(DAMAGE))
@pytest.mark.parametrize("when", ["before first use", "after first use"])
def test_things_in_the_way_are_removed_and_extracted_again(local_wheel, monkeypatch, damage, when):
    monkeypatch.setenv(settings.KERNEL_WHEEL_ENV, str(local_wheel["path"]))
    d = entry_dir(local_wheel)
    if when == "after first use":
        fetch_modules(["norm"], wheel=local_wheel["path"])
        for name in ("RECORD", "index.json", "source.json"):
            (d / name).unlink()
        import shutil

        shutil.rmtree(d / "files")
    DAMAGE[damage](d)
    where_is("norm")  # a read-only query copes with it too
    step, path = locate_module_ex("norm")
    assert step == "local_wheel" and path.read_bytes() == local_wheel["modules"]["norm"]
    assert cmd_cache_verify() == 0


@pytest.mark.parametrize("what", ["wheel", "part"])
def test_directory_at_the_cached_wheel_is_replaced_by_the_download(served_wheel, what):
    server, wheel, _ = served_wheel
    (entry_dir(wheel) / (NAME if what == "wheel" else NAME + ".part")).mkdir(parents=True)
    assert locate_module("norm", progress=False).read_bytes() == wheel["modules"]["norm"]
    assert (entry_dir(wheel) / NAME).is_file() and not (entry_dir(wheel) / (NAME + ".part")).exists()


def test_verify_reports_and_removes_things_in_the_way(local_wheel, capsys):
    fetch_modules(["norm"], wheel=local_wheel["path"])
    d = entry_dir(local_wheel)
    (d / "files" / PREFIX / "page" / "page.so").mkdir(parents=True)  # where RECORD has a module
    (d / "index.json").unlink()
    (d / "index.json").mkdir()
    os.mkfifo(d / "files" / "fifo")
    assert cmd_cache_verify() == 1
    out = capsys.readouterr().out
    for path in (d / "files" / PREFIX / "page" / "page.so", d / "index.json", d / "files" / "fifo"):
        assert f"DAMAGED {path}" in out and (path.is_file() or not os.path.lexists(path))  # index.json: rewritten
    assert (d / "files" / NORM).is_file()  # the good module stays
    assert cmd_cache_verify() == 0


def test_entry_that_is_a_file_is_a_clear_error(local_wheel):
    d = entry_dir(local_wheel)
    d.parent.mkdir(parents=True)
    d.write_bytes(b"")
    with pytest.raises(CacheAccessError, match=re.escape(f"{d} is not a directory")):
        fetch_modules(["norm"], wheel=local_wheel["path"])


# -- 5. a damaged cached RECORD ------------------------------------------------------------------
def _flip_digest(record: Path, member: str) -> None:
    lines = record.read_text().splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith(member + ","))
    path, digest, size = lines[i].split(",")
    digest = digest[:-3] + ("A" if digest[-3] != "A" else "B") + digest[-2:]
    lines[i] = ",".join([path, digest, size])
    record.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("damage", ["digest", "truncated", "malformed"])
def test_damaged_record_never_outvotes_the_wheel(local_wheel, monkeypatch, capsys, damage):
    path = fetch_modules(["norm"], wheel=local_wheel["path"])["norm"]
    record = entry_dir(local_wheel) / "RECORD"
    if damage == "digest":
        _flip_digest(record, NORM)
    elif damage == "truncated":
        record.write_bytes(record.read_bytes()[: len(record.read_bytes()) // 2])
    else:
        record.write_text(record.read_text() + f"{PREFIX}x,sha256=abc\n")
    # verify condemns RECORD, not the good module, and does not crash
    assert cmd_cache_verify() == 1
    out = capsys.readouterr().out
    assert f"DAMAGED {record}" in out and NORM not in out
    assert path.read_bytes() == local_wheel["modules"]["norm"]
    # without a source to take RECORD from, a clear error; with the wheel, RECORD is derived again
    monkeypatch.setenv(settings.OFFLINE_ENV, "1")
    with pytest.raises(KernelNotFoundError, match=settings.OFFLINE_ENV):
        locate_module("norm")
    monkeypatch.setenv(settings.KERNEL_WHEEL_ENV, str(local_wheel["path"]))
    assert locate_module_ex("norm") == ("local_wheel", path)
    assert cmd_cache_verify() == 0


def test_damaged_record_is_taken_from_the_wheel_again_on_use(local_wheel, monkeypatch, caplog):
    path = fetch_modules(["norm"], wheel=local_wheel["path"])["norm"]
    record = entry_dir(local_wheel) / "RECORD"
    good = record.read_bytes()
    _flip_digest(record, NORM)
    monkeypatch.setenv(settings.KERNEL_WHEEL_ENV, str(local_wheel["path"]))
    for _ in range(2):  # repaired once, not failing forever
        assert locate_module_ex("norm") == ("local_wheel", path)
    assert record.read_bytes() == good and "RECORD in the cache is damaged" in caplog.text


def test_verify_restores_record_from_the_cached_wheel(served_wheel, capsys):
    server, wheel, _ = served_wheel
    path = fetch_modules(["norm"], full=True, progress=False)["norm"]
    record = entry_dir(wheel) / "RECORD"
    good = record.read_bytes()
    _flip_digest(record, NORM)
    assert cmd_cache_verify() == 1
    out = capsys.readouterr().out
    assert f"DAMAGED {record}" in out and NORM not in out and record.read_bytes() == good
    assert path.read_bytes() == wheel["modules"]["norm"] and cmd_cache_verify() == 0


def test_malformed_record_names_the_file():
    with pytest.raises(ArtifactError, match=r"/x/RECORD is malformed: line 2"):
        parse_record("a,,\nb,sha256=abc\n", "/x/RECORD")
    with pytest.raises(ArtifactError, match="line 1"):
        parse_record("a,sha256=!!!!,3\n", "RECORD")


# -- 6. the wheel file actually present ----------------------------------------------------------
def test_entry_tracks_the_wheel_present_after_a_renamed_local_wheel(served_wheel, artifacts_env, capsys):
    server, wheel, _ = served_wheel
    renamed = artifacts_env / "renamed.whl"
    renamed.write_bytes(wheel["path"].read_bytes())
    fetch_modules(["norm"], wheel=renamed)  # step (b), matched by sha256: source.json says renamed.whl
    fetch_modules(["page"], full=True, progress=False)  # the pinned wheel now sits in the entry
    cached = entry_dir(wheel) / NAME
    code, out = run_cli(["cache", "list"], capsys)
    assert code == 0 and f"{NAME}  full wheel" in out.out
    with open(cached, "r+b") as f:
        f.seek(1000)
        f.write(b"CORRUPT")
    code, out = run_cli(["cache", "verify"], capsys)
    assert code == 1 and f"DAMAGED {cached}" in out.out and not cached.exists()
    fetch_modules(["page"], full=True, progress=False)
    code, out = run_cli(["cache", "clean", "--wheels"], capsys)
    assert code == 0 and f"removed {cached}" in out.out and not cached.exists()
