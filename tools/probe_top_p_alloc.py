"""Which path makes 0.7.x's non-deterministic top-p renorm differ from its deterministic mode
by whole buckets in tests/gpu/test_sampling.py (seen on an H100: up to 5,952 flipped
elements a row), while tools/probe_top_p_07.py's out= calls flip at most one: the test's
sequence, with the fast result taken four ways. A diagnosis, not a test.

    FLASHINFER_CY_KERNEL_DIR=<0.7.x modules> python tools/probe_top_p_alloc.py
"""

from __future__ import annotations

import argparse

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vocab", type=int, default=128256)
    ap.add_argument("--batch", type=int, default=257)
    ap.add_argument("--rounds", type=int, default=4)
    args = ap.parse_args()

    import flashinfer as fi
    import torch

    import flashinfer_cy as fc

    rng = np.random.default_rng(1)
    worst: dict[str, int] = {}
    for _ in range(args.rounds):
        p = rng.random((args.batch, args.vocab)) ** 4
        probs = torch.as_tensor(p / p.sum(axis=1, keepdims=True), dtype=torch.float32,
                                device="cuda")
        p_arr = torch.as_tensor(rng.uniform(0.05, 1.0, args.batch), dtype=torch.float32,
                                device="cuda")
        for top_p in (0.9, p_arr, 1.0):
            det = torch.full_like(probs, float("nan"))
            fc.top_p_renorm_probs(probs, top_p, True, out=det)
            fi.sampling.top_p_renorm_probs(probs, top_p, True)   # as the test does
            ways = {}
            ways["allocated, from_dlpack at once"] = torch.from_dlpack(
                fc.top_p_renorm_probs(probs, top_p))
            held = fc.top_p_renorm_probs(probs, top_p)
            ways["allocated, array kept alive"] = torch.from_dlpack(held)
            held2 = fc.top_p_renorm_probs(probs, top_p)
            torch.cuda.synchronize()
            ways["allocated, synchronize first"] = torch.from_dlpack(held2)
            o = torch.full_like(probs, float("nan"))
            fc.top_p_renorm_probs(probs, top_p, out=o)
            ways["out= torch tensor"] = o
            ways["peer (its own det as reference)"] = fi.sampling.top_p_renorm_probs(
                probs, top_p)
            peer_det = fi.sampling.top_p_renorm_probs(probs, top_p, True)
            for name, x in ways.items():
                ref = peer_det if name.startswith("peer") else det
                n = int(((x > 0) != (ref > 0)).sum(dim=1).max())
                nan = bool(torch.isnan(x).any())
                worst[name] = max(worst.get(name, 0), n + (10**9 if nan else 0))
            del held, held2
    print(f"# {torch.cuda.get_device_name()} sampling module "
          f"{fc.load_module('sampling').flashinfer_version}; vocab {args.vocab} batch "
          f"{args.batch}, {args.rounds} rounds x 3 top_p: max flipped per row vs det "
          f"(>= 1e9: NaN seen)")
    for name, n in worst.items():
        print(f"  {name:36s} {n}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
