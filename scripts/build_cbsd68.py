"""Build ``lorun_cli/assets/cbsd68.json``: which BSD100 colour image each gray BSD68 image comes from.

For every BSD68 gray image (321x481 or 481x321) the script searches every BSD100 HR image of the same
orientation (321x480 / 480x321) at every offset that places the BSD100 image inside the BSD68 one, and keeps
the offset with the highest Pearson correlation between the BSD68 gray values and the BSD100 luma.

Developer tool only: run once with ``python scripts/build_cbsd68.py /path/to/data-root``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

OUT = Path(__file__).resolve().parents[1] / "lorun_cli" / "assets" / "cbsd68.json"


def _luma(path: Path) -> np.ndarray:
    """BT.601 luma of an RGB image as float64 (H, W)."""
    rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
    return rgb @ np.array([0.299, 0.587, 0.114])


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two equally shaped arrays."""
    a = a - a.mean()
    b = b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def best_match(gray: np.ndarray, candidates: dict[str, np.ndarray]) -> tuple[str, tuple[int, int], float]:
    """Best (name, (dy, dx), corr) over all candidates and all offsets placing them inside ``gray``."""
    best = ("", (0, 0), -2.0)
    for name, luma in candidates.items():
        h, w = luma.shape
        if h > gray.shape[0] or w > gray.shape[1]:
            continue
        for dy in range(gray.shape[0] - h + 1):
            for dx in range(gray.shape[1] - w + 1):
                c = _corr(gray[dy:dy + h, dx:dx + w], luma)
                if c > best[2]:
                    best = (name, (dy, dx), c)
    return best


def main() -> int:
    """Compute the mapping, check it, write the JSON and print statistics."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path, help="data root holding cs/bsd68 and sr/bsd100")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    bsd68 = sorted((args.root / "cs" / "bsd68").glob("*.png"))
    bsd100 = {p.name: _luma(p) for p in sorted((args.root / "sr" / "bsd100").glob("*.png"))}
    entries = []
    for p in bsd68:
        gray = np.asarray(Image.open(p), dtype=np.float64)
        name, off, corr = best_match(gray, bsd100)
        entries.append({"bsd68": p.name, "bsd100": name, "offset": list(off), "corr": round(corr, 6)})
        print(f"{p.name} -> {name} offset={off} corr={corr:.6f}", flush=True)
    corrs = np.array([e["corr"] for e in entries])
    distinct = len({e["bsd100"] for e in entries})
    print(f"{len(entries)} entries, {distinct} distinct BSD100 images, corr min {corrs.min():.6f} "
          f"median {np.median(corrs):.6f} max {corrs.max():.6f}")
    offsets = sorted({tuple(e["offset"]) for e in entries})
    print(f"offsets used: {offsets}")
    if len(entries) != 68 or distinct != 68 or corrs.min() <= 0.999:
        print("mapping check FAILED (need 68 distinct images with corr > 0.999)", file=sys.stderr)
        return 1
    args.out.write_text(json.dumps(entries, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
