// CPU stand-ins for exports whose argument list changed between FlashInfer releases, for
// tests/cpu/test_release_layouts.py: a Binding written for 0.6.3 calls them through the
// layout of the module's release (flashinfer_cy/abi/layouts.py).
//
// * top_k_renorm_probs with flashinfer 0.7.4's argument list (flashinfer_sampling_binding.cu:
//   is_deterministic before row_states_buffer), computing on float32 host memory so that a
//   call that arrives proves its arguments did;
// * probe(): every kind of argument a layout can supply, written into a float64 out.
#include <tvm/ffi/function.h>
#include <tvm/ffi/optional.h>
#include <tvm/ffi/container/tensor.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <vector>

namespace ffi = tvm::ffi;
using ffi::TensorView;

static std::atomic<int64_t> g_calls{0};
static std::atomic<int64_t> g_last_deterministic{-1};
static std::atomic<int64_t> g_last_row_states{0};

void top_k_renorm_probs(TensorView probs, TensorView renorm_probs,
                        ffi::Optional<TensorView> maybe_top_k_arr, int64_t top_k_val,
                        bool is_deterministic, TensorView row_states_buffer) {
  ++g_calls;
  g_last_deterministic = is_deterministic ? 1 : 0;
  g_last_row_states = reinterpret_cast<int64_t>(row_states_buffer.data_ptr());
  const int64_t rows = probs.size(0), cols = probs.size(1);
  const float* p = static_cast<const float*>(probs.data_ptr());
  float* o = static_cast<float*>(renorm_probs.data_ptr());
  const int32_t* ks = maybe_top_k_arr.has_value()
                          ? static_cast<const int32_t*>(maybe_top_k_arr.value().data_ptr())
                          : nullptr;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t k = ks ? ks[r] : top_k_val;
    std::vector<float> row(p + r * cols, p + (r + 1) * cols);
    std::sort(row.begin(), row.end(), [](float a, float b) { return a > b; });
    const float pivot = row[std::min<int64_t>(k, cols) - 1];
    double sum = 0;
    for (int64_t c = 0; c < cols; ++c) sum += p[r * cols + c] >= pivot ? p[r * cols + c] : 0;
    for (int64_t c = 0; c < cols; ++c)
      o[r * cols + c] = p[r * cols + c] >= pivot ? float(p[r * cols + c] / sum) : 0.f;
  }
}

void probe(TensorView out, int64_t a, double b, bool c, ffi::Optional<TensorView> d,
           int64_t e, double f) {
  ++g_calls;
  double* o = static_cast<double*>(out.data_ptr());
  o[0] = double(a);
  o[1] = b;
  o[2] = c ? 1.0 : 0.0;
  o[3] = d.has_value() ? 1.0 : 0.0;
  o[4] = double(e);
  o[5] = f;
}

int64_t calls() { return g_calls.load(); }
int64_t last_deterministic() { return g_last_deterministic.load(); }
int64_t last_row_states() { return g_last_row_states.load(); }

TVM_FFI_DLL_EXPORT_TYPED_FUNC(top_k_renorm_probs, top_k_renorm_probs);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(probe, probe);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(calls, calls);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(last_deterministic, last_deterministic);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(last_row_states, last_row_states);
