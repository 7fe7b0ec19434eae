cimport cython
from libc.stdint cimport int8_t, int32_t, int64_t, uint32_t
from flashinfer_cy._abi.dlpack cimport kDLCUDA
from flashinfer_cy._abi.tvm_ffi cimport TVMFFIAny
from flashinfer_cy._core.runtime cimport Function, Object, ModuleObject
from flashinfer_cy._core.tensor cimport TensorSlot

cdef enum:
    MAX_ARGS = 32

# Argument kinds of a kernel signature (the letters used in Binding signatures).
# A tensor the kernel writes is marked with "!" ("T!", "T?!"): a read-only one is refused.
cdef enum ArgKind:
    K_TENSOR = 1       # "T"   TensorView on the call's device
    K_OPT_TENSOR = 2   # "T?"  Optional<TensorView> on the call's device, or None
    K_HOST_TENSOR = 3  # "H"   TensorView that must live in host memory (plan inputs)
    K_INT = 4          # "I"   int64_t
    K_FLOAT = 5        # "F"   double
    K_BOOL = 6         # "B"   bool
    K_DTYPE = 7        # "D"   DLDataType
    K_OBJECT = 8       # "A"   an object handle returned by an earlier call (plan info)
    K_OPT_OBJECT = 9   # "A?"  such an object, or None (Optional<Array<...>>)

# Everything one call needs, on the caller's C stack.
cdef struct CallFrame:
    TVMFFIAny args[MAX_ARGS]
    TensorSlot slots[MAX_ARGS]
    int n

cdef void frame_init(CallFrame* f, int n) noexcept
cdef void frame_release(CallFrame* f) noexcept
cdef void frame_init_masked(CallFrame* f, int n, uint32_t mask) noexcept
cdef void frame_release_masked(CallFrame* f, uint32_t mask) noexcept

cdef class Binding:
    cdef readonly str uri
    cdef readonly str symbol
    cdef readonly str signature
    cdef readonly tuple names
    cdef int n
    cdef int kinds[MAX_ARGS]
    cdef uint32_t written      # bit i: the kernel writes argument i ("T!", "T?!")
    cdef uint32_t per_launch   # bit i: a prepared launch may change scalar argument i
    cdef int device_arg
    cdef Function _fn
    cdef readonly dict layouts  # release -> its argument list as a layout (abi/layouts.py)
    cdef readonly str written_for  # the release whose C++ declaration ``signature`` is
    cdef readonly str release      # the loaded module's release (ABI file), set by function()
    cdef readonly dict aliases     # another name -> own argument name (prepared set/repoint)
    # A method line: the export whose returned module object serves this method (the
    # fused MoE module's "init"); None for an export. Called through invoke_on only.
    cdef readonly str method_of
    # The export allocates device memory through TVM-FFI's environment allocator: each call
    # installs flashinfer_cy's (runtime.call_maybe_env_alloc).
    cdef readonly bint env_alloc
    # The loaded module's argument list, when its release has a layout (set by function()):
    # argument j is the frame's lay_src[j], or lay_const[j] where lay_src[j] < 0.
    # lay_n == 0: the module takes the frame as it is.
    cdef int lay_n
    cdef int8_t lay_src[MAX_ARGS]
    cdef TVMFFIAny lay_const[MAX_ARGS]

    cdef Function function(self)
    cpdef int arg_index(self, str name) except -2
    cdef int _set_layout(self, tuple plan) except -1
    cdef int tensor(self, CallFrame* f, int i, object obj) except -1
    @cython.final
    cdef int tensor_as(self, CallFrame* f, int i, object obj, str name) except -1
    cdef int opt_tensor(self, CallFrame* f, int i, object obj) except -1
    @cython.final
    cdef int alias(self, CallFrame* f, int i, int src, str name) except -1
    cdef int pick_stream(self, CallFrame* f, object stream, void** handle) except -1
    cdef int stream_slot(self, CallFrame* f) noexcept
    cdef int invoke(self, CallFrame* f, object stream, TVMFFIAny* result) except -1
    cdef int invoke_on(self, Function method, CallFrame* f, object stream,
                       TVMFFIAny* result) except -1
    cdef int call_args(self, const TVMFFIAny* args, TVMFFIAny* result, int32_t dev_type,
                       int32_t dev_id, void* stream, bint set_stream) except -1


cdef inline const TVMFFIAny* layout_args(const TVMFFIAny* args, int lay_n,
                                         const int8_t* src, const TVMFFIAny* consts,
                                         TVMFFIAny* tmp) noexcept nogil:
    """A frame's arguments (in the Binding's order) as the loaded module's release takes
    them: ``args`` itself when ``lay_n`` is 0, else rearranged into ``tmp`` (16 bytes per
    argument; the tensors still point at the frame's slots)."""
    cdef int j
    if lay_n == 0:
        return args
    for j in range(lay_n):
        tmp[j] = args[src[j]] if src[j] >= 0 else consts[j]
    return tmp

cdef inline void set_int(CallFrame* f, int i, int64_t v) noexcept:
    f.args[i].type_index = 1  # kTVMFFIInt
    f.args[i].v_int64 = v

cdef inline void set_bool(CallFrame* f, int i, bint v) noexcept:
    f.args[i].type_index = 2  # kTVMFFIBool
    f.args[i].v_int64 = 1 if v else 0

cdef inline void set_float(CallFrame* f, int i, double v) noexcept:
    f.args[i].type_index = 3  # kTVMFFIFloat
    f.args[i].v_float64 = v

cdef inline void set_none(CallFrame* f, int i) noexcept:
    f.args[i].type_index = 0  # kTVMFFINone
    f.args[i].v_int64 = 0

cdef int set_object(CallFrame* f, int i, Object obj) except -1
cdef int pack_object(CallFrame* f, int i, Object obj) except -1
cdef object work_stream(Binding b, CallFrame* f, object stream, int device)


cdef inline int producer_stream(TensorSlot* s, void** handle) except -1:
    """The stream ``s``'s producer names (its current stream, or CAI v3's "stream");
    returns 1, or -1 with the producer's Python exception set. Inline: run()'s steady state
    asks it on every call (checked_frame.pxd)."""
    if s.api != NULL:
        if s.api.current_work_stream(kDLCUDA, s.dl.device.device_id, handle) != 0:
            return -1
        return 1
    handle[0] = s.producer_stream
    return 1


# Capture instead of call (flashinfer_cy.prepare): while a Recorder is active on the calling
# thread, Binding.invoke hands it the checked, packed frame instead of calling the kernel,
# and every tensor object packed is passed to keep() so that its storage outlives the call.
cdef class Recorder:
    cdef int record(self, Binding b, Function fn, CallFrame* f, int32_t dev_type,
                    int32_t dev_id, void* stream, bint set_stream) except -1
    cdef int keep(self, object obj) except -1

cdef int start_recording(Recorder r) except -1
cdef bint recording() noexcept  # a recorder is active on this thread
cdef void stop_recording() noexcept
