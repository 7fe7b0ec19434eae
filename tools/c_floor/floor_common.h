/*
 * What the C floors of tools/c_floor/ (decode_floor.c, mla_floor.c) share: loading
 * libtvm_ffi, libcudart.so.13 and a kernel module's plan/run exports, describing buffers as
 * DLTensors, packing TVM-FFI arguments, and calling an export through the same fcy_call
 * sequence flashinfer_cy uses (include/flashinfer_cy/ffi_call.h), errors into g_err.
 */
#ifndef FLASHINFER_CY_C_FLOOR_COMMON_H_
#define FLASHINFER_CY_C_FLOOR_COMMON_H_

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "flashinfer_cy/ffi_call.h"
#include "timing.h"

#define H2D 1

static char g_err[1024];

static int fail(const char* fmt, const char* what, int code) {
  snprintf(g_err, sizeof(g_err), fmt, what, code);
  return -1;
}

static int fail_msg(const char* what) {
  snprintf(g_err, sizeof(g_err), "%s", what);
  return -1;
}

/* dlsym/dlopen result or NULL with g_err set */
static void* need(void* p, const char* what) {
  if (!p) snprintf(g_err, sizeof(g_err), "%s: %s", what, dlerror());
  return p;
}


static struct {
  int (*Malloc)(void**, size_t);
  int (*HostAlloc)(void**, size_t, unsigned);
  int (*MemcpyAsync)(void*, const void*, size_t, int, void*);
  int (*EventCreateWithFlags)(void**, unsigned);
  int (*EventRecord)(void*, void*);
  int (*DeviceSynchronize)(void);
} cu;

static FcyTvmFfi api;
static FcyCudart rt;

/* Compact strides are spelled out: the kernels read strides() without a NULL check. */
static int64_t stride_pool[64];
static int stride_used = 0;

static void tensor(DLTensor* t, void* data, int ndim, int64_t* shape, DLDataType dt,
                   int dev_type) {
  int64_t* strides = stride_pool + stride_used;
  stride_used += ndim;
  int64_t acc = 1;
  for (int i = ndim - 1; i >= 0; --i) {
    strides[i] = acc;
    acc *= shape[i];
  }
  DLTensor v = {data, {dev_type, 0}, ndim, dt, shape, strides, 0};
  *t = v;
}

static void set_tensor(TVMFFIAny* a, DLTensor* t) {
  a->type_index = kTVMFFIDLTensorPtr;
  a->v_ptr = t;
}
static void set_int(TVMFFIAny* a, int64_t v) { a->type_index = kTVMFFIInt; a->v_int64 = v; }
static void set_bool(TVMFFIAny* a, int v) { a->type_index = kTVMFFIBool; a->v_int64 = v; }
static void set_float(TVMFFIAny* a, double v) { a->type_index = kTVMFFIFloat; a->v_float64 = v; }

static int call_on(TVMFFISafeCallType fn, TVMFFIAny* args, int n, TVMFFIAny* result,
                   void* stream) {
  int rc = fcy_call(&api, &rt, fn, args, n, result, kDLCUDA, 0, stream, 1);
  if (rc != 0) {
    TVMFFIObjectHandle err = NULL;
    if (rc == -1 && api.ErrorMoveFromRaised) api.ErrorMoveFromRaised(&err);
    if (err) {
      /* the cell follows the object header (TVMFFIErrorGetCellPtr is C++-only) */
      TVMFFIErrorCell* cell = (TVMFFIErrorCell*)((char*)err + sizeof(TVMFFIObject));
      snprintf(g_err, sizeof(g_err), "kernel call failed: %.*s: %.*s", (int)cell->kind.size,
               cell->kind.data, (int)cell->message.size, cell->message.data);
      api.ObjectDecRef(err);
    } else {
      snprintf(g_err, sizeof(g_err), "kernel call failed (rc %d)", rc);
    }
  }
  return rc;
}

#define TRY(p, what) do { if (!need((p), (what))) return -1; } while (0)
#define CU(call_, what) do { int e_ = (call_); if (e_) return fail("%s failed (%d)", what, e_); } while (0)

/* dlopen libtvm_ffi (ffi_path), libcudart.so.13 and the module; fill api, rt, cu and the
 * module's plan / run exports. 0 or -1. */
static int floor_load(const char* ffi_path, const char* module_path,
                      TVMFFISafeCallType* plan, TVMFFISafeCallType* run) {
  void *ffi_lib, *cudart, *mod;
  TRY(ffi_lib = dlopen(ffi_path, RTLD_NOW | RTLD_GLOBAL), "libtvm_ffi");
  TRY(cudart = dlopen("libcudart.so.13", RTLD_NOW | RTLD_GLOBAL), "libcudart.so.13");
  TRY(mod = dlopen(module_path, RTLD_NOW | RTLD_LOCAL), "kernel module");
  memset(&api, 0, sizeof(api));
  TRY(api.EnvSetStream = dlsym(ffi_lib, "TVMFFIEnvSetStream"), "TVMFFIEnvSetStream");
  TRY(api.ObjectDecRef = dlsym(ffi_lib, "TVMFFIObjectDecRef"), "TVMFFIObjectDecRef");
  TRY(api.ErrorMoveFromRaised = dlsym(ffi_lib, "TVMFFIErrorMoveFromRaised"), "ErrorMove");
  TRY(rt.GetDevice = dlsym(cudart, "cudaGetDevice"), "cudaGetDevice");
  TRY(rt.SetDevice = dlsym(cudart, "cudaSetDevice"), "cudaSetDevice");
  TRY(cu.Malloc = dlsym(cudart, "cudaMalloc"), "cudaMalloc");
  TRY(cu.HostAlloc = dlsym(cudart, "cudaHostAlloc"), "cudaHostAlloc");
  TRY(cu.MemcpyAsync = dlsym(cudart, "cudaMemcpyAsync"), "cudaMemcpyAsync");
  TRY(cu.EventCreateWithFlags = dlsym(cudart, "cudaEventCreateWithFlags"), "cudaEventCreate");
  TRY(cu.EventRecord = dlsym(cudart, "cudaEventRecord"), "cudaEventRecord");
  TRY(cu.DeviceSynchronize = dlsym(cudart, "cudaDeviceSynchronize"), "cudaDeviceSynchronize");
  TRY(*plan = dlsym(mod, "__tvm_ffi_plan"), "__tvm_ffi_plan");
  TRY(*run = dlsym(mod, "__tvm_ffi_run"), "__tvm_ffi_run");
  return 0;
}

/* A fixed shuffle (LCG) of 0..n-1: the floors' page tables. */
static void shuffled_ids(int32_t* ids, int64_t n) {
  for (int64_t i = 0; i < n; ++i) ids[i] = (int32_t)i;
  uint64_t s = 12345;
  for (int64_t i = n - 1; i > 0; --i) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    int64_t j = (int64_t)((s >> 33) % (uint64_t)(i + 1));
    int32_t t = ids[i]; ids[i] = ids[j]; ids[j] = t;
  }
}

#endif /* FLASHINFER_CY_C_FLOOR_COMMON_H_ */
