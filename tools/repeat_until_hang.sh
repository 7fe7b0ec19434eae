#!/usr/bin/env bash
# Run a command up to N times, one after another, to catch an intermittent hang. A run that
# is still going after T seconds counts as hung: its threads' Python and native stacks
# (py-spy dump --native), nvidia-smi and its output so far are printed, then it is killed
# and the loop stops.
#
#   tools/repeat_until_hang.sh N T command [args...]
#
# e.g. the gdn Qwen3-Next stress test exactly as its child process runs it:
#   FLASHINFER_CY_CHILD_TEST=test_stress_gdn_prefill_qwen3_next_multi_stream_chained \
#     tools/repeat_until_hang.sh 30 30 python3 -m pytest -q -x -p no:cacheprovider \
#     tests/gpu/test_gdn_stress.py::test_stress_gdn_prefill_qwen3_next_multi_stream_chained
set -u
n=$1 limit=$2
shift 2
log=$(mktemp)
for i in $(seq 1 "$n"); do
  t0=$(date +%s%N)
  "$@" > "$log" 2>&1 &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    if (( ($(date +%s%N) - t0) / 1000000000 >= limit )); then
      echo "run $i: HUNG (still running after ${limit} s); its threads:"
      py-spy dump --native --pid "$pid" 2>&1 | tail -150
      nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
      echo "--- its output so far:"; tail -40 "$log"
      kill -9 "$pid"
      exit 3
    fi
    sleep 0.1
  done
  wait "$pid"
  rc=$?
  echo "run $i: rc=$rc in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
  if [ "$rc" != 0 ]; then tail -40 "$log"; exit "$rc"; fi
done
