#!/usr/bin/env bash
# Diagnostic for the spread of decode host time between processes on one GPU host (the C
# floor itself moves by ~40 %): runs bench_attention.py --decode-run-only in fresh processes
#   free        as launched
#   pinN        pinned to CPU N (taskset): does the spread follow the core?
#   norand+PAD  without address randomisation (setarch -R), with PAD bytes more environment
#               (which moves the initial stack): does it follow the address layout?
# and prints one line per process: the C floor, each row minus it, and the least any run()
# with torch tensors can add (bench_attention's note) with run()'s own share.
#
#   tools/host_spread_probe.sh [rounds] [pads...]    (after tools/gpu_session.sh's setup)
#
# Seen on three H100 hosts (36 processes): the floor moved 8.6-13.5 us pinned or not, with
# or without randomisation, at any PAD; no mode was reliably fast. run()'s distance from
# the floor grows with the floor itself.
set -uo pipefail
rounds=${1:-2}; shift || true
pads=${*:-0 1024 2048 3072}
lscpu | grep -E "Model name|Thread|Core\(s\)|Socket|NUMA node"; uptime
d=$(mktemp -d)
line() {
  python3 - "$@" <<'PY'
import json, sys
data = json.load(open(sys.argv[2]))
rows, notes = data["rows"], data["notes"]
floor = next(r["host_us"] for n, r in rows.items() if "C floor" in n)
delta = lambda key: next((f"{r['vs_floor_us']:+.2f}" for n, r in rows.items()
                          if key in n and "vs_floor_us" in r), "?")
pick = lambda key: next((v.split()[0] for n, v in notes.items() if n.startswith(key)), "?")
print(f"{sys.argv[1]:12s} floor {floor:6.2f} | torch {delta('torch tensors described')} "
      f"prepared {delta('prepared launch()')} run {delta('flashinfer_cy run() (torch')} "
      f"raw {delta('raw TensorDesc')} | least {pick('least a run()')} "
      f"own {pick('decode run - that least')}", flush=True)
PY
}
probe() {  # TAG CMD...
  local tag=$1; shift
  "$@" python3 tools/bench_attention.py --decode-run-only --json "$d/$tag.json" \
    > "$d/$tag.txt" 2>&1 && line "$tag" "$d/$tag.json" || tail -3 "$d/$tag.txt"
}
for i in $(seq "$rounds"); do
  probe free env
  probe pin3 taskset -c 3
  for pad in $pads; do
    probe "norand+$pad" env FCY_PROBE_PAD="$(head -c "$pad" /dev/zero | tr '\0' x)" \
      setarch "$(uname -m)" -R
  done
done
