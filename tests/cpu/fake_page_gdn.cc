// CPU stand-ins for FlashInfer 0.6.3's `page` and `gdn_prefill_sm90` exports, with the exact
// C++ signatures of csrc/page.cu and csrc/gdn_prefill_launcher.cu, so TVM-FFI's typed-call
// checks verify the kinds flashinfer_cy packs (TensorView, Optional<TensorView>, int, float)
// and the tests verify the order. They run on host memory that the tests label "cuda".
//
//   append_paged_kv_cache / append_paged_mla_kv_cache: the kernels' scatter, byte for byte
//     (page_iter = indptr[b] + pos / page_size, slot = pos % page_size, caller strides);
//   gdn_prefill: records what it received into the workspace (int64 slots, see below).
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/error.h>
#include <tvm/ffi/function.h>
#include <tvm/ffi/optional.h>

#include <cstdint>
#include <cstring>

namespace ffi = tvm::ffi;
using ffi::Optional;
using ffi::TensorView;

namespace {

char* at(TensorView t, int64_t elem_offset) {
  return static_cast<char*>(t.data_ptr()) + elem_offset * (t.dtype().bits / 8);
}

void copy_row(TensorView dst, int64_t dst_off, TensorView src, int64_t src_off, int64_t n) {
  std::memcpy(at(dst, dst_off), at(src, src_off), n * (src.dtype().bits / 8));
}

struct Slot {
  int64_t page, entry;
};

Slot locate(TensorView batch_indices, TensorView positions, TensorView kv_indices,
            TensorView kv_indptr, int64_t i, int64_t page_size) {
  auto b = static_cast<const int32_t*>(batch_indices.data_ptr())[i];
  auto pos = static_cast<const int32_t*>(positions.data_ptr())[i];
  auto indptr = static_cast<const int32_t*>(kv_indptr.data_ptr());
  auto indices = static_cast<const int32_t*>(kv_indices.data_ptr());
  return {indices[indptr[b] + pos / page_size], pos % page_size};
}

}  // namespace

void append_paged_kv_cache(TensorView append_key, TensorView append_value,
                           TensorView batch_indices, TensorView positions,
                           TensorView paged_k_cache, TensorView paged_v_cache,
                           TensorView kv_indices, TensorView kv_indptr,
                           TensorView kv_last_page_len, int64_t layout) {
  TVM_FFI_ICHECK(layout == 0 || layout == 1) << "layout code " << layout;
  TVM_FFI_ICHECK_EQ(kv_indptr.size(0), kv_last_page_len.size(0) + 1);
  bool hnd = layout == 1;
  int64_t heads = paged_k_cache.size(hnd ? 1 : 2), page_size = paged_k_cache.size(hnd ? 2 : 1);
  int64_t dim = paged_k_cache.size(3);
  int64_t s_page = paged_k_cache.stride(0), s_h = paged_k_cache.stride(hnd ? 1 : 2),
          s_n = paged_k_cache.stride(hnd ? 2 : 1);
  for (int64_t i = 0; i < append_key.size(0); ++i) {
    Slot s = locate(batch_indices, positions, kv_indices, kv_indptr, i, page_size);
    for (int64_t h = 0; h < heads; ++h) {
      int64_t dst = s.page * s_page + h * s_h + s.entry * s_n;
      copy_row(paged_k_cache, dst, append_key, i * append_key.stride(0) + h * append_key.stride(1),
               dim);
      copy_row(paged_v_cache, dst, append_value,
               i * append_value.stride(0) + h * append_value.stride(1), dim);
    }
  }
}

void append_paged_mla_kv_cache(TensorView append_ckv, TensorView append_kpe,
                               TensorView batch_indices, TensorView positions,
                               TensorView ckv_cache, TensorView kpe_cache, TensorView kv_indices,
                               TensorView kv_indptr, TensorView kv_last_page_len) {
  TVM_FFI_ICHECK_EQ(kv_indptr.size(0), kv_last_page_len.size(0) + 1);
  int64_t page_size = ckv_cache.size(1);
  for (int64_t i = 0; i < append_ckv.size(0); ++i) {
    Slot s = locate(batch_indices, positions, kv_indices, kv_indptr, i, page_size);
    copy_row(ckv_cache, s.page * ckv_cache.stride(0) + s.entry * ckv_cache.stride(1), append_ckv,
             i * append_ckv.stride(0), ckv_cache.size(2));
    copy_row(kpe_cache, s.page * kpe_cache.stride(0) + s.entry * kpe_cache.stride(1), append_kpe,
             i * append_kpe.stride(0), kpe_cache.size(2));
  }
}

// Workspace record (int64 slots): 0..10 the data pointers of output, output_state, q, k, v,
// cu_seqlens, input_state, alpha, beta (0 for None), the scale's bits, workspace; 11 the
// workspace's byte size.
void gdn_prefill(TensorView output, TensorView output_state, TensorView q, TensorView k,
                 TensorView v, TensorView cu_seqlens, Optional<TensorView> input_state,
                 Optional<TensorView> alpha, Optional<TensorView> beta, double scale,
                 TensorView workspace_buffer) {
  auto ptr = [](void* p) { return static_cast<int64_t>(reinterpret_cast<intptr_t>(p)); };
  auto opt = [&](const Optional<TensorView>& t) {
    return t.has_value() ? ptr(t.value().data_ptr()) : int64_t{0};
  };
  int64_t scale_bits;
  std::memcpy(&scale_bits, &scale, sizeof scale_bits);
  int64_t record[12] = {ptr(output.data_ptr()), ptr(output_state.data_ptr()), ptr(q.data_ptr()),
                        ptr(k.data_ptr()),      ptr(v.data_ptr()),
                        ptr(cu_seqlens.data_ptr()), opt(input_state), opt(alpha), opt(beta),
                        scale_bits, ptr(workspace_buffer.data_ptr()), workspace_buffer.size(0)};
  TVM_FFI_ICHECK_GE(workspace_buffer.size(0), static_cast<int64_t>(sizeof record));
  std::memcpy(workspace_buffer.data_ptr(), record, sizeof record);
}

TVM_FFI_DLL_EXPORT_TYPED_FUNC(append_paged_kv_cache, append_paged_kv_cache);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(append_paged_mla_kv_cache, append_paged_mla_kv_cache);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(gdn_prefill, gdn_prefill);
