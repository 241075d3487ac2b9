#!/usr/bin/env python3
"""Which LR grid a real file's ``--kernel auto`` restore should assume, on held-out *training* images (never a test
set). The rule and its reasons: docs/logs/sr-grid-prereg.md.

    python scripts/sr_grid_check.py run START LIMIT [SCALES] [FAMILIES] [GRIDS] [VIEWS] [SURE]  # JSON, a line per case
    python scripts/sr_grid_check.py verdict RUN.jsonl [...]
    python scripts/sr_grid_check.py compare SHIPPED.jsonl PROPOSAL.jsonl   # docs/logs/sr-sure-prereg.md, part 3

SURE: ``sr_estimate.AUTO_SURE`` as 'FROM,TO,SPREAD,KEEP', 'default' or 'none'. ``compare`` scores the resizer
families under ``centre`` and the others under ``top-left``, case by case.

Images: the last Train400 images (``train_sr_estimator.held_out_files``), gray, fed to the RGB network in all three
channels. Resizer families: Pillow ``resize`` of the 8-bit image with each filter in ``RESIZERS`` (baseline: Pillow's
bicubic upscaling, the same centred grid); top-left families: ``bench.draw_degradation`` at seed 100, rounded to
8 bit (baseline: bicubic on the true kernel's grid). Each case is restored by sr-lorun9 with the kernel and data
weight ``restore.sr_kernel_for`` gives under each ``--grid``; PSNR − baseline on the gray image, 8-bit, border = scale.
"""

from __future__ import annotations

import json
import statistics as st
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_sr_estimator import gray8, gray_input, held_out_files, held_out_hr  # noqa: E402

from lorun_cli import metrics  # noqa: E402
from lorun_cli.bench import draw_degradation  # noqa: E402
from lorun_cli.facts import SR_GRIDS  # noqa: E402
from lorun_cli.io import datasets as DS  # noqa: E402
from lorun_cli.physics import sr_estimate as E  # noqa: E402
from lorun_cli.physics.sr import SRBlur, bicubic_on_grid  # noqa: E402
from lorun_cli.restore import PROTOCOL, load_task_model, sr_kernel_for  # noqa: E402

RESIZERS = {"pil-bicubic": Image.BICUBIC, "pil-lanczos": Image.LANCZOS, "pil-bilinear": Image.BILINEAR,
            "pil-box": Image.BOX}
EXTRA = {"pil-nearest": Image.NEAREST}  # "downscaled without blur" by a resizer (not part of the rule's families)
FILTERS = {**RESIZERS, **EXTRA}
TOP_LEFT = ("delta", "gauss", "bundled")


def run(start: int, limit: int, scales: list[int], families: list[str], grids: tuple[str, ...] = SR_GRIDS,
        views: int | None = None) -> None:
    """One JSON line per case: PSNR − baseline under each of ``grids``; ``views``: the estimate's views on a named
    grid (``sr_estimate.GRID_VIEWS`` when None)."""
    torch.set_num_threads(1)
    if views is not None:
        E.GRID_VIEWS = views
    net, _ = load_task_model("sr", None)
    files = held_out_files(DS.data_root(None), start, limit)
    for s in scales:
        for i, f in enumerate(files, start=start):
            x = held_out_hr(f, s)
            hr8 = gray8(x)
            h, w = hr8.shape
            for fam in families:
                with torch.no_grad():
                    if fam in FILTERS:
                        lr = Image.fromarray(hr8).resize((w // s, h // s), FILTERS[fam])
                        y = gray_input(np.asarray(lr))
                        bic = gray_input(np.asarray(lr.resize((w, h), Image.BICUBIC)))
                    else:
                        _, k_true, _ = draw_degradation(fam, s, i, 100)
                        y = gray_input(gray8(SRBlur(k_true, s).A(x)))
                        bic = bicubic_on_grid(y, s, E.grid_shift(k_true))
                    p_bic = metrics.score(bic.clamp(0, 1), x, PROTOCOL["sr"], border=s)["psnr"]
                    rec = {"s": s, "i": i, "fam": fam, "bic": round(p_bic, 3)}
                    for grid in grids:
                        k, weight, _ = sr_kernel_for(y, s, None, net.auto_policy, grid=grid)
                        out = net(y, SRBlur(k, s, data_weight=weight)).clamp(0, 1).mean(1, keepdim=True)
                        p = metrics.score(out.expand(1, 3, -1, -1), x, PROTOCOL["sr"], border=s)["psnr"]
                        rec[grid] = round(p - p_bic, 3)
                print(json.dumps(rec), flush=True)


def verdict(files: list[str]) -> None:
    """Per family and grid: mean PSNR − baseline, cases under it, worst case; then the rule's verdict."""
    rows = [json.loads(line) for f in files for line in open(f) if line.startswith("{")]
    print(f"{len(rows)} cases")
    for fam in (*FILTERS, *TOP_LEFT):
        rs = [r for r in rows if r["fam"] == fam]
        if rs:
            print(f"{fam:13s} n={len(rs):3d} " + " | ".join(
                f"{g} {st.mean(r[g] for r in rs):+.3f} (under {sum(r[g] < 0 for r in rs)}, worst "
                f"{min(r[g] for r in rs):+.2f})" for g in SR_GRIDS))
    rz = [r for r in rows if r["fam"] in RESIZERS]
    if not rz:
        print("no cases of the rule's resizer families: no verdict")
        return
    mean = {g: st.mean(r[g] for r in rz) for g in SR_GRIDS}
    under = {g: sum(r[g] < 0 for r in rz) for g in SR_GRIDS}
    fam_ok = all(st.mean(r["centre"] for r in rz if r["fam"] == f) >= st.mean(r["auto"] for r in rz if r["fam"] == f)
                 - 0.05 for f in RESIZERS if any(r["fam"] == f for r in rz))
    print(f"resizers n={len(rz)}: mean auto {mean['auto']:+.3f} centre {mean['centre']:+.3f}; under bicubic auto "
          f"{under['auto']} centre {under['centre']}; every family within 0.05 dB: {fam_ok}")
    ok = mean["centre"] >= mean["auto"] and under["centre"] <= under["auto"] and fam_ok
    print("VERDICT:", "real files default to centre" if ok else "the default stays auto")


def compare(shipped: str, proposal: str) -> None:
    """Two runs of the same cases: resizer families under ``centre``, the others under ``top-left``; per family the
    mean gain, cases under the baseline and the worst case of each, then the three tests of the pre-registered rule
    (docs/logs/sr-sure-prereg.md): higher mean, worst family not lower by more than 0.02 dB, no more cases under."""
    def load(path: str) -> dict[tuple, float]:
        rows = [json.loads(line) for line in open(path) if line.startswith("{")]
        return {(r["s"], r["i"], r["fam"]): r["centre" if r["fam"] in FILTERS else "top-left"] for r in rows}
    a, b = load(shipped), load(proposal)
    keys = sorted(set(a) & set(b))
    fams = sorted({k[2] for k in keys})
    means = {}
    for f in fams:
        va, vb = [a[k] for k in keys if k[2] == f], [b[k] for k in keys if k[2] == f]
        means[f] = (st.mean(va), st.mean(vb))
        print(f"{f:13s} n={len(va):3d} shipped {means[f][0]:+.3f} (under {sum(v < 0 for v in va)}, worst "
              f"{min(va):+.2f}) | proposal {means[f][1]:+.3f} (under {sum(v < 0 for v in vb)}, worst {min(vb):+.2f})")
    ma, mb = st.mean(a[k] for k in keys), st.mean(b[k] for k in keys)
    wa, wb = min(m[0] for m in means.values()), min(m[1] for m in means.values())
    ua, ub = sum(a[k] < 0 for k in keys), sum(b[k] < 0 for k in keys)
    print(f"{len(keys)} cases: mean {ma:+.3f} → {mb:+.3f}; worst family {wa:+.3f} → {wb:+.3f}; under {ua} → {ub}; "
          f"changed {sum(a[k] != b[k] for k in keys)}")
    print("PASS" if mb > ma and wb >= wa - 0.02 and ub <= ua else "FAIL")


if __name__ == "__main__":
    if sys.argv[1] == "verdict":
        verdict(sys.argv[2:])
    elif sys.argv[1] == "compare":
        compare(sys.argv[2], sys.argv[3])
    else:
        scales = sys.argv[4] if len(sys.argv) > 4 else "2,3,4"
        fams = sys.argv[5].split(",") if len(sys.argv) > 5 else [*RESIZERS, *TOP_LEFT]
        grids = tuple(sys.argv[6].split(",")) if len(sys.argv) > 6 else SR_GRIDS
        views = int(sys.argv[7]) if len(sys.argv) > 7 and sys.argv[7] != "default" else None
        sure = sys.argv[8] if len(sys.argv) > 8 else "default"
        if sure != "default":
            E.AUTO_SURE = None if sure == "none" else tuple(float(v) for v in sure.split(","))
        run(int(sys.argv[2]), int(sys.argv[3]), [int(v) for v in scales.split(",")], fams, grids, views)
