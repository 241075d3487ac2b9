"""Test sets, validation splits and bundled samples for the CS, SR and CASSI tasks (read by restore, bench, train).

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
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lorun_cli.errors import LorunError, UsageError
from lorun_cli.facts import IMAGE_EXTS, LUMA_BT601, TASKS, WAVELENGTHS_28
from lorun_cli.io import images
from lorun_cli.io.paths import cache_dir

Tensor = torch.Tensor
Rect = tuple[int, int, int, int]  # (y0, x0, y1, x1), end-exclusive

ASSETS = Path(__file__).resolve().parents[1] / "assets"
SAMPLE_DIR = ASSETS / "samples"
CBSD68_JSON = ASSETS / "cbsd68.json"

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

# Fixed validation splits (training images only; never test images).
CS_VAL_NAMES = tuple(f"test_{i:03d}.png" for i in range(40, 401, 40))  # 10 Train400 images
SR_VAL_NAMES = ("t13.bmp", "t37.bmp", "t50.bmp", "tt4.bmp", "tt13.bmp", "tt24.bmp")  # 6 T91 images
CASSI_VAL_REGIONS: dict[str, Rect] = {  # 256x256 regions of two CAVE training scenes
    "beads_ms": (256, 256, 512, 512),
    "feathers_ms": (0, 0, 256, 256),
}
QUADRANTS = ("tl", "tr", "bl", "br")
#: Data folder (relative to the data root) each test set is read from.
DATASET_DIRS: dict[tuple[str, str], str] = {
    ("cs", "set11"): "cs/set11",
    ("cs", "bsd68"): "cs/bsd68",
    ("sr", "set5"): "sr/set5",
    ("sr", "set14"): "sr/set14",
    ("sr", "cbsd68"): "sr/bsd100",
    ("cassi", "cave"): "cassi/cave/test",
}


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
    """Full-range BT.601 luma (:data:`~lorun_cli.facts.LUMA_BT601`) of ``(..., 3, H, W)`` -> ``(..., 1, H, W)``."""
    w = torch.tensor(LUMA_BT601, dtype=x.dtype, device=x.device).view(3, 1, 1)
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
    if task in ("cs", "sr"):
        rel, names, read = ("train/bsd400", CS_VAL_NAMES, read_gray) if task == "cs" else \
            ("train/t91", SR_VAL_NAMES, read_rgb)
        folder = require_dir(root, rel)
        files = [folder / n for n in names if (folder / n).is_file()]
        if not files:
            listed = f"{names[0]}, ..." if task == "cs" else ", ".join(names)
            raise LorunError(f"none of the {task.upper()} validation images ({listed}) is in '{folder}'")
        return [(_stem(f.name), read(f)) for f in files]
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
