/*
 * The C floor for batch decode: the `plan` and `run` exports of a batch_decode module called
 * from C through the same fcy_call sequence flashinfer_cy uses (include/flashinfer_cy/ffi_call.h),
 * timed like tools/bench_attention.py: bursts of BURST calls after a synchronize, median over
 * bursts of the host time per call. Three floors:
 *
 *   run          the run export with every argument packed once (what a prepared launch does)
 *   plan_kernel  the plan export alone (its scheduler + its own H2D copy of the schedule)
 *   plan         what any plan() that also moves indptr / page table / last_page_len to the
 *                device must do at least: memcpy them into page-locked staging, one
 *                cudaMemcpyAsync, the plan export, one cudaEventRecord (staging reuse guard)
 *   run_exchange what any consumer of a framework's tensors pays at least on each run: q, k,
 *                v and out described through the framework's DLPack exchange API
 *                (dltensor_from_py_object_no_sync), its current work stream asked for, then
 *                the run export on that stream. It calls into Python objects, so it needs
 *                the GIL and fcy_decode_floor_set_exchange; only the library form has it.
 *
 * Shapes: float16, NHD, page table shuffled, every request kv_len tokens.
 *
 * Two ways to use it. tools/bench_attention.py builds it as a shared library and calls
 * fcy_decode_floor_init / fcy_decode_floor_burst through ctypes, interleaving C-floor
 * bursts with the Python rows' bursts in one process (the host drifts between runs):
 *   cc -O2 -shared -fPIC -I<tvm_ffi/include> -I include tools/c_floor/decode_floor.c \
 *      -o decode_floor.so -ldl -lm
 * Standalone, it prints "c_floor_<name>_us <median>" lines:
 *   cc -O2 -I<tvm_ffi/include> -I include tools/c_floor/decode_floor.c -o decode_floor -ldl -lm
 *   decode_floor <libtvm_ffi.so> <batch_decode.so> <batch> <kv_len> <page> <hq> <hkv> <d>
 *                [bursts] [burst]
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <time.h>

#include "floor_common.h"

static int g_ready = 0;  /* fcy_decode_floor_init packed everything (the floors may run) */

static struct {
  TVMFFISafeCallType plan, run;
  TVMFFIAny plan_args[15], run_args[19], info;
  int32_t *h_indptr, *h_indices, *h_lpl, *staging;
  void *d_meta, *event;
  int64_t batch, n_indices;
  DLTensor t_float, t_int, t_locked, t_hindptr, t_eq, t_ekv;
  DLTensor t_q, t_k, t_v, t_o, t_indptr, t_indices, t_lpl;
  int64_t s_float[1], s_int[1], s_b1[1], s_empty[1], s_b[1], s_pool[1], s_q[3], s_kv[4];
} F;

static int call(TVMFFISafeCallType fn, TVMFFIAny* args, int n, TVMFFIAny* result) {
  return call_on(fn, args, n, result, NULL);
}

static int plan_kernel(void) {
  TVMFFIAny result;
  if (call(F.plan, F.plan_args, 15, &result) != 0) return -1;
  if (result.type_index >= kTVMFFIStaticObjectBegin) api.ObjectDecRef(result.v_obj);
  return 0;
}

static int stage(void) {
  int64_t b = F.batch, n0 = b + 1, n1 = b, n2 = F.n_indices;
  memcpy(F.staging, F.h_indptr, n0 * 4);
  memcpy(F.staging + n0, F.h_lpl, n1 * 4);
  memcpy(F.staging + n0 + n1, F.h_indices, n2 * 4);
  int err = cu.MemcpyAsync(F.d_meta, F.staging, (n0 + n1 + n2) * 4, H2D, NULL);
  return err ? fail("%s failed (%d)", "cudaMemcpyAsync", err) : 0;
}

static int plan_full(void) {
  if (stage() || plan_kernel()) return -1;
  int err = cu.EventRecord(F.event, NULL);
  return err ? fail("%s failed (%d)", "cudaEventRecord", err) : 0;
}

static int run(void) {
  TVMFFIAny result;
  return call(F.run, F.run_args, 19, &result);
}

/* run_exchange's producer and the objects it describes on every call. */
static struct {
  const DLPackExchangeAPI* api;
  void* objs[4];   /* q, k, v, out: borrowed PyObject*, the caller keeps them alive */
  DLTensor dl[4];  /* filled by the producer each call; shapes point into its tensors */
  TVMFFIAny args[19];
} X;

/* Slots of q, k, v and out in the run export's arguments (see fcy_decode_floor_init). */
static const int EXCHANGE_SLOTS[4] = {3, 4, 5, 9};

/* run_exchange's producer API and tensors (the shapes of the packed q, k, v, out; the
 * page pool at least as large). The other arguments are the packed run's. 0 or -1. */
int fcy_decode_floor_set_exchange(const DLPackExchangeAPI* xapi, void* q, void* k, void* v,
                                  void* o) {
  if (xapi == NULL || xapi->dltensor_from_py_object_no_sync == NULL ||
      xapi->current_work_stream == NULL)
    return fail_msg("exchange API: NULL, or no dltensor_from_py_object_no_sync / "
                    "current_work_stream");
  if (!g_ready) return fail_msg("fcy_decode_floor_init has not succeeded");
  void* objs[4] = {q, k, v, o};
  X.api = xapi;
  memcpy(X.args, F.run_args, sizeof(X.args));
  for (int i = 0; i < 4; ++i) {
    X.objs[i] = objs[i];
    set_tensor(&X.args[EXCHANGE_SLOTS[i]], &X.dl[i]);
  }
  return 0;
}

static int run_exchange(void) {
  TVMFFIAny result;
  void* stream = NULL;
  if (X.api == NULL)
    return fail_msg("run_exchange: fcy_decode_floor_set_exchange was not called");
  for (int i = 0; i < 4; ++i)
    if (X.api->dltensor_from_py_object_no_sync(X.objs[i], &X.dl[i]) != 0)
      return fail("%s failed for tensor %d", "dltensor_from_py_object_no_sync", i);
  if (X.api->current_work_stream(kDLCUDA, 0, &stream) != 0)
    return fail_msg("current_work_stream failed");
  return call_on(F.run, X.args, 19, &result, stream);
}

#define N_FLOORS 4
static int (*const FLOORS[N_FLOORS])(void) = {run, plan_kernel, plan_full, run_exchange};
const char* FLOOR_NAMES[N_FLOORS] = {"run", "plan_kernel", "plan", "run_exchange"};

const char* fcy_decode_floor_error(void) { return g_err; }

/* Host microseconds per call of floor `which` (0 run, 1 plan_kernel, 2 plan, 3 run_exchange:
 * GIL held) over `burst` calls started right after a device synchronize; negative on error
 * (see _error()). */
double fcy_decode_floor_burst(int which, int burst) {
  if (which < 0 || which >= N_FLOORS) return fail("%s %d", "no such floor:", which), -1.0;
  if (!g_ready) return fail_msg("fcy_decode_floor_init has not succeeded"), -1.0;
  cu.DeviceSynchronize();
  double t0 = now_us();
  for (int i = 0; i < burst; ++i)
    if (FLOORS[which]() != 0) return -1.0;
  return (now_us() - t0) / burst;
}

/* Load the module, allocate the buffers and pack both argument lists once. 0 or -1. */
int fcy_decode_floor_init(const char* ffi_path, const char* module_path, int64_t batch,
                          int64_t kv_len, int64_t ps, int64_t hq, int64_t hkv, int64_t d) {
  if (floor_load(ffi_path, module_path, &F.plan, &F.run) != 0) return -1;

  int64_t pages = (kv_len + ps - 1) / ps, pool = batch * pages;
  F.batch = batch;
  F.n_indices = pool;
  /* host metadata: shuffled page table (a fixed LCG permutation), full last pages */
  F.h_indptr = malloc((batch + 1) * 4);
  F.h_lpl = malloc(batch * 4);
  F.h_indices = malloc(pool * 4);
  for (int64_t i = 0; i <= batch; ++i) F.h_indptr[i] = (int32_t)(i * pages);
  for (int64_t i = 0; i < batch; ++i) F.h_lpl[i] = (int32_t)(kv_len - (pages - 1) * ps);
  shuffled_ids(F.h_indices, pool);

  size_t float_ws = 128u << 20, int_ws = 8u << 20;
  void *d_float, *d_int, *h_locked, *q, *k, *v, *o;
  size_t kv_bytes = (size_t)pool * ps * hkv * d * 2;
  CU(cu.Malloc(&d_float, float_ws), "cudaMalloc");
  CU(cu.Malloc(&d_int, int_ws), "cudaMalloc");
  CU(cu.Malloc(&F.d_meta, (batch + 1 + batch + pool) * 4), "cudaMalloc");
  CU(cu.Malloc(&q, batch * hq * d * 2), "cudaMalloc");
  CU(cu.Malloc(&o, batch * hq * d * 2), "cudaMalloc");
  CU(cu.Malloc(&k, kv_bytes), "cudaMalloc");
  CU(cu.Malloc(&v, kv_bytes), "cudaMalloc");
  CU(cu.HostAlloc(&h_locked, int_ws, 0), "cudaHostAlloc");
  CU(cu.HostAlloc((void**)&F.staging, (batch + 1 + batch + pool) * 4, 0), "cudaHostAlloc");
  CU(cu.EventCreateWithFlags(&F.event, 2 /* cudaEventDisableTiming */), "cudaEventCreate");
  if (stage() != 0) return -1;  /* the device metadata the run reads */
  CU(cu.DeviceSynchronize(), "cudaDeviceSynchronize");

  DLDataType u8 = {kDLUInt, 8, 1}, i32 = {kDLInt, 32, 1}, f16 = {kDLFloat, 16, 1};
  F.s_float[0] = (int64_t)float_ws; F.s_int[0] = (int64_t)int_ws; F.s_b1[0] = batch + 1;
  F.s_empty[0] = 0; F.s_b[0] = batch; F.s_pool[0] = pool;
  F.s_q[0] = batch; F.s_q[1] = hq; F.s_q[2] = d;
  F.s_kv[0] = pool; F.s_kv[1] = ps; F.s_kv[2] = hkv; F.s_kv[3] = d;
  stride_used = 0;
  tensor(&F.t_float, d_float, 1, F.s_float, u8, kDLCUDA);
  tensor(&F.t_int, d_int, 1, F.s_int, u8, kDLCUDA);
  tensor(&F.t_locked, h_locked, 1, F.s_int, u8, kDLCPU);
  tensor(&F.t_hindptr, F.h_indptr, 1, F.s_b1, i32, kDLCPU);
  tensor(&F.t_eq, F.staging, 1, F.s_empty, f16, kDLCPU);
  tensor(&F.t_ekv, F.staging, 1, F.s_empty, f16, kDLCPU);
  tensor(&F.t_q, q, 3, F.s_q, f16, kDLCUDA);
  tensor(&F.t_o, o, 3, F.s_q, f16, kDLCUDA);
  tensor(&F.t_k, k, 4, F.s_kv, f16, kDLCUDA);
  tensor(&F.t_v, v, 4, F.s_kv, f16, kDLCUDA);
  tensor(&F.t_indptr, F.d_meta, 1, F.s_b1, i32, kDLCUDA);
  tensor(&F.t_lpl, (int32_t*)F.d_meta + batch + 1, 1, F.s_b, i32, kDLCUDA);
  tensor(&F.t_indices, (int32_t*)F.d_meta + 2 * batch + 1, 1, F.s_pool, i32, kDLCUDA);

  TVMFFIAny* p = F.plan_args;
  memset(F.plan_args, 0, sizeof(F.plan_args));
  set_tensor(&p[0], &F.t_float); set_tensor(&p[1], &F.t_int); set_tensor(&p[2], &F.t_locked);
  set_tensor(&p[3], &F.t_hindptr); set_int(&p[4], batch); set_int(&p[5], hq);
  set_int(&p[6], hkv); set_int(&p[7], ps); set_bool(&p[8], 0); set_int(&p[9], -1);
  set_float(&p[10], 0.0); set_int(&p[11], d); set_int(&p[12], d);
  set_tensor(&p[13], &F.t_eq); set_tensor(&p[14], &F.t_ekv);

  if (call(F.plan, F.plan_args, 15, &F.info) != 0) return -1;  /* the Array run() keeps */
  TVMFFIAny* r = F.run_args;
  memset(F.run_args, 0, sizeof(F.run_args));
  set_tensor(&r[0], &F.t_float); set_tensor(&r[1], &F.t_int); r[2] = F.info;
  set_tensor(&r[3], &F.t_q); set_tensor(&r[4], &F.t_k); set_tensor(&r[5], &F.t_v);
  set_tensor(&r[6], &F.t_indptr); set_tensor(&r[7], &F.t_indices); set_tensor(&r[8], &F.t_lpl);
  set_tensor(&r[9], &F.t_o); r[10].type_index = kTVMFFINone; set_int(&r[11], 0 /* NHD */);
  set_int(&r[12], -1); set_bool(&r[13], 1 /* PDL, as both Python paths on sm90 */);
  r[14].type_index = kTVMFFINone; set_float(&r[15], 0.0);
  set_float(&r[16], 1.0 / sqrt((double)d)); set_float(&r[17], 1.0);
  set_float(&r[18], 1e-4);
  g_ready = 1;
  for (int w = 0; w < 3; ++w)  /* module load, first launches, lazy init */
    for (int which = 0; which < 3; ++which)
      if (fcy_decode_floor_burst(which, 20) < 0) return g_ready = 0, -1;
  return 0;
}

int main(int argc, char** argv) {
  if (argc < 9) {
    fprintf(stderr, "usage: %s libtvm_ffi.so batch_decode.so batch kv_len page hq hkv d "
                    "[bursts] [burst]\n", argv[0]);
    return 2;
  }
  int bursts = argc > 9 ? atoi(argv[9]) : 200, burst = argc > 10 ? atoi(argv[10]) : 50;
  if (fcy_decode_floor_init(argv[1], argv[2], atoll(argv[3]), atoll(argv[4]), atoll(argv[5]),
                            atoll(argv[6]), atoll(argv[7]), atoll(argv[8])) != 0) {
    fprintf(stderr, "decode_floor: %s\n", g_err);
    return 1;
  }
  double* per_call = malloc(sizeof(double) * bursts);
  for (int which = 0; which < 3; ++which) {  /* run_exchange needs Python objects */
    for (int b = 0; b < bursts; ++b) {
      per_call[b] = fcy_decode_floor_burst(which, burst);
      if (per_call[b] < 0) {
        fprintf(stderr, "decode_floor: %s\n", g_err);
        return 1;
      }
    }
    qsort(per_call, bursts, sizeof(double), cmp_double);
    printf("c_floor_%s_us %.3f\n", FLOOR_NAMES[which], per_call[bursts / 2]);
  }
  printf("bursts %d burst %d\n", bursts, burst);
  cu.DeviceSynchronize();
  return 0;
}
