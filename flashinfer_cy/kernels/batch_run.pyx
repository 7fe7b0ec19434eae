# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The run half of the plan/run wrappers: the checked run() and the prepared launch.

**run()** (``CheckedRunner._run``) checks the caller's tensors against the current plan
(the wrapper's hooks: ``_pack_inputs``, ``_check_against_plan``), packs what comes from the
plan (``_pack_plan_args``), allocates missing outputs on the run's stream and makes one
GIL-free call. The checked frame of the last run is kept (checked_frame.pyx): a later run()
whose tensors look exactly like those (same types, shapes, strides, dtypes, alignment) with
the same plan and flags reuses it and only swaps data pointers.

**prepare()** packs everything once into a :class:`PreparedRun`; ``launch()`` is then one
GIL-free call, and rebinds itself to a new plan of the same kernel after a replan.

A wrapper's run()/prepare() pass up to four input objects (``a``..``d``: MHA q, a paged
cache or None, k, v; MLA q_nope, q_pe, ckv_cache, kpe_cache) and one flags argument
(MHA enable_pdl, MLA return_lse_base_on_e) that the hooks interpret.
"""

from cpython.ref cimport PyObject
from libc.stdlib cimport malloc, free
from libc.stdint cimport int64_t, uint32_t, uintptr_t

from flashinfer_cy._abi.dlpack cimport kDLCUDA
from flashinfer_cy._abi.tvm_ffi cimport TVMFFIAny
from flashinfer_cy._core.binding cimport (Binding, CallFrame, frame_init, frame_release,
                                          frame_init_masked, frame_release_masked, set_object,
                                          MAX_ARGS)
from flashinfer_cy._core.runtime cimport Object
from flashinfer_cy._core.checked_frame cimport CheckedFrame, kept_stream, reuse_frame
from flashinfer_cy._core.stream cimport resolve_stream
from flashinfer_cy._core.tensor cimport TensorSlot, own_shape, as_bool, release_slot
from flashinfer_cy.kernels.attention cimport check_out, check_lse, run_stream
from flashinfer_cy.kernels.batch_plan cimport BatchPlanner, PlanBase, RunLayout, no_plan_message

from flashinfer_cy import errors as _errors
from flashinfer_cy._core.array import DeviceArray


cdef class CheckedRunner(BatchPlanner):
    """A BatchPlanner whose plans are run through the checked, kept frame."""

    # -- hooks: every wrapper overrides these ---------------------------------------------

    cdef int _flags(self, PlanBase p, object arg) except -1:
        raise NotImplementedError

    cdef int _pack_inputs(self, CallFrame* f, PlanBase p, object a, object b, object c,
                          object d) except -1:
        """Describe the caller's inputs into their slots, each checked on its own (device,
        dtype against the plan, rank, layout)."""
        raise NotImplementedError

    cdef int _check_against_plan(self, CallFrame* f, PlanBase p) except -1:
        """The packed inputs against the plan (shapes, heads, page size, pages)."""
        raise NotImplementedError

    cdef int _pack_plan_args(self, CallFrame* f, PlanBase p, int flags) except -1:
        """Everything that comes from the plan (workspaces, plan info, device metadata,
        scalars); also what a prepared launch repacks after a replan."""
        raise NotImplementedError

    cdef bint _caller_objects(self, PyObject** objs, PlanBase p, object a, object b,
                              object c, object d, object out, object lse) noexcept:
        """The objects run() describes into its caller slots, by slot (reuse_frame),
        borrowed from the caller. False: some slots are not one object each (NULL in
        ``objs``); _describe_unpaired describes them."""
        return False

    cdef int _describe_unpaired(self, CallFrame* f, PlanBase p, object a, object b,
                                object c, object d) except -1:
        raise NotImplementedError

    cdef int _pack_plan_common(self, CallFrame* f, PlanBase p) except -1:
        """What every run export takes from the plan first: the workspaces and the plan
        info (released first: a prepared launch's rebind repacks them)."""
        release_slot(&f.slots[p.L.fws])
        release_slot(&f.slots[p.L.iws])
        p.run_b.tensor(f, p.L.fws, self._float_ws)
        p.run_b.tensor(f, p.L.iws, self._int_ws)
        return set_object(f, p.L.info, <Object>p.plan_info)

    # -- outputs -------------------------------------------------------------------------

    cdef int _describe_outputs(self, CallFrame* f, PlanBase p, object out,
                               object lse) except -1:
        p.run_b.tensor_as(f, p.L.o, out, "out")  # the ABI's "o"
        if lse is None:
            return p.run_b.opt_tensor(f, p.L.lse, None)
        return p.run_b.tensor_as(f, p.L.lse, lse, "lse")  # the ABI's "maybe_lse"

    cdef int _pack_outputs(self, CallFrame* f, PlanBase p, object out, object lse) except -1:
        self._describe_outputs(f, p, out, lse)
        return self._check_outputs(f, p)

    cdef int _check_outputs(self, CallFrame* f, PlanBase p) except -1:
        """out is shaped and typed like q (MLA: q_nope), lse float32 [rows, heads]."""
        cdef RunLayout* L = &p.L
        cdef TensorSlot* qs = &f.slots[L.q]
        cdef int64_t shape[3]
        cdef int i
        for i in range(3):
            shape[i] = qs.dl.shape[i]
        check_out(&f.slots[L.o], "out", qs, self.q_name, 3, shape)
        if f.args[L.lse].type_index == 7:  # kTVMFFIDLTensorPtr: an lse was given
            check_lse(&f.slots[L.lse], shape[0], shape[1], qs)
        return 0

    # -- run -----------------------------------------------------------------------------

    cdef object _run(self, object a, object b, object c, object d, object out, object lse,
                     object return_lse_arg, object flags_arg, object stream, object plan):
        cdef bint return_lse = as_bool(return_lse_arg, "return_lse", "True or False")
        cdef CallFrame f
        cdef PyObject* objs[MAX_ARGS]
        cdef TensorSlot* qs
        cdef void* handle = NULL
        cdef PlanBase p = self.current_plan if plan is None else plan
        cdef CheckedFrame kept = self._last_run
        cdef int flags
        cdef RunLayout* L
        cdef uint32_t caller
        cdef uint32_t held = 0
        cdef bint outputs_given = out is not None and (lse is not None or not return_lse)
        self._check_current(p)
        L = &p.L
        flags = self._flags(p, flags_arg)
        caller = p.caller
        if outputs_given and kept is not None and kept.key is p and kept.flags == flags:
            # The last run() checked tensors against this plan and packed the rest; if
            # these look exactly like those, all of it holds (checked_frame.pyx).
            try:
                if not self._caller_objects(objs, p, a, b, c, d, out, lse):
                    frame_init_masked(&f, p.run_b.n, caller)
                    held = caller
                    self._describe_unpaired(&f, p, a, b, c, d)
                if reuse_frame(kept, &f, objs, p.run_b, &held):
                    kept_stream(kept, &f, stream, p.device, &handle)
                    self._launch(p, &f, handle)
                    return (out, lse) if return_lse else out
            finally:
                if held:
                    frame_release_masked(&f, held)
        frame_init(&f, p.run_b.n)
        try:
            self._pack_inputs(&f, p, a, b, c, d)
            self._check_against_plan(&f, p)
            self._pack_plan_args(&f, p, flags)
            if outputs_given:  # before the stream is picked: it may come from out
                self._describe_outputs(&f, p, out, lse)
            run_stream(p.run_b, &f, stream, &handle)
            if not outputs_given:  # allocated on that stream
                qs = &f.slots[L.q]
                if out is None:
                    out = DeviceArray.empty((qs.dl.shape[0], qs.dl.shape[1], qs.dl.shape[2]),
                                            p.dtype, p.device, <uintptr_t>handle)
                if lse is None and return_lse:
                    lse = DeviceArray.empty((qs.dl.shape[0], qs.dl.shape[1]), "float32",
                                            p.device, <uintptr_t>handle)
                self._describe_outputs(&f, p, out, lse)
            self._check_outputs(&f, p)
            if not p.rewrites_inputs:  # rewritten slots are not comparable
                self._caller_objects(objs, p, a, b, c, d, out, lse)
                self._last_run = CheckedFrame.keep(&f, caller, objs, p, flags,
                                                   p.run_b.stream_slot(&f))
            self._launch(p, &f, handle)
            return (out, lse) if return_lse else out
        finally:
            frame_release(&f)

    cdef int _launch(self, PlanBase p, CallFrame* f, void* stream) except -1:
        """Call the run export with a frame whose every argument was checked (now or by
        the kept frame's run), on the resolved ``stream``, as launch() does."""
        cdef TVMFFIAny result
        self._order_after_plan(p, stream)
        if f.slots[p.L.q].dl.shape[0] > 0:
            p.run_b.call_args(f.args, &result, kDLCUDA, p.device, stream, True)
        return 0

    cdef object _prepare(self, object a, object b, object c, object d, object out,
                         object lse, object flags_arg, object stream):
        cdef PlanBase p = self.current_plan
        cdef PreparedRun r
        cdef TensorSlot* qs
        cdef void* handle = NULL
        cdef int i
        self._check_current(p)
        r = PreparedRun.__new__(PreparedRun)
        r.frame = <CallFrame*>malloc(sizeof(CallFrame))
        if r.frame == NULL:
            raise MemoryError()
        frame_init(r.frame, p.run_b.n)
        r.wrapper = self
        r.plan = p
        self._pack_inputs(r.frame, p, a, b, c, d)
        self._check_against_plan(r.frame, p)
        r.flags = self._flags(p, flags_arg)
        self._pack_plan_args(r.frame, p, r.flags)
        if stream is None:
            run_stream(p.run_b, r.frame, None, &handle)
        else:
            resolve_stream(stream, &handle)
        qs = &r.frame.slots[p.L.q]
        if out is None:
            out = DeviceArray.empty((qs.dl.shape[0], qs.dl.shape[1], qs.dl.shape[2]), p.dtype,
                                    p.device, <uintptr_t>handle)
        self._pack_outputs(r.frame, p, out, lse)
        for i in range(r.frame.n):
            if r.frame.args[i].type_index == 7:  # kTVMFFIDLTensorPtr
                own_shape(&r.frame.slots[i])
        r.keep = [a, b, c, d, out, lse]
        r.out = out
        r.lse = lse
        r.stream = handle
        r.device = p.device
        r.empty = qs.dl.shape[0] == 0
        r.run_b = p.run_b
        r.run_b.function()  # loads the module (and its release's layout) now
        r.generation = p.generation
        self._order_after_plan(p, handle)
        return r


# ------------------------------------------------------------------------------- prepared

cdef class PreparedRun:
    """A run with every argument packed once: ``launch()`` is one GIL-free kernel call.

    Made by ``wrapper.prepare(...)``. The tensors are captured as they were (pointer, shape,
    strides); keep their storage alive and unchanged in shape (the object holds references).
    After the wrapper plans again the next ``launch()`` rebinds to the new plan (checking
    the tensors against it, PlanMismatchError if they no longer fit); a plan for another
    kernel variant (window, soft cap, dtype, backend) needs a new ``prepare()``.
    ``repoint(q=, out=, lse=, q_pe=)`` swaps data pointers (same shape) without repacking.
    """

    cdef CallFrame* frame
    cdef CheckedRunner wrapper
    cdef PlanBase plan
    cdef int64_t generation
    cdef Binding run_b  # the run export (call_args: in the module release's layout)
    cdef void* stream
    cdef int device
    cdef int flags
    cdef bint empty
    cdef list keep
    cdef readonly object out
    cdef readonly object lse

    def __init__(self, *args, **kwargs):
        # Only prepare() fills the frame; an empty one must never reach launch()/repoint().
        raise TypeError("PreparedRun objects are made by wrapper.prepare(...), not directly")

    cdef int _rebind(self) except -1:
        cdef CheckedRunner w = self.wrapper
        cdef PlanBase p = w.current_plan
        if p is None:
            raise _errors.PlanNotReadyError(no_plan_message(w))
        if p.uri != self.plan.uri or p.kind_code != self.plan.kind_code:
            raise _errors.PlanMismatchError(
                f"the wrapper was replanned for another kernel ({p.uri}, was "
                f"{self.plan.uri}): call prepare() again")
        if self.plan.rewrites_inputs:
            raise _errors.PlanMismatchError("FA3 ragged HND: call prepare() again after plan()")
        w._check_against_plan(self.frame, p)
        w._pack_plan_args(self.frame, p, self.flags)
        w._order_after_plan(p, self.stream)
        self.plan = p
        self.run_b = p.run_b
        self.generation = p.generation
        return 0

    def launch(self):
        """Run the prepared call; returns ``out`` (None once ``repoint(out=...)`` moved it
        to memory the caller owns). Asynchronous."""
        cdef TVMFFIAny result
        if self.frame == NULL:
            raise TypeError("launch(): this PreparedRun was not made by wrapper.prepare(...)")
        if self.generation != self.wrapper._generation:
            self._rebind()
        if not self.empty:
            self.run_b.call_args(self.frame.args, &result, kDLCUDA, self.device,
                                 self.stream, True)
        return self.out

    def repoint(self, q=None, out=None, lse=None, q_pe=None):
        """Point q (MLA: q_nope) / out / lse / q_pe (MLA) at other memory of the same shape
        (integer addresses)."""
        if self.frame == NULL:
            raise TypeError("repoint(): this PreparedRun was not made by wrapper.prepare(...)")
        cdef RunLayout* L = &self.plan.L
        for value, idx, name in ((q, L.q, "q"), (out, L.o, "out"), (lse, L.lse, "lse"),
                                 (q_pe, L.q_pe, "q_pe")):
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name}: expected an integer device address, got {value!r}")
            if idx < 0 or self.frame.args[idx].type_index != 7:
                raise ValueError(f"{name}: was not given to prepare()")
            if value == 0 or value % 16:
                raise ValueError(f"{name}: address {value:#x} must be non-zero and 16-byte "
                                 f"aligned")
            self.frame.slots[idx].dl.data = <void*><uintptr_t>value
            if idx == L.o:  # the object given to prepare() is no longer what gets written
                self.out = None
            elif idx == L.lse:
                self.lse = None

    @property
    def stream_handle(self):
        return <uintptr_t>self.stream

    def __dealloc__(self):
        if self.frame != NULL:
            frame_release(self.frame)
            free(self.frame)
            self.frame = NULL
