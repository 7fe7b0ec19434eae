#!/usr/bin/env bash
# compute-sanitizer over a representative subset of the GPU tests; every log lands in $OUT.
#
#   tools/sanitize.sh                 (repo root, after tools/gpu_session.sh set the machine up)
#   STEPS="memcheck-norm racecheck-norm" tools/sanitize.sh      (a subset of the steps)
#
# Steps, in priority order (a step that would start after BUDGET seconds is skipped):
#   memcheck-norm       RMSNorm family, raw DeviceArray/TensorDesc inputs (no torch), both
#                       dtypes, odd hidden sizes, strided 3-D views, zero rows, fused add
#   memcheck-page       paged-KV append (MHA NHD/HND, MLA, strided views), DeviceArray inputs
#   racecheck-norm      shared-memory hazards of the block reductions (rmsnorm, fused add)
#   initcheck-norm      reads of uninitialised device memory (norm)
#   memcheck-attention  single/batch decode and prefill (FA2; torch inputs)
#   memcheck-gdn        one small GDN prefill (sm_90 only; the test skips elsewhere)
#   memcheck-decode-step  rope (pos ids, ragged, cos/sin cache), the gated activations,
#                       merge_state(s), radix top-k and its transforms: small cases
#   memcheck-sampling   softmax, renorm/mask and the samplers at two vocab sizes
#   memcheck-mla        batched MLA, FA2 and FA3, decode and chunked prefill
#
# memcheck runs with PYTORCH_NO_CUDA_MEMORY_CACHING=1: torch's caching allocator would hide
# an out-of-bounds write that lands inside one of its cached blocks. CUDA API errors count
# for the norm and page steps (no torch there); for the torch-based attention and the gdn
# steps they are off by default (torch and the driver probe with calls that are allowed to
# fail): API_ERRORS=explicit turns them on. No --leak-check: the tests keep some device
# buffers alive on purpose (caches, view parents) and the soak test covers leaks.
#
# Result: $OUT/summary.txt, one line per step (PASS, SANITIZER-ERRORS, TESTS-FAILED,
# TIMEOUT, NO-TESTS, SKIPPED); exit 0 when no step has sanitizer errors or failed tests,
# 1 otherwise, 3 when compute-sanitizer cannot be found. Per step: <step>.sanitizer.log
# (the tool's report) and <step>.pytest.txt (the tests' output).
#
# Environment (as tools/gpu_session.sh exports it; defaults when run on its own):
#   PYTHONPATH=$PWD, FLASHINFER_CY_KERNEL_DIR=.kernels-gpu or .kernels,
#   OUT=./sanitize-out, BUDGET=140 (s, whole script), STEP_TIMEOUT=75 (s, one step),
#   SANITIZER=path to compute-sanitizer.
set -uo pipefail
OUT=${OUT:-$PWD/sanitize-out}
BUDGET=${BUDGET:-140}
STEP_TIMEOUT=${STEP_TIMEOUT:-75}
STEPS=${STEPS:-memcheck-norm memcheck-page racecheck-norm initcheck-norm memcheck-attention memcheck-gdn memcheck-decode-step memcheck-sampling memcheck-mla}
API_ERRORS=${API_ERRORS:-no}
mkdir -p "$OUT"
: > "$OUT/summary.txt"
export PYTHONPATH=${PYTHONPATH:-$PWD}
if [ -z "${FLASHINFER_CY_KERNEL_DIR:-}" ]; then
  for d in "$PWD/.kernels-gpu" "$PWD/.kernels"; do
    [ -d "$d" ] && export FLASHINFER_CY_KERNEL_DIR=$d && break
  done
fi
export FLASHINFER_CY_OFFLINE=1  # a missing module skips its tests; never a download here

find_sanitizer() {
  local c
  for c in "${SANITIZER:-}" "$(command -v compute-sanitizer 2>/dev/null)" \
           "${CUDA_HOME:-/usr/local/cuda}/bin/compute-sanitizer" \
           /usr/local/cuda/compute-sanitizer/compute-sanitizer \
           /usr/local/cuda-*/bin/compute-sanitizer /usr/local/cuda-*/compute-sanitizer/compute-sanitizer \
           "$(python3 -c 'import nvidia, os; print(os.path.join(nvidia.__path__[0], "cuda_sanitizer_api", "compute-sanitizer", "compute-sanitizer"))' 2>/dev/null)"; do
    [ -n "$c" ] && [ -x "$c" ] && { echo "$c"; return 0; }
  done
  return 1
}
SAN=$(find_sanitizer) || {
  echo "compute-sanitizer not found (looked on PATH, \$CUDA_HOME, /usr/local/cuda*, the" \
       "nvidia-cuda-sanitizer-api wheel); set SANITIZER=/path/to/compute-sanitizer" | tee "$OUT/summary.txt"
  exit 3
}
echo "compute-sanitizer: $SAN ($("$SAN" --version 2>/dev/null | grep -i version | head -1))" | tee "$OUT/session.txt"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | tee -a "$OUT/session.txt"
echo "PYTHONPATH=$PYTHONPATH FLASHINFER_CY_KERNEL_DIR=${FLASHINFER_CY_KERNEL_DIR:-<unset>}" | tee -a "$OUT/session.txt"

t0=$(date +%s)
failed=0

# step <name> <tool> <extra tool args> -- <pytest args...>
step() {
  local name=$1 tool=$2 extra=$3
  shift 4
  if ! [[ " $STEPS " == *" $name "* ]]; then return; fi
  local now=$(( $(date +%s) - t0 ))
  if (( now >= BUDGET )); then
    echo "$name: SKIPPED (budget of ${BUDGET}s used)" | tee -a "$OUT/summary.txt"; return
  fi
  local left=$(( BUDGET - now )); (( left < STEP_TIMEOUT )) || left=$STEP_TIMEOUT
  echo "=== [${now}s] $name: $tool, up to ${left}s"
  local s=$(date +%s)
  # shellcheck disable=SC2086
  PYTORCH_NO_CUDA_MEMORY_CACHING=1 timeout --signal=TERM --kill-after=10 "$left" \
    "$SAN" --tool "$tool" $extra --error-exitcode 99 --print-limit 100 \
      --log-file "$OUT/$name.%p.sanitizer.log" \
      python3 -m pytest -q -p no:cacheprovider -rs "$@" > "$OUT/$name.pytest.txt" 2>&1
  local rc=$? took=$(( $(date +%s) - s ))
  local tests; tests=$(grep -E "passed|failed|skipped|error|no tests ran" "$OUT/$name.pytest.txt" | tail -1)
  local verdict
  case $rc in
    0) verdict=PASS ;;
    99) verdict=SANITIZER-ERRORS; failed=1 ;;
    124|137) verdict=TIMEOUT ;;
    5) verdict=NO-TESTS ;;
    *) verdict="TESTS-FAILED (rc $rc)"; failed=1 ;;
  esac
  # compute-sanitizer's own last line: "ERROR SUMMARY: N errors" (per process)
  local summary; summary=$(grep -h "ERROR SUMMARY" "$OUT/$name".*.sanitizer.log 2>/dev/null | sort | uniq -c | tr -s ' \n' ' ')
  echo "$name: $verdict in ${took}s; tests: ${tests:-?}; ${summary:-no sanitizer summary}" | tee -a "$OUT/summary.txt"
  if [ "$verdict" != PASS ]; then
    grep -m 20 -E "=========  (Invalid|Race|Uninitialized|Barrier|Program hit|Out-of-range|Address)" \
      "$OUT/$name".*.sanitizer.log 2>/dev/null | sed 's/^/    /'
    tail -5 "$OUT/$name.pytest.txt" | sed 's/^/    /'
  fi
}

NORM_K="raw and (rmsnorm_2d or qk_rmsnorm or fused_add) or zero_tokens or out_omitted or enable_pdl or misaligned"
PAGE_K="(append_writes and 5 and (float16 or float8) and not bfloat16) or mla or strided or most_heads or nothing_to_append"
ATTN_K="(single_decode and NHD and float16 and not window) or (batch_decode and (gqa4-p1-NHD-float16 or mha-p16-HND-bfloat16)) or repeated_runs or (single_prefill and causal-NHD-float16) or (batch_prefill_paged and float16-NHD-causal-fa2) or (batch_prefill_ragged and float16-HND-full-fa2)"

step memcheck-norm memcheck "" -- tests/gpu/test_norm.py -k "$NORM_K"
step memcheck-page memcheck "" -- tests/gpu/test_page.py -k "$PAGE_K"
step racecheck-norm racecheck "--racecheck-report analysis" -- tests/gpu/test_norm.py \
  -k "raw and (rmsnorm_2d or fused_add) and float16"
step initcheck-norm initcheck "" -- tests/gpu/test_norm.py -k "raw and (rmsnorm_2d or fused_add or qk_rmsnorm) and float16"
step memcheck-attention memcheck "--report-api-errors $API_ERRORS" -- \
  tests/gpu/test_attention_decode.py tests/gpu/test_attention_prefill.py -k "$ATTN_K"
step memcheck-gdn memcheck "--report-api-errors $API_ERRORS" -- tests/gpu/test_gdn.py -k "matches_float64_reference and zero_state-none-gqa-float16"

DSTEP_K="(pos_ids and float16 and int32 and rope) or (ragged and float16) or (cos_sin_cache and float16 and 128-64 and int64) or (bit_identical and silu and float16 and not pdl) or merge_state_equals or merge_states_equals or (top_k_against and float32) or page_table_transform or ragged_transform"
SAMPLING_K="(softmax_float64 and 32000) or (renorm_and_mask and 32000) or (sampled_ids and 50258)"
step memcheck-decode-step memcheck "--report-api-errors $API_ERRORS" -- tests/gpu/test_rope.py \
  tests/gpu/test_activation.py tests/gpu/test_cascade.py tests/gpu/test_topk.py -k "$DSTEP_K"
step memcheck-sampling memcheck "--report-api-errors $API_ERRORS" -- tests/gpu/test_sampling.py -k "$SAMPLING_K"
step memcheck-mla memcheck "--report-api-errors $API_ERRORS" -- tests/gpu/test_mla.py \
  -k "against_reference_and_peer and (decode64 or chunk) and bfloat16"

echo "=== [$(( $(date +%s) - t0 ))s] done"
cat "$OUT/summary.txt"
exit $failed
