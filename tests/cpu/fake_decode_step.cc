// CPU stand-ins for FlashInfer 0.6.3's `rope` exports (csrc/flashinfer_rope_binding.cu) and
// the gated activations (flashinfer/jit/activation.py's template), with their exact C++
// signatures, so TVM-FFI's typed-call checks verify the kinds flashinfer_cy packs and the
// tests verify order, strides and values. They run on host memory the tests label "cuda".
//
// Not the kernels' arithmetic: marks that tell each argument apart, on 16-bit bit patterns.
//   rope:        out[n, h, e] = in[n, h, e] + pos(n)  for e < rotary_dim, else in[n, h, e];
//                pos(n) = pos_ids[n] (or offsets[b] + n - indptr[b]); through every stride.
//   activation:  out[t, j] = (in[t, j] ^ in[t, d + j]) + enable_pdl.
// The scalars (rotary_dim aside) are checked here against the values the driver passes and
// raise a ValueError naming the one that differs.
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/error.h>
#include <tvm/ffi/function.h>

#include <cstdint>

namespace ffi = tvm::ffi;
using ffi::TensorView;

namespace {

uint16_t* at(TensorView t, int64_t n, int64_t h, int64_t e) {
  return static_cast<uint16_t*>(t.data_ptr()) + n * t.stride(0) + h * t.stride(1) +
         e * t.stride(2);
}

int64_t index_at(TensorView idx, int64_t i) {
  if (idx.dtype().bits == 32) return static_cast<const int32_t*>(idx.data_ptr())[i];
  return static_cast<const int64_t*>(idx.data_ptr())[i];
}

void mark(TensorView x, TensorView out, int64_t n, int64_t pos, int64_t rotary_dim) {
  for (int64_t h = 0; h < x.size(1); ++h) {
    for (int64_t e = 0; e < x.size(2); ++e) {
      uint16_t v = *at(x, n, h, e);
      *at(out, n, h, e) = e < rotary_dim ? static_cast<uint16_t>(v + pos) : v;
    }
  }
}

void expect(double got, double want, const char* name) {
  if (got != want) TVM_FFI_THROW(ValueError) << name << " = " << got << ", expected " << want;
}

// The driver always passes these (tests/cpu/decode_step_driver.py).
void check_rope_scalars(bool interleave, double rope_scale, double rope_theta) {
  expect(interleave, 1, "interleave");
  expect(rope_scale, 2.5, "rope_scale");
  expect(rope_theta, 1e4, "rope_theta");
}

void check_llama31(double low, double high, double old) {
  expect(low, 1.0, "low_freq_factor");
  expect(high, 4.0, "high_freq_factor");
  expect(old, 8192.0, "old_context_length");
}

void pos_ids_form(TensorView q, TensorView k, TensorView q_rope, TensorView k_rope,
                  TensorView pos_ids, int64_t rotary_dim) {
  for (int64_t n = 0; n < q.size(0); ++n) {
    mark(q, q_rope, n, index_at(pos_ids, n), rotary_dim);
    mark(k, k_rope, n, index_at(pos_ids, n), rotary_dim);
  }
}

void ragged_form(TensorView q, TensorView k, TensorView q_rope, TensorView k_rope,
                 TensorView indptr, TensorView offsets, int64_t rotary_dim) {
  for (int64_t b = 0; b < offsets.size(0); ++b) {
    for (int64_t n = index_at(indptr, b); n < index_at(indptr, b + 1); ++n) {
      int64_t pos = index_at(offsets, b) + n - index_at(indptr, b);
      mark(q, q_rope, n, pos, rotary_dim);
      mark(k, k_rope, n, pos, rotary_dim);
    }
  }
}

void apply_rope(TensorView q, TensorView k, TensorView q_rope, TensorView k_rope,
                TensorView indptr, TensorView offsets, int64_t rotary_dim, bool interleave,
                double rope_scale, double rope_theta) {
  check_rope_scalars(interleave, rope_scale, rope_theta);
  ragged_form(q, k, q_rope, k_rope, indptr, offsets, rotary_dim);
}

void apply_llama31_rope(TensorView q, TensorView k, TensorView q_rope, TensorView k_rope,
                        TensorView indptr, TensorView offsets, int64_t rotary_dim,
                        bool interleave, double rope_scale, double rope_theta,
                        double low_freq_factor, double high_freq_factor,
                        double old_context_length) {
  check_rope_scalars(interleave, rope_scale, rope_theta);
  check_llama31(low_freq_factor, high_freq_factor, old_context_length);
  ragged_form(q, k, q_rope, k_rope, indptr, offsets, rotary_dim);
}

void apply_rope_pos_ids(TensorView q, TensorView k, TensorView q_rope, TensorView k_rope,
                        TensorView pos_ids, int64_t rotary_dim, bool interleave,
                        double rope_scale, double rope_theta) {
  check_rope_scalars(interleave, rope_scale, rope_theta);
  pos_ids_form(q, k, q_rope, k_rope, pos_ids, rotary_dim);
}

void apply_llama31_rope_pos_ids(TensorView q, TensorView k, TensorView q_rope,
                                TensorView k_rope, TensorView pos_ids, int64_t rotary_dim,
                                bool interleave, double rope_scale, double rope_theta,
                                double low_freq_factor, double high_freq_factor,
                                double old_context_length) {
  check_rope_scalars(interleave, rope_scale, rope_theta);
  check_llama31(low_freq_factor, high_freq_factor, old_context_length);
  pos_ids_form(q, k, q_rope, k_rope, pos_ids, rotary_dim);
}

void apply_rope_pos_ids_cos_sin_cache(TensorView q, TensorView k, TensorView q_rope,
                                      TensorView k_rope, TensorView cos_sin_cache,
                                      TensorView pos_ids, bool interleave) {
  expect(cos_sin_cache.dtype().bits, 32, "cos_sin_cache bits");
  expect(interleave, 1, "interleave");
  pos_ids_form(q, k, q_rope, k_rope, pos_ids, cos_sin_cache.size(1));
}

void act_and_mul(TensorView out, TensorView input, bool enable_pdl) {
  int64_t d = input.size(input.ndim() - 1) / 2;
  int64_t tokens = input.numel() / (2 * d);
  auto* in = static_cast<const uint16_t*>(input.data_ptr());
  auto* o = static_cast<uint16_t*>(out.data_ptr());
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t j = 0; j < d; ++j)
      o[t * d + j] = static_cast<uint16_t>((in[t * 2 * d + j] ^ in[t * 2 * d + d + j]) +
                                           (enable_pdl ? 1 : 0));
}

// rmsnorm's argument list, marking out = input ^ weight (per row) + enable_pdl.
void rmsnorm(TensorView out, TensorView input, TensorView weight, double eps,
             bool enable_pdl) {
  int64_t d = input.size(input.ndim() - 1);
  int64_t rows = input.numel() / d;
  auto* in = static_cast<const uint16_t*>(input.data_ptr());
  auto* w = static_cast<const uint16_t*>(weight.data_ptr());
  auto* o = static_cast<uint16_t*>(out.data_ptr());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < d; ++j)
      o[r * d + j] = static_cast<uint16_t>((in[r * d + j] ^ w[j]) + (enable_pdl ? 1 : 0));
}

}  // namespace

TVM_FFI_DLL_EXPORT_TYPED_FUNC(apply_rope, apply_rope);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(apply_llama31_rope, apply_llama31_rope);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(apply_rope_pos_ids, apply_rope_pos_ids);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(apply_llama31_rope_pos_ids, apply_llama31_rope_pos_ids);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(apply_rope_pos_ids_cos_sin_cache,
                              apply_rope_pos_ids_cos_sin_cache);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(silu_and_mul, act_and_mul);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(rmsnorm, rmsnorm);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(gelu_and_mul, act_and_mul);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(gelu_tanh_and_mul, act_and_mul);
