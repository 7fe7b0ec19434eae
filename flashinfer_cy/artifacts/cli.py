"""``fetch`` and ``cache list|verify|clean`` subcommands, plus the artifacts part of ``doctor``.

The core wires them into ``python -m flashinfer_cy``::

    parser = argparse.ArgumentParser(prog="python -m flashinfer_cy")
    sub = parser.add_subparsers(dest="command", required=True)
    cli.add_subcommands(sub)
    args = parser.parse_args()
    sys.exit(args.func(args))        # every handler returns an exit code
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import ArtifactError, FlashInferError


def add_subcommands(subparsers) -> None:
    fetch = subparsers.add_parser("fetch", help="download/extract kernel modules into the cache now")
    fetch.add_argument("--modules", nargs="+", metavar="URI",
                       help="module URIs (default: norm page gdn_prefill_sm90)")
    fetch.add_argument("--wheel", metavar="PATH", help="take them from this local wheel instead of downloading")
    fetch.add_argument("--full", action="store_true", help="download the whole wheel, not only the members")
    fetch.set_defaults(func=cmd_fetch)

    cache = subparsers.add_parser("cache", help="inspect or clean the kernel cache")
    actions = cache.add_subparsers(dest="cache_command", required=True)
    actions.add_parser("list", help="cache entries and what they hold").set_defaults(func=cmd_cache_list)
    verify = actions.add_parser("verify", help="fully re-hash every cached file; delete damaged ones")
    verify.set_defaults(func=cmd_cache_verify)
    clean = actions.add_parser("clean", help="remove interrupted downloads and temp files")
    clean.add_argument("--wheels", action="store_true", help="also remove full wheels (keep extracted modules)")
    clean.add_argument("--all", action="store_true", help="remove the whole cache")
    clean.set_defaults(func=cmd_cache_clean)


def _fail(exc: Exception) -> int:
    print(f"error: {exc}", file=sys.stderr)
    return 1


def cmd_fetch(args) -> int:
    from . import fetch_modules

    try:
        paths = fetch_modules(args.modules, wheel=args.wheel, full=args.full)
    except (FlashInferError, ValueError) as exc:
        return _fail(exc)
    for uri, path in paths.items():
        print(f"{uri}: {path}")
    return 0


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def cmd_cache_list(args=None, out=None) -> int:
    from . import settings
    from .cache import entries
    from .download import human

    out = out or sys.stdout
    root = settings.cache_root()
    found = entries(root)
    print(f"cache: {root} ({len(found)} entr{'y' if len(found) == 1 else 'ies'})", file=out)
    for entry in found:
        wheel = entry.wheel_path
        state = "full wheel" if wheel and wheel.exists() else "members only"
        print(f"  {entry.sha256[:16]}  {entry.filename or '?'}  {state}, "
              f"{len(entry.extracted_members())} module file(s), {human(_size(entry.dir))}", file=out)
        for member in entry.extracted_members():
            print(f"      {member}", file=out)
    return 0


def cmd_cache_verify(args=None, out=None) -> int:
    """Full sha256 of every extracted member (against RECORD) and cached wheel; delete damaged ones."""
    from . import settings
    from .cache import entries

    out = out or sys.stdout
    damaged = 0
    for entry in entries(settings.cache_root()):
        with entry.lock():
            for member in entry.extracted_members():
                if entry.member_ok(member, full=True):
                    continue
                damaged += 1
                entry.file_path(member).unlink(missing_ok=True)
                print(f"DAMAGED {entry.file_path(member)} (deleted; it is extracted again on next use)", file=out)
            wheel = entry.wheel_path
            if wheel and wheel.exists() and not entry.wheel_ok(full=True):
                damaged += 1
                wheel.unlink()
                print(f"DAMAGED {wheel} (deleted)", file=out)
    print("cache verified: " + (f"{damaged} damaged file(s) removed" if damaged else "all files intact"), file=out)
    return 1 if damaged else 0


def cmd_cache_clean(args, out=None) -> int:
    import shutil

    from filelock import Timeout

    from . import settings
    from .cache import entries

    out = out or sys.stdout
    root = settings.cache_root()
    if args.all:
        if root.is_dir():
            shutil.rmtree(root)
        print(f"removed {root}", file=out)
        return 0
    for entry in entries(root):
        try:
            with entry.lock(timeout=0):  # never pull a .part from under a running download
                doomed = [p for p in entry.dir.rglob("*") if p.is_file() and
                          (p.name.endswith(".part") or (p.name.startswith(".") and p.name.endswith(".tmp")))]
                if args.wheels and entry.wheel_path and entry.wheel_path.exists():
                    doomed.append(entry.wheel_path)
                for path in doomed:
                    path.unlink()
                    print(f"removed {path}", file=out)
        except Timeout:
            print(f"skipped {entry.dir}: in use by another process", file=out)
    return 0


def print_sources(uris=None, out=None) -> None:
    """For ``doctor``: each resolution step, then where each module would come from."""
    from . import FIXED_MODULES, describe_sources, platform_info, where_is

    out = out or sys.stdout
    info = platform_info()
    print(f"platform: CUDA {info['cuda']} ({info['cuda_source']}), {info['arch']}; wheel {info['wheel']}", file=out)
    print("kernel sources, in resolution order:", file=out)
    for row in describe_sources():
        mark = "x" if row["configured"] else " "
        print(f"  ({row['order']}) [{mark}] {row['step']:<17} {row['location'] or '-'}", file=out)
        print(f"      {row['status']}", file=out)
    print("modules:", file=out)
    for uri in list(uris or FIXED_MODULES):
        try:
            step, path = where_is(uri)
            print(f"  {uri}: {step}" + (f" {path}" if path else " (not on disk yet)"), file=out)
        except (ArtifactError, ValueError) as exc:
            print(f"  {uri}: error: {exc}", file=out)
