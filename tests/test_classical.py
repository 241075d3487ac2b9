"""Tests of the classical baselines (lorun_cli.classical) on tiny synthetic images."""

from __future__ import annotations

import math

import pytest
import torch

from lorun_cli import classical as C
from lorun_cli.physics import CASSI, BlockCS, SRBlur, bicubic_aligned


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _psnr(x: torch.Tensor, ref: torch.Tensor) -> float:
    return -10.0 * math.log10(float((x.double() - ref.double()).square().mean()))


def _squares(n: int = 2, size: int = 48) -> torch.Tensor:
    """Piecewise-constant images (N, 1, size, size) with a few flat rectangles."""
    x = torch.full((n, 1, size, size), 0.2)
    x[:, :, 8:30, 6:26] = 0.8
    x[:, :, 20:44, 28:44] = 0.5
    x[1:, :, 2:12, 30:46] = 0.95
    return x


def _grad(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward differences along H and W, zero past the last row/column."""
    gy = torch.nn.functional.pad(x[..., 1:, :] - x[..., :-1, :], (0, 0, 0, 1))
    gx = torch.nn.functional.pad(x[..., :, 1:] - x[..., :, :-1], (0, 1, 0, 0))
    return gy, gx


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Isotropic TV Σ‖∇x‖₂ of every (N, C) plane."""
    gy, gx = _grad(x)
    return torch.sqrt(gy.square() + gx.square()).sum(dim=(-2, -1))


def _prox_objective(z: torch.Tensor, x: torch.Tensor, w: float) -> torch.Tensor:
    return 0.5 * (z - x).square().sum(dim=(-2, -1)) + w * total_variation(z)


# --- TV prox -------------------------------------------------------------------------------------------
def test_tv_prox_weight_zero_is_identity() -> None:
    x = torch.rand(2, 3, 17, 13)
    assert torch.equal(C.tv_prox(x, 0.0), x)
    out = C.tv_prox(x, torch.tensor([0.0, 0.0]))
    assert torch.allclose(out, x, atol=1e-6)


def test_tv_prox_reduces_tv_and_objective() -> None:
    x = torch.rand(2, 3, 24, 20)
    w = 0.1
    z = C.tv_prox(x, w, iters=50)
    assert z.shape == x.shape
    assert (total_variation(z) < 0.5 * total_variation(x)).all()
    f_in, f_out = _prox_objective(x, x, w), _prox_objective(z, x, w)
    assert (f_out < f_in).all()
    # more iterations do not make the prox objective worse (it converges to the minimiser)
    z_long = C.tv_prox(x, w, iters=300)
    assert (_prox_objective(z_long, x, w) <= f_out + 1e-3).all()
    # the minimiser beats small perturbations of itself
    for _ in range(3):
        pert = z_long + 1e-3 * torch.randn_like(z_long)
        assert (_prox_objective(z_long, x, w) <= _prox_objective(pert, x, w) + 1e-6).all()


def test_tv_prox_keeps_constants_and_mean() -> None:
    c = torch.full((1, 2, 16, 16), 0.3)
    assert torch.allclose(C.tv_prox(c, 0.5), c, atol=1e-6)
    x = torch.rand(1, 2, 16, 16)
    z = C.tv_prox(x, 0.2, iters=30)
    assert torch.allclose(z.mean(dim=(-2, -1)), x.mean(dim=(-2, -1)), atol=1e-5)  # div has zero mean


def test_tv_prox_per_sample_weight_matches_single_calls() -> None:
    x = torch.rand(2, 1, 20, 20)
    out = C.tv_prox(x, torch.tensor([0.05, 0.0]), iters=20)
    assert torch.allclose(out[0:1], C.tv_prox(x[0:1], 0.05, iters=20), atol=1e-6)
    assert torch.allclose(out[1], x[1], atol=1e-6)


def test_tv_prox_bounds_and_errors() -> None:
    x = torch.rand(1, 1, 12, 12) * 1.6 - 0.3
    z = C.tv_prox(x, 0.05, bounds=(0.0, 1.0))
    assert z.min() >= 0.0 and z.max() <= 1.0
    with pytest.raises(ValueError):
        C.tv_prox(torch.rand(8, 8), 0.1)
    with pytest.raises(ValueError):
        C.tv_prox(x, -0.1)


def test_tv_prox_denoises_piecewise_constant() -> None:
    clean = _squares()
    noisy = clean + 0.1 * torch.randn_like(clean)
    den = C.tv_prox(noisy, 0.08, iters=60)
    assert _psnr(den, clean) > _psnr(noisy, clean) + 8.0


# --- compressive sensing -------------------------------------------------------------------------------
def _disk_gradient(size: int = 64) -> torch.Tensor:
    r = torch.arange(size, dtype=torch.float32)
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    disk = ((yy - 30) ** 2 + (xx - 36) ** 2 < 15**2).float()
    return (0.15 + 0.4 * xx / size + 0.35 * disk).clamp(0, 1).view(1, 1, size, size)


def test_cs_tv_beats_linear() -> None:
    x = _disk_gradient()
    op = BlockCS(0.25, block=16)
    y = op.measure(x)
    lin = C.cs_linear(op, y)
    tv = C.cs_tv(op, y, iters=100)
    assert lin.shape == tv.shape == x.shape
    assert tv.min() >= 0.0 and tv.max() <= 1.0
    assert _psnr(tv, x) > _psnr(lin, x) + 3.0
    assert _psnr(tv, x) > 35.0


def test_cs_linear_is_consistent_and_crops() -> None:
    x = torch.rand(1, 1, 40, 36)  # padded to 48×48 by measure, cropped back
    op = BlockCS(0.5, block=16)
    y = op.measure(x)
    lin = C.cs_linear(op, y)
    assert lin.shape == x.shape
    full = op.init_ls(y)
    assert torch.allclose(op.A(full), y, atol=1e-4)  # min-norm solution fits the measurement


def test_cs_norm_of_scaled_phi() -> None:
    op = BlockCS(0.25, block=8)
    y = op.A(torch.zeros(1, 1, 16, 16))
    assert op.norm(y) == pytest.approx(1.0, abs=1e-5)  # orthonormal rows
    with torch.no_grad():
        op.phi.mul_(3.0)
    assert op.norm(y) == pytest.approx(9.0, rel=1e-5)


# --- CASSI ---------------------------------------------------------------------------------------------
def _smooth_cube(bands: int = 8, size: int = 32) -> torch.Tensor:
    """Piecewise-smooth cube: two regions with different smooth spectra and a gentle spatial ramp."""
    r = torch.arange(size, dtype=torch.float32) / size
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    region = ((yy - 0.5) ** 2 + (xx - 0.45) ** 2 < 0.09).float()
    lam = torch.linspace(0, 1, bands).view(bands, 1, 1)
    spec_a = 0.3 + 0.3 * lam
    spec_b = 0.8 - 0.5 * (lam - 0.4) ** 2
    ramp = 0.8 + 0.2 * xx
    cube = ramp * (region * spec_b + (1 - region) * spec_a)
    return cube.unsqueeze(0)


def test_gap_tv_beats_init() -> None:
    x = _smooth_cube()
    mask = (torch.rand(32, 32) > 0.5).float()
    op = CASSI(mask, bands=8, step=2)
    y = op.A(x)
    x0 = op.init(y)
    rec = C.gap_tv(op, y, iters=60)
    assert rec.shape == x.shape
    assert rec.min() >= 0.0
    assert _psnr(rec, x) > _psnr(x0, x) + 10.0
    assert _psnr(rec, x) > 25.0


# --- dispatch ------------------------------------------------------------------------------------------
def test_baselines_table() -> None:
    assert C.BASELINES == {"cs": ("linear", "tv"), "sr": ("bicubic",), "cassi": ("gap-tv",)}


def test_run_baseline_dispatch() -> None:
    x = torch.rand(1, 1, 32, 32)
    cs = BlockCS(0.25, block=16)
    y = cs.measure(x)
    assert torch.equal(C.run_baseline("linear", cs, y), C.cs_linear(cs, y))
    assert C.run_baseline("tv", cs, y).shape == x.shape

    sr = SRBlur(torch.ones(3, 3) / 9.0, 2)
    ylr = sr.A(torch.rand(1, 3, 16, 16))
    assert torch.equal(C.run_baseline("bicubic", sr, ylr), bicubic_aligned(ylr, 2))
    assert C.run_baseline("bicubic", sr, ylr, scale=4).shape == (1, 3, 32, 32)

    mask = (torch.rand(16, 16) > 0.5).float()
    op = CASSI(mask, bands=4, step=1)
    yc = op.A(torch.rand(1, 4, 16, 16))
    assert torch.allclose(C.run_baseline("gap-tv", op, yc), C.gap_tv(op, yc))


def test_run_baseline_unknown_name_lists_valid() -> None:
    cs = BlockCS(0.25, block=8)
    y = cs.measure(torch.rand(1, 1, 16, 16))
    with pytest.raises(ValueError, match="linear, tv"):
        C.run_baseline("bicubic", cs, y)
    with pytest.raises(ValueError, match="gap-tv"):
        C.run_baseline("nope", CASSI(torch.ones(8, 8), bands=2, step=1), torch.zeros(1, 1, 8, 9))


def _fgp_textbook(b: torch.Tensor, w, iters: int, bounds=None, dual=None):
    """Fast gradient projection written plainly on fresh tensors (the reference for the buffered one)."""
    F = torch.nn.functional

    def div(py: torch.Tensor, px: torch.Tensor) -> torch.Tensor:
        return py - F.pad(py[..., :-1, :], (0, 0, 1, 0)) + px - F.pad(px[..., :, :-1], (1, 0, 0, 0))

    def primal(py: torch.Tensor, px: torch.Tensor) -> torch.Tensor:
        x = b + w * div(py, px)
        return x if bounds is None else x.clamp(*bounds)

    py, px = (torch.zeros_like(b), torch.zeros_like(b)) if dual is None else (dual[0], dual[1])
    ry, rx, t = py, px, 1.0
    for _ in range(iters):
        gy, gx = _grad(primal(ry, rx))
        qy, qx = ry + gy / (8 * w), rx + gx / (8 * w)
        n = torch.sqrt(qy.square() + qx.square()).clamp_min(1.0)
        qy, qx = qy / n, qx / n
        t_next = (1.0 + math.sqrt(1.0 + 4.0 * t * t)) / 2.0
        beta = (t - 1.0) / t_next
        ry, rx = qy + beta * (qy - py), qx + beta * (qx - px)
        py, px, t = qy, qx, t_next
    return primal(py, px), torch.stack([py, px])


@pytest.mark.parametrize("case", ["float", "per-sample", "bounds+dual"])
def test_buffered_fgp_matches_textbook(case: str) -> None:
    b = torch.rand(2, 3, 20, 17)
    w = 0.1 if case != "per-sample" else torch.tensor([0.05, 0.2]).view(2, 1, 1, 1)
    bounds = (0.0, 1.0) if case == "bounds+dual" else None
    dual = _fgp_textbook(b, 0.1, 3)[1] if case == "bounds+dual" else None
    x, p = C._tv_fgp(b, w, 7, bounds, None if dual is None else dual.clone())
    x_ref, p_ref = _fgp_textbook(b, w, 7, bounds, dual)
    assert torch.allclose(x, x_ref, atol=1e-6) and torch.allclose(p, p_ref, atol=1e-6)
    assert not torch.allclose(x, b, atol=1e-3)  # the prox did something


def test_gap_tv_matches_textbook_prox_per_band() -> None:
    """gap_tv (bands grouped, buffers reused across iterations and groups) equals GAP with a plain per-band prox;
    6 bands make a last group of another size."""
    mask = (torch.rand(20, 20) > 0.5).float()
    op = CASSI(mask, bands=6, step=2)
    x_true = torch.rand(1, 6, 20, 20)
    y = op.A(x_true)
    d = op.gram(y).clamp_min(1e-6)
    x, y_acc = op.A_adjoint(y / d), y.clone()
    for _ in range(4):
        r = op.A(x)
        y_acc = y_acc + (y - r)
        x = x + op.A_adjoint((y_acc - r) / d)
        x = torch.cat([_fgp_textbook(x[:, c : c + 1], C.GAP_TV_LAM, C.GAP_TV_INNER)[0] for c in range(6)], 1)
        x = x.clamp_min(0.0)
    assert torch.allclose(C.gap_tv(op, y, iters=4), x, atol=1e-5)


def test_tv_subspace_is_the_prox_of_the_spectral_coefficients() -> None:
    """A cube whose spectra span r dimensions: _tv_subspace(x, r) is U·TV-prox(Uᵀx) for that subspace's basis,
    whatever the basis' signs; its output keeps rank r; gap_tv's rank path runs and keeps x ≥ 0."""
    torch.manual_seed(0)
    u = torch.linalg.qr(torch.rand(6, 3))[0]  # orthonormal (6, 3)
    a = torch.rand(1, 3, 16, 16)
    x = torch.einsum("cr,nrhw->nchw", u, a)
    lam, inner = 0.1, 7
    out = C._tv_subspace(x, lam, inner, 3)
    flat = x.reshape(1, 6, -1)
    basis = torch.linalg.eigh(flat @ flat.transpose(1, 2))[1][0, :, 3:]
    for signs in (torch.ones(3), torch.tensor([1.0, -1.0, -1.0])):
        b = basis * signs
        coef = torch.einsum("cr,nchw->nrhw", b, x)
        ref = torch.einsum("cr,nrhw->nchw", b, _fgp_textbook(coef, lam, inner)[0])
        assert torch.allclose(out, ref, atol=1e-5)
    assert not torch.allclose(out, x, atol=1e-3)  # the prox did something
    assert torch.linalg.matrix_rank(out.reshape(6, -1)).item() <= 3
    op = CASSI((torch.rand(16, 16) > 0.5).float(), bands=6, step=1)
    y = op.A(x)
    rec = C.gap_tv(op, y, lam=0.1, iters=5, inner=4, rank=3)
    assert rec.shape == x.shape and rec.min() >= 0
    assert torch.equal(C.gap_tv(op, y, iters=3, rank=6), C.gap_tv(op, y, iters=3))  # rank ≥ bands: every band
