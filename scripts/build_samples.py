"""Build the tiny bundled sample set ``lorun_cli/assets/samples/`` from a data root (developer tool).

    python scripts/build_samples.py /path/to/data-root

- ``cs/house.png``, ``cs/cameraman.png``: Set11 test images, 8-bit gray PNG, 256x256 (demo only).
- ``sr/butterfly.png``, ``sr/bird.png``: Set5 HR images, RGB PNG, mod-cropped to 12.
- ``cassi/balloons_256.npz``: the 256x256 centre crop of the CAVE test scene ``balloons_ms``, 21 bands
  (450..650 nm). To stay small the 16-bit values are rounded to a step of 64 (max error 32/65535, about
  71 dB PSNR, far below the data's own noise of ~450 counts) and stored as band-to-band differences
  (``diff`` int16, ``step``, ``wavelengths``) in a compressed .npz.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

OUT = Path(__file__).resolve().parents[1] / "lorun_cli" / "assets" / "samples"
STEP = 64
CROP = 256


def _save_png(a: np.ndarray, path: Path) -> None:
    """Write an 8-bit array as an optimised PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path, "PNG", optimize=True)


def build(root: Path, out: Path) -> None:
    """Write every sample file under ``out``."""
    for name in ("house", "cameraman"):
        a = np.array(Image.open(root / "cs" / "set11" / f"{name}.tif").convert("L"))
        assert a.shape == (256, 256), a.shape
        _save_png(a, out / "cs" / f"{name}.png")
    for name in ("butterfly", "bird"):
        a = np.array(Image.open(root / "sr" / "set5" / f"{name}.bmp").convert("RGB"))
        h, w = a.shape[:2]
        _save_png(a[: h - h % 12, : w - w % 12], out / "sr" / f"{name}.png")
    scene = root / "cassi" / "cave" / "test" / "balloons_ms"
    bands = np.stack([np.array(Image.open(scene / f"balloons_ms_{i:02d}.png")) for i in range(6, 27)])
    assert bands.dtype == np.uint16 and bands.shape == (21, 512, 512), (bands.dtype, bands.shape)
    y0, x0 = (bands.shape[1] - CROP) // 2, (bands.shape[2] - CROP) // 2
    crop = bands[:, y0:y0 + CROP, x0:x0 + CROP].astype(np.int64)
    q = np.clip((crop + STEP // 2) // STEP, 0, 65535 // STEP)
    diff = np.diff(q, axis=0, prepend=0).astype(np.int16)
    (out / "cassi").mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / "cassi" / "balloons_256.npz", diff=diff, step=np.int64(STEP),
                        wavelengths=np.arange(450.0, 651.0, 10.0))
    err = np.abs(q * STEP - crop).max()
    print(f"cassi sample: max abs error {err} / 65535")


def main() -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description="Build lorun's bundled sample set")
    ap.add_argument("root", type=Path, help="data root (cs/, sr/, cassi/)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    build(args.root, args.out)
    total = 0
    for f in sorted(args.out.rglob("*")):
        if f.is_file():
            total += f.stat().st_size
            print(f"{f.relative_to(args.out)}  {f.stat().st_size:,} B")
    print(f"total {total:,} B")
    return 0 if total < 1_500_000 else 1


if __name__ == "__main__":
    sys.exit(main())
