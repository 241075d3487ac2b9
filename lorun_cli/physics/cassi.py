"""Single-disperser CASSI: coded aperture, per-band shift of ``step`` pixels along the width, band sum."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..facts import CASSI_BANDS, CASSI_STEP
from .base import Operator, Scalar, per_sample

ASSETS = Path(__file__).resolve().parent.parent / "assets"
DEFAULT_MASK = ASSETS / "cassi_mask_256.npy"


def _as_2d(arr: np.ndarray, source: str) -> Tensor:
    """Validate a mask array (numeric, finite, 2-D after dropping singleton axes) → float32 tensor."""
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"mask in {source} is not numeric (dtype {arr.dtype})")
    arr = np.squeeze(arr)
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"mask in {source} must be a 2-D array, got shape {arr.shape}")
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise ValueError(f"mask in {source} contains NaN or Inf")
    return torch.from_numpy(np.ascontiguousarray(arr))


def load_mask(path: str | Path | None = None) -> Tensor:
    """Load a coded-aperture mask (H, W) float32: the bundled 256×256 mask by default.

    Accepts ``.mat`` (key ``mask``, else the first numeric 2-D array), ``.npy`` and ``.tif``/``.tiff``.
    """
    p = DEFAULT_MASK if path is None else Path(path)
    if not p.is_file():
        raise ValueError(f"mask file not found: {p}")
    suffix = p.suffix.lower()
    if suffix == ".npy":
        return _as_2d(np.load(p, allow_pickle=False), str(p))
    if suffix in (".tif", ".tiff"):
        import tifffile

        return _as_2d(np.asarray(tifffile.imread(p)), str(p))
    if suffix == ".mat":
        from scipy.io import loadmat

        data = loadmat(p)
        if "mask" in data:
            return _as_2d(np.asarray(data["mask"]), f"{p}['mask']")
        for key, val in data.items():
            if key.startswith("__") or not isinstance(val, np.ndarray):
                continue
            if val.dtype != object and np.issubdtype(val.dtype, np.number) and np.squeeze(val).ndim == 2:
                return _as_2d(val, f"{p}[{key!r}]")
        raise ValueError(f"no 2-D numeric array found in {p}")
    raise ValueError(f"unsupported mask format {suffix!r} (use .mat, .npy, .tif or .tiff)")


def _unshift_view(y: Tensor, bands: int, width: int, step: int) -> Tensor:
    """(N, 1, H, W') → (N, bands, H, width) view of y: band c reads columns step·c … step·c + width − 1."""
    if step == 0:
        return y.expand(-1, bands, -1, -1)
    return y[:, 0].unfold(-1, width, step).movedim(-2, 1)


def _shift_sum_loop(z: Tensor, weight: Tensor | None, step: int) -> Tensor:
    """Σ_c shift_{step·c}(weight ⊙ z_c) into a fresh (N, 1, H, W + step·(C − 1)), one in-place add per band."""
    n, c, h, w = z.shape
    out = z.new_zeros(n, 1, h, w + step * (c - 1))
    for b in range(c):
        view = out[:, 0, :, step * b : step * b + w]
        view.add_(z[:, b]) if weight is None else view.addcmul_(z[:, b], weight)
    return out


class _ShiftSum(torch.autograd.Function):
    """Φ's shift-and-sum as a band loop (a few times faster than a strided view's sum, and its backward is the
    unshift view itself instead of the view's slow strided backward)."""

    @staticmethod
    def forward(ctx, z: Tensor, weight: Tensor | None, step: int) -> Tensor:  # type: ignore[override]
        if ctx.needs_input_grad[1]:
            raise NotImplementedError("CASSI: gradients with respect to the mask are not implemented")
        ctx.save_for_backward(weight)
        ctx.bands, ctx.width, ctx.step = z.shape[1], z.shape[-1], step
        return _shift_sum_loop(z, weight, step)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, None, None]:  # type: ignore[override]
        (weight,) = ctx.saved_tensors
        g = _unshift_view(grad, ctx.bands, ctx.width, ctx.step)
        return (g if weight is None else weight * g), None, None


class _MaskedUnshift(torch.autograd.Function):
    """Φᵀ: mask ⊙ unshift(y), whose backward is the band-loop shift-and-sum."""

    @staticmethod
    def forward(ctx, y: Tensor, mask: Tensor, bands: int, step: int) -> Tensor:  # type: ignore[override]
        if ctx.needs_input_grad[1]:
            raise NotImplementedError("CASSI: gradients with respect to the mask are not implemented")
        ctx.save_for_backward(mask)
        ctx.step = step
        return mask * _unshift_view(y, bands, mask.shape[-1], step)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None, None]:  # type: ignore[override]
        (mask,) = ctx.saved_tensors
        return _shift_sum_loop(grad, mask, ctx.step), None, None, None


class CASSI(Operator):
    """y[n, 0, :, step·c : step·c + W] += mask ⊙ x[n, c] for every band c.

    y has shape (N, 1, H, W + step·(C−1)).

    ΦΦᵀ is diagonal (``gram``), which makes the HQS step exact and elementwise.
    """

    task = "cassi"

    def __init__(self, mask: Tensor, bands: int = CASSI_BANDS, step: int = CASSI_STEP) -> None:
        super().__init__()
        mask = torch.as_tensor(mask)
        if mask.dim() != 2 or mask.numel() == 0:
            raise ValueError(f"CASSI mask must be a non-empty 2-D tensor, got shape {tuple(mask.shape)}")
        if not torch.isfinite(mask).all():
            raise ValueError("CASSI mask contains NaN or Inf")
        if int(bands) != bands or bands < 1:
            raise ValueError(f"bands must be a positive integer, got {bands!r}")
        if int(step) != step or step < 0:
            raise ValueError(f"step must be a non-negative integer, got {step!r}")
        self.register_buffer("mask", mask.to(torch.float32 if not mask.is_floating_point() else mask.dtype))
        self.bands = int(bands)
        self.step = int(step)

    def extra_repr(self) -> str:
        h, w = self.mask.shape
        return f"mask={h}x{w}, bands={self.bands}, step={self.step}"

    @property
    def out_width(self) -> int:
        return self.mask.shape[1] + self.step * (self.bands - 1)

    def x_shape(self, y: Tensor) -> tuple[int, ...]:
        return (y.shape[0], self.bands, *self.mask.shape)

    # --- shifts ---------------------------------------------------------------------------------------------
    def _shift_sum(self, z: Tensor, weight: Tensor | None = None) -> Tensor:
        """(N, C, H, W) → (N, 1, H, W'): band c (times ``weight``) moved right by step·c, summed over bands."""
        if z.shape[1] == 1 and weight is None:
            return z
        return _ShiftSum.apply(z, weight, self.step)

    def _unshift(self, y: Tensor) -> Tensor:
        """(N, 1, H, W') → (N, C, H, W) view: band c reads columns step·c … step·c + W − 1 (the sum's adjoint)."""
        return _unshift_view(y, self.bands, self.mask.shape[1], self.step)

    def _check_x(self, x: Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.bands or tuple(x.shape[-2:]) != tuple(self.mask.shape):
            raise ValueError(
                f"CASSI expects x of shape (N, {self.bands}, {self.mask.shape[0]}, {self.mask.shape[1]}), "
                f"got {tuple(x.shape)}"
            )

    def _check_y(self, y: Tensor) -> None:
        h = self.mask.shape[0]
        if y.dim() != 4 or y.shape[1] != 1 or y.shape[2] != h or y.shape[3] != self.out_width:
            raise ValueError(f"CASSI expects y of shape (N, 1, {h}, {self.out_width}), got {tuple(y.shape)}")

    # --- operator ----------------------------------------------------------------------------------------
    def A(self, x: Tensor) -> Tensor:
        self._check_x(x)
        return self._shift_sum(x, self.mask.to(x))

    def A_adjoint(self, y: Tensor) -> Tensor:
        self._check_y(y)
        return _MaskedUnshift.apply(y, self.mask.to(y), self.bands, self.step)

    def gram(self, ref: Tensor | None = None) -> Tensor:
        """Diagonal of ΦΦᵀ, Σ_c shift_c(mask²), shape (1, 1, H, W')."""
        m = self.mask if ref is None else self.mask.to(ref)
        return self._shift_sum(m.expand(1, self.bands, -1, -1), m)

    def init(self, y: Tensor, eps: float = 1e-6) -> Tensor:
        """x⁽⁰⁾: the flat-spectrum shift-back projected onto {x : Φx = y}.

        sb + Φᵀ((y − Φ sb) / ΦΦᵀ) keeps the smooth spectrum of the shift-back where the measurement says
        nothing (Φ's null space) instead of the zeros of the minimum-norm solution :meth:`init_min_norm`
        (measured on the CAVE validation regions: 16.6 / 20.0 dB against 15.8 / 15.8 dB).
        """
        sb = self.shift_back(y)
        return sb + self.A_adjoint((y - self.A(sb)) / self.gram(y).clamp_min(eps))

    def init_min_norm(self, y: Tensor, eps: float = 1e-6) -> Tensor:
        """Φᵀ(y / max(ΦΦᵀ, eps)), the minimum-norm solution of Φx = y."""
        self._check_y(y)
        return self.A_adjoint(y / self.gram(y).clamp_min(eps))

    def shift_back(self, y: Tensor) -> Tensor:
        """Flat-spectrum shift-back reference (no mask in the back-projection).

        Each measurement pixel is divided by (number of bands landing on it) × (mean mask transmission) and
        shifted back per band, so a flat spectrum under an average mask is returned at its own level.
        """
        self._check_y(y)
        h, w = self.mask.shape
        ones = torch.ones(1, self.bands, h, w, device=y.device, dtype=y.dtype)
        norm = self._shift_sum(ones) * self.mask.to(y).mean()
        return self._unshift(y / norm.clamp_min(1e-12)).contiguous()

    @property
    def side_channels(self) -> int:
        """Channels of :meth:`side_info`: the mask and the per-band ΦΦᵀ seen from each band."""
        return 1 + self.bands

    def side_info(self, y: Tensor) -> Tensor:
        """(1, 1 + bands, H, W): the mask, and ΦΦᵀ shifted back to every band (÷ bands).

        Where a band's pixel is coded and how many coded bands share its detector pixel is what shapes the
        null-space error the denoiser has to remove; the maps depend on the mask only, never on the scene.
        """
        m = self.mask.to(y)
        return torch.cat([m[None, None], self._unshift(self.gram(y)) / self.bands], dim=1)

    def hqs_step(self, x: Tensor, y: Tensor, mu: Scalar) -> Tensor:
        """(ΦᵀΦ + μI)⁻¹(Φᵀy + μx) = x + Φᵀ((y − Φx) / (ΦΦᵀ + μ)), elementwise since ΦΦᵀ is diagonal."""
        # Eq. 9
        r = y - self.A(x)
        return x + self.A_adjoint(r / (self.gram(x) + per_sample(mu, y)))


__all__ = ["CASSI", "load_mask", "DEFAULT_MASK"]
