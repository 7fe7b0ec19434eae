// CPU stand-ins for flashinfer 0.7.4's sampling and topk exports whose argument lists
// changed (csrc/flashinfer_sampling_binding.cu, flashinfer_topk_binding.cu of 0.7.4), for
// tests/cpu/test_sampling_074_call_path.py: each records what it received (the philox
// seed/offset as scalars or as the first element of the device tensors, valid,
// deterministic, the workspace, the top-k options) and writes something checkable, so a
// call that arrives proves its arguments did. Memory is host memory described as CUDA.
#include <tvm/ffi/function.h>
#include <tvm/ffi/optional.h>
#include <tvm/ffi/container/tensor.h>

#include <atomic>
#include <cstdint>

namespace ffi = tvm::ffi;
using ffi::Optional;
using ffi::TensorView;

static std::atomic<int64_t> g_calls{0};
static int64_t g_seed = -1, g_offset = -1, g_seed_len = -1, g_offset_len = -1;
static int64_t g_det = -1, g_valid = 0, g_workspace = -1, g_opts = -1;

// seed_val / offset_val, or (a tensor given) its first element; the length (0: scalar)
static void record_rng(Optional<TensorView> seed_arr, uint64_t seed_val,
                       Optional<TensorView> offset_arr, uint64_t offset_val) {
  g_seed_len = seed_arr.has_value() ? seed_arr.value().size(0) : 0;
  g_offset_len = offset_arr.has_value() ? offset_arr.value().size(0) : 0;
  g_seed = seed_arr.has_value() ? *static_cast<int64_t*>(seed_arr.value().data_ptr())
                                : static_cast<int64_t>(seed_val);
  g_offset = offset_arr.has_value() ? *static_cast<int64_t*>(offset_arr.value().data_ptr())
                                    : static_cast<int64_t>(offset_val);
}

// output[i] = i + 7, valid[i] = true
static void write_ids(TensorView output, bool* valid) {
  ++g_calls;
  int32_t* o = static_cast<int32_t*>(output.data_ptr());
  for (int64_t i = 0; i < output.size(0); ++i) {
    o[i] = static_cast<int32_t>(i + 7);
    if (valid) valid[i] = true;
  }
  g_valid = reinterpret_cast<int64_t>(valid);
}

void sampling_from_probs(TensorView probs, TensorView output, TensorView valid,
                         Optional<TensorView> maybe_indices, bool deterministic,
                         Optional<TensorView> maybe_seed_arr, uint64_t seed_val,
                         Optional<TensorView> maybe_offset_arr, uint64_t offset_val) {
  g_det = deterministic;
  record_rng(maybe_seed_arr, seed_val, maybe_offset_arr, offset_val);
  write_ids(output, static_cast<bool*>(valid.data_ptr()));
}

void sampling_from_logits(TensorView logits, TensorView output, Optional<TensorView> maybe_indices,
                          bool deterministic, Optional<TensorView> maybe_seed_arr,
                          uint64_t seed_val, Optional<TensorView> maybe_offset_arr,
                          uint64_t offset_val) {
  g_det = deterministic;
  record_rng(maybe_seed_arr, seed_val, maybe_offset_arr, offset_val);
  write_ids(output, nullptr);
}

void top_k_sampling_from_probs(TensorView probs, TensorView output, TensorView valid,
                               Optional<TensorView> maybe_indices,
                               Optional<TensorView> maybe_top_k_arr, int64_t top_k_val,
                               bool deterministic, Optional<TensorView> maybe_seed_arr,
                               uint64_t seed_val, Optional<TensorView> maybe_offset_arr,
                               uint64_t offset_val) {
  g_det = deterministic;
  g_opts = top_k_val;
  record_rng(maybe_seed_arr, seed_val, maybe_offset_arr, offset_val);
  write_ids(output, static_cast<bool*>(valid.data_ptr()));
}

void chain_speculative_sampling(TensorView draft_probs, TensorView draft_token_ids,
                                TensorView target_probs, TensorView output_token_ids,
                                TensorView output_accepted_token_num,
                                TensorView output_emitted_draft_token_num, bool deterministic,
                                Optional<TensorView> maybe_seed_arr, uint64_t seed_val,
                                Optional<TensorView> maybe_offset_arr, uint64_t offset_val) {
  ++g_calls;
  g_det = deterministic;
  record_rng(maybe_seed_arr, seed_val, maybe_offset_arr, offset_val);
}

// renorm_probs = probs; records is_deterministic and the workspace's size
void top_p_renorm_probs(TensorView probs, TensorView renorm_probs,
                        Optional<TensorView> maybe_top_p_arr, double top_p_val,
                        bool is_deterministic, TensorView workspace) {
  ++g_calls;
  g_det = is_deterministic;
  g_workspace = workspace.size(0);
  const float* p = static_cast<const float*>(probs.data_ptr());
  float* o = static_cast<float*>(renorm_probs.data_ptr());
  for (int64_t i = 0; i < probs.size(0) * probs.size(1); ++i) o[i] = p[i];
}

// the options as one number: sorted, deterministic, tie_break, graph-safe (decimal digits)
void radix_topk(TensorView input, TensorView output_indices,
                Optional<TensorView> maybe_output_values,
                Optional<TensorView> maybe_row_states_buffer, int64_t top_k, bool sorted_output,
                bool deterministic, int64_t tie_break, bool dsa_graph_safe) {
  ++g_calls;
  g_opts = 1000 * sorted_output + 100 * deterministic + 10 * tie_break + dsa_graph_safe;
  const int64_t rows = input.size(0), cols = input.size(1);
  const float* x = static_cast<const float*>(input.data_ptr());
  int32_t* idx = static_cast<int32_t*>(output_indices.data_ptr());
  float* val = maybe_output_values.has_value()
                   ? static_cast<float*>(maybe_output_values.value().data_ptr()) : nullptr;
  for (int64_t r = 0; r < rows; ++r)  // the first k columns: enough to see the outputs
    for (int64_t j = 0; j < top_k; ++j) {
      idx[r * top_k + j] = static_cast<int32_t>(j);
      if (val) val[r * top_k + j] = x[r * cols + j];
    }
}

// 0.7.4's argument list; like the real export (topk_transform_checks.h) it refuses a table
// of more rows than input rows without row_to_batch. Writes the table's first k entries of
// each row's table row.
void radix_topk_page_table_transform(
    TensorView input, TensorView output_page_table, TensorView src_page_table,
    Optional<TensorView> maybe_row_to_batch, TensorView lengths,
    Optional<TensorView> maybe_row_states_buffer, int64_t top_k, bool deterministic,
    int64_t tie_break, int64_t page_size, bool dsa_graph_safe,
    Optional<TensorView> maybe_row_starts, Optional<TensorView> maybe_page_table_row_starts,
    Optional<TensorView> maybe_output_raw_indices) {
  const int64_t rows = input.size(0), n = src_page_table.size(1);
  if (!maybe_row_to_batch.has_value())
    TVM_FFI_ICHECK_EQ(src_page_table.size(0), rows)
        << "src_page_table must have one row per input row (identity mapping)";
  ++g_calls;
  g_opts = 1000 * page_size + 100 * deterministic + 10 * tie_break + dsa_graph_safe;
  const int32_t* table = static_cast<const int32_t*>(src_page_table.data_ptr());
  const int32_t* r2b = maybe_row_to_batch.has_value()
                           ? static_cast<const int32_t*>(maybe_row_to_batch.value().data_ptr())
                           : nullptr;
  int32_t* out = static_cast<int32_t*>(output_page_table.data_ptr());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < top_k; ++j) out[r * top_k + j] = table[(r2b ? r2b[r] : r) * n + j];
}

int64_t calls() { return g_calls.load(); }
int64_t last_seed() { return g_seed; }
int64_t last_offset() { return g_offset; }
int64_t last_seed_len() { return g_seed_len; }
int64_t last_offset_len() { return g_offset_len; }
int64_t last_det() { return g_det; }
int64_t last_valid() { return g_valid; }
int64_t last_workspace() { return g_workspace; }
int64_t last_opts() { return g_opts; }

TVM_FFI_DLL_EXPORT_TYPED_FUNC(sampling_from_probs, sampling_from_probs);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(sampling_from_logits, sampling_from_logits);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(top_k_sampling_from_probs, top_k_sampling_from_probs);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(chain_speculative_sampling, chain_speculative_sampling);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(top_p_renorm_probs, top_p_renorm_probs);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(radix_topk, radix_topk);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(radix_topk_page_table_transform, radix_topk_page_table_transform);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(calls, calls);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(last_seed, last_seed);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(last_offset, last_offset);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(last_seed_len, last_seed_len);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(last_offset_len, last_offset_len);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(last_det, last_det);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(last_valid, last_valid);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(last_workspace, last_workspace);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(last_opts, last_opts);
