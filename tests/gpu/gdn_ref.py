"""float64 numpy reference of the gated delta rule that gdn_prefill computes.

Derived from FlashInfer's reference (tests/gdn/reference_delta_rule.py, ``delta_rule``):
with the state ``S`` as a ``[V, K]`` matrix per head (what the kernel stores, k-last),

    S_t = alpha_t * S_{t-1} + beta_t * (v_t - alpha_t * S_{t-1} k_t) k_t^T
    o_t = scale * S_t q_t

which is upstream's ``old = alpha*S; new_v = beta*v + (1-beta)*(old k); S = old + k (new_v -
old k)^T`` written in [V, K] orientation. alpha and beta default to 1 (the plain delta rule,
checked on the H100, see docs/verified-facts.md). GQA (q_heads >= v_heads) shares k/v head
``h // (q_heads / v_heads)`` among query heads; GVA (v_heads > q_heads) shares q/k head
``h // (v_heads / q_heads)`` among value heads (upstream's repeat_interleave).

Also ``require_gdn_device()``, the skip rule both gdn test files share."""

from __future__ import annotations

import numpy as np
import pytest


def require_gdn_device() -> None:
    """Skip (with the reason) unless device 0 is sm_90 and the module is available; also
    skip once the hang watchdog has seen the device wedge. On a kernel set of a release that
    builds no gdn_prefill_sm90 (0.7.x: docs/abi-versions.md, "GDN prefill and 0.7.4") the
    tests skip with the reason instead of testing 0.6.3's module a second time through the
    pinned wheel."""
    from flashinfer_cy._core.runtime import device_compute_capability_major
    from flashinfer_cy.abi.match import missing_module_note
    from flashinfer_cy.artifacts import expected_flashinfer_version
    from gpu_env import require_module
    from hang_watchdog import require_responsive_device

    note = missing_module_note("gdn_prefill_sm90", "gdn_prefill", expected_flashinfer_version())
    if note:
        pytest.skip(f"{note} (gdn_prefill is tested on 0.6.3's kernel set)")
    require_module("gdn_prefill_sm90")
    major = device_compute_capability_major(0)
    if major != 9:
        pytest.skip(f"gdn_prefill needs an sm_90 GPU; device 0 is sm_{major}x")
    require_responsive_device()


def expand_heads(q, k, v):
    """q, k, v with max(q_heads, v_heads) heads each, as the kernel pairs them."""
    hq, hv = q.shape[1], v.shape[1]
    if hq >= hv:
        return q, np.repeat(k, hq // k.shape[1], axis=1), np.repeat(v, hq // hv, axis=1)
    return np.repeat(q, hv // hq, axis=1), np.repeat(k, hv // k.shape[1], axis=1), v


def gated_delta_rule(q, k, v, cu_seqlens, *, alpha=None, beta=None, initial_state=None,
                     scale=0.0):
    """q/k/v: float64 ``[tokens, heads, d]``; returns (output ``[tokens, H, d]``, final
    states ``[num_seqs, H, d(V), d(K)]``)."""
    q, k, v = expand_heads(np.asarray(q, np.float64), np.asarray(k, np.float64),
                           np.asarray(v, np.float64))
    tokens, heads, d = q.shape
    scale = 1.0 / np.sqrt(d) if scale == 0.0 else scale
    alpha = np.ones((tokens, heads)) if alpha is None else np.asarray(alpha, np.float64)
    beta = np.ones((tokens, heads)) if beta is None else np.asarray(beta, np.float64)
    num_seqs = len(cu_seqlens) - 1
    out = np.zeros((tokens, heads, d))
    states = np.zeros((num_seqs, heads, d, d))
    for s in range(num_seqs):
        S = (np.zeros((heads, d, d)) if initial_state is None
             else np.array(initial_state[s], np.float64))
        for t in range(int(cu_seqlens[s]), int(cu_seqlens[s + 1])):
            S *= alpha[t][:, None, None]
            predicted = np.einsum("hvk,hk->hv", S, k[t])
            S += (beta[t][:, None] * (v[t] - predicted))[:, :, None] * k[t][:, None, :]
            out[t] = scale * np.einsum("hvk,hk->hv", S, q[t])
        states[s] = S
    return out, states
