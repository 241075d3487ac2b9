"""The TV proximal operator and GAP-TV against scikit-image's ``denoise_tv_chambolle`` as the reference.

``denoise_tv_chambolle(f, weight)`` minimises ½‖u − f‖² + weight·TV(u) (isotropic TV, forward differences,
Neumann boundary: the same problem as ``classical.tv_prox``) with Chambolle's projection algorithm, a
different solver from ours (FISTA on the dual), so agreement checks the model and the solver.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.restoration import denoise_tv_chambolle

from lorun_cli import classical as C
from lorun_cli.physics import CASSI


def _chambolle(x: np.ndarray, weight: float, eps: float = 1e-12, iters: int = 3000) -> np.ndarray:
    """scikit-image's TV denoiser, run to convergence, on one 2-D plane (float64)."""
    return denoise_tv_chambolle(x, weight=weight, eps=eps, max_num_iter=iters)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def _piecewise(n: int, h: int, w: int, seed: int) -> torch.Tensor:
    """Flat rectangles plus noise: the kind of image TV is made for."""
    g = torch.Generator().manual_seed(seed)
    x = torch.full((n, h, w), 0.3, dtype=torch.float64)
    x[:, h // 5 : h // 2, w // 6 : w // 2] = 0.8
    x[:, h // 2 :, w // 2 :] = 0.55
    return x + 0.08 * torch.randn(x.shape, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("weight", [0.03, 0.1, 0.3])
def test_tv_prox_matches_chambolle(weight: float) -> None:
    x = _piecewise(2, 40, 33, seed=1)
    ours = C.tv_prox(x.unsqueeze(0), weight, iters=1500)[0].numpy()
    for i in range(x.shape[0]):
        ref = _chambolle(x[i].numpy(), weight)
        assert np.abs(ours[i] - ref).max() < 2e-3, weight
        assert _psnr(ours[i], ref) > 65
    # and a wrong weight is told apart: the check can fail
    assert _psnr(ours[0], _chambolle(x[0].numpy(), weight * 1.5)) < 50


def test_gap_tv_matches_a_reference_built_on_chambolle() -> None:
    """GAP-TV with an exact prox equals the same GAP iteration written with denoise_tv_chambolle."""
    g = torch.Generator().manual_seed(0)
    bands, h, w, lam, iters = 4, 24, 20, 0.04, 5
    mask = (torch.rand(h, w, generator=g) > 0.5).double()
    op = CASSI(mask, bands=bands, step=2)
    cube = _piecewise(bands, h, w, seed=2).clamp(0, 1).unsqueeze(0)
    y = op.A(cube)
    ours = C.gap_tv(op, y, lam=lam, iters=iters, inner=800)[0].numpy()

    # reference: the GAP recursion (Yuan 2016, accelerated form), TV step by scikit-image, per band
    d = op.gram(y).clamp_min(1e-6)
    x = op.A_adjoint(y / d)
    y_acc = y.clone()
    for _ in range(iters):
        r = op.A(x)
        y_acc = y_acc + (y - r)
        x = x + op.A_adjoint((y_acc - r) / d)
        tv = np.stack([_chambolle(x[0, b].numpy(), lam, eps=1e-10, iters=2000) for b in range(bands)])
        x = torch.from_numpy(np.maximum(tv, 0.0))[None]
    ref = x[0].numpy()
    assert _psnr(ours, ref) > 60
    start = op.A_adjoint(y / d)[0].numpy()  # and GAP-TV improves on its back-projected start
    assert _psnr(ours, cube[0].numpy()) > _psnr(start, cube[0].numpy()) + 3
