// A CPU-only TVM-FFI module built by the test suite (tests/cpu/conftest.py) with the same
// headers and the same link rule as FlashInfer's kernel modules: NOT linked against
// libtvm_ffi, so every TVMFFI* symbol must come from the copy flashinfer_cy loads
// RTLD_GLOBAL. It exercises the real call path without a GPU.
#include <tvm/ffi/container/array.h>
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/error.h>
#include <tvm/ffi/extra/c_env_api.h>
#include <tvm/ffi/function.h>
#include <tvm/ffi/optional.h>
#include <tvm/ffi/string.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <thread>

namespace ffi = tvm::ffi;
using ffi::TensorView;

// Scalars come back unchanged: proves each TVMFFIAny kind is packed as the callee expects.
int64_t echo_int(int64_t x) { return x; }
double echo_float(double x) { return x; }
bool echo_bool(bool x) { return x; }
DLDataType echo_dtype(DLDataType x) { return x; }
DLDevice echo_device(DLDevice x) { return x; }
void* echo_ptr(void* x) { return x; }
ffi::String echo_str(ffi::String s) { return s; }
bool is_none(ffi::Optional<TensorView> t) { return !t.has_value(); }
void nop(TensorView a, TensorView b, TensorView c) {}
void nop0() {}

// Everything the callee sees of a tensor argument.
ffi::Array<int64_t> describe(TensorView x) {
  ffi::Array<int64_t> out;
  out.push_back(x.ndim());
  out.push_back(x.dtype().code);
  out.push_back(x.dtype().bits);
  out.push_back(x.dtype().lanes);
  out.push_back(x.device().device_type);
  out.push_back(x.device().device_id);
  out.push_back(reinterpret_cast<int64_t>(x.data_ptr()));
  for (int i = 0; i < x.ndim(); ++i) out.push_back(x.size(i));
  for (int i = 0; i < x.ndim(); ++i) out.push_back(x.stride(i));
  return out;
}

// out = a * x + b for float32 tensors of any shape/strides (ndim <= 4): a real
// computation whose result the tests compare against numpy.
void axpb(TensorView out, TensorView x, double a, double b) {
  TVM_FFI_ICHECK_EQ(x.ndim(), out.ndim()) << "ndim mismatch";
  TVM_FFI_CHECK(x.dtype().code == kDLFloat && x.dtype().bits == 32, TypeError)
      << "x must be float32";
  int64_t n = 1;
  for (int i = 0; i < x.ndim(); ++i) n *= x.size(i);
  const float* xp = static_cast<const float*>(x.data_ptr());
  float* op = static_cast<float*>(out.data_ptr());
  for (int64_t flat = 0; flat < n; ++flat) {
    int64_t rem = flat, xo = 0, oo = 0;
    for (int i = x.ndim() - 1; i >= 0; --i) {
      int64_t idx = rem % x.size(i);
      rem /= x.size(i);
      xo += idx * x.stride(i);
      oo += idx * out.stride(i);
    }
    op[oo] = static_cast<float>(a * xp[xo] + b);
  }
}

// A plan-like round trip: an owned Array result that is passed back as an argument.
ffi::Array<int64_t> make_plan(int64_t n, int64_t start) {
  ffi::Array<int64_t> out;
  for (int64_t i = 0; i < n; ++i) out.push_back(start + i);
  return out;
}
int64_t sum_plan(ffi::Array<int64_t> plan) {
  int64_t s = 0;
  for (int64_t v : plan) s += v;
  return s;
}

// Errors of each origin.
void raise_value_error(ffi::String msg) { TVM_FFI_THROW(ValueError) << msg; }
void raise_type_error(ffi::String msg) { TVM_FFI_THROW(TypeError) << msg; }
void check_fail(int64_t x) { TVM_FFI_ICHECK_EQ(x, 42) << "x must be 42"; }
void raise_std(ffi::String msg) { throw std::runtime_error(std::string(msg)); }

// The stream the kernel would launch on (what FlashInfer's get_stream reads).
int64_t stream_of(TensorView x) {
  return reinterpret_cast<int64_t>(TVMFFIEnvGetStream(x.device().device_type, x.device().device_id));
}
int64_t env_stream(int64_t device_type, int64_t device_id) {
  return reinterpret_cast<int64_t>(TVMFFIEnvGetStream(device_type, device_id));
}
void raise_with_stream(TensorView x) {
  TVM_FFI_THROW(RuntimeError) << "stream was " << stream_of(x);
}

// Blocks without touching Python: calls from several threads overlap only if the caller
// released the GIL.
void sleep_ms(int64_t ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

// How many calls of overlap_probe were inside it at once, at most (read and reset by
// max_overlap): 1 when the caller serializes the export, more when threads overlap.
static std::atomic<int64_t> g_inside{0}, g_most_inside{0};
void overlap_probe(int64_t ms) {
  int64_t now = ++g_inside;
  int64_t most = g_most_inside.load();
  while (now > most && !g_most_inside.compare_exchange_weak(most, now)) {
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  --g_inside;
}
int64_t max_overlap() { return g_most_inside.exchange(0); }

TVM_FFI_DLL_EXPORT_TYPED_FUNC(overlap_probe, overlap_probe);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(max_overlap, max_overlap);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(echo_int, echo_int);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(echo_float, echo_float);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(echo_bool, echo_bool);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(echo_dtype, echo_dtype);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(echo_device, echo_device);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(echo_ptr, echo_ptr);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(echo_str, echo_str);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(is_none, is_none);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(nop, nop);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(nop0, nop0);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(describe, describe);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(axpb, axpb);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(make_plan, make_plan);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(sum_plan, sum_plan);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(raise_value_error, raise_value_error);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(raise_type_error, raise_type_error);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(check_fail, check_fail);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(raise_std, raise_std);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(stream_of, stream_of);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(env_stream, env_stream);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(raise_with_stream, raise_with_stream);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(sleep_ms, sleep_ms);
