#!/usr/bin/env python3
"""Ship a trained SR kernel estimator as the ``sr-kernel-estimator`` manifest entry.

    python scripts/publish_sr_estimator.py runs/sr-kernel-estimator.safetensors --data DATA_ROOT

Copies the file into lorun_cli/assets/weights (float32, a few hundred kB), and writes its entry into
weights_manifest.json (and the shipped copy): sha256, bytes, the training command and figures, the headline
metric (sr-lorun9 on Set5 ×3 K5 with the *estimated* kernel, Y channel, border 3) and the sample figure that
tests/test_shipped_models.py checks.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import sample_metrics
import torch

from lorun_cli import metrics
from lorun_cli.io import datasets as DS
from lorun_cli.io.checkpoint import load_checkpoint, save_checkpoint
from lorun_cli.io.paths import sha256_file
from lorun_cli.physics import sr_estimate as E
from lorun_cli.physics.sr import SRBlur, load_kernels
from lorun_cli.restore import PROTOCOL

ROOT = Path(__file__).resolve().parent.parent
WEIGHTS = ROOT / "lorun_cli" / "assets" / "weights"
MANIFEST = ROOT / "weights_manifest.json"


def headline(path: Path, data_root: Path, models: list[dict]) -> dict:
    """sr-lorun9 on Set5 ×3 K5 with the kernel estimated from each LR image."""
    s = 3
    est_net = E.load_estimator(path)
    lorun9 = sample_metrics.load_shipped(next(e for e in models if e["name"] == "sr-lorun9"))
    ps, ss = [], []
    for _name, x in DS.load_testset("sr", "set5", data_root):
        x = x[..., : x.shape[-2] // s * s, : x.shape[-1] // s * s].unsqueeze(0)
        y = SRBlur(load_kernels()["K5"], s).A(x)
        est = E.estimate(est_net, y, s)
        k, _ = E.kernel_policy(None, est["kernel"], est["snapped"])
        with torch.no_grad():
            out = lorun9(y, SRBlur(k, s))
        sc = metrics.score(out.clamp(0, 1), x, PROTOCOL["sr"], border=s)
        ps.append(sc["psnr"])
        ss.append(sc["ssim"])
    return {"set5": {"psnr": round(statistics.fmean(ps), 3), "ssim": round(statistics.fmean(ss), 4), "scale": s,
                     "kernels": "K5 (estimated)", "restored_with": "sr-lorun9, --kernel auto",
                     "protocol": metrics.PROTOCOL_TEXT[PROTOCOL["sr"]] + f", border {s}"}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path)
    ap.add_argument("--data", type=Path, required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    tensors, meta = load_checkpoint(args.src)
    net = E.build_estimator(meta)
    net.load_state_dict(tensors)
    dst = WEIGHTS / f"{E.ESTIMATOR_NAME}.safetensors"
    save_checkpoint(dst, {k: v.float().contiguous() for k, v in tensors.items()}, meta)
    tr = meta.get("training", {})
    params = sum(p.numel() for p in net.parameters())
    entry = {
        "name": E.ESTIMATOR_NAME, "task": "sr", "strategy": "estimator", "variant": "estimator",
        "denoiser": f"cnn/{params // 1000}k", "file": dst.name, "sha256": sha256_file(dst), "bytes": dst.stat().st_size,
        "urls": [], "params": params,
        "description": f"sr kernel and noise estimator for --kernel auto: a {params:,}-parameter CNN, soft retrieval "
                       f"over a learned {net.n_learned}-kernel dictionary; CPU-trained on T91 + Train400",
        "command": tr.get("command", ""),
        "training": {k: tr[k] for k in ("steps", "minutes", "it_s", "threads", "stop", "val") if k in tr},
    }
    data = json.loads(MANIFEST.read_text())
    data["models"] = [e for e in data["models"] if e["name"] != entry["name"]] + [entry]
    entry["metrics"] = headline(dst, args.data, data["models"])
    entry["sample"] = sample_metrics.measure(entry)
    MANIFEST.write_text(json.dumps(data, indent=2) + "\n")
    (ROOT / "lorun_cli" / "assets" / "weights_manifest.json").write_text(MANIFEST.read_text())
    print(f"published {entry['name']}: {entry['bytes']:,} B, {entry['metrics']}, sample {entry['sample']['psnr']} dB")


if __name__ == "__main__":
    main()
