"""A tiny, untrained model zoo (9 stages, 4-8 channel denoisers) with its own manifest, for CLI tests."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from lorun_cli import denoisers, models
from lorun_cli.io.paths import sha256_file

TINY = {
    "cs": ("unet", {**denoisers.config("unet", "small"), "widths": [4, 8]}),
    "sr": ("unet", {**denoisers.config("unet", "small"), "widths": [4, 8]}),
    "cassi": ("unet", {**denoisers.config("unet", "small"), "widths": [4, 8]}),
}


def _perturb(model: torch.nn.Module, seed: int) -> None:
    """Make the untrained nets differ from the identity (so strategies give different outputs)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.01 * torch.randn(p.shape, generator=g))


def make_zoo(folder: Path) -> Path:
    """Write backbone/adapter/block models for every task and a manifest; returns the manifest path."""
    wdir = folder / "weights"
    wdir.mkdir(parents=True, exist_ok=True)
    entries = []

    def add(name: str, task: str, strategy: str, model, extra=None, **fields) -> None:
        path = wdir / f"{name}.safetensors"
        models.save_model(path, model, extra or {})
        entries.append({"name": name, "task": task, "strategy": strategy, "file": path.name,
                        "sha256": sha256_file(path), "bytes": path.stat().st_size, "urls": [],
                        "description": f"tiny untrained {task} {strategy} (tests only)", **fields})

    torch.manual_seed(0)
    for i, (task, (den, kw)) in enumerate(TINY.items()):
        ratio = {"ratio": 0.25} if task == "cs" else {}
        suffix = "-r25" if task == "cs" else ""
        share = models.build_model(task, "share9", den, denoiser_kwargs=kw)
        _perturb(share, i)
        add(f"{task}-share9{suffix}", task, "share9", share, **ratio)
        lor = models.load_model(wdir / f"{task}-share9{suffix}.safetensors")
        lor.to_lorun(10.0)
        _perturb(lor, 10 + i)
        add(f"{task}-lorun9{suffix}", task, "lorun9", lor, {"backbone": f"{task}-share9{suffix}"}, **ratio)
        blk = models.build_model(task, "block9", den, denoiser_kwargs=kw)
        _perturb(blk, 20 + i)
        add(f"{task}-block9{suffix}", task, "block9", blk, **ratio)
    from lorun_cli.io.checkpoint import save_checkpoint
    from lorun_cli.physics.sr_estimate import ESTIMATOR_NAME, KernelEstimator

    est = KernelEstimator()  # untrained: a fixed, valid kernel and noise guess per input
    path = wdir / f"{ESTIMATOR_NAME}.safetensors"
    save_checkpoint(path, dict(est.state_dict()), {"task": "sr-kernel-estimator", "estimator": est.config()})
    entries.append({"name": ESTIMATOR_NAME, "task": "sr", "strategy": "estimator", "variant": "estimator",
                    "file": path.name, "sha256": sha256_file(path), "bytes": path.stat().st_size, "urls": [],
                    "description": "tiny untrained SR kernel estimator (tests only)"})
    manifest = folder / "manifest.json"
    manifest.write_text(json.dumps({"version": 1, "models": entries}, indent=2))
    return manifest


if __name__ == "__main__":
    print(make_zoo(Path(sys.argv[1])))
