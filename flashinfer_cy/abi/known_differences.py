"""Where a Binding line does not match a FlashInfer release's ABI, reviewed, with the reason.

Key: (flashinfer version, module key as in the ABI file, export; ``<export>().<method>``
for a method of the object an export returns). Value: ``expect``, the
start of the first mismatch tests/cpu/test_abi_tables.py reports (it fails when the
difference changes or goes away, so a stale entry cannot hide a new one), and ``reason``.
The Binding tables follow 0.6.3 (the release whose prebuilt modules this package loads).
Each entry is also an export a Binding refuses to call on a module of that release
(flashinfer_cy.abi.match.require_match raises KernelVersionError). Where a release only
added arguments of a value the family can state, the Binding carries that release's list
as a layout (flashinfer_cy/abi/layouts.py) instead of an entry here; where it changed an
export beyond that (another return type included), the family has a second line written
for that release (``Binding(..., written_for=...)``, e.g. the 0.7.4 samplers in
kernels/sampling.pyx, the 0.7.4 batched MLA plan in kernels/attention.pyx).
"""

KNOWN_DIFFERENCES = {
    ("0.7.4", "fused_moe_90", "init().run_moe_min_latency"): {
        "expect": "arity: flashinfer 0.7.4 declares 33 arguments, the Binding 27",
        "reason": "0.7.x's min-latency run takes run_moe's new arguments too (33 in all), "
                  "more than a call frame holds (binding.pxd MAX_ARGS 32); flashinfer-python "
                  "never calls it (cutlass_fused_moe raises NotImplementedError for "
                  "min_latency_mode in 0.6.3 and 0.7.4): not bound for 0.7.4, the rest of "
                  "the runner is (kernels/fused_moe.py METHODS_074)",
    },
    ("0.7.4", "gdn_prefill_sm90", "gdn_prefill"): {
        "expect": "module gdn_prefill_sm90 is not built by flashinfer 0.7.4",
        "reason": "0.7.x builds no GDN prefill module for sm_90: it dropped jit/gdn.py and "
                  "csrc/gdn_prefill_launcher.cu, and its chunk_gated_delta_rule runs on sm_90 a "
                  "CuTe-DSL kernel compiled inside its Python process "
                  "(gdn_kernels/delta_rule_dsl/delta_rule_sm90.py), which neither its jit-cache "
                  "wheel nor tools/build_kernels.py produces; its TVM-FFI cake GDN modules "
                  "(jit/cake_gdn.py, jit/cake_gdn_cp_backend.py) are sm_100a/sm_103a/sm_107a "
                  "only. gdn_prefill needs 0.6.3's gdn_prefill_sm90 (docs/abi-versions.md, "
                  "\"GDN prefill and 0.7.4\")",
    },
}
