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
// (int64 slots, see RunRecord; when it is large enough) so a test can check every scalar
// landed where it belongs. run_moe also does what upstream's does first: it allocates its
// workspace with alloc_tensor (TVM-FFI's environment allocator, which fails with "allocator
// is nullptr" when none is installed) and writes all of it; it records that allocation,
// the stream TVM-FFI's environment names for the call, the data pointers it was given and
// every quant_scales tensor (shape, dtype, data pointer, first value) in a per-process
// record the `fake_moe_last_run` export returns (RunInfo). run_gemm_profile with
// do_preparation keeps a workspace allocated the same way until the next preparation or
// the runner's end, as upstream's mProfileWorkspace.
#include <tvm/ffi/container/array.h>
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/error.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>
#include <tvm/ffi/optional.h>

#include <tvm/ffi/extra/c_env_api.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <vector>

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

// The last run_moe's allocation and operands (fake_moe_last_run), int64 each.
enum RunInfo : int {
  kWsBytes,      // workspace bytes asked of alloc_tensor
  kWsData,       // its data pointer
  kWsDevType, kWsDevId,
  kEnvStream,    // TVMFFIEnvGetStream(kDLCUDA, input's device) during the call
  kInputData, kOutputData, kExpertIdsData, kScalesData, kFc1Data, kFc2Data,
  kFc1BiasData, kFc2BiasData,  // 0 when absent
  kQuantCount,   // -1: no quant_scales
  kQuantFirst,   // then per quant_scales tensor: ndim, shape[0..2], dtype, data, first value
  kQuantStride = 7,
  kInfoSlots = kQuantFirst + 4 * kQuantStride
};

std::mutex g_info_mutex;
std::vector<int64_t> g_info(kInfoSlots, 0);

int64_t ptr_word(const void* p) { return static_cast<int64_t>(reinterpret_cast<intptr_t>(p)); }

// alloc_tensor as upstream's tvm_ffi_utils.h spells it.
Tensor alloc_tensor(int64_t bytes, DLDevice device) {
  return Tensor::FromEnvAlloc(TVMFFIEnvTensorAlloc, ffi::Shape({bytes}), DLDataType{kDLInt, 8, 1},
                              device);
}

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
            if (do_preparation) {  // kept by the runner past the call, as upstream's
              profile_ws_ = alloc_tensor(1024 * input.size(0), input.device());
              std::memset(profile_ws_.data_ptr(), 0x5a, 1024 * input.size(0));
            }
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
            int64_t scratch[kRecordSlots];
            int64_t* r = Record(output, 1, scratch);
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
            RecordRun(output, input, token_selected_experts, token_final_scales,
                      fc1_expert_weights, fc1_expert_biases, fc2_expert_weights,
                      fc2_expert_biases, quant_scales);
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
            int64_t scratch[kRecordSlots];
            int64_t* r = Record(output, 2, scratch);
            r[kTpSize] = tp_size, r[kEpSize] = ep_size, r[kMinLatency] = min_latency_mode;
            r[kActivation] = base_activation_type;
          });
    } else {
      return Function(nullptr);  // as upstream: an unknown name is no function
    }
  }

 private:
  // The record slots in `output` (`scratch` when it cannot hold them), header filled.
  int64_t* Record(TensorView output, int64_t method, int64_t* scratch) {
    ++g_calls;
    int64_t bytes = output.numel() * ((output.dtype().bits * output.dtype().lanes + 7) / 8);
    auto* r = bytes >= int64_t{kRecordSlots} * 8 ? static_cast<int64_t*>(output.data_ptr())
                                                   : scratch;
    std::memset(r, 0, kRecordSlots * 8);
    r[kMethod] = method, r[kRunnerId] = id_, r[kCallsOnRunner] = ++runs_;
    r[kActDtype] = dtype_word(act_), r[kWeightDtype] = dtype_word(weight_);
    r[kOutDtype] = dtype_word(out_), r[kFlags] = flags_;
    return r;
  }

  // What upstream's runMoe does before its kernels: allocate the workspace (here, a size
  // derived from the operands) and use it; then the record of this call.
  void RecordRun(TensorView output, TensorView input, TensorView experts,
                 Optional<TensorView> scales, TensorView fc1, Optional<TensorView> fc1_bias,
                 TensorView fc2, Optional<TensorView> fc2_bias,
                 Optional<Array<Tensor>> quant_scales) {
    int64_t bytes = 4096 + 64 * input.size(0) * experts.size(1);
    Tensor ws = alloc_tensor(bytes, input.device());
    TVM_FFI_ICHECK(ws.data_ptr() != nullptr) << "stand-in: workspace without memory";
    std::memset(ws.data_ptr(), 0xa5, bytes);  // the fake libcudart's memory is host memory
    std::vector<int64_t> info(kInfoSlots, 0);
    info[kWsBytes] = ws.numel();
    info[kWsData] = ptr_word(ws.data_ptr());
    info[kWsDevType] = ws.device().device_type;
    info[kWsDevId] = ws.device().device_id;
    info[kEnvStream] = ptr_word(TVMFFIEnvGetStream(kDLCUDA, input.device().device_id));
    info[kInputData] = ptr_word(input.data_ptr());
    info[kOutputData] = ptr_word(output.data_ptr());
    info[kExpertIdsData] = ptr_word(experts.data_ptr());
    info[kScalesData] = scales.has_value() ? ptr_word(scales.value().data_ptr()) : 0;
    info[kFc1Data] = ptr_word(fc1.data_ptr());
    info[kFc2Data] = ptr_word(fc2.data_ptr());
    info[kFc1BiasData] = fc1_bias.has_value() ? ptr_word(fc1_bias.value().data_ptr()) : 0;
    info[kFc2BiasData] = fc2_bias.has_value() ? ptr_word(fc2_bias.value().data_ptr()) : 0;
    info[kQuantCount] = quant_scales.has_value() ? quant_scales.value().size() : -1;
    for (int64_t i = 0; i < info[kQuantCount] && i < 4; ++i) {
      Tensor t = quant_scales.value()[i];
      int64_t* q = &info[kQuantFirst + i * kQuantStride];
      q[0] = t.ndim();
      for (int d = 0; d < 3; ++d) q[1 + d] = d < t.ndim() ? t.size(d) : -1;
      q[4] = dtype_word(t.dtype());
      q[5] = ptr_word(t.data_ptr());
      float first = 0;
      if (t.numel() > 0) std::memcpy(&first, t.data_ptr(), sizeof first);
      q[6] = static_cast<int64_t>(first * 1000000);
    }
    std::lock_guard<std::mutex> lock(g_info_mutex);
    g_info = std::move(info);
  }

  DLDataType act_, weight_, out_;
  int64_t flags_ = 0, gemm1_ = 0, gemm2_ = 0, id_ = 0, runs_ = 0;
  Tensor profile_ws_;
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

// The record of the last run_moe (RunInfo).
Array<int64_t> fake_moe_last_run() {
  std::lock_guard<std::mutex> lock(g_info_mutex);
  return Array<int64_t>(g_info.begin(), g_info.end());
}

TVM_FFI_DLL_EXPORT_TYPED_FUNC(init, init);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(fake_moe_counts, fake_moe_counts);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(fake_moe_last_run, fake_moe_last_run);
