// CPU stand-in for FlashInfer 0.6.3's `fused_moe_90` module (the CUTLASS fused MoE runner),
// with the exact C++ signatures of csrc/fused_moe/cutlass_backend/
// flashinfer_cutlass_fused_moe_binding.cu: the `init` export returns a ModuleObj subclass
// (kind "fused_moe_runner", no type info of its own, as upstream) whose GetFunction serves
// the same method names with the same typed-lambda parameter lists, so TVM-FFI's typed-call
// checks verify the kinds flashinfer_cy packs and the tests verify the order.
//
// It computes nothing. It counts runner constructions, destructions, method lookups and
// method calls (the `fake_moe_counts` export), refuses the dtype combinations upstream's
// constructor refuses, and the run methods record what they received into `output`
// (int64 slots, see RunRecord) so a test can check every scalar landed where it belongs.
#include <tvm/ffi/container/array.h>
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/error.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>
#include <tvm/ffi/optional.h>

#include <atomic>
#include <cstdint>
#include <cstring>

namespace ffi = tvm::ffi;
using ffi::Array;
using ffi::Function;
using ffi::Optional;
using ffi::Tensor;
using ffi::TensorView;

namespace {

std::atomic<int64_t> g_constructed{0}, g_destroyed{0}, g_lookups{0}, g_calls{0};

bool is(DLDataType t, uint8_t code, uint8_t bits) { return t.code == code && t.bits == bits; }
bool bf16(DLDataType t) { return is(t, kDLBfloat, 16); }
bool f16(DLDataType t) { return is(t, kDLFloat, 16); }
bool fp8(DLDataType t) { return is(t, kDLFloat8_e4m3fn, 8); }

// What a run method writes into `output` (int64 each), for the tests to read back.
enum RunRecord : int {
  kMethod,        // 1 run_moe, 2 run_moe_min_latency
  kRunnerId,      // which construction of this process served the call (1-based)
  kCallsOnRunner, // calls of run methods on this runner so far, this one included
  kTpSize, kTpRank, kEpSize, kEpRank, kClusterSize, kClusterRank,
  kAllToAll, kMinLatency, kProfileCount, kProfile0, kProfile1, kEnablePdl, kActivation,
  kOptionalMask,  // bit i: optional i present (token_final_scales, fc1_expert_biases,
                  // fc2_expert_biases, quant_scales, input_sf, swiglu_alpha, swiglu_beta,
                  // swiglu_limit)
  kQuantScaleCount, kNumTokens, kTopK, kExpertsOnRank, kHidden, kActDtype, kWeightDtype,
  kOutDtype, kFlags,  // bit 0 block scale, 1 w4 group scaling, 2 mxfp8, 3 packed weights
  kRecordSlots
};

int64_t dtype_word(DLDataType t) { return (int64_t{t.code} << 16) | t.bits; }

class FakeFusedMoeRunner : public ffi::ModuleObj {
 public:
  FakeFusedMoeRunner(DLDataType activation_dtype, DLDataType weight_dtype,
                     DLDataType output_dtype, bool use_deepseek_fp8_block_scale,
                     bool use_w4_group_scaling, bool use_mxfp8_act_scaling,
                     bool use_packed_weights)
      : act_(activation_dtype), weight_(weight_dtype), out_(output_dtype) {
    flags_ = (use_deepseek_fp8_block_scale ? 1 : 0) | (use_w4_group_scaling ? 2 : 0) |
             (use_mxfp8_act_scaling ? 4 : 0) | (use_packed_weights ? 8 : 0);
    // The combinations upstream's constructor builds a runner for (without FP4/int4).
    bool ok = (f16(act_) && f16(weight_)) || (bf16(act_) && bf16(weight_)) ||
              (bf16(act_) && fp8(weight_)) ||
              (fp8(act_) && fp8(weight_) && (f16(out_) || bf16(out_)));
    TVM_FFI_ICHECK(ok) << "Could not construct fused moe op with the requested input "
                          "combination (stand-in)";
    // Configuration-dependent, so a test can tell which runner answered.
    gemm1_ = 2 + activation_dtype.bits / 8 + (use_deepseek_fp8_block_scale ? 10 : 0);
    gemm2_ = 1 + weight_dtype.bits / 4;
    id_ = ++g_constructed;
  }
  ~FakeFusedMoeRunner() { ++g_destroyed; }

  const char* kind() const final { return "fused_moe_runner"; }

  Optional<Function> GetFunction(const ffi::String& name) final {
    ++g_lookups;
    if (name == "run_gemm_profile") {
      return Function::FromTyped(
          [this](TensorView input, TensorView fc1_expert_weights,
                 Optional<TensorView> fc1_expert_biases, TensorView fc2_expert_weights,
                 Optional<TensorView> fc2_expert_biases, int64_t top_k, int64_t tp_size,
                 int64_t tp_rank, int64_t ep_size, int64_t ep_rank, int64_t cluster_size,
                 int64_t cluster_rank, bool enable_alltoall, bool min_latency_mode,
                 int64_t gemm_idx, int64_t profile_id, bool do_preparation, bool enable_pdl,
                 int64_t activation_type) {
            ++g_calls;
            TVM_FFI_ICHECK(gemm_idx == 1 || gemm_idx == 2) << "gemm_idx " << gemm_idx;
            TVM_FFI_ICHECK(profile_id >= -1 && profile_id < gemm1_ + gemm2_)
                << "profile_id " << profile_id;
          });
    } else if (name == "get_tactic_num") {
      return Function::FromTyped([this]() -> int64_t {
        ++g_calls;
        return gemm1_ + gemm2_;
      });
    } else if (name == "get_gemm1_tactic_count") {
      return Function::FromTyped([this]() -> int64_t {
        ++g_calls;
        return gemm1_;
      });
    } else if (name == "get_gemm2_tactic_count") {
      return Function::FromTyped([this]() -> int64_t {
        ++g_calls;
        return gemm2_;
      });
    } else if (name == "run_moe") {
      return Function::FromTyped(
          [this](TensorView output, TensorView input, TensorView token_selected_experts,
                 Optional<TensorView> token_final_scales, TensorView fc1_expert_weights,
                 Optional<TensorView> fc1_expert_biases, TensorView fc2_expert_weights,
                 Optional<TensorView> fc2_expert_biases, Optional<Array<Tensor>> quant_scales,
                 Optional<TensorView> input_sf, Optional<TensorView> swiglu_alpha,
                 Optional<TensorView> swiglu_beta, Optional<TensorView> swiglu_limit,
                 int64_t tp_size, int64_t tp_rank, int64_t ep_size, int64_t ep_rank,
                 int64_t cluster_size, int64_t cluster_rank, bool enable_alltoall,
                 bool min_latency_mode, Optional<Array<int64_t>> profile_ids, bool enable_pdl,
                 int64_t base_activation_type) {
            int64_t* r = Record(output, 1);
            r[kTpSize] = tp_size, r[kTpRank] = tp_rank, r[kEpSize] = ep_size;
            r[kEpRank] = ep_rank, r[kClusterSize] = cluster_size;
            r[kClusterRank] = cluster_rank, r[kAllToAll] = enable_alltoall;
            r[kMinLatency] = min_latency_mode, r[kEnablePdl] = enable_pdl;
            r[kActivation] = base_activation_type;
            r[kProfileCount] = profile_ids.has_value() ? profile_ids.value().size() : -1;
            r[kProfile0] = r[kProfileCount] > 0 ? profile_ids.value()[0] : -99;
            r[kProfile1] = r[kProfileCount] > 1 ? profile_ids.value()[1] : -99;
            r[kOptionalMask] = token_final_scales.has_value() | fc1_expert_biases.has_value() << 1 |
                               fc2_expert_biases.has_value() << 2 | quant_scales.has_value() << 3 |
                               input_sf.has_value() << 4 | swiglu_alpha.has_value() << 5 |
                               swiglu_beta.has_value() << 6 | swiglu_limit.has_value() << 7;
            r[kQuantScaleCount] = quant_scales.has_value() ? quant_scales.value().size() : -1;
            r[kNumTokens] = input.size(0);
            r[kTopK] = token_selected_experts.size(1);
            r[kExpertsOnRank] = fc2_expert_weights.size(0);
            r[kHidden] = fc2_expert_weights.size(1);
          });
    } else if (name == "run_moe_min_latency") {
      return Function::FromTyped(
          [this](TensorView output, TensorView input, TensorView token_selected_experts,
                 Optional<TensorView> token_final_scales, TensorView fc1_expert_weights,
                 Optional<TensorView> fc1_expert_biases, TensorView fc2_expert_weights,
                 Optional<TensorView> fc2_expert_biases, Optional<Array<Tensor>> quant_scales,
                 Optional<TensorView> input_sf, Optional<TensorView> swiglu_alpha,
                 Optional<TensorView> swiglu_beta, Optional<TensorView> swiglu_limit,
                 TensorView num_active_experts_per_node, TensorView experts_to_token_score,
                 TensorView active_expert_global_ids, int64_t tp_size, int64_t tp_rank,
                 int64_t ep_size, int64_t ep_rank, int64_t cluster_size, int64_t cluster_rank,
                 bool enable_alltoall, bool min_latency_mode, Optional<Array<int64_t>> profile_ids,
                 bool enable_pdl, int64_t base_activation_type) {
            int64_t* r = Record(output, 2);
            r[kTpSize] = tp_size, r[kEpSize] = ep_size, r[kMinLatency] = min_latency_mode;
            r[kActivation] = base_activation_type;
          });
    } else {
      return Function(nullptr);  // as upstream: an unknown name is no function
    }
  }

 private:
  // The record slots in `output` (which must hold them), header filled.
  int64_t* Record(TensorView output, int64_t method) {
    ++g_calls;
    int64_t bytes = output.numel() * ((output.dtype().bits * output.dtype().lanes + 7) / 8);
    TVM_FFI_ICHECK_GE(bytes, int64_t{kRecordSlots} * 8)
        << "stand-in: output too small for the call record";
    auto* r = static_cast<int64_t*>(output.data_ptr());
    std::memset(r, 0, kRecordSlots * 8);
    r[kMethod] = method, r[kRunnerId] = id_, r[kCallsOnRunner] = ++runs_;
    r[kActDtype] = dtype_word(act_), r[kWeightDtype] = dtype_word(weight_);
    r[kOutDtype] = dtype_word(out_), r[kFlags] = flags_;
    return r;
  }

  DLDataType act_, weight_, out_;
  int64_t flags_ = 0, gemm1_ = 0, gemm2_ = 0, id_ = 0, runs_ = 0;
};

}  // namespace

tvm::ffi::Module init(DLDataType activation_dtype, DLDataType weight_dtype, DLDataType output_dtype,
                      bool use_deepseek_fp8_block_scale, bool use_w4_group_scaling,
                      bool use_mxfp8_act_scaling, bool use_packed_weights) {
  auto ptr = tvm::ffi::make_object<FakeFusedMoeRunner>(
      activation_dtype, weight_dtype, output_dtype, use_deepseek_fp8_block_scale,
      use_w4_group_scaling, use_mxfp8_act_scaling, use_packed_weights);
  return tvm::ffi::Module(ptr);
}

// The stand-in's own probe: [constructed, destroyed, method lookups, method calls].
Array<int64_t> fake_moe_counts() {
  return Array<int64_t>{g_constructed.load(), g_destroyed.load(), g_lookups.load(),
                        g_calls.load()};
}

TVM_FFI_DLL_EXPORT_TYPED_FUNC(init, init);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(fake_moe_counts, fake_moe_counts);
