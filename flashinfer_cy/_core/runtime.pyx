# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Loading libtvm_ffi and kernel modules, calling their exports with the GIL released,
decoding the errors they raise, and owning the objects they return.

Loading rules (../docs in the repo README):
  * exactly one libtvm_ffi per process: reuse one already loaded (tvm_ffi or flashinfer
    imported first), else dlopen the one inside the installed apache-tvm-ffi distribution;
    RTLD_GLOBAL, because kernel modules are not linked against it;
  * kernel modules: RTLD_NOW | RTLD_LOCAL, so a missing symbol fails at load, not mid-call;
    never dlclose'd (objects they create carry deleters that live in them). Where RTLD_NOW
    fails on an undefined symbol, RTLD_LAZY is accepted only when every function that does
    not resolve is listed as never called for the module's release (_load_lazily);
"""

import os
import sys
import threading

from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.exc cimport PyErr_Occurred
from cpython.pythread cimport (PyThread_allocate_lock, PyThread_free_lock,
                               PyThread_acquire_lock, PyThread_release_lock, WAIT_LOCK)
from libc.stdint cimport int32_t, int64_t, uint64_t
from libc.string cimport memset

from flashinfer_cy._abi.dlpack cimport kDLCUDA, kDLCPU, DLDataType, DLTensor, DLManagedTensorVersioned
from flashinfer_cy._abi.tvm_ffi cimport (
    TVMFFIAny, TVMFFIObject, TVMFFIObjectHandle, TVMFFIErrorCell, TVMFFISeqCell,
    TVMFFIByteArray, TVMFFISafeCallType, TVMFFIVersion, TVMFFIShapeCell, TVMFFIFunctionCell,
    kTVMFFIFunction, kTVMFFIModule, kTVMFFIRawStr, kTVMFFINone, kTVMFFIInt, kTVMFFIBool, kTVMFFIFloat, kTVMFFIOpaquePtr, kTVMFFIDataType,
    kTVMFFIDevice, kTVMFFISmallStr, kTVMFFISmallBytes, kTVMFFIStaticObjectBegin, kTVMFFIStr,
    kTVMFFIBytes, kTVMFFIArray, kTVMFFIShape)
from flashinfer_cy._abi.ffi_call cimport fcy_call_self, FCY_ERR_SET_DEVICE
from flashinfer_cy._abi.env_alloc cimport (FcySetAllocator, fcy_call_env_alloc,
                                           fcy_env_alloc_live, fcy_env_alloc_rt)
from flashinfer_cy._core.tensor cimport MAX_DEVICES

from flashinfer_cy import errors as _errors
from flashinfer_cy._core.elf_check import elf_problem as _elf_problem

cdef extern from "<dlfcn.h>" nogil:
    void* dlopen(const char* filename, int flags)
    void* dlsym(void* handle, const char* symbol)
    int dlclose(void* handle)
    char* dlerror()
    void* RTLD_DEFAULT
    int RTLD_LAZY
    int RTLD_NOW
    int RTLD_LOCAL
    int RTLD_GLOBAL
    int RTLD_NOLOAD

# The first minor series whose C ABI this module is written against; 0.2 may change it.
SUPPORTED_TVM_FFI_SERIES = (0, 1)

cdef FcyTvmFfi g_ffi
cdef FcyCudart g_cudart
cdef bint g_ffi_ready = False
cdef bint g_cudart_tried = False
cdef void* g_cudart_handle = NULL
cdef void* g_ffi_handle = NULL
cdef bint g_env_alloc_ready = False

_lock = threading.RLock()
_state = {"tvm_ffi_path": None, "tvm_ffi_version": None, "cudart_path": None,
          "cudart_error": None}
_modules = {}
# (module uri, symbol) of exports whose calls must not overlap between threads (see
# serialize_calls); their Function objects hold a lock around every call.
_serialized = set()


def _tvm_ffi_candidates():
    """Where libtvm_ffi.so may be, best first, without importing tvm_ffi's Python package
    (its __init__ imports torch)."""
    override = os.environ.get("FLASHINFER_CY_TVM_FFI_LIB")
    if override:
        return [override]
    out = []
    mod = sys.modules.get("tvm_ffi")  # already imported: share its copy
    if mod is not None and getattr(mod, "__file__", None):
        out.append(os.path.join(os.path.dirname(mod.__file__), "lib", "libtvm_ffi.so"))
    import importlib.util
    spec = importlib.util.find_spec("tvm_ffi")
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            out.append(os.path.join(loc, "lib", "libtvm_ffi.so"))
    if not out:
        import importlib.metadata as md
        try:
            dist = md.distribution("apache-tvm-ffi")
            for f in dist.files or ():
                if str(f).endswith("lib/libtvm_ffi.so"):
                    out.append(str(dist.locate_file(f)))
        except md.PackageNotFoundError:
            pass
    return out


cdef void* _sym(void* handle, const char* name) except NULL:
    cdef void* p = dlsym(handle, name)
    if p == NULL:
        raise _errors.RuntimeLibraryError(
            f"libtvm_ffi at {_state['tvm_ffi_path']} lacks {name.decode()}")
    return p


cdef int _init_ffi() except -1:
    global g_ffi_ready, g_ffi_handle
    cdef void* h = NULL
    cdef TVMFFIVersion v
    cdef bytes bpath
    with _lock:
        if g_ffi_ready:
            return 0
        # A copy already in the process (tvm_ffi / flashinfer imported first) must be reused:
        # kernels resolve TVMFFI* from the global scope, and the stream table is per copy.
        h = dlopen(b"libtvm_ffi.so", RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD)
        path = "<already loaded>"
        if h == NULL:
            tried = []
            for cand in _tvm_ffi_candidates():
                if not os.path.isfile(cand):
                    tried.append(f"{cand} (missing)")
                    continue
                bpath = os.fsencode(cand)
                h = dlopen(bpath, RTLD_NOW | RTLD_GLOBAL)
                if h != NULL:
                    path = cand
                    break
                tried.append(f"{cand} ({dlerror().decode(errors='replace')})")
            if h == NULL:
                raise _errors.RuntimeLibraryError(
                    "libtvm_ffi.so not found: install apache-tvm-ffi (a dependency of "
                    "flashinfer_cy) or set FLASHINFER_CY_TVM_FFI_LIB; tried: "
                    + ("; ".join(tried) or "nothing (apache-tvm-ffi is not installed)"))
        _state["tvm_ffi_path"] = path
        g_ffi_handle = h
        g_ffi.GetVersion = <void (*)(TVMFFIVersion*) noexcept nogil>_sym(h, b"TVMFFIGetVersion")
        g_ffi.ObjectDecRef = <int (*)(TVMFFIObjectHandle) noexcept nogil>_sym(h, b"TVMFFIObjectDecRef")
        g_ffi.ObjectIncRef = <int (*)(TVMFFIObjectHandle) noexcept nogil>_sym(h, b"TVMFFIObjectIncRef")
        g_ffi.ErrorMoveFromRaised = <void (*)(TVMFFIObjectHandle*) noexcept nogil>_sym(
            h, b"TVMFFIErrorMoveFromRaised")
        g_ffi.EnvSetStream = <int (*)(int32_t, int32_t, void*, void**) noexcept nogil>_sym(
            h, b"TVMFFIEnvSetStream")
        g_ffi.EnvGetStream = <void* (*)(int32_t, int32_t) noexcept nogil>_sym(h, b"TVMFFIEnvGetStream")
        g_ffi.FunctionGetGlobal = <int (*)(const TVMFFIByteArray*, TVMFFIObjectHandle*) noexcept nogil>_sym(
            h, b"TVMFFIFunctionGetGlobal")
        g_ffi.FunctionCall = <int (*)(TVMFFIObjectHandle, TVMFFIAny*, int32_t, TVMFFIAny*) noexcept nogil>_sym(
            h, b"TVMFFIFunctionCall")
        g_ffi.TensorFromDLPackVersioned = <int (*)(DLManagedTensorVersioned*, int32_t, int32_t, TVMFFIObjectHandle*) noexcept nogil>_sym(
            h, b"TVMFFITensorFromDLPackVersioned")
        g_ffi.GetVersion(&v)
        _state["tvm_ffi_version"] = (v.major, v.minor, v.patch)
        if (v.major, v.minor) != SUPPORTED_TVM_FFI_SERIES:
            raise _errors.RuntimeLibraryError(
                f"libtvm_ffi {v.major}.{v.minor}.{v.patch} at {path}: flashinfer_cy speaks the "
                f"{SUPPORTED_TVM_FFI_SERIES[0]}.{SUPPORTED_TVM_FFI_SERIES[1]}.x C ABI")
        g_ffi_ready = True
    return 0


cdef inline int ensure_ffi() except -1:
    if not g_ffi_ready:
        _init_ffi()
    return 0


cdef void* cudart_symbol(const char* name) noexcept:
    if g_cudart_handle == NULL:
        return NULL
    return dlsym(g_cudart_handle, name)


def _load_cudart():
    """Make libcudart.so.13 (what FlashInfer modules are linked against) loadable, and take
    cudaGetDevice/cudaSetDevice from that very copy. Failure is remembered, not raised:
    CPU-only modules (the test module) don't need it; CUDA modules then fail to load with
    the loader's own message."""
    global g_cudart_tried, g_cudart_handle
    if g_cudart_tried:
        return
    g_cudart_tried = True
    cdef void* h = dlopen(b"libcudart.so.13", RTLD_NOW | RTLD_GLOBAL)
    path = "libcudart.so.13"
    if h == NULL:
        first_error = dlerror().decode(errors="replace")
        try:  # pip-installed CUDA (nvidia-cuda-runtime): cuda-pathfinder knows where it is
            from cuda.pathfinder import load_nvidia_dynamic_lib
            path = load_nvidia_dynamic_lib("cudart").abs_path
            h = dlopen(os.fsencode(path), RTLD_NOW | RTLD_GLOBAL)
        except Exception as exc:  # noqa: BLE001 - any failure just means "no cudart"
            _state["cudart_error"] = f"{first_error}; cuda-pathfinder: {exc}"
            return
    if h == NULL:
        _state["cudart_error"] = dlerror().decode(errors="replace")
        return
    g_cudart_handle = h
    _state["cudart_path"] = path
    g_cudart.GetDevice = <int (*)(int*) noexcept nogil>dlsym(h, b"cudaGetDevice")
    g_cudart.SetDevice = <int (*)(int) noexcept nogil>dlsym(h, b"cudaSetDevice")
    if g_cudart.GetDevice == NULL or g_cudart.SetDevice == NULL:
        g_cudart.GetDevice = NULL
        g_cudart.SetDevice = NULL


def runtime_info():
    """Where libtvm_ffi and libcudart came from, and the runtime's version (loads them)."""
    ensure_ffi()
    _load_cudart()
    return dict(_state)


# ----------------------------------------------------------------------------- env allocator

cdef int ensure_env_alloc() except -1:
    """Fill (once) the table of the DLPack allocator that calls of a ``Binding(...,
    env_alloc=True)`` install in TVM-FFI's environment (include/flashinfer_cy/env_alloc.h):
    libtvm_ffi's allocator slot and stream table, libcudart's stream-ordered allocation.
    CudaError, before any call, when libcudart lacks them."""
    global g_env_alloc_ready
    if g_env_alloc_ready:
        return 0
    ensure_ffi()
    _load_cudart()
    with _lock:
        if g_env_alloc_ready:
            return 0
        fcy_env_alloc_rt.SetAllocator = <FcySetAllocator>_sym(
            g_ffi_handle, b"TVMFFIEnvSetDLPackManagedTensorAllocator")
        fcy_env_alloc_rt.EnvGetStream = g_ffi.EnvGetStream
        missing = []
        for name in (b"cudaMallocAsync", b"cudaFreeAsync", b"cudaGetDevice", b"cudaSetDevice",
                     b"cudaGetErrorString"):
            if cudart_symbol(name) == NULL:
                missing.append(name.decode())
        if missing:
            raise _errors.CudaError(
                f"this export allocates device memory through TVM-FFI's environment "
                f"allocator, which needs libcudart.so.13's {', '.join(missing)} "
                f"({_state['cudart_error'] or 'not found in the loaded libcudart'})")
        fcy_env_alloc_rt.MallocAsync = <int (*)(void**, size_t, void*) noexcept nogil>(
            cudart_symbol(b"cudaMallocAsync"))
        fcy_env_alloc_rt.FreeAsync = <int (*)(void*, void*) noexcept nogil>(
            cudart_symbol(b"cudaFreeAsync"))
        fcy_env_alloc_rt.GetDevice = <int (*)(int*) noexcept nogil>cudart_symbol(b"cudaGetDevice")
        fcy_env_alloc_rt.SetDevice = <int (*)(int) noexcept nogil>cudart_symbol(b"cudaSetDevice")
        fcy_env_alloc_rt.GetErrorString = <const char* (*)(int) noexcept nogil>(
            cudart_symbol(b"cudaGetErrorString"))
        g_env_alloc_ready = True
    return 0


cdef int call_maybe_env_alloc(TVMFFISafeCallType fn, void* fself, const TVMFFIAny* args,
                              int32_t n, TVMFFIAny* result, int32_t device_type,
                              int32_t device_id, void* stream, bint set_stream,
                              bint env_alloc) noexcept nogil:
    """fcy_call_self, with the environment allocator installed around the call when
    ``env_alloc`` (ensure_env_alloc() must have succeeded)."""
    if env_alloc:
        return fcy_call_env_alloc(&g_ffi, &g_cudart, fn, fself, args, n, result, device_type,
                                  device_id, stream, set_stream)
    return fcy_call_self(&g_ffi, &g_cudart, fn, fself, args, n, result, device_type,
                         device_id, stream, set_stream)


def env_alloc_live():
    """Tensors the environment allocator made that are not freed yet (for leak tests)."""
    return fcy_env_alloc_live()


# ----------------------------------------------------------------------------- errors

cdef str _bytes_str(TVMFFIByteArray a):
    if a.data == NULL or a.size == 0:
        return ""
    return PyBytes_FromStringAndSize(a.data, <Py_ssize_t>a.size).decode("utf-8", "replace")


cdef inline TVMFFIErrorCell* _error_cell(TVMFFIObjectHandle h) noexcept nogil:
    # The cell follows the object header (tvm/ffi/c_api.h: TVMFFIErrorCell "after" TVMFFIObject).
    return <TVMFFIErrorCell*>(<char*>h + sizeof(TVMFFIObject))


cdef int raise_call_error(int rc, str symbol) except -1:
    """Turn a non-zero safe-call code into the matching Python exception (always raises)."""
    cdef TVMFFIObjectHandle h = NULL
    cdef TVMFFIErrorCell* cell
    if rc == FCY_ERR_SET_DEVICE:
        raise _errors.CudaError(f"{symbol}: cudaSetDevice failed for the tensors' device")
    g_ffi.ErrorMoveFromRaised(&h)
    if h == NULL:
        if rc == -2 and PyErr_Occurred() != NULL:  # tvm-ffi < 0.1.9 modules: Python error pending
            return -1
        raise _errors.KernelRuntimeError(
            "UnknownError", f"returned {rc} without raising an error", "", symbol)
    cell = _error_cell(h)
    try:
        kind = _bytes_str(cell.kind)
        message = _bytes_str(cell.message)
        backtrace = _bytes_str(cell.backtrace)
    finally:  # a MemoryError above must not leak the error object
        g_ffi.ObjectDecRef(h)
    if kind == "EnvErrorAlreadySet" and PyErr_Occurred() != NULL:
        return -1
    raise _errors.kernel_error(kind, message, backtrace, symbol)


# ----------------------------------------------------------------------------- objects

cdef class Object:
    """An owned reference to a TVM-FFI object (a kernel's result: a plan's Array, a String...).
    Released exactly once, when this wrapper dies. Pass it back to a kernel as is."""

    def __init__(self, *args, **kwargs):
        raise TypeError(f"{type(self).__name__} objects are kernel results, not made directly")

    @staticmethod
    cdef Object adopt(TVMFFIObjectHandle handle, int32_t type_index):
        cls = (Array if type_index == kTVMFFIArray else
               ModuleObject if type_index == kTVMFFIModule else Object)
        cdef Object o = cls.__new__(cls)
        o.handle = handle
        o.tindex = type_index
        return o

    def __dealloc__(self):
        if self.handle != NULL and g_ffi_ready:
            g_ffi.ObjectDecRef(self.handle)
            self.handle = NULL

    @property
    def type_index(self):
        return self.tindex

    @property
    def refcount(self):
        """Strong reference count (for leak tests)."""
        return <int64_t>((<TVMFFIObject*>_live(self).handle).combined_ref_count & 0xFFFFFFFF)

    def __repr__(self):
        return f"<flashinfer_cy Object type_index={self.tindex}>"


cdef Object _live(Object o):
    """``o``, which must hold an object (one made by ``Object.__new__`` holds none)."""
    if o.handle == NULL:
        raise TypeError(f"this {type(o).__name__} holds no object (not a kernel result)")
    return o


cdef inline TVMFFISeqCell* _seq_cell(Object a) except NULL:
    # The sequence cell follows the object header (tvm/ffi/c_api.h, TVMFFISeqCell).
    return <TVMFFISeqCell*>(<char*>_live(a).handle + sizeof(TVMFFIObject))


cdef class Array(Object):
    """``ffi::Array`` result (e.g. plan info, ``Array<int64_t>``; a ``Tuple<...>`` is one
    too): read-only sequence. An object element (a tuple's Array) comes out as its own
    owned reference, a string as str."""

    def __len__(self):
        return _seq_cell(self).size

    def __getitem__(self, Py_ssize_t i):
        cdef TVMFFISeqCell* c = _seq_cell(self)
        cdef TVMFFIAny owned
        if i < 0:
            i += c.size
        if i < 0 or i >= c.size:
            raise IndexError("Array index out of range")
        cdef TVMFFIAny* item = (<TVMFFIAny*>c.data) + i
        if item.type_index >= kTVMFFIStaticObjectBegin:
            owned = item[0]
            g_ffi.ObjectIncRef(<TVMFFIObjectHandle>owned.v_obj)  # take_result releases one
            return take_result(&owned)
        return _pod_value(item)

    def tolist(self):
        return [self[i] for i in range(len(self))]

    def __repr__(self):
        cdef TVMFFISeqCell* c = _seq_cell(self)
        cdef Py_ssize_t i
        for i in range(c.size):  # an Array of Tensors, a tuple: not a list of values
            if (<TVMFFIAny*>c.data)[i].type_index >= kTVMFFIStaticObjectBegin:
                return f"<flashinfer_cy Array of {c.size} objects>"
        try:
            return f"Array({self.tolist()!r})"
        except TypeError:  # a value kind _pod_value does not read
            return f"<flashinfer_cy Array of {c.size} values>"


# libtvm_ffi's globals for module objects (what tvm_ffi.Module's get_function / kind call):
#   ffi.ModuleGetFunction(Module mod, String name, bool query_imports) -> Optional<Function>
#   ffi.ModuleGetKind(Module mod) -> String
# Looked up once each; a global lives as long as the process, so they are never released.
cdef TVMFFIObjectHandle g_module_get_function = NULL
cdef TVMFFIObjectHandle g_module_get_kind = NULL


cdef TVMFFIObjectHandle _global_function(bytes key) except NULL:
    cdef TVMFFIByteArray name
    cdef TVMFFIObjectHandle h = NULL
    ensure_ffi()
    name.data = key
    name.size = len(key)
    rc = g_ffi.FunctionGetGlobal(&name, &h)
    if rc != 0:
        raise_call_error(rc, f"TVMFFIFunctionGetGlobal({key.decode()})")
    if h == NULL:
        raise _errors.RuntimeLibraryError(
            f"libtvm_ffi at {_state['tvm_ffi_path']} registers no {key.decode()}")
    return h


cdef int _module_globals() except -1:
    global g_module_get_function, g_module_get_kind
    if g_module_get_kind != NULL:
        return 0
    with _lock:
        if g_module_get_kind == NULL:
            g_module_get_function = _global_function(b"ffi.ModuleGetFunction")
            g_module_get_kind = _global_function(b"ffi.ModuleGetKind")
    return 0


cdef TVMFFIObjectHandle g_make_array = NULL  # ffi.Array(*elements) -> Array


def int_array(values):
    """An ``ffi::Array`` of int64 (an :class:`Array` object) for an ``Array<int64_t>``
    argument (the fused MoE runner's ``profile_ids``), made by libtvm_ffi's ``ffi.Array``.
    At most 32 elements; each an int (not a bool) that fits int64 (TypeError /
    OverflowError naming the element)."""
    cdef TVMFFIAny args[32]
    cdef int i, n = len(values)
    if n > 32:
        raise ValueError(f"int_array: at most 32 elements, got {n}")
    for i in range(n):
        v = values[i]
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"int_array: element {i} must be an int, got {v!r}")
        if not -(1 << 63) <= v < (1 << 63):
            raise OverflowError(f"int_array: element {i} ({v}) does not fit in int64")
        args[i].type_index = kTVMFFIInt
        args[i].zero_padding = 0
        args[i].v_int64 = v
    return make_array(args, n)


cdef object make_array(TVMFFIAny* args, int n):
    """libtvm_ffi's ``ffi.Array(*args)`` as an :class:`Array`. The arguments are borrowed:
    the Array takes references of its own to the objects among them."""
    global g_make_array
    cdef TVMFFIAny result
    if g_make_array == NULL:
        with _lock:
            if g_make_array == NULL:
                g_make_array = _global_function(b"ffi.Array")
    result.type_index = kTVMFFINone
    result.zero_padding = 0
    result.v_int64 = 0
    rc = g_ffi.FunctionCall(g_make_array, args, n, &result)
    if rc != 0:
        raise_call_error(rc, "ffi.Array")
    return take_result(&result)


cdef inline void _any_object(TVMFFIAny* a, Object o) noexcept:
    a.type_index = o.tindex
    a.zero_padding = 0
    a.v_obj = <TVMFFIObject*>o.handle


cdef class ModuleObject(Object):
    """An ``ffi::Module`` object a kernel export returned (the fused MoE module's ``init``
    returns its runner this way): an owned reference, released once, when this wrapper and
    every :class:`Function` of its methods are gone (each method holds the object: the C++
    lambdas behind them point at it without a reference of their own). Its methods come
    from :meth:`method`, looked up once per name through libtvm_ffi's
    ``ffi.ModuleGetFunction`` and cached."""

    def __cinit__(self):
        self._methods = {}

    def method(self, str name not None):
        """The method ``name`` of this object as a :class:`Function` (cached per object):
        called like an export, GIL released (:meth:`Function.call`)."""
        fn = self._methods.get(name)
        if fn is not None:
            return fn
        _live(self)
        _module_globals()
        cdef bytes key = name.encode()
        cdef TVMFFIAny args[3]
        cdef TVMFFIAny result
        cdef int rc
        _any_object(&args[0], self)
        args[1].type_index = kTVMFFIRawStr
        args[1].zero_padding = 0
        args[1].v_c_str = key
        args[2].type_index = kTVMFFIBool
        args[2].zero_padding = 0
        args[2].v_int64 = 0  # query_imports: the runner imports nothing
        result.type_index = kTVMFFINone
        result.zero_padding = 0
        result.v_int64 = 0
        # Once per method and object, GIL held (GetFunction only builds the closure); the
        # calls of the method release it (Function.call).
        rc = g_ffi.FunctionCall(g_module_get_function, args, 3, &result)
        if rc != 0:
            raise_call_error(rc, f"ffi.ModuleGetFunction({name!r})")
        if result.type_index == kTVMFFINone:
            raise _errors.SymbolNotFoundError(
                f"this {self.kind} object has no method {name!r} (GetFunction returned none)")
        if result.type_index != kTVMFFIFunction:
            got = take_result(&result)  # released by its wrapper
            raise TypeError(f"ffi.ModuleGetFunction({name!r}) returned {got!r}, not a Function")
        cdef Function f = Function.__new__(Function)
        f.self_handle = <TVMFFIObjectHandle>result.v_obj
        f.fn = (<TVMFFIFunctionCell*>(<char*>f.self_handle + sizeof(TVMFFIObject))).safe_call
        g_ffi.ObjectIncRef(self.handle)
        f.owner = self.handle
        f.name = name
        f.module = None
        with _lock:  # two threads asking at once: both get the first one cached
            fn = self._methods.get(name)
            if fn is None:
                self._methods[name] = f
                fn = f
        return fn

    @property
    def kind(self):
        """The module object's kind (``ModuleObj::kind()``, e.g. ``"fused_moe_runner"``)."""
        cdef TVMFFIAny arg
        cdef TVMFFIAny result
        _live(self)
        _module_globals()
        _any_object(&arg, self)
        result.type_index = kTVMFFINone
        result.zero_padding = 0
        result.v_int64 = 0
        rc = g_ffi.FunctionCall(g_module_get_kind, &arg, 1, &result)
        if rc != 0:
            raise_call_error(rc, "ffi.ModuleGetKind")
        return take_result(&result)

    def __repr__(self):
        kind = self.kind if self.handle != NULL else "empty"
        return f"<flashinfer_cy ModuleObject {kind!r}>"


cdef object _pod_value(TVMFFIAny* v):
    cdef int32_t t = v.type_index
    if t == kTVMFFINone:
        return None
    if t == kTVMFFIInt:
        return v.v_int64
    if t == kTVMFFIBool:
        return v.v_int64 != 0
    if t == kTVMFFIFloat:
        return v.v_float64
    if t == kTVMFFIOpaquePtr:
        return <size_t>v.v_ptr
    if t == kTVMFFIDataType:
        return (v.v_dtype.code, v.v_dtype.bits, v.v_dtype.lanes)
    if t == kTVMFFIDevice:
        return (<int>v.v_device.device_type, v.v_device.device_id)
    if t == kTVMFFISmallStr:
        return PyBytes_FromStringAndSize(v.v_bytes, v.small_str_len).decode("utf-8", "replace")
    if t == kTVMFFISmallBytes:
        return PyBytes_FromStringAndSize(v.v_bytes, v.small_str_len)
    raise TypeError(f"unsupported element type index {t}")


cdef object take_result(TVMFFIAny* result):
    """Convert an owned call result to Python, taking over (and releasing) any reference."""
    cdef int32_t t = result.type_index
    cdef TVMFFIByteArray* ba
    cdef TVMFFIShapeCell* shape
    if t < kTVMFFIStaticObjectBegin:
        return _pod_value(result)
    cdef TVMFFIObjectHandle h = <TVMFFIObjectHandle>result.v_obj
    result.type_index = kTVMFFINone
    if t == kTVMFFIStr or t == kTVMFFIBytes:
        ba = <TVMFFIByteArray*>(<char*>h + sizeof(TVMFFIObject))
        try:
            data = PyBytes_FromStringAndSize(ba.data, <Py_ssize_t>ba.size)
        finally:  # released even when the copy raises (MemoryError)
            g_ffi.ObjectDecRef(h)
        return data.decode("utf-8", "replace") if t == kTVMFFIStr else data
    if t == kTVMFFIShape:
        shape = <TVMFFIShapeCell*>(<char*>h + sizeof(TVMFFIObject))
        try:
            out = tuple(shape.data[i] for i in range(shape.size))
        finally:
            g_ffi.ObjectDecRef(h)
        return out
    return Object.adopt(h, t)


# ----------------------------------------------------------------------------- modules

cdef class Module:
    """A dlopen'd kernel module. Kept for the life of the process (never dlclose'd)."""

    def __cinit__(self):
        self._functions = {}
        self._uris = set()
        self.unreachable_symbols = ()

    def __init__(self, *args, **kwargs):
        raise TypeError("Module objects are made by load_module / load_module_path")

    def function(self, str name):
        """The export ``__tvm_ffi_<name>`` as a :class:`Function` (cached)."""
        fn = self._functions.get(name)
        if fn is not None:
            return fn
        if self.handle == NULL:  # Module.__new__ from Python: dlsym(NULL) searches everything
            raise TypeError("this Module was not loaded (use load_module / load_module_path)")
        cdef bytes sym = ("__tvm_ffi_" + name).encode()
        cdef void* p = dlsym(self.handle, sym)
        if p == NULL:
            raise _errors.SymbolNotFoundError(
                f"{self.path} does not export {sym.decode()} (is it the module for "
                f"{self.uri!r} from flashinfer 0.6.3?)")
        cdef Function f = Function.__new__(Function)
        f.fn = <TVMFFISafeCallType>p
        f.name = name
        f.module = self
        with _lock:  # not between serialize_calls' mark and its walk over _functions
            fn = self._functions.get(name)
            if fn is not None:
                return fn
            if _is_serialized(self, name):
                f._serialize()
            self._functions[name] = f
        return f

    def __repr__(self):
        lazy = (f", {len(self.unreachable_symbols)} unreachable symbol(s) left unresolved"
                if self.unreachable_symbols else "")
        return (f"<flashinfer_cy Module {self.uri!r} from {self.path}, flashinfer "
                f"{self.flashinfer_version or 'unknown'}{lazy}>")


def load_module_path(path, uri=None, flashinfer_version=None):
    """dlopen a kernel module file (RTLD_NOW | RTLD_LOCAL), once per path.

    ``flashinfer_version``: the FlashInfer release the file was built from ("0.6.3"). A
    Binding checks it against that release's ABI before its first call
    (docs/abi-versions.md). Without it, ``$FLASHINFER_CY_FLASHINFER_VERSION``; without
    that, the version is unknown and every Binding refuses to call the module
    (:class:`~flashinfer_cy.errors.KernelVersionError`): a file of another release with a
    changed argument list would corrupt memory. ``Module.function`` (the generic path) is
    not checked."""
    if flashinfer_version is not None:
        if not isinstance(flashinfer_version, str) or not flashinfer_version.strip():
            raise TypeError(f"flashinfer_version: expected a FlashInfer version string like "
                            f"'0.6.3', got {flashinfer_version!r}")
        return _load(path, uri, flashinfer_version.strip(), "load_module_path(flashinfer_version=)")
    from flashinfer_cy.artifacts import settings
    version = settings.flashinfer_version()
    return _load(path, uri, version, settings.FLASHINFER_VERSION_ENV if version else
                 "load_module_path() without flashinfer_version=")


cdef int _note_version(Module m, object version, str how) except -1:
    """Record the FlashInfer version of ``m``: a known version fills an unknown one; two
    different known versions for one file is an error. Under _lock."""
    if version is None:
        if m.flashinfer_version is None:
            m.version_from = how
        return 0
    if m.flashinfer_version is None:
        m.flashinfer_version = version
        m.version_from = how
    elif m.flashinfer_version != version:
        raise _errors.KernelVersionError(
            f"kernel module {m.path} was loaded as flashinfer {m.flashinfer_version} "
            f"({m.version_from}); {how} now says flashinfer {version}. One file is one release: "
            f"fix the marker, the setting or the argument that is wrong")
    return 0


def _load(path, uri, version, str how):
    ensure_ffi()
    path = os.path.abspath(os.fspath(path))
    with _lock:
        mod = _modules.get(path)
        if mod is not None:
            _note_version(<Module>mod, version, how)
            if uri:  # loaded before under another name (or none)
                _add_uri(mod, uri)
                _modules[("uri", uri)] = mod
            return mod
        if not os.path.isfile(path):
            raise _errors.KernelNotFoundError(f"kernel module file {path} does not exist")
        damage = _elf_problem(path)  # dlopen of a truncated file dies of SIGBUS
        if damage is not None:
            raise _errors.KernelNotFoundError(
                f"kernel module file {path} is damaged: {damage}; it is not a whole shared "
                f"library (a truncated or half-copied file?). Copy or build it again, or "
                f"delete it so that it is fetched again")
        _load_cudart()
        accepted = []
        h = dlopen(os.fsencode(path), RTLD_NOW | RTLD_LOCAL)
        if h == NULL:
            err = dlerror().decode(errors="replace")
            if "undefined symbol" in err:
                h = _load_lazily(path, version, err, accepted)
            else:
                hint = ""
                if "libcudart" in err and _state["cudart_error"]:
                    hint = f" (libcudart.so.13 could not be loaded: {_state['cudart_error']})"
                raise _errors.KernelNotFoundError(f"cannot load kernel module {path}: {err}{hint}")
        m = Module.__new__(Module)
        (<Module>m).handle = h
        (<Module>m).unreachable_symbols = tuple(accepted)
        (<Module>m).path = path
        (<Module>m).uri = uri or os.path.splitext(os.path.basename(path))[0]
        _note_version(<Module>m, version, how)
        _modules[path] = m
        if uri:
            _modules[("uri", uri)] = m
        _add_uri(m, (<Module>m).uri)
        return m


cdef void* _load_lazily(str path, object version, str now_error, list accepted) except NULL:
    """The handle of ``path`` loaded with RTLD_LAZY | RTLD_LOCAL after RTLD_NOW failed with
    ``now_error`` (an undefined symbol), provided that every undefined function of its
    .dynsym that the dynamic linker cannot resolve is listed as never called for FlashInfer
    ``version`` (flashinfer_cy/abi/unreachable_symbols.py); those are appended to
    ``accepted``. Anything else: KernelNotFoundError naming the symbols, the handle closed
    (no export of it has been called, so nothing of it is referenced). Under _lock."""
    from flashinfer_cy.abi.unreachable_symbols import entries, known_unreachable
    cdef str refused = f"cannot load kernel module {path}: {now_error}"
    if not entries(version):  # nothing could be accepted: today's error, as it was
        raise _errors.KernelNotFoundError(refused)
    try:
        from flashinfer_cy._core.undefined_symbols import undefined_functions
        names = undefined_functions(path)
    except Exception as exc:  # noqa: BLE001 - no pyelftools, an unreadable table: refuse
        raise _errors.KernelNotFoundError(
            f"{refused}; its undefined symbols could not be listed to check whether they are "
            f"known to be unreachable ({type(exc).__name__}: {exc})") from exc
    cdef void* h = dlopen(os.fsencode(path), RTLD_LAZY | RTLD_LOCAL)
    if h == NULL:  # e.g. a missing variable: bound at load even under RTLD_LAZY
        raise _errors.KernelNotFoundError(
            f"{refused}; with RTLD_LAZY: {dlerror().decode(errors='replace')}")
    cdef bytes b
    unresolved = []
    for name in names:
        b = name.encode()
        # What a lazy binding of a module loaded RTLD_LOCAL searches: the global scope
        # (libtvm_ffi is there, the module is not linked against it), then the module's own
        # dependency tree (the handle's scope).
        if dlsym(RTLD_DEFAULT, b) == NULL and dlsym(h, b) == NULL:
            unresolved.append(name)
    dlerror()  # the failed lookups' messages are not an error of ours
    unknown = [n for n in unresolved if known_unreachable(version, n) is None]
    if unknown or not unresolved:
        dlclose(h)
        if not unresolved:  # RTLD_NOW named a symbol that resolves now: refuse, do not guess
            raise _errors.KernelNotFoundError(
                f"{refused}; yet every undefined function resolves with RTLD_LAZY")
        raise _errors.KernelNotFoundError(
            f"{refused}; undefined and not known to be unreachable in flashinfer {version}: "
            + ", ".join(unknown))
    accepted.extend(unresolved)
    return h


cdef int _add_uri(Module m, str uri) except -1:
    """Record that ``m`` is the module for ``uri`` (a URI it was loaded as, or its file
    name when it was loaded by path alone): serialize_calls for that URI applies to it.
    Under _lock."""
    m._uris.add(uri)
    return _apply_serialized(m)


cdef bint _is_serialized(Module m, str name):
    """Whether serialize_calls named export ``name`` under any URI ``m`` is known by."""
    return any((uri, name) in _serialized for uri in m._uris)


cdef int _apply_serialized(Module m) except -1:
    """Serialize every loaded Function of ``m`` that serialize_calls named. Under _lock."""
    for name, fn in m._functions.items():
        if _is_serialized(m, name):
            (<Function>fn)._serialize()
    return 0


def serialize_calls(str uri, str symbol):
    """Make calls of export ``symbol`` of module ``uri`` take turns between threads (each
    call holds a per-export lock; the GIL stays released). For kernel launchers that are
    not safe to enter from several threads at once: the kernels they queue still run
    concurrently on their streams. Applies to the Function now and to any loaded later,
    however the module was loaded (by URI, or by path with or without one)."""
    with _lock:
        _serialized.add((uri, symbol))
        for mod in _modules.values():  # (a module is there under its path and its URI)
            if uri in (<Module>mod)._uris:
                _apply_serialized(mod)


def load_module(str uri):
    """The kernel module for ``uri`` (``norm``, ``page``, an attention URI...), located
    through :func:`flashinfer_cy.artifacts.locate_module` on first use; its FlashInfer
    version is the source's (:func:`flashinfer_cy.artifacts.locate_module_source`)."""
    mod = _modules.get(("uri", uri))
    if mod is not None:
        return mod
    from flashinfer_cy.artifacts import locate_module_source
    src = locate_module_source(uri)  # where it comes from, and so which FlashInfer it is
    return _load(src.path, uri, src.flashinfer_version, src.version_from)


# ----------------------------------------------------------------------------- functions

cdef class Function:
    """One ``__tvm_ffi_<name>`` export. The typed kernel APIs call :meth:`call` from Cython;
    ``__call__`` is the generic (slower, any-argument) path, mainly for tests and tools."""

    def __init__(self, *args, **kwargs):
        raise TypeError("Function objects are made by Module.function(name)")

    def __dealloc__(self):
        if self.serial != NULL:
            PyThread_free_lock(self.serial)
        if g_ffi_ready:  # a method: the ffi::Function, then the object whose method it is
            if self.self_handle != NULL:
                g_ffi.ObjectDecRef(self.self_handle)
            if self.owner != NULL:
                g_ffi.ObjectDecRef(self.owner)
        self.self_handle = NULL
        self.owner = NULL

    cdef int _serialize(self) except -1:
        if self.serial == NULL:
            self.serial = PyThread_allocate_lock()
            if self.serial == NULL:
                raise MemoryError("cannot allocate a lock")
        return 0

    @property
    def serialized(self):
        """Whether calls of this export are serialized between threads."""
        return self.serial != NULL

    cdef int call(self, const TVMFFIAny* args, int32_t n, TVMFFIAny* result,
                  int32_t device_type, int32_t device_id, void* stream,
                  bint set_stream, bint env_alloc=False) except -1:
        """``env_alloc``: install the environment allocator for this call (exports that
        allocate device memory themselves, e.g. the fused MoE runner's run_moe)."""
        cdef int rc
        cdef TVMFFISafeCallType fn = self.fn
        cdef void* fself = self.self_handle
        cdef PyThread_type_lock serial = self.serial
        if fn == NULL:  # Function.__new__ from Python: there is no export to call
            raise TypeError("this Function was not made by Module.function(name)")
        if env_alloc and not g_env_alloc_ready:
            ensure_env_alloc()
        with nogil:
            if serial != NULL:  # taken without the GIL: other threads keep running Python
                PyThread_acquire_lock(serial, WAIT_LOCK)
            rc = call_maybe_env_alloc(fn, fself, args, n, result, device_type, device_id,
                                      stream, set_stream, env_alloc)
            if serial != NULL:
                PyThread_release_lock(serial)
        if rc != 0:
            raise_call_error(rc, self.name)
        return 0

    def __call__(self, *args, stream=None):
        from flashinfer_cy._core.binding import call_generic
        return call_generic(self, args, stream)

    @property
    def is_method(self):
        """Whether this is a method of a module object (ModuleObject.method), not an export."""
        return self.owner != NULL

    def __repr__(self):
        if self.owner != NULL:
            return f"<flashinfer_cy Function: method {self.name!r} of a module object>"
        uri = self.module.uri if self.module is not None else None
        return f"<flashinfer_cy Function {self.name!r} of {uri!r}>"


# ----------------------------------------------------------------------------- devices

# Stable cudaDeviceAttr values (CUDA runtime enum).
cdef enum:
    CUDA_DEV_ATTR_MULTIPROCESSOR_COUNT = 16
    CUDA_DEV_ATTR_CC_MAJOR = 75
    CUDA_DEV_ATTR_MAX_SMEM_PER_MULTIPROCESSOR = 81
    CUDA_DEV_ATTR_MAX_SMEM_PER_BLOCK_OPTIN = 97
    MAX_CACHED_DEVICES = 64

cdef int g_cc_major[MAX_CACHED_DEVICES]  # per device ordinal; 0 = not asked yet
cdef int g_sm_count[MAX_CACHED_DEVICES]
cdef int g_smem_optin[MAX_CACHED_DEVICES]
cdef int g_smem_per_sm[MAX_CACHED_DEVICES]


cdef int _device_attribute(int* cache, int attr, int device, str what) except -1:
    """A positive device attribute, asked once per device through the kernels' libcudart."""
    cdef int value = 0
    cdef int (*get_attr)(int*, int, int) noexcept nogil
    if 0 <= device < MAX_CACHED_DEVICES and cache[device] > 0:
        return cache[device]
    _load_cudart()
    get_attr = <int (*)(int*, int, int) noexcept nogil>cudart_symbol(b"cudaDeviceGetAttribute")
    if get_attr == NULL or get_attr(&value, attr, device) != 0 or value <= 0:
        raise _errors.CudaError(f"cannot query the {what} of CUDA device {device}")
    if 0 <= device < MAX_CACHED_DEVICES:
        cache[device] = value
    return value


cdef int compute_capability_major(int device) except -1:
    return _device_attribute(g_cc_major, CUDA_DEV_ATTR_CC_MAJOR, device, "compute capability")


cdef int multiprocessor_count(int device) except -1:
    """SM count (sizes per-SM workspaces, e.g. gdn_prefill's tensormaps)."""
    return _device_attribute(g_sm_count, CUDA_DEV_ATTR_MULTIPROCESSOR_COUNT, device,
                             "multiprocessor count")


cdef int max_shared_memory_per_block_optin(int device) except -1:
    """Bytes of shared memory one block may opt in to (sizes top-k's per-block chunks)."""
    return _device_attribute(g_smem_optin, CUDA_DEV_ATTR_MAX_SMEM_PER_BLOCK_OPTIN, device,
                             "opt-in shared memory per block")


cdef int max_shared_memory_per_multiprocessor(int device) except -1:
    """Bytes of shared memory per SM (FlashInfer's MLA FA2 kernel picks its KV tile by it)."""
    return _device_attribute(g_smem_per_sm, CUDA_DEV_ATTR_MAX_SMEM_PER_MULTIPROCESSOR, device,
                             "shared memory per multiprocessor")


def device_compute_capability_major(int device):
    return compute_capability_major(device)


# TVMFFIEnvSetStream indexes its per-thread table [device_type][device_id], grown to fit
# and never checked for negatives: a negative index is a wild write, a huge one a huge
# allocation. DLPack's device types are < 32; ordinals as tensors may name (MAX_DEVICES).
cdef enum:
    MAX_ENV_DEVICE_TYPE = 64


cdef int _check_env_device(int device_type, int device_id) except -1:
    if not 0 <= device_type < MAX_ENV_DEVICE_TYPE:
        raise ValueError(f"device_type: expected a DLPack device type 0 <= device_type < "
                         f"{MAX_ENV_DEVICE_TYPE}, got {device_type}")
    if not 0 <= device_id < MAX_DEVICES:
        raise ValueError(f"device_id: expected a device ordinal 0 <= device_id < "
                         f"{MAX_DEVICES}, got {device_id}")
    return 0


def _env_set_stream(int device_type, int device_id, size_t handle):
    """Set the thread's TVM-FFI stream for a device; returns the previous handle."""
    cdef void* prev = NULL
    _check_env_device(device_type, device_id)
    ensure_ffi()
    if g_ffi.EnvSetStream(device_type, device_id, <void*>handle, &prev) != 0:
        raise_call_error(-1, "TVMFFIEnvSetStream")
    return <size_t>prev


cdef void* env_stream(int32_t device_type, int32_t device_id) except? NULL:
    """The thread's TVM-FFI stream for a device (NULL: the legacy default stream)."""
    ensure_ffi()
    return g_ffi.EnvGetStream(device_type, device_id)


def _env_get_stream(int device_type, int device_id):
    _check_env_device(device_type, device_id)
    return <size_t>env_stream(device_type, device_id)


def device_multiprocessor_count(int device):
    return multiprocessor_count(device)


def device_max_shared_memory_per_block_optin(int device):
    return max_shared_memory_per_block_optin(device)


def device_max_shared_memory_per_multiprocessor(int device):
    return max_shared_memory_per_multiprocessor(device)
