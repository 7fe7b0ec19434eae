/* A CPU stand-in for the libcudart.so.13 calls flashinfer_cy makes itself (_core/pinned.pyx,
 * _core/runtime.pyx): "device" memory is host memory, copies are memcpy, events are always
 * complete, no stream is capturing (unless fake_cudart_set_capturing names one), and device 0
 * is an sm_90 part with 132 SMs.
 *
 * Built as libcudart.so.13 by the CPU tests and put first on LD_LIBRARY_PATH of a driver
 * subprocess, so the batch-attention plan/run path (pinned staging ring, events, stream
 * ordering, DeviceArray workspaces) runs end to end without a GPU. Counters let a test see
 * how often each call was made: fake_cudart_counts (a few kinds, grouped), and every entry
 * point by name (fake_cudart_calls), which a test reads around a steady-state call to catch
 * a runtime call per call that this stand-in makes free and a GPU does not. */
#define _POSIX_C_SOURCE 200809L  /* posix_memalign under -std=c11 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { OK = 0, ERR_INVALID_VALUE = 1, ERR_INVALID_DEVICE = 101 };
enum { ATTR_SM_COUNT = 16, ATTR_CC_MAJOR = 75, ATTR_CC_MINOR = 76, ATTR_SMEM_PER_SM = 81,
       ATTR_SMEM_OPTIN = 97 };

static _Thread_local int current_device = 0;

/* calls made, by kind: see fake_cudart_counts() */
enum { N_HOST_ALLOC, N_MALLOC, N_MEMCPY, N_EVENT_RECORD, N_EVENT_QUERY, N_EVENT_SYNC,
       N_STREAM_WAIT, N_STREAM_SYNC, N_COUNTS };
static long counts[N_COUNTS];

/* every entry point's calls, by name: see fake_cudart_calls() */
#define ENTRY_POINTS(X) X(cudaGetDevice) X(cudaSetDevice) X(cudaDeviceGetAttribute) \
  X(cudaHostAlloc) X(cudaFreeHost) X(cudaMallocAsync) X(cudaFreeAsync) X(cudaMalloc) \
  X(cudaDeviceSynchronize) X(cudaMemcpyAsync) X(cudaMemsetAsync) \
  X(cudaEventCreateWithFlags) X(cudaEventDestroy) X(cudaEventRecord) X(cudaEventQuery) \
  X(cudaEventSynchronize) X(cudaStreamWaitEvent) X(cudaStreamIsCapturing) \
  X(cudaStreamSynchronize) X(cudaGetErrorString)
#define AS_ENUM(name) C_##name,
#define AS_NAME(name) #name,
enum { ENTRY_POINTS(AS_ENUM) N_CALLS };
static const char* const call_names[N_CALLS] = { ENTRY_POINTS(AS_NAME) };
static long calls[N_CALLS];
#define CALLED(name) (calls[C_##name]++)

static void* aligned(size_t n) {
  void* p = NULL;
  return posix_memalign(&p, 256, n ? n : 1) == 0 ? p : NULL;
}

int cudaGetDevice(int* device) { CALLED(cudaGetDevice); *device = current_device; return OK; }

int cudaSetDevice(int device) {
  CALLED(cudaSetDevice);
  if (device != 0) return ERR_INVALID_DEVICE;
  current_device = device;
  return OK;
}

/* Shared memory per SM: H100's 228 KiB, or FAKE_CUDART_SMEM_PER_SM (another part's: the
 * MLA FA2 kernel picks its KV tile by it). */
static int smem_per_sm(void) {
  const char* s = getenv("FAKE_CUDART_SMEM_PER_SM");
  return s && *s ? atoi(s) : 233472;
}

int cudaDeviceGetAttribute(int* value, int attr, int device) {
  CALLED(cudaDeviceGetAttribute);
  if (device != 0) return ERR_INVALID_DEVICE;
  *value = attr == ATTR_SM_COUNT ? 132 : attr == ATTR_CC_MAJOR ? 9 : attr == ATTR_CC_MINOR ? 0
         : attr == ATTR_SMEM_OPTIN ? 232448  /* H100's 227 KiB */
         : attr == ATTR_SMEM_PER_SM ? smem_per_sm() : 1;
  return OK;
}

int cudaHostAlloc(void** ptr, size_t size, unsigned int flags) {
  CALLED(cudaHostAlloc);
  (void)flags;
  counts[N_HOST_ALLOC]++;
  *ptr = aligned(size);
  return *ptr ? OK : 2; /* cudaErrorMemoryAllocation */
}

int cudaFreeHost(void* ptr) { CALLED(cudaFreeHost); free(ptr); return OK; }

static void* last_malloc_stream = NULL;
static void* last_free_stream = NULL;
static long async_frees = 0;
static size_t fail_malloc_over = (size_t)-1; /* fake_cudart_fail_malloc_over */

int cudaMallocAsync(void** ptr, size_t size, void* stream) {
  CALLED(cudaMallocAsync);
  last_malloc_stream = stream;
  counts[N_MALLOC]++;
  if (size > fail_malloc_over) return 2; /* cudaErrorMemoryAllocation */
  *ptr = aligned(size);
  return *ptr ? OK : 2;
}

int cudaFreeAsync(void* ptr, void* stream) {
  CALLED(cudaFreeAsync);
  last_free_stream = stream;
  async_frees++;
  free(ptr);
  return OK;
}

/* cudaFreeAsync calls so far, and (through last_stream) the stream of the last one. */
long fake_cudart_async_frees(void** last_stream) {
  if (last_stream) *last_stream = last_free_stream;
  return async_frees;
}

/* Make cudaMallocAsync of more than `size` bytes fail (SIZE_MAX: never). */
void fake_cudart_fail_malloc_over(size_t size) { fail_malloc_over = size; }
/* What the C floors (tools/c_floor/) call besides the above. */
int cudaMalloc(void** ptr, size_t size) {
  CALLED(cudaMalloc);
  *ptr = aligned(size);
  return *ptr ? OK : 2;
}
int cudaDeviceSynchronize(void) {
  CALLED(cudaDeviceSynchronize);
  counts[N_STREAM_SYNC]++;
  return OK;
}

int cudaMemcpyAsync(void* dst, const void* src, size_t n, int kind, void* stream) {
  CALLED(cudaMemcpyAsync);
  (void)kind; (void)stream;
  counts[N_MEMCPY]++;
  memmove(dst, src, n);
  return OK;
}

int cudaMemsetAsync(void* dst, int value, size_t n, void* stream) {
  CALLED(cudaMemsetAsync);
  (void)stream;
  memset(dst, value, n);
  return OK;
}

int cudaEventCreateWithFlags(void** event, unsigned int flags) {
  CALLED(cudaEventCreateWithFlags);
  (void)flags;
  *event = malloc(1);
  return *event ? OK : 2;
}

int cudaEventDestroy(void* event) { CALLED(cudaEventDestroy); free(event); return OK; }
int cudaEventRecord(void* event, void* stream) {
  CALLED(cudaEventRecord);
  (void)event;
  (void)stream;
  counts[N_EVENT_RECORD]++;
  return OK;
}
int cudaEventQuery(void* event) {
  CALLED(cudaEventQuery);
  (void)event;
  counts[N_EVENT_QUERY]++;
  return OK;
}
int cudaEventSynchronize(void* event) {
  CALLED(cudaEventSynchronize);
  (void)event;
  counts[N_EVENT_SYNC]++;
  return OK;
}

int cudaStreamWaitEvent(void* stream, void* event, unsigned int flags) {
  CALLED(cudaStreamWaitEvent);
  (void)stream; (void)event; (void)flags;
  counts[N_STREAM_WAIT]++;
  return OK;
}

static void* capturing_stream = NULL; /* fake_cudart_set_capturing: "is capturing" */
int cudaStreamIsCapturing(void* stream, int* status) {
  CALLED(cudaStreamIsCapturing);
  *status = capturing_stream != NULL && stream == capturing_stream;
  return OK;
}
void fake_cudart_set_capturing(void* stream) { capturing_stream = stream; }
int cudaStreamSynchronize(void* stream) {
  CALLED(cudaStreamSynchronize);
  (void)stream;
  counts[N_STREAM_SYNC]++;
  return OK;
}

const char* cudaGetErrorString(int err) {
  CALLED(cudaGetErrorString);
  return err == OK ? "no error" : "fake cudart error";
}

/* host_alloc, malloc, memcpy, event_record, event_query, event_sync, stream_wait, stream_sync */
void fake_cudart_counts(long* out) { memcpy(out, counts, sizeof(counts)); }

/* The stream the last cudaMallocAsync was ordered on (which stream an output went to). */
void* fake_cudart_last_malloc_stream(void) { return last_malloc_stream; }

/* The name of entry point ``i`` (NULL past the last) and, in ``*count``, its calls so far. */
const char* fake_cudart_calls(int i, long* count) {
  if (i < 0 || i >= N_CALLS) return NULL;
  *count = calls[i];
  return call_names[i];
}
