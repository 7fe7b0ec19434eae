#!/usr/bin/env python3
"""Build flashinfer kernel modules (<uri>.so, TVM-FFI exports) without a GPU: 0.6.3 or 0.7.4.

For developers, tests and users without the prebuilt ``flashinfer_jit_cache`` wheel.
It calls the same generator functions as ``flashinfer/aot.py`` (so the modules are
those of the wheel, for the archs you pick) and compiles them with nvcc through ninja.
Run it with an interpreter where torch and flashinfer-python of the release you build
import (the generators import torch; no CUDA device is queried because the arch list is
given). ``--flashinfer-version`` picks the release (default 0.6.3; the URI grammar and presets
are that release's, tools/kernel_uris.py); ``--flashinfer-src`` takes that release's sources
from an unpacked flashinfer-python wheel or the .whl itself instead of the installed package
(``pip download --no-deps flashinfer-python==0.7.4``).

    python tools/build_kernels.py @core @test --out .kernels --verify
    python tools/build_kernels.py norm --flashinfer-version 0.7.4 \\
        --flashinfer-src flashinfer_python-0.7.4-py3-none-any.whl --out .kernels-0.7.4
    python tools/build_kernels.py --no-build --verify @all --out .kernels \\
        --wheel dist/flashinfer_jit_cache-0.6.3+cu130.sm90a-py3-none-linux_x86_64.whl

Output layout ``<out>/<uri>/<uri>.so`` is what FLASHINFER_CY_KERNEL_DIR reads; the
wheel's ``flashinfer_jit_cache/jit_cache/<uri>/<uri>.so`` is the prebuilt one's. A build
(not --no-build) writes ``<out>/flashinfer_version.txt`` (e.g. "0.6.3"), the release flashinfer_cy
checks each Binding against (docs/abi-versions.md); --out marked for another release is refused.
One JSON line per module goes to stdout ({"uri", "ok", "seconds", "bytes", ...}; seconds
run from the module's first compile to its link inside one shared ninja run, so modules
built together overlap). Build logs go to a file (stderr with -v). Requested modules are
always rebuilt from scratch unless --skip-existing finds them in --out. Rough cost:
@core @test is 3.5 min on 16 cores (H100 host); on 2 cores fa3 batch prefill is ~10 min
per dtype and gdn_prefill_sm90 ~45 min.
Background: docs/kernel-build.md (shared docs) and docs/flashinfer-abi.md §4.
"""

from __future__ import annotations

import argparse
import base64
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kernel_uris  # noqa: E402  (sibling module; pure Python)

# norm.cu includes these via trtllm/common/cudaUtils.h; pip-style toolkits lack them.
# Only declarations are needed: no cuBLAS/cuRAND symbol ends up in any module.
NEEDED_HEADERS = ("cublasLt.h", "curand_kernel.h")
HEADER_WHEELS = ("nvidia-cublas==13.0.0.19", "nvidia-curand==10.4.0.35")  # CUDA 13.0


def log(msg: str) -> None:
    print(f"[build_kernels] {msg}", file=sys.stderr, flush=True)


def emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


# --------------------------------------------------------------------------- environment

def find_cuda_home() -> Path:
    """The toolkit root: has bin/nvcc and the CUDA runtime headers.

    flashinfer would take dirname(dirname(`which nvcc`)), which is wrong when nvcc on
    PATH is a wrapper (here /usr/local/bin/nvcc execs /usr/local/cuda-13.0/bin/nvcc),
    so check the candidates and pin the result in CUDA_HOME.
    """
    cands = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")]
    if shutil.which("nvcc"):
        cands += [Path(shutil.which("nvcc")).parent.parent, Path(shutil.which("nvcc")).resolve().parent.parent]
    cands.append("/usr/local/cuda")
    for home in filter(None, cands):
        home = Path(home)
        if (home / "bin" / "nvcc").exists() and (
                (home / "include" / "cuda_runtime.h").exists() or glob.glob(f"{home}/targets/*/include/cuda_runtime.h")):
            return home
    sys.exit(f"error: no CUDA toolkit (bin/nvcc + include/cuda_runtime.h) in {[str(c) for c in cands if c]}; set CUDA_HOME")


def header_dirs_with(header: str, dirs) -> list:
    return [d for d in dirs if (Path(d) / header).is_file()]


def provide_headers(cuda_home: Path, extra: list, cache: Path) -> list:
    """Return include dirs to add so that NEEDED_HEADERS resolve, fetching them if need be."""
    toolkit = [cuda_home / "include", *map(Path, glob.glob(f"{cuda_home}/targets/*/include"))]
    missing = [h for h in NEEDED_HEADERS if not header_dirs_with(h, toolkit)]
    if not missing:
        return []
    # Offline candidates first: --extra-include, then nvidia-* wheels already installed
    # (a CUDA build of torch brings nvidia-cublas), then an earlier download.
    site = [p for s in sys.path for p in glob.glob(f"{s}/nvidia/*/include")]
    candidates = [*map(Path, extra), *map(Path, site), cache / "include"]
    found = {h: header_dirs_with(h, candidates) for h in missing}
    if all(found.values()):
        return list(dict.fromkeys(d[0] for d in found.values()))
    if extra:
        sys.exit(f"error: {', '.join(h for h in missing if not found[h])} not in --extra-include {extra}")
    log(f"{', '.join(missing)} missing from {cuda_home}; fetching headers from {' '.join(HEADER_WHEELS)}")
    wheels = cache / "wheels"
    r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                        "-d", str(wheels), *HEADER_WHEELS], stdout=sys.stderr, stderr=sys.stderr)
    if r.returncode != 0:
        sys.exit(f"error: {', '.join(missing)} not found in the CUDA toolkit ({cuda_home}) and "
                 f"`pip download {' '.join(HEADER_WHEELS)}` failed (offline?). Pass --extra-include DIR "
                 "holding the cuBLAS and cuRAND headers of your CUDA version.")
    for whl in wheels.glob("nvidia_*.whl"):  # keep only the headers (the cuBLAS wheel is 419 MB)
        with zipfile.ZipFile(whl) as z:
            for name in z.namelist():
                if "/include/" in name and not name.endswith("/"):
                    dst = cache / "include" / name.split("/include/", 1)[1]
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    dst.write_bytes(z.read(name))
        whl.unlink()
    return [cache / "include"]


def provide_libcuda(cuda_home: Path, work: Path) -> list:
    """flashinfer links every module with -lcuda; give the linker a stub if it finds none."""
    cxx = os.environ.get("CXX", "c++")
    probe = [cxx, "-shared", "-x", "c", "/dev/null", "-o", str(work / "probe.so"),
             f"-L{cuda_home}/lib64", f"-L{cuda_home}/lib64/stubs", "-lcuda"]
    if subprocess.run(probe, capture_output=True).returncode == 0:
        return []
    stub = work / "cuda-stub"
    stub.mkdir(parents=True, exist_ok=True)
    # An empty library is enough: the modules reference no driver symbol directly.
    subprocess.run([cxx, "-shared", "-fPIC", "-Wl,-soname,libcuda.so.1", "-x", "c", "/dev/null",
                    "-o", str(stub / "libcuda.so")], check=True)
    # Debian's gcc links --as-needed, which would drop libcuda.so.1 from NEEDED; a
    # manylinux (upstream) build keeps it, so force it back in.
    return [f"-L{stub}", "-Wl,--no-as-needed", "-lcuda"]


# Families whose generator takes use_fast_build. Upstream's flag reaches only the C++ files
# (cutlass_heuristic.cpp then offers one tile config); the CUTLASS launchers in the .cu
# files test the same FAST_BUILD macro to skip instantiating every other tile, and that is
# where the build time goes, so --fast-build defines it for nvcc as well. The two halves
# agree: the heuristic offers exactly the tile the launchers keep.
FAST_BUILD_FAMILIES = ("fused_moe_90",)
FAST_BUILD_MARKER = "FAST_BUILD"


def add_env_flags(name: str, flags: list) -> None:
    if flags:
        os.environ[name] = " ".join([os.environ.get(name, ""), *map(str, flags)]).strip()


def prepare_env(args, work: Path) -> Path:
    """Set everything flashinfer reads from the environment; must run before importing it."""
    cuda_home = find_cuda_home()
    os.environ["CUDA_HOME"] = str(cuda_home)
    # An explicit arch list is what keeps flashinfer from asking torch.cuda for devices.
    os.environ["FLASHINFER_CUDA_ARCH_LIST"] = " ".join(args.arch)
    # Private workspace: never reuse or clobber the user's ~/.cache/flashinfer JIT builds.
    os.environ["FLASHINFER_WORKSPACE_BASE"] = str(work / "ws")
    # ninja is found on PATH; the interpreter's bin dir has it in a venv.
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    try:
        import ninja  # the PyPI package ships the binary
        os.environ["PATH"] = os.pathsep.join([ninja.BIN_DIR, os.environ["PATH"]])
    except (ImportError, AttributeError):
        pass
    if not shutil.which("ninja"):
        sys.exit("error: ninja not found (pip install ninja)")
    incs = provide_headers(cuda_home, args.extra_include, work / "cuda-headers")
    isystem = [f for d in incs for f in ("-isystem", str(d))]
    add_env_flags("FLASHINFER_EXTRA_CUDAFLAGS", isystem)
    add_env_flags("FLASHINFER_EXTRA_CFLAGS", isystem)
    add_env_flags("FLASHINFER_EXTRA_LDFLAGS", provide_libcuda(cuda_home, work))
    if args.fast_build:
        add_env_flags("FLASHINFER_EXTRA_CUDAFLAGS", ["-DFAST_BUILD"])
    for k in ("FLASHINFER_EXTRA_CUDAFLAGS", "FLASHINFER_EXTRA_LDFLAGS"):
        if os.environ.get(k):
            log(f"{k}={os.environ[k]}")
    return cuda_home


# --------------------------------------------------------------------------- build

def make_spec(uri: str, version: str, fast_build: bool = False):
    """Call the flashinfer generator for ``uri`` (writes generated sources + build.ninja)."""
    import importlib

    import torch
    dtypes = {"f16": torch.float16, "bf16": torch.bfloat16, "e4m3": torch.float8_e4m3fn,
              "e5m2": torch.float8_e5m2, "i32": torch.int32, "i64": torch.int64}
    mod = kernel_uris.parse_uri(uri, version)
    kwargs = {k: dtypes[v] if k.startswith("dtype_") else v for k, v in mod.kwargs.items()}
    if fast_build:
        kwargs["use_fast_build"] = True
    module_name, func = mod.generator.split(":")
    spec = getattr(importlib.import_module(module_name), func)(**kwargs)
    if spec.name != uri:
        raise RuntimeError(f"generator produced {spec.name!r} for {uri!r}")
    # JitSpec.build() only writes build.ninja when it is missing, silently reusing one
    # made with other flags; always rewrite it.
    spec.write_ninja()
    return spec


def read_ninja_log(path: Path) -> list:
    """(start_ms, end_ms, output) of every edge that finished, from a .ninja_log."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines()[1:]:
        parts = line.split("\t")
        if len(parts) == 5 and parts[0].isdigit() and parts[1].isdigit():  # skip a half-written line
            rows.append((int(parts[0]), int(parts[1]), parts[3]))
    return rows


def build(uris: list, args, work: Path, finish) -> None:
    """Build all modules with one ninja run so that -j is shared across modules."""
    specs = {}
    for uri in uris:
        try:
            specs[uri] = make_spec(uri, args.flashinfer_version, args.fast_build)
        except Exception as e:  # e.g. generator assertions for unsupported combos
            finish(uri, ok=False, error=f"generator failed: {type(e).__name__}: {e}")
    if not specs:
        return
    # A fresh run dir means a fresh .ninja_log: ninja then rebuilds every edge (no stale
    # objects) and the log holds only this run's timings. --resume keeps one run dir, so
    # ninja skips the edges its log says finished with the same command.
    if args.resume:
        run_dir = work / "run-resume"
        run_dir.mkdir(parents=True, exist_ok=True)
    else:
        run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=work))
    top = run_dir / "build.ninja"
    top.write_text("".join(f"subninja {s.ninja_path.resolve()}\n" for s in specs.values()))
    targets = {str(s.jit_library_path.resolve()): uri for uri, s in specs.items()}
    log_path = work / "last-build.log"
    cmd = ["ninja", "-f", str(top), "-k", "0", "-j", str(args.jobs), *targets]
    log(f"building {len(specs)} module(s) with ninja -j {args.jobs}; log: {log_path}")
    with open(log_path, "w") as logf:
        # stdout carries only the JSON lines; ninja talks to the log (or stderr with -v).
        proc = subprocess.Popen(cmd, cwd=run_dir, stdout=sys.stderr if args.verbose else logf,
                                stderr=subprocess.STDOUT)
        pending = dict(targets)
        while pending:
            running = proc.poll() is None
            edges = read_ninja_log(run_dir / ".ninja_log")
            for so, uri in list(pending.items()):
                if any(out == so for _, _, out in edges):  # link step finished
                    mine = [(s, e) for s, e, out in edges if out.startswith(str(Path(so).parent) + "/")]
                    secs = (max(e for _, e in mine) - min(s for s, _ in mine)) / 1000
                    finish(uri, ok=True, seconds=secs, built=Path(so))
                    del pending[so]
            if not running:
                break
            time.sleep(2)
        proc.wait()
    for so, uri in pending.items():
        finish(uri, ok=False, error=f"ninja failed (rc={proc.returncode}); see {log_path}")
    if pending and not args.verbose:
        text = log_path.read_text(errors="replace").splitlines()
        first = next((i for i, line in enumerate(text) if line.startswith("FAILED:")), len(text) - 40)
        sys.stderr.write("\n".join(text[max(first, 0):][:200]) + "\n")
    if not args.resume:
        shutil.rmtree(run_dir, ignore_errors=True)


# --------------------------------------------------------------------------- verify / pack

def verify(so: Path, uri: str, version: str = kernel_uris.DEFAULT_VERSION) -> tuple:
    """(ok, note): ELF with every __tvm_ffi_<name> the runtime calls for this family."""
    with open(so, "rb") as f:
        if f.read(4) != b"\x7fELF":
            return False, "not an ELF file"
    if not shutil.which("nm"):
        return None, "nm not found; symbol check skipped"
    r = subprocess.run(["nm", "-D", "--defined-only", str(so)], capture_output=True, text=True)
    if r.returncode != 0:
        return False, f"nm failed: {r.stderr.strip()}"
    have = {line.split()[-1] for line in r.stdout.splitlines() if line.strip()}
    missing = [n for n in kernel_uris.parse_uri(uri, version).exports if f"__tvm_ffi_{n}" not in have]
    return (False, "missing exports: " + " ".join(missing)) if missing else (True, "")


WHEEL_NAME = re.compile(r"(?P<name>flashinfer_jit_cache)-(?P<version>[^-]+)(-\d[^-]*)?"
                        r"-(?P<py>[^-]+)-(?P<abi>[^-]+)-(?P<plat>[^-]+)\.whl")


def pack_wheel(path: Path, modules: dict, release: str = kernel_uris.DEFAULT_VERSION) -> int:
    """Write a wheel laid out like the prebuilt flashinfer_jit_cache; returns its size.

    ``modules`` maps uri -> .so path. The file name fixes version and tags, e.g.
    flashinfer_jit_cache-0.6.3+cu130.sm90a-py3-none-linux_x86_64.whl.
    """
    m = WHEEL_NAME.fullmatch(path.name)
    if not m:
        raise ValueError(f"{path.name!r} is not a flashinfer_jit_cache-<version>-<py>-<abi>-<plat>.whl name")
    version = m["version"]
    if not version.startswith(release):
        # flashinfer refuses a jit cache whose __version__ does not start with its own.
        raise ValueError(f"wheel version {version!r} must start with {release}")
    pkg, info = "flashinfer_jit_cache", f"flashinfer_jit_cache-{version}.dist-info"
    files = {
        f"{pkg}/__init__.py": (
            f'"""Kernel modules for flashinfer {release}, built by '
            'flashinfer_cy tools/build_kernels.py."""\n\nfrom pathlib import Path\n\n'
            "from ._build_meta import __git_version__, __version__  # noqa: F401\n\n\n"
            "def get_jit_cache_dir() -> str:\n"
            '    return str(Path(__file__).parent / "jit_cache")\n').encode(),
        f"{pkg}/_build_meta.py": f'__version__ = "{version}"\n__git_version__ = "unknown"\n'.encode(),
    }
    for uri in sorted(modules):
        files[f"{pkg}/jit_cache/{uri}/{uri}.so"] = Path(modules[uri]).read_bytes()
    tags = [f"{py}-{abi}-{plat}" for py in m["py"].split(".")
            for abi in m["abi"].split(".") for plat in m["plat"].split(".")]
    files[f"{info}/METADATA"] = (f"Metadata-Version: 2.1\nName: flashinfer-jit-cache\nVersion: {version}\n"
                                 "Summary: flashinfer kernel modules built by flashinfer_cy\n").encode()
    files[f"{info}/WHEEL"] = ("Wheel-Version: 1.0\nGenerator: flashinfer_cy build_kernels\n"
                              "Root-Is-Purelib: false\n" + "".join(f"Tag: {t}\n" for t in tags)).encode()
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}\n")
    record.append(f"{info}/RECORD,,\n")
    files[f"{info}/RECORD"] = "".join(record).encode()
    # Fixed timestamps and order: the same inputs give the same bytes.
    stamp = time.gmtime(int(os.environ.get("SOURCE_DATE_EPOCH", 315532800)))[:6]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            zi = zipfile.ZipInfo(name, stamp)
            zi.external_attr = (0o100755 if name.endswith(".so") else 0o100644) << 16
            zi.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(zi, data)
    os.replace(tmp, path)
    return path.stat().st_size


# --------------------------------------------------------------------------- main

def default_jobs() -> int:
    # One job per core and per 4 GB available. (Upstream's jit-cache build allows 8 GB
    # a job, sized for its heaviest MoE/GEMM units; the attention, norm and gdn units
    # here peak far lower.)
    try:
        with open("/proc/meminfo") as f:
            avail_gb = next(int(line.split()[1]) for line in f if line.startswith("MemAvailable")) // 2**20
    except (OSError, StopIteration):
        avail_gb = 8
    return max(1, min(os.cpu_count() or 1, avail_gb // 4))


# Which FlashInfer release the modules in --out are: flashinfer_cy reads it when
# FLASHINFER_CY_KERNEL_DIR points there (flashinfer_cy/artifacts/resolve.py VERSION_MARKER)
# and checks each Binding against that release's ABI; a dir without it is refused.
VERSION_MARKER = "flashinfer_version.txt"


def claim_out_dir(out: Path, version: str) -> None:
    """Mark --out as holding flashinfer ``version`` modules, before any is written;
    refuse a dir marked for another release (one dir is one release)."""
    marker = out / VERSION_MARKER
    if marker.is_file():
        have = marker.read_text(encoding="utf-8").strip()
        if have != version:
            sys.exit(f"error: {out} holds flashinfer {have} modules ({marker}); this build is "
                     f"for {version} (--flashinfer-version): use another --out")
        return
    out.mkdir(parents=True, exist_ok=True)
    tmp = marker.with_suffix(".tmp")
    tmp.write_text(version + "\n", encoding="utf-8")
    os.replace(tmp, marker)


def known_release(version: str) -> str:
    """argparse type of --flashinfer-version: a release tools/kernel_uris.py describes."""
    try:
        return kernel_uris.release(version).version
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def flashinfer_sources(src: Path, work: Path) -> Path:
    """The sys.path entry holding ``flashinfer/`` of ``src``: a folder as it is, a wheel
    unpacked once under the work dir (the generators read csrc and headers from files)."""
    if src.is_dir():
        if not (src / "flashinfer" / "__init__.py").is_file():
            sys.exit(f"error: --flashinfer-src {src} has no flashinfer/__init__.py")
        return src.resolve()
    if not (src.is_file() and src.name.startswith("flashinfer_python-") and src.suffix == ".whl"):
        sys.exit(f"error: --flashinfer-src {src} is neither a folder nor a flashinfer_python-*.whl")
    digest = hashlib.sha256()
    with open(src, "rb") as f:  # ~100 MB: streamed, not read whole (file_digest is 3.11+)
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    digest = digest.hexdigest()
    dest = work / "flashinfer-src" / digest[:16]
    if not (dest / ".complete").is_file():
        shutil.rmtree(dest, ignore_errors=True)
        with zipfile.ZipFile(src) as z:
            z.extractall(dest)  # pip's own wheel from PyPI: the same trust as installing it
        (dest / ".complete").write_text(src.name + "\n")
    return dest


def update_status(path: Path, uri: str, rec: dict) -> None:
    lines = [ln for ln in (path.read_text().splitlines() if path.exists() else [])
             if ln.split(" ", 1)[0] != uri]
    lines.append(f"{uri} {rec['ok']} {rec['seconds']}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="presets: " + ", ".join(
                                    f"@{k} ({len(v)})" for k, v in kernel_uris.PRESETS.items())
                                + f" (for {kernel_uris.DEFAULT_VERSION}; --list shows another release's)"
                                + "; @built = every module already in --out")
    p.add_argument("modules", nargs="+", metavar="URI|@preset")
    p.add_argument("--arch", default="9.0a", metavar="ARCHS", type=lambda s: s.replace(",", " ").split(),
                   help="CUDA archs, e.g. '9.0a' or '9.0a,10.0a' (FLASHINFER_CUDA_ARCH_LIST; "
                        "fa3/gdn modules are sm_90a whatever this says). Default 9.0a")
    p.add_argument("--flashinfer-version", default=kernel_uris.DEFAULT_VERSION, metavar="X.Y.Z",
                   type=known_release, help="the release to build: its URIs, presets and sources; written to "
                   f"<out>/{VERSION_MARKER} (default %(default)s; known: {', '.join(kernel_uris.RELEASES)})")
    p.add_argument("--flashinfer-src", type=Path, metavar="DIR|WHL",
                   help="take flashinfer from this flashinfer-python wheel (or the folder holding its unpacked "
                        "flashinfer/) instead of the installed one")
    p.add_argument("--out", type=Path, default=Path(".kernels"), metavar="DIR", help="output dir <out>/<uri>/<uri>.so")
    p.add_argument("--wheel", type=Path, metavar="PATH.whl", help="also pack the modules as a flashinfer_jit_cache wheel")
    p.add_argument("-j", "--jobs", type=int, metavar="N", default=default_jobs(), help="parallel compile jobs (default %(default)s)")
    p.add_argument("--skip-existing", action="store_true", help="keep modules already in --out")
    p.add_argument("--resume", action="store_true",
                   help="keep the objects and .ninja_log of an interrupted build in --work-dir "
                        "and continue it (for modules too big for one sitting: fused_moe_90)")
    p.add_argument("--no-build", action="store_true", help="only verify/pack what is in --out (needs no flashinfer)")
    p.add_argument("--verify", action="store_true", help="check ELF + expected __tvm_ffi_* exports (nm -D)")
    p.add_argument("--extra-include", action="append", default=[], metavar="DIR",
                   help="dir with cublasLt.h/curand_kernel.h if the toolkit lacks them")
    p.add_argument("--work-dir", type=Path, default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                   / "flashinfer_cy" / "build_kernels", metavar="DIR", help="private build workspace (default %(default)s)")
    p.add_argument("--status-file", type=Path, metavar="FILE", help="keep a 'uri ok seconds' line per module here")
    p.add_argument("--fast-build", action="store_true",
                   help="fused MoE only: build FlashInfer's FAST_BUILD variant, which compiles one CUTLASS "
                        "tile (128x128x128, cluster 1x1x1) of the 154 generated units (docs/moe-build.md)")
    p.add_argument("--list", action="store_true", help="print the expanded URIs and exit")
    p.add_argument("-v", "--verbose", action="store_true", help="stream ninja output to stderr")
    args = p.parse_args(argv)
    for a in args.arch:
        if not re.fullmatch(r"\d+\.\d+[af]?", a):
            p.error(f"bad --arch entry {a!r} (want e.g. 9.0a)")

    names = [n for n in args.modules if n != "@built"]
    if "@built" in args.modules:
        names += sorted(d.name for d in args.out.glob("*") if (d / f"{d.name}.so").is_file())
    try:
        uris = kernel_uris.expand(names, args.flashinfer_version)
    except ValueError as e:
        p.error(str(e))
    if args.fast_build:
        slow = [u for u in uris if kernel_uris.parse_uri(u, args.flashinfer_version).family.name not in FAST_BUILD_FAMILIES]
        if slow:
            p.error(f"--fast-build applies to {', '.join(FAST_BUILD_FAMILIES)} only, not {' '.join(slow)} "
                    "(build those in a separate run: the flag reaches every nvcc command of a run)")
    if args.list:
        print("\n".join(uris))
        return 0

    if not args.no_build:  # --no-build only reads --out: it neither writes nor removes the marker
        claim_out_dir(args.out, args.flashinfer_version)
    results = {}

    def finish(uri, ok, seconds=0.0, built=None, error=None, skipped=False):
        dst = args.out / uri / f"{uri}.so"
        if built is not None:  # copy atomically: the runtime may be reading --out
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(built, dst.with_suffix(".so.tmp"))
            os.replace(dst.with_suffix(".so.tmp"), dst)
            # A FAST_BUILD module has the same exports and URI but one tile config: say so
            # next to it (and remove a stale note when a full build replaces it).
            marker = dst.parent / FAST_BUILD_MARKER
            if args.fast_build:
                marker.write_text("built with -DFAST_BUILD (tools/build_kernels.py --fast-build)\n")
            else:
                marker.unlink(missing_ok=True)
        rec = {"uri": uri, "ok": ok, "seconds": round(seconds, 1),
               "bytes": dst.stat().st_size if ok else None}
        if (dst.parent / FAST_BUILD_MARKER).is_file():
            rec["fast_build"] = True
        if skipped:
            rec["skipped"] = True
        if ok and args.verify:
            rec["verified"], note = verify(dst, uri, args.flashinfer_version)
            rec["ok"] = rec["verified"] is not False
            error = note or error
        if error:
            rec["error"] = error
        results[uri] = rec
        emit(rec)
        if args.status_file:
            update_status(args.status_file, uri, rec)

    todo = []
    for uri in uris:
        present = (args.out / uri / f"{uri}.so").is_file()
        # a FAST_BUILD module is not the full one asked for (nor the other way round)
        same_kind = (args.out / uri / FAST_BUILD_MARKER).is_file() == args.fast_build
        if args.no_build or (args.skip_existing and present and same_kind):
            finish(uri, ok=present, skipped=True, error=None if present else f"not found in {args.out}")
        else:
            todo.append(uri)
    if todo:
        args.work_dir.mkdir(parents=True, exist_ok=True)
        src = args.flashinfer_src and flashinfer_sources(args.flashinfer_src, args.work_dir.resolve())
        prepare_env(args, args.work_dir.resolve())
        # torch warns when numpy is absent; the generators do not need numpy.
        warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
        if src:
            sys.path.insert(0, str(src))
        import flashinfer  # only now: it reads the environment set above at import
        if not flashinfer.__version__.startswith(args.flashinfer_version):
            sys.exit(f"error: flashinfer {flashinfer.__version__} found at {Path(flashinfer.__file__).parent}; "
                     f"these URIs are for {args.flashinfer_version}: install flashinfer-python=="
                     f"{args.flashinfer_version} (--no-deps) in this interpreter or pass --flashinfer-src")
        build(todo, args, args.work_dir.resolve(), finish)

    failed = [u for u in uris if not results[u]["ok"]]
    if args.wheel:
        if failed:
            log(f"not writing {args.wheel}: {len(failed)} module(s) failed")
        else:
            size = pack_wheel(args.wheel, {u: args.out / u / f"{u}.so" for u in uris}, args.flashinfer_version)
            emit({"wheel": str(args.wheel), "modules": len(uris), "bytes": size})
    if failed:
        log(f"{len(failed)} of {len(uris)} module(s) failed: {' '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
