/*
 * flashinfer_cy/env_alloc.h -- a DLPack tensor allocator for TVM-FFI's environment, for the
 * exports that allocate device memory themselves. FlashInfer 0.6.3's fused MoE runner does:
 * every run_moe allocates its workspace with alloc_tensor, i.e. TVMFFIEnvTensorAlloc, which
 * fails with "allocator is nullptr" unless an allocator is installed (tvm/ffi/extra/c_env_api.h).
 *
 * Device memory comes from cudaMallocAsync on the stream the call runs on: the thread's
 * TVM-FFI stream for the tensor's device, which fcy_call_self has set before the export is
 * entered (and which the export itself launches on). It goes back with cudaFreeAsync on that
 * same stream when TVM-FFI drops the tensor, so nothing ever waits, and a workspace freed at
 * the end of a call is reused by the next call on that stream only after this one's kernels.
 * A tensor that outlives its call (the runner's profiling workspace, kept until the next
 * profile preparation) is freed on the stream it was allocated on: that stream must outlive it.
 *
 * fcy_call_env_alloc installs the allocator in the calling thread's slot (never the global
 * one) for one call and puts the previous one back after it, as tvm-ffi's own Python does
 * around calls with torch arguments. No GIL is involved anywhere.
 *
 * Include this header in one translation unit only (flashinfer_cy/_core/runtime.pyx): the
 * allocator reads its CUDA entry points from the one static table below, which that unit fills
 * (dlsym'd, like every other CUDA call of this package) before the first call.
 */
#ifndef FLASHINFER_CY_ENV_ALLOC_H_
#define FLASHINFER_CY_ENV_ALLOC_H_

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <dlpack/dlpack.h>
#include <tvm/ffi/c_api.h>

#include "flashinfer_cy/ffi_call.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef int (*FcySetAllocator)(DLPackManagedTensorAllocator allocator, int write_to_global,
                               DLPackManagedTensorAllocator* opt_out_original);

/* What the allocator and its installation call: libtvm_ffi's two environment entry points,
 * the kernels' libcudart's stream-ordered allocation and device selection. */
typedef struct {
  FcySetAllocator SetAllocator;
  void* (*EnvGetStream)(int32_t device_type, int32_t device_id);
  int (*MallocAsync)(void** ptr, size_t size, void* stream);
  int (*FreeAsync)(void* ptr, void* stream);
  int (*GetDevice)(int* device);
  int (*SetDevice)(int device);
  const char* (*GetErrorString)(int error);
} FcyEnvAllocRt;

static FcyEnvAllocRt fcy_env_alloc_rt;
static long fcy_env_alloc_live_count; /* tensors allocated and not yet freed (tests) */

/* One allocation: the managed tensor TVM-FFI wraps, where it was ordered, and its shape
 * (the TensorObj TVM-FFI builds points at this shape for as long as it lives). */
typedef struct {
  DLManagedTensorVersioned managed;
  void* stream;
  int32_t device;
  int64_t shape[];
} FcyEnvTensor;

/* Make `device` current; returns the device to restore (-1: none), or -2 when it could not
 * be made current. */
static inline int fcy_env_enter(int device) {
  int cur = -1;
  if (fcy_env_alloc_rt.GetDevice(&cur) != 0) cur = -1;
  if (cur == device) return -1;
  if (fcy_env_alloc_rt.SetDevice(device) != 0) return -2;
  return cur;
}

static inline void fcy_env_leave(int prev) {
  if (prev >= 0) fcy_env_alloc_rt.SetDevice(prev);
}

static inline long fcy_env_alloc_live(void) {
  return __atomic_load_n(&fcy_env_alloc_live_count, __ATOMIC_RELAXED);
}

static void fcy_env_tensor_free(DLManagedTensorVersioned* self) {
  FcyEnvTensor* t = (FcyEnvTensor*)self->manager_ctx;
  if (t->managed.dl_tensor.data != NULL) {
    int prev = fcy_env_enter(t->device);
    fcy_env_alloc_rt.FreeAsync(t->managed.dl_tensor.data, t->stream);
    fcy_env_leave(prev);
  }
  __atomic_sub_fetch(&fcy_env_alloc_live_count, 1, __ATOMIC_RELAXED);
  free(t);
}

/* The DLPackManagedTensorAllocator: prototype's dtype, ndim, shape and device only. */
static int fcy_env_alloc_tensor(DLTensor* prototype, DLManagedTensorVersioned** out,
                                void* error_ctx,
                                void (*SetError)(void* error_ctx, const char* kind,
                                                 const char* message)) {
  char msg[256];
  int32_t ndim = prototype->ndim;
  uint64_t item = ((uint64_t)prototype->dtype.bits * prototype->dtype.lanes + 7) / 8;
  uint64_t bytes = item;
  if (prototype->device.device_type != kDLCUDA) {
    snprintf(msg, sizeof msg, "flashinfer_cy's allocator makes CUDA device memory only; "
             "asked for device type %d", (int)prototype->device.device_type);
    SetError(error_ctx, "ValueError", msg);
    return -1;
  }
  if (ndim < 0 || ndim > 64) {
    snprintf(msg, sizeof msg, "flashinfer_cy's allocator: bad ndim %d", (int)ndim);
    SetError(error_ctx, "ValueError", msg);
    return -1;
  }
  for (int32_t i = 0; i < ndim; ++i) {
    if (prototype->shape[i] < 0 ||
        __builtin_mul_overflow(bytes, (uint64_t)prototype->shape[i], &bytes) ||
        bytes > (uint64_t)INT64_MAX) {
      snprintf(msg, sizeof msg, "flashinfer_cy's allocator: dimension %d of size %lld "
               "is negative or overflows the allocation", (int)i,
               (long long)prototype->shape[i]);
      SetError(error_ctx, "ValueError", msg);
      return -1;
    }
  }
  FcyEnvTensor* t = (FcyEnvTensor*)malloc(sizeof(FcyEnvTensor) + sizeof(int64_t) * ndim);
  if (t == NULL) {
    SetError(error_ctx, "MemoryError", "flashinfer_cy's allocator: out of host memory");
    return -1;
  }
  int32_t device = prototype->device.device_id;
  void* stream = fcy_env_alloc_rt.EnvGetStream(kDLCUDA, device);
  void* data = NULL;
  if (bytes > 0) {
    int prev = fcy_env_enter(device);
    int err = prev == -2 ? -1 : fcy_env_alloc_rt.MallocAsync(&data, (size_t)bytes, stream);
    fcy_env_leave(prev);
    if (err != 0) {
      free(t);
      snprintf(msg, sizeof msg, "cudaMallocAsync(%llu bytes) on device %d, stream %p, for a "
               "tensor a kernel allocates (its workspace) failed: %s %d %s",
               (unsigned long long)bytes, (int)device, stream,
               err < 0 ? "cudaSetDevice failed" : "cuda error", err,
               err < 0 ? "" : fcy_env_alloc_rt.GetErrorString(err));
      SetError(error_ctx, "RuntimeError", msg);
      return -1;
    }
  }
  for (int32_t i = 0; i < ndim; ++i) t->shape[i] = prototype->shape[i];
  t->stream = stream;
  t->device = device;
  t->managed.version.major = DLPACK_MAJOR_VERSION;
  t->managed.version.minor = DLPACK_MINOR_VERSION;
  t->managed.manager_ctx = t;
  t->managed.deleter = fcy_env_tensor_free;
  t->managed.flags = 0;
  t->managed.dl_tensor.data = data;
  t->managed.dl_tensor.device = prototype->device;
  t->managed.dl_tensor.ndim = ndim;
  t->managed.dl_tensor.dtype = prototype->dtype;
  t->managed.dl_tensor.shape = t->shape;
  t->managed.dl_tensor.strides = NULL;
  t->managed.dl_tensor.byte_offset = 0;
  __atomic_add_fetch(&fcy_env_alloc_live_count, 1, __ATOMIC_RELAXED);
  *out = &t->managed;
  return 0;
}

/* fcy_call_self with this allocator installed in the thread's slot for the call, the
 * previous one restored after it (also when the call fails). The table must be filled. */
static inline int fcy_call_env_alloc(const FcyTvmFfi* api, const FcyCudart* rt,
                                     TVMFFISafeCallType fn, void* self, const TVMFFIAny* args,
                                     int32_t num_args, TVMFFIAny* result, int32_t device_type,
                                     int32_t device_id, void* stream, int set_stream) {
  DLPackManagedTensorAllocator prev = NULL;
  int rc;
  result->type_index = kTVMFFINone;
  result->zero_padding = 0;
  result->v_int64 = 0;
  rc = fcy_env_alloc_rt.SetAllocator(fcy_env_alloc_tensor, 0, &prev);
  if (rc != 0) return rc; /* its error waits in TVM-FFI's TLS, like a call's */
  rc = fcy_call_self(api, rt, fn, self, args, num_args, result, device_type, device_id, stream,
                     set_stream);
  fcy_env_alloc_rt.SetAllocator(prev, 0, NULL);
  return rc;
}

#ifdef __cplusplus
}
#endif
#endif /* FLASHINFER_CY_ENV_ALLOC_H_ */
