"""CASSI ablation at equal training minutes: one variant per call, validation PSNR on the held-out regions.

Each variant trains a share9 network for ``--minutes`` of wall time (validation time excluded) on one
thread and prints the validation PSNR (float, two 256×256 regions of training scenes, per-band mean) at the
start and the end. Variants switch off one ingredient of the shipped CASSI recipe at a time::

    python scripts/cassi_ablation.py --name recipe --minutes 6
    python scripts/cassi_ablation.py --name old --old --minutes 6      # unet/small, 30 GAP-TV start
    python scripts/cassi_ablation.py --name no-cond --no-cond --minutes 6
    python scripts/cassi_ablation.py --name denoise-first --denoise-minutes 2 --minutes 6

Results go to ``--log`` (JSON lines) and docs/CASSI.md quotes them.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from types import SimpleNamespace

import torch

from lorun_cli import models
from lorun_cli.metrics import psnr
from lorun_cli.train.loop import denoise_step, l2_loss, make_optimizer
from lorun_cli.train.tasks import TaskData
from lorun_cli.unfold import WarmStart


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--name", required=True)
    p.add_argument("--data", default=None)
    p.add_argument("--minutes", type=float, default=6.0)
    p.add_argument("--denoise-minutes", type=float, default=0.0, help="of --minutes, spent on phase 0 first")
    p.add_argument("--old", action="store_true", help="the previous recipe: unet/small, x0 = 30 GAP-TV iterations")
    p.add_argument("--unet", action="store_true", help="unet/small instead of the ResUNet")
    p.add_argument("--no-cond", action="store_true", help="denoiser without the mask side information")
    p.add_argument("--no-schedule", action="store_true", help="every stage starts at σ = 0.1")
    p.add_argument("--plain-adam", action="store_true", help="one Adam group (eps 1e-8 on the stage scalars too)")
    p.add_argument("--patch", type=int, default=64)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--log", default="cassi_ablation.jsonl")
    a = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    kw: dict = {}
    if a.old or a.unet:
        kw = {"denoiser": "unet"}
    if a.old:
        kw["x0"] = WarmStart("gap-tv", 30)
    if a.no_cond and not (a.old or a.unet):
        kw["denoiser_kwargs"] = {k: v for k, v in models.TASK_DEFAULTS["cassi"]["small"].items() if k != "cond"}
    if a.no_schedule or a.old:
        kw["init"] = (0.01, 1e-4)
    net = models.build_model("cassi", "share9", **kw)
    cfg = SimpleNamespace(task="cassi", data=a.data, patch=a.patch, val_limit=None, batch=a.batch, noise=None)
    td = TaskData(cfg, net)
    opt = torch.optim.Adam(net.parameters(), lr=a.lr) if a.plain_adam or a.old else make_optimizer(net, a.lr)
    gen = torch.Generator().manual_seed(0)
    cpu = torch.device("cpu")
    val_items = list(td.val_items(cpu))

    def val() -> float:
        net.eval()
        with torch.no_grad():
            v = [psnr(net(y, op).clamp(0, 1), x) for _, x, y, op in val_items]
        net.train()
        return sum(v) / len(v)

    start = val()
    t0, step, total = time.monotonic(), 0, a.minutes * 60
    while (el := time.monotonic() - t0) < total:
        lr = a.lr * min(1.0, (step + 1) / 30) * (0.5 + 0.5 * math.cos(math.pi * el / total))
        for g in opt.param_groups:
            g["lr"] = lr
        if el < a.denoise_minutes * 60:
            loss = denoise_step(net, td, gen, cpu, 0.2)
        else:
            x, y, op = td.batch(gen, cpu)
            loss = l2_loss(net(y, op), x)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        step += 1
    end = val()
    rec = {"name": a.name, "minutes": a.minutes, "denoise_minutes": a.denoise_minutes, "steps": step,
           "val_start": round(start, 3), "val_end": round(end, 3), "gain": round(end - start, 3),
           "args": vars(a)}
    print(json.dumps(rec), flush=True)
    with open(a.log, "a") as f:
        f.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
