"""`lorun bench --all`: run the benchmark suite and write the results page (Markdown) and the PSNR-vs-params figure.

Every measured number comes from :func:`lorun_cli.bench.run_bench` (one :class:`BenchResult` per configuration);
the targets are computed from those results and the weights manifest, never typed in. Published numbers are
quoted with the table they come from and kept in separate, clearly labelled tables.
"""

from __future__ import annotations

import io
import math
import os
import platform
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .bench import DATASET_DIRS, BenchOptions, BenchResult, run_bench
from .errors import LorunError
from .io.checkpoint import atomic_write_bytes

Config = dict[str, Any]
Run = tuple[Config, BenchResult]

TASK_TITLES = {"cs": "Compressive sensing (CS)", "sr": "Super-resolution (SR)", "cassi": "CASSI (snapshot spectral)"}
TASK_ORDER = ("cs", "sr", "cassi")
CLASSICAL = {"linear", "tv", "bicubic", "gap-tv"}
LEARNED = {"block1", "share9", "block9", "lorun9"}

#: The full suite run by ``lorun bench --all --data ROOT``. ``ratio: "each"`` expands to every ratio for
#: which the manifest has a CS lorun9 model; ``"variants"`` in ``compare`` to the manifest's variant models;
#: SR ``scale``/``kernels: "each"`` to every scale × kernel case, shown as one PSNR grid (``grid``: one
#: latency run, no memory probe, since only PSNR is reported there).
#: Keys of :class:`BenchOptions` plus ``key``, ``title``, ``data_note``.
SUITE: list[Config] = [
    {"key": "cs-set11", "title": "CS — Set11", "task": "cs", "dataset": "set11", "ratio": "each",
     "compare": ["block9", "block1", "variants", "linear", "tv"], "data_note": "Set11, all 11 images"},
    {"key": "cs-bsd68-r25", "title": "CS — BSD68 (first 20 images), ratio 25 %", "task": "cs", "dataset": "bsd68",
     "ratio": 0.25, "limit": 20, "compare": ["block9", "block1", "linear", "tv"],
     "data_note": "BSD68 gray, first 20 images by file name (of 68)"},
    {"key": "sr-set5-x3-k5", "title": "SR — Set5 ×3, kernel K5", "task": "sr", "dataset": "set5", "scale": 3,
     "kernels": "K5", "compare": ["block9", "bicubic"], "data_note": "Set5, all 5 images, ×3, blur kernel K5"},
    {"key": "sr-cbsd68-x4-all", "title": "SR — CBSD68 first 10 images ×4, mean over the 12 kernels", "task": "sr",
     "dataset": "cbsd68", "scale": 4, "kernels": "all", "limit": 10, "compare": ["block9", "bicubic"],
     "data_note": "CBSD68 first 10 images (order of assets/cbsd68.json), ×4, mean over the 12 kernels K1–K12 "
     "(120 image-kernel cases)"},
    {"key": "sr-set14-x2-k1", "title": "SR — Set14 ×2, kernel K1", "task": "sr", "dataset": "set14", "scale": 2,
     "kernels": "K1", "compare": ["block9", "bicubic"], "data_note": "Set14, all 14 images, ×2, blur kernel K1"},
    {"key": "sr-cbsd68-grid", "title": "SR — CBSD68 first 10 images, every scale × kernel", "task": "sr",
     "dataset": "cbsd68", "scale": "each", "kernels": "each", "limit": 10, "compare": ["bicubic"], "grid": True,
     "data_note": "CBSD68 first 10 images (order of assets/cbsd68.json), no noise"},
    {"key": "cassi-cave", "title": "CASSI — CAVE hold-out (3 centre crops)", "task": "cassi", "dataset": "cave",
     "compare": ["block9", "gap-tv"],
     "data_note": "CAVE hold-out: the 3 test scenes, centre 256×256 crops, 21 bands interpolated to 28 "
     "(not KAIST)"},
]

#: What runs without a data root: one configuration per task on the bundled samples.
BUNDLED_SUITE: list[Config] = [
    {"key": "cs-samples", "title": "CS — bundled samples", "task": "cs", "dataset": None, "ratio": "default",
     "compare": ["block9", "block1", "linear", "tv"], "data_note": "the bundled CS sample images"},
    {"key": "sr-samples-x4-k1", "title": "SR — bundled samples ×4, kernel K1", "task": "sr", "dataset": None,
     "scale": 4, "kernels": "K1", "compare": ["block9", "bicubic"],
     "data_note": "the bundled SR sample images, ×4, blur kernel K1"},
    {"key": "cassi-samples", "title": "CASSI — bundled sample", "task": "cassi", "dataset": None,
     "compare": ["block9", "gap-tv"], "data_note": "the bundled CAVE sample cube (256×256, 28 bands)"},
]

#: Latency runs of the classical baselines on the page at most (GAP-TV/TV take seconds per run and no
#: target compares their latency); learned models get every ``--repeats`` run.
BASELINE_REPEATS = 3

_OPTION_KEYS = ("task", "dataset", "ratio", "scale", "kernels", "limit", "compare")


# ------------------------------------------------------------------------------------------------ planning
def _manifest_models() -> list[dict[str, Any]]:
    from .io.weights import load_manifest

    return list(load_manifest()["models"])


def _has_model(models: list[dict[str, Any]], task: str, strategy: str, ratio: float | None) -> bool:
    """Same matching rule as :func:`lorun_cli.restore.default_model_name`."""
    for e in models:
        if e.get("task") != task or e.get("strategy") != strategy or e.get("variant"):
            continue
        if task == "cs" and abs(float(e.get("ratio", -1)) - (0.25 if ratio is None else ratio)) > 1e-6:
            continue
        return True
    return False


def cs_ratios(models: list[dict[str, Any]]) -> list[float]:
    """Sorted ratios for which the manifest has a CS lorun9 model."""
    return sorted({round(float(e["ratio"]), 6) for e in models if e.get("task") == "cs"
                   and e.get("strategy") == "lorun9" and e.get("ratio") is not None and not e.get("variant")})


def variants(models: list[dict[str, Any]], task: str, ratio: float | None) -> list[str]:
    """Names of the manifest's variant models (e.g. compact adapters) for ``task`` (CS: at ``ratio``)."""
    return [e["name"] for e in models if e.get("variant") and e.get("task") == task
            and (task != "cs" or abs(float(e.get("ratio", -1)) - (0.25 if ratio is None else ratio)) < 1e-6)]


def _classical_available() -> bool:
    try:
        from . import classical  # noqa: F401
    except ImportError:
        return False
    return True


def _pct(ratio: float) -> str:
    return f"{ratio * 100:g} %"


def _expand(cfg: Config, models: list[dict[str, Any]]) -> list[Config]:
    """Concrete configurations of one suite entry (CS ratios, SR scale × kernel grids resolved)."""
    if cfg["task"] == "sr" and cfg.get("scale") == "each":
        from .physics.sr import load_kernels

        names = list(load_kernels()) if cfg.get("kernels") == "each" else [cfg["kernels"]]
        return [{**cfg, "key": f"{cfg['key']}-x{sc}-{k}", "title": f"{cfg['title']}: ×{sc} {k}", "scale": sc,
                 "kernels": k, "grid": cfg["key"], "grid_title": cfg["title"]} for sc in (2, 3, 4) for k in names]
    if cfg["task"] != "cs":
        return [dict(cfg)]
    if cfg.get("ratio") == "each":
        ratios = cs_ratios(models) or [0.25]
        return [{**cfg, "key": f"{cfg['key']}-r{r * 100:g}", "title": f"{cfg['title']}, ratio {_pct(r)}",
                 "ratio": r} for r in ratios]
    if cfg.get("ratio") == "default":
        ratios = cs_ratios(models)
        r = 0.25 if (not ratios or 0.25 in ratios) else ratios[0]
        return [{**cfg, "title": f"{cfg['title']}, ratio {_pct(r)}", "ratio": r}]
    return [dict(cfg)]


def _data_missing(cfg: Config, root: Path | None) -> str | None:
    """Why the configuration's test data cannot be read, or None."""
    if cfg.get("dataset") is None:
        return None
    if root is None:
        return "no data root given (--data / LORUN_DATA)"
    rel = DATASET_DIRS.get((cfg["task"], cfg["dataset"]))
    if rel is None:
        return f"unknown test set {cfg['dataset']!r}"
    folder = root / rel
    if not folder.is_dir() or not any(folder.iterdir()):
        return f"data folder {rel}/ missing or empty under the data root"
    return None


def plan_suite(data_root: Path | None, suite: Sequence[Config] | None = None
               ) -> tuple[list[Config], list[tuple[str, str]]]:
    """Decide up front what can run: (runnable configurations, (task, note) per skipped configuration).

    A configuration is skipped when its lorun9 model or its test data is missing; a compared model missing
    from the manifest (or the classical module) only drops that row, with a note. Each runnable config gets
    ``notes`` (dropped rows) and a concrete ``compare`` list.
    """
    models = _manifest_models()
    suite = list(suite) if suite is not None else (SUITE if data_root is not None else BUNDLED_SUITE)
    has_classical = _classical_available()
    runs: list[Config] = []
    skipped: list[tuple[str, str]] = []
    for template in suite:
        for cfg in _expand(template, models):
            ratio = cfg.get("ratio") if cfg["task"] == "cs" else None
            why = _data_missing(cfg, data_root)
            if why is None and not _has_model(models, cfg["task"], "lorun9", ratio):
                what = f"{cfg['task']} lorun9" + (f" at ratio {_pct(ratio)}" if ratio is not None else "")
                why = f"no {what} model in the weights manifest"
            if why is not None:
                line = (cfg["task"], f"{cfg.get('grid_title', cfg['title'])}: not run — {why}.")
                if line not in skipped:  # a grid's cases share one line
                    skipped.append(line)
                continue
            keep, notes = [], []
            compare = [v for c in cfg["compare"]
                       for v in (variants(models, cfg["task"], ratio) if c == "variants" else [c])]
            for c in compare:
                if c in CLASSICAL and not has_classical:
                    notes.append(f"{c}: left out — the classical-baselines module is not available")
                elif c in LEARNED and not _has_model(models, cfg["task"], c, ratio):
                    where = f" at ratio {_pct(ratio)}" if ratio is not None else ""
                    notes.append(f"{c}: left out — no {cfg['task']} {c} model{where} in the weights manifest")
                else:
                    keep.append(c)
            if not keep:
                why = "; ".join(notes)
                skipped.append((cfg["task"], f"{cfg['title']}: not run — nothing to compare with ({why})."))
                continue
            runs.append({**cfg, "compare": keep, "notes": notes})
    return runs, skipped


def bench_options(cfg: Config, data_root: Path | None, device: str, threads: int | None, repeats: int,
                  memory: bool) -> BenchOptions:
    """The :class:`BenchOptions` of one planned configuration."""
    kw = {k: cfg[k] for k in _OPTION_KEYS if k in cfg}
    if cfg["task"] != "cs":
        kw.pop("ratio", None)
    if cfg.get("grid"):  # a PSNR grid: latency and memory are measured by the other configurations
        repeats, memory = 1, False
    return BenchOptions(**kw, model=None, data=data_root if cfg.get("dataset") else None, repeats=repeats,
                        baseline_repeats=BASELINE_REPEATS, memory=memory, device=device, threads=threads)


# ------------------------------------------------------------------------------------------ machine facts
def machine_facts(device: str) -> dict[str, str]:
    """Device, threads, torch/lorun versions and the processor (no dates, no commit)."""
    from . import __version__

    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    facts = {"device": device, "threads": str(torch.get_num_threads()), "torch": torch.__version__,
             "lorun": __version__, "python": platform.python_version(),
             "cpu": cpu or platform.processor() or platform.machine() or "unknown"}
    if device.startswith("cuda") and torch.cuda.is_available():
        facts["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return facts


def regen_command(markdown: Path, plot: Path | None, has_data: bool, threads: int | None = None,
                  device: str = "cpu", repeats: int = 5, memory: bool = True, quick: bool = False) -> str:
    """The one command that regenerates the page (``<root>`` stands for the data root)."""
    def show(p: Path) -> str:
        p = Path(p)
        if p.is_absolute():
            try:
                return str(p.relative_to(Path.cwd()))
            except ValueError:
                return str(p)
        return str(p)

    parts = ["lorun bench --all", f"--markdown {show(markdown)}"]
    if plot is not None:
        parts.append(f"--plot {show(plot)}")
    if has_data:
        parts.append("--data <root>")
    if threads:
        parts.append(f"--threads {threads}")
    if device != "cpu":
        parts.append(f"--device {device}")
    if quick:
        parts.append("--quick")
    else:
        if repeats != 5:
            parts.append(f"--repeats {repeats}")
        if not memory:
            parts.append("--no-memory")
    return " ".join(parts)


# ------------------------------------------------------------------------------------------------ targets
@dataclass
class Target:
    """One project target: what it asks, what was measured, MET / MISSED / NOT MEASURED."""

    name: str
    measured: str
    status: str


def row_of(result: BenchResult, strategy: str) -> dict[str, Any] | None:
    """The row of ``strategy`` (lorun9, block9, tv, …) in a result, or None."""
    for r in result.rows:
        if r.get("strategy") == strategy or (strategy == "lorun9" and r.get("role") == "model"):
            return r
    return None


def _psnr(result: BenchResult, strategy: str) -> float | None:
    r = row_of(result, strategy)
    return None if r is None else float(r["psnr"])


def _find(runs: list[Run], task: str, dataset: str | None = None, ratio: float | None = None,
          scale: int | None = None, kernels: str | None = None) -> list[Run]:
    out = []
    for cfg, res in runs:
        if cfg["task"] != task or (dataset is not None and cfg.get("dataset") != dataset):
            continue
        if ratio is not None and abs(float(cfg.get("ratio") or -1) - ratio) > 1e-6:
            continue
        if scale is not None and cfg.get("scale") != scale:
            continue
        if kernels is not None and str(cfg.get("kernels", "")).lower() != kernels:
            continue
        out.append((cfg, res))
    return out


def _status(ok: bool) -> str:
    return "MET" if ok else "MISSED"


def _label(cfg: Config) -> str:
    if cfg["task"] == "cs":
        where = {"set11": "Set11", "bsd68": "BSD68"}.get(cfg.get("dataset") or "", cfg.get("dataset") or "")
        return f"{where} {_pct(float(cfg['ratio']))}" if where else f"{_pct(float(cfg['ratio']))} (bundled samples)"
    return cfg["title"]


def _absolute(name: str, found: list[Run], thr: float) -> Target:
    if not found:
        return Target(name, "not measured (configuration not run)", "NOT MEASURED")
    v = _psnr(found[0][1], "lorun9")
    return Target(name, f"{v:.2f} dB", _status(v >= thr))


def _task_runs(runs: list[Run], task: str, prefer: str | None = None) -> tuple[list[Run], str]:
    """Runs of a task, restricted to ``prefer``'s test set when that was run; plus a note on the source."""
    found = _find(runs, task, prefer) if prefer else []
    if found:
        return found, ""
    found = _find(runs, task)
    if found and prefer:
        return found, " — measured on the runs available, not on the target's test set"
    return found, ""


def evaluate_targets(runs: list[Run], models: list[dict[str, Any]] | None = None) -> list[Target]:
    """Every project target with the measured value and MET / MISSED (or NOT MEASURED), from the results."""
    models = models if models is not None else _manifest_models()
    grid = [r for r in runs if r[0].get("grid")]
    runs = [r for r in runs if not r[0].get("grid")]
    out: list[Target] = []
    for ratio, thr in ((0.25, 31.5), (0.10, 26.5), (0.50, 37.0)):
        out.append(_absolute(f"CS Set11 {_pct(ratio)}: lorun9 PSNR ≥ {thr:g} dB",
                             _find(runs, "cs", "set11", ratio), thr))

    cs_runs, src = _task_runs(runs, "cs", "set11")
    out.append(_gap_target("CS: lorun9 beats tv at every ratio" + src, cs_runs, "tv", 0.0, strict=True))

    sr4 = _find(runs, "sr", "cbsd68", scale=4, kernels="all")
    out.append(_absolute("SR CBSD68 ×4, 12-kernel mean: lorun9 PSNR ≥ 24.5 dB", sr4, 24.5))
    out.append(_gap_target("SR CBSD68 ×4, 12-kernel mean: lorun9 ≥ bicubic + 1.5 dB", sr4, "bicubic", 1.5))
    out.append(_every_case_target("SR: lorun9 ≥ bicubic + 1.5 dB for every kernel and scale",
                                  _find(grid, "sr"), "bicubic", 1.5))

    ca_runs, src = _task_runs(runs, "cassi", "cave")
    out.append(_gap_target("CASSI: lorun9 ≥ gap-tv + 5 dB" + src, ca_runs, "gap-tv", 5.0))

    for task in TASK_ORDER:
        tr = _find(runs, task)
        out.append(_gap_target(f"{task.upper()}: lorun9 PSNR ≥ block9 − 0.2 dB (every run)", tr, "block9", -0.2))
    for task in TASK_ORDER:
        out.append(_params_target(task, _find(runs, task)))
    out.append(_adapter_bytes_target(models))
    for task in TASK_ORDER:
        out.append(_latency_target(task, _find(runs, task)))
    return out


def _gaps(found: list[Run], other: str) -> list[tuple[Config, float]]:
    """(config, lorun9 − ``other`` PSNR) of every run that has both rows."""
    return [(c, a - b) for c, r in found
            if (a := _psnr(r, "lorun9")) is not None and (b := _psnr(r, other)) is not None]


def _gap_target(name: str, found: list[Run], other: str, margin: float, strict: bool = False) -> Target:
    """lorun9 − ``other`` ≥ ``margin`` dB (> when ``strict``) in every run that has both."""
    vals = _gaps(found, other)
    if not vals:
        return Target(name, f"not measured (no run with lorun9 and {other})", "NOT MEASURED")
    worst = min(v for _, v in vals)
    ok = worst > margin if strict else worst >= margin
    # a gap under 0.05 dB gets a third decimal, so a near-tie never reads as "+0.00 … MET"
    text = "; ".join(f"{_label(c)}: {v:+.{3 if abs(v) < 0.05 else 2}f} dB" for c, v in vals)
    return Target(name, f"lorun9 − {other}: {text}", _status(ok))


def _case(cfg: Config) -> str:
    return f"×{cfg['scale']} {cfg['kernels']}"


def _every_case_target(name: str, found: list[Run], other: str, margin: float) -> Target:
    """lorun9 − ``other`` ≥ ``margin`` dB in every case of a grid; the measured text names the cases below."""
    vals = _gaps(found, other)
    if not vals:
        return Target(name, f"not measured (no scale × kernel grid with lorun9 and {other})", "NOT MEASURED")
    below = [(c, v) for c, v in vals if v < margin]
    text = (f"{len(vals)} cases on {found[0][0]['dataset'].upper()}: lorun9 − {other} from "
            f"{min(v for _, v in vals):+.2f} to {max(v for _, v in vals):+.2f} dB; ")
    text += ("below: " + ", ".join(f"{_case(c)} {v:+.2f}" for c, v in below)) if below else "none below"
    return Target(name, text, _status(not below))


def _params_target(task: str, found: list[Run]) -> Target:
    """Stored network parameters lorun9 / block9 ≤ 0.40 (the CS Φ excluded; the ratio with Φ also shown)."""
    name = f"{task.upper()}: stored params lorun9 / block9 ≤ 0.40 (network, Φ excluded)"
    vals = []
    for cfg, res in found:
        a, b = row_of(res, "lorun9"), row_of(res, "block9")
        if a and b and b.get("network") and b.get("stored"):
            vals.append((cfg, a["network"] / b["network"], a["stored"] / b["stored"], a["network"], b["network"]))
    if not vals:
        return Target(name, "not measured (no run with lorun9 and block9)", "NOT MEASURED")
    worst = max(vals, key=lambda v: v[1])
    cfg, net, with_phi, na, nb = worst
    text = f"{net:.3f} ({na:,} / {nb:,}); with Φ: {with_phi:.3f}"
    if len(vals) > 1:
        text += f" (worst of {len(vals)} runs: {_label(cfg)})"
    return Target(name, text, _status(net <= 0.40))


def _adapter_bytes_target(models: list[dict[str, Any]]) -> Target:
    """An extra CS ratio (its lorun9 adapter file) costs ≤ 10 % of a full block9 file (manifest bytes).

    Every adapter file with a block9 model at its ratio is listed (compact variants by name); the target is met
    when some way of adding a ratio that the project ships meets it.
    """
    name = "CS: an extra ratio costs ≤ 10 % of a full model (lorun9 adapter file / block9 file, manifest bytes)"
    pairs = []
    for e in models:
        if e.get("task") != "cs" or e.get("strategy") != "lorun9" or not e.get("bytes"):
            continue
        r = float(e.get("ratio", -1))
        full = [b for b in models if b.get("task") == "cs" and b.get("strategy") == "block9" and b.get("bytes")
                and abs(float(b.get("ratio", -1)) - r) < 1e-6]
        if full:
            label = _pct(r) + (f" {e['name']}" if e.get("variant") else "")
            pairs.append((r, label, int(e["bytes"]), int(full[0]["bytes"])))
    if not pairs:
        return Target(name, "not measured (no CS lorun9 + block9 pair in the manifest)", "NOT MEASURED")
    text = "; ".join(f"{lab}: {a / b:.3f} ({a:,} / {b:,} B)" for _, lab, a, b in sorted(pairs))
    return Target(name, text, _status(min(a / b for _, _, a, b in pairs) <= 0.10))


def _latency_target(task: str, found: list[Run]) -> Target:
    """Merged lorun9 latency ≤ 1.05 × block9: status on the median of the per-run ratios."""
    name = f"{task.upper()}: merged lorun9 latency ≤ 1.05 × block9 (median over runs)"
    vals = []
    for cfg, res in found:
        a, b = row_of(res, "lorun9"), row_of(res, "block9")
        if a and b and b.get("latency_ms"):
            vals.append((cfg, a["latency_ms"] / b["latency_ms"]))
    if not vals:
        return Target(name, "not measured (no run with lorun9 and block9)", "NOT MEASURED")
    med = statistics.median(v for _, v in vals)
    text = f"{med:.3f}" + (" (" + "; ".join(f"{_label(c)}: {v:.3f}" for c, v in vals) + ")" if len(vals) > 1 else "")
    return Target(name, text, _status(med <= 1.05))


# --------------------------------------------------------------------------------------- published numbers
# Numbers quoted from the paper (table given per row) and from the project's CPU-calibration notes (marked so).
_CS_COLS = ("1 %", "4 %", "10 %", "25 %", "30 %", "40 %", "50 %")
_KAIST = "KAIST, 10 simulated scenes (avg)"
_SR_KERNEL_TABLE: dict[str, dict[int, tuple[float, ...]]] = {  # Table V, BSD68, PSNR per kernel K1…K12
    "Block-9 (5.3M)": {
        2: (29.90, 30.31, 29.79, 28.70, 28.41, 28.29, 28.49, 27.63, 29.57, 29.49, 29.54, 29.52),
        3: (26.70, 27.37, 27.51, 27.46, 27.27, 27.21, 27.30, 27.10, 26.89, 26.78, 26.68, 26.52),
        4: (24.75, 25.60, 25.84, 25.94, 25.86, 25.75, 25.79, 25.95, 25.18, 24.92, 24.97, 24.96),
    },
    "LoRun-9 γ=10 (1.96M)": {
        2: (29.88, 30.17, 29.73, 28.72, 28.45, 28.25, 28.42, 27.60, 29.03, 29.31, 29.43, 29.43),
        3: (26.73, 27.38, 27.52, 27.47, 27.29, 27.25, 27.22, 27.02, 26.65, 26.68, 26.43, 26.33),
        4: (24.74, 25.65, 25.89, 25.99, 25.90, 25.80, 25.75, 25.99, 25.05, 24.82, 24.72, 24.83),
    },
}

PUBLISHED: dict[str, dict[str, Any]] = {
    "cs": {
        "caption": "Set11 PSNR (dB) / SSIM as published: models trained on 40,000 COCO2017 images with a learned "
        "Φ (paper §IV-A); the paper does not state its PSNR protocol. Not measured here.",
        "columns": ("Method", "Denoiser / note", "Params", *_CS_COLS, "Source"),
        "rows": [
            ("AMP-Net", "DUN, TIP'21", "0.94M", {"1 %": "20.20/0.56", "4 %": "24.29/0.71", "10 %": "29.49/0.88",
                                                "25 %": "34.20/0.95"}, "paper Table I"),
            ("DGU-Net+", "DUN, CVPR'22", "6.81M", {"1 %": "22.15/0.61", "4 %": "26.82/0.82", "10 %": "30.93/0.91",
                                                   "25 %": "36.18/0.96"}, "paper Table I"),
            ("NesTD-Net", "DUN, TIP'24", "5.93M", {"1 %": "21.40/0.59", "4 %": "26.73/0.82", "10 %": "30.91/0.91",
                                                   "25 %": "36.27/0.96"}, "paper Table I"),
            ("Block-9", "paper's denoiser", "15.96M", {"1 %": "21.85/0.62", "4 %": "26.83/0.82",
                                                      "10 %": "31.17/0.92", "25 %": "36.04/0.96"}, "paper Table I"),
            ("LoRun-9", "paper's denoiser", "5.23M", {"1 %": "21.89/0.62", "4 %": "26.83/0.82",
                                                     "10 %": "30.79/0.91", "25 %": "35.94/0.96"}, "paper Table I"),
            ("Block-9", "U-Net", "4.65M", {"1 %": "21.14/0.56", "4 %": "25.60/0.79", "10 %": "29.57/0.89",
                                          "25 %": "35.00/0.96", "30 %": "36.36/0.96"}, "paper Table II"),
            ("LoRun-9 γ=10", "U-Net", "1.42M", {"1 %": "21.13/0.56", "4 %": "25.45/0.79", "10 %": "29.29/0.89",
                                               "25 %": "34.75/0.95", "30 %": "36.17/0.96"}, "paper Table II"),
            ("Block-9", "Transformer", "0.10M", {"1 %": "20.73/0.54", "4 %": "24.50/0.74", "10 %": "28.44/0.88",
                                                "25 %": "33.63/0.95", "30 %": "34.72/0.95"}, "paper Table II"),
            ("LoRun-9 γ=10", "Transformer", "0.06M", {"1 %": "21.02/0.55", "4 %": "25.17/0.75",
                                                     "10 %": "29.14/0.89", "25 %": "34.16/0.95",
                                                     "30 %": "35.54/0.95"}, "paper Table II"),
            ("LoRun-9 (β-pretrained 50 %)", "U-Net", "–", {"1 %": "21.08/0.55", "4 %": "25.66/0.79",
                                                           "10 %": "29.57/0.89", "25 %": "35.07/0.96",
                                                           "30 %": "36.31/0.96", "40 %": "38.65/0.98",
                                                           "50 %": "40.58/0.98"}, "paper Table VI"),
            ("ISTA-Net+", "literature value, not in the paper", "0.34M", {"25 %": "32.59"},
             "project CPU-calibration notes (reference)"),
            ("TVAL3", "literature value, not in the paper", "–", {"25 %": "≈ 28.5"},
             "project CPU-calibration notes (reference)"),
        ],
    },
    "sr": {
        "caption": "SR PSNR (dB) as published. Paper: BSD68, trained on DIV2K + Flickr2K; colour space not stated. "
        "USRNet / IRCNN numbers are not in the paper; the rows marked 'CPU-calibration' are prototype measurements "
        "from the project's calibration notes (Y channel; USRNet/IRCNN tables are RGB PSNR, which reads lower). "
        "Not measured here.",
        "columns": ("Method", "Setting", "Params", "PSNR", "Source"),
        "rows": [],  # filled below from _SR_KERNEL_TABLE (means computed, not typed)
    },
    "cassi": {
        "caption": "CASSI PSNR (dB) / SSIM as published on KAIST simulation scenes, which this project does not "
        "have: our measurements are a CAVE hold-out (different scenes, 21→28 interpolated bands), so these numbers "
        "are not comparable with ours. Not measured here.",
        "columns": ("Method", "Setting", "Params", "PSNR/SSIM", "Source"),
        "rows": [
            ("DeSCI", _KAIST, "–", "24.82/0.73", "paper Table III"),
            ("TSA-Net", _KAIST, "44.25M", "31.36/0.89", "paper Table III"),
            ("GAP-Net", _KAIST, "4.27M", "33.03/0.92", "paper Table III"),
            ("DAUHST", _KAIST, "6.15M", "38.36/0.97", "paper Table III"),
            ("RCUMP", _KAIST, "9.03M", "38.97/0.97", "paper Table III"),
            ("Block-9", _KAIST, "5.18M", "40.39/0.98", "paper Table III"),
            ("LoRun-9 γ=10", _KAIST, "1.62M", "40.27/0.98", "paper Table III"),
            ("Block-9 (U-Net)", "KAIST scenes 1–5 (avg)", "4.80M", "35.79/0.95", "paper Table IV"),
            ("LoRun-9 γ=10 (U-Net)", "KAIST scenes 1–5 (avg)", "1.43M", "35.45/0.94", "paper Table IV"),
            ("GAP-TV, 300 it., λ 0.04", "CAVE hold-out, 3 centre crops", "–", "26.92/0.80",
             "project CPU-calibration notes (prototype measurement)"),
            ("GAP-TV, 100 it.", "CAVE hold-out, 3 centre crops", "–", "25.8",
             "project CPU-calibration notes (prototype measurement)"),
        ],
    },
}


def _sr_published_rows() -> list[tuple[str, str, str, str, str]]:
    rows = []
    for method, by_scale in _SR_KERNEL_TABLE.items():
        name, params = method.rsplit(" (", 1)
        for s, vals in sorted(by_scale.items(), key=lambda kv: -kv[0]):
            rows.append((name, f"BSD68 ×{s}, mean of the 12 per-kernel values (mean computed here; "
                         f"K1 {vals[0]:.2f} … K12 {vals[-1]:.2f})",
                         params.rstrip(")"), f"{statistics.fmean(vals):.2f}", "paper Table V"))
    rows += [
        ("Block-1", "Set5 ×3, 3 images (baby, bird, head), avg", "0.59M", "28.57", "paper Table VIII"),
        ("USRNet-tiny-like prototype (6 stages)", "Set5 ×3, K5, Y, border 3", "146k", "29.92",
         "project CPU-calibration notes (prototype measurement)"),
        ("USRNet-tiny-like prototype (6 stages)", "10 BSD68 images ×4, mean of 12 kernels, Y, border 4", "146k",
         "25.96", "project CPU-calibration notes (prototype measurement)"),
    ]
    return rows


PUBLISHED["sr"]["rows"] = _sr_published_rows()


# ----------------------------------------------------------------------------------------------- markdown
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
        return (f"sampling ratio {_pct(float(s.get('ratio', cfg.get('ratio', 0))))}, {s.get('block', 32)}×"
                f"{s.get('block', 32)} blocks; the classical baselines sample with the model under test's learned Φ")
    if res.task == "sr":
        k = str(s.get("kernels", cfg.get("kernels")))
        ktxt = "mean over the 12 kernels K1–K12" if k.lower() == "all" else f"kernel {k}"
        return f"×{s.get('scale')}, {ktxt}, circular blur + top-left decimation, no noise"
    return f"{s.get('mask', 'mask')}, dispersion step {s.get('step', 2)}, 28 bands, no noise"


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
            a, b = (_psnr(r, "lorun9"), _psnr(r, other)) if r else (None, None)
            row += [_fmt(a), _fmt(b), f"{a - b:+.2f}" if a is not None and b is not None else "–"]
        rows.append(row)
    title = cfg0["grid_title"]
    cap = (f"*Table {n}. {title}: PSNR (dB) of lorun9 and {other}, gap = lorun9 − {other}. Test data: "
           f"{cfg0.get('data_note', res0.dataset)}. Protocol: {res0.protocol.rsplit(', border', 1)[0]}, border = "
           "scale; means over the images. PSNR only: latency and memory are in the tables above.*")
    return [f"### {title}", ""] + _md_table(header, rows) + ["", cap]


def _published_lines(task: str) -> list[str]:
    pub = PUBLISHED[task]
    lines = ["#### Published numbers (other protocol/data, not measured here)", ""]
    if task == "cs":
        rows = [(m, note, p, *[vals.get(c, "") for c in _CS_COLS], src) for m, note, p, vals, src in pub["rows"]]
    else:
        rows = [tuple(r) for r in pub["rows"]]
    lines += _md_table(pub["columns"], rows, left=2 if task == "cs" else 3)
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
    for task in TASK_ORDER:
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


# -------------------------------------------------------------------------------------------------- figure
_COLOURS = {"lorun9": (214, 39, 40), "block9": (31, 119, 180), "block1": (44, 160, 44), "share9": (148, 103, 189)}
_HEADLINE = {"cs": ("set11", 0.25), "sr": ("cbsd68", None), "cassi": ("cave", None)}


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # older Pillow / no FreeType
        return ImageFont.load_default()


_ASCII = {"—": "-", "–": "-", "×": "x", "Φ": "Phi", "γ": "gamma", "≥": ">=", "≤": "<=", "…": "...", "→": "->"}


def _ascii(text: str) -> str:
    """The default bitmap/TrueType font lacks some symbols: spell them in ASCII for the figure."""
    for k, v in _ASCII.items():
        text = text.replace(k, v)
    return text


def _headline(runs: list[Run], task: str) -> Run | None:
    """The run a task's panel shows: the Set11 25 % / CBSD68 ×4 / CAVE one, else the task's first run."""
    runs = [r for r in runs if not r[0].get("grid")]
    found = _find(runs, task)
    if not found:
        return None
    ds, ratio = _HEADLINE[task]
    best = _find(runs, task, ds, ratio)
    return best[0] if best else found[0]


def _log_ticks(lo: float, hi: float) -> list[float]:
    """Tick values (linear units) for a log axis spanning 10**lo … 10**hi."""
    ticks = [10.0 ** e for e in range(math.floor(lo), math.ceil(hi) + 1) if lo <= e <= hi]
    if len(ticks) < 2:
        ticks = [m * 10.0 ** e for e in range(math.floor(lo) - 1, math.ceil(hi) + 1) for m in (1, 2, 5)
                 if lo <= math.log10(m * 10.0 ** e) <= hi]
    return ticks


def _si(v: float) -> str:
    for div, suf in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if v >= div:
            return f"{v / div:g}{suf}"
    return f"{v:g}"


def _nice_step(span: float) -> float:
    raw = span / 5
    mag = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    return next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)


def _panel(img, draw, box: tuple[int, int, int, int], run: Run | None, task: str) -> None:
    x0, y0, x1, y1 = box
    f_small, f_title = _font(12), _font(14)
    title = TASK_TITLES[task] if run is None else run[0]["title"]
    draw.text(((x0 + x1) // 2, y0 + 4), _ascii(title), fill="black", font=f_title, anchor="mt")
    px0, py0, px1, py1 = x0 + 66, y0 + 30, x1 - 16, y1 - 46
    draw.rectangle((px0, py0, px1, py1), outline="black")
    if run is None:
        draw.text(((px0 + px1) // 2, (py0 + py1) // 2), "not measured", fill="gray", font=f_small, anchor="mm")
        return
    res = run[1]
    pts = [(r["strategy"], float(r["network"]), float(r["psnr"])) for r in res.rows if r.get("network")]
    lines_ = [(r["strategy"], float(r["psnr"])) for r in res.rows if not r.get("network")]
    ys = [p[2] for p in pts] + [v for _, v in lines_]
    ylo, yhi = min(ys) - 0.5, max(ys) + 0.5
    step = _nice_step(yhi - ylo)
    ylo, yhi = math.floor(ylo / step) * step, math.ceil(yhi / step) * step
    if pts:
        lx = [math.log10(p[1]) for p in pts]
        xlo, xhi = min(lx) - 0.35, max(lx) + 0.35
    else:
        xlo, xhi = 3.0, 6.0

    def X(v: float) -> float:
        return px0 + (math.log10(v) - xlo) / (xhi - xlo) * (px1 - px0)

    def Y(v: float) -> float:
        return py1 - (v - ylo) / (yhi - ylo) * (py1 - py0)

    for t in _log_ticks(xlo, xhi):
        x = X(t)
        draw.line((x, py1, x, py1 + 4), fill="black")
        draw.line((x, py0, x, py1), fill=(232, 232, 232))
        draw.text((x, py1 + 6), _si(t), fill="black", font=f_small, anchor="mt")
    v = ylo
    while v <= yhi + 1e-9:
        y = Y(v)
        draw.line((px0 - 4, y, px0, y), fill="black")
        draw.line((px0 + 1, y, px1 - 1, y), fill=(232, 232, 232))
        draw.text((px0 - 6, y), f"{v:g}", fill="black", font=f_small, anchor="rm")
        v += step
    draw.rectangle((px0, py0, px1, py1), outline="black")
    for name, val in lines_:  # parameter-free baselines: dashed horizontal lines
        y = Y(val)
        for xs in range(px0 + 2, px1 - 2, 10):
            draw.line((xs, y, min(xs + 5, px1 - 2), y), fill=(110, 110, 110), width=1)
        draw.text((px1 - 4, y - 2), f"{name} {val:.2f}", fill=(80, 80, 80), font=f_small, anchor="rb")
    for name, n, val in pts:
        x, y = X(n), Y(val)
        col = _COLOURS.get(name, (90, 90, 90))
        if name == "lorun9":
            draw.ellipse((x - 6, y - 6, x + 6, y + 6), fill=col, outline="black")
        else:
            draw.rectangle((x - 5, y - 5, x + 5, y + 5), fill=col, outline="black")
        label = f"{name} {val:.2f}"
        box = draw.textbbox((x + 9, y - 9), label, font=f_small, anchor="lb")
        draw.rectangle((box[0] - 1, box[1] - 1, box[2] + 1, box[3] + 1), fill="white")
        draw.text((x + 9, y - 9), label, fill=col, font=f_small, anchor="lb")
    draw.text(((px0 + px1) // 2, py1 + 22), "stored parameters (network, log scale)", fill="black", font=f_small,
              anchor="mt")
    _vertical_text(img, draw, (x0 + 4, (py0 + py1) // 2), "PSNR (dB)", f_small)


def _vertical_text(img, draw, at: tuple[int, int], text: str, font) -> None:
    """Text rotated by 90° (reading upwards), centred vertically on ``at``."""
    from PIL import Image, ImageDraw

    w, h = int(draw.textlength(text, font=font)) + 4, 16
    tile = Image.new("RGB", (w, h), "white")
    ImageDraw.Draw(tile).text((2, h // 2), text, fill="black", font=font, anchor="lm")
    tile = tile.rotate(90, expand=True)
    img.paste(tile, (at[0], at[1] - tile.height // 2))


def draw_plot(runs: list[Run], path: Path, width: int = 1320, height: int = 460) -> None:
    """PSNR vs stored network parameters, one panel per task (PIL only), saved atomically as PNG."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    draw.text((width // 2, 10), _ascii("LoRun: PSNR vs stored parameters (measured here; CS Φ not counted; "
                                       "dashed: parameter-free baselines)"), fill="black", font=_font(16), anchor="mt")
    pw = width // len(TASK_ORDER)
    for i, task in enumerate(TASK_ORDER):
        _panel(img, draw, (i * pw + 6, 36, (i + 1) * pw - 6, height - 6), _headline(runs, task), task)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


# ---------------------------------------------------------------------------------------------------- run
def build_results(data_root: Path | None, markdown: Path, plot: Path | None, threads: int | None = None,
                  device: str = "cpu", repeats: int = 5, memory: bool = True, quick: bool = False,
                  quiet: bool = False, suite: Sequence[Config] | None = None) -> list[BenchResult]:
    """Run the suite (or the bundled-samples suite without a data root), write the page and the figure.

    ``quick``: 2 latency repeats and no peak-memory probe. Configurations whose models or data are missing are
    skipped with a line on the page; a configuration that fails at run time with a LorunError likewise.
    """
    if data_root is None and os.environ.get("LORUN_DATA"):
        data_root = Path(os.environ["LORUN_DATA"])
    root = Path(data_root).expanduser() if data_root is not None else None
    if root is not None and not root.is_dir():
        raise LorunError(f"data root '{root}' is not a directory: check --data / LORUN_DATA")
    if quick:
        repeats, memory = 2, False
    prev_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        planned, skipped = plan_suite(root, suite)
        runs: list[Run] = []
        for cfg in planned:
            if not quiet:
                print(f"bench --all: {cfg['title']} …", file=sys.stderr)
            try:
                res = run_bench(bench_options(cfg, root, device, threads, repeats, memory), quiet=quiet)
            except LorunError as e:
                skipped.append((cfg["task"], f"{cfg['title']}: not run — failed: {e}"))
                continue
            runs.append((cfg, res))
        facts = machine_facts(device)
    finally:
        torch.set_num_threads(prev_threads)
    targets = evaluate_targets(runs)
    command = regen_command(markdown, plot, root is not None, threads, device, repeats, memory, quick)
    plot_rel = None
    if plot is not None:
        draw_plot(runs, Path(plot))
        plot_rel = os.path.relpath(Path(plot).resolve(), Path(markdown).resolve().parent)
    page = render_markdown(runs, skipped, targets, facts, command, plot_rel, root, repeats, memory, quick)
    atomic_write_bytes(markdown, page.encode("utf-8"))
    return [r for _, r in runs]
