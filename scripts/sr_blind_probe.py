#!/usr/bin/env python3
"""Large blurs at the LR image's own scale: how much a kernel known only at LR resolution is worth, and a classical
blind estimate of it (measured on held-out Train400 images; not shipped, see docs/SR_AUTO.md).

    python scripts/sr_blind_probe.py ceiling --data DATA [--start 0 --limit 4]
    python scripts/sr_blind_probe.py gate --data DATA [--start 0 --limit 12] [--min-width 2.0] [--images cave]

``ceiling``: K9–K11 and random motion kernels, restored by sr-lorun9 with the true kernel, with the true kernel
blurred by a Gaussian of σ = 0.3·s or 0.5·s px (what an estimate at LR resolution can at best resolve), with the
Gaussian of the true kernel's covariance, and with the shipped ``--kernel auto``. ``gate``: every bench family;
where the learned estimate is at least ``--min-width`` px wide, also restore with the blind LR-scale estimate
(:func:`blind_lr_kernel`, mapped to HR, placed at auto's centre; ``--init learned``: refined from the learned
estimate). One JSON line per case, PSNR − bicubic on the true kernel's grid (Y = the gray image, 8-bit, border = s).

The blind estimate alternates an L0-gradient latent image (half-quadratic splitting) and a least-squares kernel on
its gradients, coarse to fine, at LR scale (Pan et al.'s scheme without the intensity term).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_sr_estimator import cave_held_out, held_out_files, held_out_hr, lr_blurred  # noqa: E402

from lorun_cli import metrics  # noqa: E402
from lorun_cli.bench import AUTO_FAMILIES, draw_degradation  # noqa: E402
from lorun_cli.physics import sr_estimate as E  # noqa: E402
from lorun_cli.physics.sr import (  # noqa: E402
    SRBlur,
    bicubic_on_grid,
    exposure_apply,
    exposure_map,
    exposure_unmap,
    psf2otf,
)
from lorun_cli.restore import PROTOCOL, load_task_model  # noqa: E402


def _grads(x: Tensor) -> tuple[Tensor, Tensor]:
    """Forward differences (zero past the last row / column)."""
    return F.pad(x[:, 1:] - x[:, :-1], (0, 1)), F.pad(x[1:] - x[:-1], (0, 0, 0, 1))


def l0_latent(y: Tensor, k: Tensor, lam: float, beta_max: float = 1e5) -> Tensor:
    """argmin_x ‖k ⊛ x − y‖² + λ‖∇x‖₀ by half-quadratic splitting (β doubling from 2λ), replicate-padded."""
    p = k.shape[-1]
    yp = F.pad(y[None, None], (p, p, p, p), mode="replicate")[0, 0]
    kf = psf2otf(k, yp.shape)
    diff = torch.tensor([[0.0, -1.0, 1.0]], dtype=y.dtype)  # x(j − 1) − x(j) as a circular convolution
    dxf, dyf = psf2otf(diff, yp.shape), psf2otf(diff.T, yp.shape)
    kty, ktk = kf.conj() * torch.fft.fft2(yp), kf.abs() ** 2
    dtd = dxf.abs() ** 2 + dyf.abs() ** 2
    x, beta = yp, 2 * lam
    while beta < beta_max:
        xf = torch.fft.fft2(x)
        gx, gy = torch.fft.ifft2(dxf * xf).real, torch.fft.ifft2(dyf * xf).real
        keep = (gx**2 + gy**2) > lam / beta
        num = kty + beta * (dxf.conj() * torch.fft.fft2(gx * keep) + dyf.conj() * torch.fft.fft2(gy * keep))
        x = torch.fft.ifft2(num / (ktk + beta * dtd)).real
        beta *= 2
    return x[p:-p, p:-p]


def kernel_lsq(xg: tuple[Tensor, ...], yg: tuple[Tensor, ...], n: int, reg: float) -> Tensor:
    """argmin_k Σ_d ‖k ⊛ xg_d − yg_d‖² over the valid region + reg·mean(diag)·‖k‖² (n × n)."""
    c = n // 2
    a = torch.zeros(n * n, n * n, dtype=xg[0].dtype)
    b = torch.zeros(n * n, dtype=xg[0].dtype)
    for xd, yd in zip(xg, yg):
        patches = F.unfold(xd[None, None], n)[0]
        a += patches @ patches.T
        b += patches @ yd[c : yd.shape[0] - c, c : yd.shape[1] - c].reshape(-1)
    a += reg * a.diagonal().mean() * torch.eye(n * n, dtype=a.dtype)
    return torch.linalg.solve(a, b).reshape(n, n).flip(0, 1)  # solved as a correlation


def cleaned(k: Tensor, frac: float = 0.05) -> Tensor:
    """Negative and small taps (< frac·max) zeroed, only the 8-connected part holding the peak kept, sum 1."""
    k = k.clamp_min(0)
    k = torch.where(k < frac * k.max(), torch.zeros_like(k), k)
    mask, part = k > 0, torch.zeros_like(k, dtype=torch.bool)
    part.view(-1)[int(torch.argmax(k))] = True
    while True:
        grown = (F.max_pool2d(part[None, None].double(), 3, 1, 1)[0, 0] > 0) & mask
        if bool((grown == part).all()):
            break
        part = grown
    k = k * part
    return k / k.sum()


def blind_lr_kernel(y: Tensor, n: int, iters: int = 5, lam: float = 4e-3, reg: float = 0.01,
                    init: Tensor | None = None) -> Tensor:
    """An n × n kernel at the LR image's scale from the (h, w) gray LR image alone, coarse to fine (levels √2
    apart, λ falling by 1.1 per iteration); or, given an n × n ``init``, refined from it at full size only."""
    sizes = [n]
    while init is None and sizes[-1] > 5:
        sizes.append(max(3, int(round(sizes[-1] / math.sqrt(2))) | 1))
    k = None if init is None else init.to(y.dtype)
    for m in reversed(sizes):
        f = m / n
        ym = y if f == 1 else F.interpolate(y[None, None], scale_factor=f, mode="bilinear", antialias=True)[0, 0]
        if k is None:
            k = torch.zeros(m, m, dtype=y.dtype)
            k[m // 2, m // 2 - 1 : m // 2 + 1] = 0.5
        else:
            k = F.interpolate(k[None, None], size=(m, m), mode="bilinear", align_corners=True)[0, 0].clamp_min(0)
            k = k / k.sum()
        yg, lam_i = _grads(ym), lam
        for _ in range(iters):
            k = cleaned(kernel_lsq(_grads(l0_latent(ym, k, lam_i)), yg, m, reg))
            lam_i = max(lam_i / 1.1, 1e-4)
    return k


def lr_to_hr(k_lr: Tensor, scale: int, size: int = E.KSIZE) -> Tensor:
    """An LR-scale kernel as an HR kernel (bilinear samples every 1/scale LR px), centred at its centre of mass."""
    n = k_lr.shape[-1]
    c = n // 2
    t = torch.arange(n, dtype=k_lr.dtype) - c
    cy, cx = float((k_lr.sum(1) * t).sum()), float((k_lr.sum(0) * t).sum())
    r = torch.arange(size, dtype=k_lr.dtype) - size // 2
    yy, xx = torch.meshgrid((c + cy + r / scale) / c - 1, (c + cx + r / scale) / c - 1, indexing="ij")
    out = F.grid_sample(k_lr[None, None], torch.stack([xx, yy], -1)[None], mode="bilinear", align_corners=True)
    out = out[0, 0].clamp_min(0)
    return (out / out.sum()).float()


def hr_to_lr(k: Tensor, scale: int, n: int) -> Tensor:
    """An HR kernel summed over the s × s cells of the LR grid (the cell n // 2 holds its centre tap): n × n."""
    m = n * scale
    canvas = torch.zeros(m, m, dtype=torch.float64)
    size, o = k.shape[-1], m // 2 - k.shape[-1] // 2
    lo, hi = max(0, -o), min(size, m - o)
    canvas[o + lo : o + hi, o + lo : o + hi] = k.double()[lo:hi, lo:hi]
    out = F.avg_pool2d(canvas[None, None], scale)[0, 0]
    return out / out.sum()


def gaussian_blurred(k: Tensor, sigma: float) -> Tensor:
    """``k`` convolved with an isotropic Gaussian of ``sigma`` px (same size, sum 1)."""
    out = lr_blurred(k[None], sigma)[0]
    return out / out.sum()


def covariance_gaussian(k: Tensor) -> Tensor:
    """The Gaussian with ``k``'s centre and covariance (its widths at least 0.3 px)."""
    k = k.double().clamp_min(0)
    k = k / k.sum()
    r = torch.arange(k.shape[-1], dtype=torch.float64) - k.shape[-1] // 2
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    mx, my = float((k * xx).sum()), float((k * yy).sum())
    cov = torch.tensor([[float((k * (xx - mx) ** 2).sum()), float((k * (xx - mx) * (yy - my)).sum())],
                        [float((k * (xx - mx) * (yy - my)).sum()), float((k * (yy - my) ** 2).sum())]])
    var, vec = torch.linalg.eigh(cov)  # ascending; the first axis of gaussian_kernel is the wider one
    g = E.gaussian_kernel(math.sqrt(max(float(var[1]), 0.09)), math.sqrt(max(float(var[0]), 0.09)),
                          math.atan2(float(vec[1, 1]), float(vec[0, 1])))[0]
    return E.recentred(g, E.centroid(k.float()))


def _psnr(out: Tensor, x: Tensor, s: int) -> float:
    return metrics.score(out.clamp(0, 1), x, PROTOCOL["sr"], border=s)["psnr"]


def _case(net: torch.nn.Module, ym: Tensor, mcg: tuple[float, float, float], x: Tensor, s: int,
          p_bic: float) -> Callable[[Tensor, float], float]:
    """PSNR − bicubic of sr-lorun9 restoring the (exposure-mapped) LR image ``ym`` with kernel k, data weight w."""
    def gain(k: Tensor, w: float) -> float:
        return round(_psnr(exposure_unmap(net(ym, SRBlur(k, s, data_weight=w)), mcg), x, s) - p_bic, 3)
    return gain


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=("ceiling", "gate"))
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--limit", type=int, default=4)
    ap.add_argument("--scales", default="2,3,4")
    ap.add_argument("--min-width", type=float, default=2.0, help="gate: blind estimate where auto's is this wide")
    ap.add_argument("--support", type=int, default=9, help="the blind kernel's half-support in HR px")
    ap.add_argument("--images", choices=("train400", "cave"), default="train400",
                    help="held-out source (as sr_auto_tune.py's): the last Train400 images or the CAVE training scenes")
    ap.add_argument("--init", choices=("none", "learned"), default="none",
                    help="gate: start the blind estimate from the learned estimate at LR scale (no pyramid)")
    ap.add_argument("--iters", type=int, default=5, help="gate: blind iterations per level")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    net, _ = load_task_model("sr", None)
    est = E.load_estimator(None)
    families = ("K9", "K10", "K11", "motion") if args.mode == "ceiling" else AUTO_FAMILIES
    if args.images == "cave":
        files = [g for _, g in cave_held_out(args.data)[args.start : args.start + args.limit]]
    else:
        files = held_out_files(args.data, args.start, args.limit)
    for s in (int(v) for v in args.scales.split(",")):
        n = 2 * -(-args.support // s) + 1
        for i, f in enumerate(files, start=args.start):
            x = held_out_hr(f, s)
            for fam in families:
                _, k, sigma = draw_degradation(fam, s, i, 100)
                with torch.no_grad():
                    y = SRBlur(k, s).A(x)
                    if sigma:
                        y = y + sigma * torch.randn(y.shape, generator=torch.Generator().manual_seed(i))
                    mcg = exposure_map(y)
                    ym = exposure_apply(y, mcg)
                    first = E.estimate(est, ym, s, snap_p=2.0)
                    weight = E.data_weight_policy(first["noise"], explicit=False)
                    p_bic = _psnr(bicubic_on_grid(y, s, E.grid_shift(k)), x, s)
                    gain = _case(net, ym, mcg, x, s, p_bic)

                    rec = {"scale": s, "image": i, "family": fam, "width": round(first["width"], 3),
                           "auto": gain(E.kernel_policy(None, first["kernel"])[0], weight)}
                    if args.mode == "ceiling":
                        rec["true"] = gain(k, 1.0)
                        for c in (0.3, 0.5):
                            rec[f"true_blur{c:g}s"] = gain(gaussian_blurred(k, c * s), 1.0)
                        rec["true_covariance"] = gain(covariance_gaussian(k), 1.0)
                    elif first["width"] >= args.min_width:
                        t0 = time.perf_counter()
                        init = hr_to_lr(first["kernel"], s, n) if args.init == "learned" else None
                        kb = lr_to_hr(blind_lr_kernel(E.luma(ym)[0, 0].double(), n, args.iters, init=init), s)
                        rec["blind_s"] = round(time.perf_counter() - t0, 3)
                        kb = E.widened_kernel(E.recentred(kb, E.centroid(E.centre_expanded(first["kernel"]))))
                        rec["blind"] = gain(kb, weight)
                        rec["blind_width"] = round(E.kernel_width(kb), 3)
                        rec["blind_error"] = round(E.kernel_error(E.recentred(kb, E.centroid(k)), k), 3)
                    rec["learned_error"] = round(E.kernel_error(E.recentred(first["kernel"], E.centroid(k)), k), 3)
                print(json.dumps(rec), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
