"""The fetch / cache subcommands and the doctor printout."""

import argparse
import io
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _wheelserver import artifacts_env, served_wheel  # noqa: E402,F401

from flashinfer_cy.artifacts import cli, settings  # noqa: E402


def run(argv, capsys):
    parser = argparse.ArgumentParser(prog="python -m flashinfer_cy")
    cli.add_subcommands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code = args.func(args)
    return code, capsys.readouterr()


def test_fetch_list_verify_clean(served_wheel, capsys, monkeypatch):
    server, wheel, _ = served_wheel
    monkeypatch.setenv(settings.HTTP_RETRIES_ENV, "0")
    code, out = run(["fetch", "--modules", "norm", "page"], capsys)
    assert code == 0 and "norm: " in out.out and "page: " in out.out
    code, out = run(["cache", "list"], capsys)
    assert code == 0 and wheel["sha256"][:16] in out.out and "full wheel" in out.out and "norm/norm.so" in out.out
    assert run(["cache", "verify"], capsys)[0] == 0
    entry = Path(settings.cache_root()) / wheel["sha256"]
    (entry / (wheel["path"].name + ".part")).write_bytes(b"half")
    (entry / "files" / ".x.so.123.tmp").write_bytes(b"tmp")
    code, out = run(["cache", "clean"], capsys)
    assert code == 0 and out.out.count("removed") == 2 and (entry / wheel["path"].name).exists()
    code, out = run(["cache", "clean", "--wheels"], capsys)
    assert not (entry / wheel["path"].name).exists() and (entry / "files").exists()
    run(["cache", "clean", "--all"], capsys)
    assert not Path(settings.cache_root()).exists()


def test_fetch_error_is_exit_code_1(served_wheel, capsys):
    server, _, _ = served_wheel
    server.faults.extend([("status", 404)])
    code, out = run(["fetch"], capsys)
    assert code == 1 and "HTTP 404" in out.err


def test_fetch_from_local_wheel(served_wheel, capsys):
    server, wheel, _ = served_wheel
    code, out = run(["fetch", "--wheel", str(wheel["path"]), "--modules", "norm"], capsys)
    assert code == 0 and server.gets() == []


def test_fetch_full(served_wheel, capsys, artifacts_env):
    server, wheel, _ = served_wheel
    assert run(["fetch", "--full", "--modules", "page"], capsys)[0] == 0
    assert (artifacts_env / "cache" / wheel["sha256"] / wheel["path"].name).exists()


def test_print_sources(served_wheel):
    out = io.StringIO()
    cli.print_sources(["norm", "../bad"], out=out)
    text = out.getvalue()
    assert "(a) [ ] kernel_dir" in text and "(e) [x] download" in text
    assert "norm: download (not on disk yet)" in text and "../bad: error" in text
