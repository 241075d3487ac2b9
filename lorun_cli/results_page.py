"""The results page in Markdown: measured tables, scale × kernel grids, the paper's published numbers, targets.

The published numbers are data (``assets/results/published.json``), rendered here as quoted tables.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .bench import BenchResult
from .facts import CASSI_BANDS, CASSI_STEP, TASKS
from .results_suite import TASK_TITLES, Config, Run, pct, psnr_of

_PUBLISHED_FILE = Path(__file__).resolve().parent / "assets" / "results" / "published.json"


@dataclass
class Target:
    """One project target: what it asks, what was measured, MET / MISSED / NOT MEASURED."""

    name: str
    measured: str
    status: str


def published() -> dict[str, dict[str, Any]]:
    """The published tables per task: caption, columns and rows ready to render (SR means computed here)."""
    data = json.loads(_PUBLISHED_FILE.read_text(encoding="utf-8"))
    cs, sr, cassi = data["cs"], data["sr"], data["cassi"]
    cols = cs["ratio_columns"]
    cs_rows = [(r["method"], r["note"], r["params"], *[r["values"].get(c, "") for c in cols], r["source"])
               for r in cs["rows"]]
    sr_rows = []
    table = sr["kernel_table"]
    for method, by_scale in table["methods"].items():
        name, params = method.rsplit(" (", 1)
        for s, vals in sorted(by_scale.items(), key=lambda kv: -int(kv[0])):
            sr_rows.append((name, f"BSD68 ×{s}, mean of the 12 per-kernel values (mean computed here; "
                            f"K1 {vals[0]:.2f} … K12 {vals[-1]:.2f})",
                            params.rstrip(")"), f"{statistics.fmean(vals):.2f}", table["source"]))
    sr_rows += [tuple(r) for r in sr["rows"]]
    return {"cs": {**cs, "rows": cs_rows, "left": 2}, "sr": {**sr, "rows": sr_rows, "left": 3},
            "cassi": {**cassi, "rows": [tuple(r) for r in cassi["rows"]], "left": 3}}


def _fmt_int(v: Any) -> str:
    return f"{int(v):,}" if v else "–"


def _fmt(v: Any, digits: int = 2) -> str:
    return "–" if v is None else f"{float(v):.{digits}f}"


def _md_table(header: Sequence[str], rows: list[Sequence[str]], left: int = 1) -> list[str]:
    """A Markdown table; the first ``left`` columns are left-aligned, the others right-aligned."""
    def cell(s: Any) -> str:
        return str(s).replace("|", "\\|")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |",
             "|" + "|".join("---" if i < left else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return lines


def _setting_text(cfg: Config, res: BenchResult) -> str:
    s = res.setting
    if res.task == "cs":
        return (f"sampling ratio {pct(float(s.get('ratio', cfg.get('ratio', 0))))}, {s.get('block', 32)}×"
                f"{s.get('block', 32)} blocks; the classical baselines sample with the model under test's learned Φ")
    if res.task == "sr":
        k = str(s.get("kernels", cfg.get("kernels")))
        ktxt = "mean over the 12 kernels K1–K12" if k.lower() == "all" else f"kernel {k}"
        return f"×{s.get('scale')}, {ktxt}, circular blur + top-left decimation, no noise"
    return f"{s.get('mask', 'mask')}, dispersion step {s.get('step', CASSI_STEP)}, {CASSI_BANDS} bands, no noise"


def _runs_text(res: BenchResult, repeats: int) -> str:
    """'N runs', or 'N runs (M for the classical baselines)' when the baselines were timed fewer times."""
    fewer = {r["latency_runs"] for r in res.rows if r.get("latency_runs", repeats) != repeats}
    return f"{repeats} runs" + (f" ({', '.join(map(str, sorted(fewer)))} for the classical baselines)" if fewer else "")


def _measured_table(n: int, cfg: Config, res: BenchResult, repeats: int, memory: bool) -> list[str]:
    ds = cfg.get("dataset") or "samples"
    header = ("Method", "Strategy", "Params total", "Stored params (network + Φ)", "Stored MB", f"PSNR ({ds})",
              f"SSIM ({ds})", "Latency ms, median (min–max)", "Peak MB", "× stored", "× latency", "× peak")
    rows = []
    for r in res.rows:
        ratio = r.get("ratio_to_model", {})
        op = r.get("operator") or 0
        stored = "–" if not r.get("stored") else (
            f"{r['network']:,} + Φ {op:,}" if op else f"{r['stored']:,}")
        rows.append((r["method"] + (" (model under test)" if r.get("role") == "model" else ""), r["strategy"],
                     _fmt_int(r.get("total")), stored, _fmt(r.get("stored_mb"), 3) if r.get("stored") else "–",
                     _fmt(r["psnr"]), _fmt(r["ssim"], 4),
                     f"{r['latency_ms']:.1f} ({r['latency_min_ms']:.1f}–{r['latency_max_ms']:.1f})",
                     _fmt(r.get("peak_mem_mb"), 0), _fmt(ratio.get("stored") if r.get("stored") else None),
                     _fmt(ratio.get("latency_ms")),
                     _fmt(ratio.get("peak_mem_mb"))))
    mem = ("not measured (quick run)" if not memory else
           "CUDA max allocated" if res.device.startswith("cuda") else "peak RSS of a fresh process running one "
           "inference on the first case (includes the Python/torch runtime)")
    cap = (f"*Table {n}. {cfg['title']}. Test data: {cfg.get('data_note', res.dataset)}. "
           f"Protocol: {res.protocol}; PSNR/SSIM are means over all cases. Setting: {_setting_text(cfg, res)}. "
           "Params total: every parameter (for CS the learned Φ included); stored: what the model files hold "
           "(network, plus the learned CS sampling matrix Φ where there is one); × stored counts Φ too. "
           f"Latency: median (min–max) of {_runs_text(res, repeats)} after one "
           f"warm-up each, on the first case, the learned models' runs interleaved (A B A B …) so drift hits "
           f"them alike, {res.device}, {res.threads} thread(s). Peak memory: {mem}. "
           f"×: ratio to the model under test (lorun9).*")
    lines = _md_table(header, rows, left=2) + ["", cap]
    if cfg.get("notes"):
        lines += [""] + [f"- Row {note}." for note in cfg["notes"]]
    per = [r.get("per_image_psnr") or [] for r in res.rows]
    if per and 1 < len(per[0]) <= 14:
        lines += ["", f"Per-case PSNR (dB), cases in test-set order ({cfg.get('data_note', res.dataset)}):", ""]
        hdr = ("Method", *[f"#{i + 1}" for i in range(len(per[0]))])
        lines += _md_table(hdr, [(r["strategy"], *[f"{p:.2f}" for p in r["per_image_psnr"]]) for r in res.rows])
    return lines


def _grid_table(n: int, grid: list[Run]) -> list[str]:
    """One PSNR table for a scale × kernel grid: a row per kernel, lorun9 / other / gap per scale."""
    cfg0, res0 = grid[0]
    other = next(r["strategy"] for r in res0.rows if r.get("role") != "model")
    scales = sorted({c["scale"] for c, _ in grid})
    cells = {(c["kernels"], c["scale"]): r for c, r in grid}
    header = ["Kernel"] + [f"×{s} {h}" for s in scales for h in ("lorun9", other, "gap")]
    rows = []
    for k in dict.fromkeys(c["kernels"] for c, _ in grid):
        row = [k]
        for s in scales:
            r = cells.get((k, s))
            a, b = (psnr_of(r, "lorun9"), psnr_of(r, other)) if r else (None, None)
            row += [_fmt(a), _fmt(b), f"{a - b:+.2f}" if a is not None and b is not None else "–"]
        rows.append(row)
    title = cfg0["grid_title"]
    cap = (f"*Table {n}. {title}: PSNR (dB) of lorun9 and {other}, gap = lorun9 − {other}. Test data: "
           f"{cfg0.get('data_note', res0.dataset)}. Protocol: {res0.protocol.rsplit(', border', 1)[0]}, border = "
           "scale; means over the images. PSNR only: latency and memory are in the tables above.*")
    return [f"### {title}", ""] + _md_table(header, rows) + ["", cap]


def _published_lines(task: str) -> list[str]:
    pub = published()[task]
    lines = ["#### Published numbers (other protocol/data, not measured here)", ""]
    lines += _md_table(pub["columns"], pub["rows"], left=pub["left"])
    lines += ["", f"*{pub['caption']}*"]
    return lines


def render_markdown(runs: list[Run], skipped: list[tuple[str, str]], targets: list[Target],
                    facts: dict[str, str], command: str, plot_rel: str | None, data_root: Path | None,
                    repeats: int, memory: bool, quick: bool) -> str:
    """The results page."""
    lines = [f"Regenerate this page with: `{command}`", "", "# LoRun — measured results", ""]
    machine = (f"device **{facts['device']}**" + (f" ({facts['gpu']})" if "gpu" in facts else "")
               + f", **{facts['threads']}** torch thread(s), CPU: {facts['cpu']}, torch {facts['torch']}, "
               f"lorun {facts['lorun']}, Python {facts['python']}.")
    lines += [f"Machine: {machine}", ""]
    if data_root is None:
        lines += ["Data: no data root was given, so only the **bundled samples** were measured (one configuration "
                  "per task); pass `--data <root>` for the full suite (Set11, BSD68, Set5, Set14, CBSD68, CAVE).", ""]
    else:
        lines += ["Data: the standard test sets under the data root `<root>` (layout in the README).", ""]
    run_mode = f"latency over {repeats} repeats" + ("" if memory else ", peak memory not measured")
    lines += [f"Run: {run_mode}" + (" (quick run)." if quick else "."), ""]
    if plot_rel:
        lines += [f"![PSNR vs stored parameters, measured here]({plot_rel})", ""]
    n = 0
    for task in TASKS:
        task_runs = [(c, r) for c, r in runs if c["task"] == task]
        task_skips = [text for t, text in skipped if t == task]
        lines += [f"## {TASK_TITLES[task]}", ""]
        for cfg, res in task_runs:
            if cfg.get("grid"):
                continue
            n += 1
            lines += [f"### {cfg['title']}", ""]
            lines += _measured_table(n, cfg, res, repeats, memory) + [""]
        for grid in dict.fromkeys(c["grid"] for c, _ in task_runs if c.get("grid")):
            n += 1
            lines += _grid_table(n, [(c, r) for c, r in task_runs if c.get("grid") == grid]) + [""]
        if not task_runs:
            lines += ["No configuration of this task was measured.", ""]
        if task_skips:
            lines += [f"- {s}" for s in task_skips] + [""]
        lines += _published_lines(task) + [""]
    lines += ["## Targets", "",
              "Computed from the measurements above (and, for file sizes, the weights manifest); "
              "NOT MEASURED where the configuration a target needs was not run.", ""]
    lines += _md_table(("Target", "Measured", "Status"), [(t.name, t.measured, f"**{t.status}**") for t in targets],
                       left=3)
    lines.append("")
    return "\n".join(lines)
