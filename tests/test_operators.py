"""Every operator (CS, CASSI, SR) against the same checks: exact adjoint, norm, closed-form HQS step vs CG."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from lorun_cli.physics import CASSI, BlockCS, Operator, SRBlur
from lorun_cli.physics.sr import (
    EXPOSURE_MAX_GAIN,
    EXPOSURE_REF,
    exposure_apply,
    exposure_map,
    exposure_unmap,
    load_kernels,
)

D = torch.float64


def _cs() -> tuple[Operator, tuple[int, ...]]:
    torch.manual_seed(0)
    op = BlockCS(0.25, block=8)
    with torch.no_grad():
        op.phi.mul_(torch.linspace(0.5, 2.0, op.m)[:, None])  # rows of different norms: ‖Φ‖² = 4
    return op, (2, 2, 16, 24)


def _cassi() -> tuple[Operator, tuple[int, ...]]:
    g = torch.Generator().manual_seed(1)
    return CASSI(torch.rand(12, 10, generator=g, dtype=D), bands=5, step=2), (2, 5, 12, 10)


def _sr() -> tuple[Operator, tuple[int, ...]]:
    g = torch.Generator().manual_seed(2)
    k = torch.rand(2, 5, 5, generator=g, dtype=D)
    return SRBlur(k / k.sum(dim=(-2, -1), keepdim=True), 2), (2, 3, 12, 16)


OPERATORS: dict[str, Callable[[], tuple[Operator, tuple[int, ...]]]] = {"cs": _cs, "cassi": _cassi, "sr": _sr}


@torch.no_grad()
def _dense_norm(op: Operator, shape: tuple[int, ...]) -> float:
    """λ_max(ΦᵀΦ) from the dense matrix of Φ (per sample; the largest over the batch)."""
    n = shape[1] * shape[2] * shape[3]
    basis = torch.eye(n, dtype=D).reshape(n, *shape[1:])
    best = 0.0
    for i in range(shape[0]):
        cols = torch.stack([op.A(b.expand(shape[0], *b.shape).contiguous())[i].reshape(-1) for b in basis], 1)
        best = max(best, float(torch.linalg.eigvalsh(cols.T @ cols)[-1]))
    return best


def conjugate_gradient(apply: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, iters: int = 500,
                       tol: float = 1e-12) -> torch.Tensor:
    """Solve apply(x) = b (symmetric positive definite) by CG, stopping once the residual is below ``tol``.

    Stopping on the residual matters: once r = 0, another step divides 0 by 0 and returns NaN.
    """
    x = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rs = (r * r).sum()
    stop = tol * float((b * b).sum().sqrt())
    for _ in range(iters):
        if float(rs.sqrt()) <= stop:
            break
        ap = apply(p)
        alpha = rs / (p * ap).sum()
        x = x + alpha * p
        r = r - alpha * ap
        rs_new = (r * r).sum()
        p = r + (rs_new / rs) * p
        rs = rs_new
    return x


@pytest.mark.parametrize("task", list(OPERATORS))
def test_adjointness(task: str) -> None:
    op, shape = OPERATORS[task]()
    y = op.A(torch.rand(shape, dtype=D))
    assert op.adjointness_test(y) < 1e-10


@pytest.mark.parametrize("task", list(OPERATORS))
def test_norm_is_the_largest_eigenvalue(task: str) -> None:
    op, shape = OPERATORS[task]()
    y = op.A(torch.rand(shape, dtype=D))
    assert op.norm(y) == pytest.approx(_dense_norm(op, shape), rel=1e-5)


@pytest.mark.parametrize("task", list(OPERATORS))
@pytest.mark.parametrize("mu", [0.05, torch.tensor([0.01, 0.7], dtype=D)], ids=["scalar", "per-sample"])
def test_hqs_step_matches_conjugate_gradient(task: str, mu: float | torch.Tensor) -> None:
    op, shape = OPERATORS[task]()
    x, w = torch.rand(shape, dtype=D), torch.rand(shape, dtype=D)
    y = op.A(x)
    m = mu.view(-1, 1, 1, 1) if isinstance(mu, torch.Tensor) else mu
    with torch.no_grad():
        ref = conjugate_gradient(lambda v: op.A_adjoint(op.A(v)) + m * v, op.A_adjoint(y) + m * w)
        out = op.hqs_step(w, y, mu)  # current estimate first, measurement second (as pgd_step)
    assert torch.isfinite(ref).all()
    torch.testing.assert_close(out, ref, atol=1e-8, rtol=1e-8)


def test_conjugate_gradient_stops_on_an_exact_solution() -> None:
    """An identity system is solved in one step; the residual check keeps the next step from 0/0 = NaN."""
    b = torch.rand(3, 4, dtype=D)
    torch.testing.assert_close(conjugate_gradient(lambda v: v, b), b)


def test_pgd_step_is_a_gradient_step() -> None:
    op, shape = OPERATORS["cs"]()
    x = torch.rand(shape)
    y = op.A(torch.rand(shape))
    torch.testing.assert_close(op.pgd_step(x, y, 0.3), x - 0.3 * op.A_adjoint(op.A(x) - y))


def test_sr_hqs_step_is_differentiable_in_the_kernel() -> None:
    """An estimator trained through the data step needs ∂z/∂k: autograd agrees with finite differences, inside
    the per-forward cache too, and the step's value is the one a constant kernel gives."""
    g = torch.Generator().manual_seed(5)
    k = torch.rand(2, 5, 5, generator=g, dtype=D)
    x, w = torch.rand(2, 1, 12, 12, generator=g, dtype=D), torch.rand(2, 1, 12, 12, generator=g, dtype=D)

    def step(kern: torch.Tensor) -> torch.Tensor:
        op = SRBlur(kern / kern.sum((-2, -1), keepdim=True), 2)
        y = op.A(x)
        with op.per_forward(y):
            return op.hqs_step(op.hqs_step(w, y, 0.3), y, 0.3)

    torch.testing.assert_close(step(k.clone().requires_grad_(True)).detach(), step(k), atol=1e-12, rtol=0)
    assert torch.autograd.gradcheck(step, (k.clone().requires_grad_(True),))


def test_exposure_map_commutes_with_a_blur_that_sums_to_one() -> None:
    torch.manual_seed(0)
    i = torch.arange(48, dtype=torch.float64)  # a dim scene of low contrast
    x = 0.15 + 0.1 * torch.sin(i / 3)[:, None] * torch.cos(i / 5) + 0.01 * torch.rand(1, 3, 48, 48, dtype=torch.float64)
    op = SRBlur(load_kernels()["K4"].double(), 2)
    y = op.A(x)
    mcg = exposure_map(y)
    m, c, g = mcg
    assert 1.0 < g < EXPOSURE_MAX_GAIN and g == pytest.approx(EXPOSURE_REF[1] / float(y.mean(1).std()))
    assert c == pytest.approx(m + (EXPOSURE_REF[0] - m) * (1 - 1 / g))  # the mean moved toward the reference
    assert torch.allclose(op.A(exposure_apply(x, mcg)), exposure_apply(y, mcg), atol=1e-12)  # the map commutes
    assert torch.allclose(exposure_unmap(exposure_apply(y, mcg), mcg), y, atol=1e-12)
    assert float(exposure_apply(y, mcg).mean(1).std()) == pytest.approx(EXPOSURE_REF[1], rel=1e-6)
    bright = torch.rand(1, 1, 48, 48).expand(1, 3, 48, 48)  # std 0.29: above the reference, not moved
    assert exposure_map(bright)[2] == 1.0 and exposure_apply(bright, exposure_map(bright)) is bright
    assert exposure_map(torch.full((1, 3, 8, 8), 0.3))[2] == EXPOSURE_MAX_GAIN  # a flat image: the gain is capped
