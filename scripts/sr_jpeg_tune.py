#!/usr/bin/env python3
"""JPEG-compressed LR inputs: how much to weight SR's data step, on held-out *training* images (never a test set).

    python scripts/sr_jpeg_tune.py probe START LIMIT QUALITIES GAMMAS FAMILIES
    python scripts/sr_jpeg_tune.py check START LIMIT QUALITIES FAMILIES
    python scripts/sr_jpeg_tune.py dimcheck START LIMIT QUALITIES FAMILIES EXPOSURE [MODES]
    python scripts/sr_jpeg_tune.py verdict CHECK.jsonl [...]

Images: the last Train400 images (``train_sr_estimator.held_out_files``, as ``sr_auto_tune.py``), gray, fed to the
RGB network in all three channels, ×2/×3/×4. Each gets one degradation per family (``bench.draw_degradation``,
seed 100), is rounded to 8 bit and saved as a JPEG of each quality with Pillow (quality 100: no JPEG), then
restored with ``--kernel auto``'s kernel.
``probe``: data-step weights γ from GAMMAS for every case. ``check``: γ as restore ran it before JPEG inputs were
read as noise (``now``) and as it runs it now (``rule``: :func:`sr_estimate.jpeg_data_weight` of the file's mean luma
step), both for ``--kernel auto`` and for the true kernel given.
``dimcheck``: the HR image multiplied by EXPOSURE first, each case mapped as restore maps it
(``physics.sr.exposure_map``, gain g), γ from the file's step (``now``) and from g·step (``rule``: the step in the
mapped image; docs/logs/sr-jpeg-dim-prereg.md) for the kernel MODES named (default ``auto,given``; the others keep
the file's step).
``verdict``: per quality (and exposure), for auto and the given kernel, the mean and worst PSNR − bicubic now and
under the rule; ship iff at every quality the rule's mean is no lower (``dimcheck``: no more than 0.005 dB lower) and
its worst case no more than 0.1 dB lower.
One JSON line per case: PSNR − bicubic (Y = the gray image, 8-bit, border = scale; bicubic on the true kernel's
grid), the mean luma step (``qmean``), the JPEG error (``rms``, /255) and the estimated noise.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_sr_estimator import gray8, gray_input, held_out_files, held_out_hr  # noqa: E402

from lorun_cli import metrics  # noqa: E402
from lorun_cli.bench import draw_degradation  # noqa: E402
from lorun_cli.io import datasets as DS  # noqa: E402
from lorun_cli.physics import sr_estimate as E  # noqa: E402
from lorun_cli.physics.sr import SRBlur, bicubic_on_grid, exposure_apply, exposure_map, exposure_unmap  # noqa: E402
from lorun_cli.restore import PROTOCOL, load_task_model  # noqa: E402


def jpeg(y: torch.Tensor, q: int) -> tuple[torch.Tensor, float]:
    """The gray LR image (1, 3, h, w) in 8 bit, through a JPEG of quality ``q`` (100: none), and its mean luma step."""
    a = gray8(y)
    if q >= 100:
        return gray_input(a), 0.0
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=q)
    buf.seek(0)
    im = Image.open(buf)
    step = float(np.mean(im.quantization[0]))
    return gray_input(np.asarray(im.convert("L"))), step


def verdict(files: list[str]) -> None:
    """Print the check's table and its verdict (the rule written before the check, docs/logs/sr-jpeg-prereg.md)."""
    import statistics as st

    rows = [json.loads(line) for f in files for line in open(f) if line.startswith("{")]
    ok = True
    print(f"{len(rows)} cases")
    tol = 0.005 if "exposure" in rows[0] else 0.0  # dimcheck: cases with g = 1 are the same under both
    groups = sorted({(r.get("exposure", 1.0), r["q"]) for r in rows}, key=lambda eq: (-eq[0], -eq[1]))
    for mode in ("auto", "given"):
        for e, q in groups:
            rs = [r for r in rows if r["q"] == q and r.get("exposure", 1.0) == e]
            now, rule = [r[f"{mode}_now"] for r in rs], [r[f"{mode}_rule"] for r in rs]
            good = st.mean(rule) >= st.mean(now) - tol and min(rule) >= min(now) - 0.1
            ok &= good
            if "exposure" in rows[0]:
                print(f"exposure {e:g}: {sum(r['gain'] > 1 for r in rs)} of {len(rs)} cases mapped, "
                      f"gain up to {max(r['gain'] for r in rs):.2f}")
            fams = " ".join(f"{f} {st.mean(r[f'{mode}_now'] for r in rs if r['fam'] == f):+.2f}->"
                            f"{st.mean(r[f'{mode}_rule'] for r in rs if r['fam'] == f):+.2f}"
                            for f in sorted({r["fam"] for r in rs}))
            print(f"{mode} q{q} n={len(rs)} gamma {st.mean(r[f'{mode}_gamma'] for r in rs):.2f}: mean "
                  f"{st.mean(now):+.3f} -> {st.mean(rule):+.3f}, worst {min(now):+.2f} -> {min(rule):+.2f}, under "
                  f"bicubic {sum(v < 0 for v in now)} -> {sum(v < 0 for v in rule)} "
                  f"{'PASS' if good else 'FAIL'} | {fams}")
    print("VERDICT:", "ship" if ok else "not shipped")


def main() -> None:
    if sys.argv[1] == "verdict":
        verdict(sys.argv[2:])
        return
    mode, start, limit, quals = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    exposure = float(sys.argv[6]) if mode == "dimcheck" else 1.0
    scaled = sys.argv[7].split(",") if mode == "dimcheck" and len(sys.argv) > 7 else ["auto", "given"]
    gammas = [float(v) for v in sys.argv[5].split(",")] if mode == "probe" else []
    fams = sys.argv[6 if mode == "probe" else 5].split(",")
    torch.set_num_threads(1)
    net, _ = load_task_model("sr", None)
    est_net = E.load_estimator(None)
    root = DS.data_root(None)
    files = held_out_files(root, start, limit)
    for s in (2, 3, 4):
        for i, f in enumerate(files, start=start):
            x = held_out_hr(f, s) * exposure
            for fam in fams:
                _, k_true, _ = draw_degradation(fam, s, i, 100)
                with torch.no_grad():
                    y0 = SRBlur(k_true, s).A(x)
                    for q in (int(v) for v in quals.split(",")):
                        y, step = jpeg(y0, q)
                        rms = round(float(255 * (y - y0).pow(2).mean().sqrt()), 3)
                        bic = bicubic_on_grid(y, s, E.grid_shift(k_true))
                        mcg = exposure_map(y) if mode == "dimcheck" else (0.0, 0.0, 1.0)  # as restore maps it
                        y = exposure_apply(y, mcg)
                        est = E.estimate(est_net, y, s)
                        p_bic = metrics.score(bic.clamp(0, 1), x, PROTOCOL["sr"], border=s)["psnr"]
                        rec = {"s": s, "i": i, "fam": fam, "q": q, "qmean": step, "noise": round(255 * est["noise"], 2),
                               "rms": rms, "bic": round(p_bic, 3)}

                        if mode == "dimcheck":
                            rec.update(exposure=exposure, gain=round(mcg[2], 4))

                        def gain(k: torch.Tensor, gm: float, y=y, x=x, s=s, p_bic=p_bic, mcg=mcg) -> float:
                            out = exposure_unmap(net(y, SRBlur(k, s, data_weight=gm)), mcg).clamp(0, 1)
                            return round(metrics.score(out, x, PROTOCOL["sr"], border=s)["psnr"] - p_bic, 3)

                        if mode == "probe":
                            k, _ = E.kernel_policy(None, est["kernel"], est["snapped"], policy=net.auto_policy)
                            rec.update({f"g{gm:g}": gain(k, gm) for gm in gammas})
                        else:
                            for name, given in (("auto", None), ("given", k_true)):
                                k, _ = E.kernel_policy(given, est["kernel"], est["snapped"], policy=net.auto_policy)
                                base = E.data_weight_policy(est["noise"], explicit=given is not None)
                                now = base
                                step_rule = step
                                if mode == "dimcheck":  # the file's step as restore read it, and g·step
                                    now = max(base, E.jpeg_data_weight(step if q < 100 else None, given is not None))
                                    step_rule = mcg[2] * step if name in scaled else step
                                rule = max(base, E.jpeg_data_weight(step_rule if q < 100 else None, given is not None))
                                p_now = gain(k, now)  # the same weight restores the same: computed once
                                p_rule = p_now if rule == now else gain(k, rule)
                                rec.update({f"{name}_now": p_now, f"{name}_rule": p_rule,
                                            f"{name}_gamma": round(rule, 2)})
                        print(json.dumps(rec), flush=True)


if __name__ == "__main__":
    main()
