#!/usr/bin/env python3
"""The README picture for ``--kernel auto``: one photo, downscaled ×3 with PIL's bicubic, restored five ways.

    python scripts/sr_auto_figure.py --data DATA_ROOT --out docs/sr_auto.png

Panels: the original crop, bicubic (centred, PIL's own upscaling), ``--kernel K5`` as the network would use it
without the mismatch guard (the kernel is wrong: the photo was never blurred), ``--kernel K5`` as lorun runs it
now (warned, softened toward the estimate), ``--kernel auto --grid auto`` (the estimator's own guess of where the
LR pixels sit) and ``--kernel auto`` as a file is restored by default (``--grid centre``: the resizers' grid).
Each result comes from
:func:`lorun_cli.restore.run_restore` on the downscaled file (except the unguarded panel, which calls the network
with K5 directly); PSNR on the Y channel (BT.601, 8-bit), border 3, against the original crop.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from lorun_cli import metrics
from lorun_cli import restore as R
from lorun_cli.io import images
from lorun_cli.physics.sr import SRBlur, load_kernels

PHOTO = "sr/set14/zebra.bmp"  # a photo no reported number is measured on
CROP = (60, 168, 276, 384)  # left, top, right, bottom in the HR photo (216 × 216, a multiple of 3)
SCALE = 3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path("docs/sr_auto.png"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    hr = Image.open(args.data / PHOTO).convert("RGB").crop(CROP)
    lr = hr.resize((hr.width // SCALE, hr.height // SCALE), Image.BICUBIC)
    ref = torch.from_numpy(np.asarray(hr)).permute(2, 0, 1).float() / 255
    panels: list[tuple[str, Image.Image]] = [("original", hr)]
    panels.append(("bicubic", lr.resize(hr.size, Image.BICUBIC)))
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        lr_path = Path(tmp) / "photo.png"
        lr.save(lr_path)
        net, _ = R.load_task_model("sr", None)
        y = images.read_image(lr_path, "rgb").unsqueeze(0)
        with torch.no_grad():
            raw = net(y, SRBlur(load_kernels()["K5"], SCALE))[0].clamp(0, 1)
        panels.append(("--kernel K5, unguarded", images.to_pil(raw)))
        for kernel, grid, label in (("K5", None, "--kernel K5 (warned, softened)"),
                                    ("auto", "auto", "auto, --grid auto"), ("auto", None, "--kernel auto")):
            out = Path(tmp) / f"{kernel}-{grid}.png"
            R.run_restore([lr_path], R.RestoreOptions(task="sr", scale=SCALE, kernel=kernel, grid=grid, output=out),
                          on_note=notes.append)
            panels.append((label, Image.open(out).convert("RGB")))
    for n in notes:
        print("note:", n)
    w, h = hr.size
    pad, text_h = 6, 34
    sheet = Image.new("RGB", (len(panels) * (w + pad) - pad, h + text_h), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (label, im) in enumerate(panels):
        x0 = i * (w + pad)
        sheet.paste(im, (x0, text_h))
        t = torch.from_numpy(np.asarray(im)).permute(2, 0, 1).float() / 255
        psnr = "" if i == 0 else f"{metrics.score(t, ref, 'y', border=SCALE)['psnr']:.2f} dB"
        draw.text((x0 + 2, 2), label, fill="black")
        draw.text((x0 + 2, 17), psnr, fill="black")
        print(f"{label}: {psnr}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_name(args.out.name + ".tmp.png")
    sheet.save(tmp_out)
    tmp_out.replace(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
