#!/usr/bin/env python3
"""Real-photo-like SR inputs through the ``lorun restore`` command: a test image downscaled with Pillow's bicubic
resize and saved as a JPEG (Pillow's defaults: 4:2:0 chroma), restored with ``--kernel auto``, against the same
pixels handed over as a PNG (restore then sees no JPEG tables: the data step as before JPEG inputs were weighted)
and Pillow's bicubic upscaling of the same input.

    python scripts/sr_jpeg_test.py --data DATA_ROOT [--dataset cbsd68] [--limit 10] [--qualities 90,75,50]
        [--grid auto|centre|top-left]

Quality 100 saves the downscaled image as a PNG (no JPEG); ``--grid`` is handed to every restore.

Prints one JSON line per case and a summary per scale and quality (PSNR on the BT.601 Y channel of the 8-bit
outputs, border = scale, against the mod-cropped HR image).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

from lorun_cli import metrics
from lorun_cli.io import datasets as DS
from lorun_cli.io import images
from lorun_cli.restore import PROTOCOL


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--dataset", default="cbsd68")
    ap.add_argument("--limit", type=int, default=10)
    ap.add_argument("--scales", default="2,3,4")
    ap.add_argument("--qualities", default="90,75,50")
    ap.add_argument("--grid", default="auto")
    args = ap.parse_args()
    tests = DS.load_testset("sr", args.dataset, args.data)[: args.limit]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        for s in (int(v) for v in args.scales.split(",")):
            for name, hr in tests:
                x = DS.modcrop(hr, s)
                lr = images.to_pil(x).resize((x.shape[-1] // s, x.shape[-2] // s), Image.BICUBIC)
                for q in (int(v) for v in args.qualities.split(",")):
                    if q >= 100:
                        lr.save(d / "in.png")
                        lr.save(d / "in.jpg.png")  # no JPEG at all: both runs read a PNG
                    else:
                        lr.save(d / "in.jpg", quality=q)
                        Image.open(d / "in.jpg").save(d / "in.png")  # the same pixels, no JPEG tables
                    rec = {"scale": s, "image": name, "q": q}
                    for tag, src in (("jpeg", "in.jpg" if q < 100 else "in.jpg.png"), ("png", "in.png")):
                        r = subprocess.run(["lorun", "--threads", "1", "-q", "restore", "--task", "sr", "--scale",
                                            str(s), "--grid", args.grid, src, "-o", f"out_{tag}.png", "--force",
                                            "--json"], cwd=d,
                                           capture_output=True, text=True, check=True)
                        rec[f"{tag}_weight"] = json.loads(r.stdout)[0]["kernel_estimate"]["data_weight"]
                        out = images.read_image(d / f"out_{tag}.png", "rgb")
                        rec[tag] = round(metrics.score(out, x, PROTOCOL["sr"], border=s)["psnr"], 3)
                    Image.open(d / "in.png").resize((x.shape[-1], x.shape[-2]), Image.BICUBIC).save(d / "bic.png")
                    bic = images.read_image(d / "bic.png", "rgb")
                    rec["bicubic"] = round(metrics.score(bic, x, PROTOCOL["sr"], border=s)["psnr"], 3)
                    rows.append(rec)
                    print(json.dumps(rec), flush=True)
    for s in sorted({r["scale"] for r in rows}):
        for q in sorted({r["q"] for r in rows}, reverse=True):
            rs = [r for r in rows if r["scale"] == s and r["q"] == q]
            jb = [r["jpeg"] - r["bicubic"] for r in rs]
            pb = [r["png"] - r["bicubic"] for r in rs]
            print(f"x{s} q{q} ({len(rs)} images): as JPEG (weighted) − bicubic {statistics.mean(jb):+.2f} dB "
                  f"(worst {min(jb):+.2f}, {sum(v < 0 for v in jb)} under); as PNG (not weighted) − bicubic "
                  f"{statistics.mean(pb):+.2f} dB (worst {min(pb):+.2f}, {sum(v < 0 for v in pb)} under)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
