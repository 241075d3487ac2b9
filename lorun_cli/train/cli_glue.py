"""From `lorun pretrain/adapt` options (+ YAML config) to a :class:`TrainConfig` run with a progress display."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any

from .. import validate as V
from ..errors import LorunError, UsageError
from .config import TrainConfig
from .loop import train

CLI_ONLY = {"config", "force"}


def load_yaml(path: Path) -> dict[str, Any]:
    """Options from a YAML mapping; unknown keys are an error (typos must not pass silently)."""
    import yaml

    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError:
        raise UsageError(f"--config {path}: no such file") from None
    except yaml.YAMLError as e:
        raise UsageError(f"--config {path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise UsageError(f"--config {path}: expected a mapping of option: value")
    known = TrainConfig.field_names()
    unknown = set(k.replace("-", "_") for k in raw) - known
    if unknown:
        raise UsageError(f"--config {path}: unknown option(s) {sorted(unknown)}; known: {sorted(known)}")
    return {k.replace("-", "_"): v for k, v in raw.items()}


def make_config(phase: str, values: dict[str, Any], explicit: set[str], config: Path | None) -> TrainConfig:
    """Defaults < YAML file < explicitly given command-line flags."""
    merged: dict[str, Any] = {k: v for k, v in values.items() if k not in CLI_ONLY and v is not None}
    from_file: dict[str, Any] = {}
    sources: dict[str, Path] = {}
    if config is not None:
        from_file = load_yaml(config)
        merged.update({k: v for k, v in from_file.items() if k not in explicit})
        sources = {k: config for k in from_file if k not in explicit}
    merged = V.check_all(merged, V.TRAIN_RULES, sources)  # the same rules for flags and YAML values
    merged["phase"] = phase
    default_out = phase == "adapt" and not merged.get("out")
    if phase == "adapt":
        merged["strategy"] = f"lorun{merged.pop('stages')}" if merged.get("stages") else ""
    for key in ("data", "backbone", "out", "init"):
        if merged.get(key) is not None:
            merged[key] = str(merged[key])
    cfg = TrainConfig(**merged)
    if phase == "adapt":
        _adapt_defaults(cfg, explicit | set(from_file))
        if default_out:  # BACKBONE-lorunK-gG.safetensors, K known only once the backbone was read
            bb = Path(cfg.backbone)
            cfg.out = str(bb.with_name(f"{bb.stem}-{cfg.strategy}-g{cfg.gamma:g}.safetensors"))
    return cfg


def _adapt_defaults(cfg: TrainConfig, given: set[str]) -> None:
    """Adapt inherits task, ratio and stage count from the backbone unless told otherwise."""
    from .. import models

    if not Path(cfg.backbone).exists():
        raise UsageError(f"--backbone {cfg.backbone}: no such file; train one with `lorun pretrain --out FILE`")
    V.check_input_file(cfg.backbone, "--backbone", V.MODEL_EXTS, "model")
    meta = models.read_meta(cfg.backbone)
    cfg.task = meta.get("task", cfg.task)
    if "ratio" not in given and "ratio" in meta.get("op", {}):  # CS only; other tasks' op metadata has none
        cfg.ratio = meta["op"]["ratio"]
    if not cfg.strategy:
        cfg.strategy = f"lorun{models.parse_strategy(meta['config']['strategy']).stages}"


def run_training(phase: str, values: dict[str, Any], explicit: set[str], config: Path | None, device: str,
                 seed: int, quiet: bool, command: str) -> None:
    """Validate, then train with a Rich progress bar (plain log lines when stderr is not a terminal)."""
    cfg = make_config(phase, values, explicit, config)
    cfg.device, cfg.command = device, command
    if "seed" not in explicit and cfg.seed == 0:
        cfg.seed = seed
    out = check_outputs(cfg, bool(values.get("force")))
    from ..io.datasets import data_root

    data_root(cfg.data)  # a missing data root fails here, before the model is built
    summary = train(cfg, None if quiet else _progress(cfg))
    if not quiet:
        print(f"saved {out} ({summary['steps']} steps, {summary['minutes']} min, "
              f"{summary['it_s']} it/s, validation PSNR {summary['val_psnr']} dB [float, task crop], "
              f"peak memory {_peak_text(summary)}"
              + (f"; {summary['skipped_steps']} updates skipped: loss spikes" if summary["skipped_steps"] else "")
              + ")", file=sys.stderr)


def check_outputs(cfg: TrainConfig, force: bool) -> Path:
    """OUT, OUT.ckpt and OUT.log.jsonl before any training: nothing the user has is replaced unasked."""
    out = Path(cfg.out)
    if out.suffix.lower() not in V.MODEL_EXTS:
        raise UsageError(f"--out {out}: use a .safetensors or .pt file name")
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder; give a model file name such as {out / 'model.safetensors'}")
    V.check_writable_folder(out.parent, "--out", out)
    state, log = Path(str(out) + ".ckpt"), Path(str(out) + ".log.jsonl")
    if cfg.resume:
        if not state.is_file():
            raise UsageError(f"--resume: no training state {state}; start without --resume")
        return out
    if force:
        return out
    if out.exists():
        raise UsageError(f"{out} exists; pass --force to overwrite, --resume to continue, or choose --out")
    if state.exists():
        raise UsageError(f"{state} holds the resumable state of an earlier run; pass --resume to continue it, "
                         f"--force to start over, or choose another --out")
    if log.exists():
        raise UsageError(f"{log} holds the learning curve of an earlier run; pass --resume to continue it, "
                         f"--force to start over, or choose another --out")
    return out


def _progress(cfg: TrainConfig):
    """An event sink: Rich progress on a TTY, a plain line every log interval otherwise."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    console = Console(stderr=True)
    tty = console.is_terminal
    state: dict[str, Any] = {"val": float("nan"), "it_s": float("nan"), "t": time.monotonic()}
    prog = Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                    TextColumn("loss {task.fields[loss]:.2e}  val {task.fields[val]}"),
                    TextColumn("{task.fields[its]:.2f} it/s"),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console, disable=not tty)
    tid = None

    def sink(rec: dict[str, Any]) -> None:
        nonlocal tid
        ev = rec["event"]
        if ev == "start":
            p = rec["params"]
            console.print(f"{cfg.phase} {cfg.task} {cfg.strategy}: {p['trainable']:,} trainable of {p['total']:,} "
                          f"parameters; steps {rec['step']}→{rec['steps']}")
            prog.start()
            tid = prog.add_task(cfg.phase, total=rec["steps"], completed=rec["step"], loss=float("nan"),
                                val=_val_text(state["val"]), its=float("nan"))
            return
        if ev in ("end", "interrupted"):
            prog.stop()
            return
        state["val"] = rec.get("val_psnr", state["val"])
        state["it_s"] = rec.get("it_s", state["it_s"])
        prog.update(tid, completed=rec["step"], loss=rec["loss"], val=_val_text(state["val"]), its=state["it_s"])
        if not tty and ("it_s" in rec or "val_psnr" in rec):
            console.print(f"step {rec['step']}/{cfg.steps} loss {rec['loss']:.3e} val {_val_text(state['val'])} "
                          f"{state['it_s']:.2f} it/s {rec['minutes']:.1f} min", highlight=False)

    return sink


def _peak_text(summary: dict[str, Any]) -> str:
    """'612 MB RSS' (+ ', 1830 MB GPU' on CUDA)."""
    text = f"{summary['peak_rss_mb']:.0f} MB RSS"
    return text + (f", {summary['peak_gpu_mb']:.0f} MB GPU" if "peak_gpu_mb" in summary else "")


def _val_text(val: float) -> str:
    """Validation PSNR for the progress line: '–' until the first validation has run."""
    return "–" if math.isnan(val) else f"{val:.2f} dB"


__all__ = ["make_config", "run_training", "LorunError"]
