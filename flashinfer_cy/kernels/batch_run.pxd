# The run half of every plan/run wrapper (batch_run.pyx): the checked run with its kept
# frame, the prepared launch. A wrapper subclasses CheckedRunner and fills in the hooks
# (what its run export takes from the caller and from the plan).
from cpython.ref cimport PyObject
from libc.stdint cimport int64_t, uint32_t
from flashinfer_cy._core.binding cimport CallFrame
from flashinfer_cy.kernels.batch_plan cimport BatchPlanner, PlanBase


cdef class CheckedRunner(BatchPlanner):
    cdef str q_name                    # the argument out and lse are shaped after

    # -- hooks (the wrapper's) -----------------------------------------------------------
    cdef int _flags(self, PlanBase p, object arg) except -1
    cdef int _pack_inputs(self, CallFrame* f, PlanBase p, object a, object b, object c,
                          object d) except -1
    cdef int _check_against_plan(self, CallFrame* f, PlanBase p) except -1
    cdef int _pack_plan_args(self, CallFrame* f, PlanBase p, int flags) except -1
    cdef bint _caller_objects(self, PyObject** objs, PlanBase p, object a, object b,
                              object c, object d, object out, object lse) noexcept
    cdef int _describe_unpaired(self, CallFrame* f, PlanBase p, object a, object b,
                                object c, object d) except -1

    # -- shared --------------------------------------------------------------------------
    cdef int _pack_plan_common(self, CallFrame* f, PlanBase p) except -1
    cdef int _describe_outputs(self, CallFrame* f, PlanBase p, object out,
                               object lse) except -1
    cdef int _pack_outputs(self, CallFrame* f, PlanBase p, object out, object lse) except -1
    cdef int _check_outputs(self, CallFrame* f, PlanBase p) except -1
    cdef object _run(self, object a, object b, object c, object d, object out, object lse,
                     object return_lse_arg, object flags_arg, object stream, object plan)
    cdef int _launch(self, PlanBase p, CallFrame* f, void* stream) except -1
    cdef object _prepare(self, object a, object b, object c, object d, object out,
                         object lse, object flags_arg, object stream)
