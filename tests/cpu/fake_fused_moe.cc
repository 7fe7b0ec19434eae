// CPU stand-in for FlashInfer 0.6.3's `fused_moe_90` module (the CUTLASS fused MoE runner),
// or with -DFAKE_MOE_074 for 0.7.4's (below), with the exact C++ signatures of
// csrc/fused_moe/cutlass_backend/
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
//
// 0.7.4 (-DFAKE_MOE_074): init takes use_fused_finalize and use_wfp4afp8_humming (recorded in
// the RunRecord's flags); run_moe takes clamped_relu2_limit, situ_beta, situ_linear_beta,
// swizzled_input_sf after swiglu_limit and workspace_buffer, nvfp4_4over6_code last (all
// recorded in RunInfo), and run_moe_min_latency likewise; the runner serves
// get_workspace_size. The workspace size is a function of every get_workspace_size argument
// and of the runner (WorkspaceBytes), so no caller can guess it; run_moe computes it from its
// operands as upstream's getWorkspaceInfo does, checks a given workspace_buffer as upstream
// does (uint8/int8, 1-D, CUDA, the input's device, large enough, contiguous, 128-byte
// aligned) and writes all of the bytes it needs, or allocates one with alloc_tensor when
// none is given, as upstream. The GEMM2 profile id is taken in the combined tactic list only
// ([gemm1 count, gemm1 + gemm2 count), 0.7.4's setRunnerProfiles). `fake_moe_workspace_asked`
// returns [get_workspace_size calls, its last 11 arguments, its last answer].
#include <tvm/ffi/container/array.h>
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/error.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>
#include <tvm/ffi/optional.h>

#include <tvm/ffi/extra/c_env_api.h>

#include <dlfcn.h>

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

#ifdef FAKE_MOE_074
constexpr bool kRelease074 = true;
#else
constexpr bool kRelease074 = false;
#endif

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
  kOutDtype, kFlags,  // bit 0 block scale, 1 w4 group scaling, 2 mxfp8, 3 packed weights,
                      // 0.7.4: 4 use_fused_finalize, 5 use_wfp4afp8_humming
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
  // 0.7.4's run_moe (0 from 0.6.3's):
  kWsGiven,      // 1: workspace_buffer given (kWsBytes/kWsData are its), 0: allocated
  kWsNeeded,     // the bytes run_moe needs for its operands (WorkspaceBytes)
  kSwizzledInputSf, kNvfp44Over6Code,
  kNewOptionalMask,  // bit i: clamped_relu2_limit, situ_beta, situ_linear_beta present
  kFreesAtRun,   // the stand-in libcudart's cudaFreeAsync count when the run began (-1: none)
  kQuantFirst,   // then per quant_scales tensor: ndim, shape[0..2], dtype, data, first value
  kQuantStride = 7,
  kInfoSlots = kQuantFirst + 4 * kQuantStride
};

std::mutex g_info_mutex;
std::vector<int64_t> g_info(kInfoSlots, 0);

int64_t ptr_word(const void* p) { return static_cast<int64_t>(reinterpret_cast<intptr_t>(p)); }

// The stand-in libcudart's cudaFreeAsync count (fake_cudart.c), -1 without it: a test tells
// by it whether anything was freed between packing a call and the runner using its memory.
int64_t async_frees_now() {
  void* rt = dlopen("libcudart.so.13", RTLD_LAZY | RTLD_NOLOAD);
  auto* count = rt ? reinterpret_cast<long (*)(void**)>(dlsym(rt, "fake_cudart_async_frees"))
                   : nullptr;
  int64_t n = count ? count(nullptr) : -1;
  if (rt) dlclose(rt);
  return n;
}

// alloc_tensor as upstream's tvm_ffi_utils.h spells it.
Tensor alloc_tensor(int64_t bytes, DLDevice device) {
  return Tensor::FromEnvAlloc(TVMFFIEnvTensorAlloc, ffi::Shape({bytes}), DLDataType{kDLInt, 8, 1},
                              device);
}

// The run methods' parameters as upstream's typed lambdas declare them, in order: the
// operands, 0.7.4's added four, (min-latency outputs,) the scalars, 0.7.4's last two.
#define FAKE_MOE_OPERANDS                                                                    \
  TensorView output, TensorView input, TensorView token_selected_experts,                    \
      Optional<TensorView> token_final_scales, TensorView fc1_expert_weights,                \
      Optional<TensorView> fc1_expert_biases, TensorView fc2_expert_weights,                 \
      Optional<TensorView> fc2_expert_biases, Optional<Array<Tensor>> quant_scales,          \
      Optional<TensorView> input_sf, Optional<TensorView> swiglu_alpha,                      \
      Optional<TensorView> swiglu_beta, Optional<TensorView> swiglu_limit
#define FAKE_MOE_SCALARS                                                                     \
  int64_t tp_size, int64_t tp_rank, int64_t ep_size, int64_t ep_rank, int64_t cluster_size, \
      int64_t cluster_rank, bool enable_alltoall, bool min_latency_mode,                     \
      Optional<Array<int64_t>> profile_ids, bool enable_pdl, int64_t base_activation_type
#ifdef FAKE_MOE_074
#define FAKE_MOE_ADDED                                                                       \
  , Optional<TensorView> clamped_relu2_limit, Optional<TensorView> situ_beta,                \
      Optional<TensorView> situ_linear_beta, bool swizzled_input_sf
#define FAKE_MOE_LAST , Optional<TensorView> workspace_buffer, int64_t nvfp4_4over6_code
#else
#define FAKE_MOE_ADDED
#define FAKE_MOE_LAST
#endif

// get_workspace_size's last arguments and answer, and how often it was asked.
std::mutex g_size_mutex;
std::vector<int64_t> g_size_asked(13, 0);

class FakeFusedMoeRunner : public ffi::ModuleObj {
 public:
  FakeFusedMoeRunner(DLDataType activation_dtype, DLDataType weight_dtype,
                     DLDataType output_dtype, bool use_deepseek_fp8_block_scale,
                     bool use_w4_group_scaling, bool use_mxfp8_act_scaling,
                     bool use_packed_weights, bool use_fused_finalize = false,
                     bool use_wfp4afp8_humming = false)
      : act_(activation_dtype), weight_(weight_dtype), out_(output_dtype) {
    flags_ = (use_deepseek_fp8_block_scale ? 1 : 0) | (use_w4_group_scaling ? 2 : 0) |
             (use_mxfp8_act_scaling ? 4 : 0) | (use_packed_weights ? 8 : 0) |
             (use_fused_finalize ? 16 : 0) | (use_wfp4afp8_humming ? 32 : 0);
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
          [this](FAKE_MOE_OPERANDS FAKE_MOE_ADDED, FAKE_MOE_SCALARS FAKE_MOE_LAST) {
#ifdef FAKE_MOE_074
            Extra074 extra{clamped_relu2_limit.has_value() | situ_beta.has_value() << 1 |
                               situ_linear_beta.has_value() << 2,
                           swizzled_input_sf, nvfp4_4over6_code, workspace_buffer};
#else
            Extra074 extra{};
#endif
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
            if (kRelease074 && r[kProfileCount] == 2) CheckProfiles074(r[kProfile0], r[kProfile1]);
            r[kOptionalMask] = token_final_scales.has_value() | fc1_expert_biases.has_value() << 1 |
                               fc2_expert_biases.has_value() << 2 | quant_scales.has_value() << 3 |
                               input_sf.has_value() << 4 | swiglu_alpha.has_value() << 5 |
                               swiglu_beta.has_value() << 6 | swiglu_limit.has_value() << 7;
            r[kQuantScaleCount] = quant_scales.has_value() ? quant_scales.value().size() : -1;
            r[kNumTokens] = input.size(0);
            r[kTopK] = token_selected_experts.size(1);
            r[kExpertsOnRank] = fc2_expert_weights.size(0);
            r[kHidden] = fc2_expert_weights.size(1);
            int64_t needed = WorkspaceBytes(
                input.size(0), fc2_expert_weights.size(1), fc2_expert_weights.size(2),
                fc2_expert_weights.size(0) * ep_size, token_selected_experts.size(1), tp_size,
                tp_rank, ep_size, ep_rank, min_latency_mode, base_activation_type);
            RecordRun(output, input, token_selected_experts, token_final_scales,
                      fc1_expert_weights, fc1_expert_biases, fc2_expert_weights,
                      fc2_expert_biases, quant_scales, needed, extra);
          });
    } else if (name == "run_moe_min_latency") {
      return Function::FromTyped(
          [this](FAKE_MOE_OPERANDS FAKE_MOE_ADDED, TensorView num_active_experts_per_node,
                 TensorView experts_to_token_score, TensorView active_expert_global_ids,
                 FAKE_MOE_SCALARS FAKE_MOE_LAST) {
            int64_t scratch[kRecordSlots];
            int64_t* r = Record(output, 2, scratch);
            r[kTpSize] = tp_size, r[kEpSize] = ep_size, r[kMinLatency] = min_latency_mode;
            r[kActivation] = base_activation_type;
          });
#ifdef FAKE_MOE_074
    } else if (name == "get_workspace_size") {
      return Function::FromTyped([this](int64_t num_rows, int64_t hidden_size,
                                        int64_t inter_size, int64_t num_experts_total,
                                        int64_t experts_per_token, int64_t tp_size,
                                        int64_t tp_rank, int64_t ep_size, int64_t ep_rank,
                                        bool min_latency_mode,
                                        int64_t base_activation_type) -> int64_t {
        ++g_calls;
        int64_t bytes = WorkspaceBytes(num_rows, hidden_size, inter_size, num_experts_total,
                                       experts_per_token, tp_size, tp_rank, ep_size, ep_rank,
                                       min_latency_mode, base_activation_type);
        std::lock_guard<std::mutex> lock(g_size_mutex);
        g_size_asked = {g_size_asked[0] + 1, num_rows, hidden_size, inter_size,
                        num_experts_total, experts_per_token, tp_size, tp_rank, ep_size,
                        ep_rank, min_latency_mode, base_activation_type, bytes};
        return bytes;
      });
#endif
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

  // The workspace bytes a run of these sizes needs: 0.6.3's stand-in, of the rows alone
  // (what the tests of that release expect); 0.7.4's, of every argument of
  // get_workspace_size and of the runner's configuration, so that only asking gives it.
  int64_t WorkspaceBytes(int64_t rows, int64_t hidden, int64_t inter, int64_t experts_total,
                         int64_t top_k, int64_t tp_size, int64_t tp_rank, int64_t ep_size,
                         int64_t ep_rank, bool min_latency, int64_t activation) const {
    if (!kRelease074) return 4096 + 64 * rows * top_k;
    return 4096 + 64 * rows * top_k + 3 * hidden + 5 * inter + 7 * experts_total +
           11 * tp_size + 13 * tp_rank + 17 * ep_size + 19 * ep_rank +
           (min_latency ? 100003 : 0) + 23 * activation + 29 * gemm1_ + 31 * flags_;
  }

  // 0.7.4's setRunnerProfiles: GEMM1 ids within GEMM1's tactics, GEMM2 ids in the
  // combined list.
  void CheckProfiles074(int64_t id1, int64_t id2) const {
    TVM_FFI_ICHECK(id1 == -1 || (id1 >= 0 && id1 < gemm1_)) << "Invalid gemm1 profile id: " << id1;
    TVM_FFI_ICHECK(id2 == -1 || (id2 >= gemm1_ && id2 < gemm1_ + gemm2_))
        << "Invalid gemm2 profile id: " << id2;
  }

  // What 0.7.4's run_moe takes beyond 0.6.3's (zero from 0.6.3's).
  struct Extra074 {
    int64_t optional_mask = 0;
    bool swizzled_input_sf = false;
    int64_t nvfp4_4over6_code = 0;
    Optional<TensorView> workspace_buffer;
  };

  // What upstream's runMoe does before its kernels: take the caller's workspace (0.7.4, with
  // upstream's checks) or allocate one of the bytes it needs, and use all of them; then the
  // record of this call.
  void RecordRun(TensorView output, TensorView input, TensorView experts,
                 Optional<TensorView> scales, TensorView fc1, Optional<TensorView> fc1_bias,
                 TensorView fc2, Optional<TensorView> fc2_bias,
                 Optional<Array<Tensor>> quant_scales, int64_t needed, const Extra074& extra) {
    std::vector<int64_t> info(kInfoSlots, 0);
    info[kFreesAtRun] = async_frees_now();
    void* ws_data = nullptr;
    Tensor owned;
    if (extra.workspace_buffer.has_value()) {
      TensorView ws = extra.workspace_buffer.value();
      TVM_FFI_ICHECK(is(ws.dtype(), kDLInt, 8) || is(ws.dtype(), kDLUInt, 8))
          << "workspace_buffer dtype must be int8 or uint8";
      TVM_FFI_ICHECK_EQ(ws.ndim(), 1) << "workspace_buffer must be 1-D, got ndim=" << ws.ndim();
      TVM_FFI_ICHECK_EQ(ws.device().device_type, kDLCUDA) << "workspace_buffer must be a CUDA tensor";
      TVM_FFI_ICHECK_EQ(ws.device().device_id, input.device().device_id)
          << "workspace_buffer device does not match input device";
      TVM_FFI_ICHECK(ws.size(0) >= needed)
          << "workspace_buffer too small: need " << needed << " bytes, got " << ws.size(0);
      TVM_FFI_ICHECK(ws.IsContiguous()) << "workspace_buffer must be contiguous";
      TVM_FFI_ICHECK(reinterpret_cast<uintptr_t>(ws.data_ptr()) % 128 == 0)
          << "workspace_buffer data pointer must be 128-byte aligned";
      ws_data = ws.data_ptr();
      info[kWsBytes] = ws.size(0);
      info[kWsDevType] = ws.device().device_type;
      info[kWsDevId] = ws.device().device_id;
      info[kWsGiven] = 1;
    } else {
      owned = alloc_tensor(needed, input.device());
      ws_data = owned.data_ptr();
      info[kWsBytes] = owned.numel();
      info[kWsDevType] = owned.device().device_type;
      info[kWsDevId] = owned.device().device_id;
    }
    TVM_FFI_ICHECK(ws_data != nullptr) << "stand-in: workspace without memory";
    std::memset(ws_data, 0xa5, needed);  // the fake libcudart's memory is host memory
    info[kWsData] = ptr_word(ws_data);
    info[kWsNeeded] = needed;
    info[kSwizzledInputSf] = extra.swizzled_input_sf;
    info[kNvfp44Over6Code] = extra.nvfp4_4over6_code;
    info[kNewOptionalMask] = extra.optional_mask;
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

#ifdef FAKE_MOE_074
tvm::ffi::Module init(DLDataType activation_dtype, DLDataType weight_dtype, DLDataType output_dtype,
                      bool use_deepseek_fp8_block_scale, bool use_w4_group_scaling,
                      bool use_mxfp8_act_scaling, bool use_packed_weights, bool use_fused_finalize,
                      bool use_wfp4afp8_humming) {
  auto ptr = tvm::ffi::make_object<FakeFusedMoeRunner>(
      activation_dtype, weight_dtype, output_dtype, use_deepseek_fp8_block_scale,
      use_w4_group_scaling, use_mxfp8_act_scaling, use_packed_weights, use_fused_finalize,
      use_wfp4afp8_humming);
  return tvm::ffi::Module(ptr);
}
#else
tvm::ffi::Module init(DLDataType activation_dtype, DLDataType weight_dtype, DLDataType output_dtype,
                      bool use_deepseek_fp8_block_scale, bool use_w4_group_scaling,
                      bool use_mxfp8_act_scaling, bool use_packed_weights) {
  auto ptr = tvm::ffi::make_object<FakeFusedMoeRunner>(
      activation_dtype, weight_dtype, output_dtype, use_deepseek_fp8_block_scale,
      use_w4_group_scaling, use_mxfp8_act_scaling, use_packed_weights);
  return tvm::ffi::Module(ptr);
}
#endif

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

// [get_workspace_size calls, its last 11 arguments, its last answer] (0.7.4; zeros on 0.6.3).
Array<int64_t> fake_moe_workspace_asked() {
  std::lock_guard<std::mutex> lock(g_size_mutex);
  return Array<int64_t>(g_size_asked.begin(), g_size_asked.end());
}

TVM_FFI_DLL_EXPORT_TYPED_FUNC(init, init);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(fake_moe_workspace_asked, fake_moe_workspace_asked);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(fake_moe_counts, fake_moe_counts);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(fake_moe_last_run, fake_moe_last_run);
