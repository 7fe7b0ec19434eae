"""The composed samplers' intermediates (top_k_top_p_sampling_from_logits / _probs: masked
logits, probabilities): eager calls reuse the stream's cached scratch instead of allocating
two buffers per call; prepare() and a capturing stream get allocations of their own (the
prepared launch or the graph owns them); cudaStreamPerThread's are kept per thread. Run in
a child interpreter on the stand-in libcudart (fake_cudart.c, counting cudaMallocAsync) with
no-op sampling exports (tools/c_floor/noop_exports.cc)."""

from __future__ import annotations

from testmod_build import run_on_noop_exports

CHILD = r"""
import ctypes, sys, threading
import flashinfer_cy as fc

fc.load_module_path(sys.argv[1], uri="sampling", flashinfer_version="0.6.3")
rt = ctypes.CDLL("libcudart.so.13")
def mallocs():
    counts = (ctypes.c_long * 8)()
    rt.fake_cudart_counts(counts)
    return counts[1]

base = 0x7F0000000000  # never dereferenced: the exports do nothing
x = fc.TensorDesc(base, (2, 1000), "float32", device_type="cuda")
ids = fc.TensorDesc(base + (1 << 20), (2,), "int32", device_type="cuda")
threads, finish = [], threading.Event()
for fn in (fc.top_k_top_p_sampling_from_logits, fc.top_k_top_p_sampling_from_probs):
    for order in ("top_k_first", "joint"):
        def call(stream=0x10):
            fn(x, 5, 0.9, filter_apply_order=order, seed=0, offset=0, out=ids,
               stream=stream)
        call()  # first call on the stream: its scratch buffers are allocated
        n = mallocs()
        call(); call()
        assert mallocs() == n, (fn, order, "eager calls allocate", mallocs() - n)
        stages = 2 if fn is fc.top_k_top_p_sampling_from_logits and order == "top_k_first" \
            else 0 if fn is fc.top_k_top_p_sampling_from_probs and order == "joint" else 1
        p = fc.prepare(fn, x, 5, 0.9, filter_apply_order=order, seed=0, offset=0, out=ids,
                       stream=0x10)
        assert mallocs() == n + stages, (fn, order, "prepare() owns its intermediates")
        p.launch(); call()
        assert mallocs() == n + stages
        rt.fake_cudart_set_capturing(ctypes.c_void_p(0x10))
        call()
        assert mallocs() == n + 2 * stages, (fn, order, "a captured call owns them")
        rt.fake_cudart_set_capturing(None)
        call(2)  # cudaStreamPerThread: another stream in every thread
        n = mallocs()
        call(2)
        assert mallocs() == n
        # the thread stays alive until the end: a later thread must not reuse its ident
        ran = threading.Event()
        threads.append(threading.Thread(target=lambda: (call(2), ran.set(), finish.wait())))
        threads[-1].start()
        assert ran.wait(60), (fn, order, "the thread's call failed")
        # the thread's own intermediates, and its own softmax workspace / top-k row states
        scratch = {(True, "top_k_first"): 2, (True, "joint"): 1, (False, "top_k_first"): 1,
                   (False, "joint"): 0}[fn is fc.top_k_top_p_sampling_from_logits, order]
        assert mallocs() == n + stages + scratch, (fn, order, "per-thread stream, per thread")
        call(2)
        assert mallocs() == n + stages + scratch
finish.set()
for t in threads:
    t.join()
print("ok")
"""


def test_composed_sampler_intermediates(tmp_path):
    run_on_noop_exports(tmp_path, CHILD)
