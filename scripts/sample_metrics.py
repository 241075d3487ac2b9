#!/usr/bin/env python3
"""Record, for every model in weights_manifest.json, the PSNR it reaches on one bundled sample.

    python scripts/sample_metrics.py            # measure every bundled file, write the "sample" records
    python scripts/sample_metrics.py --check    # measure and compare only (exit 1 on a difference > 0.05 dB)

Each entry gets ``"sample": {"input", "crop", "setting", "psnr", "protocol"}``: a small crop of a bundled
sample (so the whole check takes seconds), degraded noise-free by the task's forward model and restored by
the shipped file. tests/test_shipped_models.py measures the same thing with :func:`measure` and must find
the recorded figure within ±0.05 dB. Run this after a model file is replaced (scripts/publish_weights.py
does it for the files it publishes).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "weights_manifest.json"
WEIGHTS = ROOT / "lorun_cli" / "assets" / "weights"
SAMPLES = ROOT / "lorun_cli" / "assets" / "samples"
TOLERANCE_DB = 0.05

#: Per task: the bundled sample, the top-left crop (rows, cols) and the degradation setting.
PLAN: dict[str, dict[str, Any]] = {
    "cs": {"input": "cs/house.png", "crop": [128, 128], "setting": {}},
    "sr": {"input": "sr/butterfly.png", "crop": [96, 96], "setting": {"scale": 3, "kernel": "K5"}},
    "cassi": {"input": "cassi/balloons_256.npz", "crop": [64, 64], "setting": {"mask": "bundled, same crop"}},
}


def load_shipped(entry: dict[str, Any]):
    """The entry's bundled file as a ready-to-run model (adapters on their bundled backbone)."""
    from lorun_cli import models

    backbone = WEIGHTS / f"{entry['backbone']}.safetensors" if entry.get("backbone") else None
    return models.load_model(WEIGHTS / entry["file"], backbone).prepare_inference()


def measure(entry: dict[str, Any]) -> dict[str, Any]:
    """Restore the task's sample crop with the entry's bundled file; the record to store under "sample"."""
    import torch

    from lorun_cli import metrics
    from lorun_cli.io import images
    from lorun_cli.io.datasets import read_cassi_sample
    from lorun_cli.physics.cassi import CASSI, load_mask
    from lorun_cli.physics.sr import SRBlur, load_kernels
    from lorun_cli.restore import PROTOCOL

    task = entry["task"]
    plan = PLAN[task]
    h, w = plan["crop"]
    path = SAMPLES / plan["input"]
    if entry.get("strategy") == "estimator":  # the SR kernel estimator: `--kernel auto`'s model, estimated kernel
        return _measure_auto(plan, estimator=entry)
    if entry.get("kernel") == "auto":  # blind SR adapters: the bundled estimator's kernel
        return _measure_auto(plan, model=entry)
    net = load_shipped(entry)
    border = 0
    with torch.no_grad():
        if task == "cs":
            ref = images.read_image(path, "gray")[:, :h, :w]
            out = net.op.crop(net(net.op.measure(ref.unsqueeze(0))))[0]
        elif task == "sr":
            s = plan["setting"]["scale"]
            ref = images.read_image(path, "rgb")[:, :h, :w]
            op = SRBlur(load_kernels()[plan["setting"]["kernel"]], s)
            out = net(op.A(ref.unsqueeze(0)), op)[0]
            border = s
        else:
            ref = read_cassi_sample(path)[:, :h, :w]
            op = CASSI(load_mask()[:h, :w], bands=net.channels, step=2)
            out = net(op.A(ref.unsqueeze(0)), op)[0]
    proto = PROTOCOL[task]
    score = metrics.score(out.clamp(0, 1), ref, proto, border=border)
    return {"input": plan["input"], "crop": [h, w], "setting": plan["setting"], "psnr": round(score["psnr"], 3),
            "protocol": metrics.PROTOCOL_TEXT[proto] + (f", border {border}" if border else "")}


def _measure_auto(plan: dict[str, Any], estimator: dict[str, Any] | None = None,
                  model: dict[str, Any] | None = None) -> dict[str, Any]:
    """The sample crop restored as ``--kernel auto`` restores it: the estimator's kernel (the manifest's, or
    ``estimator``) given to ``model`` (default: the model `--kernel auto` serves, see
    ``restore.default_model_name``) under that model's auto policy, data step weighted by the estimated noise."""
    import torch

    from lorun_cli import metrics
    from lorun_cli.io import images
    from lorun_cli.physics import sr_estimate as E
    from lorun_cli.physics.sr import SRBlur, load_kernels
    from lorun_cli.restore import PROTOCOL, default_model_name, sr_kernel_for

    entries = {e["name"]: e for e in json.loads(MANIFEST.read_text())["models"]}
    model = model or entries[default_model_name("sr", "lorun9", kernel="auto")]
    estimator = estimator or entries[E.ESTIMATOR_NAME]
    h, w = plan["crop"]
    s = plan["setting"]["scale"]
    ref = images.read_image(SAMPLES / plan["input"], "rgb")[:, :h, :w]
    y = SRBlur(load_kernels()[plan["setting"]["kernel"]], s).A(ref.unsqueeze(0))
    net = load_shipped(model)
    k, weight, _ = sr_kernel_for(y, s, None, net.auto_policy, E.load_estimator(WEIGHTS / estimator["file"]))
    with torch.no_grad():
        out = net(y, SRBlur(k, s, data_weight=weight))[0]
    score = metrics.score(out.clamp(0, 1), ref, PROTOCOL["sr"], border=s)
    return {"input": plan["input"], "crop": [h, w], "setting": {**plan["setting"], "restored_with": f"{model['name']}, "
                                                                "--kernel auto"},
            "psnr": round(score["psnr"], 3), "protocol": metrics.PROTOCOL_TEXT[PROTOCOL["sr"]] + f", border {s}"}


def main(argv: list[str] | None = None) -> int:
    """Measure every manifest entry; write the records (or, with --check, compare them)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare with the recorded figures, write nothing")
    ap.add_argument("--names", nargs="*", help="only these models (default: all)")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    data = json.loads(MANIFEST.read_text())
    bad = []
    for entry in data["models"]:
        if args.names and entry["name"] not in args.names:
            continue
        rec = measure(entry)
        old = entry.get("sample", {}).get("psnr")
        same = old is not None and abs(old - rec["psnr"]) <= TOLERANCE_DB
        print(f"{entry['name']}: {rec['psnr']:.3f} dB (recorded: {old if old is not None else '–'})")
        if args.check:
            bad += [] if same else [entry["name"]]
        else:
            entry["sample"] = rec
    if args.check:
        if bad:
            print(f"sample PSNR differs for: {', '.join(bad)}; run python scripts/sample_metrics.py", file=sys.stderr)
        return 1 if bad else 0
    MANIFEST.write_text(json.dumps(data, indent=2) + "\n")
    sys.path.insert(0, str(ROOT / "scripts"))
    import sync_manifest

    return sync_manifest.main([])


if __name__ == "__main__":
    sys.exit(main())
