"""Inference-only CASSI probes on the validation regions (training scenes, never the test scenes).

    python scripts/cassi_inference_probe.py pnp FILE --iters 9,30 [--sigma 0.1 0.02] [--accelerated]
    python scripts/cassi_inference_probe.py extra FILE
    python scripts/cassi_inference_probe.py start FILE --starts 45x5,45x3,45x2,30x5,20x5,45x5r8,20x8r5@0.5

``pnp``: the shared denoiser of FILE (e.g. a phase-0 ``pretrain --denoise`` file) as a plug-and-play prior in
GAP iterations (the projection x + Φᵀ((y − Φx)/ΦΦᵀ), then the denoiser at a geometric σ schedule);
``--accelerated`` feeds the residual back into y (y_k+1 = y_k + (y − Φx_k+1)), as accelerated GAP does.
``extra``: a trained DUN run again after its K stages (twice through, its last stage repeated, its second half
again) — does inference gain from more iterations than it was trained with?
``start``: a trained DUN whose GAP-TV start is swapped for N iterations of M TV dual steps each (``NxM``; the
shipped starts use M = 5, ``classical.GAP_TV_INNER``), optionally with the TV on the R leading spectral components
(``NxMrR``) and another TV weight (``…@LAMBDA``; default the model's own) — can the stages take a cheaper start
without retraining? Also prints the start's own PSNR and its time per region.
Prints the PSNR of each validation region and their mean (float, 28-band mean).
"""

from __future__ import annotations

import argparse
import re
import time

import torch

from lorun_cli import models
from lorun_cli.classical import gap_tv
from lorun_cli.metrics import psnr
from lorun_cli.train.config import TrainConfig
from lorun_cli.train.tasks import TaskData


def val_items(model: torch.nn.Module, data: str) -> list:
    td = TaskData(TrainConfig(task="cassi", data=data, patch=64, batch=1), model)
    return [(x, y, op if op is not None else model.op) for _, x, y, op in td.val_items(torch.device("cpu"))]


def pnp(model: torch.nn.Module, items: list, iters: int, s0: float, s1: float, accelerated: bool) -> list[float]:
    d = model.denoisers[0]
    out = []
    for x, y, op in items:
        info, g = op.side_info(y), op.gram(y).clamp_min(1e-6)
        xk, yk = op.init(y), y.clone()
        for i in range(iters):
            z = xk + op.A_adjoint(((yk if accelerated else y) - op.A(xk)) / g)
            xk = d(z, torch.full((1,), s0 * (s1 / s0) ** (i / max(1, iters - 1))), info)
            if accelerated:
                yk = yk + (y - op.A(xk))
        out.append(float(psnr(xk.clamp(0, 1), x)))
    return out


def stages(model: torch.nn.Module, op, y: torch.Tensor, xk: torch.Tensor, ks: range | list[int]) -> torch.Tensor:
    """Run the DUN's stages ``ks`` (data step, then that stage's denoiser) from ``xk``."""
    s, sig, info = model._data_scalar(), model.sigmas(), op.side_info(y)
    for k in ks:
        xk = model.pmm(k, model.data_step(op, xk, y, s[k]), sig[k], info)
    return xk


def extra(model: torch.nn.Module, items: list) -> dict[str, list[float]]:
    res: dict[str, list[float]] = {}
    k_all = model.strategy.stages
    for x, y, op in items:
        base = stages(model, op, y, model.initial_estimate(op, y), range(k_all))
        variants = {"as trained": base, "twice through": stages(model, op, y, base, range(k_all)),
                    "last stage +1": stages(model, op, y, base, [k_all - 1]),
                    "last stage +3": stages(model, op, y, base, [k_all - 1] * 3),
                    "second half again": stages(model, op, y, base, range(k_all // 2, k_all))}
        for name, v in variants.items():
            res.setdefault(name, []).append(float(psnr(v.clamp(0, 1), x)))
    return res


def start(model: torch.nn.Module, items: list, iters: int, inner: int, rank: int = 0,
          lam: float | None = None) -> tuple[list[float], list[float], float]:
    """PSNR of the model's stages and of the start itself from x⁰ = ``iters`` GAP-TV iterations of ``inner`` TV
    dual steps (TV on the ``rank`` leading spectral components, 0: every band; λ: the model's own when None), and
    the start's seconds per region."""
    k_all, lam = model.strategy.stages, model.x0.lam if lam is None else lam
    t = time.perf_counter()
    x0 = [gap_tv(op, y, lam=lam, iters=iters, inner=inner, rank=rank) for _, y, op in items]
    sec = (time.perf_counter() - t) / len(items)
    out = [float(psnr(stages(model, op, y, s, range(k_all)).clamp(0, 1), x)) for s, (x, y, op) in zip(x0, items)]
    return out, [float(psnr(s.clamp(0, 1), x)) for s, (x, _, _) in zip(x0, items)], sec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=["pnp", "extra", "start"])
    ap.add_argument("model")
    ap.add_argument("--data", default=None, help="data root (default: $LORUN_DATA)")
    ap.add_argument("--iters", default="9,30")
    ap.add_argument("--sigma", nargs=2, type=float, default=[0.1, 0.02])
    ap.add_argument("--accelerated", action="store_true")
    ap.add_argument("--starts", default="45x5,45x3,45x2,30x5,20x5", help="start: NxM, comma list")
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = models.load_model(args.model).prepare_inference()
    items = val_items(model, args.data)
    with torch.no_grad():
        if args.mode == "pnp":
            for n in (int(v) for v in args.iters.split(",")):
                t = time.time()
                v = pnp(model, items, n, *args.sigma, args.accelerated)
                print(f"{n} iterations: {[round(a, 2) for a in v]} mean {sum(v) / len(v):.2f} dB "
                      f"({time.time() - t:.1f} s)")
        elif args.mode == "start":
            for spec in args.starts.split(","):
                m = re.fullmatch(r"(\d+)x(\d+)(?:r(\d+))?(?:@([0-9.]+))?", spec)
                if not m:
                    raise SystemExit(f"bad start {spec!r}: use NxM, NxMrR or NxMrR@LAMBDA")
                n, inner, rank = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
                v, v0, sec = start(model, items, n, inner, rank, float(m.group(4)) if m.group(4) else None)
                print(f"{spec}: {[round(a, 2) for a in v]} mean {sum(v) / len(v):.2f} dB "
                      f"(start {sum(v0) / len(v0):.2f} dB, {sec:.2f} s per region)")
        else:
            for name, v in extra(model, items).items():
                print(f"{name:18s} {[round(a, 2) for a in v]} mean {sum(v) / len(v):.2f} dB")


if __name__ == "__main__":
    main()
