"""Reading and writing images, hyperspectral cubes and CASSI measurements.

Images come back as float32 tensors (C, H, W) in [0, 1]; integer files are scaled by their bit depth
(8-bit by 255, 16-bit by 65535), float files are returned as stored. Writes are atomic and refuse to
overwrite an existing file unless ``force`` is given.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lorun_cli.errors import LorunError, UsageError
from lorun_cli.facts import IMAGE_EXTS, LUMA_BT601
from lorun_cli.io.checkpoint import atomic_path

TIFF_EXTS = (".tif", ".tiff")
EXIF_ORIENTATION = 0x0112  # the EXIF tag cameras set instead of rotating the pixels
WRITE_DTYPES = ("uint8", "uint16", "float32")


# --------------------------------------------------------------------------- helpers


def _existing_file(path: str | os.PathLike[str], what: str) -> Path:
    """Return ``path`` as a Path, or raise a LorunError if it is not an existing file."""
    p = Path(path)
    if not p.exists():
        raise LorunError(f"{what} {p} not found; check the path")
    if not p.is_file():
        raise LorunError(f"{what} {p} is not a file; pass a file path")
    return p


def _check_target(path: str | os.PathLike[str], force: bool) -> Path:
    """Refuse to overwrite an existing output unless ``force``."""
    p = Path(path)
    if p.is_dir():
        raise LorunError(f"{p} is a directory; choose an output file path with -o")
    if p.exists() and not force:
        raise LorunError(f"{p} exists; pass --force to overwrite or choose -o")
    return p


def _int_to_unit(arr: np.ndarray, source: Path, scale: float | None = None) -> np.ndarray:
    """Scale an integer/bool/float array to float32: uint8 /255, uint16 /65535, floats unchanged."""
    if arr.dtype.kind == "f":
        return arr.astype(np.float32, copy=False)
    if arr.dtype.kind == "b":
        return arr.astype(np.float32)
    if arr.dtype.kind not in "ui":
        raise LorunError(
            f"{source} holds {arr.dtype} data, expected numbers; convert it to float or integers"
        )
    if scale is None:
        if arr.dtype == np.uint8:
            scale = 255.0
        elif arr.dtype == np.uint16:
            scale = 65535.0
        else:
            lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
            if lo < 0 or hi > 65535:
                raise LorunError(
                    f"{source} holds {arr.dtype} values in [{lo}, {hi}], expected 8- or 16-bit data; "
                    "save it as uint8, uint16 or float"
                )
            scale = 65535.0
    return (arr.astype(np.float64) / scale).astype(np.float32)


def _palette_array(img: Any) -> np.ndarray:
    """Decode a palette ("P") image: gray (H, W) if every used palette entry is gray, else RGB (H, W, 3)."""
    idx = np.asarray(img)
    pal = img.getpalette()
    if not pal:  # no palette stored: indices are the gray levels
        return idx.astype(np.float32) / 255.0
    n = len(pal) // 3
    table = np.zeros((256, 3), dtype=np.float32)
    table[: min(n, 256)] = np.asarray(pal[: 3 * min(n, 256)], dtype=np.float32).reshape(-1, 3)
    used = table[np.unique(idx)]
    if np.array_equal(used[:, 0], used[:, 1]) and np.array_equal(used[:, 1], used[:, 2]):
        return table[:, 0][idx] / 255.0
    return table[idx] / 255.0


def _pil_array(img: Any, source: Path) -> np.ndarray:
    """PIL image -> float32 array (H, W) or (H, W, 3) in [0, 1] (alpha dropped)."""
    mode = img.mode
    if mode == "P":
        return _palette_array(img)
    if mode in ("PA", "RGBa", "La"):
        img = img.convert("RGBA" if mode != "La" else "LA")
        mode = img.mode
    if mode == "1":
        return np.asarray(img, dtype=np.float32)
    if mode in ("L", "LA", "RGB", "RGBA", "RGBX"):
        arr = np.asarray(img)
        if mode == "LA":
            arr = arr[..., 0]
        elif mode in ("RGBA", "RGBX"):
            arr = arr[..., :3]
        return arr.astype(np.float32) / 255.0
    if mode.startswith("I;16"):
        return np.asarray(img).astype(np.float32) / 65535.0
    if mode == "I":
        return _int_to_unit(np.asarray(img), source)  # int32 samples, 16-bit range expected
    if mode == "F":
        return np.asarray(img, dtype=np.float32)
    try:  # CMYK, YCbCr, LAB, HSV, ...
        return np.asarray(img.convert("RGB")).astype(np.float32) / 255.0
    except Exception as e:
        raise LorunError(
            f"{source} has unsupported image mode {mode!r}; convert it to PNG (gray or RGB)"
        ) from e


def _hwc_image(arr: np.ndarray, source: Path) -> np.ndarray:
    """Bring a 2-D/3-D image array to (H, W) or (H, W, 3) (alpha dropped)."""
    arr = np.squeeze(arr) if arr.ndim > 3 else arr
    if arr.ndim == 3 and arr.shape[-1] not in (1, 3, 4) and arr.shape[0] in (1, 3, 4):
        arr = np.moveaxis(arr, 0, -1)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 3 and arr.shape[-1] == 4:
        arr = arr[..., :3]
    if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] == 3):
        return arr
    raise LorunError(
        f"{source} has shape {arr.shape}, expected a gray or RGB image; use read_cube for multi-band data"
    )


def _tiff_sample(p: Path) -> tuple[np.dtype | None, int, bytes | None]:
    """(sample type, samples per pixel, ICC profile) of a TIFF's first page, from its header; (None, 1, None) when
    tifffile cannot tell (the pixel reader reports an unreadable file). Read once per file version: a restore asks
    for its facts (:func:`file_facts`) and then for its pixels."""
    try:
        st = p.stat()
    except OSError:
        return None, 1, None
    return _tiff_header(str(p.resolve()), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=32)
def _tiff_header(path: str, _mtime_ns: int, _size: int) -> tuple[np.dtype | None, int, bytes | None]:
    """:func:`_tiff_sample`'s header read, cached by path, modification time and size."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tf:
            page = tf.pages[0]
            dtype = np.dtype(page.dtype) if page.dtype is not None else None
            icc = page.tags.get(34675)  # InterColorProfile
            return dtype, int(getattr(page, "samplesperpixel", 1)), bytes(icc.value) if icc is not None else None
    except Exception:  # noqa: BLE001 - any tifffile failure means "cannot tell"
        return None, 1, None


def _tiff_needs_tifffile(p: Path) -> bool:
    """True for TIFFs PIL would misread: float samples, or >8-bit multi-sample pixels."""
    dtype, spp, _ = _tiff_sample(p)
    return dtype is not None and (dtype.kind == "f" or (dtype.itemsize > 1 and spp > 1))


def _read_tiff_array(p: Path) -> np.ndarray:
    """Read the first series of a TIFF with tifffile."""
    import tifffile

    try:
        return np.asarray(tifffile.imread(p))
    except Exception as e:
        raise LorunError(f"{p} could not be read as a TIFF ({type(e).__name__}: {e}); check the file") from e


def _load_image_array(p: Path) -> np.ndarray:
    """Read any supported image file to float32 (H, W) or (H, W, 3), turned as its EXIF orientation says."""
    from PIL import Image, UnidentifiedImageError

    is_tiff = p.suffix.lower() in TIFF_EXTS
    if is_tiff and _tiff_needs_tifffile(p):
        return _hwc_image(_int_to_unit(_read_tiff_array(p), p), p)
    try:
        with Image.open(p) as img:
            img.load()
            if img.getexif().get(EXIF_ORIENTATION, 1) not in (0, 1):  # a phone photo: the pixels as viewers show them
                from PIL import ImageOps

                return _hwc_image(_pil_array(ImageOps.exif_transpose(img), p), p)
            return _hwc_image(_pil_array(img, p), p)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        if is_tiff:
            return _hwc_image(_int_to_unit(_read_tiff_array(p), p), p)
        raise LorunError(
            f"{p} could not be read as an image ({type(e).__name__}: {e}); expected PNG, TIFF, BMP or JPEG"
        ) from e


@dataclass(frozen=True)
class FileFacts:
    """What an image file's header says beyond its pixels (:func:`file_facts`)."""

    jpeg_step: float | None = None  # mean step of a JPEG's luma quantisation table (None: not a JPEG)
    icc: bytes | None = None  # embedded ICC colour profile
    bits: int = 8  # bits per sample: 16 (16-bit PNG or TIFF), 32 (float TIFF), else 8


def file_facts(path: str | os.PathLike[str]) -> FileFacts:
    """One read of an image file's header: its JPEG quantisation, colour profile and sample depth.

    JPEG's error on an image grows with the luma table's steps (quality 95 / 75 / 50 give about 5.8 / 29 / 58 with
    the standard tables); SR reads it as noise in the measurement
    (:func:`lorun_cli.physics.sr_estimate.jpeg_data_weight`).
    Phones and cameras tag wide-gamut photos (Display P3, Adobe RGB) with a profile, which a restored image keeps.
    A file the header reader cannot open gives the defaults (the pixel reader reports it).
    """
    from PIL import Image

    p = Path(path)
    if p.suffix.lower() in TIFF_EXTS:  # tifffile's header (PIL misreads some: float, 16-bit RGB)
        dt, _, icc = _tiff_sample(p)
        bits = 8 if dt is None else 32 if dt.kind == "f" else max(8, min(16, 8 * dt.itemsize))
        return FileFacts(None, icc or None, bits)
    try:
        with Image.open(p) as img:
            tables = getattr(img, "quantization", None) if img.format in ("JPEG", "MPO") else None  # MPO: cameras
            icc, mode = img.info.get("icc_profile"), img.mode
    except (OSError, ValueError, SyntaxError):
        tables, icc, mode = None, None, ""
    step = None
    if tables:
        luma = tables.get(0) or next(iter(tables.values()))
        step = float(np.mean(np.asarray(luma, dtype=np.float64)))
    bits = 16 if mode.startswith("I;16") or mode == "I" else 32 if mode == "F" else 8
    return FileFacts(step, bytes(icc) if icc else None, bits)


def output_dtype(bits: int, path: str | os.PathLike[str], channels: int) -> str | None:
    """The sample type that keeps an input's ``bits`` in an output ``path`` (None: the format's default):
    a float input gives a float TIFF, a 16-bit one a 16-bit TIFF or gray PNG."""
    ext = Path(path).suffix.lower()
    if bits <= 8:
        return None
    if ext in TIFF_EXTS:
        return "float32" if bits == 32 else "uint16"
    return "uint16" if ext == ".png" and channels == 1 else None


def _icc_fits(icc: bytes | None, arr: np.ndarray) -> bool:
    """Whether an ICC profile's colour space (header bytes 16–20) is the image's: RGB or gray."""
    return icc is not None and len(icc) >= 20 and icc[16:20] == (b"RGB " if arr.ndim == 3 else b"GRAY")


# --------------------------------------------------------------------------- images


def read_image(path: str | os.PathLike[str], mode: str = "auto") -> Tensor:
    """Read an image as float32 (C, H, W) in [0, 1].

    ``mode``: "gray" (C=1, RGB converted with BT.601 luma), "rgb" (C=3, gray replicated) or "auto"
    (C=1 for gray files, C=3 for colour files; an RGB file with R=G=B stays RGB).
    """
    if mode not in ("gray", "rgb", "auto"):
        raise UsageError(f"unknown image mode {mode!r}; choose gray, rgb or auto")
    p = _existing_file(path, "image")
    arr = _load_image_array(p)
    if arr.ndim == 2:
        arr = arr[..., None]
    if mode == "gray" and arr.shape[-1] == 3:
        arr = arr[..., 0] * LUMA_BT601[0] + arr[..., 1] * LUMA_BT601[1] + arr[..., 2] * LUMA_BT601[2]
        arr = arr[..., None]
    elif mode == "rgb" and arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1), dtype=np.float32))


def _image_hwc(x: Tensor) -> np.ndarray:
    """Tensor (H,W), (C,H,W) or (1,C,H,W) with C in {1,3} -> numpy (H, W) or (H, W, 3) float32."""
    t = x.detach()
    if t.dim() == 4 and t.shape[0] == 1:
        t = t[0]
    if t.dim() == 2:
        t = t.unsqueeze(0)
    if t.dim() != 3 or t.shape[0] not in (1, 3):
        raise LorunError(
            f"cannot write a tensor of shape {tuple(x.shape)} as an image; expected (1|3, H, W) "
            "(use write_cube for multi-band data)"
        )
    arr = t.to("cpu", torch.float32).numpy().transpose(1, 2, 0)
    return arr[..., 0] if arr.shape[-1] == 1 else arr


def to_pil(x: Tensor) -> Any:
    """A [0, 1] image tensor ((H, W), (C, H, W) or (1, C, H, W), C in {1, 3}) as an 8-bit Pillow image
    (clamped and rounded as :func:`write_image` writes it)."""
    from PIL import Image

    return Image.fromarray(_to_dtype(_image_hwc(x), "uint8"))


def _to_dtype(arr: np.ndarray, dtype: str) -> np.ndarray:
    """Convert [0, 1] floats to the output sample type (integer types are clamped and rounded)."""
    if dtype == "float32":
        return np.ascontiguousarray(arr, dtype=np.float32)
    top = 255.0 if dtype == "uint8" else 65535.0
    out = np.empty(arr.shape, dtype=dtype)
    for i in range(0, max(1, arr.shape[0]), 256):  # by rows: the float64 temporaries of a 4K image stay small
        clean = np.nan_to_num(arr[i : i + 256].astype(np.float64), nan=0.0, posinf=1.0, neginf=0.0)
        out[i : i + 256] = np.round(np.clip(clean, 0.0, 1.0) * top)
    return out


def write_image(
    path: str | os.PathLike[str], x: Tensor, force: bool = False, dtype: str | None = None,
    icc: bytes | None = None,
) -> Path:
    """Write an image atomically; format from the extension.

    .png: 8-bit (``dtype="uint16"`` gives a 16-bit gray PNG); .tif/.tiff: 16-bit by default, or
    ``dtype`` "uint8"/"float32"; .bmp/.jpg: 8-bit. Refuses an existing file unless ``force``.
    ``icc``: an ICC profile to embed (:func:`file_facts` of the input), kept when its colour space is the
    image's (RGB or gray) and the format holds one (PNG, TIFF, JPEG).
    """
    p = _check_target(path, force)
    ext = p.suffix.lower()
    defaults = {".png": "uint8", ".tif": "uint16", ".tiff": "uint16", ".bmp": "uint8", ".jpg": "uint8",
                ".jpeg": "uint8"}
    if ext not in defaults:
        raise UsageError(
            f"cannot write {ext or 'extension-less'} images ({p}); use .png, .tif, .tiff, .bmp or .jpg"
        )
    dt = dtype or defaults[ext]
    if dt not in WRITE_DTYPES:
        raise UsageError(f"unknown image dtype {dt!r}; choose one of {', '.join(WRITE_DTYPES)}")
    arr = _to_dtype(_image_hwc(x), dt)
    if ext in TIFF_EXTS:
        import tifffile

        photometric = "rgb" if arr.ndim == 3 else "minisblack"
        extra = {"iccprofile": icc} if _icc_fits(icc, arr) else {}
        with atomic_path(p) as tmp:
            tifffile.imwrite(tmp, arr, photometric=photometric, **extra)
        return p
    if dt != "uint8" and not (ext == ".png" and dt == "uint16" and arr.ndim == 2):
        raise UsageError(
            f"{ext} supports only 8-bit here (16-bit PNG is gray only); write a .tif for {dt} output"
        )
    from PIL import Image

    img = Image.fromarray(arr)
    fmt = {".png": "PNG", ".bmp": "BMP", ".jpg": "JPEG", ".jpeg": "JPEG"}[ext]
    options: dict[str, Any] = {"quality": 95} if fmt == "JPEG" else {}
    if fmt != "BMP" and _icc_fits(icc, arr):
        options["icc_profile"] = icc
    with atomic_path(p) as tmp:
        img.save(tmp, format=fmt, **options)
    return p


# --------------------------------------------------------------------------- cubes and measurements


def _load_mat(p: Path) -> dict[str, Any]:
    """scipy.io.loadmat with clear errors."""
    from scipy.io import loadmat

    try:
        return loadmat(str(p))
    except NotImplementedError as e:
        raise LorunError(
            f"{p} is a MATLAB v7.3 (HDF5) file, which is not supported; re-save it with save(..., '-v7')"
        ) from e
    except Exception as e:
        raise LorunError(
            f"{p} could not be read as a MATLAB .mat file ({type(e).__name__}: {e}); check the file"
        ) from e


def _mat_arrays(data: dict[str, Any]) -> dict[str, np.ndarray]:
    """Numeric arrays of a loadmat result (skipping the __header__-style entries)."""
    return {
        k: v for k, v in data.items()
        if not k.startswith("__") and isinstance(v, np.ndarray) and v.dtype.kind in "uifb"
    }


def _load_npy(p: Path) -> np.ndarray:
    """np.load without pickles, with clear errors."""
    try:
        arr = np.load(p, allow_pickle=False)
    except Exception as e:
        raise LorunError(
            f"{p} could not be read as a .npy array ({type(e).__name__}: {e}); check the file"
        ) from e
    if not isinstance(arr, np.ndarray):
        raise LorunError(f"{p} is an .npz archive, expected a single .npy array; save one array with np.save")
    return arr


def _chw(arr: np.ndarray, source: Path, bands_last: bool | None = None) -> np.ndarray:
    """Cube array -> (C, H, W). Bands last if asked, or if the last axis is the smallest and <= 64."""
    while arr.ndim > 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 2:
        return arr[None]
    if arr.ndim != 3:
        raise LorunError(f"{source} has shape {arr.shape}, expected a cube (H, W, C) or (C, H, W)")
    if bands_last is None:
        bands_last = arr.shape[-1] == min(arr.shape) and arr.shape[-1] <= 64
    return arr.transpose(2, 0, 1) if bands_last else arr


def _tiff_cube(p: Path) -> tuple[np.ndarray, dict[str, Any]]:
    """Array and shaped-metadata dict of a TIFF cube."""
    import tifffile

    try:
        with tifffile.TiffFile(p) as tf:
            arr = tf.asarray()
            metas = tf.shaped_metadata or ()
            meta: dict[str, Any] = dict(metas[0]) if metas else {}
            if not meta and tf.pages and tf.pages[0].description:
                try:
                    desc = json.loads(tf.pages[0].description)
                    meta = desc if isinstance(desc, dict) else {}
                except ValueError:
                    meta = {}
    except Exception as e:
        raise LorunError(
            f"{p} could not be read as a TIFF cube ({type(e).__name__}: {e}); check the file"
        ) from e
    return np.asarray(arr), meta


def read_cube(path: str | os.PathLike[str]) -> Tensor:
    """Read a hyperspectral cube as float32 (C, H, W).

    .mat: key ``img``, ``img_expand`` (uint16 divided by 65536), ``meas_real`` or the only array, bands last;
    .npy / .tif: bands last if the last axis is the smallest and <= 64, else first; a directory: its
    images sorted by name, one gray band each.
    """
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTS)
        if not files:
            raise LorunError(f"{p} holds no band images; expected one PNG/TIFF per band")
        bands = [read_image(f, mode="gray")[0] for f in files]
        if len({tuple(b.shape) for b in bands}) != 1:
            raise LorunError(f"band images in {p} differ in size; all bands must have the same H x W")
        return torch.stack(bands)
    p = _existing_file(p, "cube")
    ext = p.suffix.lower()
    if ext == ".mat":
        arrays = _mat_arrays(_load_mat(p))
        for key in ("img", "img_expand", "meas_real"):
            if key in arrays:
                arr = arrays[key]
                scale = 65536.0 if key == "img_expand" and arr.dtype == np.uint16 else None
                cube = _int_to_unit(arr, p, scale)
                return torch.from_numpy(np.ascontiguousarray(_chw(cube, p, bands_last=True)))
        if len(arrays) != 1:
            raise LorunError(
                f"{p} has arrays {sorted(arrays)}; expected key 'img', 'img_expand' or 'meas_real' "
                "(or a single array)"
            )
        cube = _int_to_unit(next(iter(arrays.values())), p)
        return torch.from_numpy(np.ascontiguousarray(_chw(cube, p, bands_last=True)))
    if ext == ".npy":
        cube = _int_to_unit(_load_npy(p), p)
        return torch.from_numpy(np.ascontiguousarray(_chw(cube, p)))
    if ext in TIFF_EXTS:
        arr, meta = _tiff_cube(p)
        layout = meta.get("layout")
        bands_last = True if layout == "HWC" else False if layout == "CHW" else None
        cube = _int_to_unit(arr, p)
        return torch.from_numpy(np.ascontiguousarray(_chw(cube, p, bands_last)))
    if ext in IMAGE_EXTS:
        return read_image(p, mode="auto")
    raise UsageError(f"cannot read cubes from {ext or 'extension-less'} files ({p}); use .mat, .npy or .tif")


def read_cube_wavelengths(path: str | os.PathLike[str]) -> list[float] | None:
    """Band centres (nm) stored with a cube (TIFF metadata ``wavelengths_nm``, .mat key ``wavelengths``)."""
    p = _existing_file(path, "cube")
    ext = p.suffix.lower()
    values: Any = None
    if ext in TIFF_EXTS:
        values = _tiff_cube(p)[1].get("wavelengths_nm")
    elif ext == ".mat":
        arrays = _mat_arrays(_load_mat(p))
        for key in ("wavelengths_nm", "wavelengths", "wl"):
            if key in arrays:
                values = arrays[key].ravel().tolist()
                break
    if values is None:
        return None
    return [float(v) for v in values]


def read_measurement(path: str | os.PathLike[str]) -> Tensor:
    """Read a 2-D CASSI snapshot as float32 (H, W).

    .mat: key ``meas``, ``meas_real`` or the first 2-D array; .npy; .tif (float or integer); .png 8/16-bit.
    """
    p = _existing_file(path, "measurement")
    ext = p.suffix.lower()
    if ext == ".mat":
        arrays = _mat_arrays(_load_mat(p))
        arr = next((arrays[k] for k in ("meas", "meas_real") if k in arrays), None)
        if arr is None:
            arr = next((a for a in arrays.values() if np.squeeze(a).ndim == 2), None)
        if arr is None:
            raise LorunError(
                f"{p} has no 2-D array (keys {sorted(arrays)}); expected key 'meas' or 'meas_real'"
            )
        meas = np.squeeze(_int_to_unit(arr, p))
    elif ext == ".npy":
        meas = np.squeeze(_int_to_unit(_load_npy(p), p))
    elif ext in IMAGE_EXTS:
        img = read_image(p, mode="auto")
        if img.shape[0] == 3 and not (torch.equal(img[0], img[1]) and torch.equal(img[1], img[2])):
            raise LorunError(f"{p} is a colour image; a CASSI measurement must be single-channel")
        return img[0].contiguous()
    else:
        raise UsageError(
            f"cannot read measurements from {ext or 'extension-less'} files ({p}); "
            "use .mat, .npy, .tif or .png"
        )
    if meas.ndim != 2:
        raise LorunError(f"{p} holds shape {meas.shape}, expected a 2-D snapshot (H, W)")
    return torch.from_numpy(np.ascontiguousarray(meas, dtype=np.float32))


def write_cube(
    path: str | os.PathLike[str],
    cube: Tensor,
    wavelengths: Sequence[float] | None,
    force: bool = False,
) -> Path:
    """Write a (C, H, W) cube as a float32 TIFF, bands last, wavelengths in the metadata (atomic)."""
    p = _check_target(path, force)
    if p.suffix.lower() not in TIFF_EXTS:
        raise UsageError(f"cubes are written as TIFF; give {p} a .tif or .tiff extension")
    t = cube.detach()
    if t.dim() == 4 and t.shape[0] == 1:
        t = t[0]
    if t.dim() != 3:
        raise LorunError(f"cube must be (C, H, W), got shape {tuple(cube.shape)}")
    meta: dict[str, Any] = {"layout": "HWC"}
    if wavelengths is not None:
        wl = [float(w) for w in wavelengths]
        if len(wl) != t.shape[0]:
            raise UsageError(
                f"{len(wl)} wavelengths given for a cube with {t.shape[0]} bands; pass one per band"
            )
        meta["wavelengths_nm"] = wl
    arr = np.ascontiguousarray(t.to("cpu", torch.float32).numpy().transpose(1, 2, 0))
    import tifffile

    with atomic_path(p) as tmp:
        tifffile.imwrite(tmp, arr, photometric="minisblack", planarconfig="contig", metadata=meta)
    return p


# --------------------------------------------------------------------------- colour preview

# Multi-lobe piecewise-Gaussian fit of the CIE 1931 2-degree colour matching functions
# (Wyman, Sloan & Shirley 2013): per lobe (weight, centre nm, sigma below centre, sigma above centre).
_CMF_LOBES: dict[str, tuple[tuple[float, float, float, float], ...]] = {
    "x": ((1.056, 599.8, 37.9, 31.0), (0.362, 442.0, 16.0, 26.7), (-0.065, 501.1, 20.4, 26.2)),
    "y": ((0.821, 568.8, 46.9, 40.5), (0.286, 530.9, 16.3, 31.1)),
    "z": ((1.217, 437.0, 11.8, 36.0), (0.681, 459.0, 26.0, 13.8)),
}
# CIE XYZ (D65) -> linear sRGB.
_XYZ_TO_SRGB = (
    (3.2406, -1.5372, -0.4986),
    (-0.9689, 1.8758, 0.0415),
    (0.0557, -0.2040, 1.0570),
)


def cie_cmf(wavelengths: Tensor) -> Tensor:
    """Approximate CIE 1931 colour matching functions at ``wavelengths`` (nm) -> (3, B) rows x̄, ȳ, z̄."""
    rows = []
    for name in ("x", "y", "z"):
        acc = torch.zeros_like(wavelengths)
        for weight, mu, s_lo, s_hi in _CMF_LOBES[name]:
            sigma = torch.where(
                wavelengths < mu, torch.full_like(wavelengths, s_lo), torch.full_like(wavelengths, s_hi)
            )
            acc = acc + weight * torch.exp(-0.5 * ((wavelengths - mu) / sigma) ** 2)
        rows.append(acc)
    return torch.stack(rows)


def _srgb_gamma(c: Tensor) -> Tensor:
    """Linear -> sRGB-encoded values (IEC 61966-2-1 transfer curve)."""
    return torch.where(c <= 0.0031308, 12.92 * c, 1.055 * c.clamp_min(1e-12) ** (1.0 / 2.4) - 0.055)


def srgb_to_linear(c: Tensor) -> Tensor:
    """sRGB-encoded values -> linear (the inverse of the IEC 61966-2-1 transfer curve)."""
    return torch.where(c <= 0.04045, c / 12.92, ((c.clamp_min(0.0) + 0.055) / 1.055) ** 2.4)


def spectrum_to_rgb(wavelengths: Sequence[float], dtype: torch.dtype = torch.float64,
                    device: torch.device | str | None = None) -> Tensor:
    """(3, C): a C-band spectrum -> linear sRGB through the CIE 1931 matching functions, white-balanced so a
    flat unit spectrum gives (1, 1, 1) (channels the bands barely reach are left unscaled)."""
    wl = torch.as_tensor([float(w) for w in wavelengths], dtype=dtype, device=device)
    to_rgb = torch.as_tensor(_XYZ_TO_SRGB, dtype=dtype, device=device) @ cie_cmf(wl)
    white = to_rgb.sum(dim=1)  # response to a flat unit spectrum
    white = torch.where(white > 1e-6 * white.abs().max(), white, torch.ones_like(white))
    return to_rgb / white[:, None]


def cube_preview_rgb(cube: Tensor, wavelengths: Sequence[float]) -> Tensor:
    """sRGB preview (3, H, W) in [0, 1] of a (C, H, W) cube with band centres ``wavelengths`` (nm).

    Spectra are projected on the CIE 1931 matching functions, converted to linear sRGB, white-balanced so a
    flat spectrum is neutral, scaled so the brightest value is 1, and gamma-encoded.
    """
    t = cube[0] if cube.dim() == 4 and cube.shape[0] == 1 else cube
    if t.dim() != 3:
        raise LorunError(f"cube must be (C, H, W), got shape {tuple(cube.shape)}")
    if len(wavelengths) != t.shape[0]:
        raise UsageError(
            f"{len(wavelengths)} wavelengths given for a cube with {t.shape[0]} bands; pass one per band"
        )
    work = t.to(torch.float64 if t.device.type != "mps" else torch.float32)
    to_rgb = spectrum_to_rgb(wavelengths, dtype=work.dtype, device=work.device)
    rgb = torch.einsum("kc,chw->khw", to_rgb, work).clamp_min(0.0)
    peak = rgb.max()
    if peak > 0:
        rgb = rgb / peak
    return _srgb_gamma(rgb.clamp(0.0, 1.0)).clamp(0.0, 1.0).to(t.dtype)
