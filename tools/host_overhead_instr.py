"""flashinfer_cy's own host work per call as instruction counts (valgrind's callgrind): the
calls of tools/host_overhead_cpu.py -- general API, prepared launch, bare Binding, against
no-op exports (tools/noop_ops.py) -- but counted instead of timed, so that two commits can be
compared on a loaded machine, where wall clock is noise.

Each form runs ``--calls`` times between a callgrind zero and a named dump
(tools/c_floor/callgrind_marks.c); the table gives instructions per call less the loop's own
(an empty lambda, measured the same way) and less the stand-in libcudart's work (its
``cuda*`` functions, inclusive: host malloc/free standing in for cudaMallocAsync), so what is
left is Python + flashinfer_cy + TVM-FFI + the no-op export. Not GPU numbers.

    python tools/host_overhead_instr.py [--calls 2000] [--only rope]
Needs valgrind and its headers (valgrind/callgrind.h).
"""

from __future__ import annotations

import argparse
import ctypes
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
FORMS = ("API", "prepared", "Binding")


def child(args) -> int:
    marks = ctypes.CDLL(os.environ[MARKS_ENV])
    ops = noop_ops.decode_step_ops()
    marks.fcy_cg_start()

    def count(label, call):
        for _ in range(50):  # callgrind translates the code paths once
            call()
        marks.fcy_cg_zero()
        for _ in range(args.calls):
            call()
        marks.fcy_cg_dump(label.encode())

    count("loop", lambda: None)
    for name, calls in ops.items():
        if args.only and args.only not in name:
            continue
        for form, call in zip(FORMS, calls):
            count(f"{name}|{form}", call)
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
        rows.setdefault(name, {})[form] = per_call - loop
    print(f"# instructions per call (callgrind, {calls} calls; less the loop's {loop:.0f} "
          f"and the stand-in libcudart's), no-op exports")
    print(f"{'op':36s} {'API':>8s} {'prepared':>9s} {'Binding':>8s}")
    for name, r in rows.items():
        print(f"{name:36s} {r['API']:8.0f} {r['prepared']:9.0f} {r['Binding']:8.0f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--only", default="", help="ops whose name contains this")
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
