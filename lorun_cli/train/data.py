"""Training patches, validation splits, test sets and bundled samples for the CS, SR and CASSI tasks.

Data root layout (``--data DIR`` or ``$LORUN_DATA``)::

    cs/set11/*.tif            cs/bsd68/*.png              (CS test sets, gray)
    sr/set5/*.bmp  sr/set14/*.bmp  sr/bsd100/*.png        (SR test sets, RGB)
    train/t91/*.bmp  train/bsd400/*.png                   (training images)
    cassi/cave/{train,test}/<scene>/<scene>_NN.png        (CAVE, 16-bit bands NN = 06..26, 450..650 nm)
    cassi/mask.mat                                        (coded aperture)

Every tensor is float32 in [0, 1]: gray ``(1, H, W)``, RGB ``(3, H, W)``, spectral cubes ``(28, H, W)``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lorun_cli.errors import LorunError, UsageError
from lorun_cli.io import images

Tensor = torch.Tensor
Rect = tuple[int, int, int, int]  # (y0, x0, y1, x1), end-exclusive

TASKS = ("cs", "sr", "cassi")
ASSETS = Path(__file__).resolve().parents[1] / "assets"
SAMPLE_DIR = ASSETS / "samples"
CBSD68_JSON = ASSETS / "cbsd68.json"

# Band centres (nm) of the 28-band CASSI cubes.
WAVELENGTHS_28 = (
    453.5, 457.5, 462.0, 466.0, 471.5, 476.5, 481.5, 487.0, 492.5, 498.0, 504.0, 510.0, 516.0, 522.5,
    529.5, 536.5, 544.0, 551.5, 558.5, 567.5, 575.5, 584.5, 594.5, 604.0, 614.5, 625.0, 636.5, 648.0,
)
# CAVE band files _06.._26 hold 450, 460, ..., 650 nm.
CAVE_BAND_IDS = tuple(range(6, 27))
CAVE_WAVELENGTHS = tuple(400.0 + 10.0 * (i - 1) for i in CAVE_BAND_IDS)
CAVE_CROP = 256

LAYOUT: dict[str, str] = {
    "cs/set11": "Set11 CS test images (*.tif)",
    "cs/bsd68": "BSD68 gray test images (*.png)",
    "sr/set5": "Set5 HR images (*.bmp)",
    "sr/set14": "Set14 HR images (*.bmp)",
    "sr/bsd100": "BSD100 HR images (*.png)",
    "train/t91": "T91 training images (*.bmp)",
    "train/bsd400": "Train400 gray training images (*.png)",
    "cassi/cave/train": "CAVE training scenes (<scene>/<scene>_NN.png)",
    "cassi/cave/test": "CAVE test scenes (<scene>/<scene>_NN.png)",
}
TESTSETS: dict[str, tuple[str, ...]] = {
    "cs": ("set11", "bsd68"),
    "sr": ("set5", "set14", "bsd100", "cbsd68"),
    "cassi": ("cave", "cave-quadrants"),
}
IMAGE_EXTS = (".png", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg")

# Fixed validation splits (training images only; never test images).
CS_VAL_NAMES = tuple(f"test_{i:03d}.png" for i in range(40, 401, 40))  # 10 Train400 images
SR_VAL_NAMES = ("t13.bmp", "t37.bmp", "t50.bmp", "tt4.bmp", "tt13.bmp", "tt24.bmp")  # 6 T91 images
CASSI_VAL_REGIONS: dict[str, Rect] = {  # 256x256 regions of two CAVE training scenes
    "beads_ms": (256, 256, 512, 512),
    "feathers_ms": (0, 0, 256, 256),
}
QUADRANTS = ("tl", "tr", "bl", "br")


# --------------------------------------------------------------------------------------------- roots
def data_root(cli_value: str | os.PathLike | None) -> Path:
    """The data root: the ``--data`` value, else ``$LORUN_DATA``; raises LorunError when neither is usable."""
    value = cli_value if cli_value not in (None, "") else os.environ.get("LORUN_DATA") or None
    if value is None:
        raise LorunError(
            "no data root given: pass --data DIR or set LORUN_DATA=DIR, where DIR holds cs/, sr/, train/ and "
            "cassi/ (see docs); bundled samples work without it"
        )
    root = Path(value).expanduser()
    if not root.is_dir():
        raise LorunError(f"data root '{root}' is not a directory: check --data / LORUN_DATA")
    return root


def require_dir(root: str | os.PathLike, rel: str) -> Path:
    """``root/rel`` if it is a directory, else a LorunError naming the folder expected under the root."""
    path = Path(root) / rel
    if not path.is_dir():
        what = LAYOUT.get(rel, "")
        raise LorunError(
            f"missing data folder '{rel}'{f' ({what})' if what else ''} under data root '{root}': "
            f"expected {path}; point --data / LORUN_DATA at a root with that layout"
        )
    return path


def _list_images(folder: Path, exts: Sequence[str] = IMAGE_EXTS) -> list[Path]:
    """Image files of a folder, sorted case-insensitively; LorunError when there are none."""
    files = sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in exts),
                   key=lambda p: p.name.lower())
    if not files:
        raise LorunError(f"no images ({', '.join(exts)}) in data folder '{folder}'")
    return files


# ------------------------------------------------------------------------------------------ reading
def rgb_to_luma(x: Tensor) -> Tensor:
    """Full-range BT.601 luma ``0.299 R + 0.587 G + 0.114 B`` of ``(..., 3, H, W)`` -> ``(..., 1, H, W)``."""
    w = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device).view(3, 1, 1)
    return (x * w).sum(dim=-3, keepdim=True)


def read_gray(path: str | os.PathLike) -> Tensor:
    """A gray image as ``(1, H, W)`` (palette via its palette, RGB via BT.601 luma, 16-bit kept)."""
    return images.read_image(path, "gray")


def read_rgb(path: str | os.PathLike) -> Tensor:
    """An image forced to RGB as ``(3, H, W)`` (gray files are replicated)."""
    return images.read_image(path, "rgb")


def modcrop(x: Tensor, s: int) -> Tensor:
    """Crop the last two dims (top-left anchored) to multiples of ``s``."""
    h, w = x.shape[-2:]
    return x[..., : h - h % s, : w - w % s]


# ----------------------------------------------------------------------------------------- spectra
def spectral_interp_matrix(src: Sequence[float], dst: Sequence[float]) -> Tensor:
    """Matrix ``M (len(dst), len(src))``: ``M @ spectrum`` interpolates linearly at ``dst`` (inside only)."""
    s = np.asarray(src, dtype=np.float64)
    d = np.asarray(dst, dtype=np.float64)
    if np.any(np.diff(s) <= 0):
        raise ValueError("source wavelengths must increase")
    if d.min() < s[0] or d.max() > s[-1]:
        raise ValueError("target wavelengths must lie inside the source range")
    m = np.zeros((len(d), len(s)))
    for i, lam in enumerate(d):
        j = min(int(np.searchsorted(s, lam, side="right")) - 1, len(s) - 2)
        t = (lam - s[j]) / (s[j + 1] - s[j])
        m[i, j] += 1.0 - t
        m[i, j + 1] += t
    return torch.from_numpy(m.astype(np.float32))


def interpolate_bands(cube: Tensor, src: Sequence[float] = CAVE_WAVELENGTHS,
                      dst: Sequence[float] = WAVELENGTHS_28) -> Tensor:
    """Linearly resample a ``(len(src), H, W)`` cube to ``(len(dst), H, W)`` along the spectral axis."""
    m = spectral_interp_matrix(src, dst).to(device=cube.device, dtype=cube.dtype)
    return torch.tensordot(m, cube, dims=([1], [0]))


def read_cave_bands(scene_dir: str | os.PathLike) -> np.ndarray:
    """The 21 raw 16-bit bands (450..650 nm) of a CAVE scene as uint16 ``(21, H, W)``."""
    scene_dir = Path(scene_dir)
    name = scene_dir.name
    bands = []
    for i in CAVE_BAND_IDS:
        f = scene_dir / f"{name}_{i:02d}.png"
        if not f.is_file():
            raise LorunError(f"missing CAVE band file '{f}' (expected {name}_06.png .. {name}_26.png)")
        a = np.array(Image.open(f))  # 16-bit PNG -> uint16; never convert('L'), which clips at 255
        if a.ndim != 2:
            raise LorunError(f"CAVE band '{f}' is not a single-channel image (shape {a.shape})")
        bands.append(a.astype(np.uint16) if a.dtype != np.uint8 else a.astype(np.uint16) * 257)
    return np.stack(bands)


def cache_dir() -> Path:
    """Cache folder: ``$LORUN_CACHE_DIR``, else the platform user cache dir of lorun."""
    env = os.environ.get("LORUN_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("lorun"))


def _cache_key(scene_dir: Path) -> str:
    """Key changing whenever a band file of the scene changes (name, size, mtime)."""
    h = hashlib.sha1(b"cave28-linear-v1")
    for i in CAVE_BAND_IDS:
        f = scene_dir / f"{scene_dir.name}_{i:02d}.png"
        st = f.stat() if f.is_file() else None
        h.update(f"{f.name}:{st.st_size if st else -1}:{st.st_mtime_ns if st else -1};".encode())
    return h.hexdigest()[:16]


def read_cave_scene(scene_dir: str | os.PathLike, cache: bool | None = None) -> Tensor:
    """A CAVE scene as a 28-band float32 cube ``(28, H, W)``: bands / 65535, linear spectral interpolation.

    ``cache``: keep the interpolated cube as .npy under :func:`cache_dir`; ``None`` caches only when
    ``$LORUN_CACHE_DIR`` is set (decoding the PNGs is already fast).
    """
    scene_dir = Path(scene_dir)
    if cache is None:
        cache = bool(os.environ.get("LORUN_CACHE_DIR"))
    path = None
    if cache:
        path = cache_dir() / "cave28" / f"{scene_dir.name}-{_cache_key(scene_dir)}.npy"
        if path.is_file():
            try:
                return torch.from_numpy(np.load(path))
            except (OSError, ValueError):
                pass
    raw = torch.from_numpy(read_cave_bands(scene_dir).astype(np.float32) / 65535.0)
    cube = interpolate_bands(raw).contiguous()
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.partial")
            with open(tmp, "wb") as fh:
                np.save(fh, cube.numpy())
            os.replace(tmp, path)
        except OSError:
            pass
    return cube


def _cave_scenes(root: str | os.PathLike, split: str) -> list[Path]:
    """Scene folders of ``cassi/cave/<split>``."""
    folder = require_dir(root, f"cassi/cave/{split}")
    scenes = sorted(p for p in folder.iterdir() if p.is_dir())
    if not scenes:
        raise LorunError(f"no CAVE scene folders in '{folder}' (expected <scene>/<scene>_NN.png)")
    return scenes


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

    @property
    def num_images(self) -> int:
        """Number of images held."""
        return int(self.shapes.shape[0])

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
def cs_train_images(root: str | os.PathLike) -> list[Tensor]:
    """CS training images: Train400 + T91 luminance, minus all validation images, each ``(1, H, W)``."""
    bsd400 = [p for p in _list_images(require_dir(root, "train/bsd400")) if p.name not in CS_VAL_NAMES]
    t91 = [p for p in _list_images(require_dir(root, "train/t91")) if p.name not in SR_VAL_NAMES]
    return [read_gray(p) for p in bsd400] + [rgb_to_luma(read_rgb(p)) for p in t91]


def cs_train_sampler(root: str | os.PathLike, patch: int = 32, augment: bool = True,
                     device: torch.device | str | None = None) -> PatchSampler:
    """Gray patches from Train400 + T91 luminance (never BSD68 / BSD100 / Set11)."""
    return PatchSampler(cs_train_images(root), patch, augment=augment, device=device)


def sr_train_sampler(root: str | os.PathLike, patch: int = 96, augment: bool = True,
                     device: torch.device | str | None = None) -> PatchSampler:
    """RGB HR patches from T91 (minus the validation images); ``patch`` must be a multiple of 12."""
    if patch % 12:
        raise UsageError(f"SR patch size must be a multiple of 12 (divisible by scales 2, 3, 4); got {patch}")
    files = [p for p in _list_images(require_dir(root, "train/t91")) if p.name not in SR_VAL_NAMES]
    return PatchSampler([read_rgb(p) for p in files], patch, augment=augment, device=device)


def cassi_train_sampler(root: str | os.PathLike, patch: int = 128, augment: bool = True,
                        device: torch.device | str | None = None, cache: bool | None = None) -> PatchSampler:
    """28-band patches from the CAVE training scenes; never overlapping :data:`CASSI_VAL_REGIONS`."""
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
    return PatchSampler.from_buffer(buffer, shapes, patch, augment=augment, exclude=exclude)


def train_sampler(task: str, root: str | os.PathLike, patch: int | None = None, **kw) -> PatchSampler:
    """The training patch sampler of ``task`` with its default patch size (CS 32, SR 96, CASSI 128)."""
    builders = {"cs": (cs_train_sampler, 32), "sr": (sr_train_sampler, 96),
                "cassi": (cassi_train_sampler, 128)}
    if task not in builders:
        raise UsageError(f"unknown task '{task}'; choose one of {', '.join(TASKS)}")
    fn, default = builders[task]
    return fn(root, patch=patch or default, **kw)


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


def sample_sr_degradation(batch: Tensor, kernels: Mapping[str, Tensor],
                          generator: torch.Generator | None = None, scales: Sequence[int] = (2, 3, 4),
                          noise_max: float = 2.55 / 255,
                          extra_random_kernels: bool = False) -> tuple[int, Tensor, Tensor]:
    """Random SR degradation for an HR batch: ``(scale, kernels (N, k, k), sigma (N,))``.

    One scale per batch (so the LR shapes stack); each sample gets one of ``kernels`` (with
    ``extra_random_kernels``, half of the samples on average get a random anisotropic Gaussian instead)
    and a noise level uniform in ``[0, noise_max]``. Random numbers are drawn on the CPU generator; the
    outputs follow ``batch``'s device and dtype.
    """
    n = batch.shape[0]
    names = sorted(kernels, key=_kernel_order)
    bank = torch.stack([torch.as_tensor(kernels[k], dtype=torch.float32).cpu() for k in names])
    scale = int(scales[int(torch.randint(len(scales), (1,), generator=generator))])
    ks = bank[torch.randint(len(names), (n,), generator=generator)]
    if extra_random_kernels:
        use = torch.rand(n, generator=generator) < 0.5
        rnd = random_gaussian_kernels(n, generator, size=bank.shape[-1])
        ks = torch.where(use.view(n, 1, 1), rnd, ks)
    sigma = torch.rand(n, generator=generator) * noise_max
    like = {"device": batch.device, "dtype": batch.dtype}
    return scale, ks.to(**like), sigma.to(**like)


# ------------------------------------------------------------------------------------------ test sets
def _stem(name: str) -> str:
    """Display name of a test file (drops BSD100's "_SRF_3_HR" tag)."""
    return re.sub(r"_SRF_\d+_HR$", "", Path(name).stem)


def centre_crop(x: Tensor, size: int = CAVE_CROP) -> Tensor:
    """The ``size x size`` centre crop of the last two dims."""
    h, w = x.shape[-2:]
    if h < size or w < size:
        raise LorunError(f"image of size {h}x{w} is smaller than the {size}x{size} crop")
    y0, x0 = (h - size) // 2, (w - size) // 2
    return x[..., y0:y0 + size, x0:x0 + size]


def quadrant_crops(x: Tensor, size: int = CAVE_CROP) -> list[tuple[str, Tensor]]:
    """The four corner ``size x size`` crops (tl, tr, bl, br); they do not overlap when H, W >= 2*size."""
    h, w = x.shape[-2:]
    if h < 2 * size or w < 2 * size:
        raise LorunError(f"image of size {h}x{w} is too small for four {size}x{size} quadrants")
    corners = ((0, 0), (0, w - size), (h - size, 0), (h - size, w - size))
    return [(q, x[..., y:y + size, c:c + size]) for q, (y, c) in zip(QUADRANTS, corners)]


def _cbsd68(root: str | os.PathLike) -> list[tuple[str, Tensor]]:
    """CBSD68: the BSD100 RGB images whose gray versions are BSD68 (mapping in assets/cbsd68.json).

    The BSD100 files are 1 px smaller than BSD68 and sit at the stored offset (always (0, 0)) inside
    it, so the full BSD100 image is the aligned region; images are named after their BSD68 file.
    """
    folder = require_dir(root, "sr/bsd100")
    out = []
    for e in json.loads(CBSD68_JSON.read_text()):
        f = folder / e["bsd100"]
        if not f.is_file():
            raise LorunError(f"missing BSD100 image '{f}' needed by the cbsd68 test set")
        out.append((Path(e["bsd68"]).stem, read_rgb(f)))
    return out


def load_testset(task: str, name: str, root: str | os.PathLike) -> list[tuple[str, Tensor]]:
    """Test images of ``task``/``name`` as ``(name, tensor)`` pairs.

    CS: set11, bsd68 -> gray ``(1, H, W)``. SR: set5, set14, bsd100, cbsd68 -> RGB ``(3, H, W)``, not
    mod-cropped (use :func:`modcrop`). CASSI: cave (3 centre 256x256 crops), cave-quadrants (12 corner
    256x256 crops) -> ``(28, 256, 256)``.
    """
    task, name = task.lower(), name.lower()
    if task not in TESTSETS:
        raise UsageError(f"unknown task '{task}'; choose one of {', '.join(TASKS)}")
    if name not in TESTSETS[task]:
        raise UsageError(f"unknown {task} test set '{name}'; choose one of {', '.join(TESTSETS[task])}")
    if task == "cs":
        files = _list_images(require_dir(root, f"cs/{name}"))
        return [(_stem(f.name), read_gray(f)) for f in files]
    if task == "sr":
        if name == "cbsd68":
            return _cbsd68(root)
        files = _list_images(require_dir(root, f"sr/{name}"))
        return [(_stem(f.name), read_rgb(f)) for f in files]
    out: list[tuple[str, Tensor]] = []
    for scene in _cave_scenes(root, "test"):
        cube = read_cave_scene(scene)
        if name == "cave":
            out.append((scene.name, centre_crop(cube).contiguous()))
        else:
            out.extend((f"{scene.name}_{q}", c.contiguous()) for q, c in quadrant_crops(cube))
    return out


def validation_set(task: str, root: str | os.PathLike) -> list[tuple[str, Tensor]]:
    """Fixed held-out training images: CS 10 Train400 images, SR 6 T91 images, CASSI two 256x256 regions."""
    task = task.lower()
    if task == "cs":
        folder = require_dir(root, "train/bsd400")
        files = [folder / n for n in CS_VAL_NAMES if (folder / n).is_file()]
        if not files:
            raise LorunError(f"none of the CS validation images ({CS_VAL_NAMES[0]}, ...) is in '{folder}'")
        return [(_stem(f.name), read_gray(f)) for f in files]
    if task == "sr":
        folder = require_dir(root, "train/t91")
        files = [folder / n for n in SR_VAL_NAMES if (folder / n).is_file()]
        if not files:
            raise LorunError(f"none of the SR validation images ({', '.join(SR_VAL_NAMES)}) is in '{folder}'")
        return [(_stem(f.name), read_rgb(f)) for f in files]
    if task == "cassi":
        folder = require_dir(root, "cassi/cave/train")
        out = []
        for scene, (y0, x0, y1, x1) in CASSI_VAL_REGIONS.items():
            d = folder / scene
            if not d.is_dir():
                raise LorunError(f"missing CAVE training scene 'cassi/cave/train/{scene}' under '{root}'")
            cube = read_cave_scene(d)
            out.append((f"{scene}_val", cube[:, y0:y1, x0:x1].contiguous()))
        return out
    raise UsageError(f"unknown task '{task}'; choose one of {', '.join(TASKS)}")


# ------------------------------------------------------------------------------------- bundled samples
def read_cassi_sample(path: str | os.PathLike) -> Tensor:
    """A bundled CAVE sample (.npz, quantised 21-band spectral differences) as a 28-band cube."""
    with np.load(path) as z:
        q = np.cumsum(z["diff"].astype(np.int64), axis=0)
        cube21 = (q * int(z["step"])).clip(0, 65535).astype(np.float32) / 65535.0
        src = tuple(float(v) for v in z["wavelengths"])
    return interpolate_bands(torch.from_numpy(cube21), src=src)


def load_sample(task: str) -> list[tuple[str, Tensor]]:
    """The bundled sample images of ``task`` (no data root needed): CS gray, SR RGB, CASSI 28-band."""
    task = task.lower()
    if task not in TASKS:
        raise UsageError(f"unknown task '{task}'; choose one of {', '.join(TASKS)}")
    folder = SAMPLE_DIR / task
    pattern = "*.npz" if task == "cassi" else "*.png"
    files = sorted(folder.glob(pattern)) if folder.is_dir() else []
    if not files:
        raise LorunError(f"bundled samples for '{task}' are missing from '{folder}': reinstall lorun")
    if task == "cs":
        return [(f.stem, read_gray(f)) for f in files]
    if task == "sr":
        return [(f.stem, read_rgb(f)) for f in files]
    return [(f.stem, read_cassi_sample(f)) for f in files]
