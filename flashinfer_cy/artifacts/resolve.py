"""Where a kernel module comes from, in this order (first hit wins):

(a) ``kernel_dir``        ``$FLASHINFER_CY_KERNEL_DIR/<uri>/<uri>.so`` (or ``<dir>/<uri>.so``): files you built.
(b) ``local_wheel``       ``$FLASHINFER_CY_KERNEL_WHEEL``: a wheel file, verified against its pin (by
                          filename or hash) or ``$FLASHINFER_CY_KERNEL_WHEEL_SHA256``, then extracted
                          into the cache like a download. A wheel that cannot be verified is an error;
                          a module the wheel lacks falls through to (c).
(c) ``installed_package`` an installed ``flashinfer_jit_cache`` whose version is the pinned one (found
                          with importlib metadata; never imported).
(d) ``cache``             the cache entry of the pinned wheel for this CUDA version and arch:
                          extracted modules, or the cached full wheel.
(e) ``download``          the pinned wheel: only the needed members by HTTP Range when the manifest
                          pins the wheel's RECORD, else the whole wheel. Off when ``$FLASHINFER_CY_OFFLINE=1``.
                          ``$FLASHINFER_CY_WHEEL_SHA256`` replaces the pinned sha256 (a mirror's own build).

Which FlashInfer release a module is (:func:`source_version`; each Binding is checked against
that release's ABI before its first call, docs/abi-versions.md): ``$FLASHINFER_CY_FLASHINFER_VERSION``
if set; else (a) the ``flashinfer_version.txt`` marker that ``tools/build_kernels.py`` writes in the
kernel dir (none: unknown); (b), (d), (e) the wheel file name's version before '+'; (c) the installed
package's version before '+'.

What is verified: (a) and (c) are used as they are. (b) and a full download (e): the wheel's
sha256, before any member is extracted. A partial download (e): the wheel's RECORD against its
pinned sha256, then each member against RECORD's sha256 and size (the wheel's own sha256 cannot
be checked without all of its bytes). (d): each file against RECORD when it is written; later a
``stat`` (size and mtime unchanged since it was hashed), or a full hash when ``$FLASHINFER_CY_VERIFY=full``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
from pathlib import Path

from ..errors import ArtifactError, ChecksumMismatchError, KernelNotFoundError, UnsupportedPlatformError
from . import FIXED_MODULES, settings
from .cache import CacheEntry
from .download import Progress, download_file, human
from .fsutil import CacheAccessError, access_error, sha256_file
from .net import log, warn
from .manifest import Manifest, WheelPin, load_manifest, member_for
from .wheel import CorruptWheelError, reading

STEPS = ("kernel_dir", "local_wheel", "installed_package", "cache", "download")

_URI = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")


def check_uri(uri: str) -> str:
    if not isinstance(uri, str) or not _URI.fullmatch(uri) or ".." in uri:
        raise ValueError(f"uri must be a module name like 'norm' (letters, digits, '_', '.', '-'), got {uri!r}")
    return uri


# -- (a) kernel directory ----------------------------------------------------------------------
def _kernel_dir_path(uri: str) -> Path | None:
    root = settings.env(settings.KERNEL_DIR_ENV)
    if root:
        for candidate in (Path(root) / uri / f"{uri}.so", Path(root) / f"{uri}.so"):
            if candidate.is_file():
                return candidate
    return None


VERSION_MARKER = "flashinfer_version.txt"  # in the kernel dir, beside the <uri>/ folders


def _marker_version(root: str) -> tuple[str | None, str]:
    marker = Path(root) / VERSION_MARKER
    try:
        text = marker.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None, (f"{settings.KERNEL_DIR_ENV}={root} has no {VERSION_MARKER} (write one with "
                      f"tools/build_kernels.py, or set {settings.FLASHINFER_VERSION_ENV})")
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"{marker} cannot be read: {exc}"
    if not settings.VERSION_RE.fullmatch(text):
        return None, f"{marker} does not hold a version: {text[:40]!r}"
    return text, str(marker)


def wheel_version(filename: str) -> str:
    """``flashinfer_jit_cache-0.6.3+cu130-...whl`` -> ``0.6.3`` (the version before '+')."""
    parts = filename.split("-")
    return parts[1].split("+", 1)[0] if len(parts) > 1 else ""


def source_version(step: str, manifest: Manifest | None = None) -> tuple[str | None, str]:
    """``(FlashInfer version or None when unknown, how it was learned)`` of what ``step``
    supplies (a step name of :data:`STEPS`)."""
    override = settings.flashinfer_version()
    if override:
        return override, settings.FLASHINFER_VERSION_ENV
    if step == "kernel_dir":
        return _marker_version(settings.env(settings.KERNEL_DIR_ENV) or ".")
    manifest = manifest or load_manifest()
    if step == "installed_package":
        import importlib.metadata

        version = importlib.metadata.version(manifest.package)
        return version.split("+", 1)[0], f"installed {manifest.package} {version}"
    if step == "local_wheel":
        name = Path(settings.env(settings.KERNEL_WHEEL_ENV) or "").name
    else:  # cache, download: the pinned wheel of this machine
        name = platform_pin(manifest).filename
    version = wheel_version(name)
    return (version, f"wheel {name}") if settings.VERSION_RE.fullmatch(version) else (
        None, f"wheel file name {name} names no version")


_expected: dict[tuple, str] = {}  # what expected_version() read, keyed by what it depends on


def _stat_key(path: str) -> tuple:
    try:
        st = os.stat(path)
    except OSError:
        return (path, None)
    return (path, st.st_ino, st.st_mtime_ns, st.st_size)


def expected_version() -> str:
    """The FlashInfer release a module looked up now is expected to be of, before it is
    located: ``$FLASHINFER_CY_FLASHINFER_VERSION``; else, with a kernel dir set, its marker
    (none, or unreadable: the pinned release -- its modules are refused as of unknown version
    anyway); else the release the wheel steps supply (the pinned one). For a module whose
    name changed between releases (batch MLA's ``_planabi2``, 0.7.x's FA2 batch prefill):
    the name to look up.

    Plans ask this every call, so what it reads is kept, keyed by the settings and by the
    marker's / manifest's stat (a rewritten file is read again): about a microsecond instead
    of the tens a file read and a path resolution cost."""
    override = settings.flashinfer_version()
    if override:
        return override
    root = settings.env(settings.KERNEL_DIR_ENV)
    manifest_env = settings.env(settings.MANIFEST_ENV)
    key = (_stat_key(os.path.join(root, VERSION_MARKER)) if root else None,
           _stat_key(manifest_env) if manifest_env else None)
    version = _expected.get(key)
    if version is None:
        marked = _marker_version(root)[0] if root else None
        version = _expected[key] = marked or wanted_version(load_manifest())
    return version


# -- (b) local wheel ---------------------------------------------------------------------------
_local_hashes: dict[tuple, str] = {}  # (path, size, mtime_ns) -> sha256: hash a 2 GB file once per process


def _hash_local(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _local_hashes:
        _local_hashes[key] = sha256_file(path)
    return _local_hashes[key]


def _local_wheel(manifest: Manifest, raw: str | Path | None) -> tuple[Path, CacheEntry] | None:
    """The local wheel ``raw`` and its cache entry (keyed by the sha256 it must have)."""
    if not raw:
        return None
    path = Path(raw).expanduser()
    if not path.is_file():
        raise ArtifactError(f"kernel wheel {raw} is not a file")
    expected = settings.kernel_wheel_sha256()  # validated: it becomes a directory name
    if expected is None:
        pin = manifest.by_filename(path.name) or manifest.by_sha256(_hash_local(path))
        if pin is None:
            raise ArtifactError(
                f"kernel wheel {raw} matches no pinned wheel (by name or sha256); set "
                f"{settings.KERNEL_WHEEL_SHA256_ENV} to the sha256 you trust, or use one of: "
                + ", ".join(p.filename for p in manifest.pins.values())
            )
        expected = pin.sha256
    pin = manifest.by_sha256(expected)
    entry = CacheEntry(settings.cache_root(), expected, record_sha256=pin.record_sha256 if pin else None)
    return path, entry


@contextlib.contextmanager
def _locked(entry: CacheEntry):
    """``entry.lock()``; when it cannot be taken (a read-only cache) after damage was seen, the
    error names the damaged file, not only the lock."""
    try:
        with entry.lock():
            yield
    except CacheAccessError as exc:
        if not entry.problems:
            raise
        err = CacheAccessError(
            f"damaged in the cache: {'; '.join(entry.problems)}; it cannot be repaired here ({exc}). "
            "Ask whoever can write the cache to run `flashinfer-cy cache verify` and `flashinfer-cy fetch`, "
            f"or set {settings.CACHE_DIR_ENV} to a cache you can write")
        err.errno = getattr(exc, "errno", None)
        raise err from exc


def _sweep(entry: CacheEntry) -> None:
    """Remove temporaries a killed extraction left, unless another process works in the entry
    (its temporaries may be in flight) or the cache cannot be written."""
    from filelock import Timeout

    try:
        with entry.lock(timeout=0):
            entry.sweep_temporaries()
    except (Timeout, OSError):
        pass


def _extract_local(wheel: Path, entry: CacheEntry, members: list[str]) -> None:
    """Verify the local wheel's sha256 (once per process), then extract like a download."""
    if all(entry.member_ok(m) for m in members):  # nothing to do: no waiting for the lock
        return
    with _locked(entry):
        if all(entry.member_ok(m) for m in members):
            return
        actual = _hash_local(wheel)
        if actual != entry.sha256:
            raise ChecksumMismatchError(f"local wheel {wheel}", entry.sha256, actual)
        entry.store_source(wheel.name, wheel.resolve().as_uri())
        _extract_from_file(entry, wheel, members, None)
        entry.sweep_temporaries()


# -- (c) installed flashinfer_jit_cache ---------------------------------------------------------
def _installed_package(manifest: Manifest) -> tuple[Path | None, str]:
    """``(package dir or None, status)`` without importing the package."""
    import importlib.metadata
    import importlib.util

    try:
        spec = importlib.util.find_spec(manifest.package)  # top-level: finds, does not import
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return None, "not installed"
    location = Path(list(spec.submodule_search_locations)[0])
    try:
        version = importlib.metadata.version(manifest.package)
    except importlib.metadata.PackageNotFoundError:
        return None, f"found at {location} but has no distribution metadata"
    public, _, local = version.partition("+")
    need = wanted_version(manifest)
    if not re.fullmatch(re.escape(need) + r"(\.post\d+)?", public):
        return None, f"version {version} at {location}, need {need}"
    keys = {pin.key.split("/")[0] for pin in manifest.pins.values()}
    if local and local not in keys:
        return None, f"version {version} is built for {local}, pins are for {', '.join(sorted(keys))}"
    return location, f"version {version}"


def _installed_path(manifest: Manifest, uri: str) -> Path | None:
    location, _ = _installed_package(manifest)
    if location is None:
        return None
    candidate = location / "jit_cache" / uri / f"{uri}.so"
    return candidate if candidate.is_file() else None


# -- (d)/(e) pinned wheel ---------------------------------------------------------------------
def wanted_version(manifest: Manifest) -> str:
    """The FlashInfer release the wheel steps (c), (d), (e) supply: ``$FLASHINFER_CY_FLASHINFER_VERSION``,
    else the pinned one."""
    return settings.flashinfer_version() or manifest.version


def platform_pin(manifest: Manifest | None = None, *, network: bool = True) -> WheelPin | None:
    """The wheel for this machine: the manifest's pin for the pinned release, else the one
    FlashInfer's index names (:mod:`.index`); :class:`UnsupportedPlatformError` lists what exists.

    ``network=False`` (``doctor``, ``where_is``): None for an unpinned release not resolved before;
    with the network allowed but downloading off, that is a :class:`KernelNotFoundError`.
    """
    from .host import detect_cuda_version, machine_arch

    manifest = manifest or load_manifest()
    cuda, _how = detect_cuda_version()
    arch = machine_arch()
    version = wanted_version(manifest)
    if version == manifest.version:
        pin = manifest.select(cuda, arch)
    else:
        from .index import page_url, resolve

        cuda_key = manifest.cuda_key(cuda, arch)
        pin = resolve(manifest, version, cuda_key, arch, network=network)
        if pin is None:
            if not network:
                return None
            # resolve() is None with the network allowed only when downloading is off
            raise KernelNotFoundError(
                f"the flashinfer_jit_cache wheel of flashinfer {version} for {cuda_key}/{arch} "
                f"was never resolved from the index {page_url(cuda_key)} and downloading is off "
                f"({settings.OFFLINE_ENV}=1): run `flashinfer-cy fetch` once where there is "
                f"network, with the same {settings.CACHE_DIR_ENV}, or set "
                f"{settings.KERNEL_WHEEL_ENV} or {settings.KERNEL_DIR_ENV}")
    override = settings.wheel_sha256()
    if override is None or override == pin.sha256:
        return pin
    # Another build of the wheel: the pinned RECORD hash, member list and size describe the
    # pinned bytes only, so the whole wheel is downloaded and checked against the override.
    return dataclasses.replace(pin, sha256=override, size=None, record_sha256=None, members=None,
                               trust=f"setting {settings.WHEEL_SHA256_ENV}")


def _pinned_entry(pin: WheelPin, verify: bool | None = None) -> CacheEntry:
    return CacheEntry(settings.cache_root(), pin.sha256, pin.filename, pin.record_sha256, full_verify=verify or None)


# -- extraction (shared by b, d, e) -------------------------------------------------------------
def _extract(entry: CacheEntry, zf, members: list[str], what: str, pin: WheelPin | None) -> None:
    """Extract each missing or damaged member (lock held).

    ``zf`` is verified (its sha256, or its RECORD against the pin), so RECORD is taken from it
    whenever the cached one is missing, damaged or was never checked against a hash.
    """
    from .wheel import check_archive, extract_member, read_record

    check_archive(zf)
    if not entry.record_checked:
        data, _ = read_record(zf, pin and pin.record_path, pin and pin.record_sha256, what)
        entry.store_record(data)
    record = entry.record()
    for member in members:
        if entry.member_ok(member):
            continue
        if member not in record:
            raise KernelNotFoundError(f"{member} is not in {what}")
        dest = entry.file_path(member)
        if os.path.lexists(dest):
            log.warning("%s in the cache is damaged or was modified; extracting it again", member)
        entry.make_room(dest)
        extract_member(zf, member, dest, record[member], what)
        entry.note_member(member)


def _extract_from_file(entry: CacheEntry, wheel: Path, members: list[str], pin: WheelPin | None) -> None:
    import zipfile

    try:
        zf = zipfile.ZipFile(wheel)
    except OSError as exc:  # cannot open or read it: permissions, I/O error
        raise access_error(wheel, exc, "read") from exc
    except Exception as exc:  # noqa: BLE001 - BadZipFile and friends: a broken central directory
        raise CorruptWheelError(f"wheel {wheel} is corrupt: {type(exc).__name__}: {exc}") from exc
    with zf:
        _extract(entry, zf, members, f"wheel {wheel}", pin)


def _extract_remote(entry: CacheEntry, pin: WheelPin, members: list[str], *, full: bool, progress: Progress) -> str:
    """Partial fetch when RECORD is pinned and the server honours Range; else download it all."""
    import zipfile

    from .remote_zip import HttpRangeFile, RangeNotSupported

    url = pin.download_url()
    if pin.record_sha256 and not full:
        try:
            with HttpRangeFile(url) as remote:
                with reading(f"remote wheel {url}"):  # a broken central directory
                    zf = zipfile.ZipFile(remote)
                with zf:
                    _extract(entry, zf, members, f"wheel {url}", pin)
                log.info("fetched %d member(s) of %s: %s in %d requests", len(members), pin.filename,
                         human(remote.bytes_received), remote.requests)
            return "partial"
        except RangeNotSupported as exc:
            log.info("%s; downloading the whole wheel instead", exc)
    _download_wheel(entry, pin, progress)
    _extract_from_file(entry, entry.wheel_path, members, pin)
    return "full"


def _download_wheel(entry: CacheEntry, pin: WheelPin, progress: Progress) -> None:
    entry.store_source(pin.filename, pin.download_url())
    entry.make_room(entry.wheel_path)  # e.g. a directory left where the wheel goes
    entry.make_room(entry.wheel_path.with_name(entry.wheel_path.name + ".part"))
    download_file(pin.download_url(), entry.wheel_path, pin.sha256, size=pin.size, progress=progress)
    entry.note_wheel()


def _not_cached(entry: CacheEntry, members: list[str]) -> KernelNotFoundError:
    damage = f"; damaged in the cache: {'; '.join(entry.problems)}" if entry.problems else ""
    return KernelNotFoundError(
        f"{', '.join(members)} not in the cache {entry.dir} and downloading is off "
        f"({settings.OFFLINE_ENV}=1 or download=False){damage}. To get them: run `flashinfer-cy fetch` "
        f"(the installed console script; `python -m flashinfer_cy` inside a source checkout would pick "
        f"the uncompiled tree) where there is network, with the same {settings.CACHE_DIR_ENV}; or set "
        f"{settings.KERNEL_WHEEL_ENV} to the wheel {entry.filename or ''}; or build them with "
        f"`python tools/build_kernels.py --out DIR <uris>` and set {settings.KERNEL_DIR_ENV}=DIR"
    )


def _ensure_pinned(pin: WheelPin, members: list[str], *, download: bool, full: bool, progress: Progress,
                   verify: bool = False) -> str:
    """Make every member valid in the pinned entry; return the step that supplied them."""
    entry = _pinned_entry(pin, verify)
    if all(entry.member_ok(m) for m in members):
        return "cache"
    may_download = download and not settings.offline()
    if not may_download and not entry.wheel_path.is_file():
        # Nothing here could supply them: say so without the lock, which a read-only cache
        # cannot give (and which would make us wait behind a download for nothing).
        raise _not_cached(entry, members)
    with _locked(entry):
        if all(entry.member_ok(m) for m in members):  # another process did it while we waited
            return "cache"
        entry.store_source(pin.filename, pin.download_url())
        if entry.wheel_ok():
            try:
                _extract_from_file(entry, entry.wheel_path, members, pin)
                entry.sweep_temporaries()
                return "cache"
            except CorruptWheelError:
                # The stat index vouched for bytes that rotted since (same size and mtime):
                # hash the wheel again; only the pinned bytes themselves being broken is an error.
                if entry.wheel_ok(full=True):
                    raise
                entry.drop_wheel("its sha256 no longer matches the pin")
        if not may_download:
            raise _not_cached(entry, members)
        _extract_remote(entry, pin, members, full=full, progress=progress)
        entry.sweep_temporaries()
        return "download"


# -- public entry points ----------------------------------------------------------------------
def _begin(uri: str) -> tuple[Path | None, Manifest | None, str | None]:
    """Check ``uri`` and try step (a); else return what the later steps need."""
    check_uri(uri)
    path = _kernel_dir_path(uri)
    if path:
        return path, None, None
    manifest = load_manifest()
    return None, manifest, member_for(manifest.member_prefix, uri)


def locate(uri: str, *, download: bool = True, progress: Progress = None) -> tuple[str, Path]:
    """``(step, path)`` of module ``uri``, materializing it (extract/download) when needed."""
    path, manifest, member = _begin(uri)
    if path:
        return "kernel_dir", path
    settings.warn_ignored()
    notes = []
    if settings.env(settings.KERNEL_DIR_ENV):
        notes.append(f"(a) not in {settings.env(settings.KERNEL_DIR_ENV)}")

    local = _local_wheel(manifest, settings.env(settings.KERNEL_WHEEL_ENV))
    if local:
        wheel, entry = local
        if entry.member_ok(member):
            return "local_wheel", entry.file_path(member)
        try:
            _extract_local(wheel, entry, [member])
            return "local_wheel", entry.file_path(member)
        except KernelNotFoundError:
            notes.append(f"(b) not in {wheel}")

    path = _installed_path(manifest, uri)
    if path:
        return "installed_package", path
    notes.append(f"(c) {manifest.package}: {_installed_package(manifest)[1]}")

    try:
        pin = platform_pin(manifest)
    except UnsupportedPlatformError as exc:
        raise UnsupportedPlatformError(f"{exc}. Module {uri!r} was also not found: {'; '.join(notes)}") from None
    except KernelNotFoundError as exc:  # an unpinned release never resolved, offline
        raise KernelNotFoundError(f"module {uri!r}: {exc}; {'; '.join(notes)}") from None
    if pin.members is not None and member not in pin.members:
        raise KernelNotFoundError(
            f"module {uri!r} is not in the pinned wheel {pin.filename} (no such member {member}); "
            f"{'; '.join(notes)}"
        )
    step = _ensure_pinned(pin, [member], download=download, full=False, progress=progress)
    return step, _pinned_entry(pin).file_path(member)


def locate_source(uri: str, *, download: bool = True, progress: Progress = None):
    """:func:`locate` plus the module's FlashInfer version: ``(step, path, version, how)``."""
    step, path = locate(uri, download=download, progress=progress)
    return (step, path, *source_version(step))


def fetch(uris=None, *, wheel: str | Path | None = None, full: bool = False, progress: Progress = None,
          verify: bool = False) -> dict[str, Path]:
    """Put modules ``uris`` (default: the fixed ones) into the cache now; return their paths.

    ``wheel``: take them from this local wheel (verified like step b) instead of the pinned
    download. ``full``: download the whole wheel even when a partial fetch is possible.
    ``verify``: hash the cached copies in full (not only size and mtime) and replace damaged ones.
    Temporary files that a killed extraction left in the entry are removed.
    """
    settings.warn_ignored()
    uris = [check_uri(u) for u in (uris or FIXED_MODULES)]
    manifest = load_manifest()
    members = {u: member_for(manifest.member_prefix, u) for u in uris}
    if wheel is not None:
        path, entry = _local_wheel(manifest, wheel)  # same verification rules as step (b)
        entry.full_verify = entry.full_verify or verify
        _extract_local(path, entry, list(members.values()))
        _sweep(entry)
        return {u: entry.file_path(m) for u, m in members.items()}
    pin = platform_pin(manifest)
    if pin.members is not None:
        missing = [m for m in members.values() if m not in pin.members]
        if missing:
            raise KernelNotFoundError(f"not in the pinned wheel {pin.filename}: {', '.join(missing)}")
    entry = _pinned_entry(pin, verify)
    if full:
        with _locked(entry):
            if not entry.wheel_ok():
                _download_wheel(entry, pin, progress)
    _ensure_pinned(pin, list(members.values()), download=True, full=full, progress=progress, verify=verify)
    _sweep(entry)
    return {u: entry.file_path(m) for u, m in members.items()}


def where_is(uri: str, *, verify: bool = False) -> tuple[str, Path | None]:
    """Which step would supply ``uri``, and its path if it is already on disk.

    No network, no extraction (at most the cache's stat index is refreshed).
    ``("download", None)``: it would be fetched; ``("missing", None)``: no source has it.
    A ``None`` path with another step means "would be extracted from that step's wheel"
    (a damaged cached copy included). ``verify``: hash cached copies in full.
    An unusable ``$FLASHINFER_CY_KERNEL_WHEEL`` raises the ArtifactError ``locate`` raises.
    """
    return inspect(uri, verify=verify)[:2]


def inspect(uri: str, *, verify: bool = False) -> tuple[str, Path | None, list[str]]:
    """:func:`where_is` plus the damage met in the cache (``"<path>: <what is wrong>"``)."""
    path, manifest, member = _begin(uri)
    if path:
        return "kernel_dir", path, []
    problems: list[str] = []

    def ok(entry: CacheEntry) -> bool:
        entry.full_verify = entry.full_verify or verify
        good = entry.member_ok(member)
        problems.extend(p for p in entry.problems if p not in problems)
        return good

    # An unusable FLASHINFER_CY_KERNEL_WHEEL raises here as it does in locate(): reporting the
    # module as available while locate() fails would send doctor users down the wrong path.
    local = _local_wheel(manifest, settings.env(settings.KERNEL_WHEEL_ENV))
    if local:
        wheel, entry = local
        if ok(entry):
            return "local_wheel", entry.file_path(member), problems
        if _zip_has(wheel, member):
            return "local_wheel", None, problems
    path = _installed_path(manifest, uri)
    if path:
        return "installed_package", path, problems
    try:
        pin = platform_pin(manifest, network=False)
    except UnsupportedPlatformError:
        return "missing", None, problems
    if pin is None:  # an unpinned release not resolved yet: the index names its wheel on download
        return ("missing" if settings.offline() else "download"), None, problems
    if pin.members is not None and member not in pin.members:
        return "missing", None, problems
    entry = _pinned_entry(pin)
    if ok(entry):
        return "cache", entry.file_path(member), problems
    if entry.wheel_path.is_file() and _zip_has(entry.wheel_path, member):
        return "cache", None, problems
    return ("missing" if settings.offline() else "download"), None, problems


def _describe_unresolved(row, manifest: Manifest, cuda: str, platform: str) -> None:
    """The cache and download rows for a release the manifest does not pin, before the index was read."""
    from .host import machine_arch
    from .index import page_url

    page = page_url(manifest.cuda_key(cuda, machine_arch()))
    version = wanted_version(manifest)
    row("cache", False, settings.cache_root(),
        f"{platform}; {manifest.package} {version} is not pinned ({manifest.version} is) and its wheel was "
        "not resolved yet: nothing cached")
    row("download", not settings.offline(), page,
        f"off ({settings.OFFLINE_ENV}=1)" if settings.offline() else
        f"wheel and sha256 from the index {page} ({settings.WHEEL_INDEX_URL_ENV}), https, checked before use")


def _zip_has(wheel: Path, member: str) -> bool:
    import zipfile

    try:
        with zipfile.ZipFile(wheel) as zf:
            zf.getinfo(member)
        return True
    except (KeyError, OSError, zipfile.BadZipFile):
        return False


def describe_sources() -> list[dict]:
    """One dict per step, in resolution order: ``step``, ``configured``, ``location``, ``status``."""
    rows = []

    def row(step, configured, location, status):
        rows.append({"step": step, "order": "abcde"[len(rows)], "configured": configured,
                     "location": None if location is None else str(location), "status": status})

    kdir = settings.env(settings.KERNEL_DIR_ENV)
    row("kernel_dir", bool(kdir), kdir,
        f"{settings.KERNEL_DIR_ENV} not set" if not kdir
        else ("directory" if Path(kdir).is_dir() else "does not exist"))

    try:
        manifest = load_manifest()
    except ArtifactError as exc:
        for step in STEPS[1:]:
            row(step, False, None, f"manifest unusable: {exc}")
        return rows

    wheel = settings.env(settings.KERNEL_WHEEL_ENV)
    try:
        local = _local_wheel(manifest, wheel)
        status = f"{settings.KERNEL_WHEEL_ENV} not set" if local is None else f"expects sha256 {local[1].sha256}"
    except ArtifactError as exc:
        status = f"unusable: {exc}"
    row("local_wheel", bool(wheel), wheel, status)

    location, status = _installed_package(manifest)
    row("installed_package", location is not None, location, status)

    root = settings.cache_root()
    try:
        from .host import detect_cuda_version, machine_arch

        cuda, how = detect_cuda_version()
        pin = platform_pin(manifest, network=False)
        if pin is None:
            _describe_unresolved(row, manifest, cuda, f"CUDA {cuda} from {how}, {machine_arch()}")
            return rows
        entry = _pinned_entry(pin)
        platform = f"CUDA {cuda} from {how}, {machine_arch()} -> {pin.key} {pin.filename}; {pin.trust_source()}"
        cached = len(entry.extracted_members())
        wheel_state = "full wheel cached" if entry.wheel_path.exists() else "no full wheel"
        row("cache", True, entry.dir, f"{platform}; {cached} module(s) extracted; {wheel_state}")
        how_fetch = "partial fetch (RECORD pinned)" if pin.record_sha256 else f"full download ({human(pin.size)})"
        try:
            url = pin.download_url()
        except ArtifactError as exc:  # e.g. a mirror URL without a scheme
            row("download", False, None, f"unusable: {exc}")
        else:
            row("download", not settings.offline(), url,
                (f"off ({settings.OFFLINE_ENV}=1)" if settings.offline() else how_fetch) + f", {pin.trust_source()}")
    except ArtifactError as exc:  # no pin for this platform, a malformed index setting
        row("cache", False, root, str(exc))
        row("download", False, None, str(exc))
    return rows
