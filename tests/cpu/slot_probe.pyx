# cython: language_level=3
"""Test probe (test_ffi_core.py): the Cython-level tensor checks and run()'s steady-state
reuse (checked_frame.pxd), which no public API reaches on its own."""

from cpython.ref cimport PyObject
from libc.stdint cimport uint32_t

from flashinfer_cy._core.binding cimport (Binding, CallFrame, MAX_ARGS, frame_init,
                                          frame_release, frame_release_masked)
from flashinfer_cy._core.checked_frame cimport CheckedFrame, reuse_frame
from flashinfer_cy._core.tensor cimport (TensorSlot, to_dltensor, release_slot,
                                         check_contiguous, check_writable)


def contiguous(obj):
    """check_contiguous on ``obj`` described as the argument ``x``."""
    cdef TensorSlot s
    to_dltensor(obj, &s, "x")
    try:
        check_contiguous(&s, "x")
    finally:
        release_slot(&s)


def writable(obj, str name):
    """check_writable on ``obj`` described as the argument ``name``."""
    cdef TensorSlot s
    to_dltensor(obj, &s, name)
    try:
        check_writable(&s, name)
    finally:
        release_slot(&s)


def reuse(Binding b, tuple kept, tuple new):
    """Keep a frame of ``b`` packed from the tensors ``kept`` (every argument variable, as
    run() keeps its caller's), then reuse_frame it with ``new``: 1 (the kept checks hold),
    0 (the long path must run) or what it raises."""
    cdef CallFrame f
    cdef CallFrame g
    cdef PyObject* objs[MAX_ARGS]
    cdef int i, n = len(kept)
    cdef uint32_t held = 0
    cdef uint32_t variable = (<uint32_t>1 << n) - 1
    frame_init(&f, n)
    try:
        for i in range(n):
            b.tensor(&f, i, kept[i])
            objs[i] = <PyObject*>kept[i]
        frame = CheckedFrame.keep(&f, variable, objs, None, 0, b.stream_slot(&f))
    finally:
        frame_release(&f)
    for i in range(n):
        objs[i] = <PyObject*>new[i]
    try:
        return reuse_frame(frame, &g, objs, b, &held)
    finally:
        if held:
            frame_release_masked(&g, held)
