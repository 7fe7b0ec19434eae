# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Paged KV-cache append from FlashInfer's ``page`` module (csrc/page.cu, flashinfer 0.6.3).

    append_paged_kv_cache      scatter [nnz, heads, head_dim] keys and values into paged
                               K and V caches (NHD or HND pages)
    append_paged_mla_kv_cache  scatter [nnz, 512] compressed KV and [nnz, 64] rope keys into
                               paged MLA caches

Token ``i`` goes to page ``kv_indices[kv_indptr[batch_indices[i]] + positions[i] // page_size]``,
slot ``positions[i] % page_size`` (see :mod:`flashinfer_cy.kernels.paged_kv` for computing
``batch_indices`` and ``positions`` on the host). The page table must already include the new
tokens (the caller allocates pages first, as upstream requires).

What is checked here, before the kernel is touched: dtypes, ranks, shapes, one device,
contiguity, the 16-byte (MLA: two-element) alignment of the vector copies, the thread-block
size, and the 32-bit limits of the kernel's size and stride fields. What is *not* checked,
because it lives in device memory and checking it would need a device-to-host copy (a hidden
synchronisation): the values of the index arrays. The caller guarantees
``0 <= batch_indices[i] < batch``, ``0 <= positions[i] < seq_len(batch_indices[i])`` where
``seq_len(b) = (kv_indptr[b+1] - kv_indptr[b] - 1) * page_size + kv_last_page_len[b]``,
``kv_indptr`` non-decreasing with ``kv_indptr[batch] <= len(kv_indices)``, and every
``kv_indices`` entry a valid page number of the caches. A violated guarantee is an
out-of-bounds write on the device.
"""

from libc.stdint cimport int64_t, uint32_t, uintptr_t

from flashinfer_cy._abi.tvm_ffi cimport TVMFFIAny
from flashinfer_cy._core.binding cimport Binding, CallFrame, frame_init, frame_release, set_int
from flashinfer_cy._core.stream cimport check_stream
from flashinfer_cy._core.tensor cimport (
    TensorSlot, DT_F16, DT_BF16, DT_E4M3, DT_E5M2, DT_I32, dtype_key, dtype_name, check_cuda,
    check_dtype, check_same_dtype, check_ndim, check_dim, check_last_contiguous,
    check_contiguous, check_same_shape, check_same_device, describe)

# ABI table: (module, symbol, arguments in order) -- csrc/flashinfer_page_binding.cu
# ("!": written; the caches are appended to in place)
APPEND_PAGED_KV_CACHE = Binding(
    "page", "append_paged_kv_cache",
    "append_key:T append_value:T batch_indices:T positions:T paged_k_cache:T! "
    "paged_v_cache:T! kv_indices:T kv_indptr:T kv_last_page_len:T layout:I",
    device="append_key")
APPEND_PAGED_MLA_KV_CACHE = Binding(
    "page", "append_paged_mla_kv_cache",
    "append_ckv:T append_kpe:T batch_indices:T positions:T ckv_cache:T! kpe_cache:T! "
    "kv_indices:T kv_indptr:T kv_last_page_len:T", device="append_ckv")

# QKVLayout codes (include/flashinfer/layout.cuh)
LAYOUTS = {"NHD": 0, "HND": 1}
# The head dims the MHA kernel is instantiated for (DISPATCH_HEAD_DIM in utils.cuh).
MHA_HEAD_DIMS = (64, 128, 256, 512)
# The only sizes the MLA kernel is instantiated for (AppendPagedKVMlaCache, page.cuh).
MLA_CKV_DIM = 512
MLA_KPE_DIM = 64

cdef int64_t UINT32_LIMIT = 1 << 32  # paged_kv_t keeps sizes and strides as uint32_t
cdef int MAX_THREADS_PER_BLOCK = 1024


cdef int64_t _itemsize(TensorSlot* s) noexcept:
    return s.dl.dtype.bits // 8


cdef int _check_cache_dtype(TensorSlot* s, str name) except -1:
    # The kernel dispatches on the cache dtype and reads the appended rows as that type.
    cdef uint32_t k = dtype_key(s.dl.dtype)
    if k != DT_F16 and k != DT_BF16 and k != DT_E4M3 and k != DT_E5M2:
        raise TypeError(f"{name}: expected dtype float16, bfloat16, float8_e4m3fn or "
                        f"float8_e5m2, got {dtype_name(k)}")
    return 0


cdef int _check_layout(TensorSlot* s, str name, int64_t align_bytes, int n_strided,
                       bint uint32_strides) except -1:
    """Pointer aligned to ``align_bytes``; the first ``n_strided`` strides non-negative, in
    whole vectors, and below 2**32 where the kernel stores them as uint32_t. Dimensions of
    size 1 are skipped: their stride is never multiplied by anything but 0."""
    cdef int i
    cdef int64_t st, item = _itemsize(s)
    if (<uintptr_t>s.dl.data) % align_bytes:
        raise ValueError(f"{name}: data pointer {<uintptr_t>s.dl.data:#x} must be aligned to "
                         f"{align_bytes} bytes (the kernel copies {align_bytes}-byte vectors)")
    for i in range(n_strided):
        if s.dl.shape[i] <= 1:
            continue
        st = s.dl.strides[i]
        if st < 0 or (st * item) % align_bytes:
            raise ValueError(f"{name}: stride {st} of dimension {i} must be a non-negative "
                             f"multiple of {align_bytes // item} elements, got {describe(s)}")
        if uint32_strides and st >= UINT32_LIMIT:
            raise ValueError(f"{name}: strides must be < 2**32 elements, got {describe(s)}")
    return 0


cdef int _check_index(TensorSlot* s, str name, TensorSlot* ref, str ref_name,
                      int64_t length, str what, str rows_of=None) except -1:
    """An int32 index array the kernel reads on the device: 1-D, contiguous, beside ``ref``;
    ``length`` entries unless negative (``what`` says what that is; None: the rows of the
    tensor named ``rows_of``)."""
    check_cuda(s, name)
    check_same_device(s, name, ref, ref_name)
    check_dtype(s, name, DT_I32)
    check_ndim(s, name, 1)
    if length >= 0 and s.dl.shape[0] != length:  # the message is formatted only here
        check_dim(s, name, 0, length, what if what is not None else f"nnz, rows of {rows_of}")
    check_contiguous(s, name)
    return 0


cdef int64_t _pack_indices(Binding b, CallFrame* f, TensorSlot* ref, str ref_name,
                           object batch_indices, object positions, object kv_indices,
                           object kv_indptr, object kv_last_page_len, int64_t nnz,
                           int64_t page_size, str rows_of) except -1:
    """Pack and check arguments 2, 3, 6, 7, 8 (shared by both kernels; ``ref`` is the cache,
    ``rows_of`` names the appended tensor whose rows are ``nnz``); returns the batch."""
    cdef int64_t batch, num_indices
    b.tensor(f, 2, batch_indices)
    _check_index(&f.slots[2], "batch_indices", ref, ref_name, nnz, None, rows_of)
    b.tensor(f, 3, positions)
    _check_index(&f.slots[3], "positions", ref, ref_name, nnz, None, rows_of)
    b.tensor(f, 8, kv_last_page_len)
    _check_index(&f.slots[8], "kv_last_page_len", ref, ref_name, -1, "")
    batch = f.slots[8].dl.shape[0]
    b.tensor(f, 7, kv_indptr)
    _check_index(&f.slots[7], "kv_indptr", ref, ref_name, batch + 1,
                 "batch + 1, batch = len(kv_last_page_len)")
    b.tensor(f, 6, kv_indices)
    _check_index(&f.slots[6], "kv_indices", ref, ref_name, -1, "")
    num_indices = f.slots[6].dl.shape[0]
    # The kernel forms kv_indptr[b] * page_size + position in 32-bit unsigned arithmetic;
    # kv_indptr[b] <= len(kv_indices) by contract, so this bound rules out the wrap-around.
    if num_indices * page_size >= UINT32_LIMIT:
        raise ValueError(f"kv_indices: {num_indices} pages of {page_size} slots exceed the "
                         f"kernel's 32-bit slot arithmetic (at most 2**32 - 1 slots)")
    if nnz >= UINT32_LIMIT:
        raise ValueError(f"{rows_of}: at most 2**32 - 1 rows can be appended in one call, "
                         f"got {nnz}")
    if nnz > 0 and (batch == 0 or num_indices == 0):
        raise ValueError(f"{rows_of}: {nnz} rows to append but the page table is empty "
                         f"(len(kv_last_page_len) = {batch}, len(kv_indices) = {num_indices})")
    return batch


cdef int _layout_code(object kv_layout) except -1:
    if not isinstance(kv_layout, str):
        raise TypeError(f"kv_layout: expected 'NHD' or 'HND', got {kv_layout!r}")
    code = LAYOUTS.get(kv_layout.upper())
    if code is None:
        raise ValueError(f"kv_layout: expected 'NHD' or 'HND', got {kv_layout!r}")
    return code


def append_paged_kv_cache(append_key, append_value, batch_indices, positions, paged_k_cache,
                          paged_v_cache, kv_indices, kv_indptr, kv_last_page_len,
                          kv_layout="NHD", stream=None):
    """Append ``nnz`` new key/value rows to a paged KV cache, in place.

    ``append_key``, ``append_value``: ``[nnz, num_kv_heads, head_dim]``, the caches' dtype
    (float16, bfloat16, float8_e4m3fn or float8_e5m2); last dimension contiguous, other
    strides free (16-byte multiples). ``batch_indices``, ``positions``: int32 ``[nnz]``, the
    request and the position within it of each row. ``paged_k_cache``, ``paged_v_cache``:
    ``[num_pages, page_size, num_kv_heads, head_dim]`` for ``kv_layout="NHD"`` or
    ``[num_pages, num_kv_heads, page_size, head_dim]`` for ``"HND"``; equal shapes and
    strides, last dimension contiguous (e.g. ``kv[:, 0]`` and ``kv[:, 1]`` of a
    ``[num_pages, 2, ...]`` buffer). ``head_dim`` is 64, 128, 256 or 512. ``kv_indices``
    (int32 page numbers), ``kv_indptr`` (int32 ``[batch + 1]``), ``kv_last_page_len``
    (int32 ``[batch]``): the page table, already covering the appended rows. All on one
    CUDA device. The index values are the caller's guarantee (module docstring); they are
    never read on the host. Returns None. Asynchronous.
    """
    cdef CallFrame f
    cdef TVMFFIAny result
    cdef TensorSlot* ak
    cdef TensorSlot* kc
    cdef int layout = _layout_code(kv_layout)
    cdef int64_t nnz, num_heads, page_size, head_dim, vec, threads
    cdef int i
    cdef Binding b = APPEND_PAGED_KV_CACHE
    frame_init(&f, 10)
    try:
        b.tensor(&f, 4, paged_k_cache)
        kc = &f.slots[4]
        check_cuda(kc, "paged_k_cache")
        _check_cache_dtype(kc, "paged_k_cache")
        check_ndim(kc, "paged_k_cache", 4)
        check_last_contiguous(kc, "paged_k_cache")
        head_dim = kc.dl.shape[3]
        num_heads = kc.dl.shape[1 if layout == 1 else 2]
        page_size = kc.dl.shape[2 if layout == 1 else 1]
        if head_dim not in MHA_HEAD_DIMS:
            raise ValueError(f"paged_k_cache: head_dim (last dimension) must be one of "
                             f"{MHA_HEAD_DIMS}, got {describe(kc)}")
        if num_heads <= 0 or page_size <= 0:
            raise ValueError(f"paged_k_cache: num_kv_heads and page_size must be > 0 "
                             f"({kv_layout} layout), got {describe(kc)}")
        _check_layout(kc, "paged_k_cache", 16, 3, True)
        # One thread block holds head_dim / vec threads for each head (AppendPagedKVCache).
        vec = max(16 // _itemsize(kc), head_dim // 32)
        threads = head_dim // vec * num_heads
        if threads > MAX_THREADS_PER_BLOCK:
            raise ValueError(f"paged_k_cache: {num_heads} kv heads of head_dim {head_dim} "
                             f"need {threads} threads per block; the kernel allows "
                             f"{MAX_THREADS_PER_BLOCK} (at most "
                             f"{MAX_THREADS_PER_BLOCK * vec // head_dim} heads)")

        b.tensor(&f, 5, paged_v_cache)
        check_same_device(&f.slots[5], "paged_v_cache", kc, "paged_k_cache")
        check_same_dtype(&f.slots[5], "paged_v_cache", kc, "paged_k_cache")
        check_same_shape(&f.slots[5], "paged_v_cache", kc, "paged_k_cache")
        for i in range(4):
            if f.slots[5].dl.strides[i] == kc.dl.strides[i]:
                continue
            # The kernel walks both caches with paged_k_cache's strides.
            raise ValueError(f"paged_v_cache: strides must equal paged_k_cache's "
                             f"{tuple(kc.dl.strides[i] for i in range(4))}, got "
                             f"{describe(&f.slots[5])}")
        _check_layout(&f.slots[5], "paged_v_cache", 16, 3, True)

        b.tensor(&f, 0, append_key)
        ak = &f.slots[0]
        check_cuda(ak, "append_key")
        check_same_device(ak, "append_key", kc, "paged_k_cache")
        check_same_dtype(ak, "append_key", kc, "paged_k_cache")
        check_ndim(ak, "append_key", 3)
        check_dim(ak, "append_key", 1, num_heads, "num_kv_heads of paged_k_cache")
        check_dim(ak, "append_key", 2, head_dim, "head_dim of paged_k_cache")
        check_last_contiguous(ak, "append_key")
        _check_layout(ak, "append_key", 16, 2, False)
        nnz = ak.dl.shape[0]

        b.tensor(&f, 1, append_value)
        check_same_device(&f.slots[1], "append_value", kc, "paged_k_cache")
        check_same_dtype(&f.slots[1], "append_value", kc, "paged_k_cache")
        check_same_shape(&f.slots[1], "append_value", ak, "append_key")
        check_last_contiguous(&f.slots[1], "append_value")
        _check_layout(&f.slots[1], "append_value", 16, 2, False)

        _pack_indices(b, &f, kc, "paged_k_cache", batch_indices, positions, kv_indices,
                      kv_indptr, kv_last_page_len, nnz, page_size, "append_key")
        if nnz == 0:
            check_stream(stream)
            return None  # nothing to write; the kernel would launch an empty grid
        set_int(&f, 9, layout)
        b.invoke(&f, stream, &result)
        return None
    finally:
        frame_release(&f)


def append_paged_mla_kv_cache(append_ckv, append_kpe, batch_indices, positions, ckv_cache,
                              kpe_cache, kv_indices, kv_indptr, kv_last_page_len,
                              stream=None):
    """Append ``nnz`` rows to a paged MLA cache (compressed KV + rope keys), in place.

    ``append_ckv``: ``[nnz, 512]``; ``append_kpe``: ``[nnz, 64]`` (the only sizes the kernel
    is built for); the caches' dtype (float16, bfloat16, float8_e4m3fn or float8_e5m2); last
    dimension contiguous. ``ckv_cache``: ``[num_pages, page_size, 512]``; ``kpe_cache``:
    ``[num_pages, page_size, 64]``; last dimension contiguous, other strides free (even).
    ``batch_indices``, ``positions``, ``kv_indices``, ``kv_indptr``, ``kv_last_page_len``: as
    :func:`append_paged_kv_cache`, with the same caller guarantees. Returns None.
    Asynchronous.
    """
    cdef CallFrame f
    cdef TVMFFIAny result
    cdef TensorSlot* ckv
    cdef TensorSlot* ac
    cdef int64_t nnz, page_size, align
    cdef Binding b = APPEND_PAGED_MLA_KV_CACHE
    frame_init(&f, 9)
    try:
        b.tensor(&f, 4, ckv_cache)
        ckv = &f.slots[4]
        check_cuda(ckv, "ckv_cache")
        _check_cache_dtype(ckv, "ckv_cache")
        check_ndim(ckv, "ckv_cache", 3)
        check_dim(ckv, "ckv_cache", 2, MLA_CKV_DIM, "the MLA kernel's compressed-KV dim")
        check_last_contiguous(ckv, "ckv_cache")
        page_size = ckv.dl.shape[1]
        if page_size <= 0:
            raise ValueError(f"ckv_cache: page_size must be > 0, got {describe(ckv)}")
        align = 2 * _itemsize(ckv)  # the kernel copies two elements per thread
        _check_layout(ckv, "ckv_cache", align, 2, True)

        b.tensor(&f, 5, kpe_cache)
        check_same_device(&f.slots[5], "kpe_cache", ckv, "ckv_cache")
        check_same_dtype(&f.slots[5], "kpe_cache", ckv, "ckv_cache")
        check_ndim(&f.slots[5], "kpe_cache", 3)
        check_dim(&f.slots[5], "kpe_cache", 0, ckv.dl.shape[0], "num_pages of ckv_cache")
        check_dim(&f.slots[5], "kpe_cache", 1, page_size, "page_size of ckv_cache")
        check_dim(&f.slots[5], "kpe_cache", 2, MLA_KPE_DIM, "the MLA kernel's rope dim")
        check_last_contiguous(&f.slots[5], "kpe_cache")
        _check_layout(&f.slots[5], "kpe_cache", align, 2, True)

        b.tensor(&f, 0, append_ckv)
        ac = &f.slots[0]
        check_cuda(ac, "append_ckv")
        check_same_device(ac, "append_ckv", ckv, "ckv_cache")
        check_same_dtype(ac, "append_ckv", ckv, "ckv_cache")
        check_ndim(ac, "append_ckv", 2)
        check_dim(ac, "append_ckv", 1, MLA_CKV_DIM, "the compressed-KV dim")
        check_last_contiguous(ac, "append_ckv")
        _check_layout(ac, "append_ckv", align, 1, False)
        nnz = ac.dl.shape[0]

        b.tensor(&f, 1, append_kpe)
        check_same_device(&f.slots[1], "append_kpe", ckv, "ckv_cache")
        check_same_dtype(&f.slots[1], "append_kpe", ckv, "ckv_cache")
        check_ndim(&f.slots[1], "append_kpe", 2)
        check_dim(&f.slots[1], "append_kpe", 0, nnz, "nnz, rows of append_ckv")
        check_dim(&f.slots[1], "append_kpe", 1, MLA_KPE_DIM, "the rope dim")
        check_last_contiguous(&f.slots[1], "append_kpe")
        _check_layout(&f.slots[1], "append_kpe", align, 1, False)

        _pack_indices(b, &f, ckv, "ckv_cache", batch_indices, positions, kv_indices,
                      kv_indptr, kv_last_page_len, nnz, page_size, "append_ckv")
        if nnz == 0:
            check_stream(stream)
            return None
        b.invoke(&f, stream, &result)
        return None
    finally:
        frame_release(&f)
