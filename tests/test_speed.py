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
