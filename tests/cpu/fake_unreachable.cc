// A CPU stand-in for a FlashInfer 0.7.4 FA2 batch-prefill module, for
// tests/cpu/test_unreachable_symbols.py: like the real one (csrc/batch_prefill.cu), its run
// path references flashinfer::BatchPrefillWith{Paged,Ragged}KVCacheDispatched for every
// CTA_TILE_Q that DISPATCH_CTA_TILE_Q names, while this file defines none of them, so each
// stays an undefined symbol of the .so (what 0.7.4's instantiation lists leave undefined for
// CTA_TILE_Q=32, head_dim_vo < 512). The declarations below reproduce 0.7.4's template
// parameter lists (include/flashinfer/attention/prefill.cuh), so the mangled names are the
// real ones. Nothing here calls them: `dispatch` is exported but never called by the tests.
//
// Which undefined references it carries is chosen at compile time:
//   -DFAKE_CTA_TILE_Q=<n> -DFAKE_HEAD_DIM_VO=<n>  the CTA_TILE_Q / HEAD_DIM_VO of the missing
//                                                 paged and ragged instantiations (32 / 128)
//   -DFAKE_EXTRA_MISSING                          also an undefined extern "C" function
#include <tvm/ffi/function.h>

#include <cstdint>

#ifndef FAKE_CTA_TILE_Q
#define FAKE_CTA_TILE_Q 32
#endif
#ifndef FAKE_HEAD_DIM_VO
#define FAKE_HEAD_DIM_VO 128
#endif

struct CUstream_st;
typedef CUstream_st* cudaStream_t;
enum cudaError { cudaSuccess = 0 };
typedef cudaError cudaError_t;

namespace flashinfer {

enum class PosEncodingMode { kNone = 0U, kRoPELlama = 1U, kALiBi = 2U };
enum class MaskMode { kNone = 0U, kCausal = 1U, kCustom = 2U, kMultiItemScoring = 3U };

template <bool a, bool b, bool c, bool d>
struct DefaultAttention {};

template <bool SAME_KV_STRIDES, uint32_t CTA_TILE_Q, uint32_t HEAD_DIM_QK, uint32_t HEAD_DIM_VO,
          PosEncodingMode POS_ENCODING_MODE, bool USE_FP16_QK_REDUCTION, MaskMode MASK_MODE,
          bool USE_TOKEN_HEAD_SF, typename AttentionVariant, typename Params>
cudaError_t BatchPrefillWithPagedKVCacheDispatched(Params params, typename Params::DTypeO* tmp_v,
                                                   float* tmp_s, bool enable_pdl,
                                                   cudaStream_t stream);

template <uint32_t CTA_TILE_Q, uint32_t HEAD_DIM_QK, uint32_t HEAD_DIM_VO,
          PosEncodingMode POS_ENCODING_MODE, bool USE_FP16_QK_REDUCTION, MaskMode MASK_MODE,
          bool USE_TOKEN_HEAD_SF, typename AttentionVariant, typename Params>
cudaError_t BatchPrefillWithRaggedKVCacheDispatched(Params params, typename Params::DTypeO* tmp_v,
                                                    float* tmp_s, bool enable_pdl,
                                                    cudaStream_t stream);

}  // namespace flashinfer

// Global, as the generated batch_prefill_config.inc declares them
// (csrc/batch_prefill_customize_config.jinja).
struct half_stand_in {};
struct PagedParams {
  using DTypeO = half_stand_in;
};
struct RaggedParams {
  using DTypeO = half_stand_in;
};

#ifdef FAKE_EXTRA_MISSING
extern "C" int fake_missing_helper(int);
#endif

using Variant = flashinfer::DefaultAttention<true, false, false, false>;

// What batch_prefill.cu's paged and ragged runs reach through DISPATCH_CTA_TILE_Q.
int64_t dispatch(int64_t which) {
  cudaError_t status = cudaSuccess;
  if (which == 0) {
    status = flashinfer::BatchPrefillWithPagedKVCacheDispatched<
        false, FAKE_CTA_TILE_Q, 128, FAKE_HEAD_DIM_VO, flashinfer::PosEncodingMode::kNone, false,
        flashinfer::MaskMode::kCustom, false, Variant, PagedParams>(
        PagedParams{}, nullptr, nullptr, false, nullptr);
  } else if (which == 1) {
    status = flashinfer::BatchPrefillWithRaggedKVCacheDispatched<
        FAKE_CTA_TILE_Q, 128, FAKE_HEAD_DIM_VO, flashinfer::PosEncodingMode::kNone, false,
        flashinfer::MaskMode::kCustom, false, Variant, RaggedParams>(
        RaggedParams{}, nullptr, nullptr, false, nullptr);
  }
#ifdef FAKE_EXTRA_MISSING
  else {
    return fake_missing_helper(static_cast<int>(which));
  }
#endif
  return static_cast<int64_t>(status);
}

// A reachable export: a module accepted with unreachable symbols still serves its calls.
int64_t add_one(int64_t x) { return x + 1; }

TVM_FFI_DLL_EXPORT_TYPED_FUNC(dispatch, dispatch);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(add_one, add_one);
