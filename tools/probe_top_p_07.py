"""How far FlashInfer 0.7.x's default (non-deterministic) top-p renorm strays from its
deterministic mode, for flashinfer_cy and for flashinfer-python on the same 0.7.x module: a
diagnosis for tests/gpu/test_sampling.py's 0.7.x branch, not a benchmark.

0.7.x's AIR top-p builds its histograms with float atomics unless ``deterministic``; the
question is whether the kept set then differs only at the threshold or by whole histogram
buckets, and whether the peer's does the same. Per p: rows' kept-set flips (fast vs
deterministic, each library; ours vs the peer's fast), the kept mass minus p, and whether
every kept set is threshold-shaped (no dropped element above a kept one).

    FLASHINFER_CY_KERNEL_DIR=<0.7.x modules> python tools/probe_top_p_07.py [--vocab 32000]
"""

from __future__ import annotations

import argparse

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--batch", type=int, default=257)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import flashinfer as fi
    import torch

    import flashinfer_cy as fc

    print("# sampling module", fc.load_module("sampling").flashinfer_version,
          "flashinfer-python", fi.__version__, torch.cuda.get_device_name())
    rng = np.random.default_rng(args.seed)
    p = rng.random((args.batch, args.vocab)) ** 4
    probs = torch.as_tensor(p / p.sum(axis=1, keepdims=True), dtype=torch.float32,
                            device="cuda")
    p_arr = torch.as_tensor(rng.uniform(0.05, 1.0, args.batch), dtype=torch.float32,
                            device="cuda")
    host = probs.double().cpu().numpy()

    def ours(top_p, det):
        out = torch.full_like(probs, float("nan"))
        fc.top_p_renorm_probs(probs, top_p, det, out=out)
        return out > 0

    def peer(top_p, det):
        return fi.sampling.top_p_renorm_probs(probs, top_p, det) > 0

    def stats(kept, top_p):
        k = kept.cpu().numpy()
        mass = (host * k).sum(axis=1)
        target = top_p.cpu().numpy() if torch.is_tensor(top_p) else np.full(len(mass), top_p)
        lo = np.where(k, host, np.inf).min(axis=1)
        hi = np.where(k, -np.inf, host).max(axis=1)
        shaped = (lo >= hi).mean()
        return mass - target, shaped

    for top_p, name in ((0.9, "0.9"), (p_arr, "p_arr"), (1.0, "1.0")):
        od, of, pd, pf, pf2 = (ours(top_p, True), ours(top_p, False), peer(top_p, True),
                               peer(top_p, False), peer(top_p, False))
        flips = {
            "ours fast vs ours det": (of != od).sum(1),
            "peer fast vs peer det": (pf != pd).sum(1),
            "peer fast vs peer fast": (pf != pf2).sum(1),
            "ours fast vs peer fast": (of != pf).sum(1),
            "ours det vs peer det": (od != pd).sum(1),
        }
        print(f"## top_p {name}")
        for what, f in flips.items():
            f = f.cpu().numpy()
            print(f"  flips {what:26s} max {f.max():6d}  median {int(np.median(f)):6d}  "
                  f"rows with any {int((f > 0).sum()):4d}/{len(f)}")
        for what, kept in (("ours det", od), ("ours fast", of), ("peer det", pd),
                           ("peer fast", pf)):
            dm, shaped = stats(kept, top_p)
            print(f"  {what:10s} kept mass - p: min {dm.min():+.2e} max {dm.max():+.2e}; "
                  f"threshold-shaped rows {shaped:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
