/*
 * The C floor for batched MLA decode: the `plan` and `run` exports of a batch_mla_attention
 * module called from C through the fcy_call sequence flashinfer_cy uses, timed as
 * tools/c_floor/decode_floor.c times batch decode. Floors:
 *
 *   run          the run export with every argument packed once (what a prepared launch does)
 *   plan_kernel  the plan export alone (its scheduler + its own H2D copy of the schedule)
 *   plan         what any plan() that also moves the page table to the device must do at
 *                least: memcpy it into page-locked staging, one cudaMemcpyAsync, the plan
 *                export, one cudaEventRecord (staging reuse guard)
 *
 * Shapes: float16 or bfloat16, decode (one query row per request), every request kv_len tokens, page
 * table shuffled, head dims ckv / kpe, non-causal, sm_scale 1/sqrt(192).
 *
 * As a library (tools/bench_mla.py, through ctypes: fcy_mla_floor_init / _burst / _error):
 *   cc -O2 -shared -fPIC -I<tvm_ffi/include> -I include tools/c_floor/mla_floor.c \
 *      -o mla_floor.so -ldl -lm
 * Standalone, printing "c_floor_<name>_us <median>" lines:
 *   mla_floor <libtvm_ffi.so> <batch_mla.so> <batch> <kv_len> <page> <heads> <ckv> <kpe>
 *             [bursts] [burst]
 */
#define _GNU_SOURCE
#include <math.h>
#include <stdlib.h>

#include "floor_common.h"

static int g_ready = 0;  /* fcy_mla_floor_init packed everything (the floors may run) */

static struct {
  TVMFFISafeCallType plan, run;
  TVMFFIAny plan_args[9], run_args[15], info;
  int32_t *h_qo, *h_kv, *h_len, *h_indices, *staging;
  void *d_indices, *event;
  int64_t n_indices;
  DLTensor t_float, t_int, t_locked, t_qo, t_kv, t_len;
  DLTensor t_qn, t_qp, t_ckv, t_kpe, t_indices, t_o;
  int64_t s_float[1], s_int[1], s_b1[1], s_b[1], s_pool[1], s_qn[3], s_qp[3], s_ckv[3],
      s_kpe[3];
} M;

static int call(TVMFFISafeCallType fn, TVMFFIAny* args, int n, TVMFFIAny* result) {
  return call_on(fn, args, n, result, NULL);
}

static int plan_kernel(void) {
  TVMFFIAny result;
  if (call(M.plan, M.plan_args, 9, &result) != 0) return -1;
  if (result.type_index >= kTVMFFIStaticObjectBegin) api.ObjectDecRef(result.v_obj);
  return 0;
}

static int stage(void) {
  memcpy(M.staging, M.h_indices, M.n_indices * 4);
  int err = cu.MemcpyAsync(M.d_indices, M.staging, M.n_indices * 4, H2D, NULL);
  return err ? fail("%s failed (%d)", "cudaMemcpyAsync", err) : 0;
}

static int plan_full(void) {
  if (stage() || plan_kernel()) return -1;
  int err = cu.EventRecord(M.event, NULL);
  return err ? fail("%s failed (%d)", "cudaEventRecord", err) : 0;
}

static int run(void) {
  TVMFFIAny result;
  return call(M.run, M.run_args, 15, &result);
}

#define N_FLOORS 3
static int (*const FLOORS[N_FLOORS])(void) = {run, plan_kernel, plan_full};
const char* MLA_FLOOR_NAMES[N_FLOORS] = {"run", "plan_kernel", "plan"};

const char* fcy_mla_floor_error(void) { return g_err; }

/* Host microseconds per call of floor `which` (0 run, 1 plan_kernel, 2 plan) over `burst`
 * calls started right after a device synchronize; negative on error (see _error()). */
double fcy_mla_floor_burst(int which, int burst) {
  if (which < 0 || which >= N_FLOORS) return fail("%s %d", "no such floor:", which), -1.0;
  if (!g_ready) return fail_msg("fcy_mla_floor_init has not succeeded"), -1.0;
  cu.DeviceSynchronize();
  double t0 = now_us();
  for (int i = 0; i < burst; ++i)
    if (FLOORS[which]() != 0) return -1.0;
  return (now_us() - t0) / burst;
}

/* Load the module, allocate the buffers and pack both argument lists once. 0 or -1. */
int fcy_mla_floor_init(const char* ffi_path, const char* module_path, int64_t batch,
                       int64_t kv_len, int64_t ps, int64_t heads, int64_t ckv, int64_t kpe,
                       int64_t bf16) {
  if (floor_load(ffi_path, module_path, &M.plan, &M.run) != 0) return -1;
  int64_t pages = (kv_len + ps - 1) / ps, pool = batch * pages;
  M.n_indices = pool;
  M.h_qo = malloc((batch + 1) * 4);
  M.h_kv = malloc((batch + 1) * 4);
  M.h_len = malloc(batch * 4);
  M.h_indices = malloc(pool * 4);
  for (int64_t i = 0; i <= batch; ++i) {
    M.h_qo[i] = (int32_t)i;
    M.h_kv[i] = (int32_t)(i * pages);
  }
  for (int64_t i = 0; i < batch; ++i) M.h_len[i] = (int32_t)kv_len;
  shuffled_ids(M.h_indices, pool);

  size_t float_ws = 128u << 20, int_ws = 8u << 20;
  void *d_float, *d_int, *h_locked, *qn, *qp, *c, *k, *o;
  CU(cu.Malloc(&d_float, float_ws), "cudaMalloc");
  CU(cu.Malloc(&d_int, int_ws), "cudaMalloc");
  CU(cu.Malloc(&M.d_indices, pool * 4), "cudaMalloc");
  CU(cu.Malloc(&qn, batch * heads * ckv * 2), "cudaMalloc");
  CU(cu.Malloc(&qp, batch * heads * kpe * 2), "cudaMalloc");
  CU(cu.Malloc(&o, batch * heads * ckv * 2), "cudaMalloc");
  CU(cu.Malloc(&c, (size_t)pool * ps * ckv * 2), "cudaMalloc");
  CU(cu.Malloc(&k, (size_t)pool * ps * kpe * 2), "cudaMalloc");
  CU(cu.HostAlloc(&h_locked, int_ws, 0), "cudaHostAlloc");
  CU(cu.HostAlloc((void**)&M.staging, pool * 4, 0), "cudaHostAlloc");
  CU(cu.EventCreateWithFlags(&M.event, 2 /* cudaEventDisableTiming */), "cudaEventCreate");
  if (stage() != 0) return -1;  /* the page table the run reads */
  CU(cu.DeviceSynchronize(), "cudaDeviceSynchronize");

  DLDataType u8 = {kDLUInt, 8, 1}, i32 = {kDLInt, 32, 1};
  /* q/kv/o element type: the module's (bf16 != 0: bfloat16, else float16) */
  DLDataType f16 = {bf16 ? kDLBfloat : kDLFloat, 16, 1};
  M.s_float[0] = (int64_t)float_ws; M.s_int[0] = (int64_t)int_ws; M.s_b1[0] = batch + 1;
  M.s_b[0] = batch; M.s_pool[0] = pool;
  M.s_qn[0] = batch; M.s_qn[1] = heads; M.s_qn[2] = ckv;
  M.s_qp[0] = batch; M.s_qp[1] = heads; M.s_qp[2] = kpe;
  M.s_ckv[0] = pool; M.s_ckv[1] = ps; M.s_ckv[2] = ckv;
  M.s_kpe[0] = pool; M.s_kpe[1] = ps; M.s_kpe[2] = kpe;
  stride_used = 0;
  tensor(&M.t_float, d_float, 1, M.s_float, u8, kDLCUDA);
  tensor(&M.t_int, d_int, 1, M.s_int, u8, kDLCUDA);
  tensor(&M.t_locked, h_locked, 1, M.s_int, u8, kDLCPU);
  tensor(&M.t_qo, M.h_qo, 1, M.s_b1, i32, kDLCPU);
  tensor(&M.t_kv, M.h_kv, 1, M.s_b1, i32, kDLCPU);
  tensor(&M.t_len, M.h_len, 1, M.s_b, i32, kDLCPU);
  tensor(&M.t_qn, qn, 3, M.s_qn, f16, kDLCUDA);
  tensor(&M.t_qp, qp, 3, M.s_qp, f16, kDLCUDA);
  tensor(&M.t_o, o, 3, M.s_qn, f16, kDLCUDA);
  tensor(&M.t_ckv, c, 3, M.s_ckv, f16, kDLCUDA);
  tensor(&M.t_kpe, k, 3, M.s_kpe, f16, kDLCUDA);
  tensor(&M.t_indices, M.d_indices, 1, M.s_pool, i32, kDLCUDA);

  TVMFFIAny* p = M.plan_args;
  memset(M.plan_args, 0, sizeof(M.plan_args));
  set_tensor(&p[0], &M.t_float); set_tensor(&p[1], &M.t_int); set_tensor(&p[2], &M.t_locked);
  set_tensor(&p[3], &M.t_qo); set_tensor(&p[4], &M.t_kv); set_tensor(&p[5], &M.t_len);
  set_int(&p[6], heads); set_int(&p[7], ckv /* head_dim_o */); set_bool(&p[8], 0);

  if (call(M.plan, M.plan_args, 9, &M.info) != 0) return -1;  /* the Array run() keeps */
  TVMFFIAny* r = M.run_args;
  memset(M.run_args, 0, sizeof(M.run_args));
  set_tensor(&r[0], &M.t_float); set_tensor(&r[1], &M.t_int); r[2] = M.info;
  set_tensor(&r[3], &M.t_qn); set_tensor(&r[4], &M.t_qp); set_tensor(&r[5], &M.t_ckv);
  set_tensor(&r[6], &M.t_kpe); set_tensor(&r[7], &M.t_indices); set_tensor(&r[8], &M.t_o);
  r[9].type_index = kTVMFFINone; set_int(&r[10], 0 /* non-causal */); set_int(&r[11], heads);
  set_int(&r[12], ps); set_float(&r[13], 1.0 / sqrt(192.0)); set_bool(&r[14], 0);
  g_ready = 1;
  for (int w = 0; w < 3; ++w)  /* module load, first launches, lazy init */
    for (int which = 0; which < N_FLOORS; ++which)
      if (fcy_mla_floor_burst(which, 20) < 0) return g_ready = 0, -1;
  return 0;
}

int main(int argc, char** argv) {
  if (argc < 9) {
    fprintf(stderr, "usage: %s libtvm_ffi.so batch_mla.so batch kv_len page heads ckv kpe "
                    "[bursts] [burst] [bf16: 0|1]\n", argv[0]);
    return 2;
  }
  int bursts = argc > 9 ? atoi(argv[9]) : 200, burst = argc > 10 ? atoi(argv[10]) : 50;
  if (fcy_mla_floor_init(argv[1], argv[2], atoll(argv[3]), atoll(argv[4]), atoll(argv[5]),
                         atoll(argv[6]), atoll(argv[7]), atoll(argv[8]),
                         argc > 11 ? atoll(argv[11]) : 0) != 0) {
    fprintf(stderr, "mla_floor: %s\n", g_err);
    return 1;
  }
  double* per_call = malloc(sizeof(double) * bursts);
  for (int which = 0; which < N_FLOORS; ++which) {
    for (int b = 0; b < bursts; ++b) {
      per_call[b] = fcy_mla_floor_burst(which, burst);
      if (per_call[b] < 0) {
        fprintf(stderr, "mla_floor: %s\n", g_err);
        return 1;
      }
    }
    qsort(per_call, bursts, sizeof(double), cmp_double);
    printf("c_floor_%s_us %.3f\n", MLA_FLOOR_NAMES[which], per_call[bursts / 2]);
  }
  printf("bursts %d burst %d\n", bursts, burst);
  cu.DeviceSynchronize();
  return 0;
}
