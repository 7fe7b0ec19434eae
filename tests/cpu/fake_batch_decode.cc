// A CPU stand-in for a FlashInfer 0.6.3 batch_decode module (plan + run), with the exact
// C++ signatures of csrc/batch_decode_jit_binding.cu for a variant without extra tensors
// (ADDITIONAL_FUNC_PARAMS = maybe_alibi_slopes, logits_soft_cap, sm_scale, rope_rcp_scale,
// rope_rcp_theta), so TVM-FFI's typed call checks every kind flashinfer_cy packs.
//
// plan: checks what the real plan reads (host indptr of batch_size + 1, page-locked
//   mirror, workspaces) and returns its parameters as the plan-info array.
// run: decode attention on host memory labelled "cuda" (float16 / bfloat16, NHD or HND
//   paged caches through the caller's strides, GQA, window, soft cap, sm_scale, base-2 lse),
//   after checking the run's tensors against the plan info as the real kernel assumes.
//   FAKE_DECODE_CHECKS_ONLY=1 (host-overhead measurements) stops run after its checks.
#include <tvm/ffi/container/array.h>
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/error.h>
#include <tvm/ffi/function.h>
#include <tvm/ffi/optional.h>

#include "fake_half.h"

#include <cmath>
#include <cstdlib>
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

constexpr int64_t kMagic = 0x5eed;  // plan_info[0]: this stand-in made the plan


}  // namespace

Array<int64_t> BatchDecodeWithPagedKVCachePlan(
    TensorView float_workspace_buffer, TensorView int_workspace_buffer,
    TensorView page_locked_int_workspace_buffer, TensorView indptr, int64_t batch_size,
    int64_t num_qo_heads, int64_t num_kv_heads, int64_t page_size, bool enable_cuda_graph,
    int64_t window_left, double logits_soft_cap, int64_t head_dim_qk, int64_t head_dim_vo,
    TensorView empty_q_data, TensorView empty_kv_data) {
  TVM_FFI_ICHECK_EQ(indptr.device().device_type, kDLCPU) << "indptr must be on the host";
  TVM_FFI_ICHECK_EQ(indptr.size(0), batch_size + 1);
  TVM_FFI_ICHECK_EQ(i32(indptr)[0], 0);
  TVM_FFI_ICHECK_EQ(page_locked_int_workspace_buffer.size(0), int_workspace_buffer.size(0));
  // The real planner's AlignedAllocator refuses a plan whose split-KV partial outputs
  // (num_qo_heads x batch x head_dim, 16-bit) overflow the float workspace.
  TVM_FFI_ICHECK_GE(float_workspace_buffer.size(0), num_qo_heads * batch_size * head_dim_vo * 2)
      << "Out of workspace memory in AlignedAllocator";
  TVM_FFI_ICHECK_EQ(head_dim_qk, head_dim_vo);
  TVM_FFI_ICHECK_EQ(num_qo_heads % num_kv_heads, 0);
  TVM_FFI_ICHECK_EQ(empty_q_data.dtype().bits, 16);
  return Array<int64_t>{kMagic, batch_size, num_qo_heads, num_kv_heads, page_size, head_dim_qk,
                        window_left, enable_cuda_graph ? 1 : 0};
}

void BatchDecodeWithPagedKVCacheRun(
    TensorView float_workspace_buffer, TensorView int_workspace_buffer,
    Array<int64_t> plan_info_vec, TensorView q, TensorView paged_k_cache,
    TensorView paged_v_cache, TensorView paged_kv_indptr, TensorView paged_kv_indices,
    TensorView paged_kv_last_page_len, TensorView o, Optional<TensorView> maybe_lse,
    int64_t kv_layout_code, int64_t window_left, bool enable_pdl,
    Optional<TensorView> maybe_alibi_slopes, double logits_soft_cap, double sm_scale,
    double rope_rcp_scale, double rope_rcp_theta
#ifdef FAKE_LAYOUT_PROBE
    // A release whose run takes one more argument: the Binding's layout for it
    // (tests/cpu/test_attention_call_path.py) must supply it on every run path.
    , bool layout_probe
#endif
    ) {
#ifdef FAKE_LAYOUT_PROBE
  TVM_FFI_ICHECK(layout_probe) << "layout_probe: the layout's constant did not arrive";
#endif
  TVM_FFI_ICHECK_EQ(plan_info_vec.size(), 8);
  TVM_FFI_ICHECK_EQ(plan_info_vec[0], kMagic) << "plan_info_vec is not this module's plan";
  const int64_t batch = plan_info_vec[1], hq = plan_info_vec[2], hkv = plan_info_vec[3];
  const int64_t page_size = plan_info_vec[4], dim = plan_info_vec[5];
  TVM_FFI_ICHECK_EQ(window_left, plan_info_vec[6]);
  TVM_FFI_ICHECK(kv_layout_code == 0 || kv_layout_code == 1) << "layout " << kv_layout_code;
  TVM_FFI_ICHECK(!maybe_alibi_slopes.has_value());
  TVM_FFI_ICHECK_EQ(rope_rcp_scale, 1.0);
  TVM_FFI_ICHECK_EQ(q.size(0), batch);
  TVM_FFI_ICHECK_EQ(q.size(1), hq);
  TVM_FFI_ICHECK_EQ(q.size(2), dim);
  TVM_FFI_ICHECK_EQ(paged_kv_indptr.size(0), batch + 1);
  TVM_FFI_ICHECK_EQ(paged_kv_last_page_len.size(0), batch);
  TVM_FFI_ICHECK_EQ(q.dtype().bits, paged_k_cache.dtype().bits);
  static const bool checks_only = std::getenv("FAKE_DECODE_CHECKS_ONLY") != nullptr;
  if (checks_only) return;  // host-overhead measurements: no attention
  const bool hnd = kv_layout_code == 1;
  TVM_FFI_ICHECK_EQ(paged_k_cache.size(hnd ? 2 : 1), page_size);
  TVM_FFI_ICHECK_EQ(paged_k_cache.size(hnd ? 1 : 2), hkv);
  // One stride array for k and v, as the real kernels read it.
  const int64_t s_page = paged_k_cache.stride(0), s_entry = paged_k_cache.stride(hnd ? 2 : 1),
                s_head = paged_k_cache.stride(hnd ? 1 : 2);
  const int32_t* indptr = i32(paged_kv_indptr);
  const int32_t* indices = i32(paged_kv_indices);
  const int32_t* last = i32(paged_kv_last_page_len);
  const int64_t group = hq / hkv;
  std::vector<double> score;
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t pages = indptr[b + 1] - indptr[b];
    const int64_t len = pages ? (pages - 1) * page_size + last[b] : 0;
    for (int64_t h = 0; h < hq; ++h) {
      const int64_t kvh = h / group;
      auto kv_at = [&](int64_t pos) {
        int64_t page = indices[indptr[b] + pos / page_size];
        return page * s_page + (pos % page_size) * s_entry + kvh * s_head;
      };
      const int64_t first = window_left >= 0 ? std::max<int64_t>(0, len - 1 - window_left) : 0;
      score.assign(len, -INFINITY);
      double m = -INFINITY;
      for (int64_t pos = first; pos < len; ++pos) {
        double s = 0;
        for (int64_t d = 0; d < dim; ++d)
          s += load(q, b * q.stride(0) + h * q.stride(1) + d) * load(paged_k_cache, kv_at(pos) + d);
        s *= sm_scale;
        if (logits_soft_cap > 0) s = logits_soft_cap * std::tanh(s / logits_soft_cap);
        score[pos] = s;
        m = std::max(m, s);
      }
      double denom = 0;
      for (int64_t pos = first; pos < len; ++pos) denom += std::exp(score[pos] - m);
      for (int64_t d = 0; d < dim; ++d) {
        double acc = 0;
        for (int64_t pos = first; pos < len; ++pos)
          acc += std::exp(score[pos] - m) * load(paged_v_cache, kv_at(pos) + d);
        store(o, b * o.stride(0) + h * o.stride(1) + d, denom > 0 ? acc / denom : 0.0);
      }
      if (maybe_lse.has_value()) {
        TensorView lse = maybe_lse.value();
        static_cast<float*>(lse.data_ptr())[b * hq + h] =
            denom > 0 ? static_cast<float>((m + std::log(denom)) / std::log(2.0)) : -INFINITY;
      }
    }
  }
}

TVM_FFI_DLL_EXPORT_TYPED_FUNC(plan, BatchDecodeWithPagedKVCachePlan);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(run, BatchDecodeWithPagedKVCacheRun);
