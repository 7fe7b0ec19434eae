"""CPU tests for tools/build_kernels.py and tools/kernel_uris.py (no nvcc, no flashinfer).

The expected URIs are written here from the naming rules in docs/flashinfer-abi.md §4.1
(flashinfer 0.6.3 ``get_*_uri``), independently of kernel_uris' templates.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import itertools
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[2] / "tools"
sys.path.insert(0, str(TOOLS))
import build_kernels  # noqa: E402
import kernel_uris  # noqa: E402

# --------------------------------------------------------------------------- URI naming


def qkv(q, kv, o):
    return f"dtype_q_{q}_dtype_kv_{kv}_dtype_o_{o}"


def dims(dqk, dvo):
    return f"head_dim_qk_{dqk}_head_dim_vo_{dvo}"


def tail(p, swa, cap):
    return f"posenc_{p}_use_swa_{swa}_use_logits_cap_{cap}"  # str(bool): True/False


def sm90(backend):
    return "_sm90" if backend == "fa3" else ""


def rule_single_decode(q, kv, o, dqk, dvo, p, swa, cap):
    return f"single_decode_with_kv_cache_{qkv(q, kv, o)}_{dims(dqk, dvo)}_{tail(p, swa, cap)}"


def rule_batch_decode(q, kv, o, idx, dqk, dvo, p, swa, cap):
    return f"batch_decode_with_kv_cache_{qkv(q, kv, o)}_dtype_idx_{idx}_{dims(dqk, dvo)}_{tail(p, swa, cap)}"


def rule_single_prefill(backend, q, kv, o, dqk, dvo, p, swa, cap, f16qk):
    return (f"single_prefill_with_kv_cache_{qkv(q, kv, o)}_{dims(dqk, dvo)}_{tail(p, swa, cap)}"
            f"_f16qk_{f16qk}{sm90(backend)}")


def rule_batch_prefill(backend, q, kv, o, idx, dqk, dvo, p, swa, cap, f16qk):
    return (f"batch_prefill_with_kv_cache_{qkv(q, kv, o)}_dtype_idx_{idx}_{dims(dqk, dvo)}_"
            f"{tail(p, swa, cap)}_f16qk_{f16qk}{sm90(backend)}")


def rule_batch_mla(backend, q, kv, o, idx, ckv, kpe, prof):
    return (f"batch_mla_attention_{qkv(q, kv, o)}_dtype_idx_{idx}_head_dim_ckv_{ckv}_"
            f"head_dim_kpe_{kpe}_profiler_{prof}{sm90(backend)}")


DT = ["f16", "bf16", "e4m3"]
HD = [(64, 64), (128, 128), (256, 256), (192, 128)]
B = [False, True]


def check(uri, family, **expected):
    spec = kernel_uris.parse_uri(uri)
    assert spec.family.name == family
    assert spec.uri == uri
    assert spec.kwargs == expected
    assert kernel_uris.format_uri(family, spec.kwargs) == uri


@pytest.mark.parametrize("q,kv", [("f16", "f16"), ("bf16", "bf16"), ("f16", "e4m3"), ("e4m3", "e4m3")])
def test_attention_uri_round_trip_grid(q, kv):
    for (dqk, dvo), p, swa, cap in itertools.product(HD, [0, 1, 2], B, B):
        o = "bf16" if q == "e4m3" else q
        base = dict(dtype_q=q, dtype_kv=kv, dtype_o=o, head_dim_qk=dqk, head_dim_vo=dvo,
                    pos_encoding_mode=p, use_sliding_window=swa, use_logits_soft_cap=cap)
        check(rule_single_decode(q, kv, o, dqk, dvo, p, swa, cap), "single_decode", **base)
        check(rule_batch_decode(q, kv, o, "i32", dqk, dvo, p, swa, cap), "batch_decode",
              dtype_idx="i32", **base)
        for backend, f16qk in itertools.product(["fa2", "fa3"], B):
            check(rule_single_prefill(backend, q, kv, o, dqk, dvo, p, swa, cap, f16qk), "single_prefill",
                  backend=backend, use_fp16_qk_reduction=f16qk, **base)
            check(rule_batch_prefill(backend, q, kv, o, "i32", dqk, dvo, p, swa, cap, f16qk),
                  "batch_prefill", backend=backend, dtype_idx="i32", use_fp16_qk_reduction=f16qk, **base)


def test_mla_and_fixed_uris():
    for backend, dt, prof in itertools.product(["fa2", "fa3"], ["f16", "bf16"], B):
        check(rule_batch_mla(backend, dt, dt, dt, "i32", 512, 64, prof), "batch_mla", backend=backend,
              dtype_q=dt, dtype_kv=dt, dtype_o=dt, dtype_idx="i32", head_dim_ckv=512, head_dim_kpe=64,
              use_profiler=prof)
    check("norm", "norm")
    check("page", "page")
    check("gdn_prefill_sm90", "gdn_prefill")


def test_abi_doc_examples():
    # The concrete URIs listed in flashinfer-abi.md §4.2.
    for uri in [
        "single_prefill_with_kv_cache_dtype_q_f16_dtype_kv_f16_dtype_o_f16_head_dim_qk_128_head_dim_vo_128_posenc_0_use_swa_False_use_logits_cap_False_f16qk_False",
        "batch_prefill_with_kv_cache_dtype_q_bf16_dtype_kv_bf16_dtype_o_bf16_dtype_idx_i32_head_dim_qk_128_head_dim_vo_128_posenc_0_use_swa_False_use_logits_cap_False_f16qk_False",
        "batch_prefill_with_kv_cache_dtype_q_e4m3_dtype_kv_e4m3_dtype_o_bf16_dtype_idx_i32_head_dim_qk_128_head_dim_vo_128_posenc_0_use_swa_False_use_logits_cap_False_f16qk_False_sm90",
        "batch_prefill_with_kv_cache_dtype_q_bf16_dtype_kv_bf16_dtype_o_bf16_dtype_idx_i32_head_dim_qk_192_head_dim_vo_128_posenc_0_use_swa_False_use_logits_cap_False_f16qk_False_sm90",
        "single_decode_with_kv_cache_dtype_q_f16_dtype_kv_f16_dtype_o_f16_head_dim_qk_128_head_dim_vo_128_posenc_0_use_swa_False_use_logits_cap_False",
        "batch_decode_with_kv_cache_dtype_q_bf16_dtype_kv_bf16_dtype_o_bf16_dtype_idx_i32_head_dim_qk_256_head_dim_vo_256_posenc_0_use_swa_True_use_logits_cap_True",
        "batch_mla_attention_dtype_q_bf16_dtype_kv_bf16_dtype_o_bf16_dtype_idx_i32_head_dim_ckv_512_head_dim_kpe_64_profiler_False_sm90",
    ]:
        assert kernel_uris.parse_uri(uri).uri == uri


GOOD_DECODE = rule_batch_decode("f16", "f16", "f16", "i32", 128, 128, 0, False, False)
GOOD_PREFILL = rule_batch_prefill("fa2", "f16", "f16", "f16", "i32", 128, 128, 0, False, False, False)


@pytest.mark.parametrize("uri", [
    "", "Norm", "norm2", " norm", "norm\n", "../norm", "page/page", "gdn_prefill", "gdn_prefill_sm100",
    GOOD_DECODE + "_sm90",                                   # decode has no backend suffix
    GOOD_DECODE.replace("use_swa_False", "use_swa_false"),   # bools are str(bool)
    GOOD_DECODE.replace("posenc_0", "posenc_3"),
    GOOD_DECODE.replace("head_dim_qk_128", "head_dim_qk_0128"),
    GOOD_DECODE.replace("head_dim_qk_128", "head_dim_qk_"),
    GOOD_DECODE.replace("dtype_q_f16", "dtype_q_fp16"),
    GOOD_DECODE.replace("dtype_idx_i32", "dtype_idx_f16"),
    GOOD_DECODE.replace("_dtype_idx_i32", ""),               # that is the single-decode grammar
    GOOD_DECODE[:-1],
    GOOD_PREFILL.replace("_f16qk_False", ""),
    GOOD_PREFILL + "_sm90_sm90",
    GOOD_PREFILL + "_sm100",
    GOOD_PREFILL.replace("batch_prefill", "batch_prefil"),
])
def test_malformed_uris_rejected(uri):
    with pytest.raises(ValueError) as e:
        kernel_uris.parse_uri(uri)
    assert repr(uri) in str(e.value)


def test_malformed_message_names_family():
    with pytest.raises(ValueError, match=r"malformed batch_decode URI .*expected batch_decode_with_kv_cache_"):
        kernel_uris.parse_uri(GOOD_DECODE.replace("posenc_0", "posenc_9"))
    with pytest.raises(ValueError, match="unknown kernel module URI"):
        kernel_uris.parse_uri("xqa")  # a FlashInfer module no family here describes


def test_expected_exports():
    assert kernel_uris.parse_uri("norm").exports == (
        "rmsnorm", "fused_add_rmsnorm", "gemma_rmsnorm", "gemma_fused_add_rmsnorm")
    assert kernel_uris.parse_uri("page").exports == ("append_paged_kv_cache", "append_paged_mla_kv_cache")
    assert kernel_uris.parse_uri("gdn_prefill_sm90").exports == ("gdn_prefill",)
    assert kernel_uris.parse_uri("rope").exports == (
        "apply_rope", "apply_llama31_rope", "apply_rope_pos_ids", "apply_llama31_rope_pos_ids",
        "apply_rope_pos_ids_cos_sin_cache")
    for act in ("silu", "gelu", "gelu_tanh"):
        spec = kernel_uris.parse_uri(f"{act}_and_mul")
        assert spec.exports == (f"{act}_and_mul",) and spec.kwargs == {"act_func_name": act}
    assert "chain_speculative_sampling" in kernel_uris.parse_uri("sampling").exports
    assert kernel_uris.parse_uri(GOOD_DECODE).exports == ("plan", "run")
    assert kernel_uris.parse_uri(GOOD_PREFILL).exports == ("plan", "ragged_run", "paged_run")
    assert kernel_uris.parse_uri(GOOD_PREFILL + "_sm90").exports == ("plan", "ragged_run", "paged_run")
    sd = rule_single_decode("f16", "f16", "f16", 128, 128, 0, False, False)
    assert kernel_uris.parse_uri(sd).exports == ("run",)


# --------------------------------------------------------------------------- presets


def test_presets():
    assert kernel_uris.expand(["@core"]) == ["norm", "page"]
    test = kernel_uris.expand(["@test"])
    expected = []
    for dt in ("f16", "bf16"):
        expected += [
            rule_batch_decode(dt, dt, dt, "i32", 128, 128, 0, False, False),
            rule_single_decode(dt, dt, dt, 128, 128, 0, False, False),
            rule_single_prefill("fa2", dt, dt, dt, 128, 128, 0, False, False, False),
            rule_batch_prefill("fa2", dt, dt, dt, "i32", 128, 128, 0, False, False, False),
            rule_batch_prefill("fa3", dt, dt, dt, "i32", 128, 128, 0, False, False, False),
            # fp8 (e4m3) KV cache with 16-bit q: FA2
            rule_batch_decode(dt, "e4m3", dt, "i32", 128, 128, 0, False, False),
            rule_batch_prefill("fa2", dt, "e4m3", dt, "i32", 128, 128, 0, False, False, False),
            rule_single_decode(dt, "e4m3", dt, 128, 128, 0, False, False),
            rule_single_prefill("fa2", dt, "e4m3", dt, 128, 128, 0, False, False, False),
        ]
    expected += [rule_batch_decode("f16", "f16", "f16", "i32", 64, 64, 0, False, False),
                 rule_batch_decode("f16", "f16", "f16", "i32", 128, 128, 0, True, True)]
    assert test == expected
    everything = kernel_uris.expand(["@all"])
    mla = kernel_uris.expand(["@mla"])
    assert mla == [rule_batch_mla(backend, dt, dt, dt, "i32", 512, 64, False)
                   for dt in ("f16", "bf16") for backend in ("fa2", "fa3")]
    assert set(everything) == set(test) | set(mla) | {
        "norm", "page", "gdn_prefill_sm90", "sampling", "rope", "silu_and_mul", "gelu_and_mul",
        "gelu_tanh_and_mul", "cascade", "topk"}
    assert kernel_uris.expand(["@sampling"]) == ["sampling"]
    assert len(everything) == len(set(everything))


def test_expand_dedups_keeps_order_and_rejects():
    assert kernel_uris.expand(["page", "@core", "norm", "page"]) == ["page", "norm"]
    with pytest.raises(ValueError, match="unknown preset"):
        kernel_uris.expand(["@nope"])
    with pytest.raises(ValueError):
        kernel_uris.expand(["@core", "bogus"])


# --------------------------------------------------------------------------- wheel


def fake_modules(root: Path, uris) -> dict:
    mods = {}
    for i, uri in enumerate(uris):
        so = root / uri / f"{uri}.so"
        so.parent.mkdir(parents=True)
        so.write_bytes(b"\x7fELF fake " + uri.encode() * (i + 1))
        mods[uri] = so
    return mods


def test_wheel_layout_and_record(tmp_path):
    mods = fake_modules(tmp_path / "k", ["norm", "page", GOOD_DECODE])
    whl = tmp_path / "dist" / "flashinfer_jit_cache-0.6.3+cu130.sm90a-py3-none-linux_x86_64.whl"
    size = build_kernels.pack_wheel(whl, mods)
    assert size == whl.stat().st_size
    info = "flashinfer_jit_cache-0.6.3+cu130.sm90a.dist-info"
    with zipfile.ZipFile(whl) as z:
        assert z.testzip() is None
        names = z.namelist()
        for uri, so in mods.items():
            assert z.read(f"flashinfer_jit_cache/jit_cache/{uri}/{uri}.so") == so.read_bytes()
        assert {"flashinfer_jit_cache/__init__.py", "flashinfer_jit_cache/_build_meta.py",
                f"{info}/METADATA", f"{info}/WHEEL", f"{info}/RECORD"} <= set(names)
        assert len(names) == len(mods) + 5
        rows = list(csv.reader(io.StringIO(z.read(f"{info}/RECORD").decode())))
        assert sorted(r[0] for r in rows) == sorted(names)
        for path, digest, length in rows:
            if path == f"{info}/RECORD":
                assert digest == length == ""
                continue
            data = z.read(path)
            want = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            assert digest == f"sha256={want}" and int(length) == len(data)
        wheel_meta = z.read(f"{info}/WHEEL").decode()
        assert "Tag: py3-none-linux_x86_64" in wheel_meta
        assert "Version: 0.6.3+cu130.sm90a" in z.read(f"{info}/METADATA").decode()
        meta = {}
        exec(z.read("flashinfer_jit_cache/_build_meta.py").decode(), meta)
        assert meta["__version__"].startswith("0.6.3")
    # Same inputs, same bytes.
    again = tmp_path / "again" / whl.name
    build_kernels.pack_wheel(again, mods)
    assert again.read_bytes() == whl.read_bytes()


def test_wheel_installs_and_points_at_modules(tmp_path):
    mods = fake_modules(tmp_path / "k", ["norm"])
    whl = tmp_path / "flashinfer_jit_cache-0.6.3+cu130-py3-none-any.whl"
    build_kernels.pack_wheel(whl, mods)
    target = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet",
                        "--target", str(target), str(whl)], capture_output=True, text=True)
    if r.returncode != 0 and "No module named pip" in r.stderr:
        pytest.skip("pip not available")
    assert r.returncode == 0, r.stderr
    out = subprocess.run([sys.executable, "-c", "import flashinfer_jit_cache as m; "
                          "print(m.__version__); print(m.get_jit_cache_dir())"],
                         capture_output=True, text=True, cwd=target, check=True).stdout.split()
    assert out[0] == "0.6.3+cu130"
    assert (Path(out[1]) / "norm" / "norm.so").read_bytes() == mods["norm"].read_bytes()


@pytest.mark.parametrize("name", [
    "flashinfer_jit_cache-0.6.2-py3-none-any.whl",     # flashinfer would reject the version
    "jit_cache-0.6.3-py3-none-any.whl",
    "flashinfer_jit_cache-0.6.3.zip",
])
def test_wheel_bad_names(tmp_path, name):
    with pytest.raises(ValueError):
        build_kernels.pack_wheel(tmp_path / name, fake_modules(tmp_path / "k", ["norm"]))


# --------------------------------------------------------------------------- CLI (no build)


def run_tool(*args):
    return subprocess.run([sys.executable, str(TOOLS / "build_kernels.py"), *map(str, args)],
                          capture_output=True, text=True)


@pytest.fixture
def no_flashinfer(tmp_path, monkeypatch):
    """Make any import of torch/flashinfer fail loudly in the tool's process."""
    poison = tmp_path / "poison"
    poison.mkdir()
    for mod in ("torch", "flashinfer"):
        (poison / f"{mod}.py").write_text("raise ImportError('must not be imported')\n")
    monkeypatch.setenv("PYTHONPATH", str(poison))


def test_cli_list_needs_no_flashinfer(no_flashinfer):
    r = run_tool("--list", "@core", "@test")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == kernel_uris.expand(["@core", "@test"])


def test_cli_rejects_bad_uri_and_arch():
    r = run_tool("--list", "norm", "batch_decode_bogus")
    assert r.returncode == 2 and "batch_decode_bogus" in r.stderr
    r = run_tool("--list", "--arch", "sm90", "norm")
    assert r.returncode == 2 and "--arch" in r.stderr


@pytest.mark.skipif(not (shutil.which("cc") and shutil.which("nm")), reason="needs cc and nm")
def test_cli_verify_and_pack_existing(tmp_path, no_flashinfer):
    out = tmp_path / "kernels"
    # A real ELF shared object exporting page's symbols, and a norm lacking most of its own.
    for uri, syms in [("page", ["append_paged_kv_cache", "append_paged_mla_kv_cache"]),
                      ("norm", ["rmsnorm"])]:
        src = tmp_path / f"{uri}.c"
        src.write_text("".join(f"void __tvm_ffi_{s}(void) {{}}\n" for s in syms))
        (out / uri).mkdir(parents=True)
        subprocess.run(["cc", "-shared", "-fPIC", "-o", out / uri / f"{uri}.so", src], check=True)
    whl = tmp_path / "flashinfer_jit_cache-0.6.3-py3-none-any.whl"

    r = run_tool("--no-build", "--verify", "--out", out, "page", "--wheel", whl)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert lines[0]["uri"] == "page" and lines[0]["ok"] and lines[0]["verified"] is True
    assert lines[0]["bytes"] == (out / "page" / "page.so").stat().st_size
    assert lines[1]["wheel"] == str(whl) and lines[1]["modules"] == 1 and whl.exists()

    r = run_tool("--no-build", "--verify", "--out", out, "@core", "gdn_prefill_sm90",
                 "--status-file", out / "BUILD_STATUS.txt")
    assert r.returncode == 1
    recs = {d["uri"]: d for d in map(json.loads, r.stdout.splitlines())}
    assert recs["page"]["ok"]
    assert not recs["norm"]["ok"] and "fused_add_rmsnorm" in recs["norm"]["error"]
    assert not recs["gdn_prefill_sm90"]["ok"] and "not found" in recs["gdn_prefill_sm90"]["error"]
    status = (out / "BUILD_STATUS.txt").read_text().split("\n")
    assert "page True 0.0" in status and "norm False 0.0" in status

    # Not an ELF at all.
    (out / "page" / "page.so").write_bytes(b"garbage")
    r = run_tool("--no-build", "--verify", "--out", out, "@built")
    recs = {d["uri"]: d for d in map(json.loads, r.stdout.splitlines())}
    assert set(recs) == {"norm", "page"} and recs["page"]["error"] == "not an ELF file"


def test_build_marks_out_with_its_release_and_no_build_leaves_it(tmp_path, no_flashinfer):
    """A build writes <out>/flashinfer_version.txt (what flashinfer_cy checks Bindings
    against); --skip-existing with every module present builds nothing, imports no
    flashinfer, and still marks the dir; --no-build never writes or removes it."""
    from flashinfer_cy.artifacts.resolve import VERSION_MARKER

    assert build_kernels.VERSION_MARKER == VERSION_MARKER  # the name the runtime reads
    out = tmp_path / "kernels"
    mods = fake_modules(out, ["norm"])
    marker = out / VERSION_MARKER
    r = run_tool("--no-build", "--out", out, "norm")
    assert r.returncode == 0, r.stderr
    assert not marker.exists()
    r = run_tool("--skip-existing", "--out", out, "norm")
    assert r.returncode == 0, r.stderr
    assert marker.read_text() == kernel_uris.FLASHINFER_VERSION + "\n"
    r = run_tool("--no-build", "--out", out, "norm")
    assert r.returncode == 0 and marker.read_text() == "0.6.3\n", r.stderr
    assert mods["norm"].is_file()


def test_build_refuses_an_out_dir_of_another_release(tmp_path, no_flashinfer):
    out = tmp_path / "kernels"
    fake_modules(out, ["norm"])
    (out / "flashinfer_version.txt").write_text("0.7.4\n")
    r = run_tool("--skip-existing", "--out", out, "norm")
    assert r.returncode != 0 and "holds flashinfer 0.7.4 modules" in r.stderr
    assert (out / "flashinfer_version.txt").read_text() == "0.7.4\n"


def test_fast_build_is_for_the_moe_module_only(no_flashinfer):
    r = run_tool("--list", "--fast-build", "fused_moe_90", "norm")
    assert r.returncode != 0 and "--fast-build applies to fused_moe_90 only, not norm" in r.stderr
    r = run_tool("--list", "--fast-build", "fused_moe_90")
    assert r.returncode == 0 and r.stdout.split() == ["fused_moe_90"], r.stderr


def test_skip_existing_tells_a_fast_build_module_from_a_full_one(tmp_path, no_flashinfer):
    out = tmp_path / "k"
    fake_modules(out, ["fused_moe_90"])
    (out / "fused_moe_90" / "FAST_BUILD").write_text("built with -DFAST_BUILD\n")
    r = run_tool("--skip-existing", "--fast-build", "--out", out, "fused_moe_90")
    assert r.returncode == 0, r.stderr
    rec = json.loads(r.stdout.splitlines()[0])
    assert rec["skipped"] and rec["fast_build"] and rec["ok"]
    # a full build asked for: the FAST_BUILD module present is not it, so it is rebuilt
    # (which needs flashinfer: poisoned here, so the run fails rather than keeping it)
    r = run_tool("--skip-existing", "--out", out, "fused_moe_90", "--work-dir", tmp_path / "w")
    assert r.returncode != 0
    assert not any(json.loads(line).get("skipped") for line in r.stdout.splitlines() if line.startswith("{"))
