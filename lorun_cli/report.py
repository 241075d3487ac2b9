"""Rich tables, JSON and CSV views of restore/bench results (one structure, several views)."""

from __future__ import annotations

import csv as csvlib
import io
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

BENCH_COLUMNS = ("method", "strategy", "psnr", "ssim", "total", "trainable", "stored", "stored_mb", "peak_mem_mb",
                 "latency_ms", "latency_min_ms", "latency_max_ms")


def _fmt(v: Any, digits: int = 2) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def print_restore(results: list[dict[str, Any]], json_out: bool = False, quiet: bool = False,
                  command_seconds: float | None = None, startup_seconds: float | None = None,
                  verbose: bool = False) -> None:
    """One line per restored input (PSNR/SSIM with protocol when a reference exists).

    The time printed is the whole command's wall time (``command_seconds``: from the process start to the
    end, model loading, scoring and writing included); with several inputs each line shows the input's
    own compute and score time, and a last line the total and images/s. ``verbose`` adds the breakdown.
    """
    if results and command_seconds is not None:
        results[-1]["command_seconds"] = round(command_seconds, 3)
    if json_out:
        print(json.dumps(results, indent=2))
        return
    if quiet:
        return
    con = Console(stderr=True, highlight=False)
    single = len(results) == 1 and command_seconds is not None
    for r in results:
        secs = command_seconds if single else r["seconds"]
        line = f"{r['input']} → {r['output']}  [{r['model']}, {secs:.2f} s]"
        if "psnr" in r:
            line += f"  PSNR {r['psnr']:.2f} dB  SSIM {r['ssim']:.4f}  ({r['protocol']})"
        con.print(line, markup=False, soft_wrap=True)
        if (est := r.get("kernel_estimate")) is not None:
            used = "used" if r.get("kernel") == "auto" else "checked against --kernel"
            weight = est.get("data_weight", 1.0)
            con.print(f"  kernel estimate ({used}): nearest bundled {est['nearest']}, width {est['width']:.2f} px, "
                      f"noise {est['noise']:.1f}/255"
                      + (f", JPEG luma step {est['jpeg_step']:.1f}" if est.get("jpeg_step") is not None else "")
                      + (f", grid {est['grid']}" if est.get("grid") else "")
                      + (f" (data step weighted ×{weight:.2f})" if weight > 1 else ""),
                      markup=False, soft_wrap=True)
        if (gain := r.get("exposure_gain")) is not None:
            con.print(f"  low contrast: estimated and restored at ×{gain:.2f} its contrast, then mapped back",
                      markup=False, soft_wrap=True)
        if verbose and "timings" in r:
            con.print("  time: " + ", ".join(f"{k} {v:.2f} s" for k, v in r["timings"].items() if k != "load"),
                      markup=False, soft_wrap=True)
    if command_seconds is not None and len(results) > 1:
        con.print(f"{len(results)} inputs in {command_seconds:.2f} s (whole command, one model load; "
                  f"{len(results) / command_seconds:.2f} images/s)", markup=False, soft_wrap=True)
    if verbose and results and command_seconds is not None:
        t = results[0].get("timings", {})
        work = sum(r["timings"]["compute"] + r["timings"]["score"] for r in results if "timings" in r)
        parts = ([f"start-up {startup_seconds:.2f} s (Python, imports)"] if startup_seconds is not None else []) + [
            f"checks and model load {t.get('load', 0.0):.2f} s", f"compute and score {work:.2f} s",
            f"total {command_seconds:.2f} s"]
        peak = results[-1].get("peak_rss_mb")
        con.print("time: " + ", ".join(parts) + (f"; peak RSS {peak:.0f} MB" if peak else "")
                  + " (reading and writing overlap the computation)", markup=False, soft_wrap=True)


class RestoreProgress:
    """Progress on stderr when it is a terminal (else silent): images/s for several inputs, and the tiles of a
    tiled input (a large image restored in tiles can take minutes)."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.progress, self.task, self.tile_task = total, None, None, None
        if enabled and sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
                                     console=Console(stderr=True), transient=True)

    def __enter__(self) -> RestoreProgress:
        if self.progress is not None:
            self.progress.start()
            if self.total > 1:
                self.task = self.progress.add_task("restore", total=self.total, rate="– images/s")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def __call__(self, rec: dict[str, Any]) -> None:
        """One more input done."""
        if self.task is not None:
            task = self.progress.tasks[self.task]
            done = task.completed + 1
            rate = done / task.elapsed if task.elapsed else 0.0
            self.progress.update(self.task, completed=done, rate=f"{rate:.2f} images/s")

    def tile(self, done: int, total: int) -> None:
        """``done`` of the ``total`` tiles of the input in progress are restored."""
        if self.progress is None:
            return
        if self.tile_task is None or done == 1:
            if self.tile_task is not None:
                self.progress.remove_task(self.tile_task)
            self.tile_task = self.progress.add_task("tiles", total=total, rate="")
        self.progress.update(self.tile_task, completed=done, total=total)


def bench_table(result: Any) -> Table:
    """The Rich table of a :class:`BenchResult`."""
    t = Table(title=f"lorun bench — {result.task} on {result.dataset} "
              + (", ".join(f"{k}={v}" for k, v in result.setting.items())),
              caption=f"PSNR/SSIM: {result.protocol}. Params: total / trainable in the last training phase / stored "
              "(everything a deployment keeps: backbone + all stage adapters + Φ; MB at float32). "
              f"Latency: median (min–max) of repeats, {result.device}, {result.threads} thread(s). "
              f"Peak memory: {'CUDA max allocated' if result.device.startswith('cuda') else 'process RSS'}. "
              "×: ratio to the model under test.")
    for col in ("method", "PSNR", "SSIM", "params total", "trainable", "stored (MB fp32)", "×stored", "peak MB",
                "×mem", "latency ms", "×lat"):
        t.add_column(col, justify="left" if col == "method" else "right")
    for r in result.rows:
        ratio = r.get("ratio_to_model", {})
        t.add_row(
            f"{r['method']}" + (" *" if r["role"] == "model" else ""),
            _fmt(r["psnr"]), _fmt(r["ssim"], 4), _fmt(r["total"]), _fmt(r["trainable"]),
            f"{r['stored']:,} ({r['stored_mb']:.2f})", _fmt(ratio.get("stored")),
            _fmt(r.get("peak_mem_mb"), 0), _fmt(ratio.get("peak_mem_mb")),
            f"{r['latency_ms']:.1f} ({r['latency_min_ms']:.1f}–{r['latency_max_ms']:.1f})",
            _fmt(ratio.get("latency_ms")),
        )
    return t


def auto_table(result: Any) -> Table:
    """``bench --kernels auto``: per degradation family, oracle vs estimated kernel vs bicubic, and the estimate's
    errors."""
    st = result.setting
    t = Table(title=f"lorun bench — sr ×{st['scale']} on {result.dataset}: oracle kernel vs --kernel auto vs bicubic "
              f"(degradations drawn with seed {st['seed']})",
              caption=f"PSNR: {result.protocol}. Bicubic: {st['bicubic']}. Kernel error: {st['kernel_error']}. "
              f"Estimator: {st['estimator_params']:,} parameters, {100 * st['estimator_time_share']:.1f} % of the SR "
              "network's time.")
    for col in ("family", "cases", "oracle", "auto", "auto, reg.", "bicubic", "auto − oracle", "auto − bicubic",
                "reg. − bicubic", "worst auto − bic", "kernel err", "width err px", "noise err /255"):
        t.add_column(col, justify="left" if col == "family" else "right")
    fams = dict(st["families"])
    fams["all"] = {"cases": sum(f["cases"] for f in fams.values()),
                   **{r["strategy"]: r["psnr"] for r in result.rows}}
    for name, f in fams.items():
        reg = f.get("auto_registered")
        t.add_row(name, _fmt(f["cases"]), _fmt(f.get("oracle")), _fmt(f.get("auto")), _fmt(reg), _fmt(f.get("bicubic")),
                  _fmt(f["auto"] - f["oracle"]), _fmt(f["auto"] - f["bicubic"]),
                  _fmt(None if reg is None else reg - f["bicubic"]),
                  _fmt(f.get("worst_auto_minus_bicubic")), _fmt(f.get("kernel_err"), 3), _fmt(f.get("width_err")),
                  _fmt(f.get("noise_err")))
    if "registered" in st:
        t.caption += f" {st['registered']}."
    return t


def stage_table(result: Any) -> Table | None:
    """PSNR of x⁰ and after every stage, per learned model (``bench --stages``); None without stage data."""
    rows = [r for r in result.rows if r.get("stage_psnr")]
    if not rows:
        return None
    k = max(len(r["stage_psnr"]) for r in rows)
    t = Table(title="PSNR after each stage (x⁰ = the initial estimate)", caption=result.protocol)
    t.add_column("method", justify="left")
    for i in range(k):
        t.add_column("x⁰" if i == 0 else f"stage {i}", justify="right")
    for r in rows:
        t.add_row(r["method"], *[_fmt(v) for v in r["stage_psnr"]], *[""] * (k - len(r["stage_psnr"])))
    return t


def bench_csv(result: Any) -> str:
    """CSV text of the bench rows (flat columns)."""
    buf = io.StringIO()
    w = csvlib.writer(buf)
    w.writerow(["task", "dataset", "protocol", *BENCH_COLUMNS])
    for r in result.rows:
        w.writerow([result.task, result.dataset, result.protocol, *[r.get(c) for c in BENCH_COLUMNS]])
    return buf.getvalue()


def print_bench(result: Any, json_out: bool = False, csv: Path | None = None, quiet: bool = False) -> None:
    """Rich table (stderr when --json), JSON on stdout, optional CSV file."""
    if csv is not None:
        from .io.checkpoint import atomic_write_bytes

        atomic_write_bytes(csv, bench_csv(result).encode())
    if "families" in result.setting:  # bench --kernels auto
        if not quiet:
            Console(stderr=json_out, width=_width()).print(auto_table(result))
        if json_out:
            sys.stdout.write(json.dumps(result.to_json(), indent=2) + "\n")
        return
    if json_out:
        if not quiet:
            con = Console(stderr=True, width=_width())
            con.print(bench_table(result))
            if (st := stage_table(result)) is not None:
                con.print(st)
        sys.stdout.write(json.dumps(result.to_json(), indent=2) + "\n")
        return
    if not quiet:
        con = Console(width=_width())
        con.print(bench_table(result))
        if (st := stage_table(result)) is not None:
            con.print(st)


def print_weights(json_out: bool = False) -> None:
    """The manifest with cache status."""
    from .io import weights

    entries = weights.list_entries()
    if json_out:
        print(json.dumps(entries, indent=2))
        return
    t = Table(title=f"lorun weights (cache: {weights.cache_dir()})")
    for col in ("name", "task", "strategy", "bytes", "cached", "description"):
        t.add_column(col)
    for e in entries:
        t.add_row(e["name"], e.get("task", ""), e.get("strategy", ""), _fmt(e.get("bytes")),
                  str(e.get("cached", "")), e.get("description", ""))
    Console().print(t)


def _width() -> int | None:
    """Full-width tables when output goes to a file or pipe (Rich would assume 80 columns)."""
    import shutil

    return None if sys.stdout.isatty() else max(160, shutil.get_terminal_size((160, 24)).columns)


def print_speed(result: dict[str, Any], json_out: bool = False, quiet: bool = False) -> None:
    """The ``bench --speed`` table: peaks, then latency and forward GFLOP/s per method."""
    if json_out:
        print(json.dumps(result, indent=2))
    if quiet and not json_out:
        return
    stream = sys.stderr if json_out else sys.stdout
    con = Console(stderr=json_out, highlight=False, width=None if stream.isatty() else 140)
    peaks = "; ".join(f"{p}: matmul 2048² {v['matmul_gflops']:.1f}, conv {v['conv_gflops']:.1f} GFLOP/s"
                      for p, v in result["peaks"].items())
    t = Table(title=f"lorun bench --speed — {result['case']}",
              caption=f"Machine peaks ({result['device']}, {result['threads']} thread(s)) — {peaks}; conv: "
              f"{result['conv_peak_shape']}. GFLOP: the denoisers' convolutions; GFLOP/s over the whole forward "
              "pass (data steps included); start: x⁰ alone; stages: the forward without it. Latency: median "
              "(min–max), runs interleaved. ×: to the first row.")
    for col in ("method", "precision", "latency ms", "×lat", "start ms", "GFLOP", "GFLOP/s", "of conv peak",
                "stages of conv peak", "of matmul peak"):
        t.add_column(col, justify="left" if col in ("method", "precision") else "right")
    for r in result["rows"]:
        conv, stages, mm = (f"{100 * r[k]:.0f} %" if k in r else "–"
                            for k in ("of_conv_peak", "stages_of_conv_peak", "of_matmul_peak"))
        t.add_row(r["method"], r["precision"], f"{r['latency_ms']:.1f} ({r['latency_min_ms']:.1f}–"
                  f"{r['latency_max_ms']:.1f})", f"{r['ratio_to_model']:.2f}", _fmt(r.get("start_ms"), 1),
                  _fmt(r["gflop"] or None, 1), _fmt(r.get("gflops"), 1), conv, stages, mm)
    con.print(t)
