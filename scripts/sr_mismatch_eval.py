#!/usr/bin/env python3
"""A wrong explicit kernel: PSNR of sr-lorun9 with the wrong kernel as given vs. with the mismatch guard.

    python scripts/sr_mismatch_eval.py --data DATA_ROOT [--dataset set5] [--scale 3] [--given K5] [--limit N]

Each image is degraded with a *true* kernel (plain decimation, PIL bicubic, K1, or the given kernel itself as a
control), then restored with ``--kernel GIVEN``: once with the kernel as given (what lorun did before the
guard), once through :func:`lorun_cli.restore.sr_kernel_for` (the warning and softening ``restore`` applies),
and with ``--kernel auto`` (its model and policy, as ``restore`` picks them). Bicubic: the aligned bicubic of
the top-left grid (centred for PIL inputs). PSNR on the Y channel (BT.601, 8-bit), border = scale.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

from lorun_cli import metrics
from lorun_cli.io import datasets as D
from lorun_cli.physics import sr_estimate as E
from lorun_cli.physics.sr import SRBlur, bicubic_on_grid, exposure_apply, exposure_map, exposure_unmap, load_kernels
from lorun_cli.restore import load_task_model, sr_kernel_for


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--dataset", default="set5")
    ap.add_argument("--scale", type=int, default=3)
    ap.add_argument("--given", default="K5")
    ap.add_argument("--limit", type=int)
    args = ap.parse_args()
    torch.set_num_threads(1)
    s, bank = args.scale, load_kernels()
    net, _ = load_task_model("sr", None)
    blind, _ = load_task_model("sr", None, kernel="auto")  # what `restore --kernel auto` runs (may be net itself)
    items = D.load_testset("sr", args.dataset, args.data)[: args.limit]
    given = bank[args.given]
    truths = {"delta": E.delta_kernel(), "pil-bicubic": E.pil_bicubic_kernel(s), "K1": bank["K1"],
              args.given: given}
    rows = {}
    for tname, k_true in truths.items():
        acc: dict[str, list[float]] = {m: [] for m in ("as_given", "guarded", "auto", "bicubic")}
        warned = 0
        for _name, x in items:
            x = x[..., : x.shape[-2] // s * s, : x.shape[-1] // s * s].unsqueeze(0)
            y = SRBlur(k_true, s).A(x)
            mcg = exposure_map(y)  # as restore runs: a dim image estimated and restored at the reference contrast
            ym = exposure_apply(y, mcg)
            k_guard, w_guard, rec = sr_kernel_for(ym, s, given)
            k_auto, w_auto, _ = sr_kernel_for(ym, s, None, blind.auto_policy)
            warned += int(rec["mismatch"])
            with torch.no_grad():
                outs = {"as_given": exposure_unmap(net(ym, SRBlur(given, s)), mcg),
                        "guarded": exposure_unmap(net(ym, SRBlur(k_guard, s, data_weight=w_guard)), mcg),
                        "auto": exposure_unmap(blind(ym, SRBlur(k_auto, s, data_weight=w_auto)), mcg),
                        "bicubic": bicubic_on_grid(y, s, E.grid_shift(k_true))}
            for m, o in outs.items():
                acc[m].append(metrics.score(o.clamp(0, 1), x, "y", border=s)["psnr"])
        rows[tname] = {m: round(statistics.fmean(v), 3) for m, v in acc.items()}
        rows[tname]["warned"] = f"{warned}/{len(items)}"
        print(f"true {tname:12s} given {args.given}: " + "  ".join(f"{m} {v}" for m, v in rows[tname].items()),
              flush=True)
    json.dump({"dataset": args.dataset, "scale": s, "given": args.given, "rows": rows,
               "protocol": metrics.PROTOCOL_TEXT["y"] + f", border {s}"}, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
