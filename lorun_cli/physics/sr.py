"""Super-resolution degradation y = (x ⊛ k)↓s: circular blur, then top-left decimation (pixels 0, s, …)."""

from __future__ import annotations

import numbers
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Operator, Scalar, per_sample

ASSETS = Path(__file__).resolve().parent.parent / "assets"
KERNELS_FILE = ASSETS / "kernels_12.npy"


def _check_scale(scale: int) -> int:
    if isinstance(scale, bool) or not isinstance(scale, numbers.Integral) or scale < 1:
        raise ValueError(f"SR scale must be a positive integer, got {scale!r}")
    return int(scale)


# --- kernels --------------------------------------------------------------------------------------
def psf2otf(kernel: Tensor, size: tuple[int, int]) -> Tensor:
    """Optical transfer function of ``kernel`` (..., kh, kw) for a circular convolution on ``size`` (H, W).

    The kernel tap (kh // 2, kw // 2) is its centre: it is moved to pixel (0, 0) and the other taps wrap
    around the image borders (taps of a kernel larger than the image add up where they alias).
    """
    h, w = size
    kh, kw = kernel.shape[-2:]
    rows = (torch.arange(kh, device=kernel.device) - kh // 2) % h
    cols = (torch.arange(kw, device=kernel.device) - kw // 2) % w
    flat_idx = (rows[:, None] * w + cols[None, :]).reshape(-1)
    lead = kernel.shape[:-2]
    padded = torch.zeros(*lead, h * w, device=kernel.device, dtype=kernel.dtype)
    padded.index_add_(-1, flat_idx, kernel.reshape(*lead, kh * kw))
    return torch.fft.fft2(padded.reshape(*lead, h, w))


def _check_kernel(kernel: np.ndarray | Tensor, source: str) -> Tensor:
    """Validate a kernel (numeric, finite, non-empty, 2-D or 3-D) → floating tensor (values unchanged)."""
    if isinstance(kernel, Tensor):
        k = kernel
    else:
        arr = np.asarray(kernel)
        if arr.dtype == object or not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
            raise ValueError(f"kernel from {source} is not a real numeric array (dtype {arr.dtype})")
        k = torch.from_numpy(np.ascontiguousarray(arr))
    if k.dtype == torch.bool or k.is_complex():
        raise ValueError(f"kernel from {source} is not a real numeric array (dtype {k.dtype})")
    if k.dim() not in (2, 3) or k.numel() == 0:
        raise ValueError(
            f"kernel from {source} must be a non-empty (kh, kw) or (N, kh, kw) array, got {tuple(k.shape)}"
        )
    if not k.is_floating_point():
        k = k.to(torch.float32)
    if not torch.isfinite(k).all():
        raise ValueError(f"kernel from {source} contains NaN or Inf")
    return k


def load_kernels() -> dict[str, Tensor]:
    """The 12 bundled blur kernels (25×25, sum 1) as {"K1": …, …, "K12": …}."""
    arr = np.load(KERNELS_FILE, allow_pickle=False)
    return {f"K{i + 1}": torch.from_numpy(np.array(arr[i], dtype=np.float32)) for i in range(arr.shape[0])}


def _first_2d(obj: object) -> np.ndarray | None:
    """First numeric 2-D array inside a loaded .mat value (descends into cell arrays)."""
    if not isinstance(obj, np.ndarray):
        return None
    if obj.dtype == object:
        for item in obj.flat:
            found = _first_2d(item)
            if found is not None:
                return found
        return None
    if np.issubdtype(obj.dtype, np.number) and np.squeeze(obj).ndim == 2:
        return np.squeeze(obj)
    return None


def load_kernel_file(path: str | Path, normalize: bool = True) -> Tensor:
    """Read one blur kernel (kh, kw) float32 from ``.npy``, ``.mat`` (first numeric 2-D array) or an image.

    Images (``.png``, ``.bmp``, ``.tif``) are read as gray. With ``normalize`` (default) the kernel is
    scaled to sum 1; a kernel with a non-positive sum or negative taps raises ``ValueError``.
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"kernel file not found: {p}")
    suffix = p.suffix.lower()
    if suffix == ".npy":
        arr = np.squeeze(np.load(p, allow_pickle=False))
    elif suffix == ".mat":
        from scipy.io import loadmat

        data = loadmat(p)
        arr = None
        for key in ["kernel", *[k for k in data if not k.startswith("__")]]:
            if key in data:
                arr = _first_2d(data[key])
                if arr is not None:
                    break
        if arr is None:
            raise ValueError(f"no numeric 2-D array found in {p}")
    elif suffix in (".png", ".bmp", ".tif", ".tiff"):
        from PIL import Image

        with Image.open(p) as im:
            gray = im if im.mode in ("L", "I", "I;16", "F") else im.convert("L")
            arr = np.asarray(gray).astype(np.float64)
    else:
        raise ValueError(f"unsupported kernel format {suffix!r} (use .npy, .mat or .png)")
    if arr.ndim != 2:
        raise ValueError(f"kernel in {p} must be 2-D, got shape {arr.shape}")
    k = _check_kernel(np.asarray(arr, dtype=np.float64), str(p)).to(torch.float64)
    if normalize:
        if (k < 0).any():
            raise ValueError(f"kernel in {p} has negative taps; pass normalize=False to keep it as is")
        total = float(k.sum())
        if not total > 0:
            raise ValueError(f"kernel in {p} sums to {total}; cannot normalise to 1")
        k = k / total
    return k.to(torch.float32)


# --- aligned bicubic upsampling -------------------------------------------------------------------
def _cubic(t: Tensor, a: float = -0.75) -> Tensor:
    """Keys cubic convolution kernel (a = −0.75, as in PyTorch's bicubic)."""
    t = t.abs()
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return torch.where(t <= 1, near, torch.where(t < 2, far, torch.zeros_like(t)))


def _upsample_rows(x: Tensor, scale: int) -> Tensor:
    """(B, 1, h, w) → (B, 1, h·s, w): HR row i·s + r interpolates LR rows i−1 … i+2 at offset r/s."""
    b, _, h, w = x.shape
    phase = torch.arange(scale, device=x.device, dtype=x.dtype) / scale  # (s,)
    taps = torch.arange(-1, 3, device=x.device, dtype=x.dtype)  # (4,)
    weights = _cubic(taps[None, :] - phase[:, None])  # (s, 4)
    xp = F.pad(x, (0, 0, 1, 2), mode="replicate")
    out = F.conv2d(xp, weights.view(scale, 1, 4, 1))  # (B, s, h, w)
    return out.permute(0, 2, 1, 3).reshape(b, 1, h * scale, w)


def bicubic_aligned(y: Tensor, scale: int) -> Tensor:
    """Bicubic upsampling aligned with top-left decimation: LR pixel i sits exactly at HR pixel i·s.

    Computed polyphase: HR pixel i·s + r is the separable Keys cubic (a = −0.75) interpolation of the LR
    image at position i + r/s, edges replicated. This equals ``F.interpolate(..., mode="bicubic",
    align_corners=False)`` of the edge-padded image shifted by (s − 1)/2 HR pixels (exact for odd s), and
    ``bicubic_aligned(y, s)[..., ::s, ::s] == y``.
    """
    s = _check_scale(scale)
    if s == 1:
        return y
    lead, (h, w) = y.shape[:-2], y.shape[-2:]
    z = y.reshape(-1, 1, h, w)
    z = _upsample_rows(z, s)
    z = _upsample_rows(z.transpose(-1, -2), s).transpose(-1, -2)
    return z.reshape(*lead, h * s, w * s)


# --- operator -------------------------------------------------------------------------------------
class SRBlur(Operator):
    """y = (x ⊛ k)[..., ::s, ::s] with circular convolution (FFT); channels are blurred independently.

    ``kernel`` is (kh, kw) or per-sample (N, kh, kw), used as given (normalising it is the caller's job).
    Images must have H and W multiples of ``scale`` (mod-crop first).
    """

    task = "sr"

    def __init__(self, kernel: Tensor, scale: int) -> None:
        super().__init__()
        self.scale = _check_scale(scale)
        self.register_buffer("kernel", _check_kernel(kernel, "SRBlur"))
        self._otf_cache: tuple[tuple, Tensor] | None = None

    def extra_repr(self) -> str:
        return f"scale={self.scale}, kernel={tuple(self.kernel.shape)}"

    def x_shape(self, y: Tensor) -> tuple[int, ...]:
        return (*y.shape[:-2], y.shape[-2] * self.scale, y.shape[-1] * self.scale)

    def _check_hw(self, h: int, w: int) -> None:
        if h % self.scale or w % self.scale:
            raise ValueError(f"SR needs H, W multiples of scale {self.scale}, got {h}x{w}; mod-crop first")

    def otf(self, ref: Tensor) -> Tensor:
        """OTF (Nk, 1, H, W) complex for ``ref``'s spatial size, dtype and device (Nk = 1 or N)."""
        h, w = ref.shape[-2:]
        k = self.kernel
        key = (h, w, ref.dtype, ref.device, k.data_ptr(), k._version, torch.is_inference_mode_enabled())
        if self._otf_cache is not None and self._otf_cache[0] == key and not k.requires_grad:
            return self._otf_cache[1]
        k = k.to(device=ref.device, dtype=ref.dtype)
        if k.dim() == 2:
            k = k.unsqueeze(0)
        if k.shape[0] not in (1, ref.shape[0]):
            raise ValueError(f"{k.shape[0]} per-sample kernels for a batch of {ref.shape[0]}")
        fb = psf2otf(k, (h, w)).unsqueeze(1)
        self._otf_cache = (key, fb)
        return fb

    def A(self, x: Tensor) -> Tensor:
        """y = (x ⊛ k)↓s: circular blur, then keep every s-th pixel from the top-left.  # Eq. 15-16"""
        self._check_hw(*x.shape[-2:])
        s = self.scale
        blurred = torch.fft.ifft2(torch.fft.fft2(x) * self.otf(x)).real
        return blurred[..., ::s, ::s]

    def upsample_zeros(self, y: Tensor) -> Tensor:
        """Sᵀy: put y at the pixels (i·s, j·s) of a zero HR image."""
        s = self.scale
        out = y.new_zeros(*y.shape[:-2], y.shape[-2] * s, y.shape[-1] * s)
        out[..., ::s, ::s] = y
        return out

    def A_adjoint(self, y: Tensor) -> Tensor:
        z = self.upsample_zeros(y)
        return torch.fft.ifft2(torch.fft.fft2(z) * self.otf(z).conj()).real

    def init(self, y: Tensor) -> Tensor:
        """Kernel-unaware aligned bicubic upsampling (see ``bicubic_aligned``)."""
        return bicubic_aligned(y, self.scale)

    def hqs_step(self, y: Tensor, w: Tensor, mu: Scalar) -> Tensor:
        """Closed-form FFT solution of (ΦᵀΦ + μI)x = Φᵀy + μw for Φ = decimation ∘ circular blur.

        Uses the block structure of the decimated spectrum: with FB the OTF and R = FBᵀ·F(Sᵀy) + μ·F(w),
        x = F⁻¹[(R − conj(FB) · tile(mean_blocks(FB·R) / (mean_blocks(|FB|²) + μ))) / μ].
        """
        # Eq. 9
        s = self.scale
        n, c, h, wd = w.shape
        self._check_hw(h, wd)
        mu_t = per_sample(mu, w)
        fb = self.otf(w)
        fbc = fb.conj()
        f2b = fb.abs().square()
        fr = fbc * torch.fft.fft2(self.upsample_zeros(y)) + mu_t * torch.fft.fft2(w)
        fbr = _block_mean(fb * fr, s)
        inv_w = _block_mean(f2b, s)
        inv_wbr = fbr / (inv_w + mu_t)
        fx = (fr - fbc * inv_wbr.repeat(1, 1, s, s)) / mu_t
        return torch.fft.ifft2(fx).real


def _block_mean(z: Tensor, s: int) -> Tensor:
    """Average the s×s distinct blocks of size (H/s, W/s) of the last two dims → (..., H/s, W/s)."""
    *lead, h, w = z.shape
    return z.reshape(*lead, s, h // s, s, w // s).mean(dim=(-4, -2))


__all__ = ["SRBlur", "psf2otf", "bicubic_aligned", "load_kernels", "load_kernel_file", "KERNELS_FILE"]
