"""The page-append and gdn_prefill call paths end to end on the CPU, against stand-in
modules with FlashInfer 0.6.3's exact export signatures (fake_page_gdn.cc): argument order
and kinds as the kernels receive them, layout codes, strides, the scatter the page kernels
do, and the gdn device/workspace checks. Each scenario runs in its own interpreter
(fake_kernel_driver.py), so the stand-ins never shadow real modules in this process."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from testmod_build import HERE, compile_module


@pytest.fixture(scope="session")
def fake_kernel_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("fake_kernels")
    so = compile_module(HERE / "fake_page_gdn.cc", root / "page" / "page.so")
    (root / "gdn_prefill_sm90").mkdir()
    shutil.copy(so, root / "gdn_prefill_sm90" / "gdn_prefill_sm90.so")
    return root


@pytest.mark.parametrize("scenario", ["page_mha", "page_mla", "gdn",
                                      "gdn_workspace_too_small", "gdn_other_arch"])
def test_call_path_against_stand_in_kernels(scenario, fake_kernel_dir):
    res = subprocess.run([sys.executable, str(HERE / "fake_kernel_driver.py"),
                          str(fake_kernel_dir), scenario],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip().endswith("ok"), \
        f"scenario {scenario} failed:\n{res.stdout}\n{res.stderr}"
