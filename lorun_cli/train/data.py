"""Training patches for the CS, SR and CASSI tasks, and the random SR degradations of a training batch.

The images come from :mod:`lorun_cli.io.datasets` (data root layout, validation splits); every tensor is float32
in [0, 1].
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from PIL import Image

from lorun_cli.errors import LorunError, UsageError
from lorun_cli.facts import DEFAULT_NOISE, SR_SCALES, TASKS, TRAIN_PATCH, WAVELENGTHS_28
from lorun_cli.io.datasets import (
    CASSI_VAL_REGIONS,
    CAVE_BAND_IDS,
    CS_VAL_NAMES,
    SR_VAL_NAMES,
    Rect,
    _cave_scenes,
    _list_images,
    read_cave_scene,
    read_gray,
    read_rgb,
    require_dir,
    rgb_to_luma,
)
from lorun_cli.io.images import spectrum_to_rgb, srgb_to_linear

Tensor = torch.Tensor


# ------------------------------------------------------------------------------------ patch sampler
class PatchSampler:
    """Random square patches with random flips / 90-degree rotations from images held in memory.

    All images share one channel-last float32 buffer; a batch is a single gather, and the 8 dihedral
    transforms are applied to the gather coordinates. Images are picked with probability proportional to
    their number of valid patch positions. ``exclude`` maps an image index to rectangles that no patch
    may overlap (held-out validation regions). Deterministic for a given ``torch.Generator``.
    """

    def __init__(self, images: Sequence[Tensor], patch: int, augment: bool = True,
                 exclude: Mapping[int, Sequence[Rect]] | None = None,
                 device: torch.device | str | None = None) -> None:
        if not images:
            raise ValueError("PatchSampler needs at least one image")
        c = images[0].shape[0]
        shapes = [(int(im.shape[-2]), int(im.shape[-1])) for im in images]
        buffer = torch.empty(sum(h * w for h, w in shapes), c, dtype=torch.float32, device=device)
        off = 0
        for im, (h, w) in zip(images, shapes):
            if im.dim() != 3 or im.shape[0] != c:
                raise ValueError(f"all images must be (C={c}, H, W); got {tuple(im.shape)}")
            buffer[off:off + h * w] = im.permute(1, 2, 0).reshape(h * w, c)
            off += h * w
        self._setup(buffer, shapes, patch, augment, exclude)

    @classmethod
    def from_buffer(cls, buffer: Tensor, shapes: Sequence[tuple[int, int]], patch: int, augment: bool = True,
                    exclude: Mapping[int, Sequence[Rect]] | None = None) -> PatchSampler:
        """Build from a filled channel-last buffer ``(sum(H*W), C)`` and the image shapes."""
        obj = cls.__new__(cls)
        obj._setup(buffer, list(shapes), patch, augment, exclude)
        return obj

    def _setup(self, buffer: Tensor, shapes: list[tuple[int, int]], patch: int, augment: bool,
               exclude: Mapping[int, Sequence[Rect]] | None) -> None:
        if buffer.shape[0] != sum(h * w for h, w in shapes):
            raise ValueError("buffer size does not match the image shapes")
        self.buffer = buffer
        self.channels = int(buffer.shape[1])
        self.shapes = torch.tensor(shapes, dtype=torch.int64).view(-1, 2)
        sizes = self.shapes[:, 0] * self.shapes[:, 1]
        self.offsets = torch.cumsum(sizes, 0) - sizes
        self.patch = int(patch)
        self.augment = augment
        rects = [(i, *r) for i, rs in (exclude or {}).items() for r in rs]
        self._rects = torch.tensor(rects, dtype=torch.int64).view(-1, 5)
        self._weights: dict[int, Tensor] = {}
        self._allowed: dict[int, dict[int, Tensor]] = {}

    def _overlaps(self, idx: Tensor, y0: Tensor, x0: Tensor, p: int) -> Tensor:
        """Which patches ``(idx, y0, x0, p)`` touch an excluded rectangle."""
        if self._rects.numel() == 0:
            return torch.zeros_like(idx, dtype=torch.bool)
        r = self._rects
        hit = ((idx[:, None] == r[None, :, 0])
               & (y0[:, None] < r[None, :, 3]) & (y0[:, None] + p > r[None, :, 1])
               & (x0[:, None] < r[None, :, 4]) & (x0[:, None] + p > r[None, :, 2]))
        return hit.any(dim=1)

    def _image_weights(self, p: int) -> Tensor:
        """Number of allowed positions of a ``p x p`` patch per image (held-out regions counted exactly).

        For images with held-out regions the allowed top-left positions (flat ``y0 * nx + x0``) are kept
        so that sampling picks among them directly.
        """
        if p not in self._weights:
            ny = (self.shapes[:, 0] - p + 1).clamp(min=0)
            nx = (self.shapes[:, 1] - p + 1).clamp(min=0)
            wts = (ny * nx).double()
            allowed: dict[int, Tensor] = {}
            for i in self._rects[:, 0].unique().tolist():
                if wts[i] == 0:
                    continue
                yy, xx = torch.meshgrid(torch.arange(int(ny[i])), torch.arange(int(nx[i])), indexing="ij")
                ii = torch.full_like(yy, i).flatten()
                ok = ~self._overlaps(ii, yy.flatten(), xx.flatten(), p)
                allowed[i] = torch.nonzero(ok).flatten()
                wts[i] = float(allowed[i].numel())
            if wts.sum() == 0:
                raise ValueError(f"no image has room for a {p}x{p} patch outside the held-out regions")
            self._weights[p] = wts
            self._allowed[p] = allowed
        return self._weights[p]

    def sample(self, batch_size: int, generator: torch.Generator | None = None,
               patch: int | None = None) -> Tensor:
        """A batch ``(batch_size, C, p, p)`` of random patches on the buffer's device."""
        p = int(patch or self.patch)
        n = int(batch_size)
        idx = torch.multinomial(self._image_weights(p), n, replacement=True, generator=generator)
        ny = self.shapes[idx, 0] - p + 1
        nx = self.shapes[idx, 1] - p + 1
        rnd = torch.rand(n, 2, generator=generator, dtype=torch.float64)
        y0 = torch.minimum((rnd[:, 0] * ny).long(), ny - 1)
        x0 = torch.minimum((rnd[:, 1] * nx).long(), nx - 1)
        for i, pos in self._allowed[p].items():  # uniform over the allowed positions of held-out images
            sel = idx == i
            if sel.any():
                k = torch.minimum((rnd[sel, 0] * pos.numel()).long(), torch.tensor(pos.numel() - 1))
                y0[sel] = pos[k] // nx[sel]
                x0[sel] = pos[k] % nx[sel]
        r = torch.arange(p)
        u = r.view(1, p, 1).expand(n, p, p)
        v = r.view(1, 1, p).expand(n, p, p)
        if self.augment:
            t = torch.randint(0, 8, (n,), generator=generator).view(n, 1, 1)
            tr = (t & 4).bool()
            u, v = torch.where(tr, v, u), torch.where(tr, u, v)
            u = torch.where((t & 1).bool(), p - 1 - u, u)
            v = torch.where((t & 2).bool(), p - 1 - v, v)
        w = self.shapes[idx, 1].view(n, 1, 1)
        flat = self.offsets[idx].view(n, 1, 1) + (y0.view(n, 1, 1) + u) * w + x0.view(n, 1, 1) + v
        out = self.buffer[flat.to(self.buffer.device)]  # (n, p, p, C)
        return out.permute(0, 3, 1, 2).contiguous()


# ------------------------------------------------------------------------------------ training sets
def t91_train_files(root: str | os.PathLike) -> list[Path]:
    """The T91 training photos, minus the SR validation images."""
    return [p for p in _list_images(require_dir(root, "train/t91")) if p.name not in SR_VAL_NAMES]


def cs_train_images(root: str | os.PathLike) -> list[Tensor]:
    """CS training images: Train400 + T91 luminance, minus all validation images, each ``(1, H, W)``."""
    bsd400 = [p for p in _list_images(require_dir(root, "train/bsd400")) if p.name not in CS_VAL_NAMES]
    t91 = t91_train_files(root)
    return [read_gray(p) for p in bsd400] + [rgb_to_luma(read_rgb(p)) for p in t91]


def cs_train_sampler(root: str | os.PathLike, patch: int = TRAIN_PATCH["cs"], augment: bool = True,
                     device: torch.device | str | None = None) -> PatchSampler:
    """Gray patches from Train400 + T91 luminance (never BSD68 / BSD100 / Set11)."""
    return PatchSampler(cs_train_images(root), patch, augment=augment, device=device)


def sr_train_sampler(root: str | os.PathLike, patch: int = TRAIN_PATCH["sr"], augment: bool = True,
                     device: torch.device | str | None = None) -> PatchSampler:
    """RGB HR patches from T91 (minus the validation images); ``patch`` must be a multiple of 12."""
    if patch % 12:
        raise UsageError(f"SR patch size must be a multiple of 12 (divisible by scales 2, 3, 4); got {patch}")
    files = t91_train_files(root)
    return PatchSampler([read_rgb(p) for p in files], patch, augment=augment, device=device)


class SpectralFromRGB:
    """CAVE patches, a ``share`` of them replaced by patches of RGB training images turned into 28-band cubes.

    An RGB patch is linearised (sRGB curve), mapped to spectra by the least-squares map (28 × 3) of one CAVE
    training scene, drawn per patch (:func:`rgb_spectral_maps`), and dimmed by a gain drawn from ``gain``
    (the CAVE training scenes average 0.14, from 0.06 to 0.28; linearised T91 photos 0.27): natural-image structure far
    beyond seven scenes, with spectra spanned by what those scenes' colours look like. Same ``sample``
    interface as :class:`PatchSampler`.
    """

    gain = (0.25, 1.0)

    def __init__(self, cave: PatchSampler, rgb: PatchSampler, maps: Tensor, share: float) -> None:
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"share must be in [0, 1], got {share}")
        self.cave, self.rgb, self.maps, self.share = cave, rgb, maps.to(cave.buffer.dtype), float(share)
        self.patch, self.channels = cave.patch, cave.channels

    def sample(self, batch_size: int, generator: torch.Generator | None = None,
               patch: int | None = None) -> Tensor:
        x = self.cave.sample(batch_size, generator, patch)
        pick = torch.rand(batch_size, generator=generator) < self.share
        n = int(pick.sum())
        if n:
            rgb = srgb_to_linear(self.rgb.sample(n, generator, patch))
            m = self.maps[torch.randint(len(self.maps), (n,), generator=generator)]
            lo, hi = self.gain
            m = m * (lo + (hi - lo) * torch.rand(n, 1, 1, generator=generator, dtype=m.dtype))
            x[pick.to(x.device)] = torch.einsum("nbc,nchw->nbhw", m.to(x.device), rgb.to(x.device)).clamp(0.0, 1.0)
        return x


def rgb_spectral_maps(buffer: Tensor, shapes: Sequence[tuple[int, int]], exclude: Mapping[int, Sequence[Rect]],
                      ridge: float = 1e-4) -> Tensor:
    """(S, 28, 3): per CAVE training scene, the ridge least-squares map from a pixel's linear sRGB
    (:func:`~lorun_cli.io.images.spectrum_to_rgb`) back to its spectrum, held-out regions left out."""
    to_rgb = spectrum_to_rgb(WAVELENGTHS_28, dtype=torch.float64)
    maps, off = [], 0
    for i, (h, w) in enumerate(shapes):
        keep = torch.ones(h, w, dtype=torch.bool)
        for y0, x0, y1, x1 in exclude.get(i, ()):
            keep[y0:y1, x0:x1] = False
        spec = buffer[off:off + h * w][keep.flatten()].double().T  # (28, N)
        rgb = to_rgb @ spec
        gram = rgb @ rgb.T
        reg = ridge * torch.trace(gram) / 3 * torch.eye(3, dtype=gram.dtype)
        maps.append(spec @ rgb.T @ torch.linalg.inv(gram + reg))
        off += h * w
    return torch.stack(maps).float()


def cassi_train_sampler(root: str | os.PathLike, patch: int = TRAIN_PATCH["cassi"], augment: bool = True,
                        device: torch.device | str | None = None, cache: bool | None = None,
                        rgb_share: float = 0.0) -> PatchSampler | SpectralFromRGB:
    """28-band patches from the CAVE training scenes; never overlapping :data:`CASSI_VAL_REGIONS`.

    ``rgb_share`` > 0: that share of patches comes from the RGB training images (T91) instead
    (:class:`SpectralFromRGB`)."""
    scenes = _cave_scenes(root, "train")
    shapes = []
    for s in scenes:
        with Image.open(s / f"{s.name}_{CAVE_BAND_IDS[0]:02d}.png") as im:
            shapes.append((im.size[1], im.size[0]))
    total = sum(h * w for h, w in shapes)
    buffer = torch.empty(total, len(WAVELENGTHS_28), dtype=torch.float32, device=device)
    off = 0
    exclude: dict[int, list[Rect]] = {}
    for i, (s, (h, w)) in enumerate(zip(scenes, shapes)):
        cube = read_cave_scene(s, cache=cache)
        if tuple(cube.shape[1:]) != (h, w):
            raise LorunError(f"CAVE scene '{s}' has bands of different sizes")
        buffer[off:off + h * w] = cube.permute(1, 2, 0).reshape(h * w, -1)
        off += h * w
        if s.name in CASSI_VAL_REGIONS:
            exclude[i] = [CASSI_VAL_REGIONS[s.name]]
    cave = PatchSampler.from_buffer(buffer, shapes, patch, augment=augment, exclude=exclude)
    if not rgb_share:
        return cave
    files = t91_train_files(root)
    rgb = PatchSampler([read_rgb(p) for p in files], patch, augment=augment, device=device)
    return SpectralFromRGB(cave, rgb, rgb_spectral_maps(buffer.cpu(), shapes, exclude), rgb_share)


def train_sampler(task: str, root: str | os.PathLike, patch: int | None = None, **kw) -> PatchSampler:
    """The training patch sampler of ``task`` (patch size :data:`~lorun_cli.facts.TRAIN_PATCH` by default)."""
    builders = {"cs": cs_train_sampler, "sr": sr_train_sampler, "cassi": cassi_train_sampler}
    if task not in builders:
        raise UsageError(f"unknown task '{task}'; choose one of {', '.join(TASKS)}")
    return builders[task](root, patch=patch or TRAIN_PATCH[task], **kw)


# ------------------------------------------------------------------------------------ SR degradations
def random_gaussian_kernels(n: int, generator: torch.Generator | None = None, size: int = 25,
                            std_range: tuple[float, float] = (0.6, 3.0)) -> Tensor:
    """``n`` random anisotropic Gaussian kernels ``(n, size, size)``, centred, summing to 1."""
    u = torch.rand(n, 3, generator=generator, dtype=torch.float64)
    lo, hi = std_range
    s1 = lo + (hi - lo) * u[:, 0]
    s2 = lo + (hi - lo) * u[:, 1]
    th = math.pi * u[:, 2]
    c, s = torch.cos(th), torch.sin(th)
    # inverse covariance R diag(1/s1^2, 1/s2^2) R^T
    a = c * c / s1**2 + s * s / s2**2
    b = c * s * (1 / s1**2 - 1 / s2**2)
    d = s * s / s1**2 + c * c / s2**2
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    q = a.view(-1, 1, 1) * xx**2 + 2 * b.view(-1, 1, 1) * xx * yy + d.view(-1, 1, 1) * yy**2
    k = torch.exp(-0.5 * q)
    return (k / k.sum(dim=(1, 2), keepdim=True)).float()


def _kernel_order(name: str) -> tuple[int, str]:
    """Sort "K2" before "K10"."""
    m = re.search(r"\d+", name)
    return (int(m.group()) if m else 0, name)


def _kernel_bank(kernels: Mapping[str, Tensor]) -> Tensor:
    """The kernels stacked (K, k, k) float32 on the CPU, in the order K1, K2, …, K12."""
    return torch.stack([torch.as_tensor(kernels[k], dtype=torch.float32).cpu()
                        for k in sorted(kernels, key=_kernel_order)])


def sample_sr_degradation(batch: Tensor, kernels: Mapping[str, Tensor],
                          generator: torch.Generator | None = None, scales: Sequence[int] = SR_SCALES,
                          noise_max: float = DEFAULT_NOISE,
                          extra_random_kernels: bool = False) -> tuple[int, Tensor, Tensor]:
    """Random SR degradation for an HR batch: ``(scale, kernels (N, k, k), sigma (N,))``.

    One scale per batch (so the LR shapes stack); each sample gets one of ``kernels`` (with
    ``extra_random_kernels``, half of the samples on average get a random anisotropic Gaussian instead)
    and a noise level uniform in ``[0, noise_max]``. Random numbers are drawn on the CPU generator; the
    outputs follow ``batch``'s device and dtype.
    """
    n = batch.shape[0]
    bank = _kernel_bank(kernels)
    scale = int(scales[int(torch.randint(len(scales), (1,), generator=generator))])
    ks = bank[torch.randint(len(bank), (n,), generator=generator)]
    if extra_random_kernels:
        use = torch.rand(n, generator=generator) < 0.5
        rnd = random_gaussian_kernels(n, generator, size=bank.shape[-1])
        ks = torch.where(use.view(n, 1, 1), rnd, ks)
    sigma = torch.rand(n, generator=generator) * noise_max
    like = {"device": batch.device, "dtype": batch.dtype}
    return scale, ks.to(**like), sigma.to(**like)


#: How often each kernel family is drawn for an SR training sample (see :func:`sample_sr_training_degradation`):
#: the 12 bundled kernels, random Gaussians down to a near-delta, plain decimation, PIL's bicubic downscaling
#: kernel on the top-left grid, and camera-shake motion. The families match ``sr_estimate.FAMILIES``.
SR_TRAIN_MIX: dict[str, float] = {"bundled": 0.4, "gauss-iso": 0.1, "gauss-aniso": 0.15, "delta": 0.1,
                                  "pil-bicubic": 0.1, "motion": 0.15}


def sr_train_mix(weights: Mapping[str, float] | None) -> dict[str, float]:
    """The family mix for SR training: :data:`SR_TRAIN_MIX`, or ``weights`` (a YAML config's ``extra: {sr_mix:
    {family: weight}}``; families left out get 0, weights need not sum to 1)."""
    if weights is None:
        return dict(SR_TRAIN_MIX)
    if not isinstance(weights, Mapping):
        raise UsageError(f"sr_mix must map kernel families to weights, got {weights!r}")
    unknown = sorted(set(weights) - set(SR_TRAIN_MIX))
    if unknown:
        raise UsageError(f"sr_mix: unknown kernel families {', '.join(unknown)}; valid: {', '.join(SR_TRAIN_MIX)}")
    mix = {f: float(w) for f, w in weights.items()}
    if any(not math.isfinite(w) or w < 0 for w in mix.values()) or sum(mix.values()) <= 0:
        raise UsageError("sr_mix weights must be finite, >= 0 and not all 0")
    return mix


#: Largest training noise level (σ = SR_NOISE_MAX·u³, u uniform: median 1.25/255, up to 10/255). The networks
#: are noise-blind, and most photos are nearly noise-free: the cube keeps most samples lightly noisy (the
#: history of this choice is in docs/SR_AUTO.md).
SR_NOISE_MAX = 10 / 255
#: Share of samples whose data step gets a kernel of slightly wrong width (the true one blurs y), and the
#: largest width factor error: a wrong kernel should soften the result, not ring.
SR_PERTURB_SHARE, SR_PERTURB_MAX = 0.25, 1.25


def sample_sr_training_degradation(n: int, kernels: Mapping[str, Tensor], generator: torch.Generator,
                                   scales: Sequence[int] = SR_SCALES, mix: Mapping[str, float] = SR_TRAIN_MIX,
                                   noise_max: float = SR_NOISE_MAX, perturb_share: float = SR_PERTURB_SHARE,
                                   ) -> tuple[int, Tensor, Tensor, Tensor]:
    """Broad SR degradations for ``n`` samples: ``(scale, true kernels, given kernels, sigma)``, kernels (n, 25, 25).

    One scale per batch; each sample draws a kernel family from ``mix`` and a kernel of it
    (:func:`~lorun_cli.physics.sr_estimate.sample_kernel`), a noise level σ = noise_max·u³. The true kernel
    blurs the image; the given kernel is what the network's data step sees: the true one, except for a
    ``perturb_share`` of samples whose width is scaled by a factor in [1/1.25, 1.25]. All random numbers
    come from ``generator`` (CPU).
    """
    from ..physics.sr_estimate import sample_kernel, scaled_kernel

    bank = _kernel_bank(kernels)
    fams = list(mix)
    probs = torch.tensor([float(mix[f]) for f in fams], dtype=torch.float64)
    scale = int(scales[int(torch.randint(len(scales), (1,), generator=generator))])
    pick = torch.multinomial(probs, n, replacement=True, generator=generator)
    true = torch.stack([sample_kernel(fams[int(i)], scale, generator, bank) for i in pick])
    factor = torch.exp((2 * torch.rand(n, generator=generator) - 1) * math.log(SR_PERTURB_MAX))
    wrong = torch.rand(n, generator=generator) < perturb_share
    given = torch.stack([scaled_kernel(k, float(c)) if w else k for k, c, w in zip(true, factor, wrong)])
    sigma = noise_max * torch.rand(n, generator=generator) ** 3
    return scale, true, given, sigma
