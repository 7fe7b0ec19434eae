"""artifacts.expected_flashinfer_version() is asked by every MLA and FA2 batch-prefill plan
(which module name to look up): it keeps what it read, keyed by the settings and the
marker's stat, and reads again when they change."""

from __future__ import annotations

from flashinfer_cy.artifacts import expected_flashinfer_version, resolve


def test_reads_the_marker_once_and_again_when_it_changes(tmp_path, monkeypatch):
    reads = []
    real = resolve._marker_version
    monkeypatch.setattr(resolve, "_marker_version",
                        lambda root: reads.append(root) or real(root))
    monkeypatch.delenv("FLASHINFER_CY_FLASHINFER_VERSION", raising=False)
    monkeypatch.setenv("FLASHINFER_CY_KERNEL_DIR", str(tmp_path))
    marker = tmp_path / "flashinfer_version.txt"
    marker.write_text("0.7.4\n")
    assert [expected_flashinfer_version() for _ in range(5)] == ["0.7.4"] * 5
    assert len(reads) == 1  # kept
    marker.write_text("0.6.3\n\n")  # rewritten (another size): read again
    assert expected_flashinfer_version() == "0.6.3" and len(reads) == 2
    marker.unlink()  # no marker: the pinned release
    assert expected_flashinfer_version() == resolve.load_manifest().version
    other = tmp_path / "other"
    other.mkdir()
    (other / "flashinfer_version.txt").write_text("0.7.4")
    monkeypatch.setenv("FLASHINFER_CY_KERNEL_DIR", str(other))  # another kernel dir
    assert expected_flashinfer_version() == "0.7.4"
    monkeypatch.setenv("FLASHINFER_CY_FLASHINFER_VERSION", "0.6.3")  # the setting wins
    assert expected_flashinfer_version() == "0.6.3"
