"""Largest difference between the plain inference path and the fast one, on the same model and input.

    python scripts/speed_exact.py cs=cs1024.png sr=sr1536.png cassi=lorun_cli/assets/samples/cassi/balloons_256.npz

"plain": the denoisers in the default (NCHW) layout and the SR data step recomputing its terms of y and the
kernel at every stage; "fast": what restore runs (channels_last, per-forward SR terms). One thread, fp32.
SR inputs are simulated at ×3 with K1, CASSI cubes simulated with the bundled mask, CS images sampled at 25 %.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from lorun_cli import restore as R
from lorun_cli.physics.base import Operator
from lorun_cli.physics.sr import SRBlur

SETTINGS = {"cs": {}, "sr": {"scale": 3, "kernel": "K1", "simulate": True}, "cassi": {"simulate": True}}


def run(task: str, inp: Path, plain: bool) -> torch.Tensor:
    opts = R.RestoreOptions(task=task, **SETTINGS[task])
    net, _ = R.load_task_model(task, None)
    saved = SRBlur.per_forward
    try:
        if plain:
            net.prepare_inference(channels_last=False)
            SRBlur.per_forward = Operator.per_forward  # the base scope: terms recomputed at every stage
        fn = {"sr": R._restore_sr, "cs": R._restore_cs, "cassi": R._restore_cassi}[task]
        return fn(net, inp, opts, torch.Generator().manual_seed(0), R._Guard(opts, None))[0]
    finally:
        SRBlur.per_forward = saved


def main() -> None:
    torch.set_num_threads(1)
    for arg in sys.argv[1:]:
        task, _, path = arg.partition("=")
        outs = {}
        for mode in ("plain", "fast"):
            t = time.perf_counter()
            outs[mode] = run(task, Path(path), mode == "plain")
            print(f"{task} {mode}: {time.perf_counter() - t:.2f} s", flush=True)
        print(f"{task} max abs diff {(outs['plain'] - outs['fast']).abs().max().item():.3g}", flush=True)


if __name__ == "__main__":
    main()
