/*
 * flashinfer_cy/ffi_call.h -- the one hot sequence every kernel call goes through.
 *
 * Plain C so that the Cython core and the C "floor" benchmark (tools/c_floor/) run the very
 * same instructions. Nothing here is linked against libtvm_ffi or libcudart: every entry point
 * comes through a table of pointers filled by dlsym at run time.
 */
#ifndef FLASHINFER_CY_FFI_CALL_H_
#define FLASHINFER_CY_FFI_CALL_H_

#include <stddef.h>
#include <stdint.h>
#include <dlpack/dlpack.h>
#include <tvm/ffi/c_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Entry points of the process's single libtvm_ffi. */
typedef struct {
  void (*GetVersion)(TVMFFIVersion* out);
  int (*ObjectDecRef)(TVMFFIObjectHandle obj);
  int (*ObjectIncRef)(TVMFFIObjectHandle obj);
  void (*ErrorMoveFromRaised)(TVMFFIObjectHandle* out);
  int (*EnvSetStream)(int32_t device_type, int32_t device_id, void* stream, void** out_prev);
  void* (*EnvGetStream)(int32_t device_type, int32_t device_id);
  int (*FunctionGetGlobal)(const TVMFFIByteArray* name, TVMFFIObjectHandle* out);
  int (*FunctionCall)(TVMFFIObjectHandle func, TVMFFIAny* args, int32_t n, TVMFFIAny* result);
  int (*TensorFromDLPackVersioned)(DLManagedTensorVersioned* src, int32_t require_alignment,
                                   int32_t require_contiguous, TVMFFIObjectHandle* out);
} FcyTvmFfi;

/* The two CUDA runtime calls needed to make a device current. They come from the very
 * libcudart the kernel modules were linked against (its current-device state is what the
 * kernels read through cudaGetDevice()). Both NULL until a CUDA kernel module is loaded. */
typedef struct {
  int (*GetDevice)(int* device);
  int (*SetDevice)(int device);
} FcyCudart;

/* Returned by fcy_call when the tensor's device could not be made current. */
#define FCY_ERR_SET_DEVICE (-100)

#ifdef __cplusplus
#define FCY_THREAD_LOCAL thread_local
#else
#define FCY_THREAD_LOCAL _Thread_local
#endif

/* The device whose primary context this thread has bound with cudaSetDevice (-1: none).
 * cudaGetDevice() answers 0 on a fresh thread without binding any context, and kernels
 * that call the driver API directly (CUTLASS TMA descriptors in gdn / FA3) then fail with
 * CUDA_ERROR_INVALID_CONTEXT. Seen on H200: 4 Python threads launching gdn_prefill. */
static FCY_THREAD_LOCAL int fcy_bound_device = -1;

/*
 * Call `fn` with `args` for a tensor living on (device_type, device_id), passing `self` as
 * the safe call's first argument: NULL for a module's `__tvm_ffi_<name>` export (what
 * tvm-ffi's own loader passes), the function object for an ffi::Function's cell safe_call
 * (a method a module object serves, e.g. the fused MoE runner's run_moe):
 *   - the thread's CUDA current device becomes device_id (several FlashInfer kernels, e.g.
 *     gdn_prefill, read cudaGetDevice() instead of guarding the tensor's device);
 *   - when set_stream != 0, the thread's TVM-FFI stream for that device becomes `stream`;
 *   - both are restored on every path, so nothing leaks into later calls on this thread.
 * Returns the safe-call code: 0 ok, -1 error waiting in TVM-FFI's TLS, -2 "frontend error"
 * (modules built with tvm-ffi < 0.1.9 headers), or FCY_ERR_SET_DEVICE.
 */
static inline int fcy_call_self(const FcyTvmFfi* api, const FcyCudart* rt,
                                TVMFFISafeCallType fn, void* self, const TVMFFIAny* args,
                                int32_t num_args, TVMFFIAny* result, int32_t device_type,
                                int32_t device_id, void* stream, int set_stream) {
  int prev_device = -1;
  void* prev_stream = NULL;
  int rc;
  result->type_index = kTVMFFINone;
  result->zero_padding = 0;
  result->v_int64 = 0;
  if (device_type == kDLCUDA && rt->GetDevice != NULL) {
    int cur = -1;
    if (rt->GetDevice(&cur) != 0) cur = -1;
    if (cur != device_id) {
      if (rt->SetDevice(device_id) != 0) return FCY_ERR_SET_DEVICE;
      prev_device = cur;
    } else if (fcy_bound_device != device_id) {
      /* Same ordinal, but this thread may have no context bound yet: bind it once. */
      if (rt->SetDevice(device_id) != 0) return FCY_ERR_SET_DEVICE;
      fcy_bound_device = device_id;
    }
  }
  if (set_stream) {
    rc = api->EnvSetStream(device_type, device_id, stream, &prev_stream);
    if (rc != 0) goto restore_device;
  }
  rc = fn(self, args, num_args, result);
  if (set_stream) api->EnvSetStream(device_type, device_id, prev_stream, NULL);
restore_device:
  if (prev_device >= 0) {
    rt->SetDevice(prev_device);
    fcy_bound_device = prev_device;
  }
  return rc;
}

/* fcy_call_self for an export (self = NULL). */
static inline int fcy_call(const FcyTvmFfi* api, const FcyCudart* rt, TVMFFISafeCallType fn,
                           const TVMFFIAny* args, int32_t num_args, TVMFFIAny* result,
                           int32_t device_type, int32_t device_id, void* stream,
                           int set_stream) {
  return fcy_call_self(api, rt, fn, NULL, args, num_args, result, device_type, device_id,
                       stream, set_stream);
}

#ifdef __cplusplus
}
#endif
#endif /* FLASHINFER_CY_FFI_CALL_H_ */
