"""``stream_scratch`` (flashinfer_cy/_core/array.pyx): the per-stream scratch buffers of the
sampling kernels (softmax workspace, top-k row states) and the single attention ops, on a
stand-in libcudart.so.13 (fake_cudart.c) that counts allocations and can report a stream as
capturing. Run in a child interpreter, where that libcudart is the one loaded."""

from __future__ import annotations

import os
import subprocess
import sys

from testmod_build import HERE, compile_c_library

CHILD = r"""
import ctypes
import threading
import pytest
from flashinfer_cy._core.array import stream_scratch
from flashinfer_cy.errors import StreamCaptureError

rt = ctypes.CDLL("libcudart.so.13")
def mallocs():
    counts = (ctypes.c_long * 8)()
    rt.fake_cudart_counts(counts)
    return counts[1]

n0 = mallocs()
a = stream_scratch("ws", 0, 0x10, 1000)
assert mallocs() == n0 + 1 and a.allocated_bytes == 1000
assert stream_scratch("ws", 0, 0x10, 800) is a and mallocs() == n0 + 1   # reused, in order
b = stream_scratch("ws", 0, 0x20, 800)                                    # another stream
assert b is not a and mallocs() == n0 + 2
c = stream_scratch("row states", 0, 0x10, 10)                             # another buffer
assert c is not a
g = stream_scratch("ws", 0, 0x10, 4000)                                   # grows
assert g is not a and g.allocated_bytes == 4000
pt = stream_scratch("ws", 0, 2, 100)           # cudaStreamPerThread: one per thread
assert stream_scratch("ws", 0, 2, 100) is pt
other = []
t = threading.Thread(target=lambda: other.append(stream_scratch("ws", 0, 2, 100)))
t.start(); t.join()
assert other[0] is not pt
z = stream_scratch("zeroed", 0, 0x10, 64, zero=True)
assert bytes(z.numpy()) == bytes(64)

rt.fake_cudart_set_capturing(ctypes.c_void_p(0x30))
with pytest.raises(StreamCaptureError, match=r"^ws: allocated on the first call on each "
                   r"stream; make one call on this stream before capturing, or pass it$"):
    stream_scratch("ws", 0, 0x30, 100, instead="pass it")
n1 = mallocs()
rt.fake_cudart_set_capturing(ctypes.c_void_p(0x10))
with pytest.raises(StreamCaptureError, match="before capturing$"):
    stream_scratch("ws", 0, 0x10, 8000)  # growing during a capture is allocating too
assert stream_scratch("ws", 0, 0x10, 4000) is g  # capturing, but nothing to allocate
assert mallocs() == n1
print("ok")
"""


def test_stream_scratch(tmp_path):
    lib = compile_c_library(HERE / "fake_cudart.c", tmp_path / "lib" / "libcudart.so.13").parent
    env = dict(os.environ, LD_LIBRARY_PATH=os.pathsep.join(
        filter(None, [str(lib), os.environ.get("LD_LIBRARY_PATH")])))
    res = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                         timeout=120, cwd=HERE, env=env)
    assert res.returncode == 0 and res.stdout.strip().endswith("ok"), \
        f"child failed:\n{res.stdout}\n{res.stderr}"
