"""Speed work that must not change results: cached SR data-step terms, channels-last, bf16, float32 scores,
batch folders (issue 15). No timing here: the speed figures come from `lorun bench --speed` (docs/SPEED.md)."""

from __future__ import annotations

import torch

from lorun_cli.physics.sr import SRBlur, load_kernels
from lorun_cli.unfold import DUN


def _sr_net() -> DUN:
    torch.manual_seed(0)
    net = DUN(3, "lorun3", denoiser="unet", algo="hqs", denoiser_kwargs={"widths": [8, 16]})
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return net.prepare_inference()


def test_sr_per_forward_terms_are_exact() -> None:
    """hqs_step inside per_forward (terms of y computed once) equals the step computed afresh at every stage."""
    net = _sr_net()
    op = SRBlur(load_kernels()["K3"], 3)
    y = torch.rand(2, 3, 16, 20)
    with torch.no_grad():
        cached = net(y, op, return_stages=True)
        op.per_forward = None  # DUN.forward then skips the scope: every stage recomputes the terms
        fresh = net(y, op, return_stages=True)
    for a, b in zip(cached, fresh, strict=True):
        assert torch.equal(a, b)


def test_sr_per_forward_is_per_measurement() -> None:
    """A different y inside the same scope is not served the first y's terms."""
    op = SRBlur(load_kernels()["K1"], 2)
    y1, y2, x = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8), torch.rand(1, 3, 16, 16)
    with op.per_forward(y1):
        op.hqs_step(x, y1, 0.1)
        inside = op.hqs_step(x, y2, 0.1)
    assert torch.equal(inside, op.hqs_step(x, y2, 0.1))


def test_tune_process_sets_passive_wait_unless_the_user_chose(tmp_path) -> None:
    """The CLI's process settings: PASSIVE OpenMP waiting unless OMP_WAIT_POLICY is set; malloc kept on glibc."""
    import os
    import subprocess
    import sys

    code = ("import os, sys; from lorun_cli import runtime; t = runtime.tune_process(); "
            "print(os.environ['OMP_WAIT_POLICY'], 'torch' in sys.modules, sorted(t))")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "LORUN_MALLOC")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.startswith("PASSIVE False")
    import platform

    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert "malloc" in out
    env.update(OMP_WAIT_POLICY="ACTIVE", LORUN_MALLOC="system")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split()[0] == "ACTIVE" and "malloc" not in out
