# Inputs on which FlashInfer's batched MLA (planner and FA2/FA3 kernels, 0.6.3 and 0.7.4)
# gives a silently wrong answer, as host-side rules (mla_limits.pyx); batch_mla.pyx applies
# them in plan() and run() before anything reaches the planner or a kernel.
from libc.stdint cimport int64_t
from flashinfer_cy._core.tensor cimport TensorSlot
from flashinfer_cy.kernels.batch_plan cimport HostI32

cdef enum:
    N_KV_TILES = 3     # the KV tiles the kernels use: 16, 32, 64 keys

cdef struct CausalDrop:
    int64_t request    # < 0: none
    int64_t qo_len
    int64_t kv_len
    int64_t row        # the query row whose last visible key is left out
    int64_t key

cdef int cluster_size(HostI32* qo, int64_t heads) except -1
cdef int causal_tile_drops(HostI32* qo, HostI32* kl, int64_t heads, int64_t tile_q,
                           CausalDrop* drops) except -1
cdef int kv_tile(str backend, int device) except -1
cdef int refuse_causal_drop(CausalDrop* drops, int64_t heads, int64_t tile_q, str backend,
                            int device) except -1
cdef int check_split_arithmetic(HostI32* qo, HostI32* kl, int64_t heads, bint causal,
                                int64_t cluster, int64_t sms) except -1
cdef int check_packed_positions(HostI32* qo, HostI32* kv, HostI32* kl,
                                int64_t page_size) except -1
cdef int check_row_offsets(TensorSlot* s, str name) except -1
cdef int check_page_offsets(TensorSlot* s, str name, int64_t page_size, int64_t last_page,
                            bint offset32, bint fa3) except -1
