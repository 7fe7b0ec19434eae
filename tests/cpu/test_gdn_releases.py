"""gdn_prefill and FlashInfer 0.7.x, which builds no gdn_prefill_sm90 (docs/abi-versions.md,
"GDN prefill and 0.7.4"): every way a user meets the missing module says why, and a kernel
dir of 0.7.4 still gets 0.6.3's module from the pinned wheel.

The typed calls run in fake_kernel_driver.py's interpreter (a stand-in registered under
the real URI must not leak into this process); the stand-in is fake_page_gdn.cc, 0.6.3's
gdn_prefill signature, which records the arguments it receives."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _wheelserver import (  # noqa: E402,F401
    ARCH, WHEEL_NAME, WheelServer, artifacts_env, build_wheel, module_bytes, refused_url,
    write_manifest)
from testmod_build import HERE, compile_module, mark_kernel_dir  # noqa: E402

import flashinfer_cy as fc  # noqa: E402
from flashinfer_cy.abi import match  # noqa: E402
from flashinfer_cy.artifacts import fetch_modules, index, settings  # noqa: E402
from flashinfer_cy.kernels import gdn  # noqa: E402

WHY = ("CuTe-DSL kernel", "delta_rule_sm90.py", "sm_100a/sm_103a/sm_107a only",
       "GDN prefill and 0.7.4")


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory):
    return compile_module(HERE / "fake_page_gdn.cc",
                          tmp_path_factory.mktemp("fake_gdn") / "gdn_prefill_sm90.so")


def kernel_dir_074(root: Path, stand_in: Path) -> Path:
    """What tools/build_kernels.py --flashinfer-version 0.7.4 leaves: modules (norm here)
    and the 0.7.4 marker, no gdn_prefill_sm90."""
    (root / "norm").mkdir(parents=True)
    (root / "norm" / "norm.so").write_bytes(stand_in.read_bytes())
    return mark_kernel_dir(root, "0.7.4")


def run_scenario(scenario: str, kernels: Path, **env: str) -> None:
    res = subprocess.run([sys.executable, str(HERE / "fake_kernel_driver.py"), str(kernels),
                          scenario], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, **env))
    assert res.returncode == 0 and res.stdout.strip().endswith("ok"), \
        f"scenario {scenario} failed (rc {res.returncode}):\n{res.stdout}\n{res.stderr}"


def test_the_note_names_the_release_and_the_reason():
    note = match.missing_module_note("gdn_prefill_sm90", "gdn_prefill", "0.7.4")
    assert note.startswith("flashinfer 0.7.4, the release these modules are expected to be "
                           "of, builds no module gdn_prefill_sm90; flashinfer 0.6.3 does.")
    for part in WHY:
        assert part in note, (part, note)
    # a local or post build of 0.7.4 is 0.7.4
    assert match.missing_module_note("gdn_prefill_sm90", "gdn_prefill", "0.7.4.post1+cu130") == note
    # nothing to say where the release builds the module, or has no ABI here
    for uri, symbol, release in (("gdn_prefill_sm90", "gdn_prefill", "0.6.3"),
                                 ("norm", "rmsnorm", "0.7.4"),
                                 ("gdn_prefill_sm90", "gdn_prefill", "9.9.9")):
        assert match.missing_module_note(uri, symbol, release) is None


def test_074_kernel_dir_gets_063s_gdn_from_the_pinned_wheel(artifacts_env, stand_in, monkeypatch):
    name = WHEEL_NAME.format(arch=ARCH)
    wheel = build_wheel(artifacts_env / name, {"norm": module_bytes("norm"),
                                               "gdn_prefill_sm90": stand_in.read_bytes()})
    write_manifest(artifacts_env / "manifest.json", wheel, refused_url(name))
    fetch_modules(["gdn_prefill_sm90"], wheel=wheel["path"])  # the cache, as `fetch` leaves it
    kernels = kernel_dir_074(artifacts_env / "kernels", stand_in)
    run_scenario("kernel_set_074_gdn_from_the_pinned_wheel", kernels,
                 **{settings.KERNEL_DIR_ENV: str(kernels), settings.OFFLINE_ENV: "1"})


def test_074_selected_offline_without_the_module_says_why(artifacts_env, stand_in):
    name = WHEEL_NAME.format(arch=ARCH)
    write_manifest(artifacts_env / "manifest.json", build_wheel(artifacts_env / name),
                   refused_url(name))
    kernels = kernel_dir_074(artifacts_env / "kernels", stand_in)
    # 0.7.4 selected: its wheel steps apply (never resolved here, and offline)
    run_scenario("kernel_set_074_gdn_missing", kernels,
                 **{settings.KERNEL_DIR_ENV: str(kernels), settings.OFFLINE_ENV: "1",
                    settings.FLASHINFER_VERSION_ENV: "0.7.4"})


def test_074_wheel_from_the_index_without_the_module_says_why(artifacts_env, monkeypatch):
    """Online: the 0.7.4 jit-cache wheel is resolved and read, and has no gdn_prefill_sm90."""
    name = f"flashinfer_jit_cache-0.7.4+cu130-cp39-abi3-manylinux_2_28_{ARCH}.whl"
    wheel = build_wheel(artifacts_env / name, {"norm": module_bytes("norm")})
    pinned = WHEEL_NAME.format(arch=ARCH)
    write_manifest(artifacts_env / "manifest.json", build_wheel(artifacts_env / pinned),
                   refused_url(pinned))
    page = (f'<html><body><a href="/files/{name}#sha256={wheel["sha256"]}">{name}</a>'
            f"</body></html>").encode()
    monkeypatch.setattr(index, "_memo", {})
    monkeypatch.setenv(settings.FLASHINFER_VERSION_ENV, "0.7.4")
    with WheelServer({"whl/cu130/flashinfer-jit-cache/": page,
                      f"files/{name}": wheel["path"].read_bytes()}) as server:
        monkeypatch.setenv(settings.WHEEL_INDEX_URL_ENV,
                           f"http://127.0.0.1:{server.port}/whl/{{cuda}}")
        line = gdn.GDN_PREFILL
        b = fc.Binding(line.uri, line.symbol, line.signature)
        with pytest.raises(fc.KernelNotFoundError) as exc:
            b.load()
    msg = str(exc.value)
    for part in ("gdn_prefill_sm90", name, "builds no module gdn_prefill_sm90", *WHY):
        assert part in msg, (part, msg)
