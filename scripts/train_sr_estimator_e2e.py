#!/usr/bin/env python3
"""Fine-tune the SR kernel estimator end to end, through a frozen SR network, on the restoration loss.

    python scripts/train_sr_estimator_e2e.py --data DATA_ROOT --out runs/est-e2e.safetensors \
        [--model sr-lorun9] [--init sr-kernel-estimator] [--device cuda] --steps 4000 --max-minutes 4

``train_sr_estimator.py`` trains the estimator to match kernels (relative L2), a proxy: what ``--kernel auto`` needs is
the kernel that, after the shipped rules (``sr_estimate.kernel_policy``: centre expansion, blend with a narrow kernel,
minimum width) and the noise-driven data weight, restores best. Here each step degrades an HR crop (``--context``
px, one scale per step, the SR training pipeline's broad degradations ``train.data.sample_sr_training_degradation``,
half the crops first softened by a Gaussian that belongs to the content), the estimator reads the LR image of the
whole crop, its kernel goes through the shipped rules exactly as ``restore --kernel auto`` applies them (differentiably:
widths, centres and weights are taken as constants, shapes and shifts carry gradients; the centre head's output
moves the kernel), and the frozen SR network restores an aligned ``--patch`` crop with it. Loss: the restoration MSE
(×1000; ``--loss log``: the mean of each sample's log MSE, so that one badly restored crop does not set the step)
plus ``--kernel-weight`` × the kernel-matching loss of ``train_sr_estimator.losses`` (which keeps the kernel
meaningful for the mismatch warning and the report). Only the estimator learns; its width calibration stays the
initial file's.

Images: T91 and Train400 without its last 40 (held out, as in ``train_sr_estimator.py``), as gray images in the
three channels the RGB network takes. Minutes are wall minutes (a GPU run) — ``--threads`` sets CPU threads.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_sr_estimator import SOFT_P, SOFT_RANGE, load_images, losses  # noqa: E402

from lorun_cli.io.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from lorun_cli.io.weights import resolve_model  # noqa: E402
from lorun_cli.models import load_model  # noqa: E402
from lorun_cli.physics import sr_estimate as E  # noqa: E402
from lorun_cli.physics.sr import SRBlur, load_kernels  # noqa: E402
from lorun_cli.train import data as D  # noqa: E402


def batch(images: list[torch.Tensor], n: int, ctx: int, gen: torch.Generator, kernels: dict):
    """(scale, HR crops (n, 1, ctx, ctx), true kernels (n, 25, 25), σ (n,)); soft content included."""
    scale, k, _, sigma = D.sample_sr_training_degradation(n, kernels, gen, perturb_share=0.0)
    pool = [im for im in images if min(im.shape[-2:]) >= ctx]
    crops = []
    for _ in range(n):
        im = pool[int(torch.randint(len(pool), (1,), generator=gen))]
        top = int(torch.randint(im.shape[-2] - ctx + 1, (1,), generator=gen))
        left = int(torch.randint(im.shape[-1] - ctx + 1, (1,), generator=gen))
        c = torch.rot90(im[:, top : top + ctx, left : left + ctx], int(torch.randint(4, (1,), generator=gen)), (-2, -1))
        if bool(torch.rand((), generator=gen) < SOFT_P):
            w = SOFT_RANGE[0] + (SOFT_RANGE[1] - SOFT_RANGE[0]) * float(torch.rand((), generator=gen))
            c = SRBlur(E.gaussian_kernel(w, w, 0.0).float(), 1).A(c[None])[0]
        crops.append(c)
    return scale, torch.stack(crops), k.float(), sigma.float()


def estimated_kernels(net: E.KernelEstimator, pred: tuple, s: int):
    """What ``restore --kernel auto`` hands the data step for the estimator's outputs ``pred`` (its ``predict``),
    differentiably (``sr_estimate.predicted_kernels``, as ``_predict`` forms them, then ``kernel_policy(None, ·)``,
    the blend rules): (kernels (B, 25, 25) on the CPU, data weights (B,), constants)."""
    logits, u, centre = pred
    ks = E.predicted_kernels(net, logits, centre, s)
    use = torch.stack([E.kernel_policy(None, k)[0] for k in ks])
    noise = E.noise_from_u(u.detach()).float().cpu()
    gamma = torch.tensor([E.data_weight_policy(float(v), explicit=False) for v in noise])
    return use, gamma


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=os.environ.get("LORUN_DATA"))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--model", default="sr-lorun9", help="the frozen SR network (file or manifest name)")
    ap.add_argument("--init", default="sr-kernel-estimator", help="the estimator to start from (file or name)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--context", type=int, default=144, help="HR side of the crop the estimator reads (LR: /scale)")
    ap.add_argument("--patch", type=int, default=72, help="HR side of the restored crop (inside the context)")
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--kernel-weight", type=float, default=0.2, help="weight of the kernel-matching loss")
    ap.add_argument("--loss", choices=("mse", "log"), default="mse", help="restoration term: 1000 × the batch MSE, or "
                    "the mean of each sample's log MSE (every sample weighs alike in dB, as the held-out score does)")
    ap.add_argument("--accumulate", type=int, default=1, help="batches whose gradients make one step")
    ap.add_argument("--max-minutes", type=float, default=5.0, help="wall-time budget")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--val-every", type=int, default=250)
    ap.add_argument("--print-every", type=int, default=25, help="steps between training-loss lines")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.data is None:
        sys.exit("train_sr_estimator_e2e: pass --data DIR or set LORUN_DATA")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    dev = torch.device(args.device)
    train, val = load_images(args.data)
    kernels = load_kernels()
    sr = load_model(resolve_model(args.model)).to(dev).eval()  # the training forward (autograd to the kernel)
    sr.requires_grad_(False)
    init_path = resolve_model(args.init) if not Path(args.init).is_file() else Path(args.init)
    tensors, meta = load_checkpoint(init_path)
    est = E.build_estimator(meta)
    est.load_state_dict({k: v.float() for k, v in tensors.items()})
    est.width_scale = {int(s): float(c) for s, c in meta.get("estimator", {}).get("width_scale", {}).items()}
    est.to(dev).train()
    body = [p for n, p in est.named_parameters() if n != "atom_logits"]
    opt = torch.optim.Adam([{"params": body}, {"params": [est.atom_logits], "lr": args.lr * 0.5}], lr=args.lr)
    gen = torch.Generator().manual_seed(args.seed)
    vgen = torch.Generator().manual_seed(4321)
    vsets = [batch(val, 16, args.context, vgen, kernels) for _ in range(3)]

    def step_loss(s: int, big: torch.Tensor, k: torch.Tensor, sigma: torch.Tensor, g: torch.Generator):
        """(restoration MSE per sample, kernel loss) of one batch."""
        big, sig = big.to(dev), sigma.to(dev).view(-1, 1, 1, 1)
        blur = SRBlur(k.to(dev), s)
        y_big = blur.A(big)
        y_big = y_big + sig * torch.randn(y_big.shape, generator=g).to(dev)
        pred = est.predict(y_big, s)
        use, gamma = estimated_kernels(est, pred, s)
        p, ctx = args.patch, args.context
        oy, ox = (s * int(torch.randint((ctx - p) // s + 1, (1,), generator=g)) for _ in range(2))
        x = big[..., oy : oy + p, ox : ox + p].expand(-1, 3, -1, -1).contiguous()
        y = blur.A(x)
        y = y + sig * torch.randn(y.shape, generator=g).to(dev)
        out = sr(y, SRBlur(use.to(dev), s, data_weight=gamma.to(dev)))
        rel, spec, du, _, cerr = losses(est, s, y_big, k.to(dev), sigma.to(dev), pred=pred)
        kl = rel.mean() + 3 * spec.mean() + 0.5 * du.mean() + 0.25 * cerr.mean()
        return (out.float() - x).square().mean((1, 2, 3)), kl

    def validate() -> dict[str, float]:
        est.eval()
        g = torch.Generator().manual_seed(99)
        mse, kl = [], []
        with torch.no_grad():
            for s, big, k, sigma in vsets:
                m, q = step_loss(s, big, k, sigma, g)
                mse += m.tolist()
                kl.append(float(q))
        est.train()
        return {"psnr": round(-10 * math.log10(sum(mse) / len(mse)), 4),
                "psnr_per_sample": round(sum(-10 * math.log10(v) for v in mse) / len(mse), 4),
                "kernel_loss": round(sum(kl) / len(kl), 4)}

    log = [{"step": 0, **validate()}]
    print("val", json.dumps(log[-1]), flush=True)
    t0, step, run = time.time(), 0, None
    while step < args.steps and (time.time() - t0) / 60 < args.max_minutes:
        opt.zero_grad()
        total = 0.0
        for _ in range(args.accumulate):  # one step from accumulate × batch crops (each part one scale)
            s, big, k, sigma = batch(train, args.batch, args.context, gen, kernels)
            per, kl = step_loss(s, big, k, sigma, gen)
            mse = per.mean()
            rest = 1000 * mse if args.loss == "mse" else per.clamp_min(1e-8).log().mean()
            loss = (rest + args.kernel_weight * kl) / args.accumulate
            loss.backward()
            total += float(loss.detach())
        torch.nn.utils.clip_grad_norm_(est.parameters(), 1.0)
        opt.step()
        step += 1
        # cosine decay over whichever budget (steps or minutes) runs out first: the rate is not known in advance
        done = min(1.0, max(step / args.steps, (time.time() - t0) / 60 / args.max_minutes))
        for group, base in zip(opt.param_groups, (args.lr, args.lr * 0.5)):
            group["lr"] = base * 0.5 * (1 + math.cos(math.pi * done))
        v = total
        run = v if run is None else 0.98 * run + 0.02 * v
        if step % args.print_every == 0:
            el = time.time() - t0
            print(f"step {step} loss {run:.4f} (this step {v:.4f}, mse {float(mse):.2e}, kernel {float(kl):.3f}; "
                  f"{el / 60:.2f} min, {step / el:.2f} it/s)", flush=True)
        if step % args.val_every == 0:
            log.append({"step": step, "minutes": round((time.time() - t0) / 60, 2), **validate()})
            print("val", json.dumps(log[-1]), flush=True)
    log.append({"step": step, "minutes": round((time.time() - t0) / 60, 2), **validate()})
    print("val", json.dumps(log[-1]), flush=True)
    device_name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    meta_out = {**meta, "task": "sr-kernel-estimator"}
    meta_out["estimator"] = {**meta.get("estimator", {}), **est.config()}
    meta_out["training"] = {"init": str(args.init), "steps": step, "minutes": log[-1]["minutes"], "device": device_name,
                            "batch": args.batch, "accumulate": args.accumulate,
                            "lr": args.lr, "kernel_weight": args.kernel_weight, "loss": args.loss,
                            "model": args.model, "stop": "steps" if step >= args.steps else "time", "log": log,
                            "command": " ".join(["python", "scripts/train_sr_estimator_e2e.py",
                                                 *(argv or sys.argv[1:])])}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().float().cpu().contiguous() for k, v in est.state_dict().items()}
    save_checkpoint(args.out, state, meta_out)
    print(f"wrote {args.out}: step {step}, {log[-1]['minutes']} min, val {json.dumps(log[-1])}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
