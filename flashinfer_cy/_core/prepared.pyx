# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Prepared launches for any kernel function: its checks and packing once, then one
GIL-free call per kernel each launch.

    step = fc.prepare(fc.silu_and_mul, gate_up, out=act)   # checks, packs, launches nothing
    step.launch()                                          # the kernel, on the same stream
    sample = fc.prepare(fc.sampling_from_probs, probs, seed=0, offset=0)
    sample.set(philox_offset=4)                            # per-launch scalars, by ABI name
    sample.launch()

``prepare`` runs ``fn`` with a recorder active on this thread: every ``Binding.invoke`` the
function makes is checked exactly as in a call, then copied here instead of called (a
function that launches several kernels records each, in order). The tensors it packed are
held, so their storage lives as long as the prepared call. What a launch does is fixed at
prepare time: shapes, strides, scalars, the stream and the PDL choice; ``set`` changes the
scalars a Binding marks ``per_launch`` and ``repoint`` moves a tensor to another address of
the same shape. For wrappers with a plan (the batch attention wrappers) use their own
``prepare()``, which also follows re-plans.
"""

from cpython.pycapsule cimport PyCapsule_GetPointer
from cpython.ref cimport PyObject, Py_XINCREF
from libc.stdint cimport int8_t, int32_t, int64_t, uint32_t, uintptr_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

from flashinfer_cy._abi.dlpack cimport DLPackExchangeAPI, DLTensor, kDLCUDA
from flashinfer_cy._abi.tvm_ffi cimport (TVMFFIAny, TVMFFISafeCallType, kTVMFFIDLTensorPtr,
                                         kTVMFFINone)
from flashinfer_cy._core.binding cimport (Binding, CallFrame, Recorder, frame_release,
                                          layout_args, start_recording, MAX_ARGS, stop_recording, set_bool,
                                          set_float, set_int, K_BOOL, K_FLOAT, K_INT)
from flashinfer_cy._core.runtime cimport (Function, call_maybe_env_alloc, cudart_symbol,
                                          ensure_env_alloc, take_result)
from flashinfer_cy._core.stream cimport resolve_stream
from flashinfer_cy._core.tensor cimport as_bool, finite_float, own_shape

from types import ModuleType as _ModuleType

cdef int64_t INT64_MIN_ = -(1 << 63)


cdef struct Launch:        # one recorded kernel call
    CallFrame* frame       # owned: a heap copy of the checked frame
    PyObject* fn           # borrowed from PreparedCall._fns
    TVMFFISafeCallType sym  # its export (the C-floor loop calls it without the GIL)
    void* fself             # the safe call's self: NULL, or a method's ffi::Function (fn's)
    int32_t dev_type
    int32_t dev_id
    void* stream
    bint set_stream
    bint env_alloc          # install the environment allocator (Binding.env_alloc)
    int lay_n               # the module's argument list (Binding.lay_*, borrowed: the
    const int8_t* lay_src   # Binding is held in PreparedCall._bindings)
    const TVMFFIAny* lay_const


cdef class PreparedCall(Recorder):
    """The kernel calls one call of a flashinfer_cy function makes, checked and packed
    once. Made by :func:`prepare`."""

    cdef Launch* calls
    cdef int n_calls
    cdef int capacity
    cdef list _bindings     # the Binding of each call (names, kinds, per_launch)
    cdef list _fns          # the Function of each call
    cdef list _keep         # every tensor object packed: its storage must live
    cdef readonly object result  # what the function returned when prepared

    def __init__(self, *args, **kwargs):
        raise TypeError("PreparedCall objects are made by flashinfer_cy.prepare(fn, ...)")

    cdef int record(self, Binding b, Function fn, CallFrame* f, int32_t dev_type,
                    int32_t dev_id, void* stream, bint set_stream) except -1:
        cdef Launch* grown
        cdef CallFrame* c
        cdef int i
        if fn is None:  # an export: loads the module now, not at the first launch
            fn = b.function()
        # (a method's Function holds the object serving it: _fns keeps both alive)
        if self.n_calls == self.capacity:
            grown = <Launch*>malloc((self.capacity * 2 + 2) * sizeof(Launch))
            if grown == NULL:
                raise MemoryError()
            if self.n_calls:
                memcpy(grown, self.calls, self.n_calls * sizeof(Launch))
            free(self.calls)
            self.calls = grown
            self.capacity = self.capacity * 2 + 2
        c = <CallFrame*>malloc(sizeof(CallFrame))
        if c == NULL:
            raise MemoryError()
        memcpy(c, f, sizeof(CallFrame))
        for i in range(f.n):
            c.slots[i].keep = NULL
            if c.args[i].type_index != kTVMFFIDLTensorPtr:
                continue
            # The copy's tensors point at the copy's slots, and own their shape/strides
            # (the caller's point into its stack frame or a producer's memory).
            c.args[i].v_ptr = &c.slots[i].dl
            if f.slots[i].dl.shape == f.slots[i].shape:
                c.slots[i].dl.shape = c.slots[i].shape
            if f.slots[i].dl.strides == f.slots[i].strides:
                c.slots[i].dl.strides = c.slots[i].strides
            own_shape(&c.slots[i])
            c.slots[i].keep = f.slots[i].keep  # the caller releases its own reference
            Py_XINCREF(c.slots[i].keep)
        self.calls[self.n_calls].frame = c
        self.calls[self.n_calls].fn = <PyObject*>fn
        self.calls[self.n_calls].sym = fn.fn
        self.calls[self.n_calls].fself = fn.self_handle
        self.calls[self.n_calls].dev_type = dev_type
        self.calls[self.n_calls].dev_id = dev_id
        self.calls[self.n_calls].stream = stream
        self.calls[self.n_calls].set_stream = set_stream
        self.calls[self.n_calls].env_alloc = b.env_alloc
        self.calls[self.n_calls].lay_n = b.lay_n
        self.calls[self.n_calls].lay_src = b.lay_src
        self.calls[self.n_calls].lay_const = b.lay_const
        self.n_calls += 1
        self._bindings.append(b)
        self._fns.append(fn)
        return 0

    cdef int keep(self, object obj) except -1:
        self._keep.append(obj)
        return 0

    def launch(self, stream=None):
        """Run the recorded kernel calls in order; returns what the function returned when
        prepared (e.g. its ``out``). ``stream``: run on this stream instead of the one
        chosen at prepare time (e.g. a graph-capture stream). Asynchronous."""
        cdef TVMFFIAny result
        cdef TVMFFIAny tmp[MAX_ARGS]
        cdef Launch* L
        cdef int k
        cdef void* handle = NULL
        cdef bint override = stream is not None
        if override:
            resolve_stream(stream, &handle)
        for k in range(self.n_calls):
            L = &self.calls[k]
            result.type_index = kTVMFFINone
            result.zero_padding = 0
            result.v_int64 = 0
            (<Function>L.fn).call(layout_args(L.frame.args, L.lay_n, L.lay_src, L.lay_const,
                                              tmp),
                                  L.lay_n if L.lay_n else L.frame.n, &result, L.dev_type,
                                  L.dev_id, handle if override else L.stream,
                                  True if override else L.set_stream, L.env_alloc)
            if result.type_index != kTVMFFINone:
                take_result(&result)  # a kernel function's result is not used: drop it
        return self.result

    def _c_burst_us(self, int n, tuple exchange=()):
        """The C floor of this launch, for the benchmarks (tools/bench_decode_step.py): after
        a device synchronize, ``n`` launches from a C loop -- the same exports, arguments
        and fcy_call sequence, no Python between calls. With ``exchange`` (tensors of a
        producer with a DLPack exchange API, e.g. torch), each launch first describes every
        one of them through that API and asks it for the current stream, GIL held, as any
        consumer of those tensors must: that floor minus the plain one is the producer's own
        cost. Host microseconds per launch, or -1 if a call failed."""
        cdef int (*sync)() noexcept nogil
        cdef timespec t0, t1
        cdef TVMFFIAny result
        cdef TVMFFIAny tmp[MAX_ARGS]
        cdef Launch* L
        cdef DLTensor scratch
        cdef void* cur = NULL
        cdef const DLPackExchangeAPI* api = NULL
        cdef int i, j, k, rc = 0
        cdef int m = len(exchange)
        cdef PyObject* objs[32]
        if m > 32:
            raise ValueError("_c_burst_us: at most 32 exchange tensors")
        for j in range(m):
            objs[j] = <PyObject*>exchange[j]
        if m:
            cap = type(exchange[0]).__dlpack_c_exchange_api__
            api = <const DLPackExchangeAPI*>PyCapsule_GetPointer(cap, b"dlpack_exchange_api")
        sync = <int (*)() noexcept nogil>cudart_symbol(b"cudaDeviceSynchronize")
        if sync == NULL:
            raise RuntimeError("_c_burst_us: no CUDA runtime loaded")
        for k in range(self.n_calls):
            if self.calls[k].env_alloc:
                ensure_env_alloc()
        with nogil:
            sync()
        clock_gettime(CLOCK_MONOTONIC, &t0)
        for i in range(n):
            for j in range(m):  # what describing a torch tensor costs, on every call
                rc |= api.dltensor_from_py_object_no_sync(<void*>objs[j], &scratch)
            if m:
                rc |= api.current_work_stream(kDLCUDA, 0, &cur)
            with nogil:
                for k in range(self.n_calls):
                    L = &self.calls[k]
                    rc |= call_maybe_env_alloc(L.sym, L.fself,
                                               layout_args(L.frame.args, L.lay_n, L.lay_src,
                                                           L.lay_const, tmp),
                                               L.lay_n if L.lay_n else L.frame.n, &result,
                                               L.dev_type, L.dev_id, L.stream, L.set_stream,
                                               L.env_alloc)
        clock_gettime(CLOCK_MONOTONIC, &t1)
        if rc != 0:
            return -1.0
        return ((t1.tv_sec - t0.tv_sec) * 1e6 + (t1.tv_nsec - t0.tv_nsec) * 1e-3) / max(n, 1)

    cdef int _find(self, str name, object call, bint scalar) except -1:
        """The call index holding argument ``name`` (``call`` narrows it when several do)."""
        cdef Binding b
        found = [k for k, b in enumerate(self._bindings) if b.arg_index(name) >= 0
                 and (call is None or k == call)]
        if not found:
            what = "scalar" if scalar else "tensor"
            raise ValueError(f"{name}: no {what} argument of that name in the prepared "
                             f"calls ({self._describe()})")
        if len(found) > 1:
            raise ValueError(f"{name}: an argument of calls {found}; pass call=<index>")
        return found[0]

    def set(self, call=None, **values):
        """Change per-launch scalars by ABI argument name (those the Binding marks
        ``per_launch``, e.g. ``philox_seed``, ``philox_offset``). All are checked before
        any is changed."""
        cdef Binding b
        cdef int k, i, kind
        todo = []
        for name, value in values.items():
            k = self._find(name, call, True)
            b = self._bindings[k]
            i = b.arg_index(name)
            if not (b.per_launch >> i) & 1:
                raise ValueError(f"{name}: not a per-launch argument of {b.symbol} (those "
                                 f"are: {', '.join(b.launch_scalars) or 'none'}); prepare "
                                 f"again to change it")
            kind = b.kinds[i]
            if kind == K_INT:
                if isinstance(value, bool) or not isinstance(value, int) or \
                        not INT64_MIN_ <= value < (1 << 64):
                    raise TypeError(f"{name}: expected an int in [-2**63, 2**64), got "
                                    f"{value!r}")
                # a uint64_t parameter takes the bit pattern (TVM-FFI static_casts)
                todo.append((k, i, kind, value - (1 << 64) if value >= (1 << 63) else value))
            elif kind == K_FLOAT:
                todo.append((k, i, kind, finite_float(value, name, "a finite number")))
            else:
                todo.append((k, i, kind, as_bool(value, name, "True or False")))
        for k, i, kind, v in todo:
            if kind == K_INT:
                set_int(self.calls[k].frame, i, v)
            elif kind == K_FLOAT:
                set_float(self.calls[k].frame, i, v)
            else:
                set_bool(self.calls[k].frame, i, v)

    def repoint(self, call=None, **addresses):
        """Point tensor arguments (by ABI name) at other device memory of the same shape,
        strides and dtype. An address must keep the original's alignment modulo 16 bytes,
        the widest vector access of these kernels, so every alignment check made at
        prepare time still holds. The caller keeps that memory alive."""
        cdef int k, i
        cdef uintptr_t old
        todo = []
        for name, value in addresses.items():
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name}: expected an integer device address, got {value!r}")
            k = self._find(name, call, False)
            i = (<Binding>self._bindings[k]).arg_index(name)
            if self.calls[k].frame.args[i].type_index != kTVMFFIDLTensorPtr:
                raise ValueError(f"{name}: not a tensor given to the prepared call")
            old = <uintptr_t>self.calls[k].frame.slots[i].dl.data
            if value <= 0 or value >= (1 << 64) or value % 16 != old % 16:
                raise ValueError(f"{name}: address {value:#x} must be non-zero and aligned "
                                 f"like the prepared one ({old:#x}) modulo 16 bytes")
            todo.append((k, i, value))
        for k, i, value in todo:
            self.calls[k].frame.slots[i].dl.data = <void*><uintptr_t>value

    @property
    def num_calls(self):
        """How many kernel calls one launch makes."""
        return self.n_calls

    @property
    def arguments(self):
        """Per call: (symbol, ABI argument names)."""
        return [(b.symbol, b.names) for b in self._bindings]

    @property
    def stream_handles(self):
        """Per call, the stream it runs on (0: the thread's TVM-FFI stream was left)."""
        return [<uintptr_t>self.calls[k].stream for k in range(self.n_calls)]

    def _describe(self):
        return "; ".join(f"{b.symbol}({', '.join(b.names)})" for b in self._bindings) \
            or "no calls"

    def __repr__(self):
        return f"<PreparedCall {self._describe()}>"

    def __dealloc__(self):
        cdef int k
        for k in range(self.n_calls):
            frame_release(self.calls[k].frame)
            free(self.calls[k].frame)
        free(self.calls)
        self.calls = NULL
        self.n_calls = 0


def prepare(fn, *args, **kwargs):
    """Check and pack ``fn(*args, **kwargs)`` once, launching nothing; returns a
    :class:`PreparedCall` whose ``launch()`` makes the same kernel calls, GIL-free, with no
    per-call checks. ``fn`` is a flashinfer_cy kernel function (norm, rope, activation,
    sampling, merge, top-k, page append, single attention). Objects with a plan of their
    own (batch attention wrappers) have their own ``prepare()``."""
    cdef PreparedCall p
    owner = getattr(fn, "__self__", None)  # a compiled module function's is its module
    if owner is not None and hasattr(owner, "prepare") and not isinstance(
            owner, (type, _ModuleType)):
        raise TypeError(f"prepare(): {fn!r} belongs to an object with its own prepare(); "
                        f"call that instead")
    if not callable(fn):
        raise TypeError(f"prepare(): fn must be a flashinfer_cy kernel function, got {fn!r}")
    p = PreparedCall.__new__(PreparedCall)
    p._bindings = []
    p._fns = []
    p._keep = []
    start_recording(p)
    try:
        p.result = fn(*args, **kwargs)
    finally:
        stop_recording()
    return p
