"""Restore the five real TSA-Net CASSI snapshots with a learned model and with GAP-TV; write previews.

    python scripts/cassi_real.py --data DATA_ROOT --model cassi-lorun9 --out docs/img [--cache DIR]

Real measurements (``cassi/real/measurements/sceneN.mat``, 660×714) use the real 660×660 mask
(``cassi/real/mask_660.mat``, not binary). Their brightness differs from the simulated training data, so each
snapshot is scaled so that its flat-spectrum shift-back has a mean of 0.25 before restoring (every method sees
the same scaled measurement) and the result is scaled back. No ground truth exists: the figures are
qualitative. GAP-TV runs with the bench's TV weight (classical.GAP_TV_LAM) for ``--iters`` iterations (default
the bench's GAP_TV_ITERS); its cubes are cached.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lorun_cli.classical import GAP_TV_ITERS, gap_tv
from lorun_cli.facts import WAVELENGTHS_28
from lorun_cli.io.images import cube_preview_rgb, read_measurement
from lorun_cli.physics.cassi import CASSI, load_mask
from lorun_cli.restore import load_task_model

BANDS = (4, 15, 23)  # 476.5, 536.5, 604 nm


def _img(t: torch.Tensor, size: int) -> Image.Image:
    arr = (t.clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)
    im = Image.fromarray(np.moveaxis(arr, 0, -1) if arr.ndim == 3 else arr)
    return im.resize((size, size), Image.LANCZOS)


def _grid(rows: list[list[Image.Image]]) -> Image.Image:
    w, h = rows[0][0].size
    out = Image.new("RGB", (w * max(len(r) for r in rows), h * len(rows)), "white")
    for i, r in enumerate(rows):
        for j, im in enumerate(r):
            out.paste(im.convert("RGB"), (j * w, i * h))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--model", default="cassi-lorun9")
    p.add_argument("--out", default=Path("docs/img"), type=Path)
    p.add_argument("--cache", default=None, type=Path, help="folder for the GAP-TV cubes")
    p.add_argument("--size", type=int, default=220, help="preview tile size (px)")
    p.add_argument("--only-gap", action="store_true", help="just compute (and cache) the GAP-TV cubes")
    p.add_argument("--iters", type=int, default=GAP_TV_ITERS, help="GAP-TV iterations")
    p.add_argument("--scenes", default="1,2,3,4,5", help="which of scene1..scene5 (comma list)")
    a = p.parse_args()
    torch.set_num_threads(1)
    real = a.data / "cassi" / "real"
    mask = load_mask(real / "mask_660.mat")
    op = CASSI(mask)
    cache = a.cache or a.out
    net = None if a.only_gap else load_task_model("cassi", a.model, "lorun9", None, None, "cpu")[0]
    rgb_rows: list[list[Image.Image]] = [[], []]
    band_rows: list[list[Image.Image]] = []
    scenes = [int(v) for v in a.scenes.split(",")]
    for i in scenes:
        y = read_measurement(real / "measurements" / f"scene{i}.mat")[None, None]
        scale = 0.25 / float(op.shift_back(y).mean())
        ys = y * scale
        f = cache / f"gaptv{a.iters}_scene{i}.npy"
        if f.is_file():
            gap = torch.from_numpy(np.load(f))
        else:
            t = time.perf_counter()
            gap = gap_tv(op, ys, iters=a.iters)[0] / scale
            print(f"scene{i}: GAP-TV {time.perf_counter() - t:.1f} s", flush=True)
            f.parent.mkdir(parents=True, exist_ok=True)
            np.save(f, gap.numpy())
        if net is None:
            continue
        t = time.perf_counter()
        with torch.no_grad():
            ours = net(ys, op)[0] / scale
        print(f"scene{i}: {a.model} {time.perf_counter() - t:.1f} s", flush=True)
        peak = float(torch.quantile(gap.flatten()[::97], 0.995))  # one display range for both methods
        for row, cube in zip(rgb_rows, (gap, ours)):
            row.append(_img(cube_preview_rgb((cube / peak).clamp(0, 1), WAVELENGTHS_28), a.size))
        if i in scenes[:2]:
            for cube in (gap, ours):
                band_rows.append([_img(cube[b] / peak, a.size) for b in BANDS])
    if net is None:
        return
    a.out.mkdir(parents=True, exist_ok=True)
    _grid(rgb_rows).save(a.out / "cassi_real_srgb.png", optimize=True)
    _grid(band_rows).save(a.out / "cassi_real_bands.png", optimize=True)
    print(f"wrote {a.out / 'cassi_real_srgb.png'} and {a.out / 'cassi_real_bands.png'}")


if __name__ == "__main__":
    main()
