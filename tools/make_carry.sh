#!/usr/bin/env bash
# Download what tools/gpu_session.sh installs on the GPU machine (which reaches no network),
# into the git-ignored folders the device tool carries. Run from the repo root, here (PyPI
# reachable). Everything is a wheel pip checks by its own rules; nothing is built.
#
#   tools/make_carry.sh            .carry/
#   WITH_HF=1 tools/make_carry.sh  also .carry-hf/ (only for another transformers than the
#                                  image's: it has 5.17, which tests/gpu/test_model_step.py takes)
#   PY=3.12 tools/make_carry.sh    the GPU machine's Python (default 3.12)
#   WITH_074=1 tools/make_carry.sh also .carry-074/ (gpu_session.sh's KDIR_074 pass)
#
# .carry/    apache-tvm-ffi for that Python (the runtime these bindings load), flashinfer-python
#            0.6.3 (kernel sources for tools/build_kernels.py and the benchmark peer), and the
#            pure-Python runtime dependencies the GPU image lacks.
# .carry-hf/ transformers and what it imports, minus what the image has (numpy) and optional
#            packages the tests never use (hf_xet, HF's `kernels`): 26 MB. pip download can
#            leave two versions of one package (huggingface-hub 2.4.0 and 2.5.0 were seen),
#            which makes the install there fail: only the newest of each is kept.
set -euo pipefail
PY=${PY:-3.12}
PLAT=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64
      --platform manylinux2014_x86_64)
get() { python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PY" \
          "${PLAT[@]}" -d "$1" "${@:2}"; }

mkdir -p .carry
# The runtime pin of pyproject.toml; 0.1.15.post2 is what the H100/H200 runs used.
get .carry "apache-tvm-ffi==0.1.15.post2" "flashinfer-python==0.6.3" \
    "filelock>=3.8" "platformdirs>=2.5" "tqdm>=4.62" "pyelftools>=0.27"
du -sh .carry
if [ "${WITH_HF:-0}" = 1 ]; then
  mkdir -p .carry-hf
  python3 -m pip download -q --only-binary=:all: --python-version "$PY" "${PLAT[@]}" \
      -d .carry-hf transformers safetensors
  rm -f .carry-hf/numpy-*.whl .carry-hf/hf_xet-*.whl .carry-hf/kernels-*.whl
  python3 - .carry-hf <<'PY'
import pathlib, sys
from packaging.utils import parse_wheel_filename
newest = {}
for w in sorted(pathlib.Path(sys.argv[1]).glob("*.whl")):
    name, version, _, _ = parse_wheel_filename(w.name)
    if name in newest and newest[name][0] > version:
        w.unlink()
        continue
    if name in newest:
        newest[name][1].unlink()
    newest[name] = (version, w)
PY
  du -sh .carry-hf
fi

# .carry-074/ FlashInfer 0.7.4's Python package, the peer of the 0.7.4 pass: the wheel (101 MB)
#            minus data/ and its C++/CUDA sources, 13 MB, which leaves room for the kernel
#            archives under the carry limit. Everything else it imports at the top (torch,
#            einops, tabulate, requests, click, nvidia-ml-py, cuda-bindings) is in the image;
#            apache-tvm-ffi comes from .carry/. The 0.7.4 kernel modules are built here with
#            tools/build_kernels.py --flashinfer-version 0.7.4 --flashinfer-src <the wheel>.
if [ "${WITH_074:-0}" = 1 ]; then
  tmp=$(mktemp -d)
  python3 -m pip download -q --no-deps --only-binary=:all: -d "$tmp" "flashinfer-python==0.7.4"
  mkdir -p "$tmp/py" .carry-074 && python3 -m zipfile -e "$tmp"/flashinfer_python-0.7.4-*.whl "$tmp/py"
  # Plus what its attention generators (MLA, batch/single decode and prefill, FA2 and FA3)
  # read before they look for a built module: the csrc *.jinja templates and the sources
  # they copy (a few hundred kB, not data/'s 389 MB).
  (cd "$tmp/py" && tar cf "$tmp/py.tar" --exclude=flashinfer/data --exclude='*.cu' \
      --exclude='*.cuh' --exclude='*.cpp' --exclude='*.cubin' --exclude='*.so' flashinfer \
    && tar rf "$tmp/py.tar" flashinfer/data/csrc/*.jinja flashinfer/data/csrc/batch_mla* \
       flashinfer/data/csrc/batch_prefill* flashinfer/data/csrc/batch_decode* \
       flashinfer/data/csrc/single_prefill* flashinfer/data/csrc/single_decode*)
  xz -T0 -6 < "$tmp/py.tar" > .carry-074/flashinfer_python-0.7.4-py.tar.xz
  rm -rf "$tmp"
  du -sh .carry-074
fi
