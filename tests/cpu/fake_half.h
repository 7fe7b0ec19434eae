// Host-side float16 / bfloat16 loads and stores for the CPU stand-in kernels
// (fake_batch_decode.cc, fake_batch_mla.cc): tensors are host memory labelled "cuda".
#pragma once
#include <tvm/ffi/container/tensor.h>

#include <cstdint>
#include <cstring>

namespace fake_half {

inline bool is_bf16(tvm::ffi::TensorView t) {
  return t.dtype().code == kDLBfloat && t.dtype().bits == 16;
}

inline double load(tvm::ffi::TensorView t, int64_t offset) {
  uint16_t bits = static_cast<const uint16_t*>(t.data_ptr())[offset];
  if (is_bf16(t)) {
    uint32_t w = static_cast<uint32_t>(bits) << 16;
    float f;
    std::memcpy(&f, &w, 4);
    return f;
  }
  _Float16 h;
  std::memcpy(&h, &bits, 2);
  return static_cast<double>(h);
}

inline void store(tvm::ffi::TensorView t, int64_t offset, double x) {
  uint16_t bits;
  if (is_bf16(t)) {
    float f = static_cast<float>(x);
    uint32_t w;
    std::memcpy(&w, &f, 4);
    bits = static_cast<uint16_t>((w + 0x7FFF + ((w >> 16) & 1)) >> 16);  // nearest even
  } else {
    _Float16 h = static_cast<_Float16>(x);
    std::memcpy(&bits, &h, 2);
  }
  static_cast<uint16_t*>(t.data_ptr())[offset] = bits;
}

inline const int32_t* i32(tvm::ffi::TensorView t) {
  return static_cast<const int32_t*>(t.data_ptr());
}

}  // namespace fake_half
