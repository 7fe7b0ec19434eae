# Stub for the compiled module flashinfer_cy/_core/runtime.pyx (keep in step with it;
# tests/cpu/test_stubs.py checks the names both ways).
"""Loading libtvm_ffi and kernel modules, calling their exports with the GIL released,
decoding the errors they raise, and owning the objects they return."""

import os
from collections.abc import Sequence
from typing import Any, Final, TypedDict, type_check_only

from flashinfer_cy._typing import StreamLike

SUPPORTED_TVM_FFI_SERIES: Final[tuple[int, int]]

@type_check_only
class RuntimeInfo(TypedDict):
    tvm_ffi_path: str  # a path, or "<already loaded>" when another copy was reused
    tvm_ffi_version: tuple[int, int, int]
    cudart_path: str | None  # None when libcudart.so.13 could not be loaded
    cudart_error: str | None

def runtime_info() -> RuntimeInfo:
    """Where libtvm_ffi and libcudart came from, and the runtime's version (loads them)."""

class Object:
    """An owned reference to a TVM-FFI object (a kernel's result: a plan's Array, a
    String...). Released exactly once, when this wrapper dies."""

    # Kernel results only: calling the class (or Array, Module, Function) raises TypeError
    # (a cdef class __init__ reports (*args, **kwargs) at run time).
    def __init__(self, *args: object, **kwargs: object) -> None: ...
    @property
    def type_index(self) -> int: ...
    @property
    def refcount(self) -> int:
        """Strong reference count (for leak tests)."""

class Array(Object):
    """``ffi::Array`` result (e.g. plan info): a read-only sequence of plain values."""

    def __len__(self) -> int: ...
    # Elements: None, int, bool, float, str, bytes, (code, bits, lanes), (device_type, id).
    def __getitem__(self, i: int, /) -> Any: ...
    def tolist(self) -> list[Any]: ...

class ModuleObject(Object):
    """An ``ffi::Module`` object a kernel export returned (the fused MoE runner): released
    when this wrapper and every method Function of it are gone."""

    def method(self, name: str) -> Function:
        """Method ``name`` of this object (cached per object; SymbolNotFoundError when the
        object serves none by that name)."""
    @property
    def kind(self) -> str:
        """``ModuleObj::kind()``, e.g. ``"fused_moe_runner"``."""

def int_array(values: Sequence[int]) -> Array:
    """An ``ffi::Array`` of int64 for an ``Array<int64_t>`` argument (at most 32)."""

def env_alloc_live() -> int:
    """Tensors the environment allocator made that are not freed yet (for leak tests)."""

class Module:
    """A dlopen'd kernel module, kept for the life of the process."""

    def __init__(self, *args: object, **kwargs: object) -> None: ...
    @property
    def path(self) -> str: ...
    @property
    def uri(self) -> str: ...
    @property
    def flashinfer_version(self) -> str | None:
        """The FlashInfer release the file was built from (None: unknown)."""
    @property
    def version_from(self) -> str:
        """How that version was learned (marker file, wheel name, setting...)."""
    @property
    def unreachable_symbols(self) -> tuple[str, ...]:
        """Undefined functions left unresolved because its release never calls them
        (flashinfer_cy/abi/unreachable_symbols.py); () when it loaded with RTLD_NOW."""
    def function(self, name: str) -> Function:
        """The export ``__tvm_ffi_<name>`` (cached). Raises SymbolNotFoundError."""

class Function:
    """One ``__tvm_ffi_<name>`` export; calling it is the generic (any-argument) path."""

    def __init__(self, *args: object, **kwargs: object) -> None: ...
    @property
    def name(self) -> str: ...
    @property
    def module(self) -> Module | None:
        """The module of an export; None for a method of a module object."""
    @property
    def is_method(self) -> bool:
        """Whether this is a method of a module object (ModuleObject.method)."""
    @property
    def serialized(self) -> bool:
        """Whether calls of this export take turns between threads."""
    def __call__(self, *args: Any, stream: StreamLike | None = None) -> Any: ...

def load_module_path(path: str | os.PathLike[str], uri: str | None = None,
                     flashinfer_version: str | None = None) -> Module:
    """dlopen a kernel module file (RTLD_NOW | RTLD_LOCAL), once per path.
    ``flashinfer_version``: the FlashInfer release it was built from (else
    ``$FLASHINFER_CY_FLASHINFER_VERSION``, else unknown: Bindings refuse to call it)."""

def serialize_calls(uri: str, symbol: str) -> None:
    """Calls of export ``symbol`` of module ``uri`` take turns between threads (a per-export
    lock; the GIL stays released), now and for Functions loaded later, however the module
    was loaded (a module loaded by path alone is matched by its file name)."""

def load_module(uri: str) -> Module:
    """The kernel module for ``uri``, located through flashinfer_cy.artifacts (its FlashInfer
    version: the source's, see flashinfer_cy.artifacts.locate_module_source)."""

def device_compute_capability_major(device: int) -> int: ...
def device_multiprocessor_count(device: int) -> int: ...
def device_max_shared_memory_per_block_optin(device: int) -> int: ...
def device_max_shared_memory_per_multiprocessor(device: int) -> int: ...

# Internal, used by flashinfer_cy.streams and flashinfer_cy.cli.
def _tvm_ffi_candidates() -> list[str]: ...
def _load_cudart() -> None: ...
def _env_set_stream(device_type: int, device_id: int, handle: int) -> int: ...
def _env_get_stream(device_type: int, device_id: int) -> int: ...
