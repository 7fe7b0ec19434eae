"""Probe for the intermittent hang of the 4-stream gdn_prefill state chain (sm_90 only).

Two questions, answered on the GPU with CuPy (no torch):

1. ``smid``: which ``%smid`` values do CTAs of a large grid see, and what is ``%nsmid``,
   next to the SM count? The gdn kernel writes one 128-byte TMA descriptor per CTA at
   ``workspace + 128 * %smid``, and FlashInfer sizes that workspace ``128 * sm_count``.
2. ``chain MODE N``: the Qwen3-Next 4-thread, 4-stream, 10-step chain, N times. Each
   workspace is the first ``ws_bytes`` of a larger buffer whose tail is a known canary, so
   a descriptor written past the workspace is seen directly. MODE ``tight`` uses
   ``128 * sm_count`` bytes, ``padded`` uses 64 KiB; ``+lock`` serialises the host calls
   (the GPU work still overlaps), ``+warm`` first runs both kernel variants once, serially,
   with their own workspace, so the concurrent chains are not the process's first launches.
   A chain that does not finish in 20 s
   is reported and the process leaves with ``os._exit`` (tearing down a context with a hung
   kernel blocks).

3. ``peer N``: the same 4-thread chain through flashinfer-python 0.6.3 itself
   (``chunk_gated_delta_rule`` on torch streams, its one cached workspace), to tell a kernel
   problem from a binding one. Needs torch and flashinfer importable (tools/gpu_session.sh
   puts its jit-cache shim on PYTHONPATH as /tmp/fjc). ``peer+warm``: each thread binds the
   device's context first, and both kernel variants run once, serially, before the threads.

    python3 tools/probe_gdn_streams.py smid
    python3 tools/probe_gdn_streams.py chain tight 30
    PYTHONPATH=$PWD:/tmp/fjc python3 tools/probe_gdn_streams.py peer 1
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time

import cupy as cp
import numpy as np

import flashinfer_cy as fc

SMID_SRC = r"""
extern "C" __global__ void smid_probe(unsigned* max_smid, unsigned* nsmid, unsigned* seen) {
    unsigned s, n;
    asm volatile("mov.u32 %0, %%smid;" : "=r"(s));
    asm volatile("mov.u32 %0, %%nsmid;" : "=r"(n));
    if (threadIdx.x == 0) { atomicMax(max_smid, s); atomicMax(nsmid, n); atomicAdd(&seen[s & 1023], 1u); }
}
"""

CANARY = 0xA5
D = 128
SEQS = [61, 128, 251, 511]
HQ, HK, HV = 16, 16, 32


def smid() -> None:
    sm_count = cp.cuda.Device().attributes["MultiProcessorCount"]
    kern = cp.RawKernel(SMID_SRC, "smid_probe")
    mx, ns = cp.zeros(1, cp.uint32), cp.zeros(1, cp.uint32)
    seen = cp.zeros(1024, cp.uint32)
    for _ in range(20):
        kern((20000,), (128,), (mx, ns, seen))
    cp.cuda.Device().synchronize()
    ids = np.nonzero(cp.asnumpy(seen))[0]
    print(f"sm_count {sm_count}  %nsmid {int(ns[0])}  max %smid {int(mx[0])}  "
          f"distinct smids {ids.size}  smids >= sm_count: {ids[ids >= sm_count].tolist()}")


def pattern(shape, seed, dtype):
    i = np.arange(int(np.prod(shape)))
    return cp.asarray(((((i + seed) % 61) - 30) / 64.0).reshape(shape).astype(dtype))


def chain(mode: str, iterations: int) -> None:
    sm_count = cp.cuda.Device().attributes["MultiProcessorCount"]
    ws_bytes = 128 * sm_count if mode.startswith("tight") else 64 << 10
    lock = threading.Lock() if "+lock" in mode else contextlib.nullcontext()
    n, h, s = sum(SEQS), max(HQ, HV), len(SEQS)
    q, k, v = (desc(pattern((n, hh, D), seed, np.float16))
               for seed, hh in ((0, HQ), (1, HK), (2, HV)))
    cu = desc(cp.asarray(np.concatenate([[0], np.cumsum(SEQS)]).astype(np.int64)))
    gate = np.linspace(0.01, 1, n * h, dtype=np.float32).reshape(n, h)
    alpha, beta = desc(cp.asarray(gate)), desc(cp.asarray(gate[::-1].copy()))
    jobs = []
    for _ in range(4):
        buf = cp.full(ws_bytes + (64 << 10), CANARY, dtype=cp.uint8)
        states = [desc(cp.full((s, h, D, D), np.nan, np.float32)) for _ in range(2)]
        out = desc(cp.full((n, h, D), np.nan, np.float16))
        err, stream = _rt().cudaStreamCreate()
        jobs.append((buf, states, out, int(stream)))
    cp.cuda.Device().synchronize()

    def run_chain(buf, states, out, stream, steps=10):
        for step in range(steps):
            with lock:
                fc.gdn_prefill(q, k, v, cu,
                               initial_state=None if step == 0 else states[(step - 1) % 2],
                               alpha=alpha, beta=beta, output=out, output_state=states[step % 2],
                               workspace=desc(buf, ws_bytes), stream=stream)

    if "+warm" in mode:  # both variants (no initial state, then with one), own buffers
        buf = cp.full(ws_bytes, CANARY, dtype=cp.uint8)
        states = [desc(cp.full((s, h, D, D), np.nan, np.float32)) for _ in range(2)]
        run_chain(buf, states, desc(cp.full((n, h, D), np.nan, np.float16)), 0, steps=2)
        cp.cuda.Device().synchronize()

    for it in range(iterations):
        t0 = run_threads(run_chain, jobs, f"{mode} iteration {it}", 20)
        events = []
        for *_, stream in jobs:
            err, ev = _rt().cudaEventCreate()
            _rt().cudaEventRecord(ev, stream)
            events.append(ev)
        wait_gpu(lambda: [i for i, ev in enumerate(events) if _rt().cudaEventQuery(ev)[0]
                          == _rt().cudaError_t.cudaErrorNotReady],
                 t0, f"{mode} iteration {it}", 20)
        tails = [int((j[0][ws_bytes:] != CANARY).sum()) for j in jobs]
        finals = [cp.asnumpy(j[1][1].owner).view(np.uint32) for j in jobs]
        agree = all(np.array_equal(f, finals[0]) for f in finals[1:])
        print(f"{mode} iteration {it}: {time.monotonic() - t0:.3f} s, canary bytes changed past "
              f"the workspace per stream {tails}, final states agree: {agree}", flush=True)


def peer(iterations: int, warm: bool = False) -> None:
    import torch
    from flashinfer.gdn_prefill import chunk_gated_delta_rule

    n, h, s = sum(SEQS), max(HQ, HV), len(SEQS)
    q, k, v = (torch.as_tensor(cp.asnumpy(pattern((n, hh, D), seed, np.float16))).cuda()
               for seed, hh in ((0, HQ), (1, HK), (2, HV)))
    cu = torch.tensor(np.concatenate([[0], np.cumsum(SEQS)]), dtype=torch.int64).cuda()
    gate = torch.linspace(0.01, 1, n * h, dtype=torch.float32).reshape(n, h).cuda()
    beta = gate.flip(0).contiguous()
    jobs = [([torch.full((s, h, D, D), float("nan"), device="cuda") for _ in range(2)],
             torch.full((n, h, D), float("nan"), dtype=torch.float16, device="cuda"),
             torch.cuda.Stream()) for _ in range(4)]
    torch.cuda.synchronize()

    def run_chain(states, out, stream, steps=10):
        if warm:
            torch.zeros(1, device="cuda")  # binds this thread to the device's context
        with torch.cuda.stream(stream):
            for step in range(steps):
                chunk_gated_delta_rule(
                    q, k, v, g=gate, beta=beta, scale=0.0, cu_seqlens=cu,
                    initial_state=None if step == 0 else states[(step - 1) % 2],
                    output_final_state=True, output=out, output_state=states[step % 2])

    if warm:  # both kernel variants once, serially, before any thread runs
        spare = ([torch.empty_like(jobs[0][0][0]) for _ in range(2)], torch.empty_like(jobs[0][1]))
        run_chain(*spare, torch.cuda.current_stream(), steps=2)
        torch.cuda.synchronize()
    for it in range(iterations):
        t0 = run_threads(run_chain, jobs, f"peer iteration {it}", 60)  # 1st call loads it
        events = [torch.cuda.Event() for _ in jobs]
        for ev, j in zip(events, jobs):
            ev.record(j[2])
        wait_gpu(lambda: [i for i, ev in enumerate(events) if not ev.query()], t0,
                 f"peer iteration {it}", 30)
        finals = [j[0][1].cpu().numpy().view(np.uint32) for j in jobs]
        agree = all(np.array_equal(f, finals[0]) for f in finals[1:])
        print(f"peer iteration {it}: {time.monotonic() - t0:.3f} s, final states agree: "
              f"{agree}", flush=True)


def run_threads(target, jobs, what: str, limit: float) -> float:
    """One thread per job; leaves the process (rc 3) if one is still launching after
    ``limit`` s. Returns the start time."""
    threads = [threading.Thread(target=target, args=j, daemon=True) for j in jobs]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(limit)
        if t.is_alive():
            print(f"{what}: HOST HANG (a launch thread is blocked)", flush=True)
            os._exit(3)
    return t0


def wait_gpu(busy_streams, t0: float, what: str, limit: float) -> None:
    """Poll ``busy_streams()`` (indices still running) until empty; after ``limit`` s the
    GPU is hung: report and leave (rc 4; tearing the context down would block)."""
    while busy := busy_streams():
        if time.monotonic() - t0 > limit:
            print(f"{what}: GPU HANG, streams {busy} still busy after {limit} s", flush=True)
            os._exit(4)
        time.sleep(0.001)


def desc(a, nbytes=None):
    """A TensorDesc view of a CuPy array: passing CuPy arrays through ``__dlpack__`` would
    add CuPy's own stream handshake (legacy default stream) and serialise the streams."""
    shape = a.shape if nbytes is None else (nbytes,)
    return fc.TensorDesc(a.data.ptr, shape, a.dtype.name, owner=a)


def _rt():
    from cuda.bindings import runtime
    return runtime


if __name__ == "__main__":
    if sys.argv[1] == "smid":
        smid()
    elif sys.argv[1] in ("peer", "peer+warm"):
        peer(int(sys.argv[2]), warm=sys.argv[1] == "peer+warm")
    else:
        chain(sys.argv[2], int(sys.argv[3]))
    sys.stdout.flush()
    os._exit(0)
