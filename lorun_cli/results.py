"""`lorun bench --all`: run the benchmark suite, evaluate the project's targets, write the page and the figure.

Every measured number comes from :func:`lorun_cli.bench.run_bench` (one :class:`BenchResult` per configuration);
the targets are computed from those results and the weights manifest against the thresholds of
``assets/results/targets.json``, never typed in. The pieces: :mod:`results_suite` plans the runs,
:mod:`results_page` renders the Markdown (published numbers quoted from ``assets/results/published.json``),
:mod:`results_chart` draws the figure.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .bench import BenchResult, run_bench
from .errors import LorunError
from .facts import TASKS
from .io.checkpoint import atomic_write_bytes
from .results_chart import draw_plot
from .results_page import Target, render_markdown
from .results_suite import (
    Config,
    Run,
    _manifest_models,
    bench_options,
    find_runs,
    pct,
    plan_suite,
    psnr_of,
    row_of,
)

_TARGETS_FILE = Path(__file__).resolve().parent / "assets" / "results" / "targets.json"


def thresholds() -> dict[str, Any]:
    """The project's target thresholds (``assets/results/targets.json``)."""
    return json.loads(_TARGETS_FILE.read_text(encoding="utf-8"))


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

    parts = ["lorun"]  # --threads and --device are the app's options, given before the command
    if threads:
        parts.append(f"--threads {threads}")
    if device != "cpu":
        parts.append(f"--device {device}")
    parts += ["bench --all", f"--markdown {show(markdown)}"]
    if plot is not None:
        parts.append(f"--plot {show(plot)}")
    if has_data:
        parts.append("--data <root>")
    if quick:
        parts.append("--quick")
    else:
        if repeats != 5:
            parts.append(f"--repeats {repeats}")
        if not memory:
            parts.append("--no-memory")
    return " ".join(parts)


# ------------------------------------------------------------------------------------------------ targets
def _status(ok: bool) -> str:
    return "MET" if ok else "MISSED"


def _label(cfg: Config) -> str:
    if cfg["task"] == "cs":
        where = {"set11": "Set11", "bsd68": "BSD68"}.get(cfg.get("dataset") or "", cfg.get("dataset") or "")
        return f"{where} {pct(float(cfg['ratio']))}" if where else f"{pct(float(cfg['ratio']))} (bundled samples)"
    return cfg["title"]


def _absolute(name: str, found: list[Run], thr: float) -> Target:
    if not found:
        return Target(name, "not measured (configuration not run)", "NOT MEASURED")
    v = psnr_of(found[0][1], "lorun9")
    return Target(name, f"{v:.2f} dB", _status(v >= thr))


def _task_runs(runs: list[Run], task: str, prefer: str | None = None) -> tuple[list[Run], str]:
    """Runs of a task, restricted to ``prefer``'s test set when that was run; plus a note on the source."""
    found = find_runs(runs, task, prefer) if prefer else []
    if found:
        return found, ""
    found = find_runs(runs, task)
    if found and prefer:
        return found, " — measured on the runs available, not on the target's test set"
    return found, ""


def evaluate_targets(runs: list[Run], models: list[dict[str, Any]] | None = None) -> list[Target]:
    """Every project target with the measured value and MET / MISSED (or NOT MEASURED), from the results."""
    models = models if models is not None else _manifest_models()
    grid = [r for r in runs if r[0].get("grid")]
    runs = [r for r in runs if not r[0].get("grid")]
    t = thresholds()
    out: list[Target] = []
    for ratio, thr in t["cs_set11_min_psnr_db"].items():
        out.append(_absolute(f"CS Set11 {pct(float(ratio))}: lorun9 PSNR ≥ {thr:g} dB",
                             find_runs(runs, "cs", "set11", float(ratio)), thr))

    cs_runs, src = _task_runs(runs, "cs", "set11")
    out.append(_gap_target("CS: lorun9 beats tv at every ratio" + src, cs_runs, "tv", 0.0, strict=True))

    sr4 = find_runs(runs, "sr", "cbsd68", scale=4, kernels="all")
    sr_min, sr_gain = t["sr_cbsd68_x4_min_psnr_db"], t["sr_min_gain_over_bicubic_db"]
    out.append(_absolute(f"SR CBSD68 ×4, 12-kernel mean: lorun9 PSNR ≥ {sr_min:g} dB", sr4, sr_min))
    out.append(_gap_target(f"SR CBSD68 ×4, 12-kernel mean: lorun9 ≥ bicubic + {sr_gain:g} dB", sr4, "bicubic",
                           sr_gain))
    out.append(_every_case_target(f"SR: lorun9 ≥ bicubic + {sr_gain:g} dB for every kernel and scale",
                                  find_runs(grid, "sr"), "bicubic", sr_gain))

    ca_runs, src = _task_runs(runs, "cassi", "cave")
    gain = t["cassi_min_gain_over_gap_tv_db"]
    out.append(_gap_target(f"CASSI: lorun9 ≥ gap-tv + {gain:g} dB" + src, ca_runs, "gap-tv", gain))

    gap = t["min_gap_to_block9_db"]
    for task in TASKS:
        tr = find_runs(runs, task)
        out.append(_gap_target(f"{task.upper()}: lorun9 PSNR ≥ block9 − {-gap:g} dB (every run)", tr, "block9", gap))
    for task in TASKS:
        out.append(_params_target(task, find_runs(runs, task), t["max_stored_params_ratio"]))
    out.append(_adapter_bytes_target(models, t["max_adapter_bytes_ratio"]))
    for task in TASKS:
        out.append(_latency_target(task, find_runs(runs, task), t["max_latency_ratio"]))
    return out


def _gaps(found: list[Run], other: str) -> list[tuple[Config, float]]:
    """(config, lorun9 − ``other`` PSNR) of every run that has both rows."""
    return [(c, a - b) for c, r in found
            if (a := psnr_of(r, "lorun9")) is not None and (b := psnr_of(r, other)) is not None]


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


def _params_target(task: str, found: list[Run], most: float) -> Target:
    """Stored network parameters lorun9 / block9 ≤ ``most`` (the CS Φ excluded; the ratio with Φ also shown)."""
    name = f"{task.upper()}: stored params lorun9 / block9 ≤ {most:.2f} (network, Φ excluded)"
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
    return Target(name, text, _status(net <= most))


def _adapter_bytes_target(models: list[dict[str, Any]], most: float) -> Target:
    """An extra CS ratio (its lorun9 adapter file) costs ≤ ``most`` of a full block9 file (manifest bytes).

    Every adapter file with a block9 model at its ratio is listed (compact variants by name); the target is met
    when some way of adding a ratio that the project ships meets it.
    """
    name = (f"CS: an extra ratio costs ≤ {pct(most)} of a full model (lorun9 adapter file / block9 file, "
            "manifest bytes)")
    pairs = []
    for e in models:
        if e.get("task") != "cs" or e.get("strategy") != "lorun9" or not e.get("bytes"):
            continue
        r = float(e.get("ratio", -1))
        full = [b for b in models if b.get("task") == "cs" and b.get("strategy") == "block9" and b.get("bytes")
                and abs(float(b.get("ratio", -1)) - r) < 1e-6]
        if full:
            label = pct(r) + (f" {e['name']}" if e.get("variant") else "")
            pairs.append((r, label, int(e["bytes"]), int(full[0]["bytes"])))
    if not pairs:
        return Target(name, "not measured (no CS lorun9 + block9 pair in the manifest)", "NOT MEASURED")
    text = "; ".join(f"{lab}: {a / b:.3f} ({a:,} / {b:,} B)" for _, lab, a, b in sorted(pairs))
    return Target(name, text, _status(min(a / b for _, _, a, b in pairs) <= most))


def _latency_target(task: str, found: list[Run], most: float) -> Target:
    """Merged lorun9 latency ≤ ``most`` × block9: status on the median of the per-run ratios."""
    name = f"{task.upper()}: merged lorun9 latency ≤ {most:g} × block9 (median over runs)"
    vals = []
    for cfg, res in found:
        a, b = row_of(res, "lorun9"), row_of(res, "block9")
        if a and b and b.get("latency_ms"):
            vals.append((cfg, a["latency_ms"] / b["latency_ms"]))
    if not vals:
        return Target(name, "not measured (no run with lorun9 and block9)", "NOT MEASURED")
    med = statistics.median(v for _, v in vals)
    text = f"{med:.3f}" + (" (" + "; ".join(f"{_label(c)}: {v:.3f}" for c, v in vals) + ")" if len(vals) > 1 else "")
    return Target(name, text, _status(med <= most))


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
