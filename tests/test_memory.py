"""The memory guard: its decisions, and its estimate against the peak memory a real restore reaches."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lorun_cli import memory
from lorun_cli.errors import UsageError

GB = memory.GB
ROOT = Path(__file__).resolve().parent.parent


def test_a_6000x6000_sr_x2_input_is_tiled_within_the_budget() -> None:
    out = (2 * 6032, 2 * 6032)  # 6000 + 2 × 16 circular padding, ×2
    budget = int(11.5 * GB)
    whole = memory.FIXED_BYTES + memory.bytes_per_pixel(16, 3) * out[0] * out[1]
    assert whole > 100 * GB  # the whole image is hopeless
    plan = memory.plan_tiles(16, 3, 1, out, 0, budget, "half the 23.0 GB available", min_tile=96)
    assert 96 <= plan.tile < out[0] and plan.tile % 32 == 0
    assert plan.estimate <= budget
    assert "tiling automatically with --tile" in plan.note and f"--tile {plan.tile}" in plan.note
    # the next larger tile would not fit: the guard picks the largest that does
    assert memory.FIXED_BYTES + memory.bytes_per_pixel(16, 3) * (plan.tile + 32) ** 2 > budget


def test_the_guard_refuses_with_a_hint() -> None:
    with pytest.raises(UsageError, match=r"--tile 4096: needs about .* use --tile \d+"):
        memory.plan_tiles(16, 3, 1, (8192, 8192), 4096, 4 * GB, "--max-memory 4", min_tile=96)
    with pytest.raises(UsageError, match="raise --max-memory"):
        memory.plan_tiles(16, 3, 1, (8192, 8192), 0, memory.FIXED_BYTES + 2**20, "--max-memory 0.1", min_tile=96)
    small = memory.plan_tiles(16, 3, 1, (256, 256), 0, 4 * GB, "x", min_tile=96)
    assert small.tile == 0 and small.note == ""  # within budget: untouched


def test_cassi_strips_use_the_full_width() -> None:
    plan = memory.plan_tiles(16, 28, 1, (2048, 2048), 0, memory.FIXED_BYTES + 400 * 2**20, "x", min_tile=64,
                             align=8, rows_only=True)
    assert plan.tile % 8 == 0 and plan.tile >= 64
    assert memory.bytes_per_pixel(16, 28) * plan.tile * 2048 <= 400 * 2**20


PROBE = r"""
import json, sys, torch
sys.path.insert(0, sys.argv[1])
torch.set_num_threads(1)
import sample_metrics as SM
from lorun_cli import memory
from lorun_cli.physics.sr import SRBlur, load_kernels
entries = {e["name"]: e for e in json.loads(SM.MANIFEST.read_text())["models"]}
from lorun_cli.runtime import peak_rss_mb
rss = lambda: peak_rss_mb() * 2**20
task = sys.argv[2]
net = SM.load_shipped(entries["sr-lorun9" if task == "sr" else "cs-lorun9-r25"])
with torch.no_grad():
    if task == "sr":
        op = SRBlur(load_kernels()["K5"], 2)
        net(torch.rand(1, 3, 16, 16), op)  # warm-up: allocator and kernels
        base = rss()
        net(torch.rand(1, 3, 192, 192), op)
        est = memory.bytes_per_pixel(16, 3) * 384 * 384
    else:
        net(net.op.measure(torch.rand(1, 1, 32, 32)))
        base = rss()
        net(net.op.measure(torch.rand(1, 1, 512, 512)))
        est = memory.bytes_per_pixel(16, 1) * 512 * 512
print(json.dumps([rss() - base, est]))
"""


def test_peak_rss_is_this_process_own() -> None:
    """A small process started by a large one reports its own peak (Linux keeps ru_maxrss over exec)."""
    ballast = bytearray(300 * 2**20)
    ballast[:: 4096] = b"\x01" * len(ballast[:: 4096])
    code = "from lorun_cli.runtime import peak_rss_mb; print(peak_rss_mb())"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False,
                       cwd=ROOT)
    del ballast
    assert r.returncode == 0, r.stderr
    assert float(r.stdout) < 200


def test_the_estimate_covers_the_measured_peak() -> None:
    """Peak RSS growth of a real SR restore (shipped model, one thread) stays under the guard's estimate.

    (SR: the task whose large inputs ran out of memory; a fresh process, since peak RSS only ever grows.
    ``PROBE`` takes "cs" too: CS measured 150–160 MB against 218 MB estimated at 512 × 512.)
    """
    r = subprocess.run([sys.executable, "-c", PROBE, str(ROOT / "scripts"), "sr"], capture_output=True, text=True,
                       timeout=300, check=False, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    measured, estimate = json.loads(r.stdout)
    assert measured > 0.3 * estimate, (measured, estimate)  # the probe did allocate
    assert measured <= estimate, (measured, estimate)
