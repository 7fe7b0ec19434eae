"""``python -m flashinfer_cy``: doctor, fetch, cache.

``doctor`` reports what a bug report needs (tvm-ffi, CUDA driver/runtime, GPUs, where each
kernel module would come from, cached copies hashed in full), then runs one rmsnorm against a
float64 reference when a GPU and the norm module are there. Exit status: 0 when everything that
can run here ran and passed, 1 when something is broken: a damaged cached module, an unusable
kernel source, or, on a machine with a GPU, a kernel module that no source can supply. A machine
without a GPU (CI, a laptop) cannot run kernels at all, so there missing modules are a warning
that says which are missing and how to get them, and it exits 0 unless ``--require-gpu``.
``--report-only`` prints the same report and always exits 0.
"""

from __future__ import annotations

import argparse
import platform
import sys
from typing import Callable

OK, WARN, FAIL = "ok", "warn", "FAIL"


class Report:
    def __init__(self, out=None):
        self._out = out  # None: sys.stdout as it is when a line is printed (redirect_stdout, capsys)
        self.failed = False

    @property
    def out(self):
        return self._out or sys.stdout

    def line(self, status: str, what: str, detail: str = "") -> None:
        if status == FAIL:
            self.failed = True
        print(f"[{status:>4}] {what:<22} {detail}", file=self.out)

    def step(self, what: str, fn: Callable[[], str], fail_status: str = FAIL) -> bool:
        try:
            self.line(OK, what, fn())
            return True
        except Exception as exc:  # noqa: BLE001 - a doctor reports, it does not crash
            self.line(fail_status, what, f"{type(exc).__name__}: {exc}")
            return False


def _tvm_ffi() -> str:
    from flashinfer_cy._core.runtime import runtime_info

    info = runtime_info()
    v = ".".join(map(str, info["tvm_ffi_version"]))
    return f"libtvm_ffi {v} at {info['tvm_ffi_path']}"


def _cudart() -> str:
    from flashinfer_cy._core.runtime import runtime_info

    info = runtime_info()
    if info["cudart_path"] is None:
        raise RuntimeError(f"libcudart.so.13 not loadable: {info['cudart_error']}")
    return f"{info['cudart_path']}"


def _gpus() -> list[tuple[int, str, tuple[int, int]]]:
    from cuda.bindings import driver

    (err,) = driver.cuInit(0)
    if int(err) != 0:
        raise RuntimeError(f"cuInit: {err!r}")
    err, n = driver.cuDeviceGetCount()
    gpus = []
    for i in range(n):
        _, dev = driver.cuDeviceGet(i)
        _, name = driver.cuDeviceGetName(64, dev)
        attr = driver.CUdevice_attribute
        _, major = driver.cuDeviceGetAttribute(
            attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev)
        _, minor = driver.cuDeviceGetAttribute(
            attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev)
        gpus.append((i, name.split(b"\0")[0].decode(), (major, minor)))
    return gpus


def _driver() -> str:
    from cuda.bindings import driver

    err, v = driver.cuDriverGetVersion()
    if int(err) != 0:
        raise RuntimeError(repr(err))
    return f"CUDA driver API {v // 1000}.{v % 1000 // 10}"


def _smoke_norm() -> str:
    import numpy as np

    import flashinfer_cy as fc

    rng = np.random.default_rng()
    x = rng.standard_normal((8, 1000)).astype(np.float16)
    w = rng.standard_normal(1000).astype(np.float16)
    out = fc.rmsnorm(fc.DeviceArray.from_numpy(x), fc.DeviceArray.from_numpy(w), 1e-6)
    got = out.numpy().astype(np.float64)
    x64 = x.astype(np.float64)
    ref = x64 / np.sqrt((x64 * x64).mean(-1, keepdims=True) + 1e-6) * w.astype(np.float64)
    err = float(np.max(np.abs(got - ref) / (np.abs(ref) + 1e-2)))
    if not err < 1e-2:
        raise AssertionError(f"rmsnorm disagrees with float64: max rel err {err:.3g}")
    return f"rmsnorm 8x1000 f16 matches float64 (max rel err {err:.2g})"


def cmd_doctor(args) -> int:
    rep = Report()
    import flashinfer_cy

    rep.line(OK, "flashinfer_cy", f"{flashinfer_cy.__version__} at "
             f"{flashinfer_cy.__file__.rsplit('/', 1)[0]}")
    rep.line(OK, "python", f"{platform.python_version()} {platform.machine()}")
    rep.step("tvm-ffi", _tvm_ffi)
    have_gpu = False
    try:
        rep.line(OK, "driver", _driver())
        gpus = _gpus()
        if not gpus:
            raise RuntimeError("no CUDA device visible")
        for i, name, (ma, mi) in gpus:
            rep.line(OK, f"gpu {i}", f"{name}, compute capability {ma}.{mi}")
        have_gpu = True
    except Exception as exc:  # noqa: BLE001
        rep.line(FAIL if args.require_gpu else WARN, "gpu",
                 f"no usable NVIDIA GPU on this machine ({type(exc).__name__}: {exc}); "
                 "kernels cannot run here")
    rep.step("cuda runtime", _cudart, fail_status=FAIL if have_gpu else WARN)
    _kernel_modules(rep, required=have_gpu or args.require_gpu)
    if have_gpu:
        rep.step("smoke: rmsnorm", _smoke_norm)
    else:
        rep.line(WARN, "smoke: rmsnorm", "skipped: needs a GPU")
    if args.report_only:
        print("result:", "FAILED" if rep.failed else "OK", "(report only: exit status 0)")
        return 0
    print("result:", "FAILED" if rep.failed else "OK")
    return 1 if rep.failed else 0


def _kernel_modules(rep: Report, required: bool) -> None:
    """Where each fixed module comes from; what is missing or damaged is a failure (missing ones
    only a warning where no GPU could run them)."""
    try:
        from flashinfer_cy.artifacts import FIXED_MODULES
        from flashinfer_cy.artifacts import cli as artifacts_cli

        print("kernel modules (where each would come from):")
        found = artifacts_cli.print_sources(FIXED_MODULES, verify=True)
    except Exception as exc:  # noqa: BLE001
        rep.line(WARN, "kernel sources", f"{type(exc).__name__}: {exc}")
        return
    if found.errors:  # e.g. an unusable FLASHINFER_CY_KERNEL_WHEEL: loading them would fail too
        rep.line(FAIL, "kernel sources", f"{found.errors} module(s) cannot be located (see 'error:' above)")
    if found.damaged:
        rep.line(FAIL, "kernel cache", f"{len(found.damaged)} damaged file(s) (see 'damaged:' above); "
                 "run `flashinfer-cy fetch --verify` to replace them")
    if found.missing:
        from flashinfer_cy.artifacts.net import remedies

        why = ("no source can supply them here (offline or no cached copy, or no wheel pinned for "
               f"this CUDA/arch). {remedies()}")
        if required:
            rep.line(FAIL, "kernel modules", f"missing: {', '.join(found.missing)}: {why}")
        else:
            rep.line(WARN, "kernel modules", f"missing: {', '.join(found.missing)} (not needed on a machine "
                     f"without a GPU; to get them where there is one: {why})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m flashinfer_cy", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    doc = sub.add_parser("doctor", help="report the environment and run a smoke kernel")
    doc.add_argument("--require-gpu", action="store_true",
                     help="fail (exit 1) when no GPU is usable (and when kernel modules are missing)")
    doc.add_argument("--report-only", action="store_true",
                     help="print the report and exit 0 whatever it found")
    doc.set_defaults(func=cmd_doctor)
    try:
        from flashinfer_cy.artifacts.cli import add_subcommands
    except ImportError:
        add_subcommands = None
    if add_subcommands is not None:
        add_subcommands(sub)
    args = ap.parse_args(argv)
    return args.func(args)
