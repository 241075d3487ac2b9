"""Memory guard for inference: estimate the peak memory of a restore, and pick a tile size that fits a budget.

The estimate counts float32 feature maps per output pixel: ``14 × w₀`` for the denoiser (its first level,
width w₀, dominates: encoder skips + decoder + the stage's working copies, channels-last copies) plus ``20 ×``
the image channels (operator buffers, the SR data step's per-forward FFT terms, stage outputs). On the bundled
``small`` models it lies above the measured peak-RSS growth per pixel (SR 830–1000 B vs 1136 B estimated;
CASSI 3150 vs 4032; CS 485–610 vs 976), so a run the guard lets through stays within its budget.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from .errors import OptionError, UsageError

#: Default budget: this fraction of the memory available when the command starts, at most DEFAULT_CAP on a
#: CPU (tiles of about 1000² output pixels cost a few % in time and keep a 4K restore near 1 GB; docs/SPEED.md).
DEFAULT_FRACTION = 0.5
DEFAULT_CAP = 2**30
FIXED_BYTES = 96 * 2**20  # interpreter, torch, the model itself
GB = 2**30


def available_bytes(device: str = "cpu") -> int:
    """Memory available now: MemAvailable on Linux (else physical memory), or free memory on a CUDA device."""
    if device.startswith("cuda"):
        import torch

        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 8 * GB


def budget_bytes(max_memory_gb: float | None, device: str = "cpu") -> tuple[int, str]:
    """The budget in bytes and how it was chosen (--max-memory, LORUN_MAX_MEMORY, or half the available)."""
    if max_memory_gb is not None:
        return int(max_memory_gb * GB), f"--max-memory {max_memory_gb:g}"
    env = os.environ.get("LORUN_MAX_MEMORY", "").strip()
    if env:
        try:
            value = float(env)
        except ValueError:
            value = float("nan")
        if not (math.isfinite(value) and value > 0):
            raise UsageError(f"LORUN_MAX_MEMORY={env!r}: use a positive number of GB, e.g. 4")
        return int(value * GB), f"LORUN_MAX_MEMORY={env}"
    avail = available_bytes(device)
    half = int(avail * DEFAULT_FRACTION)
    if not device.startswith("cuda") and half > DEFAULT_CAP:
        return DEFAULT_CAP, (f"the default {size_text(DEFAULT_CAP)}; --max-memory or LORUN_MAX_MEMORY allow more, "
                             f"up to the {avail / GB:.1f} GB available")
    return half, f"half the {avail / GB:.1f} GB available"


def size_text(n: int) -> str:
    """'740 MB' or '13.8 GB'."""
    return f"{n / GB:.1f} GB" if n >= GB else f"{n / 2**20:.0f} MB"


def bytes_per_pixel(width0: int, channels: int) -> int:
    """Estimated peak bytes per output pixel of one image (float32 maps, see the module docstring)."""
    return 4 * (14 * width0 + 20 * channels)


@dataclass
class Plan:
    """What the guard decided for one input: the tile to use (0: whole) and the note to print, if any."""

    tile: int
    estimate: int
    note: str = ""


def plan_tiles(width0: int, channels: int, batch: int, out_hw: tuple[int, int], tile: int, budget: int,
               how: str, min_tile: int, align: int = 32, rows_only: bool = False, flag_hint: str = "") -> Plan:
    """Keep ``tile`` (0 = whole image) if its estimate fits ``budget``, else pick the largest tile that fits.

    ``rows_only``: tiles are strips of full width (CASSI), so a tile of t rows costs t × W pixels.
    Raises UsageError with a --tile / --max-memory hint when even the smallest tile does not fit, or when an
    explicit --tile does not fit.
    """
    h, w = out_hw
    per_px = bytes_per_pixel(width0, channels) * batch

    def cost(t: int) -> int:
        if t <= 0:
            return FIXED_BYTES + per_px * h * w
        th = min(t, h)
        tw = w if rows_only else min(t, w)
        return FIXED_BYTES + per_px * th * tw

    est = cost(tile)
    if est <= budget:
        return Plan(tile, est)
    room = max(0, budget - FIXED_BYTES) // per_px
    fit = room // w if rows_only else math.isqrt(room)
    fit = fit // align * align
    if tile > 0:
        hint = f"--tile {fit}" if fit >= min_tile else "more memory"
        raise OptionError("tile", tile, f"needs about {size_text(est)}, over the {size_text(budget)} budget "
                         f"({how}); use {hint}{flag_hint}")
    if fit < min_tile:
        raise UsageError(f"this input needs about {size_text(cost(min_tile))} even in {min_tile}-pixel tiles, over "
                         f"the {size_text(budget)} budget ({how}); free memory or raise --max-memory")
    note = (f"the whole image needs about {size_text(est)}, over the {size_text(budget)} budget ({how}); "
            f"tiling automatically with --tile {fit}")
    return Plan(fit, cost(fit), note)
