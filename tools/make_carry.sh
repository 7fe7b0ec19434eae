#!/usr/bin/env bash
# Download what tools/gpu_session.sh installs on the GPU machine (which reaches no network),
# into the git-ignored folders the device tool carries. Run from the repo root, here (PyPI
# reachable). Everything is a wheel pip checks by its own rules; nothing is built.
#
#   tools/make_carry.sh            .carry/ (always) and .carry-hf/ (the model-step test)
#   PY=3.12 tools/make_carry.sh    the GPU machine's Python (default 3.12)
#
# .carry/    apache-tvm-ffi for that Python (the runtime these bindings load), flashinfer-python
#            0.6.3 (kernel sources for tools/build_kernels.py and the benchmark peer), and the
#            pure-Python runtime dependencies the GPU image lacks.
# .carry-hf/ transformers and what it imports, minus what the image has (numpy) and optional
#            packages the tests never use (hf_xet, HF's `kernels`): 26 MB, leaving room under
#            the device tool's 64 MiB carry limit for a kernel archive.
set -euo pipefail
PY=${PY:-3.12}
PLAT=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64
      --platform manylinux2014_x86_64)
get() { python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PY" \
          "${PLAT[@]}" -d "$1" "${@:2}"; }

mkdir -p .carry .carry-hf
# The runtime pin of pyproject.toml; 0.1.15.post2 is what the H100/H200 runs used.
get .carry "apache-tvm-ffi==0.1.15.post2" "flashinfer-python==0.6.3" \
    "filelock>=3.8" "platformdirs>=2.5" "tqdm>=4.62" "pyelftools>=0.27"
python3 -m pip download -q --only-binary=:all: --python-version "$PY" "${PLAT[@]}" \
    -d .carry-hf transformers safetensors
rm -f .carry-hf/numpy-*.whl .carry-hf/hf_xet-*.whl .carry-hf/kernels-*.whl
du -sh .carry .carry-hf
