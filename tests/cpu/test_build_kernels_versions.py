"""tools/kernel_uris.py and tools/build_kernels.py per flashinfer release (no nvcc, no flashinfer).

The 0.7.4 URIs are written here from that release's ``get_*_uri`` (flashinfer/jit/attention/
modules.py of the 0.7.4 wheel), independently of kernel_uris' templates; the families' modules
and exports are checked against the committed ABI files (flashinfer_cy/abi/flashinfer-<v>.json).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_build_kernels import (  # noqa: E402
    fake_modules, kernel_uris, no_flashinfer, rule_batch_decode, rule_batch_mla, rule_batch_prefill,  # noqa: F401
    rule_single_decode, rule_single_prefill, run_tool,
)

from flashinfer_cy import abi  # noqa: E402


def test_default_release_is_063_and_unknown_is_an_error():
    assert kernel_uris.DEFAULT_VERSION == kernel_uris.FLASHINFER_VERSION == "0.6.3"
    assert kernel_uris.expand(["@all"]) == kernel_uris.expand(["@all"], "0.6.3")
    with pytest.raises(ValueError, match=r"flashinfer '0\.8\.0' is not a release .* known: 0\.6\.3, 0\.7\.4"):
        kernel_uris.expand(["norm"], "0.8.0")
    r = run_tool("--list", "norm", "--flashinfer-version", "0.8.0")
    assert r.returncode == 2 and "--flashinfer-version" in r.stderr and "0.8.0" in r.stderr
    assert "known: 0.6.3, 0.7.4" in r.stderr


def test_074_list_drops_gdn_and_keeps_the_other_uris(no_flashinfer):
    r = run_tool("--list", "@all", "--flashinfer-version", "0.7.4")
    assert r.returncode == 0, r.stderr
    # the same modules but gdn; batch MLA under 0.7.4's name (_planabi2), FA2 batch prefill
    # under the name of the module 0.7.4's wheel ships and its wrappers load (_kv_stride_equal)
    def named_074(u):
        u = u.replace("profiler_False", "profiler_False_planabi2")
        if u.startswith("batch_prefill_") and not u.endswith("_sm90"):
            u += "_kv_stride_equal"
        return u
    assert r.stdout.split() == [named_074(u) for u in kernel_uris.expand(["@all"])
                                if u != "gdn_prefill_sm90"]
    # the other default variants' names are those of 0.7.4's get_*_uri (no _token_head_sf)
    dt = "bf16"
    for uri in (rule_batch_decode(dt, "e4m3", dt, "i32", 128, 128, 0, True, True),
                rule_single_decode(dt, dt, dt, 64, 64, 0, False, False),
                rule_single_prefill("fa3", dt, dt, dt, 128, 128, 0, False, False, False),
                rule_batch_prefill("fa3", dt, dt, dt, "i32", 192, 128, 0, True, False, False)):
        assert kernel_uris.parse_uri(uri, "0.7.4").uri == uri
    fa2 = rule_batch_prefill("fa2", dt, dt, dt, "i32", 192, 128, 0, True, False, False)
    spec = kernel_uris.parse_uri(fa2 + "_kv_stride_equal", "0.7.4")
    assert spec.kwargs["backend"] == "fa2"
    assert spec.generator.endswith(":_gen_batch_prefill_primary_module")
    assert kernel_uris.parse_uri(fa2, "0.6.3").generator.endswith(":gen_batch_prefill_module")
    with pytest.raises(ValueError, match="_kv_stride_equal"):
        kernel_uris.parse_uri(fa2, "0.7.4")  # the runtime-stride module: not 0.7.4's shipped one
    r = run_tool("--list", "@core", "@gdn", "--flashinfer-version", "0.7.4")
    assert r.returncode == 2 and "@gdn has no modules in flashinfer 0.7.4" in r.stderr
    with pytest.raises(ValueError, match="does not exist in flashinfer 0.7.4: 0.7.x removed jit/gdn.py"):
        kernel_uris.parse_uri("gdn_prefill_sm90", "0.7.4")


def test_074_mla_uri_has_the_plan_abi_suffix():
    for backend in ("fa2", "fa3"):
        old = rule_batch_mla(backend, "bf16", "bf16", "bf16", "i32", 512, 64, False)
        new = old.replace("profiler_False", "profiler_False_planabi2")
        assert kernel_uris.parse_uri(new, "0.7.4").kwargs["backend"] == backend
        assert kernel_uris.attention_uri is not None and kernel_uris.parse_uri(old, "0.6.3").uri == old
        with pytest.raises(ValueError):
            kernel_uris.parse_uri(old, "0.7.4")  # a 0.6.3 MLA module is not a 0.7.4 one
        with pytest.raises(ValueError):
            kernel_uris.parse_uri(new, "0.6.3")


@pytest.mark.parametrize("version", sorted(kernel_uris.RELEASES))
def test_families_match_the_release_abi_file(version):
    """Each fixed-name module of the release is in its ABI file with every export the runtime calls
    (and a module the file lacks is absent here): the grammar and the extracted ABI agree."""
    modules = abi.load(version)["modules"]
    for family in kernel_uris.release(version).families:
        if "{" in family.template:
            continue
        assert family.template in modules, (version, family.template)
        assert set(family.exports) <= set(modules[family.template]["exports"]), (version, family.name)
    absent = {k for k in kernel_uris.release(version).absent if not k.startswith("@")}
    assert not absent & set(modules)


def test_build_writes_the_release_in_the_marker(tmp_path, no_flashinfer):
    out = tmp_path / "k074"
    fake_modules(out, ["norm"])
    r = run_tool("--skip-existing", "--out", out, "--flashinfer-version", "0.7.4", "norm")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.splitlines()[0])["uri"] == "norm"
    assert (out / "flashinfer_version.txt").read_text() == "0.7.4\n"
    r = run_tool("--skip-existing", "--out", out, "norm")  # default 0.6.3 into a 0.7.4 dir
    assert r.returncode != 0 and "holds flashinfer 0.7.4 modules" in r.stderr and "0.6.3" in r.stderr


def test_flashinfer_src_must_be_a_wheel_or_a_package_dir(tmp_path, no_flashinfer):
    out = tmp_path / "k"
    r = run_tool("--out", out, "--flashinfer-version", "0.7.4", "--flashinfer-src", tmp_path, "norm",
                 "--work-dir", tmp_path / "w")
    assert r.returncode != 0 and "has no flashinfer/__init__.py" in r.stderr  # before any toolkit look-up
    assert not (out / "norm").exists()
    (tmp_path / "flashinfer_python-0.7.4.tar.gz").write_bytes(b"")
    r = run_tool("--out", out, "--flashinfer-version", "0.7.4", "--flashinfer-src",
                 tmp_path / "flashinfer_python-0.7.4.tar.gz", "norm", "--work-dir", tmp_path / "w")
    assert r.returncode != 0 and "neither a folder nor a flashinfer_python-*.whl" in r.stderr
