#!/usr/bin/env python3
"""Choose how ``--kernel auto`` uses the estimate, on held-out *training* images (never a test set).

    python scripts/sr_auto_tune.py --data DATA_ROOT [--model FILE] [--estimator FILE] [--scales 2,3,4] [--limit 8]

Images: the last Train400 images, which the estimator never trains on (``train_sr_estimator.held_out_files``),
or with ``--images cave`` the quadrants of the CAVE training scenes (``train_sr_estimator.cave_held_out``), as gray
images fed to the RGB network in all three channels. Each image gets one degradation per bench family
(:func:`lorun_cli.bench.draw_degradation`, seed 100: other draws than the bench's seed 0); the SR network
then restores it with ``auto_kernel(k̂, keep, min_width, wide)`` and the data-step weight of the estimated noise
(``noise_data_weight``) for every (keep, min_width, wide rule, noise rule) on the grid, or, for an estimator with
exact atoms, with the likeliest exact atom when its retrieval weight is ≥ the snap threshold.
Prints, per setting, the mean PSNR − bicubic over all cases, the per-family means and the worst case (Y = the gray
image, 8-bit, border = scale), and the same with the estimate first moved to the true kernel's centre of mass (keys
``reg …``: the estimate's shape apart from the registration no LR-only estimate can know, see docs/SR_AUTO.md).
Bicubic interpolates on the grid the true kernel puts the LR pixels on. The setting with the best worst-family mean
is the one to ship.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_sr_estimator import cave_held_out, held_out_files, held_out_hr  # noqa: E402

from lorun_cli import metrics  # noqa: E402
from lorun_cli.bench import AUTO_FAMILIES, draw_degradation  # noqa: E402
from lorun_cli.physics import sr_estimate as E  # noqa: E402
from lorun_cli.physics.sr import SRBlur, bicubic_on_grid, exposure_apply, exposure_map, exposure_unmap  # noqa: E402
from lorun_cli.restore import PROTOCOL, load_task_model  # noqa: E402

KEEPS = (0.5, 0.75, 1.0)
MIN_WIDTHS = (0.3, 0.5)


def parse_rule(text: str, default: tuple[float, ...] | None) -> tuple[float, ...] | None:
    """'FROM,TO,VALUE[,…]' → a (from, to, value, …) rule (``auto_kernel``'s wide rule, ``noise_data_weight``'s or
    ``sr_estimate.AUTO_SURE``); 'default' → ``default``; 'none' → None."""
    if text == "none":
        return None
    if text == "default":
        return default
    return tuple(float(v) for v in text.split(","))


def _rule_text(rule: tuple[float, ...] | None) -> str:
    return "none" if rule is None else ",".join(f"{v:g}" for v in rule)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--model", help="SR model file or manifest name (default: the bundled sr-lorun9)")
    ap.add_argument("--estimator", type=Path, help="estimator file (default: the bundled one)")
    ap.add_argument("--also", type=Path, help="a second estimator file: use the mean of both kernel estimates")
    ap.add_argument("--scales", default="2,3,4")
    ap.add_argument("--keeps", default=",".join(map(str, KEEPS)), help="auto_kernel keep values to try")
    ap.add_argument("--min-widths", default=",".join(map(str, MIN_WIDTHS)), help="minimum widths to try")
    ap.add_argument("--wides", default="default;none", help="wide-estimate rules to try, ';'-separated: 'FROM,TO,KEEP' "
                    "(px, px, weight; see sr_estimate.AUTO_WIDE), 'default' (AUTO_WIDE) or 'none'")
    ap.add_argument("--noise-weights", default="default", help="data-step noise rules to try, ';'-separated: "
                    "'FROM,TO,GAMMA' (σ̂ /255, σ̂ /255, weight; see sr_estimate.AUTO_NOISE_WEIGHT), 'default' or 'none'")
    ap.add_argument("--snap-estimator", type=Path, help="an estimator with exact atoms that decides the snapping "
                    "(default: --estimator)")
    ap.add_argument("--snaps", default="2", help="snap thresholds to try (estimators with exact atoms; > 1: never)")
    ap.add_argument("--policy", choices=("model", *E.AUTO_POLICIES), default="model",
                    help="how the estimate becomes the data step's kernel (default: the model's own auto_policy; "
                    "raw ignores the keep and wide grids)")
    ap.add_argument("--centre-gain", type=float, default=None, help="move the estimate to this multiple of its "
                    "own centre of mass (default: 1 for the raw policy, sr_estimate.AUTO_CENTRE_GAIN for the blend)")
    ap.add_argument("--cases", type=Path, help="also write one JSON line per case (scale, image, family, estimated "
                    "width and noise, auto − bicubic) to this file")
    ap.add_argument("--no-reg", action="store_true", help="skip the registered runs (half the time)")
    ap.add_argument("--bootstrap-centre", action="store_true", help="bootstrap only the centre of mass")
    ap.add_argument("--bootstrap", type=float, default=0.0,
                    help="> 0: correct the estimate by a parametric bootstrap of this gain: restore once, blur the "
                         "restoration with the estimate, estimate again (k̂′) and use k̂ + gain·(k̂ − k̂′), clipped at 0")
    ap.add_argument("--shrink", type=float, default=0.0, help="> 0: narrow the estimate by this many px of width "
                    "(σ_eff, about its centre of mass; at most halved) before it is used")
    ap.add_argument("--views", type=int, default=E.AUTO_VIEWS, choices=(1, 2, 4, 8),
                    help="estimate over this many views of the LR image (sr_estimate.VIEWS; default AUTO_VIEWS)")
    ap.add_argument("--spread-rules", default="default", help="keep by the views' spread, ';'-separated: "
                    "'FROM,TO,SURE,UNSURE' (see sr_estimate.AUTO_SPREAD), 'default' or 'none' (the keep grid)")
    ap.add_argument("--sure-rules", default="default", help="sure mid-width estimates, ';'-separated: 'FROM,TO,"
                    "SPREAD,KEEP' (px, px, 8-view spread, weight; see sr_estimate.AUTO_SURE; the checked rule: "
                    "1.8,2.8,0.065,1), 'default' (AUTO_SURE) or 'none'")
    ap.add_argument("--images", choices=("train400", "cave"), default="train400", help="held-out source: the last "
                    "40 Train400 images, or the 28 quadrants of the CAVE training scenes (band mean; trained on by "
                    "no SR model or estimator)")
    ap.add_argument("--exposure", type=float, default=1.0, help="multiply every held-out image by this before it is "
                    "degraded (< 1: a dim photo; scored against the dimmed image)")
    ap.add_argument("--no-exposure-map", action="store_true", help="estimate and restore the LR image as it is "
                    "(restore brings a low-contrast image to the reference contrast first: physics.sr.exposure_map)")
    ap.add_argument("--oracle", action="store_true", help="also restore with the true kernel (its data-step weight "
                    "as for a given kernel); the cases file gets oracle_minus_bicubic")
    ap.add_argument("--limit", type=int, default=8)
    ap.add_argument("--start", type=int, default=0, help="skip the first START held-out images")
    ap.add_argument("--seed", type=int, default=100)
    args = ap.parse_args()
    torch.set_num_threads(1)
    net, _ = load_task_model("sr", args.model)
    policy = (net.auto_policy or "blend") if args.policy == "model" else args.policy
    est_net = E.load_estimator(args.estimator)
    gain_raw = 1.0 if args.centre_gain is None else args.centre_gain
    gain_blend = E.AUTO_CENTRE_GAIN if args.centre_gain is None else args.centre_gain
    est2 = E.load_estimator(args.also) if args.also else None
    snap_net = E.load_estimator(args.snap_estimator) if args.snap_estimator else est_net
    if args.images == "cave":
        files = [g for _, g in cave_held_out(args.data)[args.start : args.start + args.limit]]
    else:
        files = held_out_files(args.data, args.start, args.limit)
    floats = lambda text: [float(v) for v in text.split(",")]  # noqa: E731
    wides = [parse_rule(w, E.AUTO_WIDE) for w in args.wides.split(";")]
    noise_rules = [parse_rule(w, E.AUTO_NOISE_WEIGHT) for w in args.noise_weights.split(";")]
    spread_rules = [None if r == "none" else E.AUTO_SPREAD if r == "default" else tuple(float(v) for v in r.split(","))
                    for r in args.spread_rules.split(";")]
    sure_rules = [parse_rule(r, E.AUTO_SURE) for r in args.sure_rules.split(";")]
    spread_band = next((r for r in sure_rules if r is not None), None)  # the estimate's 8-view spread in this band
    grid = [(k, w, p, wd, nr, sr, su) for k in floats(args.keeps) for w in floats(args.min_widths)
            for p in floats(args.snaps) for wd in wides for nr in noise_rules for sr in spread_rules
            for su in sure_rules]
    tags = ("",) if args.no_reg else ("", "reg ")  # as estimated, and registered to the true centre of mass
    diffs: dict[tuple, dict[str, dict[str, list[float]]]] = {g: {t: {} for t in tags} for g in grid}
    case_log = open(args.cases, "w") if args.cases else None  # noqa: SIM115 - closed below
    for s in (int(v) for v in args.scales.split(",")):
        for i, f in enumerate(files, start=args.start):
            x = held_out_hr(f, s) * args.exposure
            for fam in AUTO_FAMILIES:
                _, k_true, sigma = draw_degradation(fam, s, i, args.seed)
                with torch.no_grad():
                    y = SRBlur(k_true, s).A(x)
                    if sigma:
                        y = y + sigma * torch.randn(y.shape, generator=torch.Generator().manual_seed(i))
                    y_lr = y  # bicubic sees the LR image as it is; the estimator and the network may see it mapped
                    mcg = (0.0, 0.0, 1.0) if args.no_exposure_map else exposure_map(y)
                    y = exposure_apply(y, mcg)
                    E.AUTO_SURE = spread_band  # estimate reads it (each variant below sets its own for auto_keep)
                    first = E.estimate(est_net, y, s, snap_p=2.0, views=args.views)
                    k_est = first["kernel"]
                    if args.bootstrap > 0:  # what the estimator makes of a scene like this one blurred with k̂
                        k_first = E.kernel_policy(None, k_est)[0]  # the shipped blend rules, as restore runs them
                        weight = E.data_weight_policy(first["noise"], explicit=False)
                        x_hat = net(y, SRBlur(k_first, s, data_weight=weight)).clamp(0, 1)
                        k_again = E.estimate(est_net, SRBlur(k_est, s).A(x_hat), s, snap_p=2.0)["kernel"]
                        if args.bootstrap_centre:  # only the centre of mass: c + gain·(c − c′)
                            c, c2 = E.centroid(k_est), E.centroid(k_again)
                            k_est = E.recentred(k_est, tuple(a + args.bootstrap * (a - b) for a, b in zip(c, c2)))
                        else:
                            k_est = (k_est + args.bootstrap * (k_est - k_again)).clamp_min(0)
                            k_est = k_est / k_est.sum()
                    if args.shrink > 0:  # the estimate narrowed about its centre of mass
                        w = E.kernel_width(k_est)
                        k_est = E.scaled_kernel(k_est, max(0.5, (w - args.shrink) / max(w, 1e-6)), E.centroid(k_est))
                    best = E.estimate(snap_net, y, s, snap_p=0.0)  # the kernel is the likeliest exact atom, if any
                    if est2 is not None:  # an ensemble of two estimators: the mean kernel
                        k_est = 0.5 * (k_est + E.estimate(est2, y, s)["kernel"])
                    bic = bicubic_on_grid(y_lr, s, E.grid_shift(k_true))
                    p_bic = metrics.score(bic.clamp(0, 1), x, PROTOCOL["sr"], border=s)["psnr"]
                    p_oracle = None
                    if args.oracle:
                        w_or = E.data_weight_policy(first["noise"], explicit=True)
                        out = exposure_unmap(net(y, SRBlur(k_true, s, data_weight=w_or)), mcg)
                        p_oracle = metrics.score(out.clamp(0, 1), x, PROTOCOL["sr"], border=s)["psnr"] - p_bic
                    centre = E.centroid(k_true)
                    for keep, mw, snap, wide, nrule, srule, sure in grid:
                        snapped = best["snapped"] and best["exact_p"] >= snap
                        for tag in tags:
                            k = best["kernel"] if snapped else k_est
                            if policy == "raw":  # the estimate itself, widened (sr_estimate.kernel_policy)
                                k = E.recentred(k, centre) if tag else E.centre_expanded(k, gain_raw)
                                k = E.widened_kernel(k, mw)
                            else:
                                moved = k if snapped else E.centre_expanded(k, gain_blend)
                                k = E.recentred(k, centre) if tag else moved
                                E.AUTO_SURE = sure  # auto_keep reads it at call time
                                k = (E.widened_kernel(k, mw) if snapped
                                     else E.auto_kernel(k, keep, mw, wide, first["spread"], srule))
                            weight = E.noise_data_weight(first["noise"], nrule)
                            out = exposure_unmap(net(y, SRBlur(k, s, data_weight=weight)), mcg)
                            p = metrics.score(out.clamp(0, 1), x, PROTOCOL["sr"], border=s)["psnr"]
                            diffs[(keep, mw, snap, wide, nrule, srule, sure)][tag].setdefault(fam, []).append(p - p_bic)
                            if case_log is not None and not tag:
                                case_log.write(json.dumps({"scale": s, "image": i, "family": fam, "keep": keep,
                                                           "spread_rule": _rule_text(srule),
                                                           "sure_rule": _rule_text(sure),
                                                           "width": round(first["width"], 4),
                                                           "noise": round(255 * first["noise"] / mcg[2], 3),
                                                           "spread": round(first["spread"], 4),
                                                           "kernel_error": round(E.kernel_error(k_est, k_true), 4),
                                                           "auto_minus_bicubic": round(p - p_bic, 4),
                                                           **({} if p_oracle is None else
                                                              {"oracle_minus_bicubic": round(p_oracle, 4)})}) + "\n")
        print(f"scale ×{s} done", file=sys.stderr, flush=True)
    if case_log is not None:
        case_log.close()
    rows = []
    for (keep, mw, snap, wide, nrule, srule, sure), by_tag in diffs.items():
        gain = "" if args.centre_gain is None else f" ×{args.centre_gain:g} centre"
        what = "bootstrap centre" if args.bootstrap_centre else "bootstrap"
        boot = f", {what} {args.bootstrap:g}" if args.bootstrap > 0 else ""
        boot += f", shrink {args.shrink:g} px" if args.shrink > 0 else ""
        row = {"model": args.model or "sr-lorun9", "policy": policy + gain + boot, "keep": keep, "min_width": mw,
               "snap": snap,
               "wide": _rule_text(wide), "noise_weight": _rule_text(nrule), "spread_rule": _rule_text(srule),
               "sure_rule": _rule_text(sure),
               "views": args.views}
        for tag, fams in by_tag.items():
            allv = [v for vs in fams.values() for v in vs]
            fam_mean = {tag + f: round(statistics.fmean(v), 3) for f, v in fams.items()}
            row.update({tag + "mean": round(statistics.fmean(allv), 3), tag + "worst_family": min(fam_mean.values()),
                        tag + "worst_case": round(min(allv), 3), **fam_mean})
        rows.append(row)
    for r in sorted(rows, key=lambda r: -r["worst_family"]):
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
