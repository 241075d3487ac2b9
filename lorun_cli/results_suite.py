"""The results suite of `lorun bench --all`: which configurations run (plan), and how to find a run again.

The suite itself, and the run each figure panel shows, are data: ``assets/results/suite.json``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .bench import BenchOptions, BenchResult
from .facts import BASELINES, DEFAULT_RATIO, LEARNED, SR_SCALES
from .io.datasets import DATASET_DIRS

Config = dict[str, Any]
Run = tuple[Config, BenchResult]

_SUITE_FILE = Path(__file__).resolve().parent / "assets" / "results" / "suite.json"
_DATA = json.loads(_SUITE_FILE.read_text(encoding="utf-8"))

#: The full suite run by ``lorun bench --all --data ROOT``. ``ratio: "each"`` expands to every ratio for
#: which the manifest has a CS lorun9 model; ``"variants"`` in ``compare`` to the manifest's variant models;
#: SR ``scale``/``kernels: "each"`` to every scale × kernel case, shown as one PSNR grid (``grid``: one
#: latency run, no memory probe, since only PSNR is reported there).
SUITE: list[Config] = _DATA["full"]
#: What runs without a data root: one configuration per task on the bundled samples.
BUNDLED_SUITE: list[Config] = _DATA["bundled"]
#: The run each task's figure panel shows (test set, and CS ratio).
FIGURE_PANELS: dict[str, dict[str, Any]] = {k: v for k, v in _DATA["figure_panels"].items() if k in BASELINES}

TASK_TITLES = {"cs": "Compressive sensing (CS)", "sr": "Super-resolution (SR)", "cassi": "CASSI (snapshot spectral)"}
CLASSICAL = {name for names in BASELINES.values() for name in names}

#: Latency runs of the classical baselines on the page at most (GAP-TV/TV take seconds per run and no
#: target compares their latency); learned models get every ``--repeats`` run.
BASELINE_REPEATS = 3

_OPTION_KEYS = ("task", "dataset", "ratio", "scale", "kernels", "limit", "compare")


def _manifest_models() -> list[dict[str, Any]]:
    from .io.weights import load_manifest

    return list(load_manifest()["models"])


def _has_model(models: list[dict[str, Any]], task: str, strategy: str, ratio: float | None) -> bool:
    """Same matching rule as :func:`lorun_cli.restore.default_model_name`."""
    for e in models:
        if e.get("task") != task or e.get("strategy") != strategy or e.get("variant"):
            continue
        if task == "cs" and abs(float(e.get("ratio", -1)) - (DEFAULT_RATIO if ratio is None else ratio)) > 1e-6:
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
            and (task != "cs" or abs(float(e.get("ratio", -1)) - (DEFAULT_RATIO if ratio is None else ratio)) < 1e-6)]


def _classical_available() -> bool:
    try:
        from . import classical  # noqa: F401
    except ImportError:
        return False
    return True


def pct(ratio: float) -> str:
    return f"{ratio * 100:g} %"


def _expand(cfg: Config, models: list[dict[str, Any]]) -> list[Config]:
    """Concrete configurations of one suite entry (CS ratios, SR scale × kernel grids resolved)."""
    if cfg["task"] == "sr" and cfg.get("scale") == "each":
        from .physics.sr import load_kernels

        names = list(load_kernels()) if cfg.get("kernels") == "each" else [cfg["kernels"]]
        return [{**cfg, "key": f"{cfg['key']}-x{sc}-{k}", "title": f"{cfg['title']}: ×{sc} {k}", "scale": sc,
                 "kernels": k, "grid": cfg["key"], "grid_title": cfg["title"]} for sc in SR_SCALES for k in names]
    if cfg["task"] != "cs":
        return [dict(cfg)]
    if cfg.get("ratio") == "each":
        ratios = cs_ratios(models) or [DEFAULT_RATIO]
        return [{**cfg, "key": f"{cfg['key']}-r{r * 100:g}", "title": f"{cfg['title']}, ratio {pct(r)}",
                 "ratio": r} for r in ratios]
    if cfg.get("ratio") == "default":
        ratios = cs_ratios(models)
        r = DEFAULT_RATIO if (not ratios or DEFAULT_RATIO in ratios) else ratios[0]
        return [{**cfg, "title": f"{cfg['title']}, ratio {pct(r)}", "ratio": r}]
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
                what = f"{cfg['task']} lorun9" + (f" at ratio {pct(ratio)}" if ratio is not None else "")
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
                    where = f" at ratio {pct(ratio)}" if ratio is not None else ""
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


# ------------------------------------------------------------------------------------------ finding runs
def row_of(result: BenchResult, strategy: str) -> dict[str, Any] | None:
    """The row of ``strategy`` (lorun9, block9, tv, …) in a result, or None."""
    for r in result.rows:
        if r.get("strategy") == strategy or (strategy == "lorun9" and r.get("role") == "model"):
            return r
    return None


def psnr_of(result: BenchResult, strategy: str) -> float | None:
    r = row_of(result, strategy)
    return None if r is None else float(r["psnr"])


def find_runs(runs: list[Run], task: str, dataset: str | None = None, ratio: float | None = None,
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
