"""Host and GPU cost of one rmsnorm call, flashinfer_cy side by side with its peers, in one run.

Rows (same kernel, same shape, enable_pdl=False everywhere so every row launches the
identical kernel configuration):
  c_floor                 tools/c_floor/rmsnorm_floor.c: the export called from C
  flashinfer_cy torch     fc.rmsnorm(x, w, eps, out=o) with torch tensors
  flashinfer_cy raw       the same with TensorDesc raw-pointer descriptors
  tvm_ffi python          tvm_ffi.load_module(norm.so).rmsnorm(o, x, w, eps, False)
  flashinfer-python       flashinfer.norm.rmsnorm(x, w, eps, out=o, enable_pdl=False)

Host time per call: bursts of BURST calls started right after a synchronize (fewer
launches than the launch queue holds, so the host never waits on the GPU), median over
bursts. GPU time: CUDA events around BURST back-to-back calls, median per call.

    python tools/bench_norm.py [--rows 64 --hidden 4096 --bursts 300 --json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def host_us(fn, sync, bursts: int, burst: int) -> float:
    """Median host us/call of one fn (see host_us_interleaved)."""
    return host_us_interleaved({"fn": fn}, sync, bursts, burst)["fn"]


class CBurst:
    """A row timed in C: ``fn(n)`` runs n calls right after its own device synchronize and
    returns host us/call (tools/c_floor/*.c through ctypes)."""

    def __init__(self, fn):
        self.fn = fn


class LoopBurst:
    """A row whose call is written in the timed loop's body, as in a user's decode loop
    (``for ...: w.run(q, (k, v), out=o)``), instead of behind a lambda: ``fn(n)`` runs the
    loop. ``call(1)`` is one call (for GPU timing)."""

    def __init__(self, expr: str, **names):
        params = ", ".join(names)
        src = (f"def factory({params}):\n    def loop(n):\n        for _ in range(n):\n"
               f"            {expr}\n    return loop\n")
        scope: dict = {}
        exec(src, scope)  # noqa: S102 - a fixed expression from this benchmark
        self.fn = scope["factory"](**names)
        self.expr = expr

    def __call__(self):
        self.fn(1)


def host_us_interleaved(fns: dict, sync, bursts: int, burst: int, raw: bool = False) -> dict:
    """Median host us/call of each fn (or the per-round lists, ``raw=True``). Rows are
    interleaved burst by burst, so clock and thermal drift hit every row alike instead of
    whichever ran last, and in a new (seeded) order each round, so what one row leaves
    behind (caches, the GPU's queue) does not always land on the same next row. A :class:`CBurst` row times its burst itself; every other row runs
    a loop of its own (a plain callable ``fn`` as ``LoopBurst("fn()")``), so no two rows share
    a call site: CPython specializes a call site for the callee it sees, and rows taking
    turns at one site would each time the site's switch to their callee."""
    def one_burst(fn):
        if isinstance(fn, CBurst):
            us = fn.fn(burst)
            if us < 0:
                raise RuntimeError("C floor burst failed")
            return us
        sync()
        t0 = time.perf_counter()
        fn.fn(burst)
        return (time.perf_counter() - t0) / burst * 1e6

    fns = {name: fn if isinstance(fn, (CBurst, LoopBurst)) else LoopBurst("fn()", fn=fn)
           for name, fn in fns.items()}
    for fn in fns.values():
        for _ in range(3):
            one_burst(fn)
        sync()
    per_call = {name: [] for name in fns}
    order = list(fns.items())
    shuffle = random.Random(0).shuffle
    for _ in range(bursts):  # each round in a new order: no row always follows the same one
        shuffle(order)
        for name, fn in order:
            per_call[name].append(one_burst(fn))
    sync()
    if raw:
        return per_call
    return {name: statistics.median(v) for name, v in per_call.items()}


_SPIN_CYCLES_PER_US: list[float] = []


def _spin_cycles_per_us(torch) -> float:
    """GPU clock cycles per microsecond of ``torch.cuda._sleep`` (measured once)."""
    if not _SPIN_CYCLES_PER_US:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda._sleep(1000)  # warm
        start.record()
        torch.cuda._sleep(2_000_000)
        end.record()
        end.synchronize()
        _SPIN_CYCLES_PER_US.append(2_000_000 / (start.elapsed_time(end) * 1e3))
    return _SPIN_CYCLES_PER_US[0]


def gpu_us(torch, fn, reps: int, burst: int) -> float:
    """GPU-only µs per call: the median over ``reps`` bursts of ``burst`` calls, timed by CUDA
    events. Each burst is queued behind a spinning kernel that outlasts its enqueueing, so
    the events time the kernels back to back, not the host's launch rate (for µs-sized
    kernels the two differ by the host overhead the other columns measure).

    The spin is sized from the burst's own enqueue time, measured without a spin first
    (twice that, plus 500 µs). A burst that still outlasts such a spin waits for the GPU:
    the call synchronizes (a plan copying from pageable memory, say). Lengthening the spin
    cannot help then (the wait grows with it; doubling it each time once ran a bench into
    its timeout), so the bursts are timed without a spin, the host-bound time is returned
    and one warning printed."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    per_us = _spin_cycles_per_us(torch)

    def burst_us(spin_us: float) -> tuple[float, float]:
        """(enqueue µs, event µs per call) of one burst behind a spin of ``spin_us``."""
        torch.cuda.synchronize()
        if spin_us:
            torch.cuda._sleep(int(spin_us * per_us))
        start.record()
        t0 = time.perf_counter()
        for _ in range(burst):
            fn()
        end.record()
        enqueue = (time.perf_counter() - t0) * 1e6
        end.synchronize()
        return enqueue, start.elapsed_time(end) * 1e3 / burst

    spin_us = 2 * burst_us(0.0)[0] + 500
    out = []
    for _ in range(reps):
        enqueue, per_call = burst_us(spin_us)
        if enqueue >= 0.8 * spin_us:  # it waited for the spin: a synchronizing call
            print(f"warning: gpu_us: enqueueing {burst} calls outlasted a {spin_us:.0f} us "
                  f"spin (the call synchronizes): host-bound time", file=sys.stderr)
            return statistics.median(burst_us(0.0)[1] for _ in range(reps))
        out.append(per_call)
        spin_us = max(spin_us, 2 * enqueue + 500)
    return statistics.median(out)


def build_c_floor(name: str, shared: bool = False) -> tuple[Path, Path]:
    """Compile tools/c_floor/<name>.c against the installed apache-tvm-ffi headers (an
    executable, or with ``shared`` a library for ctypes). Returns (its path, the
    libtvm_ffi.so it must be given)."""
    import importlib.util

    pkg = Path(importlib.util.find_spec("tvm_ffi").submodule_search_locations[0])
    out = Path(tempfile.mkdtemp()) / (name + (".so" if shared else ""))
    subprocess.run(["cc", "-O2", *(["-shared", "-fPIC"] if shared else []),
                    f"-I{pkg / 'include'}", f"-I{ROOT / 'include'}",
                    str(ROOT / "tools/c_floor" / f"{name}.c"), "-o", str(out), "-ldl", "-lm"],
                   check=True)
    return out, pkg / "lib" / "libtvm_ffi.so"


def plan_run_floors(name: str, module, *dims: int) -> tuple[dict, Path, object]:
    """tools/c_floor/<name>.c (decode_floor, mla_floor) built as a library and initialised
    on the kernel module file ``module`` with the integer ``dims`` (its init's order):
    (its run / plan_kernel / plan floors as CBurst rows, the library's path, the library)."""
    import ctypes

    lib_path, ffi_path = build_c_floor(name, shared=True)
    lib = ctypes.CDLL(str(lib_path))
    init, burst, error = (getattr(lib, f"fcy_{name}_{x}") for x in ("init", "burst", "error"))
    init.argtypes = [ctypes.c_char_p, ctypes.c_char_p] + [ctypes.c_int64] * len(dims)
    burst.argtypes = [ctypes.c_int, ctypes.c_int]
    burst.restype = ctypes.c_double
    error.restype = ctypes.c_char_p
    if init(str(ffi_path).encode(), str(module).encode(), *dims) != 0:
        raise RuntimeError(error().decode())
    floors = {row: CBurst(lambda n, which=which: burst(which, n))
              for which, row in enumerate(("run", "plan_kernel", "plan"))}
    return floors, lib_path, lib


def c_floor(norm_so: str, rows: int, hidden: int, bursts: int, burst: int) -> float | None:
    exe, lib = build_c_floor("rmsnorm_floor")
    res = subprocess.run([str(exe), str(lib), norm_so, str(rows), str(hidden), str(bursts),
                          str(burst)], check=True, capture_output=True, text=True)
    return float(res.stdout.split()[1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=4096)
    ap.add_argument("--bursts", type=int, default=300)
    ap.add_argument("--burst", type=int, default=100)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--no-detail", dest="detail", action="store_false",
                    help="omit the rows that split the cost (Binding, generic call)")
    args = ap.parse_args()

    import torch

    import flashinfer_cy as fc
    from flashinfer_cy.artifacts import locate_module

    norm_so = str(locate_module("norm"))
    x = torch.randn(args.rows, args.hidden, device="cuda", dtype=torch.float16)
    w = torch.randn(args.hidden, device="cuda", dtype=torch.float16)
    o = torch.empty_like(x)
    eps = 1e-6
    dx = fc.TensorDesc(x.data_ptr(), x.shape, "float16")
    dw = fc.TensorDesc(w.data_ptr(), w.shape, "float16")
    do = fc.TensorDesc(o.data_ptr(), o.shape, "float16")
    sync = torch.cuda.synchronize
    rows: dict[str, dict] = {}
    calls: dict[str, object] = {}

    def add(name, fn):
        try:
            fn()
            sync()
            calls[name] = fn
        except Exception as exc:  # noqa: BLE001 - a missing peer is reported, not fatal
            rows[name] = dict(error=f"{type(exc).__name__}: {exc}")

    floors = []

    def measure_floor():  # before and after the Python rows: the floor drifts too
        try:
            floors.append(c_floor(norm_so, args.rows, args.hidden, args.bursts, args.burst))
        except Exception as exc:  # noqa: BLE001
            rows["c_floor"] = dict(error=f"{type(exc).__name__}: {exc}")

    measure_floor()
    add("flashinfer_cy torch", lambda: fc.rmsnorm(x, w, eps, out=o, enable_pdl=False))
    add("flashinfer_cy raw", lambda: fc.rmsnorm(dx, dw, eps, out=do, enable_pdl=False))
    if args.detail:  # where the time goes
        s0 = torch.cuda.current_stream().cuda_stream
        add("  torch, explicit stream",
            lambda: fc.rmsnorm(x, w, eps, out=o, enable_pdl=False, stream=s0))
        add("  raw, explicit stream",
            lambda: fc.rmsnorm(dx, dw, eps, out=do, enable_pdl=False, stream=s0))
        from flashinfer_cy.kernels.norm import RMSNORM
        add("  Binding, no validation (raw)", lambda: RMSNORM(do, dx, dw, eps, False))
        add("  Binding, no validation (torch)", lambda: RMSNORM(o, x, w, eps, False))
        fn = fc.load_module("norm").function("rmsnorm")
        add("  Function generic (raw)", lambda: fn(do, dx, dw, eps, False))
    try:
        import tvm_ffi

        tvm_fn = tvm_ffi.load_module(norm_so).get_function("rmsnorm")
        add("tvm_ffi python", lambda: tvm_fn(o, x, w, eps, False))
    except Exception as exc:  # noqa: BLE001
        rows["tvm_ffi python"] = dict(error=f"{type(exc).__name__}: {exc}")
    try:
        import flashinfer

        add("flashinfer-python " + flashinfer.__version__,
            lambda: flashinfer.norm.rmsnorm(x, w, eps, out=o, enable_pdl=False))
    except Exception as exc:  # noqa: BLE001
        rows["flashinfer-python"] = dict(error=f"{type(exc).__name__}: {exc}")
    for name, us in host_us_interleaved(calls, sync, args.bursts, args.burst).items():
        rows[name] = dict(host_us=us, gpu_us=gpu_us(torch, calls[name], 30, args.burst))
    measure_floor()
    if floors:
        rows["c_floor"] = dict(host_us=statistics.mean(floors), runs=floors)

    ref = (x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + eps) * w.float())
    fc.rmsnorm(x, w, eps, out=o)
    sync()
    err = (o.float() - ref).abs().max().item()

    floor = rows["c_floor"].get("host_us")
    print(f"# rmsnorm {args.rows}x{args.hidden} f16, {torch.cuda.get_device_name()}, "
          f"torch {torch.__version__}, python {platform.python_version()}, "
          f"bursts {args.bursts}x{args.burst}; max abs err vs torch fp32 {err:.3g}")
    print(f"{'path':40s} {'host us/call':>12s} {'vs floor':>9s} {'GPU us/call':>11s}")
    order = ["c_floor"] + [n for n in rows if n != "c_floor"]
    for name in order:
        r = rows[name]
        if "error" in r:
            print(f"{name:40s} {'error: ' + r['error']}")
            continue
        delta = f"{r['host_us'] - floor:+.2f}" if floor and name != "c_floor" else ""
        g = f"{r['gpu_us']:.2f}" if r.get("gpu_us") is not None else "-"
        print(f"{name:40s} {r['host_us']:12.2f} {delta:>9s} {g:>11s}")
    if args.json:
        args.json.write_text(json.dumps(dict(rows=rows, max_abs_err=err,
                                             device=torch.cuda.get_device_name()), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
