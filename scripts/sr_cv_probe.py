#!/usr/bin/env python3
"""Cross-validated kernel choice from the LR image alone (a probe on held-out Train400 images; see docs/SR_AUTO.md).

    python scripts/sr_cv_probe.py confusion --data DATA [--start 0 --limit 8] [--out F.jsonl]

A candidate kernel k is scored by how well it predicts LR pixels it was not fitted on: the LR image is split into
its four 2 × 2 sub-grids; from one sub-grid (an SR problem at scale 2s) the smoothest HR image that the kernel maps
onto it is solved in closed form (L2 gradient prior, FFT), and the other three sub-grids are predicted through k
(generalised cross-validation for blur identification, Reeves & Mersereau). The score is the held-out error,
minimised over the prior's weight, averaged over the four folds, on the interior. A kernel's centre of mass does not
change the score (the HR image shifts with it), so it scores the shape alone.

``confusion``: every true kernel of a fixed list (K1–K12, plain decimation, PIL bicubic, Gaussians), every scale,
scored against every candidate of the same list; one JSON line per case with the ranking.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_sr_estimator import held_out_files, held_out_hr  # noqa: E402

from lorun_cli.physics import sr_estimate as E  # noqa: E402
from lorun_cli.physics.sr import _block_mean, load_kernels, psf2otf  # noqa: E402

LAMS = (1e-4, 1e-3, 1e-2, 1e-1)
MARGIN = 6  # LR pixels left out of the score at each border (circular model, non-periodic image)


def candidate_bank(scale: int) -> dict[str, Tensor]:
    """The named kernels the probe tells apart: K1–K12, plain decimation, PIL bicubic, isotropic Gaussians."""
    bank = {k: v.double() for k, v in load_kernels().items()}
    bank["delta"] = E.delta_kernel().double()
    bank["pil"] = E.pil_bicubic_kernel(scale).double()
    for s in (0.7, 1.2, 1.8, 2.5, 3.2):
        bank[f"g{s}"] = E.gaussian_kernel(s, s, 0.0)[0].double()
    return {k: v / v.sum() for k, v in bank.items()}


def smoothest_fit(yt: Tensor, k: Tensor, s2: int, lams: Tensor) -> Tensor:
    """argmin_x ‖(k ⊛ x)↓s2 − yt‖² + λ‖∇x‖² for each λ (closed form, circular): (L, H·s2, W·s2)."""
    h, w = yt.shape[-2] * s2, yt.shape[-1] * s2
    fb = psf2otf(k, (h, w))
    up = yt.new_zeros(h, w)
    up[::s2, ::s2] = yt
    r = fb.conj() * torch.fft.fft2(up)
    fy = torch.fft.fftfreq(h, dtype=yt.dtype)[:, None]
    fx = torch.fft.fftfreq(w, dtype=yt.dtype)[None, :]
    lap = (2 - 2 * torch.cos(2 * math.pi * fy)) + (2 - 2 * torch.cos(2 * math.pi * fx))
    d = lams[:, None, None] * lap + 1e-9  # the prior's diagonal in Fourier (Woodbury below, d = s2² aliases)
    dr = r / d
    num = _block_mean(fb * dr, s2) * s2 * s2
    den = s2 * s2 + _block_mean(fb.abs().square() / d, s2) * s2 * s2
    tile = (num / den).repeat(1, s2, s2)
    return torch.fft.ifft2(dr - fb.conj() / d * tile).real


def cv_score(y: Tensor, k: Tensor, s: int, lams: tuple[float, ...] = LAMS) -> float:
    """Mean held-out squared error of ``k`` on the LR image ``y`` (H, W), the best prior weight chosen per kernel."""
    y = y[: y.shape[0] // 2 * 2, : y.shape[1] // 2 * 2]
    h, w = y.shape
    lam = torch.tensor(lams, dtype=y.dtype)
    fb = psf2otf(k, (h * s, w * s))
    err = torch.zeros(len(lams), dtype=y.dtype)
    m = MARGIN
    for a in (0, 1):
        for b in (0, 1):
            x = smoothest_fit(y[a::2, b::2], k, 2 * s, lam)
            x = torch.roll(x, shifts=(a * s, b * s), dims=(-2, -1))
            pred = torch.fft.ifft2(torch.fft.fft2(x) * fb).real[..., ::s, ::s]
            held = torch.ones(h, w, dtype=torch.bool)
            held[a::2, b::2] = False
            held[:m], held[-m:], held[:, :m], held[:, -m:] = False, False, False, False
            err += ((pred - y).square() * held).sum((-2, -1)) / held.sum()
    return float(err.min() / 4)


def lr_image(x: Tensor, k: Tensor, s: int) -> Tensor:
    """The gray HR image (H, W) blurred by ``k`` on the valid interior, decimated, rounded to 8 bit."""
    y = E.degrade_valid(x[None, None], k[None], s)[0, 0]
    return (y.clamp(0, 1) * 255).round() / 255


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", choices=("confusion",))
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--limit", type=int, default=8)
    ap.add_argument("--scales", default="2,3,4")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    torch.set_num_threads(1)
    out = a.out.open("w") if a.out else None
    files = held_out_files(a.data, a.start, a.limit)
    for s in (int(v) for v in a.scales.split(",")):
        bank = candidate_bank(s)
        top1 = {}
        for f in files:
            x = held_out_hr(f, s)[0, 0].double()
            for true_name, kt in bank.items():
                y = lr_image(x, kt, s)
                scores = {n: cv_score(y, kc, s) for n, kc in bank.items()}
                ranking = sorted(scores, key=scores.get)
                rec = {"image": f.name, "scale": s, "true": true_name, "rank": ranking.index(true_name) + 1,
                       "best": ranking[:3], "scores": {n: round(v * 1e6, 3) for n, v in scores.items()}}
                top1.setdefault(true_name, []).append(rec["rank"])
                if out:
                    out.write(json.dumps(rec) + "\n")
                    out.flush()
        print(f"x{s}: " + " ".join(f"{n}:{sum(r == 1 for r in v)}/{len(v)}(r{sum(v) / len(v):.1f})"
                                    for n, v in top1.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
