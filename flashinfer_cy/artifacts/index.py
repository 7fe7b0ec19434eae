"""A kernel wheel that ``manifest.json`` does not pin, resolved from FlashInfer's PEP 503 index.

pip's trust model: the index page is fetched over HTTPS, and the anchor of the chosen wheel
carries its sha256 in the URL fragment (``<a href="...whl#sha256=<64 hex>">``). That hash is what
the wheel's bytes are then checked against, before anything is extracted (the same path as a
pinned wheel). An anchor without a sha256 fragment is never used; ``http://`` is refused except
on loopback (the test server). The resolution is stored in the cache, so a cached wheel is found
again offline and the index is read once per (release, CUDA flavour, arch).
"""

from __future__ import annotations

import dataclasses
import json
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

from ..errors import ArtifactError, DownloadError, KernelNotFoundError, WheelIndexError
from . import settings
from .manifest import Manifest, WheelPin

PROJECT = "flashinfer-jit-cache"  # PEP 503 normalized name: the page is <index>/<PROJECT>/
MAX_PAGE_BYTES = 16 << 20  # an index page is kilobytes; a runaway body is not read into memory
# Python and ABI tags of wheels whose kernel modules we can use: the pinned wheel is
# cp39-abi3; only its .so files are extracted, never its Python run, so no interpreter match.
_ABI_TAGS = {"abi3", "none"}


@dataclasses.dataclass(frozen=True)
class IndexLink:
    """One ``<a>`` of the index page."""

    filename: str
    url: str  # absolute, without the fragment
    sha256: str | None  # from ``#sha256=``; None: no (valid) sha256 fragment
    requires_python: str | None  # ``data-requires-python``: recorded, not applied (see _ABI_TAGS)
    yanked: str | None  # ``data-yanked`` (PEP 592): its reason, "" when none given; None: not yanked


class _Anchors(HTMLParser):
    """Collects the ``<a>`` elements (and a ``<base href>``) of a PEP 503 page."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.base: str | None = None
        self.anchors: list[dict[str, str | None]] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)  # values are unescaped by the parser (&amp; -> &)
        if tag == "base" and attrs.get("href") and self.base is None:
            self.base = attrs["href"]
        elif tag == "a" and attrs.get("href"):
            self.anchors.append(attrs)


def parse_index(html: str, page_url: str) -> list[IndexLink]:
    """Every link of the page, hrefs made absolute against the page URL (or its ``<base>``)."""
    parser = _Anchors()
    parser.feed(html)
    parser.close()
    base = urljoin(page_url, parser.base) if parser.base else page_url
    links = []
    for a in parser.anchors:
        url, fragment = urldefrag(urljoin(base, a["href"].strip()))
        name, _, value = fragment.partition("=")
        sha = value.lower() if name == "sha256" and _is_sha256(value.lower()) else None
        links.append(IndexLink(
            filename=unquote(urlsplit(url).path.rsplit("/", 1)[-1]),
            url=url,
            sha256=sha,
            requires_python=a.get("data-requires-python"),
            yanked=(a.get("data-yanked") or "") if "data-yanked" in a else None,
        ))
    return links


@dataclasses.dataclass(frozen=True)
class _WheelName:
    """``<dist>-<version>[-<build>]-<python>-<abi>-<platform>.whl`` split at its dashes."""

    dist: str
    version: str  # public version, before '+'
    local: str  # after '+': the CUDA flavour (cu130)
    abi: str
    platforms: tuple[str, ...]  # the compressed tag set, split at '.'

    @classmethod
    def parse(cls, filename: str) -> "_WheelName | None":
        # the name becomes a file in the cache entry: a path in it (an unquoted %2F) is no wheel name
        if not filename.endswith(".whl") or any(c in filename for c in "/\\\0"):
            return None
        parts = filename[:-4].split("-")
        if len(parts) not in (5, 6):
            return None
        version, _, local = parts[1].partition("+")
        return cls(parts[0].lower().replace("_", "-").replace(".", "-"), version, local, parts[-2],
                   tuple(parts[-1].split(".")))

    def glibc(self, arch: str) -> tuple[int, ...] | None:
        """The lowest glibc this wheel's platform tags for ``arch`` claim; None: not for ``arch``."""
        legacy = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
        found = []
        for tag in self.platforms:
            if not tag.endswith("_" + arch):
                continue
            head = tag[: -len(arch) - 1]
            if head in legacy:
                found.append(legacy[head])
            elif head.startswith("manylinux_"):
                major, _, minor = head[len("manylinux_"):].partition("_")
                if major.isdigit() and minor.isdigit():
                    found.append((int(major), int(minor)))
        return min(found) if found else None


def choose(links: list[IndexLink], version: str, cuda_key: str, arch: str, page_url: str) -> IndexLink:
    """The wheel of ``version`` for ``cuda_key`` and ``arch``.

    Candidates: ``flashinfer_jit_cache`` wheels of exactly that version, local tag ``cuda_key``,
    ABI abi3/none, a manylinux tag for ``arch``; yanked ones and ones without a sha256 fragment
    are set aside (and named if nothing else is left). Several left (e.g. manylinux_2_28 and
    manylinux_2_34 builds): the lowest glibc requirement wins (it runs on the most hosts), then the
    file name, so the choice never depends on the page's order. The same file name listed twice
    with two different hashes is an error: the index contradicts itself.
    """
    usable, set_aside = {}, []
    for link in links:
        name = _WheelName.parse(link.filename)
        if (name is None or name.dist != PROJECT or name.version != version or name.local != cuda_key
                or name.abi not in _ABI_TAGS or name.glibc(arch) is None):
            continue
        if link.yanked is not None:
            set_aside.append(f"{link.filename} is yanked" + (f" ({link.yanked})" if link.yanked else ""))
        elif link.sha256 is None:
            set_aside.append(f"{link.filename} has no #sha256= fragment on its link (refused: its bytes "
                             "could not be verified)")
        elif not settings.secure_url(link.url):
            set_aside.append(f"{link.filename} is served over {urlsplit(link.url).scheme}://, not https://")
        else:
            other = usable.setdefault(link.filename, link)
            if other.sha256 != link.sha256:
                raise WheelIndexError(f"the index {page_url} lists {link.filename} twice with different sha256 "
                                  f"({other.sha256}, {link.sha256}); refusing to pick one")
    if not usable:
        why = "; ".join(set_aside) if set_aside else "none is listed"
        raise KernelNotFoundError(
            f"no usable {PROJECT} {version} wheel for {cuda_key} on {arch} in the index {page_url}: {why}. "
            f"Set {settings.WHEEL_INDEX_URL_ENV} to an index that has one, or {settings.FLASHINFER_VERSION_ENV} "
            "to a release that has one")
    return min(usable.values(), key=lambda link: (_WheelName.parse(link.filename).glibc(arch), link.filename))


def page_url(cuda_key: str) -> str:
    """``<index>/flashinfer-jit-cache/`` for the CUDA flavour (``{cuda}`` in the setting)."""
    return f"{settings.wheel_index_url().replace('{cuda}', cuda_key)}/{PROJECT}/"


def _read_page(url: str) -> str:
    from .net import open_url, read_body, with_retries
    from .settings import HttpPolicy

    policy = HttpPolicy.from_env()

    def attempt(_n: int) -> str:
        with open_url(url, policy, {"Accept": "text/html"}) as response:
            body = read_body(response, MAX_PAGE_BYTES + 1, policy)
            charset = response.headers.get_content_charset() or "utf-8"
        if len(body) > MAX_PAGE_BYTES:
            raise WheelIndexError(f"the wheel index page {url} is larger than {MAX_PAGE_BYTES} bytes")
        return body.decode(charset, errors="replace")

    try:
        return with_retries("reading the wheel index", policy, attempt, url)
    except DownloadError as exc:
        raise DownloadError(f"cannot read FlashInfer's wheel index {url} (set by {settings.WHEEL_INDEX_URL_ENV}): "
                            f"{exc}") from exc


def _stored_path(version: str, cuda_key: str, arch: str) -> Path:
    # beside the entries (named by sha256), so `cache list` and `cache clean` leave it alone
    return settings.cache_root() / "index" / f"{PROJECT}-{version}-{cuda_key}-{arch}.json"


def _pin_of(doc: dict, manifest: Manifest, key: str) -> WheelPin:
    return WheelPin(key=key, filename=doc["filename"], url=doc["url"], sha256=doc["sha256"], size=None,
                    record_path=None, record_sha256=None, members=None, member_prefix=manifest.member_prefix,
                    version=doc["version"], trust=f"index {doc['index']}")


def _is_sha256(value) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def _stored(path: Path, version: str) -> dict | None:
    """A resolution stored earlier, if it is whole and about this release (else it is redone)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k), str) for k in ("filename", "url", "index")):
        return None
    name = _WheelName.parse(doc["filename"])
    if (doc.get("version") != version or name is None or name.version != version
            or not _is_sha256(doc.get("sha256")) or not settings.secure_url(doc["url"])):
        return None
    return doc


_memo: dict[tuple, WheelPin] = {}


def resolve(manifest: Manifest, version: str, cuda_key: str, arch: str, *, network: bool = True) -> WheelPin | None:
    """The wheel of ``version`` for this platform, as a pin whose ``trust`` names the index.

    ``network=False``: only what was resolved before (this process, or stored in the cache);
    None when nothing was.
    """
    key = f"{cuda_key}/{arch}"
    page = page_url(cuda_key)
    memo_key = (str(settings.cache_root()), page, version, key)
    if memo_key in _memo:
        return _memo[memo_key]
    path = _stored_path(version, cuda_key, arch)
    doc = _stored(path, version)
    if doc is None or doc["index"] != page:
        if not network or settings.offline():
            return None
        link = choose(parse_index(_read_page(page), page), version, cuda_key, arch, page)
        doc = {"filename": link.filename, "url": link.url, "sha256": link.sha256, "version": version,
               "index": page, "requires_python": link.requires_python}
        from .fsutil import write_atomic

        try:
            write_atomic(path, json.dumps(doc, indent=1).encode())
        except ArtifactError as exc:  # a read-only cache: resolved again next time
            from .net import log

            log.info("cannot store the index resolution: %s", exc)
    _memo[memo_key] = pin = _pin_of(doc, manifest, key)
    return pin
