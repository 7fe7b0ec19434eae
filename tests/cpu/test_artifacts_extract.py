"""Extraction safety (hostile members, sizes, RECORD) and repair of damaged cached modules."""

import hashlib
import os
import stat
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _wheelserver import PREFIX, artifacts_env, build_wheel, module_bytes, served_wheel  # noqa: E402,F401

from flashinfer_cy.artifacts import locate_module, locate_module_ex, settings  # noqa: E402
from flashinfer_cy.artifacts.cli import cmd_cache_verify  # noqa: E402
from flashinfer_cy.artifacts.wheel import check_member_name, parse_record, record_line  # noqa: E402
from flashinfer_cy.errors import UnsafeMemberError  # noqa: E402

REG = stat.S_IFREG | 0o644


def use_local_wheel(monkeypatch, wheel):
    """Step (b) with a user-supplied sha256 and the packaged manifest (no network involved)."""
    monkeypatch.delenv(settings.MANIFEST_ENV)
    monkeypatch.setenv(settings.KERNEL_WHEEL_ENV, str(wheel["path"]))
    monkeypatch.setenv(settings.KERNEL_WHEEL_SHA256_ENV, wheel["sha256"])


@pytest.mark.parametrize("name", ["../evil.so", "/etc/evil.so", "a/../../evil.so", "a\\..\\evil", "C:/x", ""])
def test_unsafe_names_refused(name):
    with pytest.raises(UnsafeMemberError):
        check_member_name(name)


@pytest.mark.parametrize("name", ["flashinfer_jit_cache/jit_cache/norm/norm.so", "x.dist-info/RECORD", "a..b/c"])
def test_safe_names_accepted(name):
    check_member_name(name)


def test_record_roundtrip():
    data = os.urandom(100)
    record = parse_record(record_line("a/b.so", data) + "\nx.dist-info/RECORD,,\n")
    entry = record["a/b.so"]
    assert record["x.dist-info/RECORD"] == (None, None)
    assert entry.sha256 == hashlib.sha256(data).hexdigest() and entry.size == 100


HOSTILE = {
    "dotdot": [(f"{PREFIX}../../../../evil.so", b"x", REG)],
    "absolute": [("/tmp/flashinfer_cy_evil.so", b"x", REG)],
    "symlink": [(f"{PREFIX}evil/evil.so", b"/etc/passwd", stat.S_IFLNK | 0o777)],
    "device": [(f"{PREFIX}dev/dev.so", b"", stat.S_IFCHR | 0o644)],
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_wheel_refused_nothing_extracted(artifacts_env, monkeypatch, kind):
    wheel = build_wheel(artifacts_env / "hostile.whl", {"norm": b"n"}, extra=HOSTILE[kind])
    use_local_wheel(monkeypatch, wheel)
    with pytest.raises(UnsafeMemberError, match=kind if kind == "symlink" else "member"):
        locate_module("norm")
    assert not (artifacts_env / "cache" / wheel["sha256"] / "files").exists()
    assert not Path("/tmp/flashinfer_cy_evil.so").exists()


def test_symlink_at_the_requested_name_refused(artifacts_env, monkeypatch):
    wheel = build_wheel(artifacts_env / "s.whl", {}, extra=[(f"{PREFIX}norm/norm.so", b"/etc/passwd", stat.S_IFLNK | 0o777)])
    use_local_wheel(monkeypatch, wheel)
    with pytest.raises(UnsafeMemberError, match="symlink"):
        locate_module("norm")


def test_member_larger_than_declared_refused(artifacts_env, monkeypatch):
    member = f"{PREFIX}norm/norm.so"
    data = module_bytes("norm", 4096)
    wheel = build_wheel(artifacts_env / "big.whl", {"norm": data},
                        record_overrides={member: record_line(member, data[:1000])})
    use_local_wheel(monkeypatch, wheel)
    with pytest.raises(UnsafeMemberError, match="RECORD says 1000"):
        locate_module("norm")
    files = artifacts_env / "cache" / wheel["sha256"] / "files"
    assert not files.exists() or not [p for p in files.rglob("*") if p.is_file()]


def _damage(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "flip":
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    elif how == "truncate":
        path.write_bytes(bytes(data[: len(data) // 3]))
    elif how == "delete":
        path.unlink()


@pytest.mark.parametrize("how", ["flip", "truncate", "delete"])
def test_damaged_cached_module_detected_and_repaired(served_wheel, monkeypatch, caplog, how):
    server, wheel, _ = served_wheel
    path = locate_module("norm", progress=False)
    _damage(path, how)
    monkeypatch.setenv(settings.OFFLINE_ENV, "1")  # repaired from the cached wheel, no network
    server.log.clear()
    step, again = locate_module_ex("norm")
    assert again == path and again.read_bytes() == wheel["modules"]["norm"]
    assert step == "cache" and server.gets() == []
    if how != "delete":
        assert "damaged" in caplog.text


def test_tamper_hiding_from_stat_index_is_caught_by_verify(served_wheel, capsys):
    """Same size and restored mtime fool the cheap check; `cache verify` hashes everything."""
    server, wheel, _ = served_wheel
    path = locate_module("norm", progress=False)
    st = path.stat()
    _damage(path, "flip")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert cmd_cache_verify() == 1
    assert "DAMAGED" in capsys.readouterr().out and not path.exists()
    assert locate_module("norm").read_bytes() == wheel["modules"]["norm"]
    assert cmd_cache_verify() == 0


def test_extracted_files_are_executable_and_no_temp_left(served_wheel):
    path = locate_module("gdn_prefill_sm90", progress=False)
    assert path.stat().st_mode & 0o111
    leftovers = [p for p in path.parents[3].rglob("*") if p.name.endswith((".tmp", ".part"))]
    assert leftovers == []
