#!/usr/bin/env bash
# One call on the GPU machine: install the carried wheels, build the extensions, run doctor,
# the test suite and the benchmarks. Every log lands in $OUT (what comes back).
#
#   tools/gpu_session.sh [pytest args...]      (from the repo root; OUT defaults to ./gpu-out)
#
# tools/make_carry.sh downloads .carry/ (and, with WITH_HF=1, .carry-hf/) on a machine with PyPI.
# Carried (git-ignored) inputs: .carry/*.whl (apache-tvm-ffi for this Python; flashinfer-python
# 0.6.3, which is both the kernel sources and the benchmark peer; platformdirs/filelock/tqdm);
# optional .carry-hf/*.whl (transformers and the pure-Python wheels it imports, installed
# --no-deps: tests/gpu/test_model_step.py).
# Kernel modules: KERNELS=build (default) builds every module the tests use with
# tools/build_kernels.py on this machine's cores into .kernels-gpu/ (kept while the machine
# stays warm; --skip-existing reuses them) and returns them as $OUT/kernels.tar.xz.part-*;
# KERNELS=archive unpacks such parts carried in .carry-kernels/ (plus any extra-*.tar.xz there;
# EXTRA_URIS="uri ..." builds more and returns them as $OUT/extra-new.tar.xz);
# KERNELS=carried uses .kernels/. BUILD_URIS (default @all) narrows what KERNELS=build builds.
# BUILD_FLAGS passes more options to it (e.g. BUILD_URIS=fused_moe_90 BUILD_FLAGS=--fast-build).
# KDIR_074=.kernels-074 (carried, with .carry-074/; or a .tar.xz of it) adds a pass of
# TESTS_074 on FlashInfer 0.7.4 modules against 0.7.4's flashinfer-python, before the main tests.
# PREBUILT_EXT=.carry-ext/ext-cp312.tar.xz skips building the extensions when the carried ones
# (built from the same commit for this Python) import; device time is scarce.
set -uo pipefail
OUT=${OUT:-$PWD/gpu-out}
# session.log and pytest.txt are written to $OUT as they go; every other log goes to $LOGS,
# packed into $OUT/logs.tgz at the end (the device tool brings back at most 8 files).
LOGS=$(mktemp -d /tmp/fcy-logs.XXXX)
mkdir -p "$OUT"
exec > >(tee "$OUT/session.log") 2>&1  # written as it goes: survives a timeout
t0=$(date +%s)
stamp() { echo "=== [$(( $(date +%s) - t0 ))s] $*"; }

stamp "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -V; nvcc --version | tail -1
stamp "install carried wheels"
python3 -m pip install -q --no-deps --no-index .carry/*.whl 2>&1 | grep -v WARNING
python3 -c "import torch; print('torch', torch.__version__, 'exchange api:', hasattr(torch.Tensor, '__dlpack_c_exchange_api__'))"
if ls .carry-hf/*.whl >/dev/null 2>&1; then  # transformers + its pure deps: the model-step test
  python3 -m pip install -q --no-deps --no-index .carry-hf/*.whl 2>&1 | grep -v WARNING
fi  # else the image's own transformers (tests/gpu/test_model_step.py takes 4.x and 5.x)
python3 -c "import transformers, safetensors; print('transformers', transformers.__version__)"

if [ "${KERNELS:-build}" = build ]; then
  stamp "build kernel modules (tools/build_kernels.py @all, $(nproc) jobs)"
  python3 tools/build_kernels.py ${BUILD_URIS:-@all} ${BUILD_FLAGS:-} --out .kernels-gpu --skip-existing --verify -j "$(nproc)" \
    --work-dir /tmp/fcy-kbuild --status-file "$LOGS/kernel_build_status.txt" > "$LOGS/kernel_build.jsonl" 2> "$LOGS/kernel_build.err"
  echo "build_kernels rc=$?"; tail -3 "$LOGS/kernel_build.err"; cat "$LOGS/kernel_build_status.txt"
  KDIR=$PWD/.kernels-gpu
  # Bring the modules back (split under the device tool's 16 MB-per-file limit) so a later
  # call can carry them instead of rebuilding: KERNELS=archive.
  tar cf - -C .kernels-gpu . | xz -T0 -6 | split -b 15m - "$OUT/kernels.tar.xz.part-"
  ls -la "$OUT"/kernels.tar.xz.part-*
elif [ "${KERNELS}" = archive ]; then
  mkdir -p .kernels-gpu && cat .carry-kernels/kernels.tar.xz.part-* | xz -d | tar xf - -C .kernels-gpu
  for x in .carry-kernels/extra-*.tar.xz; do  # modules built later (tools/build_kernels.py)
    [ -e "$x" ] && xz -d < "$x" | tar xf - -C .kernels-gpu
  done
  KDIR=$PWD/.kernels-gpu
  if [ -n "${EXTRA_URIS:-}" ]; then  # modules the archives lack, built here and returned
    stamp "build extra kernel modules: $EXTRA_URIS"
    python3 tools/build_kernels.py $EXTRA_URIS --out .kernels-extra --verify -j "$(nproc)" \
      --work-dir /tmp/fcy-kbuild > "$LOGS/extra_build.jsonl" 2> "$LOGS/extra_build.err"
    echo "build_kernels rc=$?"; tail -5 "$LOGS/extra_build.err"
    cp -r .kernels-extra/. .kernels-gpu/
    tar cf - -C .kernels-extra . | xz -T0 -6 > "$OUT/extra-new.tar.xz"
  fi
else
  KDIR=$PWD/.kernels
fi

# PREBUILT_EXT=.carry-ext/ext-cp312.tar.xz: the extensions built elsewhere for this Python
# (the same sources: tar of flashinfer_cy/**/*.so), used when they import here; else built.
if [ -n "${PREBUILT_EXT:-}" ] && [ -f "$PREBUILT_EXT" ] && xz -d < "$PREBUILT_EXT" | tar xf - \
   && python3 -c "import flashinfer_cy._core.binding, flashinfer_cy.kernels.batch_attention" 2>&1; then
  stamp "extensions: prebuilt $PREBUILT_EXT"
else
  stamp "build extensions"
  FLASHINFER_CY_CYTHON_JOBS=16 python3 setup.py -q build_ext --inplace -j 16 > "$LOGS/build.log" 2>&1 \
    || { tail -40 "$LOGS/build.log"; exit 1; }
fi
export PYTHONPATH=$PWD FLASHINFER_CY_KERNEL_DIR=$KDIR
# The GPU machine reaches no network: a module missing from $KDIR should be a skip at once,
# not six download attempts with back-off (about 20 s each time a test asks for one).
export FLASHINFER_CY_OFFLINE=${FLASHINFER_CY_OFFLINE:-1}
# Bindings refuse a kernel dir whose FlashInfer release is unknown (docs/abi-versions.md).
# Archives and .kernels/ made before tools/build_kernels.py wrote flashinfer_version.txt hold
# its 0.6.3 modules (the only release it builds): vouch for them the documented way.
if [ ! -f "$KDIR/flashinfer_version.txt" ]; then
  echo "note: $KDIR has no flashinfer_version.txt (built before the marker); FLASHINFER_CY_FLASHINFER_VERSION=0.6.3"
  export FLASHINFER_CY_FLASHINFER_VERSION=0.6.3
fi

# flashinfer-python (the peer) finds the same modules through a jit-cache shim, so it never
# JIT-compiles during the benchmark.
mkdir -p /tmp/fjc/flashinfer_jit_cache
cat > /tmp/fjc/flashinfer_jit_cache/__init__.py <<PY
__version__ = "0.6.3+local"
def get_jit_cache_dir():
    return "$KDIR"
PY
export PEER_PYTHONPATH=/tmp/fjc

stamp "doctor"
python3 -m flashinfer_cy doctor --require-gpu

if [ -n "${KDIR_074:-}" ]; then
  if [ -f "$KDIR_074" ]; then  # an archive (tar cf - -C .kernels-074 . | xz): saves carry room
    mkdir -p .kernels-074-gpu && xz -d < "$KDIR_074" | tar xf - -C .kernels-074-gpu
    KDIR_074=.kernels-074-gpu
  fi
  # A second pass on flashinfer 0.7.4 modules (built here with tools/build_kernels.py
  # --flashinfer-version 0.7.4 and carried), the peer being 0.7.4's flashinfer-python: its
  # Python package carried as .carry-074/flashinfer_python-0.7.4-py.tar.xz (the wheel minus
  # data/ and C++ sources: 13 MB instead of 101) plus the wheels it imports (.carry-074/*.whl).
  stamp "flashinfer 0.7.4 pass: $KDIR_074 (${TESTS_074:-tests/gpu})"
  python3 -m pip install -q --no-deps --no-index .carry-074/*.whl 2>&1 | grep -v WARNING
  mkdir -p /tmp/fi074py /tmp/fjc074/flashinfer_jit_cache
  xz -d < .carry-074/flashinfer_python-0.7.4-py.tar.xz | tar xf - -C /tmp/fi074py
  # 0.7.x looks for a module in flashinfer/data/aot/<uri>/<uri>.so first (jit/env.py
  # get_aot_artifacts), then in the jit-cache shim's providers: point the first at our
  # modules; the shim (which tests/gpu/peer.py requires) provides none.
  mkdir -p /tmp/fi074py/flashinfer/data && ln -sfn "$PWD/$KDIR_074" /tmp/fi074py/flashinfer/data/aot
  cat > /tmp/fjc074/flashinfer_jit_cache/__init__.py <<PY
__version__ = "0.7.4+local"
def get_jit_cache_providers():
    return []
PY
  FLASHINFER_CY_KERNEL_DIR=$PWD/$KDIR_074 PEER_PYTHONPATH=/tmp/fi074py:/tmp/fjc074 \
    timeout ${PYTEST_074_TIMEOUT:-200} python3 -m pytest ${TESTS_074:-tests/gpu} -q -rs \
    -p no:cacheprovider -o faulthandler_timeout=120 > "$OUT/pytest-074.txt" 2>&1
  echo "pytest (0.7.4) rc=$?"; tail -30 "$OUT/pytest-074.txt"
fi

if [ -n "${BEFORE_TESTS:-}" ]; then  # a diagnosis to run first, e.g. a tools/probe_*.py
  stamp "before tests: $BEFORE_TESTS"
  timeout ${BEFORE_TIMEOUT:-150} bash -c "$BEFORE_TESTS"; echo "before-tests rc=$?"
fi

stamp "tests"
# faulthandler_timeout: a test stuck in-process dumps every thread's Python stack.
timeout ${PYTEST_TIMEOUT:-240} python3 -m pytest ${TESTS:-tests} -q -rs -p no:cacheprovider \
  -o faulthandler_timeout=120 --durations=12 "$@" > "$OUT/pytest.txt" 2>&1
echo "pytest rc=$?"; tail -45 "$OUT/pytest.txt"

for b in $( [ "${BENCH:-1}" = 1 ] && ls ${BENCHES:-tools/bench_*.py} ); do
  stamp "benchmark $b"
  PYTHONPATH=$PWD:/tmp/fjc FLASHINFER_DISABLE_VERSION_CHECK=1 \
    timeout ${BENCH_TIMEOUT:-150} python3 "$b" ${BENCH_ARGS:-} --json "$LOGS/$(basename "$b" .py).json" 2>&1 | tail -25
done
if [ -n "${AFTER_BENCH:-}" ]; then  # more measurements, e.g. examples/model_step/bench.py runs
  stamp "after benchmarks: $AFTER_BENCH"
  PYTHONPATH=$PWD:/tmp/fjc FLASHINFER_DISABLE_VERSION_CHECK=1 \
    timeout ${AFTER_TIMEOUT:-200} bash -c "$AFTER_BENCH"; echo "after-bench rc=$?"
fi
if [ "${PROFILE:-0}" = 1 ]; then  # where run()'s host time goes (py-spy, native frames)
  for mode in torch raw; do
    stamp "py-spy: decode run(), $mode tensors"
    timeout 60 py-spy record --native -r 250 -f raw -o "$LOGS/profile_run_$mode.txt" -- \
      python3 tools/profile_plan.py --seconds 16 --what run $( [ $mode = raw ] && echo --raw ) 2>&1 | tail -2
    python3 tools/profile_plan.py --summarize "$LOGS/profile_run_$mode.txt" --top 45
  done
fi
if [ -x tools/sanitize.sh ] && [ "${SANITIZE:-1}" = 1 ]; then
  stamp "compute-sanitizer"
  OUT=$LOGS/sanitizer timeout ${SANITIZE_TIMEOUT:-150} tools/sanitize.sh 2>&1 | tail -15
  cat "$LOGS/sanitizer/summary.txt"
fi
stamp "done"
cp "$LOGS/session.log" "$OUT/pytest.txt" "$OUT/" 2>/dev/null
tar czf "$OUT/logs.tgz" -C "$LOGS" .
