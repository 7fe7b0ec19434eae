#!/usr/bin/env bash
# Decode run() host overhead of two builds on one machine: a base tree and the current one,
# in fresh processes that alternate, so a difference between them is not a difference
# between machines or processes (the C floor itself moved from 7.9 to 11.7 us between
# processes on one H100 host). Every process times the decode run rows against the C floor
# in its own interleaved bursts (tools/bench_attention.py --decode-run-only).
#
#   git archive <base-rev> -o .carry/ab-base.tar      (here; .carry/ travels to the GPU)
#   AB_BASE_TAR=.carry/ab-base.tar tools/ab_decode_overhead.sh [rounds] [taskset cpus]
#
# Run it after tools/gpu_session.sh's setup (e.g. as its BEFORE_TESTS): it needs the
# extensions built in place, FLASHINFER_CY_KERNEL_DIR and the C floor's toolchain. Prints
# one line per process: the floor (us/call), then each row minus the floor.
set -uo pipefail
rounds=${1:-3}
pin=${2:+taskset -c $2}
base=$(mktemp -d /tmp/fcy-ab-base.XXXX)
tar xf "${AB_BASE_TAR:?AB_BASE_TAR: a git archive tarball of the base revision}" -C "$base"
(cd "$base" && python3 setup.py -q build_ext --inplace -j "$(nproc)" > build.log 2>&1) \
  || { tail -20 "$base/build.log"; exit 1; }
line() {  # TAG JSON: one line from bench_attention.py's JSON
  python3 - "$@" <<'PY'
import json, sys
rows = json.load(open(sys.argv[2]))["rows"]
short = lambda name: name.strip().replace("decode run: ", "").replace("flashinfer_cy ", "")
floor = next(r["host_us"] for name, r in rows.items() if "C floor" in name)
deltas = " ".join(f"[{short(name)}] {r['vs_floor_us']:+.2f}" for name, r in rows.items()
                  if "vs_floor_us" in r)
print(f"{sys.argv[1]:5s} floor {floor:.2f} | {deltas}")
PY
}
for i in $(seq "$rounds"); do
  for tag in base new; do
    root=$([ $tag = base ] && echo "$base" || echo "$PWD")
    PYTHONPATH=$root $pin python3 tools/bench_attention.py --decode-run-only \
      --json "$base/$tag-$i.json" > "$base/$tag-$i.txt" 2>&1 \
      && line "$tag" "$base/$tag-$i.json" || tail -5 "$base/$tag-$i.txt"
  done
done
