#!/usr/bin/env python3
"""Summarise ``sr_auto_tune.py --cases`` files side by side over a range of held-out images.

    python scripts/sr_cases_compare.py shipped=base.jsonl cand=e2e.jsonl --images 20-39

Per file: cases, mean auto − bicubic (dB), the worst family mean, the worst case, cases under bicubic and the mean
relative kernel error of the raw estimate; then each family's mean. Only the cases whose image index lies in
``--images`` (inclusive) count, so selection and check can use disjoint images.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys


def summary(path: str, lo: int, hi: int) -> dict:
    """The statistics of one cases file over images lo … hi."""
    rows = [json.loads(x) for x in open(path) if x.strip()]
    rows = [r for r in rows if lo <= r["image"] <= hi]
    if not rows:
        sys.exit(f"sr_cases_compare: no cases for images {lo}-{hi} in {path}")
    d = [r["auto_minus_bicubic"] for r in rows]
    fams: dict[str, list[float]] = {}
    for r in rows:
        fams.setdefault(r["family"], []).append(r["auto_minus_bicubic"])
    fam = {f: round(statistics.fmean(v), 3) for f, v in sorted(fams.items())}
    return {"cases": len(rows), "mean": round(statistics.fmean(d), 3), "worst_family": min(fam.values()),
            "worst_case": round(min(d), 3), "under_bicubic": sum(v < 0 for v in d),
            "kernel_error": round(statistics.fmean(r["kernel_error"] for r in rows), 4), **fam}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", help="NAME=CASES.jsonl")
    ap.add_argument("--images", default="0-39", help="held-out image indices, inclusive (e.g. 20-39)")
    args = ap.parse_args()
    lo, hi = (int(v) for v in args.images.split("-"))
    for item in args.files:
        name, _, path = item.partition("=")
        print(json.dumps({"name": name, "images": args.images, **summary(path or name, lo, hi)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
