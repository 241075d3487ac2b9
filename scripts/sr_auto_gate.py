#!/usr/bin/env python3
"""A width gate between two `--kernel auto` networks, scored on per-case held-out results (not a test set).

    python scripts/sr_auto_gate.py PLAIN_CASES.jsonl BLIND_CASES.jsonl [--split 20]

Both files come from ``scripts/sr_auto_tune.py --cases`` on the same held-out images and degradations (the
estimate, hence its width, is the same in both). The gate restores with the second network when the estimated
kernel width σ_eff ≥ t, else with the first. t is chosen on the images below ``--split`` (largest worst-family
mean of auto − bicubic, ties by the overall mean) and checked on the others.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

Key = tuple[int, int, str]


def load(path: Path) -> dict[Key, dict]:
    return {(r["scale"], r["image"], r["family"]): r for r in map(json.loads, path.read_text().splitlines())}


def score(plain: dict[Key, dict], blind: dict[Key, dict], keys: list[Key], t: float | None) -> dict:
    """Worst family, mean, worst case and cases under bicubic when the blind network serves widths ≥ t."""
    fams: dict[str, list[float]] = {}
    for k in keys:
        src = blind if t is not None and blind[k]["width"] >= t else plain
        fams.setdefault(k[2], []).append(src[k]["auto_minus_bicubic"])
    allv = [v for vs in fams.values() for v in vs]
    means = {f: round(statistics.fmean(v), 3) for f, v in fams.items()}
    return {"t": t, "worst_family": min(means.values()), "mean": round(statistics.fmean(allv), 3),
            "worst_case": round(min(allv), 3), "under_bicubic": sum(v < 0 for v in allv), "families": means}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("plain", type=Path)
    ap.add_argument("blind", type=Path)
    ap.add_argument("--split", type=int, default=20, help="images below this index choose t, the rest check it")
    args = ap.parse_args()
    plain, blind = load(args.plain), load(args.blind)
    keys = sorted(plain)
    if sorted(blind) != keys or any(abs(plain[k]["width"] - blind[k]["width"]) > 1e-3 for k in keys):
        raise SystemExit("the two files must hold the same cases and estimates (same sr_auto_tune.py settings)")
    choose = [k for k in keys if k[1] < args.split]
    check = [k for k in keys if k[1] >= args.split]
    grid = [round(0.3 + 0.1 * i, 2) for i in range(40)]

    def rank(t: float) -> tuple[float, float]:
        r = score(plain, blind, choose, t)
        return r["worst_family"], r["mean"]

    best = max(grid, key=rank)
    print(json.dumps({"chosen_on": f"images < {args.split}", "t": best}))
    for part, ks in (("check", check), ("all", keys)):
        for name, t in (("plain", None), ("gate", best), ("blind", 0.0)):
            print(json.dumps({"part": part, "network": name, **score(plain, blind, ks, t)}))


if __name__ == "__main__":
    main()
