"""Host-side (numpy) bookkeeping for paged KV caches: the index arrays that
:func:`flashinfer_cy.append_paged_kv_cache` takes, computed from a page table.

These run on the CPU on purpose: the page table is normally built on the host by the
scheduler, and the results are copied to the device once, with the rest of the batch's
metadata (e.g. ``DeviceArray.from_numpy(batch_indices)``). Nothing here touches CUDA.
numpy is imported on first use, so that ``import flashinfer_cy`` stays light.
"""

from __future__ import annotations

__all__ = ["get_seq_lens", "get_batch_indices_positions"]

_INT32_LIMIT = 2**31


def _int_vector(x, name: str):
    import numpy as np

    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {a.shape}")
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected an integer array, got dtype {a.dtype}")
    return a.astype(np.int64, copy=False)


def get_seq_lens(kv_indptr, kv_last_page_len, page_size: int):
    """KV length of each request: ``(pages - 1) * page_size + last_page_len``, 0 for a
    request without pages. ``kv_indptr``: ``[batch + 1]``; ``kv_last_page_len``:
    ``[batch]``. Returns int32 ``[batch]``."""
    import numpy as np

    indptr = _int_vector(kv_indptr, "kv_indptr")
    last = _int_vector(kv_last_page_len, "kv_last_page_len")
    if indptr.shape[0] != last.shape[0] + 1:
        raise ValueError(f"kv_indptr: expected {last.shape[0] + 1} entries (len(kv_last_page_len)"
                         f" + 1), got {indptr.shape[0]}")
    if isinstance(page_size, bool) or not isinstance(page_size, (int, np.integer)) \
            or not 0 < page_size < _INT32_LIMIT:
        raise ValueError(f"page_size: expected an int in [1, 2**31), got {page_size!r}")
    page_size = int(page_size)
    pages = np.diff(indptr)
    if (pages < 0).any():
        raise ValueError("kv_indptr: must be non-decreasing")
    if pages.size and pages.max() >= _INT32_LIMIT:
        raise ValueError(f"kv_indptr: {int(pages.max())} pages for one request; its KV "
                         f"tokens do not fit in int32")
    # As plan() checks it: 1..page_size tokens in the last page of a request with pages.
    bad = np.where(pages > 0, (last < 1) | (last > page_size), last != 0)
    if bad.any():
        b = int(np.argmax(bad))
        raise ValueError(f"kv_last_page_len[{b}] = {int(last[b])} is invalid for a request "
                         f"with {int(pages[b])} page(s) of page_size {page_size}: expected "
                         f"1..page_size when it has pages, 0 when it has none")
    lens = np.maximum(pages - 1, 0) * page_size + np.where(pages > 0, last, 0)
    if lens.size and lens.max() >= 2**31:
        b = int(np.argmax(lens >= 2**31))
        raise ValueError(f"request {b}: {int(lens[b])} KV tokens do not fit in int32")
    return lens.astype(np.int32)


def get_batch_indices_positions(append_indptr, seq_lens, nnz: int | None = None):
    """Row ``i`` of a ragged append batch -> (its request, its position in that request).

    ``append_indptr``: ``[batch + 1]``, rows ``append_indptr[b]:append_indptr[b+1]`` are
    request ``b``'s new tokens. ``seq_lens``: ``[batch]``, each request's KV length *after*
    the append (e.g. :func:`get_seq_lens` of the updated page table). The new tokens are the
    last ones of their request, so row ``append_indptr[b] + j`` lands at position
    ``seq_lens[b] - n_b + j`` with ``n_b`` the request's new-token count. ``nnz``, when
    given, must equal ``append_indptr[-1]`` (a padding row would still be written somewhere).
    Returns ``(batch_indices, positions)``, int32 ``[nnz]`` each.
    """
    import numpy as np

    indptr = _int_vector(append_indptr, "append_indptr")
    lens = _int_vector(seq_lens, "seq_lens")
    if indptr.shape[0] != lens.shape[0] + 1:
        raise ValueError(f"append_indptr: expected {lens.shape[0] + 1} entries (len(seq_lens) "
                         f"+ 1), got {indptr.shape[0]}")
    if indptr.shape[0] == 0 or indptr[0] != 0:
        raise ValueError("append_indptr: must start with 0")
    counts = np.diff(indptr)
    if (counts < 0).any():
        raise ValueError("append_indptr: must be non-decreasing")
    if (counts > lens).any():
        b = int(np.argmax(counts > lens))
        raise ValueError(f"seq_lens: request {b} appends {counts[b]} tokens but its length "
                         f"after the append is {lens[b]}")
    total = int(indptr[-1])
    if nnz is None:
        nnz = total
    if nnz != total:
        raise ValueError(f"nnz: expected append_indptr[-1] = {total}, got {nnz}")
    # Both limits before anything of size ``total`` is allocated (a wrong 2**40 would
    # otherwise ask numpy for terabytes first).
    if total >= 2**31:
        raise ValueError(f"append_indptr: {total} rows do not fit in int32")
    if lens.size and lens.max() >= 2**31:
        raise ValueError("seq_lens: lengths must fit in int32")
    batch_indices = np.repeat(np.arange(lens.shape[0], dtype=np.int64), counts)
    row_in_request = np.arange(total, dtype=np.int64) - np.repeat(indptr[:-1], counts)
    positions = np.repeat(lens - counts, counts) + row_in_request
    return batch_indices.astype(np.int32), positions.astype(np.int32)
