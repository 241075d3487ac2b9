"""On a CUDA GPU: operators, networks, restores and a short training agree with the CPU (skipped without one).

Run them with ``python -m pytest -q tests/test_cuda.py`` on a machine with a GPU. The comparisons switch
TF32 off, so that CUDA's float32 is held to float32 tolerances; restores through the CLI run as a user runs
them (TF32 convolutions allowed, torch's default) and are held to a PSNR tolerance instead.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import LORUN_ENV_KEYS, ROOT, make_tiny_data_root, run_lorun

from lorun_cli import lora, models
from lorun_cli.physics.cassi import CASSI
from lorun_cli.physics.cs import BlockCS
from lorun_cli.physics.sr import SRBlur, load_kernels

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

SAMPLES = ROOT / "lorun_cli" / "assets" / "samples"


@pytest.fixture(autouse=True)
def no_tf32():
    """float32 on the GPU as float32: no TF32 matrix or convolution units during a comparison."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def _operator(task: str, c: int, hw: int) -> tuple:
    gen = torch.Generator().manual_seed(4)
    if task == "cs":
        op = BlockCS(0.25, block=8)
        op.set_image_size(hw, hw)
    elif task == "sr":
        op = SRBlur(load_kernels()["K9"], 2)
    else:
        op = CASSI(torch.rand(hw, hw, generator=gen), bands=c, step=2)
    return op, torch.rand(2, c, hw, hw, generator=gen)


@pytest.mark.parametrize("task,c", [("cs", 1), ("sr", 3), ("cassi", 28)])
def test_operators_and_data_steps_match_the_cpu(task, c):
    op, x = _operator(task, c, 32)
    y = op.A(x)
    ref = (y, op.A_adjoint(y), op.hqs_step(op.A_adjoint(y), y, 0.3), op.pgd_step(x, y, 0.5))
    opg = op.to("cuda")
    xg, yg = x.cuda(), opg.A(x.cuda())
    got = (yg, opg.A_adjoint(yg), opg.hqs_step(opg.A_adjoint(yg), yg, 0.3), opg.pgd_step(xg, yg, 0.5))
    for a, b in zip(got, ref, strict=True):
        torch.testing.assert_close(a.cpu(), b, rtol=1e-4, atol=1e-5)
    assert abs(opg.adjointness_test(yg)) < 1e-4


@pytest.mark.parametrize("task", ["cs", "sr", "cassi"])
def test_lorun_network_and_its_merged_form_match_the_cpu(task):
    torch.manual_seed(0)
    m = models.build_model(task, "share3", ratio=0.25, block=8).to_lorun(10)
    with torch.no_grad():  # adapters that change every stage
        for p in m.backbone.parameters():
            p.add_(0.02 * torch.randn_like(p))
        for _, layer in lora.lora_layers(m):
            layer.lora_A.normal_(0, 0.05)
    op, x = _operator(task, m.channels, 32)
    op = None if task == "cs" else op
    y = (op or m.op).A(x)
    with torch.no_grad():
        ref = m(y, op)
        mg, opg = m.to("cuda"), op.to("cuda") if op is not None else None
        got = mg(y.cuda(), opg)
        torch.testing.assert_close(got.cpu(), ref, rtol=1e-4, atol=1e-4)
        merged = mg.merged()
        torch.testing.assert_close(merged(y.cuda(), opg), got, rtol=1e-4, atol=1e-4)


def _env() -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if k not in LORUN_ENV_KEYS}
    env.update(PYTHONUNBUFFERED="1", LORUN_OFFLINE="1")
    return env


CASES = {  # input, options, output file (a CASSI cube is written as TIFF)
    "cs": (SAMPLES / "cs" / "house.png", ["--task", "cs"], "out.png"),
    "sr": (SAMPLES / "sr" / "butterfly.png", ["--task", "sr", "--kernel", "K5", "--scale", "3", "--simulate"],
           "out.png"),
    "cassi": (SAMPLES / "cassi" / "balloons_256.npz", ["--task", "cassi", "--simulate"], "out.tif"),
}


@pytest.mark.parametrize("task", ["cs", "sr", "cassi"])
def test_restore_on_cuda_scores_as_on_the_cpu_and_low_precision_costs_little(task, tmp_path):
    src, args, name = CASES[task]
    shutil.copy(src, tmp_path / src.name)
    psnr = {}
    for device, precision in (("cpu", "fp32"), ("cuda", "fp32"), ("cuda", "bf16"), ("cuda", "fp16")):
        out = tmp_path / device / precision
        out.mkdir(parents=True)
        r = run_lorun(["--device", device, "restore", *args, "--precision", precision, src.name, "-o",
                       out / name, "--json"], _env(), tmp_path)
        assert r.returncode == 0, r.stderr[-2000:]
        psnr[device, precision] = json.loads(r.stdout)[0]["psnr"]
    assert psnr["cuda", "fp32"] == pytest.approx(psnr["cpu", "fp32"], abs=0.05), psnr
    for low in ("bf16", "fp16"):
        assert psnr["cpu", "fp32"] - psnr["cuda", low] < 0.3, psnr


def test_short_training_on_cuda_learns_and_reports_gpu_memory(tmp_path):
    from lorun_cli.train.loop import TrainConfig, train

    make_tiny_data_root(tmp_path)
    cfg = TrainConfig(task="cs", strategy="share3", ratio=0.25, block=8, data=str(tmp_path), steps=12, batch=2,
                      patch=16, lr=2e-3, warmup=2, val_every=12, ckpt_every=12, log_every=1,
                      out=str(tmp_path / "m.safetensors"), seed=3, device="cuda")
    summary = train(cfg)
    assert summary["peak_gpu_mb"] > 0
    losses = [json.loads(x)["loss"] for x in Path(str(cfg.out) + ".log.jsonl").read_text().splitlines() if x]
    assert all(np.isfinite(losses)) and np.mean(losses[-4:]) < np.mean(losses[:4])
    assert str(models.load_model(cfg.out).strategy) == "share3"
