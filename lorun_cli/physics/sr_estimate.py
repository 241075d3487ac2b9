"""SR degradation estimation from the low-resolution image alone: blur kernel and noise level.

A small CNN looks at the Y channel of the LR image and outputs soft weights over a learned kernel
dictionary (the retrieval Σ softmax(z)·K of degradation-aware unfolding) and a log noise level. The
kernel it returns is handed to the same :class:`~lorun_cli.physics.sr.SRBlur` operator as a named
kernel; nothing downstream knows where the kernel came from.

This module also holds the synthetic degradations the estimator is trained on (kernel families: the
12 bundled kernels, isotropic/anisotropic Gaussians down to a near-delta, motion, plain decimation and
PIL-style bicubic downsampling) and the kernel statistics the reports print.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..facts import SR_GRIDS, SR_SCALES
from .sr import load_kernels, psf2otf

KSIZE = 25  # taps per side of every kernel here (the bundled kernels' size)
SCALES = SR_SCALES  # the one-hot scale input; other scales use the last (×4) slot
FAMILIES = ("bundled", "gauss-iso", "gauss-aniso", "motion", "delta", "pil-bicubic")
ESTIMATOR_NAME = "sr-kernel-estimator"
MAX_SIDE = 192  # the estimator sees at most a centred MAX_SIDE × MAX_SIDE LR crop
NOISE_OFFSET = 0.5  # noise is predicted as u = log(255·σ + NOISE_OFFSET)


# --- kernel families ------------------------------------------------------------------------------
def _grid(size: int = KSIZE, dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor]:
    r = torch.arange(size, dtype=dtype) - size // 2
    return torch.meshgrid(r, r, indexing="ij")


def gaussian_kernel(s1: float | Tensor, s2: float | Tensor, theta: float | Tensor, size: int = KSIZE) -> Tensor:
    """Centred Gaussian(s) exp(−½ pᵀΣ⁻¹p), Σ = R diag(s1², s2²) Rᵀ; broadcast over tensor inputs."""
    s1, s2, th = (torch.as_tensor(v, dtype=torch.float64).reshape(-1, 1, 1) for v in (s1, s2, theta))
    c, s = torch.cos(th), torch.sin(th)
    a = c * c / s1**2 + s * s / s2**2
    b = c * s * (1 / s1**2 - 1 / s2**2)
    d = s * s / s1**2 + c * c / s2**2
    yy, xx = _grid(size)
    k = torch.exp(-0.5 * (a * xx**2 + 2 * b * xx * yy + d * yy**2))
    return (k / k.sum(dim=(-2, -1), keepdim=True)).float()


def delta_kernel(size: int = KSIZE) -> Tensor:
    """No blur: plain decimation."""
    k = torch.zeros(size, size)
    k[size // 2, size // 2] = 1.0
    return k


def _cubic(t: Tensor, a: float = -0.5) -> Tensor:
    """Keys cubic with a = −0.5 (PIL's bicubic filter)."""
    t = t.abs()
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return torch.where(t <= 1, near, torch.where(t < 2, far, torch.zeros_like(t)))


def pil_bicubic_kernel(scale: int, size: int = KSIZE) -> Tensor:
    """The blur of PIL's bicubic downscaling by ``scale``, in the top-left decimation convention.

    PIL's output pixel j averages input pixels i with weights cubic((i + ½ − (j + ½)s)/s); with
    y[j] = (x ⊛ k)[j·s] this is the separable kernel k[c − d] = w(d), centred (s − 1)/2 pixels up-left.
    """
    c = size // 2
    d = c - torch.arange(size, dtype=torch.float64)  # tap m holds the weight of offset d = c − m
    w = _cubic((d + 0.5 - 0.5 * scale) / scale)
    w = w / w.sum()
    return torch.outer(w, w).float()


def motion_kernel(gen: torch.Generator, size: int = KSIZE) -> Tensor:
    """A random smooth camera-shake trajectory (length 4–16 px), splatted bilinearly and centred."""
    n = 48
    length = 4 + 12 * float(torch.rand((), generator=gen))
    ang = 2 * math.pi * float(torch.rand((), generator=gen))
    turn = torch.cumsum(torch.randn(n, generator=gen, dtype=torch.float64) * 0.25, 0)
    heading = ang + turn
    step = length / n
    pts = torch.cumsum(torch.stack([torch.sin(heading), torch.cos(heading)], 1) * step, 0)
    pts = pts - pts.mean(0) + size // 2
    k = torch.zeros(size, size, dtype=torch.float64)
    p0 = pts.floor().long().clamp(0, size - 2)
    f = (pts - p0).clamp(0, 1)
    for dy in (0, 1):
        for dx in (0, 1):
            wgt = (f[:, 0] if dy else 1 - f[:, 0]) * (f[:, 1] if dx else 1 - f[:, 1])
            k.index_put_((p0[:, 0] + dy, p0[:, 1] + dx), wgt, accumulate=True)
    taps = torch.tensor([0.25, 0.5, 0.25], dtype=torch.float64)
    k = F.conv2d(k[None, None], torch.outer(taps, taps)[None, None], padding=1)[0, 0]
    return (k / k.sum()).float()


def sample_kernel(family: str, scale: int, gen: torch.Generator, bank: Tensor | None = None) -> Tensor:
    """One random kernel (25, 25) of ``family`` (see FAMILIES)."""
    u = torch.rand(3, generator=gen, dtype=torch.float64)
    if family == "bundled":
        bank = bank if bank is not None else torch.stack(list(load_kernels().values()))
        return bank[int(torch.randint(bank.shape[0], (1,), generator=gen))].clone()
    if family == "gauss-iso":
        s = 0.15 + 3.85 * float(u[0]) ** 1.3  # more mass at small widths, down to a near-delta
        return gaussian_kernel(s, s, 0.0)[0]
    if family == "gauss-aniso":
        s1, s2 = 0.3 + 3.7 * float(u[0]), 0.3 + 3.7 * float(u[1])
        return gaussian_kernel(s1, s2, math.pi * float(u[2]))[0]
    if family == "motion":
        return motion_kernel(gen)
    if family == "delta":
        return delta_kernel()
    if family == "pil-bicubic":
        return pil_bicubic_kernel(scale)
    raise ValueError(f"unknown kernel family {family!r}; expected one of {FAMILIES}")


# --- kernel statistics ----------------------------------------------------------------------------
def kernel_width(k: Tensor) -> float:
    """Effective blur width σ_eff = sqrt(½ tr Cov(k)) in HR pixels (negative taps clipped)."""
    k = k.detach().double().clamp_min(0)
    k = k / k.sum()
    yy, xx = _grid(k.shape[-1])
    yy, xx = yy[: k.shape[0]], xx[: k.shape[0]]
    my, mx = float((k * yy).sum()), float((k * xx).sum())
    var = float((k * ((yy - my) ** 2 + (xx - mx) ** 2)).sum()) / 2
    return math.sqrt(max(var, 0.0))


def scaled_kernel(k: Tensor, c: float, about: tuple[float, float] = (0.0, 0.0)) -> Tensor:
    """k_c(p) ∝ k(a + (p − a) / c): the same shape with every width multiplied by ``c`` about the point ``a``
    (``about``: row, col offsets from the centre tap), one bilinear resampling, sum 1."""
    if c == 1.0:
        return k
    size = k.shape[-1]
    half = size // 2
    d = torch.arange(size, dtype=torch.float32) - half
    ry, rx = (about[0] + (d - about[0]) / c) / half, (about[1] + (d - about[1]) / c) / half  # normalised positions
    yy, xx = torch.meshgrid(ry, rx, indexing="ij")
    grid = torch.stack([xx, yy], dim=-1)[None]
    out = F.grid_sample(k.float()[None, None], grid, mode="bilinear", padding_mode="zeros", align_corners=True)[0, 0]
    out = out.clamp_min(0)
    return out / out.sum() if float(out.sum().detach()) > 0 else k


def _centred(k: Tensor, size: int = KSIZE) -> Tensor:
    """``k`` zero-padded (or cropped) symmetrically to size × size."""
    kh, kw = k.shape[-2:]
    ph, pw = (size - kh) // 2, (size - kw) // 2
    if ph >= 0 and pw >= 0:
        return F.pad(k, (pw, size - kw - pw, ph, size - kh - ph))
    return k[..., max(0, -ph) : max(0, -ph) + size, max(0, -pw) : max(0, -pw) + size]


def trimmed_kernel(k: Tensor, size: int) -> Tensor:
    """``k`` cut to its centred size × size taps (odd ``size``) and renormalised: an estimate for an output smaller than
    its 25 taps, whose mass sits near the centre."""
    out = _centred(k, size)
    return out / out.sum()


def kernel_error(k_est: Tensor, k_true: Tensor) -> float:
    """Relative L2 error ‖k̂ − k‖ / ‖k‖ on a common 25 × 25 grid."""
    a, b = _centred(k_est.double()), _centred(k_true.double())
    return float((a - b).norm() / b.norm())


def nearest_bundled(k: Tensor) -> tuple[str, float]:
    """The bundled kernel closest to ``k`` in L2, and the relative error to it."""
    best = min(((n, kernel_error(k, kb)) for n, kb in load_kernels().items()), key=lambda t: t[1])
    return best


def disagreement(k_given: Tensor, k_est: Tensor) -> float:
    """How strongly two kernels disagree: |log(σ_eff(given) / σ_eff(estimate))| with widths floored at 0.3 px."""
    return abs(math.log(max(kernel_width(k_given), 0.3) / max(kernel_width(k_est), 0.3)))


# --- synthetic degradation ------------------------------------------------------------------------
def degrade_valid(hr: Tensor, kernels: Tensor, scale: int) -> Tensor:
    """y = (x ⊛ k)↓s on the valid interior: (B, 1, H, W) HR, (B, 25, 25) kernels → LR without wrap-around.

    Blurs circularly by FFT, drops the 12-pixel band the wrap-around touches, then keeps pixels 0, s, ….
    """
    h, w = hr.shape[-2:]
    fb = psf2otf(kernels.to(hr.dtype), (h, w)).unsqueeze(1)
    blurred = torch.fft.ifft2(torch.fft.fft2(hr) * fb).real
    m = KSIZE // 2
    return blurred[..., m : h - m : scale, m : w - m : scale]


def luma(x: Tensor) -> Tensor:
    """BT.601 luma of (B, 3, H, W) in [0, 1] (gray (B, 1, H, W) passes through)."""
    if x.shape[1] == 1:
        return x
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return (65.481 * r + 128.553 * g + 24.966 * b + 16.0) / 255.0


# --- the estimator --------------------------------------------------------------------------------
def dictionary_init(n: int = 48, gen: torch.Generator | None = None) -> Tensor:
    """Starting atoms (n, 25, 25): the 12 kernels, a delta, Gaussians, motion and PIL bicubic per scale; past 48,
    more motion kernels and anisotropic Gaussians."""
    gen = gen or torch.Generator().manual_seed(0)
    atoms = list(load_kernels().values()) + [delta_kernel()]
    atoms += list(gaussian_kernel(torch.tensor([0.4, 0.6, 0.8, 1.0, 1.4, 1.8, 2.4, 3.0, 3.6]),
                                  torch.tensor([0.4, 0.6, 0.8, 1.0, 1.4, 1.8, 2.4, 3.0, 3.6]), 0.0))
    for s1, s2 in ((0.8, 2.0), (1.0, 3.0), (1.6, 3.6)):
        atoms += list(gaussian_kernel(s1, s2, torch.tensor([0.0, 0.25, 0.5, 0.75]) * math.pi))
    atoms += [motion_kernel(gen) for _ in range(8)]
    atoms += [pil_bicubic_kernel(s) for s in SCALES]
    while len(atoms) < 48:
        atoms.append(gaussian_kernel(1.2, 1.2, 0.0)[0])
    while len(atoms) < n:
        u = torch.rand(3, generator=gen, dtype=torch.float64)
        atoms.append(motion_kernel(gen) if len(atoms) % 2 else
                     gaussian_kernel(0.5 + 3 * float(u[0]), 0.5 + 3 * float(u[1]), math.pi * float(u[2]))[0])
    return torch.stack(atoms[:n])


def attention_pool(f: Tensor, score: Tensor) -> Tensor:
    """Σ_p softmax_p(a)·f_p: features (B, C, h, w) averaged with weights from a score map (B, 1, h, w)."""
    w = torch.softmax(score.flatten(2), dim=-1)
    return (f.flatten(2) * w).sum(-1)


def retrieve_kernel(logits: Tensor, atoms: Tensor) -> Tensor:
    """Soft kernel retrieval k = Σ_i softmax(z)_i · K_i over the dictionary (B, D) × (D, kh, kw)."""
    return torch.einsum("bd,dhw->bhw", torch.softmax(logits, dim=-1), atoms)


#: Exact (not learned) dictionary atoms an estimator may carry: ``pil`` plain decimation and PIL's bicubic
#: downscaling at ×2, ×3, ×4 (negative lobes, which learned atoms — softmax over taps — cannot represent);
#: ``bundled`` the 12 bundled kernels too, so that a bundled kernel can be retrieved exactly.
EXACT_KINDS = ("none", "pil", "bundled")


def exact_atoms(kind: str = "pil") -> tuple[list[str], Tensor | None]:
    """(names, atoms (n, 25, 25)) of the exact atoms of ``kind`` (see :data:`EXACT_KINDS`)."""
    if kind not in EXACT_KINDS:
        raise ValueError(f"unknown exact-atom kind {kind!r}; expected one of {EXACT_KINDS}")
    if kind == "none":
        return [], None
    named = dict(load_kernels()) if kind == "bundled" else {}
    named["delta"] = delta_kernel()
    named.update({f"pil-x{s}": pil_bicubic_kernel(s) for s in SCALES})
    return list(named), torch.stack([k.float() for k in named.values()])


class _ResBlock(nn.Module):
    """x + conv(act(conv(x))), 3 × 3 convolutions with the given dilation."""

    def __init__(self, ch: int, dilation: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(ch, ch, 3, padding=dilation, dilation=dilation), nn.LeakyReLU(0.1),
                                  nn.Conv2d(ch, ch, 3, padding=dilation, dilation=dilation))
        with torch.no_grad():  # start near the identity: a deep trunk without normalisation stays stable
            self.body[-1].weight.mul_(0.1)
            self.body[-1].bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


def _trunk(arch: int, width: int) -> tuple[nn.Sequential, int]:
    """(feature trunk, its output channels). arch 1: five plain convolutions, one stride-2 step (~33k
    parameters at width 32); arch 2: two stride-2 steps with dilated residual blocks, so the features see
    ~60 LR pixels, enough for long motion blur."""
    act = nn.LeakyReLU(0.1)
    if arch == 1:
        c1, c2 = width // 2, width
        return nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1), act, nn.Conv2d(c1, c1, 3, padding=1), act,
            nn.Conv2d(c1, c2, 3, stride=2, padding=1), act,
            nn.Conv2d(c2, c2, 3, padding=1), act, nn.Conv2d(c2, c2, 3, padding=1), act,
        ), c2
    if arch == 2:
        c1, c2, c3 = width, 2 * width, 3 * width
        return nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1), act, nn.Conv2d(c1, c1, 3, padding=1), act,
            nn.Conv2d(c1, c2, 3, stride=2, padding=1), act, _ResBlock(c2, 1), _ResBlock(c2, 2),
            nn.Conv2d(c2, c3, 3, stride=2, padding=1), act, _ResBlock(c3, 1), _ResBlock(c3, 2), act,
        ), c3
    raise ValueError(f"unknown estimator arch {arch}")


class KernelEstimator(nn.Module):
    """LR Y image → (logits over the kernel dictionary, u = log(255·σ + ½)).

    Features are pooled twice: a plain mean and an attention-weighted mean (see ``attention_pool``). The
    dictionary atoms are learned too, each kept a valid kernel (non-negative, sum 1) as a softmax over its taps;
    ``exact`` adds exact atoms after the learned ones (:func:`exact_atoms`; default none for arch 1, ``pil`` for
    arch 2). arch 1 (width 32): ~63k parameters; arch 2 (width 32,
    96 atoms): ~0.66M.
    """

    def __init__(self, atoms: int = 48, width: int = 32, arch: int = 1, exact: str | None = None,
                 centre_head: bool = False) -> None:
        super().__init__()
        self.arch, self.width, self.centre_head = arch, width, bool(centre_head)
        self.exact = exact or ("none" if arch == 1 else "pil")
        self.features, ch = _trunk(arch, width)
        self.score = nn.Conv2d(ch, 1, 1)  # where to look: sharp edges say more about the blur than flat areas
        hidden = 64 if arch == 1 else 256
        #: Names of the exact atoms, which follow the learned ones in :meth:`atoms`.
        self.exact_names, fixed = exact_atoms(self.exact)
        n_fixed = len(self.exact_names)
        self.head = nn.Sequential(nn.Linear(2 * ch + len(SCALES), hidden), nn.LeakyReLU(0.1),
                                  nn.Linear(hidden, atoms + n_fixed + 1 + 2 * self.centre_head))
        #: Per-scale width calibration (from held-out training images, stored in the file's metadata).
        self.width_scale: dict[int, float] = {}
        init = dictionary_init(atoms)
        self.atom_logits = nn.Parameter(torch.log(init.clamp_min(0) + 1e-6).reshape(atoms, -1))
        self.register_buffer("fixed", fixed, persistent=False)  # None (exact "none") registers an empty slot

    def atoms(self) -> Tensor:
        """The dictionary (D, 25, 25): learned atoms (non-negative, sum 1), then any fixed ones."""
        learned = torch.softmax(self.atom_logits, dim=-1).reshape(-1, KSIZE, KSIZE)
        return learned if self.fixed is None else torch.cat([learned, self.fixed.to(learned.dtype)])

    def predict(self, y: Tensor, scale: int) -> tuple[Tensor, Tensor, Tensor | None]:
        """``y`` (B, 1, h, w) LR luma in [0, 1] → (dictionary logits (B, D), u (B,), centre (B, 2) or None).

        With ``centre_head`` the dictionary gives the kernel's shape and a separate output its centre of mass
        (row, col offsets from the centre tap, HR px): the centre is a registration the LR image only hints at
        (:func:`recentred`), and an L2 loss on the whole kernel would smear the shape over the grids it hedges
        between."""
        z = (y - y.mean(dim=(-2, -1), keepdim=True)) * 4.0
        f = self.features(z)
        pooled = torch.cat([f.mean(dim=(-2, -1)), attention_pool(f, self.score(f))], dim=1)
        onehot = torch.zeros(y.shape[0], len(SCALES), dtype=y.dtype, device=y.device)
        onehot[:, SCALES.index(scale) if scale in SCALES else -1] = 1.0
        out = self.head(torch.cat([pooled, onehot], dim=1))
        if self.centre_head:
            return out[:, :-3], out[:, -3], out[:, -2:]
        return out[:, :-1], out[:, -1], None

    def forward(self, y: Tensor, scale: int) -> tuple[Tensor, Tensor]:
        """``y`` (B, 1, h, w) LR luma in [0, 1] → (dictionary logits (B, D), u (B,)); see :meth:`predict`."""
        logits, u, _ = self.predict(y, scale)
        return logits, u

    def kernel(self, logits: Tensor) -> Tensor:
        """The retrieved kernels (B, 25, 25)."""
        return retrieve_kernel(logits, self.atoms())

    @property
    def n_learned(self) -> int:
        """Number of learned atoms (the exact ones follow them in :meth:`atoms` and the logits)."""
        return int(self.atom_logits.shape[0])

    def exact_index(self, name: str) -> int:
        """Index in :meth:`atoms` (and the logits) of the exact atom ``name``."""
        return self.n_learned + self.exact_names.index(name)

    def config(self) -> dict[str, Any]:
        """The shape a file's metadata records (see :func:`build_estimator`)."""
        cfg = {"atoms": self.n_learned, "width": self.width, "arch": self.arch, "exact": self.exact}
        return {**cfg, "centre_head": True} if self.centre_head else cfg


def noise_from_u(u: Tensor) -> Tensor:
    """σ (0–1 scale) from the predicted u = log(255·σ + ½)."""
    return ((torch.exp(u) - NOISE_OFFSET) / 255.0).clamp_min(0.0)


def u_from_noise(sigma: Tensor) -> Tensor:
    """The regression target u = log(255·σ + ½)."""
    return torch.log(255.0 * sigma + NOISE_OFFSET)


# --- loading and estimating -----------------------------------------------------------------------
def build_estimator(meta: dict[str, Any]) -> KernelEstimator:
    """An estimator shaped as the file's metadata says."""
    cfg = meta.get("estimator", {})
    return KernelEstimator(atoms=int(cfg.get("atoms", 48)), width=int(cfg.get("width", 32)),
                           arch=int(cfg.get("arch", 1)), exact=cfg.get("exact"),
                           centre_head=bool(cfg.get("centre_head", False)))


def load_estimator(path: str | Path | None = None) -> KernelEstimator:
    """The bundled estimator (via the weights manifest) or the one in ``path``, in eval mode."""
    from ..io.checkpoint import load_checkpoint

    if path is None:
        from ..io.weights import resolve_model

        path = resolve_model(ESTIMATOR_NAME)
    tensors, meta = load_checkpoint(path)
    net = build_estimator(meta)
    net.load_state_dict({k: v.float() for k, v in tensors.items()})
    net.width_scale = {int(s): float(c) for s, c in meta.get("estimator", {}).get("width_scale", {}).items()}
    return net.eval()


def _centre_crop(y: Tensor, side: int = MAX_SIDE) -> Tensor:
    h, w = y.shape[-2:]
    top, left = max(0, (h - side) // 2), max(0, (w - side) // 2)
    return y[..., top : top + side, left : left + side]


#: Retrieval weight above which ``--kernel auto`` takes an exact atom (a bundled kernel, plain decimation or PIL's
#: bicubic) as it is instead of the blended estimate (see :func:`kernel_policy`). Only estimators with exact
#: atoms snap; the shipped one has none. For the exact-atom estimator of docs/SR_AUTO.md, 0.7 gave the best mean
#: on held-out training images (``scripts/sr_auto_tune.py --snaps``; 0.5 and 0.6 lowered the worst family).
SNAP_P = 0.7


def _predict(net: KernelEstimator, y: Tensor, scale: int) -> tuple[Tensor, Tensor, Tensor]:
    """(dictionary logits (B, D), kernels (B, 25, 25), noise σ (B,)) of LR images ``y`` (B, C, h, w), on the
    CPU in float32; each image is seen through its centred :data:`MAX_SIDE` crop."""
    p = next(net.parameters())
    z = _centre_crop(luma(y.to(p.dtype).to(p.device)))
    with torch.no_grad():
        logits, u, centre = net.predict(z, scale)
        ks = predicted_kernels(net, logits, centre, scale)
    return logits.float().cpu(), ks, noise_from_u(u).float().cpu()


def predicted_kernels(net: KernelEstimator, logits: Tensor, centre: Tensor | None, scale: int) -> Tensor:
    """The kernels (B, 25, 25), float32 on the CPU, of the estimator's outputs: the retrieved shapes with the file's
    width calibration, moved to the centre head's centre of mass (:func:`recentred`) when there is one.
    Differentiable in ``logits`` and ``centre`` (an estimator trained through the restorer; :func:`_predict` runs it
    without gradients)."""
    ks = net.kernel(logits).float().cpu()
    ks = torch.stack([scaled_kernel(k, net.width_scale.get(scale, 1.0)) for k in ks])
    if centre is None:
        return ks
    kd = _centred(ks.double())
    return shift_kernels(kd, centre.double().cpu() - centroids(kd)).float()


def estimate_batch(net: KernelEstimator, y: Tensor, scale: int) -> tuple[Tensor, Tensor]:
    """Kernels (B, 25, 25) and noise σ (B,) of a batch of LR images ``y`` (B, C, h, w) (no snapping)."""
    _, ks, noise = _predict(net, y, scale)
    return ks, noise


#: The dihedral views of an LR image: (transpose, flip rows, flip columns); the identity and the transpose first,
#: as they keep the image's grid (see :func:`_predict_views`). ``estimate(views=n)`` reads the first n.
VIEWS = ((False, False, False), (True, False, False), (False, False, True), (True, False, True),
         (False, True, False), (True, True, False), (False, True, True), (True, True, True))
#: Views of the LR image ``restore`` and ``bench`` estimate over (:func:`estimate`). 4 views with the keep set by
#: their spread (:data:`AUTO_SPREAD` (0.045, 0.075, 0.9, 0.75)) raised the mean gain over bicubic on held-out images
#: (+0.425 → +0.467 dB) but put 10 more of 504 cases under it, which its pre-registered rule forbids
#: (docs/logs/sr-views-prereg.md): not shipped; ``scripts/sr_auto_tune.py --views 4 --spread-rules …`` keeps it.
AUTO_VIEWS = 1
#: Views of the LR image a restore on a named grid (``--grid centre`` / ``top-left``) averages the kernel's shape
#: over (:func:`estimate` with ``centre``): with the centre fixed by the grid, flipped views are as good as the
#: image's own. Checked by a rule written first (docs/logs/sr-grid-views-prereg.md) on 40 held-out images: resizer
#: inputs under ``centre`` +0.872 → +0.901 dB over bicubic (14 → 13 under), slicing-made ones under ``top-left``
#: +0.713 → +0.705 (44 → 43 under); 2.7–5.9 % of the SR forward's time.
GRID_VIEWS = 8


def _view(y: Tensor, view: tuple[bool, bool, bool]) -> Tensor:
    t, fr, fc = view
    y = y.transpose(-1, -2) if t else y
    dims = [d for d, f in ((-2, fr), (-1, fc)) if f]
    return (y.flip(dims) if dims else y).contiguous()


def _shape_from_view(k: Tensor, view: tuple[bool, bool, bool]) -> Tensor:
    """The kernel shape of an LR image from the kernel estimated on one of its views (flips and transposes undone).

    Only the shape carries over: flipping y = (x ⊛ k)↓s along an axis gives (x′ ⊛ k′)↓s with k′ the flipped k
    moved by −(s − 1) px (the block's first pixel becomes its last), a grid the estimator's training never shows, so
    a flipped view's centre of mass says nothing; :func:`_predict_views` takes the centre from the LR grid when it is
    known, else from the unflipped views."""
    t, fr, fc = view
    dims = [d for d, f in ((-2, fr), (-1, fc)) if f]
    k = k.flip(dims) if dims else k
    return k.t().contiguous() if t else k


def _predict_views(net: KernelEstimator, y: Tensor, scale: int, n: int,
                   centre: tuple[float, float] | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`_predict` of one image (1, C, h, w) over its first ``n`` :data:`VIEWS`: (logits (n, D), kernels
    (n, 25, 25) as shapes of the image's own kernel, each moved to ``centre`` or, None, to the mean centre of mass
    of the unflipped views, noise (n,)). Views of one shape run as one batch."""
    views = VIEWS[:n]
    outs: dict[tuple[bool, bool, bool], tuple[Tensor, Tensor, Tensor]] = {}
    for t in (False, True):
        group = [v for v in views if v[0] == t]
        if group:
            logits, ks, noise = _predict(net, torch.cat([_view(y, v) for v in group]), scale)
            outs.update({v: (logits[i], _shape_from_view(ks[i], v), noise[i]) for i, v in enumerate(group)})
    logits, shapes, noise = (torch.stack([outs[v][j] for v in views]) for j in range(3))
    if n > 1:  # one view: the estimate as it is
        if centre is None:
            kept = [i for i, v in enumerate(views) if not (v[1] or v[2])]
            cy, cx = centroids(shapes[kept].double()).mean(0).tolist()
            centre = (cy, cx)
        shapes = torch.stack([recentred(k, centre) for k in shapes])
    return logits, shapes, noise


def estimate(net: KernelEstimator, y: Tensor, scale: int, snap_p: float = SNAP_P,
             views: int | None = None, centre: tuple[float, float] | None = None,
             judge: bool = True) -> dict[str, Any]:
    """Kernel and noise of one LR image ``y`` (C, h, w) or (1, C, h, w) in [0, 1].

    Returns ``kernel`` (25, 25), ``noise`` (σ on the 0–1 scale), ``width`` (σ_eff in HR pixels),
    ``nearest`` (closest bundled kernel name), ``nearest_error`` and ``snapped``. For an estimator with exact
    atoms, ``exact`` names the exact atom with the largest retrieval weight and ``exact_p`` gives that weight;
    when it is ≥ ``snap_p`` the kernel *is* that atom (``snapped``), else the retrieved blend.

    Over ``views`` > 1 of :data:`VIEWS` the kernel (and noise, and retrieval weights) is the mean over the unflipped
    views, and ``spread`` the views' disagreement: the RMS distance of their shapes to the mean shape, relative to
    its norm (0 for one view; with ``judge``, a one-view estimate in :data:`AUTO_SURE`'s band gets the spread of its
    8 views, which costs 8 more estimator passes: pass False where the spread is not used, as for a given kernel). A
    large spread marks an estimate to trust less, a small one in that band more (:func:`auto_keep`). ``centre``: the
    kernel's centre of mass when the LR grid is known (:func:`grid_centre`); every view's shape is placed there and
    the flipped views count too (they lose only the centre, see :func:`_shape_from_view`). ``views`` None:
    :data:`GRID_VIEWS` with a ``centre``, else :data:`AUTO_VIEWS`.
    """
    if views is None:
        views = AUTO_VIEWS if centre is None else GRID_VIEWS
    logits, ks, noise = _predict_views(net, y.unsqueeze(0) if y.dim() == 3 else y, scale, views, centre)
    spread = float(((ks - ks.mean(0)) ** 2).sum((-2, -1)).mean().sqrt() / ks.mean(0).norm())
    pooled = [i for i, v in enumerate(VIEWS[:views]) if centre is not None or not (v[1] or v[2])]
    k, w = ks[pooled].mean(0), torch.softmax(logits[pooled], dim=-1).mean(0)
    k, noise = (k / k.sum() if len(pooled) > 1 else k), noise[pooled].mean(0, keepdim=True)
    extra: dict[str, Any] = {"snapped": False}
    if net.exact_names:
        i = int(w[net.n_learned:].argmax())
        extra.update(exact=net.exact_names[i], exact_p=float(w[net.n_learned + i]))
        if extra["exact_p"] >= snap_p:
            k, extra["snapped"] = net.fixed[i].cpu().clone(), True
    width = kernel_width(k)
    if judge and views == 1 and sure_band(width):  # is the one view's estimate sure? its 8 views' spread (AUTO_SURE)
        spread = estimate(net, y, scale, snap_p, views=len(VIEWS))["spread"]
    name, err = nearest_bundled(k)
    return {"kernel": k, "noise": float(noise[0]), "width": width, "nearest": name,
            "nearest_error": err, "spread": spread, **extra}


__all__ = ["AUTO_POLICIES", "ESTIMATOR_NAME", "FAMILIES", "KernelEstimator", "auto_keep", "auto_kernel",
           "centre_expanded", "centroids", "data_weight_policy", "default_grid", "degrade_valid", "delta_kernel",
           "disagreement", "estimate", "estimate_batch", "gaussian_kernel", "grid_shift", "kernel_error",
           "kernel_policy", "kernel_width", "load_estimator", "motion_kernel", "nearest_bundled", "noise_data_weight",
           "pil_bicubic_kernel", "recentred", "retrieve_kernel", "sample_kernel", "scaled_kernel", "shift_kernels",
           "softened_kernel", "widened_kernel"]


# --- using the estimate ---------------------------------------------------------------------------
#: |log width ratio| above which a given kernel and the estimate "disagree strongly" (a factor 1.4: a kernel
#: 1.7× too wide already costs ~9 dB on a photo that was only downscaled).
MISMATCH_LOG_RATIO = math.log(1.4)
#: Weight the given kernel keeps when it is much wider than the estimate (the rest goes to the estimate).
#: On held-out Train400 images (×3, --kernel K5 on unblurred, PIL-downscaled and K1 inputs) less weight was
#: always better (keep 0.5 / 0.25 / 0: 22.2–23.8 / 23.6–24.7 / 24.3–24.9 dB); a quarter keeps the user's kernel
#: in the result while removing most of its ringing.
SOFTEN_KEEP = 0.25


def softened_kernel(k_given: Tensor, k_est: Tensor, keep: float = SOFTEN_KEEP) -> Tensor:
    """k = keep·k_given + (1 − keep)·k̂: its OTF stays ≥ (1 − keep)·|OTF(k̂)|, so the data step never
    inverts the given kernel's deep spectral nulls (a too-wide kernel softens instead of ringing)."""
    a, b = _centred(k_given.float()), _centred(k_est.float())
    return keep * a + (1 - keep) * b


#: Narrowest kernel width (σ_eff, HR px) the SR networks are given: they were trained on blurred inputs,
#: and an exact-interpolation data step (a delta kernel) leaves aliasing they do not remove.
MIN_WIDTH = 0.5


def widened_kernel(k: Tensor, min_width: float = MIN_WIDTH) -> Tensor:
    """k ⊛ g_τ with τ² = w_min² − σ_eff(k)² when k is narrower than ``min_width`` (widths add in quadrature)."""
    w = kernel_width(k)
    if w >= min_width:
        return k
    tau = math.sqrt(min_width**2 - w**2)
    g = gaussian_kernel(tau, tau, 0.0, size=9)
    out = F.conv2d(_centred(k.float())[None, None], g.flip(-2, -1)[None], padding=4)[0, 0]
    return out / out.sum()


#: Weight the estimated kernel keeps under ``--kernel auto``; the rest goes to the narrowest kernel (a
#: widened delta). The estimate is not exact, and a kernel too wide rings while one too narrow only softens:
#: the mix keeps the data step from inverting whatever the estimate gets wrong. Chosen on held-out
#: training images (the last Train400 images), never on a test set: ``scripts/sr_auto_tune.py`` with the
#: broadly trained sr-lorun9, keep 0.5 / 0.75 / 1.0 (min width 0.5): worst family +0.22 / +0.30 / +0.28 dB
#: over bicubic, mean +0.34 / +0.52 / +0.52 dB.
AUTO_KEEP = 0.75

#: Wide estimates keep less: (from, to, keep) — the weight falls linearly from AUTO_KEEP at ``from`` px
#: (σ_eff of the estimate, HR pixels) to ``keep`` at ``to`` px and beyond. Wide estimates are the least
#: reliable in shape (a long motion blur's direction and extent are hard to read from the LR image) and the
#: costliest when wrong: restored with a wrong wide shape, an image falls 2–3 dB under bicubic. Chosen on the
#: held-out Train400 images, never a test set (docs/SR_AUTO.md, "How auto uses the estimate").
AUTO_WIDE = (3.0, 3.5, 0.25)

#: The data step's weight γ under ``--kernel auto`` (SRBlur ``data_weight``: μ → γμ, the step leans on the
#: denoiser's estimate) for an estimated noise σ̂ (/255): (from, to, γ) — 1 up to ``from``, rising linearly
#: to γ at ``to`` and beyond. The SR networks' learned stage weights do not see the noise level; a noisy
#: image restored at γ = 1 keeps too much of its noise. Chosen on held-out Train400 images (docs/SR_AUTO.md).
AUTO_NOISE_WEIGHT = (1.0, 4.0, 4.0)

#: The same for an explicit ``--kernel``, from a higher noise on: with the right kernel the networks cope with
#: moderate noise (γ > 1 cost up to 0.1 dB at 2.55–5/255 on held-out images) and gain at heavy noise
#: (+0.38 dB at 7.5/255, +1.09 at 10/255; docs/SR_AUTO.md).
GIVEN_NOISE_WEIGHT = (3.5, 5.5, 4.0)

#: Under ``--kernel auto`` the estimate is moved to this multiple of its own centre of mass. The centre head,
#: trained with a squared error between the two LR grids met in practice (top-left decimation, and resizers'
#: centred grid, (s − 1)/2 px off), falls short of the centred grid by 20–40 %; 1.25 lifted the worst family
#: (PIL) on held-out Train400 images (docs/SR_AUTO.md).
AUTO_CENTRE_GAIN = 1.25


def centroids(k: Tensor) -> Tensor:
    """(B, 2) centres of mass (row, col offsets from the centre tap) of kernels (B, n, n); differentiable."""
    r = torch.arange(k.shape[-1], dtype=k.dtype, device=k.device) - k.shape[-1] // 2
    total = k.sum((-2, -1))
    return torch.stack([(k.sum(-1) * r).sum(-1), (k.sum(-2) * r).sum(-1)], dim=1) / total[:, None]


def centroid(k: Tensor) -> tuple[float, float]:
    """(row, col) centre of mass of ``k`` relative to its centre tap."""
    cy, cx = centroids(k.double()[None])[0].tolist()
    return cy, cx


def shift_kernels(k: Tensor, d: Tensor) -> Tensor:
    """Kernels (B, n, n) moved by d (B, 2) px (row, col; bilinear, zeros outside), renormalised to sum 1;
    differentiable in ``k``."""
    n = k.shape[-1]
    r = (torch.arange(n, dtype=k.dtype, device=k.device) - n // 2) / (n // 2)
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    d = d.to(k.dtype) / (n // 2)
    grid = torch.stack([xx[None] - d[:, 1, None, None], yy[None] - d[:, 0, None, None]], -1)
    out = F.grid_sample(k[:, None], grid, mode="bilinear", padding_mode="zeros", align_corners=True)[:, 0]
    return out / out.sum((-2, -1), keepdim=True).clamp_min(1e-8)


def point_kernel(dy: float, dx: float, size: int = KSIZE) -> Tensor:
    """A unit mass at sub-pixel offset (dy, dx) from the centre tap, split bilinearly over four taps."""
    k = torch.zeros(size, size)
    c = size // 2
    y0, x0 = math.floor(dy), math.floor(dx)
    fy, fx = dy - y0, dx - x0
    for oy, wy in ((0, 1 - fy), (1, fy)):
        for ox, wx in ((0, 1 - fx), (1, fx)):
            k[c + y0 + oy, c + x0 + ox] += wy * wx
    return k


def recentred(k: Tensor, centre: tuple[float, float]) -> Tensor:
    """``k`` moved (bilinear sub-pixel shift) so that its centre of mass sits at ``centre`` (row, col offsets
    from the centre tap), on the 25 × 25 grid.

    From the LR image alone a kernel is known only up to such a shift: moving k moves the reconstruction with
    it (a registration, not a change of content), so no LR-only estimate can tell where the true kernel's
    centre lies. The bench uses this to score an estimate's shape apart from that registration."""
    k = _centred(k.double())[None]
    return shift_kernels(k, torch.tensor([centre], dtype=k.dtype) - centroids(k))[0].float()


def grid_shift(k: Tensor) -> tuple[float, float]:
    """Where LR pixel (0, 0) of y = (x ⊛ k)↓s sits on the HR grid: minus k's centre of mass (see
    :func:`~lorun_cli.physics.sr.bicubic_on_grid`)."""
    cy, cx = centroid(k)
    return -cy, -cx


#: The estimate's weight in :func:`auto_kernel` by how well the views agree (``estimate``'s ``spread``), as
#: (from spread, to spread, keep where they agree, keep where they do not); None: :data:`AUTO_KEEP` for every spread.
AUTO_SPREAD: tuple[float, float, float, float] | None = None

#: A sure mid-width estimate keeps its whole shape: (from width, to width, spread, keep) — an estimate σ_eff ∈ [from,
#: to) px wide whose 8 views agree (``estimate``'s ``spread`` ≤ ``spread``) gets ``keep`` instead of :data:`AUTO_KEEP`.
#: On held-out Train400 images such estimates were mostly Gaussian blurs estimated well, which the blend softens by
#: 0.2–1.4 dB: (1.8, 2.8, 0.065, 1.0), chosen on images 0–19, raised images 20–39 from +0.406 to +0.463 dB over
#: bicubic, but on the CAVE scenes the views agreed on wrong estimates as often (+0.298 → +0.261, 5 more cases under
#: bicubic), so its pre-registered check failed (docs/logs/sr-sure-prereg.md, sr-sure-check.txt). None: off (shipped).
#: Read at call time (``scripts/sr_auto_tune.py --sure-rules`` and ``sr_grid_check.py`` switch it).
AUTO_SURE: tuple[float, float, float, float] | None = None
#: The rule that check measured.
SURE_CHECKED = (1.8, 2.8, 0.065, 1.0)


def sure_band(width: float) -> bool:
    """Whether an estimate ``width`` px wide falls in :data:`AUTO_SURE`'s band (where its views' spread decides)."""
    return AUTO_SURE is not None and AUTO_SURE[0] <= width < AUTO_SURE[1]


def _ramp(x: float, lo: float, hi: float, start: float, end: float) -> float:
    """``start`` up to ``lo``, ``end`` from ``hi`` on, linear in between."""
    if x <= lo:
        return start
    return end if x >= hi else start + (end - start) * (x - lo) / (hi - lo)


def auto_keep(width: float, keep: float = AUTO_KEEP, wide: tuple[float, float, float] | None = AUTO_WIDE,
              spread: float | None = None,
              spread_rule: tuple[float, float, float, float] | None = AUTO_SPREAD) -> float:
    """The estimate's weight in :func:`auto_kernel` for an estimate ``width`` px wide: ``keep`` (or, given the
    views' ``spread`` and a ``spread_rule``, the rule's keep for it; a sure mid-width estimate, :data:`AUTO_SURE`'s),
    falling linearly to ``wide[2]`` between ``wide[0]`` and ``wide[1]`` px (``wide`` None: at every width)."""
    if spread is not None and spread_rule is not None:
        lo, hi, sure, unsure = spread_rule
        keep = _ramp(spread, lo, hi, sure, unsure)
    sure = AUTO_SURE
    if sure is not None and spread is not None and sure_band(width) and 0 < spread <= sure[2]:
        keep = sure[3]  # (a spread of 0 is a single view's: it says nothing)
    if wide is None:
        return keep
    lo, hi, k_wide = wide
    return _ramp(width, lo, hi, keep, min(k_wide, keep))


def auto_kernel(k_est: Tensor, keep: float = AUTO_KEEP, min_width: float = MIN_WIDTH,
                wide: tuple[float, float, float] | None = AUTO_WIDE, spread: float | None = None,
                spread_rule: tuple[float, float, float, float] | None = AUTO_SPREAD) -> Tensor:
    """The kernel ``--kernel auto`` restores with: a·widened(k̂) + (1 − a)·widened(δ at k̂'s centroid),
    a = :func:`auto_keep` of k̂'s width (and of the views' ``spread``).

    The narrow part sits where the estimate's mass is, so the mix keeps the estimate's shift (PIL's
    bicubic downscaling, for one, is (s − 1)/2 pixels off the top-left grid)."""
    dy, dx = centroid(k_est)
    a = auto_keep(kernel_width(k_est), keep, wide, spread, spread_rule)
    return softened_kernel(widened_kernel(k_est, min_width), widened_kernel(point_kernel(dy, dx), min_width), a)


def noise_data_weight(noise: float, rule: tuple[float, float, float] | None = AUTO_NOISE_WEIGHT) -> float:
    """γ ≥ 1 for the data step (SRBlur ``data_weight``) given an estimated noise σ (0–1 scale); ``rule`` None: 1."""
    if rule is None:
        return 1.0
    lo, hi, top = rule
    return _ramp(255.0 * noise, lo, hi, 1.0, top)


#: A JPEG input's data-step weight from the mean step of its file's luma quantisation table: γ = min(cap,
#: 1 + max(0, step − start) / slope), as (start, slope, cap). The estimated noise reads about 0 on JPEG inputs (the
#: error is not white), yet weighting the data step helped as the tables coarsen, from a coarser table on when the
#: true kernel is given (held-out Train400 images, ×2/×3/×4; IJG quality 95 / 90 / 75 / 50 / 30 have steps
#: 5.8 / 11.5 / 29 / 58 / 96; docs/SR_AUTO.md).
JPEG_WEIGHT_AUTO = (10.0, 2.5, 32.0)
JPEG_WEIGHT_GIVEN = (30.0, 2.0, 32.0)


def jpeg_data_weight(step: float | None, explicit: bool = False) -> float:
    """γ ≥ 1 for the data step of a JPEG input whose luma tables have mean step ``step`` (None: not a JPEG, 1);
    ``explicit``: the kernel was given (:data:`JPEG_WEIGHT_GIVEN`), else estimated (:data:`JPEG_WEIGHT_AUTO`)."""
    if step is None:
        return 1.0
    start, slope, cap = JPEG_WEIGHT_GIVEN if explicit else JPEG_WEIGHT_AUTO
    return _ramp(step, start, start + slope * (cap - 1.0), 1.0, cap)


def data_weight_policy(noise: float, explicit: bool) -> float:
    """The data-step weight ``restore`` uses for an estimated noise σ: :data:`AUTO_NOISE_WEIGHT` under
    ``--kernel auto``, :data:`GIVEN_NOISE_WEIGHT` with an explicit kernel."""
    return noise_data_weight(noise, GIVEN_NOISE_WEIGHT if explicit else AUTO_NOISE_WEIGHT)


def centre_expanded(k: Tensor, gain: float = AUTO_CENTRE_GAIN) -> Tensor:
    """``k`` moved so that its centre of mass sits at ``gain`` × its own (offsets from the centre tap)."""
    if gain == 1.0:
        return k
    cy, cx = centroid(k)
    return recentred(k, (gain * cy, gain * cx))


#: How ``--kernel auto`` turns the estimate into the data step's kernel: ``blend`` (:func:`auto_kernel` of the
#: centre-expanded estimate: the rules tuned for networks trained with true kernels) or ``raw`` (the estimate
#: itself, only widened to :data:`MIN_WIDTH`: for adapters trained on the estimator's own estimates, which learn
#: how far to trust them). A model file trained on estimates names its policy (``auto_policy`` in its metadata).
AUTO_POLICIES = ("blend", "raw")


def grid_centre(grid: str, scale: int) -> tuple[float, float] | None:
    """The kernel centre of mass (row, col offsets from the centre tap) that puts the LR pixels on ``grid``:
    ``centre`` −(s − 1)/2 px, the grid resizers use (Pillow, OpenCV, ImageMagick, browsers: each LR pixel the
    centre of its s × s block); ``top-left`` 0, plain decimation y = (k ∗ x)↓s as in USRNet's benchmarks; ``auto``
    None (the estimate's own centre, expanded by :data:`AUTO_CENTRE_GAIN`)."""
    if grid == "auto":
        return None
    if grid == "centre":
        return (-(scale - 1) / 2.0, -(scale - 1) / 2.0)
    if grid == "top-left":
        return (0.0, 0.0)
    raise ValueError(f"unknown grid {grid!r}; use one of {', '.join(SR_GRIDS)}")


def default_grid(simulated: bool) -> str:
    """The ``--grid`` a restore assumes when none is given: ``top-left`` under ``--simulate`` (lorun's own
    degradation decimates so, :meth:`~lorun_cli.physics.sr.SRBlur.A`), ``centre`` for a file: images are made
    smaller by resizers, and decimation by array slicing is a benchmark convention (``--grid top-left`` says so).
    Checked on held-out images against ``auto`` by a rule written first (docs/logs/sr-grid-prereg.md)."""
    return "top-left" if simulated else "centre"


def kernel_policy(k_given: Tensor | None, k_est: Tensor, snapped: bool = False,
                  centre_gain: float = AUTO_CENTRE_GAIN, policy: str | None = None,
                  centre: tuple[float, float] | None = None, spread: float | None = None) -> tuple[Tensor, bool]:
    """(kernel to use, strong disagreement?) for an explicit kernel (or None for auto) and the estimate.

    Auto uses :func:`auto_kernel` of the estimate moved to ``centre_gain`` × its centre of mass
    (:func:`centre_expanded`; ``spread``: how well the estimate's views agree, :func:`auto_keep`), or, when the
    estimate is a ``snapped`` exact atom (see :func:`estimate`) or the ``policy`` is ``raw``, the estimate itself
    (only widened to the minimum width); ``policy`` None (a model not trained on estimates, ``DUN.auto_policy``)
    means ``blend``. An explicit kernel is used as given unless it is much wider than the estimate (the case that
    rings); then it is softened toward the (widened) estimate. ``centre`` (:func:`grid_centre`): auto's estimate
    is first moved there, not expanded.
    """
    if policy is not None and policy not in AUTO_POLICIES:
        raise ValueError(f"unknown auto-kernel policy {policy!r}; use one of {', '.join(AUTO_POLICIES)}")
    if k_given is None and centre is not None:
        k_est, centre_gain = recentred(k_est, centre), 1.0
    if k_given is None:
        if snapped or policy == "raw":
            return widened_kernel(k_est), False
        return auto_kernel(centre_expanded(k_est, centre_gain), spread=spread), False
    if disagreement(k_given, k_est) <= MISMATCH_LOG_RATIO:
        return k_given, False
    too_wide = kernel_width(k_given) > kernel_width(k_est)
    return (softened_kernel(k_given, widened_kernel(k_est)) if too_wide else k_given), True
