"""Where a Binding line does not match a FlashInfer release's ABI, reviewed, with the reason.

Key: (flashinfer version, module key as in the ABI file, export). Value: ``expect``, the
start of the first mismatch tests/cpu/test_abi_tables.py reports (it fails when the
difference changes or goes away, so a stale entry cannot hide a new one), and ``reason``.
The Binding tables follow 0.6.3 (the release whose prebuilt modules this package loads).
Each entry is also an export a Binding refuses to call on a module of that release
(flashinfer_cy.abi.match.require_match raises KernelVersionError); tables with the other
releases' argument lists are issue 19 items 4-5.
"""

_KV_SF = ("0.7.x's FA2 generator appends maybe_k_cache_sf and maybe_v_cache_sf "
          "(Optional<ffi::Tensor>, nvfp4/fp8 per-token-head KV scales) to the generated "
          "extras, before the float scalars: 2 more arguments")

_SAMPLER = ("0.7.x's samplers write a `TensorView valid` (per-row success flags) after "
            "`output` and take the philox seed and offset as `Optional<TensorView> "
            "maybe_seed_arr, uint64_t seed_val, Optional<TensorView> maybe_offset_arr, "
            "uint64_t offset_val` (device tensors: the CUDA-graph-safe form)")
_SAMPLER_NO_VALID = ("0.7.x takes the philox seed and offset as `Optional<TensorView> "
                     "maybe_seed_arr, uint64_t seed_val, Optional<TensorView> "
                     "maybe_offset_arr, uint64_t offset_val` (device tensors: the "
                     "CUDA-graph-safe form)")
_RENORM_P = ("0.7.x adds `bool is_deterministic` and a `TensorView workspace` to "
             "top_p_renorm_probs")
_RENORM_K = "0.7.x adds `bool is_deterministic` before the row states buffer"
_CHAIN = ("0.7.x takes chain_speculative_sampling's philox seed and offset as optional "
          "device tensors beside the scalars (CUDA-graph-safe), 2 more arguments")
_TOPK = ("0.7.x's radix top-k makes the values output optional and appends sorting, "
         "determinism and tie-break options (and, for the transforms, graph-safety and "
         "row-start arguments)")

_MLA_RUN = ("0.7.x's batched MLA run appends `double ckv_scale, double kpe_scale, "
            "Optional<TensorView> maybe_ckv_scale_arr` (fp8 cache dequantization scales)")

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
    ("0.7.4", "sampling", "sampling_from_probs"): {
        "expect": "arity: flashinfer 0.7.4 declares 9 arguments, the Binding 6",
        "reason": _SAMPLER,
    },
    ("0.7.4", "sampling", "sampling_from_logits"): {
        "expect": "arity: flashinfer 0.7.4 declares 8 arguments, the Binding 6",
        "reason": _SAMPLER_NO_VALID,
    },
    ("0.7.4", "sampling", "top_p_sampling_from_probs"): {
        "expect": "arity: flashinfer 0.7.4 declares 11 arguments, the Binding 8",
        "reason": _SAMPLER,
    },
    ("0.7.4", "sampling", "top_k_sampling_from_probs"): {
        "expect": "arity: flashinfer 0.7.4 declares 11 arguments, the Binding 8",
        "reason": _SAMPLER,
    },
    ("0.7.4", "sampling", "min_p_sampling_from_probs"): {
        "expect": "arity: flashinfer 0.7.4 declares 11 arguments, the Binding 8",
        "reason": _SAMPLER,
    },
    ("0.7.4", "sampling", "top_k_top_p_sampling_from_probs"): {
        "expect": "arity: flashinfer 0.7.4 declares 13 arguments, the Binding 10",
        "reason": _SAMPLER,
    },
    ("0.7.4", "sampling", "top_p_renorm_probs"): {
        "expect": "arity: flashinfer 0.7.4 declares 6 arguments, the Binding 4",
        "reason": _RENORM_P,
    },
    ("0.7.4", "sampling", "top_k_renorm_probs"): {
        "expect": "arity: flashinfer 0.7.4 declares 6 arguments, the Binding 5",
        "reason": _RENORM_K,
    },
    ("0.7.4", "sampling", "chain_speculative_sampling"): {
        "expect": "arity: flashinfer 0.7.4 declares 11 arguments, the Binding 9",
        "reason": _CHAIN,
    },
    ("0.7.4", "topk", "radix_topk"): {
        "expect": "arity: flashinfer 0.7.4 declares 9 arguments, the Binding 5",
        "reason": _TOPK,
    },
    ("0.7.4", "topk", "radix_topk_page_table_transform"): {
        "expect": "arity: flashinfer 0.7.4 declares 14 arguments, the Binding 7",
        "reason": _TOPK,
    },
    ("0.7.4", "topk", "radix_topk_ragged_transform"): {
        "expect": "arity: flashinfer 0.7.4 declares 10 arguments, the Binding 6",
        "reason": _TOPK,
    },
    **{("0.7.4", f"batch_mla/{backend}", "run"): {
        "expect": "arity: flashinfer 0.7.4 declares 18 arguments, the Binding 15",
        "reason": _MLA_RUN} for backend in ("fa2", "fa3")},
}
