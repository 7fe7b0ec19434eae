// No-op stand-ins for FlashInfer 0.6.3 exports, with their exact C++ signatures
// (flashinfer_cy/abi/flashinfer-0.6.3.json): tools/host_overhead_cpu.py loads this one
// library under several module URIs to time flashinfer_cy's own per-call work -- checks,
// packing, the TVM-FFI typed call -- on a machine without a GPU. Nothing here computes.
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/function.h>
#include <tvm/ffi/optional.h>

#include <cstdint>

using tvm::ffi::Optional;
using tvm::ffi::TensorView;

namespace {
void merge_state(TensorView, TensorView, TensorView, TensorView, TensorView, TensorView) {}
void sampling_from_probs(TensorView, TensorView, Optional<TensorView>, bool, uint64_t,
                         uint64_t) {}
void top_p_sampling_from_probs(TensorView, TensorView, Optional<TensorView>,
                               Optional<TensorView>, double, bool, uint64_t, uint64_t) {}
void apply_rope_pos_ids(TensorView, TensorView, TensorView, TensorView, TensorView, int64_t,
                        bool, double, double) {}
void softmax(TensorView, TensorView, TensorView, Optional<TensorView>, double, bool) {}
void top_k_mask_logits(TensorView, TensorView, Optional<TensorView>, int64_t, TensorView) {}
void top_k_renorm_probs(TensorView, TensorView, Optional<TensorView>, int64_t, TensorView) {}
void top_k_top_p_sampling_from_probs(TensorView, TensorView, Optional<TensorView>,
                                     Optional<TensorView>, double, Optional<TensorView>, double,
                                     bool, uint64_t, uint64_t) {}
void act_and_mul(TensorView, TensorView, bool) {}
void rmsnorm(TensorView, TensorView, TensorView, double, bool) {}
void append_paged_kv_cache(TensorView, TensorView, TensorView, TensorView, TensorView,
                           TensorView, TensorView, TensorView, TensorView, int64_t) {}
}  // namespace

TVM_FFI_DLL_EXPORT_TYPED_FUNC(merge_state, merge_state);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(sampling_from_probs, sampling_from_probs);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(top_p_sampling_from_probs, top_p_sampling_from_probs);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(softmax, softmax);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(top_k_mask_logits, top_k_mask_logits);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(top_k_renorm_probs, top_k_renorm_probs);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(top_k_top_p_sampling_from_probs, top_k_top_p_sampling_from_probs);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(apply_rope_pos_ids, apply_rope_pos_ids);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(silu_and_mul, act_and_mul);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(rmsnorm, rmsnorm);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(append_paged_kv_cache, append_paged_kv_cache);
