"""flashinfer_cy's own host work per call as instruction counts (valgrind's callgrind): the
calls of tools/host_overhead_cpu.py -- general API, prepared launch, bare Binding, against
no-op exports (tools/noop_ops.py) -- but counted instead of timed, so that two commits can be
compared on a loaded machine, where wall clock is noise. Next to them, the C floor of the
prepared launch (PreparedCall._c_burst_us, as tools/bench_decode_step.py's), and with
``--torch`` every call takes CPU torch tensors passed off as CUDA ones, and the floor with
torch's exchange-API calls is counted too: "API - torch floor" is then the CPU-instruction
form of the GPU table's "vs torch floor" column.

Each form runs ``--calls`` times between a callgrind zero and a named dump
(tools/c_floor/callgrind_marks.c); the table gives instructions per call less the loop's own
(an empty lambda, measured the same way; the floors loop in C and are not corrected) and less
the stand-in libcudart's work (its ``cuda*`` functions, inclusive: host malloc/free standing
in for cudaMallocAsync), so what is left is Python + flashinfer_cy + TVM-FFI + the no-op
export. Not GPU numbers: a CUDA runtime call costs the stand-in nothing, so the CUDA runtime
calls each form makes per call are listed too (counted by the stand-in libcudart).

    python tools/host_overhead_instr.py [--calls 2000] [--only rope] [--torch]
Needs valgrind and its headers (valgrind/callgrind.h); --torch needs torch (CPU is enough).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import noop_ops  # noqa: E402

MARKS_ENV = "FLASHINFER_CY_CALLGRIND_MARKS"
FORMS = ("API", "prepared", "Binding", "C floor", "torch floor")
CALLS_FILE = "cudart_calls.json"  # CUDA runtime calls per call, by form: the child writes it


def cudart_calls() -> dict[str, int]:
    """Calls so far of each entry point of the stand-in libcudart (fake_cudart_calls)."""
    rt = ctypes.CDLL("libcudart.so.13")
    rt.fake_cudart_calls.restype = ctypes.c_char_p
    n, out, i = ctypes.c_long(), {}, 0
    while (name := rt.fake_cudart_calls(i, ctypes.byref(n))) is not None:
        out[name.decode()] = n.value
        i += 1
    return out


def child(args) -> int:
    marks = ctypes.CDLL(os.environ[MARKS_ENV])
    folder = Path(os.environ[MARKS_ENV]).parent
    ops = noop_ops.decode_step_ops(folder if args.torch else None)
    made: dict[str, dict[str, float]] = {}
    # what the imports (torch's above all) left for the collector is set aside, so that no
    # window pays a full collection of it, and every window starts from an empty young
    # generation: counts then repeat from run to run
    gc.collect()
    gc.freeze()
    marks.fcy_cg_start()

    def count(label, call, in_c=False):
        for _ in range(50):  # callgrind translates the code paths once
            call(1) if in_c else call()
        gc.collect()
        before = cudart_calls()
        marks.fcy_cg_zero()
        if in_c:
            call(args.calls)
        else:
            for _ in range(args.calls):
                call()
        marks.fcy_cg_dump(label.encode())
        after = cudart_calls()
        made[label] = {k: (after[k] - before[k]) / args.calls for k in after
                       if after[k] != before[k]}

    count("loop", lambda: None)
    for name, op in ops.items():
        if args.only and args.only not in name:
            continue
        for form, call in zip(FORMS, op):
            if call is not None:
                count(f"{name}|{form}", call, in_c=form.endswith("floor"))
    (folder / CALLS_FILE).write_text(json.dumps(made))
    return 0


def _stand_in_cost(dump: Path) -> int:
    """Inclusive instructions of the stand-in libcudart's entry points in one dump."""
    out = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100",
                          str(dump)], capture_output=True, text=True, check=True).stdout
    total = 0
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+)\s.*?:(cuda\w+) \[.*libcudart\.so\.13\]", line)
        if m:
            total += int(m.group(1).replace(",", ""))
    return total


def report(folder: Path, calls: int) -> None:
    rows: dict[str, dict[str, float]] = {}
    loop = 0.0
    for dump in sorted(folder.glob("cg.out.*[0-9]"), key=lambda p: int(p.suffix[1:])):
        text = dump.read_text()
        label = re.search(r"^desc: Trigger: Client Request: (.*)$", text, re.M).group(1)
        total = int(re.search(r"^summary: (\d+)", text, re.M).group(1))
        per_call = (total - _stand_in_cost(dump)) / calls
        if label == "loop":
            loop = per_call
            continue
        name, form = label.split("|")
        rows.setdefault(name, {})[form] = per_call - (0 if form.endswith("floor") else loop)
    made = json.loads((folder / CALLS_FILE).read_text())
    torch = any("torch floor" in r for r in rows.values())
    print(f"# instructions per call (callgrind, {calls} calls; less the loop's {loop:.0f} "
          f"and the stand-in libcudart's), no-op exports, "
          f"{'CPU torch tensors passed off as CUDA' if torch else 'tensor descriptors'}")
    head = ["API", "prepared", "Binding", "C floor"] + (["torch fl", "API-tfl"] if torch else [])
    print(f"{'op':36s}" + "".join(f" {h:>9s}" for h in head))
    for name, r in rows.items():
        cells = [r["API"], r["prepared"], r["Binding"], r["C floor"]]
        if torch:
            cells += [r["torch floor"], r["API"] - r["torch floor"]]
        print(f"{name:36s}" + "".join(f" {c:9.0f}" for c in cells))
    print("# CUDA runtime calls per call (stand-in libcudart's counts)")
    for name in rows:
        for form in ("API", "prepared"):
            got = made.get(f"{name}|{form}", {})
            print(f"{name:36s} {form:9s} " + (", ".join(
                f"{k} {v:g}" for k, v in sorted(got.items())) or "none"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--only", default="", help="ops whose name contains this")
    ap.add_argument("--torch", action="store_true",
                    help="CPU torch tensors passed off as CUDA ones, and the torch floor")
    ap.add_argument("--keep", type=Path, help="leave the callgrind dumps in this folder "
                    "(for callgrind_annotate)")
    args = ap.parse_args()
    if MARKS_ENV in os.environ:
        return child(args)
    from testmod_build import compile_c_library

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        marks = compile_c_library(HERE / "c_floor/callgrind_marks.c", folder / "marks.so")
        os.environ[MARKS_ENV] = str(marks)
        res = noop_ops.run_with_stand_ins(
            folder, sys.argv, ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                               f"--callgrind-out-file={folder / 'cg.out'}", "-q"])
        if res.returncode:
            return res.returncode
        report(folder, args.calls)
    return 0


if __name__ == "__main__":
    sys.exit(main())
