/*
 * The C floor for one rmsnorm call: the same __tvm_ffi_rmsnorm export, called from C with
 * the same set-stream/call/restore sequence flashinfer_cy uses (include/flashinfer_cy/ffi_call.h),
 * timed the same way as tools/bench_norm.py: bursts of BURST calls after a synchronize,
 * median over bursts of the host time per call.
 *
 * Build (tools/bench_norm.py does it):  cc -O2 -I<tvm_ffi/include> -I include \
 *     tools/c_floor/rmsnorm_floor.c -o rmsnorm_floor -ldl
 * Run:   rmsnorm_floor <libtvm_ffi.so> <norm.so> <rows> <hidden> [bursts] [burst]
 * Prints one line: "c_floor_host_us_median <value> bursts <n> burst <k>".
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "flashinfer_cy/ffi_call.h"
#include "timing.h"

typedef int (*cuda_malloc_t)(void**, size_t);
typedef int (*cuda_sync_t)(void);

static void* must(void* p, const char* what) {
  if (!p) {
    fprintf(stderr, "rmsnorm_floor: %s: %s\n", what, dlerror());
    exit(2);
  }
  return p;
}


int main(int argc, char** argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: %s libtvm_ffi.so norm.so rows hidden [bursts] [burst]\n", argv[0]);
    return 2;
  }
  int64_t rows = atoll(argv[3]), hidden = atoll(argv[4]);
  int bursts = argc > 5 ? atoi(argv[5]) : 200, burst = argc > 6 ? atoi(argv[6]) : 100;

  void* ffi_lib = must(dlopen(argv[1], RTLD_NOW | RTLD_GLOBAL), "libtvm_ffi");
  void* cudart = must(dlopen("libcudart.so.13", RTLD_NOW | RTLD_GLOBAL), "libcudart.so.13");
  void* norm = must(dlopen(argv[2], RTLD_NOW | RTLD_LOCAL), "norm.so");
  FcyTvmFfi api;
  memset(&api, 0, sizeof(api));
  api.EnvSetStream = must(dlsym(ffi_lib, "TVMFFIEnvSetStream"), "TVMFFIEnvSetStream");
  FcyCudart rt = {must(dlsym(cudart, "cudaGetDevice"), "cudaGetDevice"),
                  must(dlsym(cudart, "cudaSetDevice"), "cudaSetDevice")};
  cuda_malloc_t cuda_malloc = must(dlsym(cudart, "cudaMalloc"), "cudaMalloc");
  cuda_sync_t cuda_sync = must(dlsym(cudart, "cudaDeviceSynchronize"), "cudaDeviceSynchronize");
  TVMFFISafeCallType fn = must(dlsym(norm, "__tvm_ffi_rmsnorm"), "__tvm_ffi_rmsnorm");

  void *x, *w, *o;
  if (cuda_malloc(&x, rows * hidden * 2) || cuda_malloc(&w, hidden * 2) ||
      cuda_malloc(&o, rows * hidden * 2)) {
    fprintf(stderr, "cudaMalloc failed\n");
    return 2;
  }
  int64_t shape2[2] = {rows, hidden}, stride2[2] = {hidden, 1};
  int64_t shape1[1] = {hidden}, stride1[1] = {1};
  DLDataType f16 = {kDLFloat, 16, 1};
  DLDevice dev = {kDLCUDA, 0};
  DLTensor tx = {x, dev, 2, f16, shape2, stride2, 0};
  DLTensor to = {o, dev, 2, f16, shape2, stride2, 0};
  DLTensor tw = {w, dev, 1, f16, shape1, stride1, 0};
  TVMFFIAny args[5];
  memset(args, 0, sizeof(args));
  args[0].type_index = kTVMFFIDLTensorPtr; args[0].v_ptr = &to;
  args[1].type_index = kTVMFFIDLTensorPtr; args[1].v_ptr = &tx;
  args[2].type_index = kTVMFFIDLTensorPtr; args[2].v_ptr = &tw;
  args[3].type_index = kTVMFFIFloat; args[3].v_float64 = 1e-6;
  args[4].type_index = kTVMFFIBool; args[4].v_int64 = 0;
  TVMFFIAny result;

  double* per_call = malloc(sizeof(double) * bursts);
  for (int warm = 0; warm < 3; ++warm) {  /* module load, first launch, lazy init */
    for (int i = 0; i < burst; ++i) fcy_call(&api, &rt, fn, args, 5, &result, kDLCUDA, 0, NULL, 1);
    cuda_sync();
  }
  for (int b = 0; b < bursts; ++b) {
    cuda_sync();
    double t0 = now_us();
    for (int i = 0; i < burst; ++i) {
      if (fcy_call(&api, &rt, fn, args, 5, &result, kDLCUDA, 0, NULL, 1) != 0) {
        fprintf(stderr, "call failed\n");
        return 1;
      }
    }
    per_call[b] = (now_us() - t0) / burst;
  }
  cuda_sync();
  qsort(per_call, bursts, sizeof(double), cmp_double);
  printf("c_floor_host_us_median %.3f bursts %d burst %d\n", per_call[bursts / 2], bursts, burst);
  return 0;
}
