"""flashinfer_cy: FlashInfer's precompiled CUDA kernels, called from Python through the
TVM-FFI C ABI -- no torch, the GIL released during each call, on your CUDA stream.

Importing this package loads nothing: libtvm_ffi, libcudart and kernel modules are opened
on first use, and CUDA is not initialised until a kernel runs.
"""

from flashinfer_cy.errors import (
    FlashInferError,
    KernelError,
    KernelNotFoundError,
    KernelVersionError,
    RuntimeLibraryError,
    SymbolNotFoundError,
    UnsupportedDeviceError,
    CudaError,
)
from flashinfer_cy._core.tensor import TensorDesc
from flashinfer_cy._core.array import DeviceArray
from flashinfer_cy._core.binding import Binding
from flashinfer_cy._core.runtime import load_module, load_module_path, runtime_info
from flashinfer_cy.streams import use_stream, current_stream
from flashinfer_cy.kernels.norm import (
    rmsnorm,
    qk_rmsnorm,
    gemma_rmsnorm,
    fused_add_rmsnorm,
    gemma_fused_add_rmsnorm,
)
from flashinfer_cy.kernels.page import append_paged_kv_cache, append_paged_mla_kv_cache
from flashinfer_cy.kernels.paged_kv import get_batch_indices_positions, get_seq_lens
from flashinfer_cy.kernels.gdn import gdn_prefill
from flashinfer_cy.kernels.rope import (
    apply_rope,
    apply_rope_inplace,
    apply_rope_pos_ids,
    apply_rope_pos_ids_inplace,
    apply_llama31_rope,
    apply_llama31_rope_inplace,
    apply_llama31_rope_pos_ids,
    apply_llama31_rope_pos_ids_inplace,
    apply_rope_with_cos_sin_cache,
    apply_rope_with_cos_sin_cache_inplace,
)
from flashinfer_cy.kernels.activation import silu_and_mul, gelu_and_mul, gelu_tanh_and_mul
from flashinfer_cy._core.prepared import prepare, PreparedCall
from flashinfer_cy.kernels.cascade import merge_state, merge_state_in_place, merge_states
from flashinfer_cy.kernels.topk import (
    top_k,
    topk,
    top_k_page_table_transform,
    top_k_ragged_transform,
    can_implement_filtered_topk,
)
from flashinfer_cy.kernels.sampling_rng import SamplingGenerator
from flashinfer_cy.kernels.sampling import (
    softmax,
    sampling_from_probs,
    sampling_from_logits,
    top_p_sampling_from_probs,
    top_k_sampling_from_probs,
    min_p_sampling_from_probs,
    top_k_top_p_sampling_from_probs,
    top_k_top_p_sampling_from_logits,
    top_p_renorm_probs,
    top_k_renorm_probs,
    top_k_mask_logits,
    chain_speculative_sampling,
)

from flashinfer_cy.errors import PlanMismatchError, PlanNotReadyError, StreamCaptureError
from flashinfer_cy.kernels.attention import single_decode, single_prefill
from flashinfer_cy.kernels.batch_attention import (
    BatchDecodeWithPagedKVCache,
    BatchPrefillWithPagedKVCache,
    BatchPrefillWithRaggedKVCache,
    Plan,
    PreparedRun,
)
from flashinfer_cy.kernels.batch_mla import BatchMLAPagedAttention, MLAPlan
from flashinfer_cy.kernels.fused_moe import CutlassFusedMoE

__version__ = "0.1.0.dev0"

__all__ = [
    "FlashInferError", "KernelError", "KernelNotFoundError", "KernelVersionError",
    "RuntimeLibraryError", "SymbolNotFoundError", "UnsupportedDeviceError", "CudaError",
    "TensorDesc", "DeviceArray", "Binding", "load_module", "load_module_path",
    "runtime_info", "use_stream", "current_stream",
    "rmsnorm", "qk_rmsnorm", "gemma_rmsnorm", "fused_add_rmsnorm", "gemma_fused_add_rmsnorm",
    "append_paged_kv_cache", "append_paged_mla_kv_cache", "get_batch_indices_positions",
    "get_seq_lens", "gdn_prefill",
    "apply_rope", "apply_rope_inplace", "apply_rope_pos_ids", "apply_rope_pos_ids_inplace",
    "apply_llama31_rope", "apply_llama31_rope_inplace", "apply_llama31_rope_pos_ids",
    "apply_llama31_rope_pos_ids_inplace", "apply_rope_with_cos_sin_cache",
    "apply_rope_with_cos_sin_cache_inplace",
    "silu_and_mul", "gelu_and_mul", "gelu_tanh_and_mul", "prepare", "PreparedCall",
    "merge_state", "merge_state_in_place", "merge_states",
    "top_k", "topk", "top_k_page_table_transform", "top_k_ragged_transform",
    "can_implement_filtered_topk",
    "SamplingGenerator", "softmax", "sampling_from_probs", "sampling_from_logits",
    "top_p_sampling_from_probs", "top_k_sampling_from_probs", "min_p_sampling_from_probs",
    "top_k_top_p_sampling_from_probs", "top_k_top_p_sampling_from_logits",
    "top_p_renorm_probs", "top_k_renorm_probs", "top_k_mask_logits",
    "chain_speculative_sampling",
    "PlanMismatchError", "PlanNotReadyError", "StreamCaptureError", "single_decode", "single_prefill",
    "BatchDecodeWithPagedKVCache", "BatchPrefillWithPagedKVCache",
    "BatchPrefillWithRaggedKVCache", "Plan", "PreparedRun", "BatchMLAPagedAttention", "MLAPlan",
    "CutlassFusedMoE",
]
