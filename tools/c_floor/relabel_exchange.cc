// A DLPack exchange table that forwards to a producer's own (torch's, on a CPU-only torch
// build) and then says every tensor it describes is on CUDA device 0, for
// tools/noop_ops.py's torch rows: flashinfer_cy's general API refuses host tensors, and on a
// machine without a GPU torch has no CUDA tensors, so the measured calls describe real torch
// tensors through torch's real describe function (its cost is part of what is measured) and
// pass the device checks. The current stream is the legacy default stream (NULL), without
// asking the producer: a CPU-only torch has no CUDA streams to ask about. Never dereferenced
// on the CUDA side: the no-op exports do nothing with the data pointers.
#include <dlpack/dlpack.h>

namespace {

const DLPackExchangeAPI* producer = nullptr;
DLPackExchangeAPI relabelled;

int describe_on_cuda(void* py_object, DLTensor* out) {
  int rc = producer->dltensor_from_py_object_no_sync(py_object, out);
  if (rc == 0) {
    out->device.device_type = kDLCUDA;
    out->device.device_id = 0;
  }
  return rc;
}

int legacy_default_stream(DLDeviceType, int32_t, void** out_current_stream) {
  *out_current_stream = nullptr;
  return 0;
}

}  // namespace

// The relabelling table for ``api`` (a producer's DLPackExchangeAPI): one per process.
extern "C" const DLPackExchangeAPI* fcy_relabelled_exchange_api(const DLPackExchangeAPI* api) {
  producer = api;
  relabelled = *api;
  relabelled.header.prev_api = nullptr;
  relabelled.dltensor_from_py_object_no_sync = describe_on_cuda;
  relabelled.current_work_stream = legacy_default_stream;
  return &relabelled;
}
