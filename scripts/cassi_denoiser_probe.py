"""How fast does a denoiser learn on 28-band CAVE patches? (the check that found the old CASSI prior's flaw)

    python scripts/cassi_denoiser_probe.py --data DATA_ROOT [--steps 200]

Each candidate trains for ``--steps`` Adam steps (lr 1e-3, batch 8 of 64×64×28 training patches, Gaussian
noise σ = 0.1, one thread, same seed and batches) and reports the final training MSE relative to the noise
variance (1.0 = has learned nothing; a perfect denoiser would be far below 0.1).
"""

from __future__ import annotations

import argparse
import time

import torch

from lorun_cli import denoisers
from lorun_cli.facts import TRAIN_PATCH
from lorun_cli.io import datasets
from lorun_cli.train import data

CANDIDATES = {
    "unet 16-32-64 (old CASSI prior)": ("unet", {}),
    "unet 32-64-128": ("unet", {"widths": [32, 64, 128]}),
    "resunet 16-32-64-64": ("resunet", {}),
    "resunet 32-64-128-128 (shipped)": ("resunet", {"widths": [32, 64, 128, 128]}),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None)
    p.add_argument("--steps", type=int, default=200)
    a = p.parse_args()
    torch.set_num_threads(1)
    sampler = data.train_sampler("cassi", datasets.data_root(a.data), TRAIN_PATCH["cassi"])
    sigma = 0.1
    for label, (name, kw) in CANDIDATES.items():
        torch.manual_seed(0)
        gen = torch.Generator().manual_seed(0)
        net = denoisers.build(name, 28, **kw)
        opt = torch.optim.Adam(net.parameters(), 1e-3)
        t0 = time.perf_counter()
        for _ in range(a.steps):
            x = sampler.sample(8, gen)
            noisy = x + sigma * torch.randn(x.shape, generator=gen)
            loss = ((net(noisy, torch.full((8,), sigma)) - x) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        print(f"{label:36s} params {denoisers.param_count(net):>9,}  MSE/σ² after {a.steps} steps "
              f"{loss.item() / sigma**2:.3f}  ({time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
