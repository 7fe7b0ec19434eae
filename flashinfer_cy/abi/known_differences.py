"""Where a Binding line does not match a FlashInfer release's ABI, reviewed, with the reason.

Key: (flashinfer version, module key as in the ABI file, export). Value: ``expect``, the
start of the first mismatch tests/cpu/test_abi_tables.py reports (it fails when the
difference changes or goes away, so a stale entry cannot hide a new one), and ``reason``.
The Binding tables follow 0.6.3 (the release whose prebuilt modules this package loads);
version-aware tables (issue 19 item 3) are to use the other versions' argument lists.
"""

_KV_SF = ("0.7.x's FA2 generator appends maybe_k_cache_sf and maybe_v_cache_sf "
          "(Optional<ffi::Tensor>, nvfp4/fp8 per-token-head KV scales) to the generated "
          "extras, before the float scalars: 2 more arguments")

KNOWN_DIFFERENCES = {
    ("0.7.4", "gdn_prefill_sm90", "gdn_prefill"): {
        "expect": "module gdn_prefill_sm90 is not built by flashinfer 0.7.4",
        "reason": "0.7.x dropped flashinfer/jit/gdn.py and csrc/gdn_prefill_launcher.cu; GDN "
                  "prefill moved to the cake GDN modules (jit/cake_gdn*.py), another ABI",
    },
    ("0.7.4", "batch_prefill/fa2", "plan"): {
        "expect": "arity: flashinfer 0.7.4 declares 21 arguments, the Binding 19",
        "reason": "0.7.x appends uniform_q_len (int64_t) and fixed_uniform_q_len (bool) to "
                  "BatchPrefillWithKVCachePlan",
    },
    ("0.7.4", "batch_prefill/fa2", "ragged_run"): {
        "expect": "arity: flashinfer 0.7.4 declares 27 arguments, the Binding 25",
        "reason": _KV_SF,
    },
    ("0.7.4", "batch_prefill/fa2", "paged_run"): {
        "expect": "arity: flashinfer 0.7.4 declares 29 arguments, the Binding 27",
        "reason": _KV_SF,
    },
    ("0.7.4", "single_prefill/fa2", "run"): {
        "expect": "arity: flashinfer 0.7.4 declares 17 arguments, the Binding 15",
        "reason": _KV_SF,
    },
}
