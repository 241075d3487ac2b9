#!/usr/bin/env python3
"""Check of docs/logs/sr-given-floor-prereg.md: an explicit kernel narrower than the networks' floor, as given and
widened to it (held-out Train400 images or the CAVE training scenes; never a test set).

    python scripts/sr_floor_check.py --data DATA [--start 20 --limit 20] [--images cave] [--cases F.jsonl]

Every image × scale × true kernel (delta, isotropic Gaussians σ = 0.3 and 0.4 px), noise-free float LR, restored
by sr-lorun9 as ``restore --kernel <file>`` runs it (``restore.sr_kernel_for``: the estimate's mismatch check and
noise weight) and with that kernel widened to ``sr_estimate.MIN_WIDTH``. Δ = PSNR(widened) − PSNR(as given) on the
gray image (Y), 8-bit, border = scale; bicubic on the top-left grid for reference.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_sr_estimator import cave_held_out, held_out_files, held_out_hr  # noqa: E402

from lorun_cli import metrics  # noqa: E402
from lorun_cli.physics import sr_estimate as E  # noqa: E402
from lorun_cli.physics.sr import SRBlur, bicubic_on_grid, exposure_apply, exposure_map, exposure_unmap  # noqa: E402
from lorun_cli.restore import PROTOCOL, load_task_model, sr_kernel_for  # noqa: E402

KERNELS = {"delta": E.delta_kernel(), "g0.3": E.gaussian_kernel(0.3, 0.3, 0.0)[0],
           "g0.4": E.gaussian_kernel(0.4, 0.4, 0.0)[0]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--start", type=int, default=20)
    ap.add_argument("--limit", type=int, default=20)
    ap.add_argument("--scales", default="2,3,4")
    ap.add_argument("--images", choices=("train400", "cave"), default="train400")
    ap.add_argument("--cases", type=Path, help="one JSON line per case")
    a = ap.parse_args()
    torch.set_num_threads(1)
    net, _ = load_task_model("sr", None)
    if a.images == "cave":
        srcs = [g for _, g in cave_held_out(a.data)[a.start : a.start + a.limit]]
    else:
        srcs = held_out_files(a.data, a.start, a.limit)
    log = a.cases.open("w") if a.cases else None
    psnr = lambda out, x, s: metrics.score(out.clamp(0, 1), x, PROTOCOL["sr"], border=s)["psnr"]  # noqa: E731
    cells: dict[tuple[str, int], list[float]] = {}
    for s in (int(v) for v in a.scales.split(",")):
        for i, src in enumerate(srcs, start=a.start):
            x = held_out_hr(src, s)
            for name, kt in KERNELS.items():
                kt = (kt / kt.sum()).float()
                with torch.no_grad():
                    y = SRBlur(kt, s).A(x)
                    mcg = exposure_map(y)
                    ym = exposure_apply(y, mcg)
                    k, w, _ = sr_kernel_for(ym, s, kt, exposure_gain=mcg[2])
                    given = psnr(exposure_unmap(net(ym, SRBlur(k, s, data_weight=w)), mcg), x, s)
                    wide = psnr(exposure_unmap(net(ym, SRBlur(E.widened_kernel(k), s, data_weight=w)), mcg), x, s)
                    bic = psnr(bicubic_on_grid(y, s), x, s)
                d = wide - given
                cells.setdefault((name, s), []).append(d)
                if log:
                    log.write(json.dumps({"image": i, "scale": s, "kernel": name, "given_minus_bicubic":
                                          round(given - bic, 3), "delta": round(d, 3)}) + "\n")
                    log.flush()
        print(" ".join(f"{n} x{sc}: {sum(v) / len(v):+.3f} (min {min(v):+.3f})"
                       for (n, sc), v in cells.items() if sc == s), flush=True)
    every = [d for v in cells.values() for d in v]
    under = sum(d < -0.1 for d in every)
    print(f"{a.images} {a.start}-{a.start + len(srcs) - 1}: {len(every)} cases, mean Δ {sum(every) / len(every):+.3f}"
          f" dB, under −0.1 dB: {under} ({100 * under / len(every):.1f} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
