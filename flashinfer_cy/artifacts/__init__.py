"""Where kernel modules come from (pure Python; no CUDA, no torch).

Resolution order, first hit wins (details in :mod:`.resolve`):

(a) ``FLASHINFER_CY_KERNEL_DIR``    a directory holding ``<uri>/<uri>.so`` (or ``<uri>.so``)
(b) ``FLASHINFER_CY_KERNEL_WHEEL``  a local wheel, verified, extracted into the cache
(c) an installed ``flashinfer_jit_cache`` of the pinned version (not imported)
(d) the cache (``FLASHINFER_CY_CACHE_DIR`` or the OS user cache dir)
(e) download of the pinned wheel (partial by HTTP Range when its RECORD is pinned)

Importing this package is cheap: the submodules (urllib, zipfile, tqdm, filelock...) load on
first use.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from .settings import KERNEL_DIR_ENV

FIXED_MODULES = ("norm", "page", "gdn_prefill_sm90")  # what the core loads eagerly

__all__ = [
    "FIXED_MODULES", "KERNEL_DIR_ENV", "describe_sources", "expected_flashinfer_version",
    "fetch_modules", "locate_module",
    "locate_module_ex", "locate_module_source", "ModuleSource", "platform_info", "where_is",
]


def locate_module(uri: str, *, download: bool = True, progress=None) -> Path:
    """Return the path of ``<uri>.so``, extracting or downloading it when needed.

    Raises :class:`~flashinfer_cy.errors.KernelNotFoundError` when no source has it (the message lists what each step
    said), :class:`~flashinfer_cy.errors.UnsupportedPlatformError` when no wheel is pinned for this
    CUDA/arch, other :class:`~flashinfer_cy.errors.ArtifactError` subclasses for bad bytes
    (checksum), unsafe wheels or failed downloads, and ``ValueError`` for a malformed ``uri``.
    ``progress``: ``None`` = tqdm bar on a TTY, ``False`` = quiet, or ``callable(done, total)``.
    """
    return locate_module_ex(uri, download=download, progress=progress)[1]


def locate_module_ex(uri: str, *, download: bool = True, progress=None) -> tuple[str, Path]:
    """Like :func:`locate_module` but returns ``(step, path)`` (step names in ``resolve.STEPS``)."""
    from .resolve import locate

    return locate(uri, download=download, progress=progress)


class ModuleSource(NamedTuple):
    """Where module ``<uri>.so`` came from and which FlashInfer release it is."""

    step: str  # a step of resolve.STEPS
    path: Path
    flashinfer_version: str | None  # None: unknown (a kernel dir without a marker)
    version_from: str  # how the version was learned, or why it is unknown


def locate_module_source(uri: str, *, download: bool = True, progress=None) -> ModuleSource:
    """Like :func:`locate_module_ex`, plus the module's FlashInfer version:
    ``$FLASHINFER_CY_FLASHINFER_VERSION`` if set; else the kernel dir's
    ``flashinfer_version.txt`` (written by ``tools/build_kernels.py``; none: unknown), the
    wheel file name's version (local wheel, cache, download) or the installed
    ``flashinfer_jit_cache``'s, before '+'. ``load_module`` gives it to the Bindings, which
    check it before their first call."""
    from .resolve import locate_source

    return ModuleSource(*locate_source(uri, download=download, progress=progress))


def expected_flashinfer_version() -> str:
    """The FlashInfer release the modules looked up now are expected to be of (the setting,
    else the kernel dir's marker, else the pinned release): which name to ask for where a
    release renamed a module (batch MLA's ``_planabi2`` in 0.7.x). The module's own release
    (:func:`locate_module_source`) is what its Bindings are checked against."""
    from .resolve import expected_version

    return expected_version()


def where_is(uri: str, *, verify: bool = False) -> tuple[str, Path | None]:
    """``(step, path or None)`` that would supply ``uri``; touches no network and writes nothing.
    ``verify``: hash a cached copy in full instead of trusting an unchanged size and mtime.

    Raises the :class:`~flashinfer_cy.errors.ArtifactError` that :func:`locate_module` would for
    an unusable ``FLASHINFER_CY_KERNEL_WHEEL`` (or a malformed setting), so the two agree.
    """
    from .resolve import where_is as _where_is

    return _where_is(uri, verify=verify)


def describe_sources() -> list[dict]:
    """Each resolution step as ``{"step", "order", "configured", "location", "status"}``."""
    from .resolve import describe_sources as _describe

    return _describe()


def fetch_modules(uris=None, *, wheel=None, full: bool = False, progress=None, verify: bool = False) -> dict[str, Path]:
    """Put ``uris`` (default :data:`FIXED_MODULES`) into the cache now; ``{uri: path}``.
    ``verify``: hash cached copies in full and replace damaged ones (bit rot)."""
    from .resolve import fetch

    return fetch(uris, wheel=wheel, full=full, progress=progress, verify=verify)


def platform_info() -> dict:
    """``{"cuda", "cuda_source", "arch", "wheel"}`` for this machine (``wheel``: pin key or error)."""
    from ..errors import ArtifactError
    from .host import detect_cuda_version, machine_arch
    from .resolve import platform_pin

    info = {"arch": machine_arch(), "cuda": None, "cuda_source": None, "wheel": None}
    try:
        info["cuda"], info["cuda_source"] = detect_cuda_version()
        pin = platform_pin(network=False)
        info["wheel"] = (f"{pin.key}: {pin.filename} ({pin.trust_source()})" if pin else
                         "an unpinned release, resolved from the wheel index when first needed")
    except ArtifactError as exc:
        info["wheel"] = f"none: {exc}"
    return info

