"""``fetch`` and ``cache list|verify|clean`` subcommands, plus the artifacts part of ``doctor``.

The core wires them into ``python -m flashinfer_cy``::

    parser = argparse.ArgumentParser(prog="python -m flashinfer_cy")
    sub = parser.add_subparsers(dest="command", required=True)
    cli.add_subcommands(sub)
    args = parser.parse_args()
    sys.exit(args.func(args))        # every handler returns an exit code
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from pathlib import Path

from ..errors import ArtifactError, FlashInferError


def add_subcommands(subparsers) -> None:
    fetch = subparsers.add_parser("fetch", help="download/extract kernel modules into the cache now")
    fetch.add_argument("--modules", nargs="+", metavar="URI",
                       help="module URIs (default: norm page gdn_prefill_sm90)")
    fetch.add_argument("--wheel", metavar="PATH", help="take them from this local wheel instead of downloading")
    fetch.add_argument("--full", action="store_true", help="download the whole wheel, not only the members")
    fetch.add_argument("--verify", action="store_true",
                       help="hash cached copies in full (not only size and mtime) and replace damaged ones")
    fetch.set_defaults(func=cmd_fetch)

    cache = subparsers.add_parser("cache", help="inspect or clean the kernel cache")
    actions = cache.add_subparsers(dest="cache_command", required=True)
    actions.add_parser("list", help="cache entries and what they hold").set_defaults(func=cmd_cache_list)
    verify = actions.add_parser("verify", help="fully re-hash every cached file; delete damaged ones "
                                "(in a cache this user cannot write: report them only)")
    verify.set_defaults(func=cmd_cache_verify)
    clean = actions.add_parser("clean", help="remove interrupted downloads and temp files")
    clean.add_argument("--wheels", action="store_true", help="also remove full wheels (keep extracted modules)")
    clean.add_argument("--all", action="store_true", help="remove the whole cache")
    clean.set_defaults(func=cmd_cache_clean)


def _fail(exc: Exception) -> int:
    print(f"error: {exc}", file=sys.stderr)
    return 1


def _reports_errors(handler):
    """One ``error: ...`` line and exit status 1 instead of a traceback, for what a user can act
    on: this library's errors, bad settings (ValueError) and file system trouble (a read-only or
    foreign cache, a full disk: the OSError names the path)."""

    @functools.wraps(handler)
    def run(*args, **kwargs) -> int:
        try:
            return handler(*args, **kwargs)
        except (FlashInferError, ValueError, OSError) as exc:
            return _fail(exc)

    return run


@_reports_errors
def cmd_fetch(args) -> int:
    from . import fetch_modules

    paths = fetch_modules(args.modules, wheel=args.wheel, full=args.full, verify=args.verify)
    for uri, path in paths.items():
        print(f"{uri}: {path}")
    return 0


def _size(path: Path) -> int:
    total = 0
    for p in path.rglob("*") if path.is_dir() else ():
        try:
            total += p.stat().st_size if p.is_file() else 0
        except FileNotFoundError:  # a temp file published or removed by a running extraction
            pass
    return total


@_reports_errors
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
        state = "full wheel" if wheel and wheel.is_file() else "members only"
        print(f"  {entry.sha256[:16]}  {entry.filename or '?'}  {state}, "
              f"{len(entry.extracted_members())} module file(s), {human(_size(entry.dir))}", file=out)
        for member in entry.extracted_members():
            print(f"      {member}", file=out)
    return 0


def _pins_by_sha256() -> dict:
    """The manifest's pins by wheel sha256, to check cached RECORDs against; {} if unusable."""
    from .manifest import load_manifest

    try:
        return {pin.sha256: pin for pin in load_manifest().pins.values()}
    except ArtifactError:
        return {}


def _wheel_record(entry, pin) -> bytes:
    """RECORD as the verified cached wheel has it (checked against the pin when pinned)."""
    import zipfile

    from .wheel import read_record, reading

    with reading(f"wheel {entry.wheel_path}"):
        zf = zipfile.ZipFile(entry.wheel_path)
    with zf:
        data, _ = read_record(zf, pin and pin.record_path, pin and pin.record_sha256, f"wheel {entry.wheel_path}")
    return data


@_reports_errors
def cmd_cache_verify(args=None, out=None) -> int:
    """Full sha256 of every cached wheel, RECORD and extracted member; remove damaged ones.

    RECORD is judged first (against the verified wheel, the pin, or the hash noted when it was
    written): members are only judged against a RECORD that is itself intact, so a damaged
    RECORD never gets good modules deleted. An entry whose lock cannot be taken (a read-only
    or another user's cache) is checked all the same, without the lock, and nothing is removed.
    """
    import contextlib

    from . import settings
    from .cache import entries
    from .fsutil import CacheAccessError

    out = out or sys.stdout
    pins = _pins_by_sha256()
    damaged, read_only = 0, False

    def report(path, what):
        nonlocal damaged
        damaged += 1
        print(f"DAMAGED {path} ({what})", file=out)

    for entry in entries(settings.cache_root()):
        pin = pins.get(entry.sha256)
        entry.record_sha256 = pin.record_sha256 if pin else None
        with contextlib.ExitStack() as held:
            try:
                held.enter_context(entry.lock())
                repair = True
            except CacheAccessError as exc:
                print(f"note: {exc}; checking {entry.dir} without repairing it", file=out)
                repair, read_only = False, True
            _verify_entry(entry, pin, report, repair, out)
    summary = "all files intact" if not damaged else (
        f"{damaged} damaged file(s) found, those in caches it could not write left in place" if read_only
        else f"{damaged} damaged file(s) removed")
    print("cache verified: " + summary, file=out)
    return 1 if damaged else 0


def _verify_entry(entry, pin, report, repair: bool, out) -> None:
    """Check one entry; with ``repair`` (lock held) remove what is damaged."""
    kept = "; not removed: this cache cannot be written here"
    for path, why in entry.misplaced():
        if repair:
            entry.remove_damaged(path, why, quiet=True)
        report(path, f"{why}; removed" if repair else why + kept)
    wheel = entry.wheel_path
    wheel_good = bool(wheel and wheel.is_file() and entry.wheel_ok(full=True))
    if wheel and wheel.is_file() and not wheel_good:
        if repair:
            wheel.unlink()
        report(wheel, "deleted" if repair else "sha256 differs from the pin" + kept)
    record_path = entry.dir / "RECORD"
    if wheel_good:  # verified just now: the authority on RECORD
        data = _wheel_record(entry, pin)
        current = record_path.read_bytes() if record_path.is_file() else None
        if current != data:
            if current is not None:
                report(record_path, "differs from the verified wheel's RECORD; " + ("replaced" if repair else kept[2:]))
            if repair:
                entry.store_record(data)
    if entry.record() is None:
        if record_path.is_file():
            if repair:
                record_path.unlink()
            report(record_path, "deleted; it is taken from the wheel again on next use" if repair
                   else "does not match its pinned or noted sha256" + kept)
        if entry.extracted_members():
            print(f"note: {entry.dir}: no intact RECORD to check the module files against; "
                  "they are checked when next used", file=out)
        return
    for member in entry.extracted_members():
        if entry.member_ok(member, full=True):
            continue
        path = entry.file_path(member)
        if repair:
            path.unlink(missing_ok=True)
        report(path, "deleted; it is extracted again on next use" if repair
               else "sha256 differs from RECORD" + kept)


@_reports_errors
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
                if args.wheels:  # every wheel file present, whatever name it came under
                    doomed += [p for p in entry.dir.glob("*.whl") if p.is_file()]
                for path in doomed:
                    path.unlink()
                    print(f"removed {path}", file=out)
        except Timeout:
            print(f"skipped {entry.dir}: in use by another process", file=out)
    return 0


@dataclasses.dataclass
class SourcesReport:
    """What ``doctor`` needs from :func:`print_sources` to decide its exit status."""

    errors: int = 0  # modules whose source is unusable (locate would raise)
    missing: list = dataclasses.field(default_factory=list)  # modules no source can supply
    damaged: list = dataclasses.field(default_factory=list)  # "<path>: <what is wrong>"


def _version_line(step: str) -> str:
    """Which FlashInfer release the source of ``step`` is (the Bindings are checked against it)."""
    from .resolve import source_version

    try:
        version, how = source_version(step)
    except Exception as exc:  # noqa: BLE001 - a doctor reports, it does not crash
        return f"flashinfer version: cannot tell ({type(exc).__name__}: {exc})"
    if version is None:
        return f"flashinfer version: unknown ({how}); Bindings refuse to call it"
    return f"flashinfer {version} ({how})"


def print_sources(uris=None, out=None, *, verify: bool = True) -> SourcesReport:
    """For ``doctor``: each resolution step, then where each module would come from.

    ``verify``: hash cached copies in full, so bit rot that kept size and mtime is reported.
    """
    from . import FIXED_MODULES, describe_sources, platform_info, settings
    from .resolve import inspect

    out = out or sys.stdout
    info = platform_info()
    print(f"platform: CUDA {info['cuda']} ({info['cuda_source']}), {info['arch']}; wheel {info['wheel']}", file=out)
    for note in settings.ignored():
        print(f"note: {note}", file=out)
    print("kernel sources, in resolution order:", file=out)
    for row in describe_sources():
        mark = "x" if row["configured"] else " "
        print(f"  ({row['order']}) [{mark}] {row['step']:<17} {row['location'] or '-'}", file=out)
        print(f"      {row['status']}", file=out)
    print("modules" + (" (cached copies hashed in full):" if verify else ":"), file=out)
    found = SourcesReport()
    for uri in list(uris or FIXED_MODULES):
        try:
            step, path, problems = inspect(uri, verify=verify)
        except (ArtifactError, ValueError, OSError) as exc:
            found.errors += 1
            print(f"  {uri}: error: {exc}", file=out)
            continue
        if step == "missing":
            found.missing.append(uri)
        print(f"  {uri}: {step}" + (f" {path}" if path else " (not on disk yet)"), file=out)
        if step != "missing":
            print(f"      {_version_line(step)}", file=out)
        for problem in problems:
            found.damaged.append(problem)
            print(f"      damaged: {problem}", file=out)
    return found
