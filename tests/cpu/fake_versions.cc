// A CPU stand-in for the norm, sampling and topk modules with flashinfer 0.6.3's argument
// lists (flashinfer_norm_binding.cu, flashinfer_sampling_binding.cu,
// flashinfer_topk_binding.cu), for tests/cpu/test_kernel_versions.py. rmsnorm computes (on
// float32 host memory), so a call that arrives proves the arguments did; the others only
// count their calls: a Binding refused for the module's version must never reach them.
#include <tvm/ffi/function.h>
#include <tvm/ffi/optional.h>
#include <tvm/ffi/container/tensor.h>

#include <atomic>
#include <cmath>
#include <cstdint>

namespace ffi = tvm::ffi;
using ffi::TensorView;

static std::atomic<int64_t> g_refused_calls{0};

void rmsnorm(TensorView out, TensorView input, TensorView weight, double eps, bool enable_pdl) {
  const int64_t rows = input.size(0), cols = input.size(1);
  const float* x = static_cast<const float*>(input.data_ptr());
  const float* w = static_cast<const float*>(weight.data_ptr());
  float* o = static_cast<float*>(out.data_ptr());
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0;
    for (int64_t c = 0; c < cols; ++c) ss += double(x[r * cols + c]) * x[r * cols + c];
    const double inv = 1.0 / std::sqrt(ss / cols + eps);
    for (int64_t c = 0; c < cols; ++c) o[r * cols + c] = float(x[r * cols + c] * inv * w[c]);
  }
}

void sampling_from_probs(TensorView probs, TensorView output, ffi::Optional<TensorView> maybe_indices,
                         bool deterministic, uint64_t philox_seed, uint64_t philox_offset) {
  ++g_refused_calls;
}

void radix_topk(TensorView input, TensorView output_indices, TensorView output_values,
                ffi::Optional<TensorView> maybe_row_states_buffer, int64_t top_k) {
  ++g_refused_calls;
}

int64_t refused_calls() { return g_refused_calls.load(); }

TVM_FFI_DLL_EXPORT_TYPED_FUNC(rmsnorm, rmsnorm);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(sampling_from_probs, sampling_from_probs);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(radix_topk, radix_topk);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(refused_calls, refused_calls);
