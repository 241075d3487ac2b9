#!/usr/bin/env python3
"""Copy the top-level weights_manifest.json (the source) into lorun_cli/assets/ (the shipped copy).

Usage: python scripts/sync_manifest.py [--check]
With --check nothing is written; the exit status is 1 when the copy is missing or differs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "weights_manifest.json"
COPY = ROOT / "lorun_cli" / "assets" / "weights_manifest.json"


def main(argv: list[str] | None = None) -> int:
    """Sync (or with --check, compare) the manifest copy; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report whether the copy is in sync")
    args = parser.parse_args(argv)
    data = SOURCE.read_bytes()
    json.loads(data)  # refuse to ship a manifest that is not valid JSON
    in_sync = COPY.is_file() and COPY.read_bytes() == data
    if args.check:
        if not in_sync:
            rel = COPY.relative_to(ROOT)
            print(f"{rel} is out of date; run: python scripts/sync_manifest.py", file=sys.stderr)
            return 1
        return 0
    if not in_sync:
        COPY.parent.mkdir(parents=True, exist_ok=True)
        COPY.write_bytes(data)
        print(f"updated {COPY.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
