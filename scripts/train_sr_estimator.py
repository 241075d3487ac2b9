#!/usr/bin/env python3
"""Train the SR kernel/noise estimator (``sr-kernel-estimator``) on synthetic degradations of training images.

    python scripts/train_sr_estimator.py --data DATA_ROOT --out runs/sr-kernel-estimator.safetensors \
        --steps 6000 --max-minutes 20 --threads 1 [--resume]

Images: T91 (Y of RGB) and DnCNN Train400 (gray) under ``DATA_ROOT/train`` (never a test set); the last
40 Train400 images are held out for validation. Each step draws one scale (×2/×3/×4), a batch of HR crops,
one kernel per crop from the families of :data:`lorun_cli.physics.sr_estimate.FAMILIES`, a noise level
(none for about a third of the crops, else uniform up to 10/255) and 8-bit rounding for half of them; half
of the HR crops are first softened by a Gaussian that is not part of the target (soft content).
Loss: relative L2 of the retrieved kernel, a spectral term that weighs over-estimated blur 4× (see
``over_blur_loss``), an L1 term on the log noise level and, with exact atoms (``--exact``), a cross-entropy that
asks the retrieval weights to pick the exact atom equal to the true kernel when there is one. Minutes are CPU
minutes of this process.
At the end the estimator's median width bias is measured on the held-out images and stored as a per-scale
correction (``calibrate``; ``--calibrate-only`` redoes just that on an existing OUT).
A checkpoint (OUT.ckpt) is written every --ckpt-every steps and at the end; --resume continues from it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lorun_cli.io import datasets as DS
from lorun_cli.io.checkpoint import load_checkpoint, save_checkpoint
from lorun_cli.physics import sr_estimate as E
from lorun_cli.physics.sr import SRBlur, load_kernels

PATCH = {2: 48, 3: 48, 4: 39}  # LR crop side per scale (×4: the largest a 180-px Train400 image allows)
FAMILY_P = {"bundled": 0.3, "gauss-iso": 0.15, "gauss-aniso": 0.15, "motion": 0.15, "delta": 0.1, "pil-bicubic": 0.15}
VAL_HOLDOUT = 40
#: Share of HR crops pre-blurred (Gaussian width uniform in SOFT_RANGE, HR px) before the target kernel: photos
#: are not all sharp, and blur that belongs to the content must not be read as the camera's kernel.
SOFT_P, SOFT_RANGE = 0.5, (0.3, 1.5)


def train400_files(root: Path) -> list[Path]:
    """Every Train400 image, in order; the last ``VAL_HOLDOUT`` are held out of training."""
    return sorted((root / "train" / "bsd400").glob("*.png"))


def held_out_files(root: Path, start: int = 0, limit: int = VAL_HOLDOUT) -> list[Path]:
    """Held-out Train400 images ``start`` … ``start + limit − 1`` (never trained on: the tuning scripts' images)."""
    return train400_files(root)[-VAL_HOLDOUT:][start : start + limit]


def cave_held_out(root: Path) -> list[tuple[str, torch.Tensor]]:
    """A second held-out source for SR choices, used by no SR model and no estimator: the CAVE *training* scenes
    (``cassi/cave/train``; not a test set), each the mean of its 21 bands, exposed so that its 99.5th percentile is
    1 (brighter pixels clipped, as a camera would), cut into four quadrants: ``(name, (1, H, W) gray)`` pairs."""
    out = []
    for scene in sorted(p for p in (root / "cassi" / "cave" / "train").iterdir() if p.is_dir()):
        g = torch.from_numpy(DS.read_cave_bands(scene).astype(np.float32).mean(0))
        g = (g / torch.quantile(g.flatten(), 0.995).clamp_min(1e-6)).clamp(0, 1)
        h, w = (d // 2 for d in g.shape)
        for i, (r, c) in enumerate(((0, 0), (0, w), (h, 0), (h, w))):
            out.append((f"{scene.name}-q{i}", g[r : r + h, c : c + w].reshape(1, h, w).contiguous()))
    return out


def held_out_hr(src: Path | torch.Tensor, scale: int) -> torch.Tensor:
    """A held-out gray image (a file, or a (1, H, W) tensor), mod-cropped to ``scale``, as the (1, 3, H, W) tensor
    the RGB network is fed."""
    g = src if isinstance(src, torch.Tensor) else DS.read_gray(src)
    return DS.modcrop(g.reshape(1, 1, *g.shape[-2:]), scale).expand(1, 3, -1, -1).contiguous()


def gray8(y: torch.Tensor) -> np.ndarray:
    """The gray image of a (1, 3, h, w) tensor fed to the RGB network, rounded to an 8-bit array (h, w)."""
    return (y[0, 0].clamp(0, 1) * 255).round().byte().numpy()


def gray_input(a: np.ndarray) -> torch.Tensor:
    """An 8-bit gray array as the (1, 3, h, w) tensor the RGB network is fed (the inverse of :func:`gray8`)."""
    t = torch.from_numpy(a.astype(np.float32) / 255.0)
    return t.reshape(1, 1, *t.shape).expand(1, 3, -1, -1).contiguous()


def load_images(root: Path) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(train, val) lists of (1, H, W) luma images in [0, 1]."""
    t91 = sorted((root / "train" / "t91").glob("*.bmp"))
    b400 = train400_files(root)
    if not t91 or not b400:
        sys.exit(f"train_sr_estimator: no T91/Train400 images under {root}/train")
    ys = [E.luma(DS.read_rgb(p).unsqueeze(0))[0] for p in t91]
    gs = [DS.read_gray(p).reshape(1, *DS.read_gray(p).shape[-2:]) for p in b400]  # (1, H, W)
    return ys + gs[:-VAL_HOLDOUT], gs[-VAL_HOLDOUT:]


def make_batch(images: list[torch.Tensor], batch: int, gen: torch.Generator, bank: torch.Tensor,
               scale: int | None = None) -> tuple[int, torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    """(scale, LR (B,1,P,P), kernels (B,25,25), σ (B,), families) for one training step."""
    s = scale or E.SCALES[int(torch.randint(len(E.SCALES), (1,), generator=gen))]
    side = PATCH[s] * s + E.KSIZE - 1
    pool = [im for im in images if min(im.shape[-2:]) >= side]
    fams = list(FAMILY_P)
    probs = torch.tensor([FAMILY_P[f] for f in fams])
    crops, ks, names = [], [], []
    for _ in range(batch):
        im = pool[int(torch.randint(len(pool), (1,), generator=gen))]
        top = int(torch.randint(im.shape[-2] - side + 1, (1,), generator=gen))
        left = int(torch.randint(im.shape[-1] - side + 1, (1,), generator=gen))
        c = im[:, top : top + side, left : left + side]
        c = torch.rot90(c, int(torch.randint(4, (1,), generator=gen)), (-2, -1))
        fam = fams[int(torch.multinomial(probs, 1, generator=gen))]
        k = E.sample_kernel(fam, s, gen, bank)
        if fam in ("bundled", "motion") and bool(torch.rand((), generator=gen) < 0.5):
            k = k.t().contiguous()  # transposed kernels: more shapes, same families
        if bool(torch.rand((), generator=gen) < SOFT_P):  # soft content: blur that is not the target's
            pre = SOFT_RANGE[0] + (SOFT_RANGE[1] - SOFT_RANGE[0]) * float(torch.rand((), generator=gen))
            c = E.degrade_valid(F.pad(c[None], (12, 12, 12, 12), mode="reflect"), E.gaussian_kernel(pre, pre, 0.0),
                                1)[0]
        crops.append(c)
        ks.append(k)
        names.append(fam)
    hr, kernels = torch.stack(crops), torch.stack(ks)
    y = E.degrade_valid(hr, kernels, s)[..., : PATCH[s], : PATCH[s]]
    sigma = torch.rand(batch, generator=gen) * 10 / 255
    sigma = torch.where(torch.rand(batch, generator=gen) < 0.35, torch.zeros_like(sigma), sigma)
    y = y + sigma.view(-1, 1, 1, 1) * torch.randn(y.shape, generator=gen)
    q = torch.rand(batch, generator=gen).view(-1, 1, 1, 1) < 0.5
    y = torch.where(q, (y.clamp(0, 1) * 255).round() / 255, y)
    return s, y, kernels, sigma, names


def over_blur_loss(kh: torch.Tensor, k: torch.Tensor, weight: float = 4.0) -> torch.Tensor:
    """Spectral magnitude error per sample, ``weight`` times heavier where the estimate blurs more than the truth
    (|K̂| < |K|: the data step would then over-sharpen and ring)."""
    mh, m = torch.fft.rfft2(kh, s=(32, 32)).abs(), torch.fft.rfft2(k, s=(32, 32)).abs()
    d = mh - m
    return (torch.where(d < 0, weight, 1.0) * d.square()).mean((-2, -1))


def exact_targets(net: E.KernelEstimator, k: torch.Tensor) -> torch.Tensor:
    """Per sample, the logit index of the exact atom equal to its kernel, or −1 when none is."""
    if net.fixed is None:
        return torch.full((k.shape[0],), -1, dtype=torch.long)
    same = (k[:, None] - net.fixed[None]).abs().amax((-2, -1)) < 1e-6
    idx = same.float().argmax(1) + net.n_learned
    return torch.where(same.any(1), idx, torch.full_like(idx, -1))


def lr_blurred(k: torch.Tensor, sigma: float) -> torch.Tensor:
    """Kernels (B, 25, 25) convolved with an isotropic Gaussian of ``sigma`` HR px: what an LR image resolves."""
    g = E.gaussian_kernel(sigma, sigma, 0.0)[0].to(k.dtype)
    return F.conv2d(k[:, None], g[None, None], padding=g.shape[-1] // 2)[:, 0]


def losses(net: E.KernelEstimator, s: int, y: torch.Tensor, k: torch.Tensor, sigma: torch.Tensor,
           pred: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None = None, lr_blur: float = 0.0):
    """(relative kernel L2 per sample, spectral over-blur loss per sample, |Δu| per sample, cross-entropy of the
    retrieval weights against the exact atom equal to the true kernel (0 where none is), centre error² per sample).

    With a centre head the L2 term compares shapes only (the true kernel moved onto the retrieved one's centre of
    mass) and the centre head answers for the centre (squared error in px²; 0 without a head). ``pred``: the
    network's ``predict(y, s)`` when the caller already has it. ``lr_blur`` > 0: the L2 term compares both kernels
    blurred by a Gaussian of ``lr_blur`` · s px (their shapes at LR resolution)."""
    logits, u, centre = pred if pred is not None else net.predict(y, s)
    kh = net.kernel(logits)
    target, cerr = k, torch.zeros(k.shape[0], dtype=k.dtype, device=k.device)
    if centre is not None:
        c_true = E.centroids(k)
        target = E.shift_kernels(k, E.centroids(kh).detach() - c_true)
        cerr = (centre - c_true).square().sum(1)
    kl, tl = (lr_blurred(kh, lr_blur * s), lr_blurred(target, lr_blur * s)) if lr_blur > 0 else (kh, target)
    rel = (kl - tl).square().sum((-2, -1)) / tl.square().sum((-2, -1))
    ce = F.cross_entropy(logits, exact_targets(net, k), ignore_index=-1, reduction="none")
    return rel, over_blur_loss(kh, k), (u - E.u_from_noise(sigma)).abs(), ce, cerr


def calibrate(net: E.KernelEstimator, images: list[torch.Tensor], seed: int = 7) -> dict[int, float]:
    """Per scale, c = exp(−median log(σ̂_eff / σ_eff)) over whole held-out images, each degraded by one kernel
    of every family with a width (not delta), no noise: the factor that removes the estimator's median width
    bias on images it never trained on (kernels are then resampled by c, see ``sr_estimate.scaled_kernel``)."""
    gen = torch.Generator().manual_seed(seed)
    bank = torch.stack(list(load_kernels().values()))
    out = {}
    for s in E.SCALES:
        logs = []
        for im in images:
            x = DS.modcrop(im, s).unsqueeze(0)
            for fam in ("bundled", "gauss-iso", "gauss-aniso", "motion", "pil-bicubic"):
                k = E.sample_kernel(fam, s, gen, bank)
                y = SRBlur(k, s).A(x)
                with torch.no_grad():
                    logits, _ = net(y, s)
                    w = E.kernel_width(net.kernel(logits)[0])
                logs.append(math.log(max(w, 0.3) / max(E.kernel_width(k), 0.3)))
        out[s] = round(math.exp(-statistics.median(logs)), 4)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=os.environ.get("LORUN_DATA"))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--max-minutes", type=float, default=20.0, help="CPU-time budget (process time, all threads)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--ckpt-every", type=int, default=250)
    ap.add_argument("--val-every", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--arch", type=int, default=1, help="estimator trunk (1: ~63k parameters, 2: ~0.66M with 96 atoms)")
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--atoms", type=int, default=48, help="learned dictionary atoms")
    ap.add_argument("--exact", choices=E.EXACT_KINDS, help="exact dictionary atoms (default: none for arch 1, "
                    "pil for arch 2; bundled: the 12 bundled kernels too)")
    ap.add_argument("--ce", type=float, default=0.1, help="weight of the exact-atom cross-entropy term")
    ap.add_argument("--clip", type=float, default=0.0, help="gradient-norm clip (0: none)")
    ap.add_argument("--centre-head", action="store_true", help="predict the kernel's centre of mass apart from its "
                    "shape (the L2 term then compares shapes only)")
    ap.add_argument("--centre-weight", type=float, default=0.25, help="weight of the centre head's squared error")
    ap.add_argument("--lr-loss", type=float, default=0.0, help="> 0: the kernel L2 term compares both kernels "
                    "blurred by a Gaussian of this many LR px (× the scale in HR px): their shapes at LR resolution")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--init", type=Path, help="start the weights from this OUT.ckpt or a published .safetensors "
                    "estimator (a new schedule; the network takes that file's shape, not "
                    "--arch/--width/--atoms/--exact)")
    ap.add_argument("--calibrate-only", action="store_true", help="only (re)compute OUT's width calibration")
    args = ap.parse_args(argv)
    if args.data is None:
        sys.exit("train_sr_estimator: pass --data DIR or set LORUN_DATA")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    train, val = load_images(args.data)
    if args.calibrate_only:
        tensors, meta = load_checkpoint(args.out)
        est = E.build_estimator(meta)
        est.load_state_dict(tensors)
        meta["estimator"]["width_scale"] = calibrate(est.eval(), val)
        save_checkpoint(args.out, tensors, meta)
        print(f"calibrated {args.out}: width_scale {meta['estimator']['width_scale']}", flush=True)
        return 0
    bank = torch.stack(list(load_kernels().values()))
    init = None
    if args.init is not None:  # the network takes the shape of the file it starts from
        if args.init.suffix == ".safetensors":  # a published estimator (e.g. the bundled one)
            tensors, meta = load_checkpoint(args.init)
            init = ({k: v.float() for k, v in tensors.items()}, meta.get("estimator", {}))
        else:
            st = torch.load(args.init, weights_only=True)
            init = (st["net"], st.get("config", {}))
    shape = {"atoms": args.atoms, "width": args.width, "arch": args.arch, "exact": args.exact,
             "centre_head": args.centre_head,
             **{k: v for k, v in (init[1] if init else {}).items() if k in ("atoms", "width", "arch", "exact")}}
    net = E.KernelEstimator(**shape)
    body = [p for n, p in net.named_parameters() if n != "atom_logits"]
    opt = torch.optim.Adam([{"params": body}, {"params": [net.atom_logits], "lr": args.lr * 0.5}], lr=args.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + math.cos(math.pi * min(i, args.steps)
                                                                                 / args.steps)))
    gen = torch.Generator().manual_seed(args.seed)
    ckpt = args.out.with_suffix(args.out.suffix + ".ckpt")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    step, spent, log = 0, 0.0, []
    if args.resume and ckpt.is_file():
        st = torch.load(ckpt, weights_only=False)
        net.load_state_dict(st["net"])
        opt.load_state_dict(st["opt"])
        sched.load_state_dict(st["sched"])
        gen.set_state(st["gen"])
        step, spent, log = st["step"], st["minutes"] * 60, st["log"]
        print(f"resumed at step {step} ({st['minutes']:.1f} min)", flush=True)
    if init is not None and step == 0:
        state = dict(init[0])
        for name in ("head.2.weight", "head.2.bias"):  # a centre head added to a file without one: new rows last
            own = net.state_dict()[name]
            if name in state and state[name].shape != own.shape and state[name].shape[1:] == own.shape[1:]:
                grown = torch.zeros_like(own)
                grown[: state[name].shape[0]] = state[name]
                state[name] = grown
        net.load_state_dict(state)
        print(f"weights from {args.init} ({net.config()})", flush=True)
    vgen = torch.Generator().manual_seed(1234)
    vbatches = [make_batch(val, 64, vgen, bank, scale=s) for s in E.SCALES]

    def save_ckpt() -> None:
        tmp = ckpt.with_name(ckpt.name + ".tmp")
        torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                    "gen": gen.get_state(), "step": step, "minutes": spent / 60, "log": log, "config": net.config()},
                   tmp)
        tmp.replace(ckpt)

    def validate() -> dict[str, float]:
        net.eval()
        by_fam: dict[str, list[float]] = {}
        noise, centre = [], []
        with torch.no_grad():
            for s, y, k, sig, fams in vbatches:
                rel, _, du, _, cerr = losses(net, s, y, k, sig)
                noise += du.tolist()
                centre += cerr.sqrt().tolist()
                for f, r in zip(fams, rel.sqrt().tolist()):
                    by_fam.setdefault(f, []).append(r)
        net.train()
        out = {f: sum(v) / len(v) for f, v in sorted(by_fam.items())}
        out["noise_du"] = sum(noise) / len(noise)
        if net.centre_head:
            out["centre_px"] = sum(centre) / len(centre)
        return out

    t_start, run = time.process_time() - spent, 0.0  # CPU time: the machine is shared, wall time is not ours
    while step < args.steps and (time.process_time() - t_start) / 60 < args.max_minutes:
        s, y, k, sig, _ = make_batch(train, args.batch, gen, bank)
        rel, spec, du, ce, cerr = losses(net, s, y, k, sig, lr_blur=args.lr_loss)
        loss = rel.mean() + 3 * spec.mean() + 0.5 * du.mean() + args.ce * ce.mean() + args.centre_weight * cerr.mean()
        opt.zero_grad()
        loss.backward()
        if args.clip > 0:
            torch.nn.utils.clip_grad_norm_(net.parameters(), args.clip)
        opt.step()
        sched.step()
        step += 1
        run = 0.98 * run + 0.02 * float(loss.detach()) if step > 1 else float(loss.detach())
        spent = time.process_time() - t_start
        if step % 50 == 0:
            print(f"step {step} loss {run:.4f} ({spent / 60:.1f} min, {step / max(spent, 1e-9):.2f} it/s)", flush=True)
        if step % args.val_every == 0 or step == args.steps:
            v = validate()
            log.append({"step": step, "minutes": round(spent / 60, 2), **{k: round(x, 4) for k, x in v.items()}})
            print("val", json.dumps(log[-1]), flush=True)
        if step % args.ckpt_every == 0:
            save_ckpt()
    save_ckpt()
    v = validate()
    meta = {"task": "sr-kernel-estimator", "estimator": {**net.config(), "patch": PATCH, "families": FAMILY_P},
            "training": {"steps": step, "minutes": round(spent / 60, 2), "threads": args.threads,
                         "it_s": round(step / max(spent, 1e-9), 3), "batch": args.batch, "lr": args.lr,
                         "stop": "steps" if step >= args.steps else "time", "val": v, "log": log,
                         "command": " ".join(["python", "scripts/train_sr_estimator.py", *(argv or sys.argv[1:])])}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta["estimator"]["width_scale"] = calibrate(net.eval(), val)
    save_checkpoint(args.out, {k: v.detach().contiguous() for k, v in net.state_dict().items()}, meta)
    print(f"wrote {args.out}: step {step}, {spent / 60:.1f} min, val {json.dumps(v)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
