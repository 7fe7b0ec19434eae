"""Next-token sampling from float32 logits ``[batch, vocab]`` on the device.

Greedy is the array library's argmax (exact and deterministic). Top-k / top-p go through
flashinfer_cy's sampling kernels, which land with flashinfer-python's names
(``fc.top_k_top_p_sampling_from_logits``); until this flashinfer_cy has them they raise.
"""

from __future__ import annotations

from typing import Any

import flashinfer_cy as fc


def sample(backend: Any, logits_f32: Any, out: Any, *, top_k: int | None = None,
           top_p: float | None = None, seed: int = 0, offset: int = 0) -> Any:
    """Token ids ``[batch]`` (int64 ``out`` for greedy). ``top_k``/``top_p`` None: greedy."""
    if top_k is None and top_p is None:
        backend.argmax(logits_f32, out)
        return out
    if not hasattr(fc, "top_k_top_p_sampling_from_logits"):
        raise NotImplementedError("top-k/top-p sampling needs flashinfer_cy's sampling "
                                  "bindings (fc.top_k_top_p_sampling_from_logits); use greedy")
    vocab = logits_f32.shape[-1]
    return fc.top_k_top_p_sampling_from_logits(
        backend.kernel_view(logits_f32), vocab if top_k is None else top_k,
        1.0 if top_p is None else top_p,
        seed=seed, offset=offset, stream=backend.stream())
