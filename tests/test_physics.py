"""Tests of the degradation operators (lorun_cli.physics)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lorun_cli.physics import (
    CASSI,
    WAVELENGTHS_28,
    BlockCS,
    SRBlur,
    bicubic_aligned,
    bicubic_on_grid,
    load_kernel_file,
    load_kernels,
    load_mask,
)

D = torch.float64


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(1234)


def _adjoint_gap(op, x: torch.Tensor) -> float:
    with torch.no_grad():
        return _gap(op, x)


def _gap(op, x: torch.Tensor) -> float:
    y = op.A(x)
    v = torch.randn_like(y)
    lhs = (y * v).sum()
    rhs = (x * op.A_adjoint(v)).sum()
    return float((lhs - rhs).abs() / lhs.abs().clamp_min(1e-12))


# --- adjoints ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("ratio", "block", "hw", "c"),
    [(0.01, 32, (32, 64), 1), (0.25, 8, (16, 24), 3), (1.0, 8, (8, 16), 1), (0.1, 32, (64, 32), 2)],
)
def test_cs_adjoint(ratio: float, block: int, hw: tuple[int, int], c: int) -> None:
    op = BlockCS(ratio, block=block)
    x = torch.randn(2, c, *hw, dtype=D)
    assert op.A(x).shape == (2, c, op.m, hw[0] // block, hw[1] // block)
    assert _adjoint_gap(op, x) < 1e-5


@pytest.mark.parametrize(("bands", "step"), [(28, 2), (5, 2), (5, 1), (3, 0), (1, 2)])
def test_cassi_adjoint_and_loop_reference(bands: int, step: int) -> None:
    mask = torch.rand(16, 20, dtype=D)
    op = CASSI(mask, bands=bands, step=step)
    x = torch.rand(2, bands, 16, 20, dtype=D)
    y = op.A(x)
    ref = torch.zeros(2, 1, 16, 20 + step * (bands - 1), dtype=D)
    for c in range(bands):
        ref[:, 0, :, step * c : step * c + 20] += mask * x[:, c]
    torch.testing.assert_close(y, ref)
    assert _adjoint_gap(op, x) < 1e-5


@pytest.mark.parametrize("scale", [1, 2, 3, 4])
def test_sr_adjoint_per_sample_kernels(scale: int) -> None:
    k = torch.rand(2, 5, 4, dtype=D)
    op = SRBlur(k / k.sum(dim=(-2, -1), keepdim=True), scale)
    x = torch.randn(2, 3, 12, 12, dtype=D)
    assert op.A(x).shape == (2, 3, 12 // scale, 12 // scale)
    assert _adjoint_gap(op, x) < 1e-5


# the HQS steps against a generic solver: tests/test_operators.py


def test_pgd_step_formula() -> None:
    op = SRBlur(load_kernels()["K2"].to(D), 2)
    x, gt = torch.rand(2, 1, 32, 32, dtype=D), torch.rand(2, 1, 32, 32, dtype=D)
    y = op.A(gt)
    rho = torch.tensor([0.1, 0.9], dtype=D)
    z = op.pgd_step(x, y, rho)
    for i in range(2):
        ref = x[i] - rho[i] * op.A_adjoint(op.A(x) - y)[i]
        torch.testing.assert_close(z[i], ref)


# --- CS specifics ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("hw", "block"), [((37, 53), 32), ((5, 7), 32), ((5, 7), 8), ((37, 53), 8)])
def test_cs_measure_init_crop_roundtrip(hw: tuple[int, int], block: int) -> None:
    x = torch.rand(1, 1, *hw)
    op = BlockCS(1.0, block=block)  # orthogonal square Φ: Φᵀ inverts it
    y = op.measure(x)
    hp, wp = -(-hw[0] // block) * block, -(-hw[1] // block) * block
    assert y.shape == (1, 1, block * block, hp // block, wp // block)
    assert op.x_shape(y) == (1, 1, hp, wp)
    torch.testing.assert_close(op.crop(op.init(y)), x, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(op.crop(op.init_ls(y)), x, atol=1e-4, rtol=1e-4)

    small = BlockCS(0.1, block=block)
    y = small.measure(torch.rand(2, 3, *hw))
    assert small.crop(small.init(y)).shape == (2, 3, *hw)
    small.set_image_size(3, 4)
    assert small.crop(small.init(y)).shape == (2, 3, 3, 4)


def test_cs_reflect_padding_content() -> None:
    x = torch.arange(5 * 6, dtype=torch.float32).reshape(1, 1, 5, 6)
    p = BlockCS(0.5, block=4).pad(x)
    assert p.shape == (1, 1, 8, 8)
    torch.testing.assert_close(p[..., 5, :6], x[..., 3, :])  # reflect: row 5 mirrors row 3


def test_cs_phi_orthogonal_rows_and_m() -> None:
    for ratio, m in [(0.01, 10), (0.04, 41), (0.1, 102), (0.25, 256), (0.5, 512), (1.0, 1024)]:
        op = BlockCS(ratio)
        assert op.m == m and op.phi.shape == (m, 1024)
    op = BlockCS(0.25, block=8)
    g = op.phi @ op.phi.T
    torch.testing.assert_close(g, torch.eye(op.m), atol=1e-5, rtol=0)
    assert BlockCS(1e-6, block=4).m == 1


def test_cs_init_is_seeded() -> None:
    torch.manual_seed(7)
    a = BlockCS(0.1, block=8).phi.detach().clone()
    torch.manual_seed(7)
    b = BlockCS(0.1, block=8).phi.detach()
    torch.testing.assert_close(a, b)


def test_cs_gradient_reaches_phi() -> None:
    op = BlockCS(0.25, block=8)
    x = torch.rand(2, 1, 16, 16)
    y = op.A(x)
    out = op.hqs_step(torch.zeros_like(x), y, torch.tensor([0.1, 0.2]))
    out = op.pgd_step(out, y, 0.5)
    ((out - x) ** 2).mean().backward()
    assert op.phi.grad is not None
    assert torch.isfinite(op.phi.grad).all() and op.phi.grad.abs().sum() > 0


@pytest.mark.parametrize("ratio", [0.0, -0.1, 1.5, float("nan"), "0.5", True])
def test_cs_bad_ratio(ratio: object) -> None:
    with pytest.raises(ValueError, match="ratio"):
        BlockCS(ratio)  # type: ignore[arg-type]


def test_cs_bad_size_and_pad_mode() -> None:
    with pytest.raises(ValueError):
        BlockCS(0.1, block=8).A(torch.rand(1, 1, 12, 16))
    with pytest.raises(ValueError):
        BlockCS(0.1, pad_mode="wrap")


def test_measure_noise_is_reproducible() -> None:
    op = BlockCS(0.25, block=8)
    x = torch.rand(2, 1, 16, 16)
    op.requires_grad_(False)
    clean = op.measure(x)
    n1 = op.measure(x, 0.1, torch.Generator().manual_seed(3))
    n2 = op.measure(x, 0.1, torch.Generator().manual_seed(3))
    torch.testing.assert_close(n1, n2)
    assert 0.05 < float((n1 - clean).std()) < 0.15
    per = op.measure(x, torch.tensor([0.0, 0.1]))
    torch.testing.assert_close(per[0], clean[0])
    assert not torch.allclose(per[1], clean[1])


# --- CASSI specifics -------------------------------------------------------------------------------
def test_cassi_arbitrary_mask_shape() -> None:
    mask = torch.rand(11, 17)
    op = CASSI(mask, bands=28, step=2)
    x = torch.rand(1, 28, 11, 17)
    y = op.A(x)
    assert y.shape == (1, 1, 11, 17 + 54)
    assert op.x_shape(y) == (1, 28, 11, 17)
    x0 = op.init(y)
    assert x0.shape == x.shape
    torch.testing.assert_close(op.A(x0), y, atol=1e-5, rtol=1e-4)  # the init is data-consistent
    assert op.hqs_step(x0, y, 0.01).shape == x.shape
    assert op.shift_back(y).shape == x.shape
    with pytest.raises(ValueError):
        op.A(torch.rand(1, 28, 17, 11))


def test_cassi_shift_back_flat_spectrum() -> None:
    op = CASSI(torch.full((6, 8), 0.5), bands=4, step=2)
    x = torch.full((1, 4, 6, 8), 0.3)
    torch.testing.assert_close(op.shift_back(op.A(x)), x)


def test_bundled_mask() -> None:
    m = load_mask()
    assert m.shape == (256, 256) and m.dtype == torch.float32
    assert 0.0 < float(m.min()) < 0.01 and float(m.max()) == pytest.approx(1.0)
    assert ((m > 0.1) & (m < 0.9)).float().mean() > 0.1  # not binary
    assert len(WAVELENGTHS_28) == 28 and WAVELENGTHS_28[0] == 453.5 and WAVELENGTHS_28[-1] == 648.0
    op = CASSI(load_mask())
    assert op.A(torch.rand(1, 28, 256, 256)).shape == (1, 1, 256, 310)


def test_load_mask_formats(tmp_path) -> None:
    import tifffile
    from scipy.io import savemat

    arr = np.random.default_rng(0).random((9, 14)).astype(np.float32)
    np.save(tmp_path / "m.npy", arr)
    savemat(tmp_path / "m.mat", {"mask": arr})
    savemat(tmp_path / "other.mat", {"note": np.array([1.0, 2.0]), "code": arr})
    tifffile.imwrite(tmp_path / "m.tif", arr)
    for name in ("m.npy", "m.mat", "other.mat", "m.tif"):
        np.testing.assert_array_equal(load_mask(tmp_path / name).numpy(), arr)
    np.save(tmp_path / "cube.npy", np.zeros((3, 4, 5), np.float32))
    with pytest.raises(ValueError, match="2-D"):
        load_mask(tmp_path / "cube.npy")
    savemat(tmp_path / "cube.mat", {"mask": np.zeros((3, 4, 5))})
    with pytest.raises(ValueError, match="2-D"):
        load_mask(str(tmp_path / "cube.mat"))
    with pytest.raises(ValueError):
        load_mask(tmp_path / "missing.npy")


# --- SR specifics ----------------------------------------------------------------------------------
def test_sr_is_circular_convolution_with_centre_tap() -> None:
    k = torch.rand(5, 4, dtype=D)
    x = torch.rand(1, 1, 8, 9, dtype=D)
    ref = torch.zeros_like(x)
    for i in range(5):
        for j in range(4):
            ref += k[i, j] * torch.roll(x, (i - 2, j - 2), (-2, -1))
    torch.testing.assert_close(SRBlur(k, 1).A(x), ref)
    x8 = x[..., :8]
    ref8 = torch.zeros_like(x8)
    for i in range(5):
        for j in range(4):
            ref8 += k[i, j] * torch.roll(x8, (i - 2, j - 2), (-2, -1))
    torch.testing.assert_close(SRBlur(k, 2).A(x8), ref8[..., ::2, ::2])


def test_sr_delta_kernel_is_plain_decimation() -> None:
    k = torch.zeros(3, 3)
    k[1, 1] = 1.0
    x = torch.rand(1, 3, 12, 12)
    torch.testing.assert_close(SRBlur(k, 3).A(x), x[..., ::3, ::3], atol=1e-6, rtol=0)


def test_bicubic_aligned() -> None:
    y = torch.rand(2, 3, 6, 7, dtype=D)
    for s in (2, 3, 4):
        up = bicubic_aligned(y, s)
        assert up.shape == (2, 3, 6 * s, 7 * s)
        torch.testing.assert_close(up[..., ::s, ::s], y)
    # odd scale: the same as PyTorch's bicubic on an edge-padded image shifted by (s - 1) / 2 pixels
    s, p = 3, 3
    ref = F.interpolate(F.pad(y, (p, p, p, p), mode="replicate"), scale_factor=s, mode="bicubic")
    o = p * s + (s - 1) // 2
    torch.testing.assert_close(bicubic_aligned(y, s), ref[..., o : o + 6 * s, o : o + 7 * s])
    lin = torch.arange(7, dtype=D).expand(1, 1, 6, 7)  # a ramp stays a ramp away from the edges
    torch.testing.assert_close(bicubic_aligned(lin, 2)[0, 0, 0, 2:10], torch.arange(2, 10, dtype=D) / 2)
    op = SRBlur(load_kernels()["K1"], 2)
    torch.testing.assert_close(op.init(y), bicubic_aligned(y, 2))



def test_bicubic_on_grid() -> None:
    y = torch.rand(2, 3, 6, 7, dtype=D)
    for s in (2, 3, 4):
        torch.testing.assert_close(bicubic_on_grid(y, s), bicubic_aligned(y, s))  # the top-left grid
        c = (s - 1) / 2  # the centred grid: PyTorch's bicubic (half-pixel centres) of the edge-padded image
        ref = F.interpolate(F.pad(y, (2, 2, 2, 2), mode="replicate"), scale_factor=s, mode="bicubic")
        torch.testing.assert_close(bicubic_on_grid(y, s, (c, c)), ref[..., 2 * s : -2 * s, 2 * s : -2 * s])
    # LR pixels sit where the kernel's centre of mass puts them: y = (x ⊛ δ(· − d))↓s samples x at s·i − d
    x = torch.rand(1, 1, 24, 24, dtype=D)
    k = torch.zeros(5, 5, dtype=D)
    k[2, 1] = 1.0  # centre of mass at column offset −1: LR column i holds HR column 3i + 1
    yl = SRBlur(k, 3).A(x)
    torch.testing.assert_close(yl, x[..., ::3, 1::3])
    up = bicubic_on_grid(yl, 3, (0.0, 1.0))
    torch.testing.assert_close(up[..., ::3, 1::3], yl)  # interpolation passes through the samples where they sit
    assert not torch.allclose(bicubic_aligned(yl, 3)[..., ::3, 1::3], yl)

def test_bundled_kernels() -> None:
    ks = load_kernels()
    assert list(ks) == [f"K{i}" for i in range(1, 13)]
    for k in ks.values():
        assert k.shape == (25, 25) and k.dtype == torch.float32
        assert float(k.sum()) == pytest.approx(1.0, abs=1e-5) and float(k.min()) >= 0
    assert int(torch.argmax(ks["K1"])) == 12 * 25 + 12  # isotropic Gaussian centred at (12, 12)


def test_load_kernel_file(tmp_path) -> None:
    from PIL import Image
    from scipy.io import savemat

    k = np.random.default_rng(1).random((7, 5))
    np.save(tmp_path / "k.npy", k)
    savemat(tmp_path / "k.mat", {"whatever": k})
    Image.fromarray((k / k.max() * 255).astype(np.uint8)).save(tmp_path / "k.png")
    for name in ("k.npy", "k.mat"):
        out = load_kernel_file(tmp_path / name)
        np.testing.assert_allclose(out.numpy(), k / k.sum(), rtol=1e-5)
    png = load_kernel_file(tmp_path / "k.png")
    assert png.shape == (7, 5) and float(png.sum()) == pytest.approx(1.0, abs=1e-5)
    np.save(tmp_path / "bad.npy", np.zeros((2, 3, 4)))
    with pytest.raises(ValueError):
        load_kernel_file(tmp_path / "bad.npy")
    np.save(tmp_path / "nan.npy", np.full((3, 3), np.nan))
    with pytest.raises(ValueError):
        load_kernel_file(tmp_path / "nan.npy")


@pytest.mark.parametrize("scale", [0, -2, 2.5, True])
def test_sr_bad_scale(scale: object) -> None:
    with pytest.raises(ValueError, match="scale"):
        SRBlur(torch.ones(3, 3) / 9, scale)  # type: ignore[arg-type]


def test_sr_bad_inputs() -> None:
    op = SRBlur(torch.ones(3, 3) / 9, 3)
    with pytest.raises(ValueError, match="multiples"):
        op.A(torch.rand(1, 1, 10, 12))
    with pytest.raises(ValueError):
        SRBlur(torch.full((3, 3), float("nan")), 2)
    with pytest.raises(ValueError):
        SRBlur(torch.ones(0, 3), 2)
    with pytest.raises(ValueError):
        SRBlur(torch.ones(3, 3, 3) / 9, 2).A(torch.rand(2, 1, 8, 8))  # 3 kernels for a batch of 2


def test_cassi_min_norm_init() -> None:
    op = CASSI(torch.rand(9, 13), bands=5, step=2)
    y = op.A(torch.rand(2, 5, 9, 13))
    x0 = op.init_min_norm(y)
    torch.testing.assert_close(op.A(x0), y, atol=1e-5, rtol=1e-4)
    # minimum norm: the projected shift-back init differs from it only in Φ's null space
    assert x0.norm() <= op.init(y).norm() + 1e-6


def test_resize_sampling_keeps_learned_directions() -> None:
    from lorun_cli.physics.cs import resize_sampling

    torch.manual_seed(0)
    phi = torch.randn(20, 64) * torch.linspace(0.2, 2.0, 20)[:, None]
    more = resize_sampling(phi, 40)
    assert more.shape == (40, 64)
    torch.testing.assert_close(more[:20], phi)
    assert (more[20:] @ phi.T).abs().max() < 1e-4  # new rows are orthogonal to the learned ones
    fewer = resize_sampling(phi, 5)
    assert fewer.shape == (5, 64)
    # the best rank-5 approximation: its row space holds the 5 strongest directions of phi
    s = torch.linalg.svdvals(phi)
    torch.testing.assert_close(torch.linalg.svdvals(fewer), s[:5], rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError):
        resize_sampling(phi, 65)


def test_derive_sampling_is_the_same_for_equivalent_backbones() -> None:
    """Row signs/order of Φ0 do not change the operator; the derived Φ must not depend on them (nor on the run)."""
    from lorun_cli.physics.cs import derive_sampling

    torch.manual_seed(1)
    phi = torch.randn(20, 64) * torch.linspace(0.2, 2.0, 20)[:, None]
    flipped = phi[torch.randperm(20)] * torch.where(torch.rand(20, 1) < 0.5, -1.0, 1.0)
    torch.testing.assert_close(derive_sampling(phi, 7), derive_sampling(flipped, 7), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(derive_sampling(phi, 30), derive_sampling(phi, 30))  # seeded new rows
    assert torch.equal(derive_sampling(phi, 20), phi)


@pytest.mark.parametrize("step", [0, 1, 2])
def test_cassi_autograd_matches_its_adjoint(step: int) -> None:
    """A and Aᵀ run as band loops with hand-written backwards: gradcheck them, and check the forward against a
    per-band reference."""
    g = torch.Generator().manual_seed(3)
    op = CASSI(torch.rand(6, 5, generator=g, dtype=torch.float64), bands=3, step=step)
    x = torch.rand(2, 3, 6, 5, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.rand(2, 1, 6, op.out_width, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(op.A, (x,)) and torch.autograd.gradcheck(op.A_adjoint, (y,))
    ref = torch.zeros(2, 1, 6, op.out_width, dtype=torch.float64)
    for c in range(3):
        ref[:, 0, :, step * c : step * c + 5] += op.mask * x[:, c].detach()
    torch.testing.assert_close(op.A(x), ref)
    torch.testing.assert_close(op.gram(), op.A(op.mask.expand(1, 3, 6, 5)))  # ΦΦᵀ's diagonal: Σ shifted mask²
    op.mask.requires_grad_(True)  # a learned mask would need its own backward: refused, not silently zero
    with pytest.raises(NotImplementedError, match="mask"):
        op.A(x)
