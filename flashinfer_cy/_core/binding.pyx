# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Table-driven kernel entry points.

A kernel family describes each export once, as a line of a table::

    Binding("norm", "rmsnorm", "out:T! input:T weight:T eps:F enable_pdl:B", device="input")

(argument names and kinds in ABI order, as in FlashInfer's ``*_binding.cu``; ``!`` marks a
tensor the kernel writes, which must not be read-only). The family's
typed function fills a stack ``CallFrame`` through the Binding's packers; ``invoke`` then
checks every slot was filled with the declared kind, that device tensors share one device,
picks the stream, and makes one GIL-free call. Adding a kernel is adding a table line and a
validator, never copying the call sequence.
"""

from libc.stdint cimport int8_t, int32_t, int64_t, uint32_t, uintptr_t
from cpython.pythread cimport PyThread_get_thread_ident
from libc.math cimport isfinite
from libc.string cimport memcpy

from flashinfer_cy._abi.dlpack cimport kDLCUDA, kDLCPU, kDLCUDAHost, DLTensor, DLDeviceType
from flashinfer_cy._abi.tvm_ffi cimport (TVMFFIAny, TVMFFIObjectHandle, kTVMFFINone,
                                         kTVMFFIDLTensorPtr, kTVMFFIDataType, kTVMFFIDevice,
                                         kTVMFFIOpaquePtr, kTVMFFIRawStr)
from flashinfer_cy._core.runtime cimport Function, Object, ModuleObject, take_result, ensure_ffi
from flashinfer_cy._core.tensor cimport (TensorSlot, to_dltensor, release_slot, describe,
                                         check_same_device, check_writable, parse_dtype,
                                         finite_float, as_bool)
from flashinfer_cy._core.stream cimport resolve_stream

from flashinfer_cy._core import runtime as _runtime
from flashinfer_cy.abi import TABLES_VERSION as _TABLES_VERSION
from flashinfer_cy.abi import layouts as _abi_layouts, match as _abi_match
from flashinfer_cy.errors import (KernelNotFoundError as _KernelNotFoundError,
                                  KernelVersionError as _KernelVersionError)

_KIND_CODES = {"T": K_TENSOR, "T?": K_OPT_TENSOR, "H": K_HOST_TENSOR, "I": K_INT,
               "F": K_FLOAT, "B": K_BOOL, "D": K_DTYPE, "A": K_OBJECT, "A?": K_OPT_OBJECT}
_WRITTEN_KINDS = {"T!": "T", "T?!": "T?"}  # a tensor the kernel writes, and its kind
# The TVM-FFI type index each kind may be packed as (-2: any object handle >= 64).
cdef int _UNSET = -1


cdef void frame_init(CallFrame* f, int n) noexcept:
    frame_init_masked(f, n, 0xFFFFFFFF)


cdef void frame_release(CallFrame* f) noexcept:
    frame_release_masked(f, 0xFFFFFFFF)


cdef extern from *:
    int ctz32 "__builtin_ctz"(uint32_t x) nogil  # index of the lowest set bit (x != 0)


cdef inline uint32_t _slots_below(int n, uint32_t mask) noexcept nogil:
    return mask if n >= 32 else mask & ((<uint32_t>1 << n) - 1)


cdef void frame_init_masked(CallFrame* f, int n, uint32_t mask) noexcept:
    """frame_init for the slots whose bit is set in ``mask`` only (a hot path that fills
    the others from a CheckedFrame never touches them). Visits set bits only: run() passes
    5 of some 20 slots."""
    cdef int i
    cdef uint32_t m = _slots_below(n, mask)
    f.n = n
    while m:
        i = ctz32(m)
        m &= m - 1
        f.args[i].type_index = _UNSET
        f.args[i].zero_padding = 0
        f.args[i].v_int64 = 0
        f.slots[i].keep = NULL


cdef void frame_release_masked(CallFrame* f, uint32_t mask) noexcept:
    cdef int i
    cdef uint32_t m = _slots_below(f.n, mask)
    while m:
        i = ctz32(m)
        m &= m - 1
        if f.slots[i].keep != NULL:
            release_slot(&f.slots[i])


cdef inline void set_none_any(TVMFFIAny* a) noexcept:
    a.type_index = kTVMFFINone
    a.zero_padding = 0
    a.v_int64 = 0


cdef int set_object(CallFrame* f, int i, Object obj) except -1:
    if obj is None or obj.handle == NULL:
        raise TypeError("expected a live flashinfer_cy Object (e.g. a plan), got None")
    f.args[i].type_index = obj.tindex
    f.args[i].v_ptr = obj.handle
    return 0


cdef int pack_object(CallFrame* f, int i, Object obj) except -1:
    """set_object, and under prepare() the object is kept by the prepared launch (which
    passes its handle again at every launch)."""
    set_object(f, i, obj)
    if recording():
        g_recorder.keep(obj)
    return 0


cdef class Binding:
    """One kernel export: module URI, symbol, and its argument list in ABI order.

    ``signature`` is space-separated ``name:KIND`` items; KIND is one of T (device tensor),
    T? (optional device tensor), H (host tensor), I (int), F (float), B (bool),
    D (dtype), A (object handle, e.g. plan info), A? (object handle or None).
    ``T!`` / ``T?!``: a tensor the kernel
    writes (an output, an in-place operand); a tensor its producer exported read-only is
    refused there (ValueError). ``device`` names the T argument whose device (and producer
    stream) the kernel runs on: FlashInfer takes both from one argument (default: the
    first T argument).
    ``serialize``: calls of this export take turns between threads (its host launcher is not
    safe to enter concurrently; the GIL stays released and the kernels still overlap).
    ``per_launch``: the I/F/B arguments a prepared launch may change between launches
    (``PreparedCall.set``), e.g. a sampler's philox seed and offset. Only arguments whose
    every value of that kind is valid belong here: ``set`` checks the kind, nothing else.
    ``layouts``: ``{release: argument list}`` for FlashInfer releases whose export takes
    this one's arguments rearranged or with added arguments of a fixed value
    (flashinfer_cy/abi/layouts.py); a module of that release is called with the frame
    rearranged, and checked against that list instead of ``signature``.
    ``written_for``: the release whose declaration ``signature`` is (default: the tables'
    release, flashinfer_cy.abi.TABLES_VERSION). A line written for a later release, beside
    the tables' line of the same export, is where that release changed the export beyond
    a layout (a family picks the line by the module's release); it calls modules of that
    release only, and as a method line objects their exports made (KernelVersionError
    otherwise). ``aliases``: ``{name: own name}``, names
    a prepared launch's ``set``/``repoint`` also accept for an argument (the tables'
    line's name, so that ``set(philox_seed=...)`` works on either release's line).
    ``release`` (after the first call or ``load()``): the loaded module's release.
    ``method_of``: this line is not an export but a method of the module object that
    export ``method_of`` of ``uri`` returns (the fused MoE runner's ``run_moe``, served by
    the object ``init`` returns; ``symbol`` is the name ``GetFunction`` serves it by). It is
    called on a runner's method only (:meth:`method`, ``invoke_on``), never loaded by name.
    ``env_alloc``: the export allocates device memory itself, through TVM-FFI's environment
    allocator (``alloc_tensor``; the fused MoE runner's workspace): every call, prepared
    launches included, installs flashinfer_cy's stream-ordered allocator in the calling
    thread's slot for the call and restores the previous one after it
    (include/flashinfer_cy/env_alloc.h).
    """

    def __init__(self, str uri not None, str symbol not None, str signature not None,
                 str device=None, serialize=False, tuple per_launch=(), dict layouts=None,
                 str written_for=None, dict aliases=None, str method_of=None,
                 env_alloc=False):
        items = signature.split()
        if len(items) > MAX_ARGS:
            raise ValueError(f"{symbol}: at most {MAX_ARGS} arguments")
        names = []
        self.written = 0
        for i, item in enumerate(items):
            name, _, kind = item.partition(":")
            if kind in _WRITTEN_KINDS:
                self.written |= (<uint32_t>1) << i
                kind = _WRITTEN_KINDS[kind]
            if kind not in _KIND_CODES:
                raise ValueError(f"{symbol}: argument {item!r} has unknown kind {kind!r}")
            names.append(name)
            self.kinds[i] = _KIND_CODES[kind]
        self.uri = uri
        self.symbol = symbol
        self.signature = signature
        self.names = tuple(names)
        self.n = len(items)
        if device is None:
            device = next((n for i, n in enumerate(names) if self.kinds[i] == K_TENSOR), None)
        if device is not None and device not in names:
            raise ValueError(f"device: {device!r} is not an argument of {symbol} ({signature})")
        self.device_arg = names.index(device) if device is not None else -1
        self.per_launch = 0
        for name in per_launch:
            if name not in names or self.kinds[names.index(name)] not in (K_INT, K_FLOAT,
                                                                           K_BOOL):
                raise ValueError(f"per_launch: {name!r} is not an I, F or B argument of "
                                 f"{symbol} ({signature})")
            self.per_launch |= (<uint32_t>1) << names.index(name)
        # invoke() reads the device from that slot, which only a T argument always fills.
        if self.device_arg >= 0 and self.kinds[self.device_arg] != K_TENSOR:
            raise ValueError(f"device: {device!r} must be a T (tensor) argument of {symbol} "
                             f"({signature})")
        self._fn = None
        self.lay_n = 0
        for layout in (layouts or {}).values():
            _abi_layouts.parse(signature, layout)  # a table error shows at import
        self.layouts = dict(layouts or {})
        self.written_for = written_for or _TABLES_VERSION
        self.release = None
        if self.written_for != _TABLES_VERSION and self.layouts:
            raise ValueError(f"{symbol}: a line written for {self.written_for} carries no "
                             f"layouts (layouts rearrange the tables' {_TABLES_VERSION} line)")
        for alias, own in (aliases or {}).items():
            if own not in names or alias in names:
                raise ValueError(f"aliases: {alias!r} -> {own!r} must name an argument of "
                                 f"{symbol} ({signature}) by a name it does not have")
        self.aliases = dict(aliases or {})
        self.method_of = method_of
        self.env_alloc = as_bool(env_alloc, "env_alloc", "True or False")
        if method_of is not None and (self.layouts or serialize):
            raise ValueError(f"{symbol}: a method line (method_of={method_of!r}) takes no "
                             f"layouts and no serialize (its Functions are per object)")
        # the export's launcher is not thread-safe (runtime.serialize_calls)
        if as_bool(serialize, "serialize", "True or False"):
            _runtime.serialize_calls(uri, symbol)

    cdef Function function(self):
        if self._fn is None:
            if self.method_of is not None:
                raise TypeError(f"{self.symbol} is a method of the object {self.uri}'s "
                                f"{self.method_of} returns, not an export: call it on that "
                                f"object (Binding.method)")
            try:
                mod = _runtime.load_module(self.uri)
            except _KernelNotFoundError as exc:
                # Not found because the expected release has no such module (0.7.x and
                # gdn_prefill_sm90)? Then say so, with the reviewed reason, rather than
                # only where it was looked for.
                from flashinfer_cy.artifacts import expected_flashinfer_version
                note = _abi_match.missing_module_note(self.uri, self.symbol,
                                                      expected_flashinfer_version())
                if note is None:
                    raise
                raise _KernelNotFoundError(f"{exc}. {note}") from exc
            release = (_abi_match.abi_version(mod.flashinfer_version)
                       if mod.flashinfer_version is not None else None)
            if self.written_for != _TABLES_VERSION and release != self.written_for:
                raise _KernelVersionError(
                    f"module {self.uri!r} ({mod.path}) is flashinfer "
                    f"{mod.flashinfer_version or 'of unknown version'}; this {self.symbol} "
                    f"line is flashinfer {self.written_for}'s argument list and calls modules "
                    f"of that release only")
            signature, plan = self.signature, ()
            if self.layouts and release is not None:
                layout = self.layouts.get(release)
                if layout is not None:
                    signature, plan = _abi_layouts.parse(self.signature, layout)
            # Once per Binding, before its first call (never on the hot path): does the
            # module's FlashInfer release declare this argument list, and the return type
            # the line's release declares (what the family reads)? KernelVersionError if
            # not, so a mismatched kernel set is an error, never a call.
            _abi_match.require_match(self.uri, self.symbol, signature,
                                     mod.flashinfer_version, mod.version_from, mod.path,
                                     None, self.written_for)
            fn = mod.function(self.symbol)
            self._set_layout(plan)
            self.release = release
            self._fn = fn
        return self._fn

    cpdef int arg_index(self, str name) except -2:
        """The index of argument ``name`` (or of the argument an alias names); -1 if none."""
        name = self.aliases.get(name, name)
        try:
            return self.names.index(name)
        except ValueError:
            return -1

    cdef int _set_layout(self, tuple plan) except -1:
        cdef int j
        for j, step in enumerate(plan):
            if step[0] == "arg":
                self.lay_src[j] = step[1]
                continue
            self.lay_src[j] = -1
            kind, value = step[1], step[2]
            if value is None:
                set_none_any(&self.lay_const[j])
            elif kind == "B":
                self.lay_const[j].type_index = 2  # kTVMFFIBool
                self.lay_const[j].zero_padding = 0
                self.lay_const[j].v_int64 = 1 if value else 0
            elif kind == "I":
                self.lay_const[j].type_index = 1  # kTVMFFIInt
                self.lay_const[j].zero_padding = 0
                self.lay_const[j].v_int64 = value
            else:
                self.lay_const[j].type_index = 3  # kTVMFFIFloat
                self.lay_const[j].zero_padding = 0
                self.lay_const[j].v_float64 = value
        self.lay_n = len(plan)
        return 0

    @property
    def module_signature(self):
        """The argument list the loaded module is called with: ``signature``, or the
        layout of its release (None before the module is loaded)."""
        if self._fn is None:
            return None
        if self.lay_n == 0:
            return self.signature
        return _abi_layouts.parse(self.signature, self.layouts[self.release])[0]

    cdef int call_args(self, const TVMFFIAny* args, TVMFFIAny* result, int32_t dev_type,
                       int32_t dev_id, void* stream, bint set_stream) except -1:
        """Call the export with a checked frame's arguments (the Binding's order), as the
        loaded module's release takes them."""
        cdef TVMFFIAny tmp[MAX_ARGS]
        cdef Function fn = self.function()
        if self.lay_n == 0:
            return fn.call(args, self.n, result, dev_type, dev_id, stream, set_stream,
                           self.env_alloc)
        return fn.call(layout_args(args, self.lay_n, self.lay_src, self.lay_const, tmp),
                       self.lay_n, result, dev_type, dev_id, stream, set_stream,
                       self.env_alloc)

    def method(self, ModuleObject obj not None, made_by not None):
        """The Function of this method line on ``obj``, the object that ``made_by`` (the
        Binding of export ``method_of``, already called) returned. The first time, checks
        that the release of ``made_by``'s module declares this method with this argument
        list (KernelVersionError otherwise), as ``function()`` does for an export."""
        cdef Binding maker = made_by
        if self.method_of is None:
            raise TypeError(f"{self.symbol} is an export, not a method line")
        if maker.uri != self.uri or maker.symbol != self.method_of or maker._fn is None:
            raise TypeError(f"{self.symbol}: made_by must be the called Binding of "
                            f"{self.uri}.{self.method_of}, got {maker!r}")
        if self.written_for != _TABLES_VERSION and maker.release != self.written_for:
            # as function() refuses it for an export: the tables' release passes
            # require_match on the method's name alone, so this line's argument list would
            # reach an object of another release unchecked
            mod = maker._fn.module
            raise _KernelVersionError(
                f"module {self.uri!r} ({mod.path}) is flashinfer "
                f"{mod.flashinfer_version or 'of unknown version'}; this {self.symbol} line "
                f"is flashinfer {self.written_for}'s argument list and calls objects of "
                f"modules of that release only")
        if self.release is None:
            mod = maker._fn.module
            _abi_match.require_match(self.uri, self.symbol, self.signature,
                                     mod.flashinfer_version, mod.version_from, mod.path,
                                     self.method_of, self.written_for)
            self.release = maker.release
        return obj.method(self.symbol)

    def load(self):
        """Resolve the module and symbol now (normally done on first call), checking the
        module's FlashInfer version (KernelVersionError)."""
        return self.function()

    @property
    def nargs(self):
        return self.n

    @property
    def launch_scalars(self):
        """The scalar arguments a prepared launch may change (``per_launch``)."""
        return tuple(n for i, n in enumerate(self.names) if (self.per_launch >> i) & 1)

    @property
    def writes(self):
        """The names of the arguments the kernel writes (marked ``!``)."""
        return tuple(n for i, n in enumerate(self.names) if (self.written >> i) & 1)

    cdef int tensor(self, CallFrame* f, int i, object obj) except -1:
        return self.tensor_as(f, i, obj, self.names[i])

    cdef int tensor_as(self, CallFrame* f, int i, object obj, str name) except -1:
        """Describe ``obj`` into slot ``i``, errors naming ``name`` (a Python keyword that
        differs from the ABI name)."""
        to_dltensor(obj, &f.slots[i], name)
        if g_recorder is not None and g_recorder_thread == PyThread_get_thread_ident():
            g_recorder.keep(obj)  # its storage must outlive this call (prepare)
        if f.slots[i].read_only and (self.written >> i) & 1:
            check_writable(&f.slots[i], name)
        f.args[i].type_index = kTVMFFIDLTensorPtr
        f.args[i].v_ptr = &f.slots[i].dl
        return 0

    cdef int alias(self, CallFrame* f, int i, int src, str name) except -1:
        """Slot ``i`` describes the same tensor as the packed slot ``src`` (an in-place
        operand that is also an output): a copy of the description, where packing the object
        again would describe it and pass the same checks again. Holds nothing of its own
        (``src`` releases the producer's reference). Errors name ``name``."""
        memcpy(&f.slots[i], &f.slots[src], sizeof(TensorSlot))
        f.slots[i].keep = NULL
        if f.slots[src].dl.shape == f.slots[src].shape:
            f.slots[i].dl.shape = f.slots[i].shape
        if f.slots[src].dl.strides == f.slots[src].strides:
            f.slots[i].dl.strides = f.slots[i].strides
        if f.slots[i].read_only and (self.written >> i) & 1:
            check_writable(&f.slots[i], name)
        f.args[i].type_index = kTVMFFIDLTensorPtr
        f.args[i].v_ptr = &f.slots[i].dl
        return 0

    cdef int opt_tensor(self, CallFrame* f, int i, object obj) except -1:
        if obj is None:
            f.args[i].type_index = kTVMFFINone
            f.args[i].v_int64 = 0
            f.slots[i].source = 0
            return 0
        return self.tensor(f, i, obj)

    cdef int pick_stream(self, CallFrame* f, object stream, void** handle) except -1:
        """Which stream the call runs on. Returns 1 when it must be set, 0 to leave the
        thread's TVM-FFI stream for the device as it is. Precedence: ``stream=`` if given;
        else the producer's current stream (DLPack exchange API: PyTorch's current stream;
        CUDA Array Interface v3 ``stream``); else the thread's TVM-FFI stream
        (``flashinfer_cy.use_stream``), which defaults to the legacy default stream."""
        cdef int i
        if stream is not None:
            resolve_stream(stream, handle)
            return 1
        if self.device_arg < 0 or f.slots[self.device_arg].dl.device.device_type != kDLCUDA:
            return 0
        i = self.stream_slot(f)
        if i < 0:
            return 0
        return producer_stream(&f.slots[i], handle)

    cdef int stream_slot(self, CallFrame* f) noexcept:
        """The first device-tensor argument whose producer names a stream, or -1."""
        cdef int i
        for i in range(self.n):
            if (self.kinds[i] == K_TENSOR or self.kinds[i] == K_OPT_TENSOR) and \
                    f.args[i].type_index == kTVMFFIDLTensorPtr and \
                    (f.slots[i].api != NULL or f.slots[i].has_producer_stream):
                return i
        return -1

    cdef int invoke(self, CallFrame* f, object stream, TVMFFIAny* result) except -1:
        return self.invoke_on(None, f, stream, result)

    cdef int invoke_on(self, Function method, CallFrame* f, object stream,
                       TVMFFIAny* result) except -1:
        """invoke, calling ``method`` (a method line's Function on one object, from
        :meth:`method`) instead of the export (``method`` None)."""
        cdef int i, kind, t, set_stream
        cdef TensorSlot* dev = NULL
        cdef TensorSlot* s
        cdef void* handle = NULL
        cdef int32_t dev_type = kDLCPU
        cdef int32_t dev_id = 0
        if f.n != self.n:
            raise AssertionError(f"{self.symbol}: frame has {f.n} slots, signature {self.n}")
        if self.device_arg >= 0:
            dev = &f.slots[self.device_arg]
            dev_type = dev.dl.device.device_type
            dev_id = dev.dl.device.device_id
        for i in range(self.n):
            kind = self.kinds[i]
            t = f.args[i].type_index
            if t == _UNSET:
                raise AssertionError(f"{self.symbol}: argument {self.names[i]} was not packed")
            if kind == K_TENSOR or kind == K_OPT_TENSOR:
                if t == kTVMFFIDLTensorPtr:
                    s = &f.slots[i]
                    if dev != NULL and s != dev:
                        check_same_device(s, self.names[i], dev, self.names[self.device_arg])
                elif not (kind == K_OPT_TENSOR and t == kTVMFFINone):
                    raise AssertionError(f"{self.symbol}: {self.names[i]} packed as {t}")
            elif kind == K_HOST_TENSOR:
                s = &f.slots[i]
                if t != kTVMFFIDLTensorPtr:
                    raise AssertionError(f"{self.symbol}: {self.names[i]} packed as {t}")
                if s.dl.device.device_type != kDLCPU and s.dl.device.device_type != kDLCUDAHost:
                    raise ValueError(f"{self.names[i]}: expected a host (CPU) array, got "
                                     f"{describe(s)}")
            elif (kind == K_OBJECT or kind == K_OPT_OBJECT) and t < 64 and not (
                    kind == K_OPT_OBJECT and t == kTVMFFINone):
                raise AssertionError(f"{self.symbol}: {self.names[i]} packed as {t}")
        if (method is None) != (self.method_of is None):
            raise TypeError(f"{self.symbol}: " + (
                f"a method of the object {self.uri}.{self.method_of} returns: pass its "
                f"Function (Binding.method)" if method is None else
                "an export, called by name: a method Function cannot stand in for it"))
        set_stream = self.pick_stream(f, stream, &handle)
        if g_recorder is not None and g_recorder_thread == PyThread_get_thread_ident():
            return g_recorder.record(self, method, f, dev_type, dev_id, handle, set_stream)
        if method is not None:
            return method.call(f.args, self.n, result, dev_type, dev_id, handle, set_stream,
                               self.env_alloc)
        return self.call_args(f.args, result, dev_type, dev_id, handle, set_stream)

    def __call__(self, *args, stream=None, Function method=None):
        """Call with positional arguments packed by the declared kinds (the typed kernel
        APIs validate first and pack from Cython; this is the open-ended path).
        ``method``: for a method line, its Function on one object (:meth:`method`)."""
        cdef CallFrame f
        cdef TVMFFIAny result
        cdef int i, kind
        if len(args) != self.n:
            raise TypeError(f"{self.symbol}() takes {self.n} arguments "
                            f"({' '.join(self.names)}), got {len(args)}")
        frame_init(&f, self.n)
        try:
            for i in range(self.n):
                a = args[i]
                kind = self.kinds[i]
                if kind == K_TENSOR or kind == K_HOST_TENSOR:
                    self.tensor(&f, i, a)
                elif kind == K_OPT_TENSOR:
                    self.opt_tensor(&f, i, a)
                elif kind == K_INT:
                    if isinstance(a, bool) or not isinstance(a, int):
                        raise TypeError(f"{self.names[i]}: expected an int, got {a!r}")
                    try:
                        set_int(&f, i, a)
                    except OverflowError:  # as call_generic says it, naming the argument
                        raise OverflowError(f"{self.names[i]}: {a} does not fit in int64") \
                            from None
                elif kind == K_FLOAT:
                    set_float(&f, i, finite_float(a, self.names[i], "a finite number"))
                elif kind == K_BOOL:
                    set_bool(&f, i, as_bool(a, self.names[i], "True or False"))
                elif kind == K_DTYPE:
                    f.args[i].type_index = kTVMFFIDataType
                    f.args[i].v_int64 = 0
                    parse_dtype(a, &f.args[i].v_dtype)
                elif kind == K_OPT_OBJECT and a is None:
                    set_none(&f, i)
                else:
                    if not isinstance(a, Object):
                        raise TypeError(f"{self.names[i]}: expected a flashinfer_cy Object, "
                                        f"got {a!r}")
                    pack_object(&f, i, <Object>a)
            set_none_any(&result)  # a recorded call (prepare) leaves it as it is
            self.invoke_on(method, &f, stream, &result)
            return take_result(&result)
        finally:
            frame_release(&f)

    def __repr__(self):
        of = f", method_of={self.method_of!r}" if self.method_of is not None else ""
        if self.env_alloc:
            of += ", env_alloc=True"
        return f"Binding({self.uri!r}, {self.symbol!r}, {self.signature!r}{of})"


# ----------------------------------------------------------------------------- recording

cdef class Recorder:
    """What ``Binding.invoke`` hands a checked frame to instead of calling the kernel
    (implemented by flashinfer_cy._core.prepared.PreparedCall)."""

    cdef int record(self, Binding b, Function fn, CallFrame* f, int32_t dev_type,
                    int32_t dev_id, void* stream, bint set_stream) except -1:
        raise NotImplementedError

    cdef int keep(self, object obj) except -1:
        raise NotImplementedError


# One recorder at a time, for the thread that started it: another thread's calls (which
# see it too) run as usual. Checked by invoke() with one compare while none is active.
cdef Recorder g_recorder = None
cdef unsigned long g_recorder_thread = 0


cdef int start_recording(Recorder r) except -1:
    global g_recorder, g_recorder_thread
    if g_recorder is not None:
        raise RuntimeError("prepare() is already capturing a call (on this or another "
                           "thread); prepare one call at a time")
    g_recorder_thread = PyThread_get_thread_ident()
    g_recorder = r
    return 0


cdef bint recording() noexcept:
    return g_recorder is not None and g_recorder_thread == PyThread_get_thread_ident()


cdef void stop_recording() noexcept:
    global g_recorder
    g_recorder = None

cdef object work_stream(Binding b, CallFrame* f, object stream, int device):
    """The stream handle (an int) the kernel will run on, for stream-ordered allocations
    beside it (outputs and workspaces a call allocates): as ``pick_stream``, else the
    thread's TVM-FFI stream for ``device``."""
    cdef void* handle = NULL
    if b.pick_stream(f, stream, &handle) != 0:
        return <uintptr_t>handle
    return _runtime._env_get_stream(kDLCUDA, device)


# ----------------------------------------------------------------------------- generic call

cdef class DataType:
    """A dtype argument for the generic call path: ``DataType("float16")``."""
    cdef public object name

    def __init__(self, name):
        self.name = name


cdef class Device:
    """A device argument for the generic call path: ``Device("cuda", 0)``."""
    cdef public int device_type
    cdef public int device_id

    def __init__(self, device_type, int device_id=0):
        self.device_type = {"cpu": kDLCPU, "cuda": kDLCUDA}.get(device_type, device_type)
        self.device_id = device_id


cdef class OpaquePtr:
    """A ``void*`` argument for the generic call path."""
    cdef public object value

    def __init__(self, value):
        self.value = int(value)


def call_generic(Function fn not None, tuple args not None, stream):
    """Pack arbitrary Python values (None, bool, int, float, str, dtype/device/pointer
    wrappers, tensors, Objects) and call ``fn``. Slower than a Binding; for tests/tools."""
    cdef CallFrame f
    cdef TVMFFIAny result
    cdef int i, n = len(args)
    cdef int dev_idx = -1
    cdef void* handle = NULL
    cdef bint set_stream = False
    cdef int32_t dev_type = kDLCPU
    cdef int32_t dev_id = 0
    if n > MAX_ARGS:
        raise ValueError(f"at most {MAX_ARGS} arguments, got {n}")
    ensure_ffi()
    keep = []  # encoded strings must outlive the call
    frame_init(&f, n)
    try:
        for i in range(n):
            a = args[i]
            if a is None:
                set_none(&f, i)
            elif isinstance(a, bool):
                set_bool(&f, i, a)
            elif isinstance(a, int):
                try:
                    set_int(&f, i, a)
                except OverflowError:
                    raise OverflowError(f"argument #{i}: {a} does not fit in int64") from None
            elif isinstance(a, float):
                set_float(&f, i, a)
            elif isinstance(a, str):
                b = a.encode()
                keep.append(b)
                f.args[i].type_index = kTVMFFIRawStr
                f.args[i].v_c_str = <const char*>b
            elif isinstance(a, Object):
                set_object(&f, i, <Object>a)
            elif isinstance(a, DataType):
                f.args[i].type_index = kTVMFFIDataType
                f.args[i].v_int64 = 0
                parse_dtype((<DataType>a).name, &f.args[i].v_dtype)
            elif isinstance(a, Device):
                f.args[i].type_index = kTVMFFIDevice
                f.args[i].v_device.device_type = <DLDeviceType>(<Device>a).device_type
                f.args[i].v_device.device_id = (<Device>a).device_id
            elif isinstance(a, OpaquePtr):
                f.args[i].type_index = kTVMFFIOpaquePtr
                f.args[i].v_ptr = <void*><uintptr_t>(<OpaquePtr>a).value
            else:
                to_dltensor(a, &f.slots[i], f"argument #{i}")
                f.args[i].type_index = kTVMFFIDLTensorPtr
                f.args[i].v_ptr = &f.slots[i].dl
                if dev_idx < 0:
                    dev_idx = i
                    dev_type = f.slots[i].dl.device.device_type
                    dev_id = f.slots[i].dl.device.device_id
        if stream is not None:
            resolve_stream(stream, &handle)
            set_stream = True
        fn.call(f.args, n, &result, dev_type, dev_id, handle, set_stream)
        return take_result(&result)
    finally:
        frame_release(&f)
