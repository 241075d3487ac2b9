"""GPU measurements for docs/GPU.md: restore latency (CUDA events) and inference memory of an SR lorun9
(merged) against a block9 and a share9 of the same denoiser, per precision, and each precision's PSNR cost.

    python scripts/gpu_measure.py --lorun sr-lorun9-base.safetensors --backbone sr-share9-base.safetensors \
        --data DATA --out gpu_measure.json

Latency: one SR x3 restore of a 512x512 RGB measurement (output 1536x1536), the model alone (data steps and
denoisers; no file I/O), timed with CUDA events: 5 warm-ups, then the median and spread of 20 runs. block9 is
the same architecture with nine independent denoisers (random weights: its time does not depend on them).
Quality: Set5 x3 K5, PSNR on the Y channel of 8-bit RGB, border 3 (the SR protocol of lorun bench).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from lorun_cli import metrics, models
from lorun_cli.io import datasets as DS
from lorun_cli.physics.sr import SRBlur, load_kernels
from lorun_cli.restore import PROTOCOL


def cuda_ms(fn, warmup: int = 5, runs: int = 20) -> dict[str, float]:
    """Median, min and max milliseconds of ``fn()`` timed with CUDA events (a host clock on the CPU)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        if torch.cuda.is_available():
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            torch.cuda.synchronize()
            times.append(a.elapsed_time(b))
        else:
            t = time.perf_counter()
            fn()
            times.append(1000 * (time.perf_counter() - t))
    return {"median_ms": round(statistics.median(times), 3), "min_ms": round(min(times), 3),
            "max_ms": round(max(times), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lorun", required=True)
    ap.add_argument("--backbone", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--side", type=int, default=1536, help="output side of the timed case")
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    cuda = torch.cuda.is_available()
    dev = torch.device("cuda" if cuda else "cpu")
    gen = torch.Generator().manual_seed(0)
    k5 = load_kernels()["K5"]
    op = SRBlur(k5.to(dev), 3)
    y = op.A(torch.rand(1, 3, args.side, args.side, generator=gen).to(dev))
    rows = []
    cfg = models.read_meta(args.backbone)["config"]
    block9 = models.build_model("sr", "block9", cfg["denoiser"], cfg["size"]).to(dev)
    share9 = models.load_model(args.backbone).to(dev)
    precisions = ("fp32", "bf16", "fp16") if cuda else ("fp32",)
    for precision in precisions:
        nets = {"lorun9 (merged)": models.load_model(args.lorun, args.backbone).to(dev),
                "share9": share9, "block9": block9}
        for name, net in nets.items():
            net.prepare_inference(precision=precision)
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated() if cuda else 0
            with torch.no_grad():
                lat = cuda_ms(lambda net=net: net(y, op), runs=args.runs)
            peak = (torch.cuda.max_memory_allocated() - base) / 2**20 if cuda else float("nan")
            params = sum(p.numel() for p in net.parameters())
            rows.append({"model": name, "precision": precision, **lat, "peak_extra_mb": round(peak, 1),
                         "stored_params": params})
            print(json.dumps(rows[-1]), flush=True)
    quality = []
    items = DS.load_testset("sr", "set5", args.data)
    for precision in precisions:
        net = models.load_model(args.lorun, args.backbone).to(dev).prepare_inference(precision=precision)
        scores = []
        for _, x in items:
            x = x.unsqueeze(0).to(dev)
            x = x[..., : x.shape[-2] // 3 * 3, : x.shape[-1] // 3 * 3]
            with torch.no_grad():
                out = net(op.A(x), op).clamp(0, 1)
            scores.append(metrics.score(out[0].cpu(), x[0].cpu(), PROTOCOL["sr"], border=3)["psnr"])
        quality.append({"precision": precision, "set5_x3_k5_psnr": round(sum(scores) / len(scores), 3)})
        print(json.dumps(quality[-1]), flush=True)
    device = torch.cuda.get_device_name() if cuda else "cpu"
    Path(args.out).write_text(json.dumps({"device": device, "torch": torch.__version__,
                                          "case": f"SR x3 K5, output {args.side}x{args.side} RGB, batch 1",
                                          "latency": rows, "quality": quality}, indent=1))


if __name__ == "__main__":
    main()
