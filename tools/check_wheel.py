#!/usr/bin/env python3
"""Check built wheels for what must never be in them: libtvm_ffi / libcudart (dlopen'd at
run time from apache-tvm-ffi and the CUDA runtime, never bundled or linked).

    python tools/check_wheel.py dist/*.whl       # or a directory of wheels

Fails (exit 1) when a wheel
  * carries a grafted library (``*.libs/`` -- what ``auditwheel repair`` adds for a NEEDED
    library outside the manylinux policy), or any shared object besides our extensions;
  * has an extension whose ELF ``DT_NEEDED`` names anything but the C library (libc, and
    libdl/libpthread on glibc < 2.34, where dlopen still lived in libdl);
  * lacks the typing files (``py.typed`` and one ``.pyi`` per extension).

Pure standard library (runs as cibuildwheel's repair step, inside the manylinux image,
with whatever Python is first on PATH there).
"""

from __future__ import annotations

import struct
import sys
import zipfile
from pathlib import Path, PurePosixPath

ALLOWED_NEEDED = {"libc.so.6", "libdl.so.2", "libpthread.so.0"}
PACKAGE = "flashinfer_cy"

_DT_NEEDED = 1
_DT_STRTAB = 5
_PT_LOAD = 1
_PT_DYNAMIC = 2


def elf_needed(data: bytes) -> list[str]:
    """The DT_NEEDED entries of a 64-bit little-endian ELF shared object (x86_64, aarch64)."""
    if data[:4] != b"\x7fELF":
        raise ValueError("not an ELF file")
    if data[4] != 2 or data[5] != 1:
        raise ValueError("not a 64-bit little-endian ELF file")
    e_phoff, = struct.unpack_from("<Q", data, 0x20)
    e_phentsize, e_phnum = struct.unpack_from("<HH", data, 0x36)
    loads: list[tuple[int, int, int]] = []  # (vaddr, offset, filesz)
    dynamic: tuple[int, int] | None = None  # (offset, size)
    for i in range(e_phnum):
        off = e_phoff + i * e_phentsize
        p_type, _flags, p_offset, p_vaddr, _paddr, p_filesz = struct.unpack_from(
            "<IIQQQQ", data, off)
        if p_type == _PT_LOAD:
            loads.append((p_vaddr, p_offset, p_filesz))
        elif p_type == _PT_DYNAMIC:
            dynamic = (p_offset, p_filesz)
    if dynamic is None:
        return []
    entries: list[tuple[int, int]] = []
    for off in range(dynamic[0], dynamic[0] + dynamic[1], 16):
        tag, val = struct.unpack_from("<qQ", data, off)
        if tag == 0:
            break
        entries.append((tag, val))
    strtab_vaddr = next((v for t, v in entries if t == _DT_STRTAB), None)
    if strtab_vaddr is None:
        raise ValueError("dynamic section without DT_STRTAB")
    strtab = next((o + strtab_vaddr - va for va, o, sz in loads if va <= strtab_vaddr < va + sz),
                  None)
    if strtab is None:
        raise ValueError("DT_STRTAB outside every PT_LOAD segment")
    out = []
    for tag, val in entries:
        if tag == _DT_NEEDED:
            end = data.index(b"\0", strtab + val)
            out.append(data[strtab + val:end].decode())
    return out


def check_wheel(path: Path) -> list[str]:
    problems: list[str] = []
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        extensions = []
        for name in names:
            p = PurePosixPath(name)
            if any(part.endswith(".libs") for part in p.parts[:-1]):
                problems.append(f"{name}: a grafted library (auditwheel repair bundled it)")
                continue
            if ".so" not in p.suffixes:
                continue
            if p.parts[0] != PACKAGE:
                problems.append(f"{name}: a shared object outside the {PACKAGE} package")
                continue
            extensions.append(name)
            needed = elf_needed(zf.read(name))
            extra = sorted(set(needed) - ALLOWED_NEEDED)
            if extra:
                problems.append(f"{name}: links {extra} (only {sorted(ALLOWED_NEEDED)} allowed; "
                                f"libtvm_ffi and libcudart are dlopen'd at run time)")
        if not extensions:
            problems.append("no compiled extensions in the wheel")
        if f"{PACKAGE}/py.typed" not in names:
            problems.append(f"{PACKAGE}/py.typed is missing")
        for ext in extensions:
            stub = str(PurePosixPath(ext).parent / (PurePosixPath(ext).name.split(".")[0] + ".pyi"))
            if stub not in names:
                problems.append(f"{ext}: no type stub {stub}")
    return problems


def main(argv: list[str]) -> int:
    wheels: list[Path] = []
    for arg in argv or ["dist"]:
        p = Path(arg)
        wheels.extend(sorted(p.glob("*.whl")) if p.is_dir() else [p])
    if not wheels:
        print("check_wheel: no wheels given/found", file=sys.stderr)
        return 1
    failed = False
    for whl in wheels:
        problems = check_wheel(whl)
        for problem in problems:
            print(f"{whl.name}: {problem}", file=sys.stderr)
        if problems:
            failed = True
        else:
            print(f"{whl.name}: OK (nothing grafted; extensions link only the C library; "
                  f"stubs present)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
