// A CPU stand-in for a FlashInfer 0.6.3 batch_mla_attention module (plan + run), with the
// exact C++ signatures of csrc/batch_mla_binding.cu (= batch_mla_sm90_binding.cu without
// the profiler), so TVM-FFI's typed call checks every kind flashinfer_cy packs. Built with
// -DFAKE_MLA_074: FlashInfer 0.7.4's (the _planabi2 modules), below.
//
// plan: checks what the real planner reads (host qo_indptr / kv_indptr / kv_len of one
//   batch, a page-locked mirror as large as the int workspace), then, as the real one does
//   through its mirror and an async copy, leaves the schedule in the int workspace: here
//   batch, qo_indptr, kv_indptr and kv_len (host memory labelled "cuda" in these tests).
//   Returns the real layout's grid first (num_blks_x = CTAs per cluster by scheduler.cuh
//   MLAPlan's rule, 2 when avg qo_len x num_heads > 64; num_blks_y = 132 SMs / that), then
//   (magic, num_heads, head_dim_o, causal): constant for one configuration, as the real
//   workspace offsets are.
// run: absorbed MLA on host memory (float16 / bfloat16) through the caller's strides,
//   causal rows aligned to the end, lse base 2 or e; then records its scalar arguments at
//   the start of the float workspace (RunRecord) for the driver to check.
//
// 0.7.4 (-DFAKE_MLA_074): plan returns Tuple<Array<int64_t>, int64_t>, the plan info and the
//   bytes of the mirror that hold the schedule, and copies nothing into the int workspace:
//   its caller must (0.7.4's _BatchMLAModuleProxy does). To catch a caller that does not,
//   this plan also fills the int workspace with garbage (the real one leaves it alone),
//   which the caller's copy must overwrite before run() reads it. run takes three more
//   arguments, ckv_scale, kpe_scale, maybe_ckv_scale_arr, recorded in RunRecord (0.6.3's:
//   NaN, NaN, -1, "not passed").
#include <tvm/ffi/container/array.h>
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/container/tuple.h>
#include <tvm/ffi/error.h>
#include <tvm/ffi/function.h>
#include <tvm/ffi/optional.h>

#include "fake_half.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace ffi = tvm::ffi;
using ffi::Array;
using ffi::Optional;
using ffi::TensorView;
using fake_half::i32;
using fake_half::load;
using fake_half::store;

namespace {

constexpr int64_t kMagic = 0x3a1a;

struct RunRecord {  // what run() was handed, for the driver (float workspace, offset 0)
  int64_t magic, mask_mode_code, num_heads, page_size, has_lse, lse_base_e, kv_indices_len;
  double sm_scale, ckv_scale, kpe_scale;
  int64_t has_ckv_scale_arr;
};

#ifdef FAKE_MLA_074
using PlanResult = ffi::Tuple<Array<int64_t>, int64_t>;
#else
using PlanResult = Array<int64_t>;
#endif


}  // namespace

PlanResult BatchMLAPagedAttentionPlan(TensorView float_workspace_buffer,
                                      TensorView int_workspace_buffer,
                                      TensorView page_locked_int_workspace_buffer,
                                      TensorView qo_indptr, TensorView kv_indptr, TensorView kv_len,
                                      int64_t num_heads, int64_t head_dim_o, bool causal) {
  for (TensorView t : {qo_indptr, kv_indptr, kv_len}) {
    TVM_FFI_ICHECK_EQ(t.device().device_type, kDLCPU) << "plan arrays must be on the host";
    TVM_FFI_ICHECK(t.dtype().code == kDLInt && t.dtype().bits == 32);
  }
  const int64_t batch = kv_len.size(0);
  TVM_FFI_ICHECK_GE(batch, 1);
  TVM_FFI_ICHECK_EQ(qo_indptr.size(0), batch + 1);
  TVM_FFI_ICHECK_EQ(kv_indptr.size(0), batch + 1);
  TVM_FFI_ICHECK_EQ(page_locked_int_workspace_buffer.size(0), int_workspace_buffer.size(0));
  const int64_t words = 3 * batch + 3;
  TVM_FFI_ICHECK_GE(int_workspace_buffer.size(0), words * 4) << "Out of workspace memory";
  int32_t* mirror = static_cast<int32_t*>(page_locked_int_workspace_buffer.data_ptr());
  mirror[0] = static_cast<int32_t>(batch);
  std::memcpy(mirror + 1, i32(qo_indptr), (batch + 1) * 4);
  std::memcpy(mirror + batch + 2, i32(kv_indptr), (batch + 1) * 4);
  std::memcpy(mirror + 2 * batch + 3, i32(kv_len), batch * 4);
  const int64_t cluster = i32(qo_indptr)[batch] * num_heads / batch > 64 ? 2 : 1;
  Array<int64_t> info{cluster, 132 / cluster, kMagic, num_heads, head_dim_o, causal ? 1 : 0};
#ifdef FAKE_MLA_074
  std::memset(int_workspace_buffer.data_ptr(), 0x7f, words * 4);  // the caller copies over it
  return PlanResult(info, words * 4);
#else
  std::memcpy(int_workspace_buffer.data_ptr(), mirror, words * 4);  // "cudaMemcpyAsync"
  return info;
#endif
}

void BatchMLAPagedAttentionRun(TensorView float_workspace_buffer, TensorView int_workspace_buffer,
                               Array<int64_t> plan_info_vec, TensorView q_nope, TensorView q_pe,
                               TensorView ckv_cache, TensorView kpe_cache, TensorView kv_indices,
                               TensorView o, Optional<TensorView> maybe_lse, int64_t mask_mode_code,
                               int64_t num_heads, int64_t page_size, double sm_scale,
#ifdef FAKE_MLA_074
                               bool return_lse_base_on_e, double ckv_scale, double kpe_scale,
                               Optional<TensorView> maybe_ckv_scale_arr) {
  const int64_t has_ckv_scale_arr = maybe_ckv_scale_arr.has_value() ? 1 : 0;
#else
                               bool return_lse_base_on_e) {
  const double ckv_scale = NAN, kpe_scale = NAN;
  const int64_t has_ckv_scale_arr = -1;
#endif
  TVM_FFI_ICHECK_EQ(plan_info_vec.size(), 6);
  TVM_FFI_ICHECK_EQ(plan_info_vec[2], kMagic) << "plan_info_vec is not this module's plan";
  const int64_t dim = plan_info_vec[4];
  TVM_FFI_ICHECK_EQ(num_heads, plan_info_vec[3]);
  TVM_FFI_ICHECK_EQ(mask_mode_code, plan_info_vec[5]) << "mask mode is not the plan's causal";
  TVM_FFI_ICHECK(kv_indices.dtype().code == kDLInt && kv_indices.dtype().bits == 32);
  TVM_FFI_ICHECK_EQ(q_nope.size(2), dim);
  TVM_FFI_ICHECK_EQ(ckv_cache.size(2), dim);
  TVM_FFI_ICHECK_EQ(ckv_cache.size(1), page_size);
  TVM_FFI_ICHECK_EQ(kpe_cache.size(1), page_size);
  TVM_FFI_ICHECK_EQ(q_pe.size(2), kpe_cache.size(2));
  const int64_t dpe = q_pe.size(2);
  const int32_t* ws = i32(int_workspace_buffer);
  const int64_t batch = ws[0];
  TVM_FFI_ICHECK(batch >= 1 && batch <= (1 << 20))
      << "the int workspace holds no schedule (batch " << batch << "): the plan's copy of the "
      << "mirror did not arrive";
  const int32_t *qo_indptr = ws + 1, *kv_indptr = ws + batch + 2, *kv_len = ws + 2 * batch + 3;
  const int32_t* indices = i32(kv_indices);
  const bool causal = mask_mode_code == 1;
  std::vector<double> score;
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t rows = qo_indptr[b + 1] - qo_indptr[b], len = kv_len[b];
    TVM_FFI_ICHECK_LE(len, (kv_indptr[b + 1] - kv_indptr[b]) * page_size);
    auto entry = [&](TensorView cache, int64_t pos) {
      return indices[kv_indptr[b] + pos / page_size] * cache.stride(0) +
             (pos % page_size) * cache.stride(1);
    };
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t n = qo_indptr[b] + r;
      const int64_t end = causal ? len - rows + r + 1 : len;  // keys [0, end)
      for (int64_t h = 0; h < num_heads; ++h) {
        score.assign(end > 0 ? end : 0, 0.0);
        double m = -INFINITY;
        for (int64_t pos = 0; pos < end; ++pos) {
          double s = 0;
          for (int64_t d = 0; d < dim; ++d)
            s += load(q_nope, n * q_nope.stride(0) + h * q_nope.stride(1) + d) *
                 load(ckv_cache, entry(ckv_cache, pos) + d);
          for (int64_t d = 0; d < dpe; ++d)
            s += load(q_pe, n * q_pe.stride(0) + h * q_pe.stride(1) + d) *
                 load(kpe_cache, entry(kpe_cache, pos) + d);
          score[pos] = s * sm_scale;
          m = std::max(m, score[pos]);
        }
        double denom = 0;
        for (int64_t pos = 0; pos < end; ++pos) denom += std::exp(score[pos] - m);
        for (int64_t d = 0; d < dim; ++d) {
          double acc = 0;
          for (int64_t pos = 0; pos < end; ++pos)
            acc += std::exp(score[pos] - m) * load(ckv_cache, entry(ckv_cache, pos) + d);
          store(o, n * o.stride(0) + h * o.stride(1) + d, denom > 0 ? acc / denom : 0.0);
        }
        if (maybe_lse.has_value()) {
          const double lse = denom > 0 ? m + std::log(denom) : -INFINITY;
          static_cast<float*>(maybe_lse.value().data_ptr())[n * num_heads + h] =
              static_cast<float>(return_lse_base_on_e ? lse : lse / std::log(2.0));
        }
      }
    }
  }
  RunRecord rec{kMagic,     mask_mode_code, num_heads, page_size, maybe_lse.has_value() ? 1 : 0,
                return_lse_base_on_e ? 1 : 0, kv_indices.size(0), sm_scale, ckv_scale, kpe_scale,
                has_ckv_scale_arr};
  std::memcpy(float_workspace_buffer.data_ptr(), &rec, sizeof(rec));
}

TVM_FFI_DLL_EXPORT_TYPED_FUNC(plan, BatchMLAPagedAttentionPlan);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(run, BatchMLAPagedAttentionRun);
