# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Gated Delta Net (GDN) chunked prefill from FlashInfer's ``gdn_prefill_sm90`` module
(csrc/gdn_prefill_launcher.cu, flashinfer 0.6.3). Hopper (sm_90) only.

Per sequence and per state head ``h``, with the state ``S`` a ``[V, K]`` matrix (stored
k-last, ``[num_seqs, heads, V, K]``), token by token::

    S_t = alpha_t * S_{t-1} + beta_t * (v_t - alpha_t * S_{t-1} k_t) k_t^T
    o_t = scale * S_t q_t

``S_0`` is ``initial_state`` (zeros when omitted); alpha and beta default to 1, which gives
the plain delta rule. Head layouts: GQA (``q_heads >= v_heads``, ``k_heads == v_heads``,
each k/v head serves ``q_heads / v_heads`` query heads) and GVA (``v_heads > q_heads``,
``k_heads == q_heads``, each q/k head serves ``v_heads / q_heads`` value heads). Outputs,
gates and states have ``max(q_heads, v_heads)`` heads.

Everything is checked before the kernel is touched; the device is then checked to be sm_90
(the kernel raises on anything else, after its own checks). Not checked, because it lives in
device memory (reading it would be a hidden synchronisation): ``cu_seqlens`` must be
non-decreasing from 0 to ``q.shape[0]``. Sequences of length 0 are the caller's risk with
this kernel version.
"""

from libc.math cimport isfinite
from libc.stdint cimport int64_t, uint32_t, uintptr_t

from flashinfer_cy._abi.tvm_ffi cimport TVMFFIAny
from flashinfer_cy._core.binding cimport (Binding, CallFrame, frame_init, frame_release,
                                          set_float, work_stream)
from flashinfer_cy._core.stream cimport resolve_stream
from flashinfer_cy._core.tensor cimport (
    TensorSlot, DT_F16, DT_BF16, DT_F32, DT_I64, DT_U8, check_cuda, check_dtype,
    check_same_dtype, check_ndim, check_dim, check_contiguous, check_same_device, describe,
    finite_float, check_aligned)

from flashinfer_cy import errors as _errors
from flashinfer_cy._core import runtime as _runtime
from flashinfer_cy._core.array import DeviceArray

# ABI table: (module, symbol, arguments in order) -- csrc/gdn_prefill_launcher.cu
# serialize: the launcher is not safe to enter from several threads at once. Its CUTLASS
# path sets a process-wide "initialized" flag without synchronisation and calls
# cudaFuncSetAttribute on the shared kernel function before every launch
# (flat/hopper/device/device_universal.hpp, cutlass/cluster_launch.hpp); flashinfer-python
# itself, called from 4 threads at once, failed with "initialize failed" and then an illegal
# instruction on the GPU (H100). So the host calls take turns; the kernels still overlap on
# their streams. This does not cure the rare GPU hang of concurrent chains on several
# streams (docs/api.md, gdn_prefill, "Threads and streams").
# "!": written (the outputs, and the TMA descriptors the kernel stores in the workspace).
GDN_PREFILL = Binding(
    "gdn_prefill_sm90", "gdn_prefill",
    "output:T! output_state:T! q:T k:T v:T cu_seqlens:T input_state:T? alpha:T? beta:T? "
    "scale:F workspace_buffer:T!", device="q", serialize=True)

# The kernel's tile and its state layout are compiled for 128 (TileShape 64x64x128, the
# state copied as a fixed 128x128 block): a smaller head_size passes upstream's checks but
# its state would be written out of bounds.
HEAD_SIZE = 128
# One 128-byte TMA descriptor per SM (CollectiveStoreTma::get_workspace_size).
WORKSPACE_BYTES_PER_SM = 128
# TMA descriptors in global memory must be 64-byte aligned; TMA tensors 16-byte aligned.
WORKSPACE_ALIGN = 64
TMA_ALIGN = 16

cdef int64_t INT32_LIMIT = 1 << 31


cdef double _as_scale(object scale) except? -1.0:
    return finite_float(scale, "scale", "a finite number (0.0 = 1/sqrt(head_size))")


cdef int _check_qkv(TensorSlot* s, str name, TensorSlot* q, int64_t rows) except -1:
    check_cuda(s, name)
    if q != NULL:
        check_same_device(s, name, q, "q")
        check_same_dtype(s, name, q, "q")
    else:
        check_dtype(s, name, DT_F16, DT_BF16)
    check_ndim(s, name, 3)
    if rows >= 0:
        check_dim(s, name, 0, rows, "packed tokens, rows of q")
    check_dim(s, name, 2, HEAD_SIZE, "head_size; the kernel is built for 128 only")
    if s.dl.shape[1] <= 0:
        raise ValueError(f"{name}: the head count must be > 0, got {describe(s)}")
    check_contiguous(s, name)
    check_aligned(s, name, TMA_ALIGN)
    return 0


cdef int _check_vector(TensorSlot* s, str name, TensorSlot* q, uint32_t dtype) except -1:
    """A 1-D contiguous ``dtype`` tensor on q's device (cu_seqlens, the workspace)."""
    check_cuda(s, name)
    check_same_device(s, name, q, "q")
    check_dtype(s, name, dtype)
    check_ndim(s, name, 1)
    check_contiguous(s, name)
    return 0


cdef int _check_f32(TensorSlot* s, str name, TensorSlot* q, tuple shape, str what,
                    int64_t align) except -1:
    """A float32 tensor of exactly ``shape``, contiguous, on q's device."""
    cdef int i
    check_cuda(s, name)
    check_same_device(s, name, q, "q")
    check_dtype(s, name, DT_F32)
    check_ndim(s, name, len(shape))
    for i in range(len(shape)):
        check_dim(s, name, i, shape[i], what)
    check_contiguous(s, name)
    check_aligned(s, name, align)
    return 0


def gdn_prefill(q, k, v, cu_seqlens, *, initial_state=None, alpha=None, beta=None,
                scale=0.0, output=None, output_state=None, workspace=None, stream=None):
    """Gated delta rule over packed variable-length sequences (prefill); sm_90 only.

    ``q``: ``[packed_tokens, q_heads, 128]``, ``k``: ``[packed_tokens, k_heads, 128]``,
    ``v``: ``[packed_tokens, v_heads, 128]``; float16 or bfloat16 (one dtype), contiguous,
    one CUDA device; GQA or GVA head counts (module docstring), ``H = max(q_heads,
    v_heads)``. ``cu_seqlens``: int64 ``[num_seqs + 1]`` on the device, sequence ``i`` is
    rows ``cu_seqlens[i]:cu_seqlens[i+1]`` (values are the caller's guarantee). Optional,
    float32, contiguous: ``initial_state`` ``[num_seqs, H, 128, 128]`` (``[.., V, K]``),
    ``alpha`` (forget gate) and ``beta`` (update gate) ``[packed_tokens, H]``. ``scale``: the
    output scale, 0.0 for ``1/sqrt(128)``. ``output`` (``[packed_tokens, H, 128]``, q's
    dtype) and ``output_state`` (``[num_seqs, H, 128, 128]`` float32, the final states) are
    allocated as :class:`DeviceArray` when omitted. ``workspace``: uint8, at least
    ``sm_count * 128`` bytes, 64-byte aligned (the kernel writes TMA descriptors there, so a
    workspace must not be shared by calls that may run concurrently); allocated per call,
    stream-ordered, when omitted. Returns ``(output, output_state)``. Asynchronous.

    Raises :class:`~flashinfer_cy.UnsupportedDeviceError` on a device that is not sm_90.
    """
    cdef CallFrame f
    cdef TVMFFIAny result
    cdef TensorSlot* qs
    cdef int64_t packed, hq, hk, hv, heads, num_seqs, need
    cdef int device, major
    cdef void* checked_stream = NULL
    cdef double scale_v = _as_scale(scale)
    cdef Binding b = GDN_PREFILL
    frame_init(&f, 11)
    try:
        b.tensor(&f, 2, q)
        qs = &f.slots[2]
        _check_qkv(qs, "q", NULL, -1)
        packed = qs.dl.shape[0]
        b.tensor(&f, 3, k)
        _check_qkv(&f.slots[3], "k", qs, packed)
        b.tensor(&f, 4, v)
        _check_qkv(&f.slots[4], "v", qs, packed)
        hq, hk, hv = qs.dl.shape[1], f.slots[3].dl.shape[1], f.slots[4].dl.shape[1]
        if hq >= hv:
            if hk != hv or hq % hv:
                raise ValueError(f"q, k, v: q_heads >= v_heads (GQA) needs k_heads == v_heads "
                                 f"and q_heads a multiple of them, got q/k/v heads "
                                 f"{hq}/{hk}/{hv}")
        elif hk != hq or hv % hq:
            raise ValueError(f"q, k, v: v_heads > q_heads (GVA) needs k_heads == q_heads and "
                             f"v_heads a multiple of them, got q/k/v heads {hq}/{hk}/{hv}")
        heads = max(hq, hv)

        b.tensor(&f, 5, cu_seqlens)
        _check_vector(&f.slots[5], "cu_seqlens", qs, DT_I64)
        num_seqs = f.slots[5].dl.shape[0] - 1
        if num_seqs < 0:
            raise ValueError("cu_seqlens: expected num_seqs + 1 >= 1 entries, got 0")
        if num_seqs * heads >= INT32_LIMIT or packed >= INT32_LIMIT:
            raise ValueError(f"q: {num_seqs} sequences x {heads} heads and {packed} tokens "
                             f"must each stay below 2**31 (the kernel's grid and sizes)")
        state_shape = (num_seqs, heads, HEAD_SIZE, HEAD_SIZE)

        # Errors name the Python keywords (initial_state, workspace), not the ABI's.
        b.opt_tensor(&f, 6, None)
        if initial_state is not None:
            b.tensor_as(&f, 6, initial_state, "initial_state")
            _check_f32(&f.slots[6], "initial_state", qs, state_shape,
                       "[num_seqs, max(q_heads, v_heads), 128, 128]", TMA_ALIGN)
        b.opt_tensor(&f, 7, alpha)
        if alpha is not None:
            _check_f32(&f.slots[7], "alpha", qs, (packed, heads),
                       "[packed_tokens, max(q_heads, v_heads)]", 4)
        b.opt_tensor(&f, 8, beta)
        if beta is not None:
            _check_f32(&f.slots[8], "beta", qs, (packed, heads),
                       "[packed_tokens, max(q_heads, v_heads)]", 4)

        if output is not None:
            b.tensor(&f, 0, output)
            check_cuda(&f.slots[0], "output")
            check_same_device(&f.slots[0], "output", qs, "q")
            check_same_dtype(&f.slots[0], "output", qs, "q")
            check_ndim(&f.slots[0], "output", 3)
            check_dim(&f.slots[0], "output", 0, packed, "packed tokens, rows of q")
            check_dim(&f.slots[0], "output", 1, heads, "max(q_heads, v_heads)")
            check_dim(&f.slots[0], "output", 2, HEAD_SIZE, "head_size")
            check_contiguous(&f.slots[0], "output")
            check_aligned(&f.slots[0], "output", TMA_ALIGN)
        if output_state is not None:
            b.tensor(&f, 1, output_state)
            _check_f32(&f.slots[1], "output_state", qs, state_shape,
                       "[num_seqs, max(q_heads, v_heads), 128, 128]", TMA_ALIGN)
        if workspace is not None:
            b.tensor_as(&f, 10, workspace, "workspace")
            _check_vector(&f.slots[10], "workspace", qs, DT_U8)
            check_aligned(&f.slots[10], "workspace", WORKSPACE_ALIGN)
        if num_seqs > 0 and packed == 0:
            raise ValueError(f"q: {num_seqs} sequences but no tokens; the kernel cannot "
                             f"describe empty tensors to the TMA unit")
        if num_seqs == 0 and packed > 0:
            raise ValueError(f"cu_seqlens: no sequences (one entry) but q has {packed} tokens")

        if stream is not None:
            resolve_stream(stream, &checked_stream)  # a bad stream is an argument error too
        # Validation is complete; from here on the device is asked (cached per device).
        # Through the runtime module's Python names: one attribute lookup per call, and the
        # CPU tests can stand in for an sm_90 device to drive the whole call path.
        device = qs.dl.device.device_id
        major = _runtime.device_compute_capability_major(device)
        if major != 9:
            raise _errors.UnsupportedDeviceError(
                f"gdn_prefill runs on sm_90 (Hopper) GPUs only; CUDA device {device} is "
                f"sm_{major}x")
        need = _runtime.device_multiprocessor_count(device) * WORKSPACE_BYTES_PER_SM
        if workspace is not None and f.slots[10].dl.shape[0] < need:
            raise ValueError(f"workspace: expected at least {need} bytes (128 per SM), got "
                             f"{f.slots[10].dl.shape[0]}")

        if output is None or output_state is None or workspace is None:
            alloc_stream = work_stream(b, &f, stream, device)
            if output is None:
                output = DeviceArray.empty((packed, heads, HEAD_SIZE),
                                           "float16" if qs.dl.dtype.code == 2 else "bfloat16",
                                           device, alloc_stream)
                b.tensor(&f, 0, output)
            if output_state is None:
                output_state = DeviceArray.empty(state_shape, "float32", device, alloc_stream)
                b.tensor(&f, 1, output_state)
            if workspace is None and num_seqs > 0:
                # Per call and freed (stream-ordered) after it: never shared between
                # concurrent calls, which would race on the descriptors.
                workspace = DeviceArray.empty((need,), "uint8", device, alloc_stream)
                b.tensor(&f, 10, workspace)
        if num_seqs == 0:
            return output, output_state  # nothing to compute; the grid would be empty
        set_float(&f, 9, scale_v)
        b.invoke(&f, stream, &result)
        return output, output_state
    finally:
        frame_release(&f)
