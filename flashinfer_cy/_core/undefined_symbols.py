"""The undefined functions a kernel module references, read from its dynamic symbol table.

Used only when a module fails to load with RTLD_NOW (runtime._load): the loader then loads
it with RTLD_LAZY and asks the dynamic linker about each of these names. pyelftools reads
the file; it is imported here, so a module that loads normally never imports it.
"""

from __future__ import annotations

import os

# Undefined references the linker may bind lazily (through the PLT): functions, and NOTYPE,
# which is what an object file's undefined references stay when no library seen at link time
# defines them. FlashInfer's missing template instantiations and libtvm_ffi's TVMFFI* calls
# (modules are not linked against it) are NOTYPE. OBJECT/TLS references are bound at load
# even under RTLD_LAZY, so a missing one still fails there.
_LAZY_TYPES = ("STT_FUNC", "STT_NOTYPE")


def undefined_functions(path: str | os.PathLike[str]) -> list[str]:
    """Names of the undefined, non-weak FUNC/NOTYPE symbols of ``path``'s .dynsym, in table
    order, each once (symbol versions dropped: ``memcpy@GLIBC_2.14`` is ``memcpy``)."""
    from elftools.elf.elffile import ELFFile

    names: dict[str, None] = {}
    with open(path, "rb") as f:
        dynsym = ELFFile(f).get_section_by_name(".dynsym")
        if dynsym is None:
            return []
        for sym in dynsym.iter_symbols():
            if (sym.name and sym["st_shndx"] == "SHN_UNDEF"
                    and sym["st_info"]["bind"] != "STB_WEAK"
                    and sym["st_info"]["type"] in _LAZY_TYPES):
                names[sym.name] = None
    return list(names)
