"""A release manifest.json does not pin: its wheel and sha256 come from a PEP 503 index page that
the loopback server serves (FLASHINFER_CY_FLASHINFER_VERSION picks the release,
FLASHINFER_CY_WHEEL_INDEX_URL the index). The bytes are checked before anything is extracted."""

import io
import itertools
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _wheelserver import (  # noqa: E402,F401
    ARCH, WheelServer, artifacts_env, build_wheel, refused_url, served_wheel, write_manifest,
)

from flashinfer_cy.artifacts import (  # noqa: E402
    fetch_modules, index, locate_module_source, settings, where_is,
)
from flashinfer_cy.artifacts.cli import print_sources  # noqa: E402
from flashinfer_cy.errors import (  # noqa: E402
    ChecksumMismatchError, DownloadError, KernelNotFoundError, SettingsError, WheelIndexError,
)

VERSION = "0.7.4"
NAME = f"flashinfer_jit_cache-{VERSION}+cu130-cp39-abi3-manylinux_2_28_{ARCH}.whl"
PAGE = "whl/cu130/flashinfer-jit-cache/"  # the server's path of the index page
OTHER = "f" * 64


def anchor(href: str, *attrs: str) -> str:
    return f'<a href="{href}" {" ".join(attrs)}>{href.rsplit("/", 1)[-1].split("#")[0]}</a><br/>'


def page(*anchors: str) -> bytes:
    return ("<!DOCTYPE html><html><body><h1>Links for flashinfer-jit-cache</h1>"
            + "".join(anchors) + "</body></html>").encode()


@pytest.fixture
def index_env(artifacts_env, monkeypatch):
    """(serve, wheel): ``serve(page_bytes)`` starts the server with the 0.7.4 wheel under files/
    and the page at PAGE, points the settings at it and returns the server."""
    wheel = build_wheel(artifacts_env / NAME)
    write_manifest(artifacts_env / "manifest.json", wheel, refused_url(f"flashinfer_jit_cache-0.6.3+cu130-x-{ARCH}.whl"))
    monkeypatch.setenv(settings.FLASHINFER_VERSION_ENV, VERSION)
    monkeypatch.setattr(index, "_memo", {})
    servers = []

    def serve(body: bytes) -> WheelServer:
        server = WheelServer({PAGE: body, f"files/{NAME}": wheel["path"].read_bytes()}).__enter__()
        servers.append(server)
        monkeypatch.setenv(settings.WHEEL_INDEX_URL_ENV, f"http://127.0.0.1:{server.port}/whl/{{cuda}}")
        return server

    yield serve, wheel
    for server in servers:
        server.stop()


def cache_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_unpinned_release_from_the_index_relative_href(index_env, artifacts_env, monkeypatch):
    serve, wheel = index_env
    server = serve(page(anchor(f"../../../files/{NAME}#sha256={wheel['sha256']}", 'data-requires-python=">=3.9"')))
    src = locate_module_source("norm", progress=False)
    assert src.step == "download" and src.flashinfer_version == VERSION
    assert src.path.read_bytes() == wheel["modules"]["norm"]
    assert [g["path"] for g in server.gets()] == [PAGE, f"files/{NAME}"]
    # the resolution is stored in the cache: offline, a fresh process finds the cached module
    monkeypatch.setattr(index, "_memo", {})
    monkeypatch.setenv(settings.OFFLINE_ENV, "1")
    server.stop()
    assert locate_module_source("page", progress=False).path.read_bytes() == wheel["modules"]["page"]
    assert where_is("norm") == ("cache", src.path)


def test_doctor_names_the_trust_source(index_env, monkeypatch):
    serve, wheel = index_env
    server = serve(page(anchor(f"/files/{NAME}#sha256={wheel['sha256']}")))
    out = io.StringIO()
    print_sources(["norm"], out)  # before: no network, says where the hash will come from
    assert f"wheel and sha256 from the index {server.url(PAGE)}" in out.getvalue()
    assert server.gets() == []
    locate_module_source("norm", progress=False)
    out = io.StringIO()
    print_sources(["norm"], out)
    assert f"{NAME}; sha256 from the index {server.url(PAGE)}" in out.getvalue()
    monkeypatch.delenv(settings.FLASHINFER_VERSION_ENV)
    out = io.StringIO()
    print_sources(["norm"], out)
    assert "sha256 pinned in the manifest" in out.getvalue() and "from the index" not in out.getvalue()


def test_pinned_release_keeps_its_pin_and_never_reads_the_index(served_wheel, monkeypatch):
    server, wheel, _ = served_wheel
    monkeypatch.setenv(settings.FLASHINFER_VERSION_ENV, "0.6.3")
    monkeypatch.setenv(settings.WHEEL_INDEX_URL_ENV, refused_url("whl/{cuda}").rsplit("/", 1)[0])
    src = locate_module_source("norm", progress=False)
    assert src.step == "download" and src.path.read_bytes() == wheel["modules"]["norm"]


def test_anchor_without_sha256_is_refused(index_env, artifacts_env):
    serve, _ = index_env
    server = serve(page(anchor(f"/files/{NAME}"), anchor(f"/files/{NAME}#md5=0123")))
    with pytest.raises(KernelNotFoundError, match="no #sha256= fragment"):
        locate_module_source("norm", progress=False)
    assert [g["path"] for g in server.gets()] == [PAGE]  # the wheel was never requested
    assert not [f for f in cache_files(artifacts_env / "cache") if not f.startswith("index/")]


def test_wrong_hash_leaves_nothing_in_the_cache(index_env, artifacts_env):
    serve, _ = index_env
    serve(page(anchor(f"/files/{NAME}#sha256={OTHER}")))
    with pytest.raises(ChecksumMismatchError):
        locate_module_source("norm", progress=False)
    left = cache_files(artifacts_env / "cache")
    assert not [f for f in left if f.endswith((".whl", ".part", ".so", ".tmp"))], left


def test_yanked_is_skipped_and_lowest_glibc_wins(index_env):
    serve, wheel = index_env
    newer_glibc = NAME.replace("manylinux_2_28", "manylinux_2_34")
    # unskipped, the yanked link would contradict the good one's hash (an error); a 2_34 choice
    # would fetch a file the server does not have
    serve(page(anchor(f"/files/{NAME}#sha256={OTHER}", 'data-yanked="broken build"'),
               anchor(f"/files/{newer_glibc}#sha256={OTHER}"),
               anchor(f"/files/{NAME}#sha256={wheel['sha256']}")))
    src = locate_module_source("norm", progress=False)
    assert src.path.read_bytes() == wheel["modules"]["norm"]


def test_only_yanked_says_so(index_env):
    serve, wheel = index_env
    serve(page(anchor(f"/files/{NAME}#sha256={wheel['sha256']}", 'data-yanked="broken build"')))
    with pytest.raises(KernelNotFoundError, match=r"is yanked \(broken build\)"):
        locate_module_source("norm", progress=False)


def test_no_matching_wheel_names_the_index(index_env):
    serve, wheel = index_env
    server = serve(page(anchor(f"/files/{NAME.replace('cu130', 'cu129')}#sha256={wheel['sha256']}"),
                        anchor(f"/files/{NAME.replace(VERSION, '0.7.3')}#sha256={wheel['sha256']}")))
    with pytest.raises(KernelNotFoundError) as info:
        locate_module_source("norm", progress=False)
    assert server.url(PAGE) in str(info.value) and "none is listed" in str(info.value)
    assert settings.WHEEL_INDEX_URL_ENV in str(info.value)


def test_index_unreachable_names_url_and_setting(index_env, monkeypatch):
    url = refused_url("whl")
    monkeypatch.setenv(settings.WHEEL_INDEX_URL_ENV, url + "/{cuda}")
    with pytest.raises(DownloadError) as info:
        locate_module_source("norm", progress=False)
    assert f"{url}/cu130/flashinfer-jit-cache/" in str(info.value)
    assert settings.WHEEL_INDEX_URL_ENV in str(info.value)


@pytest.mark.parametrize("url", ["http://example.com/whl", "file:///tmp/whl", "ftp://127.0.0.1/whl", "whl"])
def test_index_setting_must_be_https_or_loopback(url, monkeypatch):
    monkeypatch.setenv(settings.WHEEL_INDEX_URL_ENV, url)
    with pytest.raises(SettingsError, match=settings.WHEEL_INDEX_URL_ENV):
        settings.wheel_index_url()


# -- the parser and the choice, without a server --------------------------------------------
BASE = "https://flashinfer.ai/whl/cu130/flashinfer-jit-cache/"


def test_parse_index_resolves_hrefs_and_attributes():
    html = ('<a href="a.whl#sha256=' + "A" * 64 + '" data-requires-python="&gt;=3.9">a</a>'
            '<a href="../x/b.whl#sha256=' + "b" * 63 + '" data-yanked>b</a>'
            '<a href="https://github.com/r/c%2Bd.whl?x=1&amp;y=2#sha256=' + "c" * 64 + '">c</a>')
    a, b, c = index.parse_index(html, BASE)
    assert (a.url, a.sha256, a.requires_python, a.yanked) == (BASE + "a.whl", "a" * 64, ">=3.9", None)
    assert (b.url, b.sha256, b.yanked) == ("https://flashinfer.ai/whl/cu130/x/b.whl", None, "")
    assert (c.filename, c.url, c.sha256) == ("c+d.whl", "https://github.com/r/c%2Bd.whl?x=1&y=2", "c" * 64)
    (d,) = index.parse_index('<base href="https://mirror/w/"><a href="d.whl">d</a>', BASE)
    assert d.url == "https://mirror/w/d.whl"


def link(name: str, sha: str = "a" * 64, url: str | None = None, **kw) -> index.IndexLink:
    return index.IndexLink(name, url or "https://h/" + name, sha, kw.get("rp"), kw.get("yanked"))


def test_choice_is_deterministic_whatever_the_page_order():
    links = [link(NAME.replace("manylinux_2_28", "manylinux_2_34")), link(NAME.replace("cp39", "cp310")),
             link(NAME), link(NAME.replace(VERSION, VERSION + ".post1"))]
    chosen = {index.choose(list(p), VERSION, "cu130", ARCH, BASE).filename for p in itertools.permutations(links)}
    assert chosen == {NAME.replace("cp39", "cp310")}  # 2_28 before 2_34; then by file name (cp310 < cp39)


def test_clear_text_link_and_contradicting_hashes():
    with pytest.raises(KernelNotFoundError, match="http://, not https://"):
        index.choose([link(NAME, url="http://example.com/" + NAME)], VERSION, "cu130", ARCH, BASE)
    # the python tag is the one field no other rule constrains: a path there would leave the cache entry
    escaping = NAME.replace("-cp39-", "-cp39%2F..%2F..%2Fx-")
    (evil,) = index.parse_index(f'<a href="{escaping}#sha256={"a" * 64}">x</a>', BASE)
    assert evil.filename == NAME.replace("-cp39-", "-cp39/../../x-")
    with pytest.raises(KernelNotFoundError, match="none is listed"):
        index.choose([evil], VERSION, "cu130", ARCH, BASE)
    with pytest.raises(WheelIndexError, match="twice with different sha256"):
        index.choose([link(NAME), link(NAME, "b" * 64)], VERSION, "cu130", ARCH, BASE)


def test_offline_before_the_release_was_ever_resolved_is_clear(index_env, monkeypatch):
    """Offline, with no stored resolution of the selected release: a KernelNotFoundError
    that says so (it was an AttributeError on the missing pin)."""
    monkeypatch.setenv(settings.OFFLINE_ENV, "1")
    for call in (lambda: locate_module_source("norm"), lambda: fetch_modules(["norm"])):
        with pytest.raises(KernelNotFoundError, match=r"flashinfer 0\.7\.4 for cu130/.* was never "
                           r"resolved from the index .* downloading is off \(FLASHINFER_CY_OFFLINE=1\)"):
            call()
