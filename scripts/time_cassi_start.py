"""Time the shipped CASSI start alone (GAP 45 iterations, TV on 8 spectral components) on the bundled sample.

    python scripts/time_cassi_start.py TREE TAG     # one thread; prints the median of 5 runs, saves /tmp/start_TAG.pt

Run it for two source trees in turn (old, new, old, new, …) and compare the saved starts.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

tree, tag = str(Path(sys.argv[1]).resolve()), sys.argv[2]
sys.path.insert(0, tree)
from lorun_cli import runtime  # noqa: E402

runtime.tune_process()
import torch  # noqa: E402

from lorun_cli import classical  # noqa: E402
from lorun_cli.io.datasets import read_cassi_sample  # noqa: E402
from lorun_cli.physics.cassi import CASSI, load_mask  # noqa: E402

assert classical.__file__.startswith(tree), classical.__file__
torch.set_num_threads(1)
x = read_cassi_sample(Path(tree) / "lorun_cli/assets/samples/cassi/balloons_256.npz")[None]
op = CASSI(load_mask())
y = op.A(x)
out = classical.gap_tv(op, y, lam=0.16, iters=45, inner=5, rank=8)
times = []
for _ in range(5):
    t0 = time.perf_counter()
    out = classical.gap_tv(op, y, lam=0.16, iters=45, inner=5, rank=8)
    times.append(time.perf_counter() - t0)
times.sort()
torch.save(out, f"/tmp/start_{tag}.pt")
print(tag, f"median {times[2]:.3f} s", [f"{t:.3f}" for t in times])
