from flashinfer_cy._core.tensor cimport TensorSlot

# An ffi::Array of Tensor objects describing slots[0..n) (filled by to_dltensor from
# owners[i]; each slot's capsule reference is taken over).
cdef object array_from_slots(TensorSlot* slots, tuple owners, int n)
