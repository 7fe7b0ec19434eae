"""The CUDA runtime calls a decode-step call makes on its own, per call, once its stream's
scratch exists: exactly the expected ones, counted by the stand-in libcudart
(fake_cudart.c, fake_cudart_calls) around repeated calls against no-op exports
(tools/c_floor/noop_exports.cc). On a GPU any runtime call costs host time the stand-in
does not show (an allocation, a capture query, a pointer-attribute query, an event), so a
new one on the steady-state path must show up here, not as an unexplained benchmark gap.

Expected, per call: one cudaGetDevice per kernel launch (fcy_call's device guard); a
composed sampler with intermediates adds one capture query (cudaStreamIsCapturing, with
the cudaGetDevice of its device guard), asked once per call, not per intermediate; sampled
ids allocated by the call add one cudaMallocAsync and, when the result is dropped, one
cudaFreeAsync (each with a cudaGetDevice). A prepared launch: one cudaGetDevice per launch
and nothing else."""

from __future__ import annotations

from testmod_build import run_on_noop_exports

CHILD = r"""
import ctypes, sys
import flashinfer_cy as fc

so = sys.argv[1]
for uri in ("cascade", "sampling", "rope", "silu_and_mul", "norm"):
    fc.load_module_path(so, uri=uri, flashinfer_version="0.6.3")
rt = ctypes.CDLL("libcudart.so.13")
rt.fake_cudart_calls.restype = ctypes.c_char_p

def calls():
    out, n, i = {}, ctypes.c_long(), 0
    while (name := rt.fake_cudart_calls(i, ctypes.byref(n))) is not None:
        out[name.decode()] = n.value
        i += 1
    assert "cudaStreamIsCapturing" in out and "cudaMallocAsync" in out, out
    return out

base, mb, N = 0x7F0000000000, 1 << 20, 7
def T(shape, dtype="float16", i=0):
    return fc.TensorDesc(base + i * mb, shape, dtype, device_type="cuda")

x, ids = T((2, 1000), "float32", 1), T((2,), "int32", 2)
q, k, pos = T((1, 32, 128), i=3), T((1, 8, 128), i=4), T((1,), "int32", 5)
g, act = T((1, 256), i=6), T((1, 128), i=7)
h, w, hn = T((1, 256), i=8), T((256,), i=9), T((1, 256), i=10)
va, vb, vo = T((1, 32, 128), i=11), T((1, 32, 128), i=12), T((1, 32, 128), i=13)
sa, sb, so_ = (T((1, 32), "float32", 14), T((1, 32), "float32", 15),
               T((1, 32), "float32", 16))

GET, CAPTURE, MALLOC, FREE = ("cudaGetDevice", "cudaStreamIsCapturing", "cudaMallocAsync",
                              "cudaFreeAsync")
# name -> (fn, args, kwargs, kernel launches, intermediates taken from the stream)
cases = {
    "rmsnorm": (fc.rmsnorm, (h, w), dict(out=hn, enable_pdl=False), 1, 0),
    "rope": (fc.apply_rope_pos_ids_inplace, (q, k, pos), {}, 1, 0),
    "silu_and_mul": (fc.silu_and_mul, (g,), dict(out=act, enable_pdl=False), 1, 0),
    "merge_state": (fc.merge_state, (va, sa, vb, sb), dict(v_merged=vo, s_merged=so_), 1, 0),
    "sampling_from_probs": (fc.sampling_from_probs, (x,), dict(seed=0, offset=0, out=ids),
                            1, 0),
}
L, P = fc.top_k_top_p_sampling_from_logits, fc.top_k_top_p_sampling_from_probs
for fn, order, launches, intermediates in ((L, "top_k_first", 3, 2), (L, "joint", 2, 1),
                                           (P, "top_k_first", 2, 1), (P, "joint", 1, 0)):
    for out in ({"out": ids}, {}):
        cases[f"{fn.__name__} {order}{' out=' if out else ''}"] = (
            fn, (x, 5, 0.9), dict(filter_apply_order=order, seed=0, offset=0, stream=0x10,
                                  **out), launches, intermediates)

def per_call(call):
    call(); call()  # the stream's scratch and intermediates exist from here on
    before = calls()
    for _ in range(N):
        call()
    after = calls()
    return {k: (after[k] - before[k]) / N for k in after if after[k] != before[k]}

bad = []
for name, (fn, args, kwargs, launches, intermediates) in cases.items():
    want = {GET: launches}
    if intermediates:  # one capture query per call, with its device guard
        want.update({GET: want[GET] + 1, CAPTURE: 1})
    if "out" not in kwargs and "stream" in kwargs:  # the sampled ids: allocated, dropped
        want.update({GET: want[GET] + 2, MALLOC: 1, FREE: 1})
    got = per_call(lambda: fn(*args, **kwargs))
    if got != want:
        bad.append(f"{name}: {got}, expected {want}")
    got = per_call(fc.prepare(fn, *args, **kwargs).launch)
    if got != {GET: launches}:
        bad.append(f"{name}, prepared: {got}, expected {({GET: launches})}")
print("\n".join(bad) or "ok")
"""


def test_steady_state_calls_make_only_the_expected_runtime_calls(tmp_path):
    run_on_noop_exports(tmp_path, CHILD)
