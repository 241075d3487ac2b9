"""Learning curves (validation PSNR vs wall-clock minutes) from training logs, as Markdown and a PNG.

    python scripts/curves.py runs docs/TRAINING.md docs/curves.png

Each task gets share9 → lorun9 (the adapt curve continues where the backbone's ended) beside block9 with
the same budget. Validation PSNR is float [0,1] on the held-out training split (not a test set).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from PIL import Image, ImageDraw

RUNS = {
    "cs": [("cs-share9-r25", "cs-lorun9-r25"), ("cs-block9-r25",), ("cs-share9-r25", "curve15-cs-lorun9-r25")],
    "sr": [("sr-share9", "sr-lorun9"), ("sr-block9",)],
    "cassi": [("cassi-share9", "cassi-lorun9"), ("cassi-block9",)],
}
COLORS = [(214, 39, 40), (31, 119, 180), (44, 160, 44)]


def load(runs: Path, name: str) -> list[dict]:
    f = runs / f"{name}.safetensors.log.jsonl"
    if not f.exists():
        return []
    return [r for r in map(json.loads, f.read_text().splitlines()) if "val_psnr" in r]


def chained(runs: Path, names: tuple[str, ...]) -> list[tuple[float, int, float, str]]:
    """(minutes, step, val PSNR, run) with later runs offset by the earlier runs' time and steps."""
    out, t0, s0 = [], 0.0, 0
    for n in names:
        recs = load(runs, n)
        out += [(t0 + r["minutes"], s0 + r["step"], r["val_psnr"], n) for r in recs]
        if recs:
            t0, s0 = out[-1][0], out[-1][1]
    return out


def its(runs: Path, name: str) -> str:
    recs = [r for r in map(json.loads, (runs / f"{name}.safetensors.log.jsonl").read_text().splitlines())]
    if not recs:
        return "–"
    last = recs[-1]
    return f"{last['step'] / max(1e-9, last['minutes'] * 60):.2f}"


def main() -> None:
    runs, md, png = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    lines = ["# Training curves (CPU)", "",
             f"Regenerate with `python scripts/curves.py {runs} {md} {png}` from the runs' `*.log.jsonl`.",
             "Validation PSNR: float [0, 1], the task's held-out split of its *training* data (CS: 10 Train400 "
             "images, gray; SR: 6 T91 images at fixed ×2 K1 / ×3 K5 / ×4 K9, RGB; CASSI: two 256×256 CAVE "
             "training-scene regions, 28 bands). One thread per run, two runs sharing the 2-core machine.", ""]
    img = Image.new("RGB", (1200, 380), "white")
    d = ImageDraw.Draw(img)
    for col, (task, groups) in enumerate(RUNS.items()):
        curves = [chained(runs, g) for g in groups]
        lines += [f"## {task}", "", "| run | steps | minutes | it/s (whole run) | final val PSNR |",
                  "|---|---|---|---|---|"]
        for g in groups:
            for n in g:
                recs = load(runs, n)
                if recs:
                    lines.append(f"| {n} | {recs[-1]['step']} | {recs[-1]['minutes']:.1f} | {its(runs, n)} | "
                                 f"{recs[-1]['val_psnr']:.2f} |")
        lines += ["", "| minutes | " + " | ".join(" → ".join(g) for g in groups) + " |",
                  "|---|" + "---|" * len(groups)]
        grid = sorted({round(p[0], 1) for c in curves for p in c})
        for t in grid[:: max(1, len(grid) // 16)]:
            cells = []
            for c in curves:
                before = [p for p in c if round(p[0], 1) <= t]
                cells.append(f"{before[-1][2]:.2f}" if before else "–")
            lines.append(f"| {t:.1f} | " + " | ".join(cells) + " |")
        lines.append("")
        # panel
        x0, y0, w, h = 60 + col * 390, 40, 310, 280
        pts = [p for c in curves for p in c]
        d.text((x0, 10), f"{task}: val PSNR (dB) vs minutes", fill="black")
        d.rectangle([x0, y0, x0 + w, y0 + h], outline="black")
        if not pts:
            continue
        tmax = max(p[0] for p in pts)
        lo, hi = min(p[2] for p in pts) - 0.2, max(p[2] for p in pts) + 0.2
        for k in range(5):
            v = lo + (hi - lo) * k / 4
            yy = y0 + h - (v - lo) / (hi - lo) * h
            d.text((x0 - 45, yy - 6), f"{v:.1f}", fill="black")
            t = tmax * k / 4
            d.text((x0 + w * k / 4 - 8, y0 + h + 6), f"{t:.0f}", fill="black")
        for ci, (g, c) in enumerate(zip(groups, curves, strict=True)):
            xy = [(x0 + p[0] / tmax * w, y0 + h - (p[2] - lo) / (hi - lo) * h) for p in c]
            if len(xy) > 1:
                d.line(xy, fill=COLORS[ci], width=2)
            d.text((x0 + 8, y0 + 8 + 14 * ci), " -> ".join(g), fill=COLORS[ci])
    md.write_text("\n".join(lines) + "\n")
    img.save(png)


if __name__ == "__main__":
    main()
