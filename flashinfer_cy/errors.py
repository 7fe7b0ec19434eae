"""The exception hierarchy of flashinfer_cy.

Everything the library raises on its own behalf derives from :class:`FlashInferError`.
Errors raised *inside* a kernel module (TVM-FFI "kinds") become :class:`KernelError`
subclasses that also derive from the matching builtin, so ``except TypeError`` keeps
working for callers that do not know about this library.

Argument validation done in Python/Cython before any kernel is touched raises plain
``TypeError`` / ``ValueError`` naming the argument and what was expected.
"""

from __future__ import annotations


class FlashInferError(Exception):
    """Base class of every error this library raises on its own behalf."""


class KernelError(FlashInferError):
    """An error raised inside a TVM-FFI kernel module.

    ``kind`` is the TVM-FFI error kind (``"TypeError"``, ``"InternalError"``...),
    ``message`` the kernel's message and ``backtrace`` the C++ backtrace, most
    recent call last (may be empty).
    """

    def __init__(self, kind: str, message: str, backtrace: str = "", symbol: str = ""):
        self.kind = kind
        self.message = message
        self.backtrace = backtrace
        self.symbol = symbol
        where = f" in {symbol}" if symbol else ""
        super().__init__(f"{kind}{where}: {message}")

    def __reduce__(self):
        return (type(self), (self.kind, self.message, self.backtrace, self.symbol))


class KernelTypeError(KernelError, TypeError):
    pass


class KernelValueError(KernelError, ValueError):
    pass


class KernelIndexError(KernelError, IndexError):
    pass


class KernelNotImplementedError(KernelError, NotImplementedError):
    pass


class KernelRuntimeError(KernelError, RuntimeError):
    """Default for kinds without a closer builtin (``InternalError``, ``RuntimeError``...)."""


_KIND_TO_CLASS = {
    "TypeError": KernelTypeError,
    "ValueError": KernelValueError,
    "IndexError": KernelIndexError,
    "KeyError": KernelIndexError,
    "NotImplementedError": KernelNotImplementedError,
}


def kernel_error(kind: str, message: str, backtrace: str = "", symbol: str = "") -> KernelError:
    """Build the exception for a decoded TVM-FFI error."""
    return _KIND_TO_CLASS.get(kind, KernelRuntimeError)(kind, message, backtrace, symbol)


class RuntimeLibraryError(FlashInferError, OSError):
    """libtvm_ffi could not be found or loaded, or has an unsupported version."""


class KernelNotFoundError(FlashInferError, FileNotFoundError):
    """A kernel module (``<uri>.so``) is not available from any configured source."""


class SymbolNotFoundError(FlashInferError, AttributeError):
    """A kernel module does not export the expected ``__tvm_ffi_<name>`` symbol."""


class UnsupportedDeviceError(FlashInferError, RuntimeError):
    """The kernel cannot run on this GPU (e.g. an SM90-only kernel on another arch)."""


class KernelVersionError(FlashInferError, RuntimeError):
    """A kernel module is from a FlashInfer version whose argument list for an export differs
    from the Binding (or lacks the export), or from an unknown version or one without an
    extracted ABI. Raised when a Binding first resolves its export, never after a call: a
    mismatched argument list would corrupt memory. Names the module, both versions, the
    supported ones and how to get matching modules (docs/abi-versions.md)."""


class CudaError(FlashInferError, RuntimeError):
    """A CUDA driver/runtime call made by this library failed."""


class PlanMismatchError(FlashInferError, ValueError):
    """``run()`` arguments do not match the plan they are run against."""


class StreamCaptureError(FlashInferError, RuntimeError):
    """A host-side step that cannot be captured into a CUDA graph (``plan()``: it fills
    page-locked memory on the host and enqueues a copy) was called while a capture was
    active. Plan before capturing; only ``run()`` belongs inside the graph."""


class ArtifactError(FlashInferError):
    """Base class for kernel-artifact (wheel download, cache, extraction) problems."""


class UnsupportedPlatformError(ArtifactError):
    """No pinned kernel wheel exists for this CUDA version / machine architecture."""


class DownloadError(ArtifactError, OSError):
    """A download failed for good (HTTP error, timeout, reset) after the allowed retries."""


class ChecksumMismatchError(ArtifactError, ValueError):
    """Bytes did not hash to the pinned / recorded SHA256; they were discarded, never used."""

    def __init__(self, what: str, expected: str, actual: str):
        self.what = what
        self.expected = expected
        self.actual = actual
        super().__init__(f"SHA256 mismatch for {what}: expected {expected}, got {actual}")

    def __reduce__(self):
        return (type(self), (self.what, self.expected, self.actual))


class UnsafeMemberError(ArtifactError, ValueError):
    """A wheel member is unsafe to extract (absolute path, ``..``, symlink, oversized...)."""


class CorruptWheelError(ArtifactError):
    """A wheel's zip structure or compressed data is broken (bad deflate stream, bad CRC,
    unknown compression method...). Names the wheel and the member."""


class CacheAccessError(ArtifactError, OSError):
    """A file of the kernel cache could not be read or written (permissions, read-only file
    system, disk full, a directory where a file belongs...). Names the path; never retried."""


class WheelIndexError(ArtifactError):
    """FlashInfer's wheel index cannot name a wheel we can trust for the release asked for
    (clear-text index, contradictory hashes, an oversized page)."""


class SettingsError(ArtifactError, ValueError):
    """An environment variable of the artifact layer has a value it cannot use (names the
    variable)."""


class PlanNotReadyError(FlashInferError, RuntimeError):
    """``run()`` / ``prepare()`` was called on a wrapper that has no plan yet."""
