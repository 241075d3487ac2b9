"""Learning curves (validation PSNR vs wall-clock minutes) from training logs, as Markdown and a PNG.

    python scripts/curves.py docs/logs docs/TRAINING.md docs/curves.png

Each task gets share9 → lorun9 (the adapt curve continues where the backbone's ended) beside block9 with
the same budget. Validation PSNR is float [0,1] on the held-out training split (not a test set).
The runs' ``*.log.jsonl`` files are kept in ``docs/logs``. A phase whose log is missing enters a chain as
its end point only (steps, minutes, validation PSNR from the weights manifest); a task with no log at all
keeps its section of the existing Markdown, and its panel is drawn from that section's table.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

from PIL import Image, ImageDraw

RUNS = {
    "cs": [("cs-share9-r25", "cs-lorun9-r25"), ("cs-block9-r25",), ("cs-share9-r25", "curve15-cs-lorun9-r25")],
    "sr": [("sr-share9-k12", "sr-share9", "sr-lorun9"), ("sr-share9-k12", "sr-share9", "sr-block9")],
    "sr, 12 kernels only (variants)": [("sr-share9-k12", "sr-lorun9-k12"), ("sr-block9-k12",)],
    "sr on estimated kernels (not shipped)": [
        ("sr-lorun9-auto",), ("sr-lorun9-auto-raw",)],
    "cs 10 %": [("cs-share9-r25", "cs-lorun9-r10"), ("cs-block9-r10",), ("cs-block1-r10",),
                ("cs-share9-r25", "cs-lorun9-r10-compact")],
    "cs ratio adapts": [("cs-share9-r25", "cs-lorun9-r1"), ("cs-share9-r25", "cs-lorun9-r50")],
    "cassi": [("cassi-denoise", "cassi-share9-leg1", "cassi-share9", "cassi-lorun9-cave", "cassi-lorun9-g60",
               "cassi-lorun9-g45", "cassi-lorun9"),
              ("cassi-denoise", "cassi-block9-leg1", "cassi-block9-leg2", "cassi-block9-leg3", "cassi-block9-leg4",
               "cassi-block9-g60", "cassi-block9-g45", "cassi-block9"),
              ("cassi-denoise", "cassi-share9-leg1", "cassi-share9", "cassi-lorun9-g10"),
              ("cassi-denoise", "cassi-share9-leg1", "cassi-lorun9-leg1", "cassi-lorun9-leg2", "cassi-lorun9-leg3"),
              # phase 6 (not shipped): the phase-5 models continued from the 5-component, 20-iteration start
              ("cassi-denoise", "cassi-share9-leg1", "cassi-share9", "cassi-lorun9-cave", "cassi-lorun9-g60",
               "cassi-lorun9-g45", "cassi-lorun9", "cassi-lorun9-p6"),
              ("cassi-denoise", "cassi-block9-leg1", "cassi-block9-leg2", "cassi-block9-leg3", "cassi-block9-leg4",
               "cassi-block9-g60", "cassi-block9-g45", "cassi-block9", "cassi-block9-p6")],
}
COLORS = [(214, 39, 40), (31, 119, 180), (44, 160, 44), (148, 103, 189), (255, 127, 14), (23, 190, 207)]


MANIFEST = Path(__file__).resolve().parent.parent / "weights_manifest.json"


def log_path(runs: Path, name: str) -> Path:
    return runs / f"{name}.safetensors.log.jsonl"


@functools.cache
def manifest_training() -> dict[str, dict]:
    """Each manifest model's training summary, by name."""
    return {m["name"]: m["training"] for m in json.loads(MANIFEST.read_text())["models"] if "training" in m}


def load(runs: Path, name: str) -> list[dict]:
    """Validation records of a run's log; the manifest's end point when the log is missing."""
    f = log_path(runs, name)
    if f.exists():
        return [r for r in map(json.loads, f.read_text().splitlines()) if "val_psnr" in r]
    t = manifest_training().get(name)
    return [{"step": t["steps"], "minutes": t["minutes"], "val_psnr": t["val_psnr"], "end_only": True}] if t else []


def old_sections(md: Path) -> dict[str, list[str]]:
    """The existing Markdown's ``## task`` sections, as lines."""
    out: dict[str, list[str]] = {}
    cur = None
    for line in md.read_text().splitlines() if md.exists() else []:
        if line.startswith("## "):
            cur = line[3:].strip()
            out[cur] = []
        if cur:
            out[cur].append(line)
    return out


def curves_from_table(section: list[str]) -> list[list[tuple[float, int, float, str]]]:
    """Curve points read back from a kept section's 'minutes | …' table."""
    start = next((i for i, ln in enumerate(section) if ln.startswith("| minutes")), None)
    if start is None:
        return []
    ncol = section[start].count("|") - 2
    curves: list[list[tuple[float, int, float, str]]] = [[] for _ in range(ncol)]
    for ln in section[start + 2:]:
        if not ln.startswith("| "):
            break
        cells = [c.strip() for c in ln.strip("|").split("|")]
        for i, c in enumerate(cells[1:]):
            if c != "–":
                curves[i].append((float(cells[0]), 0, float(c), ""))
    return curves


def chained(runs: Path, names: tuple[str, ...]) -> list[tuple[float, int, float, str]]:
    """(minutes, step, val PSNR, run) with later runs offset by the earlier runs' time and steps."""
    out, t0, s0 = [], 0.0, 0
    for n in names:
        recs = load(runs, n)
        out += [(t0 + r["minutes"], s0 + r["step"], r["val_psnr"], n + ("*" if r.get("end_only") else ""))
                for r in recs]
        if recs:
            t0, s0 = out[-1][0], out[-1][1]
    return out


def its(recs: list[dict]) -> str:
    """Whole-run iterations per second from a run's last record."""
    last = recs[-1]
    return f"{last['step'] / max(1e-9, last['minutes'] * 60):.2f}"


def main() -> None:
    runs, md, png = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    kept = old_sections(md)
    lines = ["# Training curves (CPU)", "",
             f"Regenerate with `python scripts/curves.py {runs} {md} {png}` from the runs' `*.log.jsonl`.",
             "Validation PSNR: float [0, 1], the task's held-out split of its *training* data (CS: 10 Train400 "
             "images, gray; SR: 6 T91 images at fixed ×2 K1 / ×3 K5 / ×4 K9, RGB; CASSI: two 256×256 CAVE "
             "training-scene regions, 28 bands; \"sr on estimated kernels\": the same SR images restored with the "
             "kernel estimator's kernel, as `--kernel auto` restores, so not comparable with the other SR curves). "
             "One thread per run, two runs sharing the 2-core machine.",
             "", "The runs come from two sessions on 2-core machines of different speed (compare the it/s "
             "columns); within a task, the runs whose logs are listed were made on the same machine.", ""]
    img = Image.new("RGB", (60 + 390 * len(RUNS), 380), "white")
    d = ImageDraw.Draw(img)
    for col, (task, groups) in enumerate(RUNS.items()):
        has_log = any(log_path(runs, n).exists() for g in groups for n in g)
        if not has_log and task in kept:
            lines += kept[task]
            curves = curves_from_table(kept[task])
            draw_panel(d, col, task, groups, curves)
            continue
        curves = [chained(runs, g) for g in groups]
        lines += [f"## {task}", "", "| run | steps | minutes | it/s (whole run) | final val PSNR |",
                  "|---|---|---|---|---|"]
        seen = set()
        for g in groups:
            for n in g:
                recs = load(runs, n)
                if recs and n not in seen:
                    seen.add(n)
                    note = " (log not kept: end point from the manifest)" if recs[-1].get("end_only") else ""
                    lines.append(f"| {n}{note} | {recs[-1]['step']} | {recs[-1]['minutes']:.1f} | {its(recs)} | "
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
        draw_panel(d, col, task, groups, curves)
    md.write_text("\n".join(lines) + "\n")
    img.save(png)


def draw_panel(d: ImageDraw.ImageDraw, col: int, task: str, groups: list[tuple[str, ...]],
               curves: list[list[tuple[float, int, float, str]]]) -> None:
    """One task's panel: validation PSNR vs minutes, one line per chain."""
    x0, y0, w, h = 60 + col * 390, 40, 310, 280
    pts = [p for c in curves for p in c]
    d.text((x0, 10), f"{task}: val PSNR (dB) vs minutes", fill="black")
    d.rectangle([x0, y0, x0 + w, y0 + h], outline="black")
    if not pts:
        return
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
        for (px, py), p in zip(xy, c, strict=True):
            if p[3].endswith("*"):  # a phase known only by its end point
                d.ellipse([px - 4, py - 4, px + 4, py + 4], outline=COLORS[ci], width=2)
        d.text((x0 + 8, y0 + 8 + 14 * ci), " -> ".join(g), fill=COLORS[ci])


if __name__ == "__main__":
    main()
