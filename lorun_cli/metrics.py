"""Image quality metrics (PSNR, SSIM) and the named evaluation protocols used in reports.

All metrics work on torch tensors shaped (C, H, W) or (N, C, H, W), compute in float64 and return
python floats (the mean over the batch of per-image values). The protocol is always explicit: see
``score`` and ``PROTOCOL_TEXT``. ``score(..., dtype=torch.float32)`` (what `lorun restore` uses) computes the
SSIM maps in float32 (centred data; within 1e-5 of float64, tests/test_speed.py) at half the memory and
time; PSNR always sums its squared errors in float64.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lorun_cli.errors import LorunError, UsageError

# SSIM constants (Wang et al. 2004).
SSIM_WIN = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03

PROTOCOL_TEXT: dict[str, str] = {
    "gray8": "PSNR/SSIM on 8-bit quantised gray images, whole image, data range 1 (CS protocol)",
    "y": "PSNR/SSIM on the BT.601 Y channel of 8-bit quantised RGB (Y rounded to 8 bit), "
    "border cropped (SR protocol)",
    "rgb": "PSNR/SSIM on 8-bit quantised RGB, border cropped, SSIM averaged over channels",
    "bands": "PSNR/SSIM per spectral band on float data (no quantisation), averaged over bands "
    "(CASSI protocol)",
}
PROTOCOLS: tuple[str, ...] = tuple(PROTOCOL_TEXT)


def _compute_device(t: Tensor) -> torch.device:
    """Device to run float64 maths on (MPS has no float64, fall back to CPU there)."""
    return torch.device("cpu") if t.device.type == "mps" else t.device


def _as_batch(x: Tensor, name: str = "image") -> Tensor:
    """Return ``x`` as (N, C, H, W)."""
    if not isinstance(x, Tensor):
        raise LorunError(
            f"{name} must be a torch tensor, got {type(x).__name__}; convert it with torch.as_tensor"
        )
    if x.dim() == 3:
        return x.unsqueeze(0)
    if x.dim() == 4:
        return x
    raise LorunError(f"{name} must be (C,H,W) or (N,C,H,W), got shape {tuple(x.shape)}; reshape the input")


def _pair(x: Tensor, ref: Tensor, dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor]:
    """Validate shapes and return both as ``dtype`` (N, C, H, W) on a common device."""
    xb, rb = _as_batch(x, "estimate"), _as_batch(ref, "reference")
    if xb.shape != rb.shape:
        raise LorunError(
            f"estimate shape {tuple(xb.shape)} differs from reference shape {tuple(rb.shape)}; "
            "crop both to the same size before scoring"
        )
    if dtype not in (torch.float32, torch.float64):
        raise UsageError(f"metrics compute in float32 or float64, not {dtype}")
    dev = _compute_device(xb) if dtype == torch.float64 else xb.device
    return xb.to(dev, dtype), rb.to(dev, dtype)


def _crop_border(x: Tensor, border: int) -> Tensor:
    """Remove ``border`` pixels on each side of the last two dims."""
    if border < 0:
        raise UsageError(f"border must be >= 0, got {border}; pass a non-negative border")
    if border == 0:
        return x
    h, w = x.shape[-2:]
    if h <= 2 * border or w <= 2 * border:
        raise LorunError(f"border {border} leaves nothing of a {h}x{w} image; use a smaller border")
    return x[..., border : h - border, border : w - border]


def quantize_8bit(x: Tensor) -> Tensor:
    """Clamp to [0, 1] and round to the nearest 8-bit level: round(clamp(x)·255)/255."""
    return torch.round(x.clamp(0.0, 1.0) * 255.0) / 255.0


def rgb_to_y(x: Tensor) -> Tensor:
    """BT.601 studio-range luma of RGB in [0, 1]: Y = 16/255 + (65.481R + 128.553G + 24.966B)/255.

    Channel axis is dim -3 (shape (3,H,W) or (N,3,H,W)); the result keeps the dim with size 1.
    """
    if x.dim() < 3 or x.shape[-3] != 3:
        raise LorunError(
            f"rgb_to_y needs 3 channels on dim -3, got shape {tuple(x.shape)}; pass an RGB image"
        )
    r, g, b = x[..., 0:1, :, :], x[..., 1:2, :, :], x[..., 2:3, :, :]
    return 16.0 / 255.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0


def _psnr_per_image(x: Tensor, ref: Tensor, data_range: float) -> Tensor:
    """PSNR of each image of a (N, C, H, W) batch, MSE (summed in float64) over all channels and pixels -> (N,)."""
    mse = (x - ref).pow(2).flatten(1).to(torch.float64).mean(dim=1)
    out = 10.0 * torch.log10((data_range**2) / mse)
    return torch.where(mse == 0, torch.full_like(mse, math.inf), out)


def _gaussian_taps(device: torch.device, dtype: torch.dtype = torch.float64) -> Tensor:
    """Normalised 1-D Gaussian of length SSIM_WIN and std SSIM_SIGMA (computed in float64, returned in ``dtype``)."""
    r = (SSIM_WIN - 1) // 2
    t = torch.arange(-r, r + 1, device=device, dtype=torch.float64)
    g = torch.exp(-0.5 * (t / SSIM_SIGMA) ** 2)
    return (g / g.sum()).to(dtype)


def _filter_valid(x: Tensor, taps: Tensor) -> Tensor:
    """Separable Gaussian filtering of (M, 1, H, W) keeping only fully-covered ('valid') positions.

    Each pass is a sum of shifted views scaled by the taps (a single-channel conv2d ran ~3× slower on CPU)."""
    k = taps.numel()
    w, h = x.shape[-1] - k + 1, x.shape[-2] - k + 1
    taps = taps.tolist()
    rows = x[..., :w] * taps[0]
    for i in range(1, k):
        rows.add_(x[..., i : i + w], alpha=taps[i])
    out = rows[..., :h, :] * taps[0]
    for i in range(1, k):
        out.add_(rows[..., i : i + h, :], alpha=taps[i])
    return out


def _ssim_per_channel(x: Tensor, ref: Tensor, data_range: float) -> Tensor:
    """Mean SSIM of each channel of each image of a (N, C, H, W) batch -> (N, C).

    The data are centred on half the range first (SSIM's variances and covariance do not change), so the
    E[a²] − E[a]² differences lose little precision in float32.
    """
    n, c, h, w = x.shape
    if h < SSIM_WIN or w < SSIM_WIN:
        raise LorunError(
            f"SSIM needs images of at least {SSIM_WIN}x{SSIM_WIN}, got {h}x{w}; use a larger image"
        )
    taps = _gaussian_taps(x.device, x.dtype)
    centre = 0.5 * data_range
    a = x.reshape(n * c, 1, h, w) - centre
    b = ref.reshape(n * c, 1, h, w) - centre
    mu_a, mu_b = _filter_valid(a, taps), _filter_valid(b, taps)
    var_a = _filter_valid(a * a, taps) - mu_a * mu_a
    var_b = _filter_valid(b * b, taps) - mu_b * mu_b
    cov = _filter_valid(a * b, taps) - mu_a * mu_b
    mu_a, mu_b = mu_a + centre, mu_b + centre
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    smap = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return smap.flatten(1).mean(dim=1).view(n, c)


def psnr(x: Tensor, ref: Tensor, data_range: float = 1.0, border: int = 0) -> float:
    """PSNR in dB over all channels of each image (mean over the batch); inf for identical images."""
    xb, rb = _pair(x, ref)
    xb, rb = _crop_border(xb, border), _crop_border(rb, border)
    return float(_psnr_per_image(xb, rb, float(data_range)).mean())


def ssim(x: Tensor, ref: Tensor, data_range: float = 1.0, border: int = 0) -> float:
    """SSIM (Gaussian window 11, sigma 1.5, valid filtering), mean over channels, then over the batch."""
    xb, rb = _pair(x, ref)
    xb, rb = _crop_border(xb, border), _crop_border(rb, border)
    return float(_ssim_per_channel(xb, rb, float(data_range)).mean())


def _to_rgb(x: Tensor) -> Tensor:
    """(N, C, H, W) with C in {1, 3} -> (N, 3, H, W)."""
    if x.shape[1] == 1:
        return x.expand(-1, 3, -1, -1)
    if x.shape[1] != 3:
        raise LorunError(
            f"this protocol needs gray or RGB images, got {x.shape[1]} channels; use protocol 'bands'"
        )
    return x


def score(x: Tensor, ref: Tensor, protocol: str, border: int = 0,
          dtype: torch.dtype = torch.float64) -> dict[str, float]:
    """PSNR and SSIM under a named protocol (see ``PROTOCOL_TEXT``); returns ``{"psnr": .., "ssim": ..}``.

    ``dtype``: float64 (bench, results pages) or float32 (restore: half the memory, SSIM within 1e-5).
    """
    if protocol not in PROTOCOL_TEXT:
        raise UsageError(f"unknown metric protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    xb, rb = _pair(x, ref, dtype)
    if protocol == "bands":
        xb, rb = _crop_border(xb, border), _crop_border(rb, border)
        n, c, h, w = xb.shape
        band_psnr = _psnr_per_image(xb.reshape(n * c, 1, h, w), rb.reshape(n * c, 1, h, w), 1.0)
        return {"psnr": float(band_psnr.mean()), "ssim": float(_ssim_per_channel(xb, rb, 1.0).mean())}
    xb, rb = quantize_8bit(xb), quantize_8bit(rb)
    if protocol == "y":
        xb, rb = quantize_8bit(rgb_to_y(_to_rgb(xb))), quantize_8bit(rgb_to_y(_to_rgb(rb)))
    elif protocol == "rgb":
        xb, rb = _to_rgb(xb), _to_rgb(rb)
    xb, rb = _crop_border(xb, border), _crop_border(rb, border)
    return {
        "psnr": float(_psnr_per_image(xb, rb, 1.0).mean()),
        "ssim": float(_ssim_per_channel(xb, rb, 1.0).mean()),
    }
