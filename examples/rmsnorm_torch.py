"""RMSNorm on PyTorch tensors: out-of-place, in place with a residual, per-head (3-D) on a
strided view, and on a side stream. Needs a CUDA GPU, torch and the ``norm`` kernel module
(``flashinfer-cy doctor`` says where it comes from).

    python examples/rmsnorm_torch.py
"""

from __future__ import annotations

import torch

import flashinfer_cy as fc
from _reference import check, rmsnorm_ref


def main() -> None:
    if not torch.cuda.is_available():
        raise SystemExit("this example needs a CUDA GPU")
    torch.manual_seed(0)
    dev = "cuda"
    tokens, hidden = 64, 4096

    # 1. out= given: the kernel writes into it, on torch.cuda.current_stream().
    x = torch.randn(tokens, hidden, device=dev, dtype=torch.bfloat16)
    w = torch.randn(hidden, device=dev, dtype=torch.bfloat16)
    out = torch.empty_like(x)
    fc.rmsnorm(x, w, 1e-6, out=out)
    check("rmsnorm bf16 (out=)", out.float().cpu(), rmsnorm_ref(x.float().cpu(), w.float().cpu()))

    # 2. out omitted: a fc.DeviceArray comes back; torch views it without a copy.
    res = fc.rmsnorm(x, w)
    check("rmsnorm bf16 (DeviceArray)", torch.from_dlpack(res).float().cpu(),
          rmsnorm_ref(x.float().cpu(), w.float().cpu()))

    # 3. Fused add, in place: residual += x; x = rmsnorm(residual).
    x2 = torch.randn(tokens, hidden, device=dev, dtype=torch.float16)
    r2 = torch.randn_like(x2)
    w2 = torch.randn(hidden, device=dev, dtype=torch.float16)
    want_r = (x2.double() + r2.double()).cpu()
    fc.fused_add_rmsnorm(x2, r2, w2)
    check("fused_add_rmsnorm: residual", r2.double().cpu(), want_r)
    check("fused_add_rmsnorm: output", x2.double().cpu(),
          rmsnorm_ref(r2.double().cpu(), w2.double().cpu()))

    # 4. Per-head QK norm of the q part of a fused qkv projection: a strided 3-D view.
    qkv = torch.randn(8, 48, 128, device=dev, dtype=torch.float16)
    q = qkv[:, :32]
    q_w = torch.randn(128, device=dev, dtype=torch.float16)
    q_out = torch.empty(8, 32, 128, device=dev, dtype=torch.float16)
    fc.qk_rmsnorm(q, q_w, out=q_out)
    check("qk_rmsnorm on a strided view", q_out.float().cpu(),
          rmsnorm_ref(q.float().cpu(), q_w.float().cpu()))

    # 5. A side stream: the producer's current stream is picked up, no stream= needed.
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        side = torch.empty_like(x)
        fc.gemma_rmsnorm(x, w, out=side)
    torch.cuda.current_stream().wait_stream(s)
    check("gemma_rmsnorm on a side stream", side.float().cpu(),
          rmsnorm_ref(x.float().cpu(), w.float().cpu(), gemma=True))


if __name__ == "__main__":
    main()
