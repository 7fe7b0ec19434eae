# Stub for the compiled module flashinfer_cy/_core/binding.pyx.
"""Table-driven kernel entry points."""

from typing import Any

from flashinfer_cy._core.runtime import Function, ModuleObject
from flashinfer_cy._typing import DTypeLike, StreamLike

class Binding:
    """One kernel export: module URI, symbol, and its arguments in ABI order.

    ``signature`` is space-separated ``name:KIND`` items; KIND is one of T (device tensor),
    T? (optional device tensor), H (host tensor), I (int), F (float), B (bool), D (dtype),
    A (object handle); ``T!`` / ``T?!`` mark a tensor the kernel writes (a read-only one is
    refused). ``device`` names the T argument whose device and producer stream the kernel
    runs on (default: the first T argument). ``serialize``: calls take turns between
    threads (for launchers that are not thread-safe; see runtime.serialize_calls).
    ``layouts``: another release's argument list as a rearrangement of this one
    (flashinfer_cy/abi/layouts.py), used when the module is of that release.
    ``written_for``: the release whose declaration ``signature`` is (default: the tables'
    release); such a line calls modules of that release only. ``aliases``: other names
    ``PreparedCall.set``/``repoint`` accept for an argument (``{alias: own name}``).
    ``env_alloc``: the export allocates device memory through TVM-FFI's environment
    allocator; each call installs flashinfer_cy's (cudaMallocAsync on the call's stream)
    for its duration."""

    def __init__(self, uri: str, symbol: str, signature: str, device: str | None = None,
                 serialize: bool = False, per_launch: tuple[str, ...] = (),
                 layouts: dict[str, str] | None = None, written_for: str | None = None,
                 aliases: dict[str, str] | None = None,
                 method_of: str | None = None, env_alloc: bool = False) -> None: ...
    @property
    def method_of(self) -> str | None:
        """For a method line: the export whose returned module object serves it."""
    @property
    def env_alloc(self) -> bool:
        """Whether each call installs the stream-ordered environment allocator (exports
        that allocate device memory themselves through ``alloc_tensor``)."""
    def method(self, obj: ModuleObject, made_by: Binding) -> Function:
        """This method line's Function on ``obj`` (returned by ``made_by``, the called
        Binding of export ``method_of``), its release checked once."""
    @property
    def uri(self) -> str: ...
    @property
    def symbol(self) -> str: ...
    @property
    def signature(self) -> str: ...
    @property
    def names(self) -> tuple[str, ...]: ...
    @property
    def nargs(self) -> int: ...
    @property
    def layouts(self) -> dict[str, str]:
        """``{release: argument list}`` of releases called through a layout."""
    @property
    def written_for(self) -> str:
        """The FlashInfer release whose C++ declaration ``signature`` is."""
    @property
    def release(self) -> str | None:
        """The loaded module's FlashInfer release (None before loading or if unknown)."""
    @property
    def aliases(self) -> dict[str, str]:
        """``{alias: own argument name}`` for prepared launches."""
    def arg_index(self, name: str) -> int:
        """The index of argument ``name`` or of the one an alias names; -1 if none."""
    @property
    def module_signature(self) -> str | None:
        """The argument list the loaded module is called with (None before loading)."""
    @property
    def launch_scalars(self) -> tuple[str, ...]:
        """The scalar arguments a prepared launch may change (``per_launch``)."""
    @property
    def writes(self) -> tuple[str, ...]:
        """The names of the arguments the kernel writes (marked ``!``)."""
    def load(self) -> Function:
        """Resolve the module and symbol now (normally done on first call), checking the
        module's FlashInfer version (KernelVersionError)."""
    def __call__(self, *args: Any, stream: StreamLike | None = None,
                 method: Function | None = None) -> Any:
        """Call with positional arguments packed by the declared kinds (``method``: a
        method line's Function on one object)."""

class Recorder:
    """What ``Binding.invoke`` hands a checked frame to while ``prepare()`` captures."""

class DataType:
    """A dtype argument for the generic call path: ``DataType("float16")``."""

    name: DTypeLike
    def __init__(self, name: DTypeLike) -> None: ...

class Device:
    """A device argument for the generic call path: ``Device("cuda", 0)``."""

    device_type: int
    device_id: int
    def __init__(self, device_type: str | int, device_id: int = 0) -> None: ...

class OpaquePtr:
    """A ``void*`` argument for the generic call path."""

    value: int
    def __init__(self, value: int) -> None: ...

def call_generic(fn: Function, args: tuple[Any, ...], stream: StreamLike | None) -> Any:
    """Pack arbitrary Python values and call ``fn`` (slower than a Binding)."""
