"""The settings table in README.md and docs/api.md is the one the code renders, and every
FLASHINFER_CY_* variable the artifacts layer reads is in it: the docs cannot drift."""

import re
from pathlib import Path

import pytest

from flashinfer_cy.artifacts import settings

ROOT = Path(__file__).resolve().parents[2]
BEGIN = "<!-- settings table: generated from flashinfer_cy/artifacts/settings.py"
END = "<!-- end of settings table -->"


@pytest.mark.parametrize("doc", ["README.md", "docs/api.md"])
def test_doc_carries_the_generated_table(doc):
    text = (ROOT / doc).read_text(encoding="utf-8")
    assert text.count(BEGIN) == 1 and text.count(END) == 1, f"{doc}: no settings table markers"
    block = text.split(BEGIN, 1)[1].split("\n", 1)[1].split(END, 1)[0]
    assert block == settings.markdown_table(), (
        f"{doc}'s settings table is stale; replace it with:\n{settings.markdown_table()}")


def test_every_variable_the_artifacts_layer_reads_is_in_the_table():
    source = "".join(p.read_text() for p in (ROOT / "flashinfer_cy" / "artifacts").glob("*.py"))
    read = set(re.findall(r'"(FLASHINFER_CY_[A-Z0-9_]+)"', source))
    documented = {s.name for s in settings._settings_table()}
    assert read and read <= documented, read - documented
    assert set(settings.ALL_ENV_VARS) <= documented


@pytest.mark.parametrize("doc", ["README.md", "docs/api.md"])
def test_doc_says_what_a_partial_download_leaves_unchecked(doc):
    """No blanket "sha256-verified before use": a partial download checks RECORD and its
    members, never the wheel's own sha256 (it does not fetch all of the wheel's bytes)."""
    text = " ".join((ROOT / doc).read_text(encoding="utf-8").split())
    assert "sha256-verified before" not in text, doc
    assert re.search(r"partial download .{0,300}?the wheel's own sha256", text, re.I), doc
