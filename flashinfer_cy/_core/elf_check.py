"""Is a kernel module file a whole ELF shared object? Asked before dlopen: the system loader
maps a truncated file (a half-copied or half-downloaded module) and then touches pages past
its end, which kills the process with SIGBUS instead of returning an error.

Only what the loader maps and reads is checked: the ELF header, the program and section
header tables, and every PT_LOAD segment's file bytes, all inside the file. The layout is
the System V ABI's (Elf64_Ehdr / Elf64_Phdr / Elf64_Shdr); the stdlib's struct reads it.
"""

from __future__ import annotations

import os
import struct

_ELF_MAGIC = b"\x7fELF"
_ELFCLASS64 = 2
_ENDIAN = {1: "<", 2: ">"}          # EI_DATA: ELFDATA2LSB, ELFDATA2MSB
_ET_DYN = 3
_PT_LOAD = 1
_EHDR_SIZE = 64
# e_type e_machine e_version e_entry e_phoff e_shoff e_flags e_ehsize e_phentsize e_phnum
# e_shentsize e_shnum e_shstrndx, after the 16 identification bytes
_EHDR = "HHIQQQIHHHHHH"
_PHDR = "IIQQQQQQ"                  # p_type p_flags p_offset p_vaddr p_paddr p_filesz ...
_PHDR_SIZE = 56
_SHDR_SIZE = 64


def elf_problem(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` is not a complete 64-bit ELF shared object, or None when it is."""
    if not isinstance(path, (str, os.PathLike)):  # open(1) would take over stdout's fd
        raise TypeError(f"path: expected a file path, got {type(path).__name__} {path!r}")
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(_EHDR_SIZE)
            if len(head) < _EHDR_SIZE or head[:4] != _ELF_MAGIC:
                return "it does not start with a 64-byte ELF header"
            if head[4] != _ELFCLASS64 or head[5] not in _ENDIAN:
                return f"it is not a 64-bit ELF file (class {head[4]}, data {head[5]})"
            end = _ENDIAN[head[5]]
            (e_type, _, _, _, phoff, shoff, _, _, phentsize, phnum, shentsize, shnum,
             _) = struct.unpack_from(end + _EHDR, head, 16)
            if e_type != _ET_DYN:
                return f"it is not a shared object (ELF type {e_type})"
            if phnum == 0 or phentsize < _PHDR_SIZE:
                return "it has no program headers (nothing the loader could map)"
            problem = (_outside("the program header table", phoff, phentsize * phnum, size)
                       or (_outside("the section header table", shoff, shentsize * shnum,
                                    size) if shoff else None))
            if problem:
                return problem
            f.seek(phoff)
            table = f.read(phentsize * phnum)
    except OSError as exc:
        return f"it cannot be read ({exc.strerror or exc})"
    for i in range(phnum):
        p_type, _, offset, _, _, filesz, _, _ = struct.unpack_from(end + _PHDR, table,
                                                                   i * phentsize)
        if p_type == _PT_LOAD:
            problem = _outside(f"loadable segment #{i}", offset, filesz, size)
            if problem:
                return problem
    return None


def _outside(what: str, offset: int, length: int, size: int) -> str | None:
    if offset + length > size:
        return (f"{what} (bytes {offset}..{offset + length}) lies past the end of the "
                f"{size}-byte file")
    return None
