from libc.stdint cimport int64_t, uint32_t
from flashinfer_cy._core.binding cimport Binding, CallFrame
from flashinfer_cy._core.tensor cimport TensorSlot, own_shape

# Helpers shared by the single-request ops (attention.pyx) and the plan/run wrappers
# (batch_attention.pyx).
cdef Binding load_binding(object variant, str symbol)
cdef int pack_extras(Binding b, CallFrame* f, int start, str backend, double logits_soft_cap,
                     double sm_scale, double rope_rcp_scale, double rope_rcp_theta) except -1
cdef int check_qkv_tensor(TensorSlot* s, str name, uint32_t dtype) except -1
cdef int check_vec_aligned(TensorSlot* s, str name) except -1
cdef int check_out(TensorSlot* s, str name, TensorSlot* ref, str ref_name, int ndim,
                   int64_t* shape) except -1
cdef int check_lse(TensorSlot* s, int64_t rows, int64_t heads, TensorSlot* ref) except -1
cdef int split_kv_pair(CallFrame* f, int ik, int iv, object kv_cache, Binding b) except -1
cdef int run_stream(Binding b, CallFrame* f, object stream, void** out) except -1
cdef bint pdl_default(int device) except -1
cdef int pdl_flag(object enable_pdl) except -2
cdef uint32_t dtype_key_of(str dtype) noexcept
cdef object _A()  # flashinfer_cy.kernels.attention_args, imported on first use (numpy)


cdef inline void hnd_as_nhd(CallFrame* f, int i) noexcept:
    """View a 3-D HND k/v ([heads, rows, dim]) as NHD ([rows, heads, dim]) by swapping the
    first two shape/stride entries (the caller then passes layout NHD). FA3's single and
    ragged runs read the KV row count and num_kv_heads from dims 0 and 1 whatever the
    layout code, so only an NHD-shaped view is read right."""
    cdef TensorSlot* s = &f.slots[i]
    cdef int64_t t
    if s.dl.shape != s.shape:
        own_shape(s)
    t = s.shape[0]; s.shape[0] = s.shape[1]; s.shape[1] = t
    t = s.strides[0]; s.strides[0] = s.strides[1]; s.strides[1] = t
