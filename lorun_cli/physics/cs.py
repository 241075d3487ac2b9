"""Block compressive sensing: each B×B block of every channel is sampled by the same matrix Φ (m × B²)."""

from __future__ import annotations

import numbers

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Operator, Scalar, per_sample

PAD_MODES = ("reflect", "replicate", "constant")


def orthogonal_rows(m: int, n: int, generator: torch.Generator | None = None) -> Tensor:
    """An (m, n) matrix with orthonormal rows (m ≤ n): QR of a Gaussian matrix, signs fixed by diag(R)."""
    g = torch.randn(n, m, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(g)
    q = q * torch.sign(torch.diagonal(r)).masked_fill(torch.diagonal(r) == 0, 1.0)
    return q.T.contiguous().to(torch.float32)


def resize_sampling(phi: Tensor, m: int, generator: torch.Generator | None = None) -> Tensor:
    """A starting (m, n) sampling matrix for another ratio, derived from a learned (m0, n) one.

    Fewer rows: the best rank-m approximation of the learned measurement space (top singular directions,
    scaled by their singular values). More rows: the learned rows plus orthonormal rows spanning the rest,
    scaled to the learned rows' mean norm. Adapting to a new ratio then starts from what Φ already learned
    instead of from a random matrix.
    """
    phi = phi.detach().to("cpu", torch.float64)
    m0, n = phi.shape
    if not 1 <= m <= n:
        raise ValueError(f"cannot make {m} measurement rows from blocks of {n} pixels")
    if m <= m0:
        _, s, vh = torch.linalg.svd(phi, full_matrices=False)
        vh = vh[:m]
        # singular vectors have arbitrary signs: make each row's largest entry positive (same result everywhere)
        lead = vh.gather(1, vh.abs().argmax(dim=1, keepdim=True))
        return (s[:m, None] * vh * torch.sign(lead)).to(torch.float32)
    q, _ = torch.linalg.qr(phi.T)  # (n, m0) orthonormal basis of the learned row space
    g = torch.randn(n, m - m0, generator=generator, dtype=torch.float64)
    g = g - q @ (q.T @ g)  # remove the learned directions
    extra = torch.linalg.qr(g)[0].T * phi.norm(dim=1).mean()
    return torch.cat([phi, extra]).to(torch.float32)


def derive_sampling(phi0: Tensor, m: int) -> Tensor:
    """The (m, n) sampling matrix a model with m rows derives from a backbone's Φ0 — the same on every machine.

    Φ0 itself when the row count matches, else :func:`resize_sampling` with a fixed seed for any new rows.
    """
    if m == phi0.shape[0]:
        return phi0.detach().to("cpu", torch.float32).clone()
    return resize_sampling(phi0, m, torch.Generator().manual_seed(0))


class BlockCS(Operator):
    """Block-based CS with a learnable sampling matrix ``phi`` (m, B²); y has shape (N, C, m, H/B, W/B).

    A block is vectorised row-major, so row i of ``phi`` seen as a B×B patch is the i-th sampling filter.
    """

    task = "cs"

    def __init__(self, ratio: float, block: int = 32, pad_mode: str = "reflect") -> None:
        super().__init__()
        if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or not (0.0 < float(ratio) <= 1.0):
            raise ValueError(f"CS ratio must be a number in (0, 1], got {ratio!r}")
        if isinstance(block, bool) or not isinstance(block, numbers.Integral) or block < 1:
            raise ValueError(f"CS block size must be a positive integer, got {block!r}")
        if pad_mode not in PAD_MODES:
            raise ValueError(f"pad_mode must be one of {PAD_MODES}, got {pad_mode!r}")
        self.ratio = float(ratio)
        self.block = int(block)
        self.pad_mode = pad_mode
        self.m = cs_measurements(self.ratio, self.block)
        self.phi = nn.Parameter(orthogonal_rows(self.m, self.block * self.block))
        self.phi_mode = "learn"  # how an adapted model's Φ relates to its backbone's (models.derive_phi)
        self._image_hw: tuple[int, int] | None = None

    def extra_repr(self) -> str:
        return f"ratio={self.ratio}, block={self.block}, m={self.m}, pad_mode={self.pad_mode!r}"

    # --- sizes -------------------------------------------------------------------------------------------
    def set_image_size(self, h: int, w: int) -> None:
        """Record the clean image size that ``crop`` returns to."""
        self._image_hw = (int(h), int(w))

    def pad(self, x: Tensor) -> Tensor:
        """Pad bottom/right to multiples of B and record the original (H, W) for ``crop``.

        ``reflect`` falls back to ``replicate`` when the image is too small for a reflection.
        """
        h, w = x.shape[-2:]
        self.set_image_size(h, w)
        ph, pw = (-h) % self.block, (-w) % self.block
        if ph == 0 and pw == 0:
            return x
        mode = self.pad_mode
        if mode == "reflect" and (ph >= h or pw >= w):
            mode = "replicate"
        return F.pad(x, (0, pw, 0, ph), mode=mode)

    def crop(self, x: Tensor) -> Tensor:
        if self._image_hw is None:
            return x
        h, w = self._image_hw
        return x[..., :h, :w]

    def x_shape(self, y: Tensor) -> tuple[int, ...]:
        """Padded image shape (N, C, h·B, w·B) of ``A_adjoint(y)``; ``crop`` gives the recorded size."""
        n, c, _, hb, wb = y.shape
        return (n, c, hb * self.block, wb * self.block)

    # --- operator ----------------------------------------------------------------------------------------
    def _filters(self, ref: Tensor) -> Tensor:
        b = self.block
        return self.phi.to(device=ref.device, dtype=ref.dtype).view(self.m, 1, b, b)

    def A(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        if h % self.block or w % self.block:
            raise ValueError(
                f"BlockCS.A needs H, W multiples of {self.block}, got {h}x{w}; use pad()/measure()"
            )
        y = F.conv2d(x.reshape(n * c, 1, h, w), self._filters(x), stride=self.block)
        return y.reshape(n, c, self.m, h // self.block, w // self.block)

    def A_adjoint(self, y: Tensor) -> Tensor:
        n, c, m, hb, wb = y.shape
        if m != self.m:
            raise ValueError(f"measurement has {m} rows per block, operator has {self.m}")
        x = F.conv_transpose2d(y.reshape(n * c, m, hb, wb), self._filters(y), stride=self.block)
        return x.reshape(n, c, hb * self.block, wb * self.block)

    def gram(self, ref: Tensor | None = None) -> Tensor:
        """ΦΦᵀ (m, m), in ``ref``'s dtype/device when given."""
        phi = self.phi if ref is None else self.phi.to(device=ref.device, dtype=ref.dtype)
        return phi @ phi.T

    def _solve_blocks(self, mat: Tensor, y: Tensor) -> Tensor:
        """Solve mat · z = y for every block; mat is (m, m) or per-sample (N, m, m)."""
        n, c, m, hb, wb = y.shape
        rhs = y.permute(0, 2, 1, 3, 4).reshape(n, m, c * hb * wb)
        z = torch.linalg.solve(mat, rhs)
        return z.reshape(n, m, c, hb, wb).permute(0, 2, 1, 3, 4)

    def init(self, y: Tensor) -> Tensor:
        """x⁽⁰⁾ = Φᵀy (exact inverse when ratio = 1, since Φ has orthonormal rows at init)."""
        return self.A_adjoint(y)

    def init_ls(self, y: Tensor) -> Tensor:
        """Minimum-norm least-squares init Φᵀ(ΦΦᵀ)⁻¹y."""
        return self.A_adjoint(self._solve_blocks(self.gram(y), y))

    def hqs_step(self, x: Tensor, y: Tensor, mu: Scalar) -> Tensor:
        """Exact data step through the push-through (Woodbury) identity, one m×m solve for all blocks.

        (ΦᵀΦ + μI)⁻¹(Φᵀy + μx) = x + Φᵀ(ΦΦᵀ + μI)⁻¹(y − Φx); ``mu`` is a float or an (N,) tensor.
        """
        # Eq. 9
        g = self.gram(x)
        eye = torch.eye(self.m, device=x.device, dtype=x.dtype)
        if isinstance(mu, Tensor):
            mu_v = per_sample(mu, x).reshape(-1, 1, 1)
            mat = g.unsqueeze(0) + mu_v * eye  # (N, m, m) or (1, m, m): broadcasts over the batch
        else:
            mat = g + float(mu) * eye
        r = y - self.A(x)
        return x + self.A_adjoint(self._solve_blocks(mat, r))


def cs_measurements(ratio: float, block: int = 32) -> int:
    """Number of measurements per block, m = max(1, round(ratio · B²))."""
    return max(1, int(round(float(ratio) * block * block)))


__all__ = ["BlockCS", "orthogonal_rows", "cs_measurements", "resize_sampling", "derive_sampling", "PAD_MODES"]
