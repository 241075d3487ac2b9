#!/usr/bin/env python3
"""Give shipped CASSI models another initial estimate x⁰ without retraining, and re-measure their manifest entries.

    python scripts/retarget_start.py --data DATA_ROOT --warm-start gap-tv:45:0.16:8 cassi-lorun9 cassi-block9

Only the model file's ``x0`` (its JSON metadata) changes; every stored tensor is written back byte for byte, so
the weights (float16 adapters, int8 block9) stay exactly as trained. The manifest entry gets the new sha256 and
size, a note after its training command, and its metrics and sample figure measured again on the new file
(``publish_weights.measure``, ``sample_metrics.measure``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import publish_weights as P  # noqa: E402
import sample_metrics  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

from lorun_cli.io.checkpoint import META_KEY  # noqa: E402
from lorun_cli.io.paths import sha256_file  # noqa: E402
from lorun_cli.unfold.dun import WarmStart  # noqa: E402


def retarget(path: Path, start: WarmStart) -> None:
    """Rewrite ``path`` with ``x0 = start`` in its metadata, tensors untouched (atomic replace)."""
    tensors = load_file(str(path))
    with safe_open(str(path), framework="pt") as f:
        raw = dict(f.metadata() or {})
    meta = json.loads(raw[META_KEY])
    meta["config"]["x0"] = start.to_meta()
    raw[META_KEY] = json.dumps(meta, sort_keys=True)
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata=raw)
    os.replace(tmp, path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="+", help="manifest names of shipped CASSI models")
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--warm-start", required=True, help="gap-tv:N[:LAMBDA[:RANK[:INNER]]]")
    ap.add_argument("--note", default="", help="why (appended to the entry's command as a comment)")
    args = ap.parse_args()
    start = WarmStart.parse(args.warm_start)
    manifest = json.loads(P.MANIFEST.read_text())
    entries = {e["name"]: e for e in manifest["models"]}
    os.environ["LORUN_MANIFEST"] = str(P.MANIFEST)
    for name in args.names:
        e = entries[name]
        if e["task"] != "cassi":
            raise SystemExit(f"{name} is a {e['task']} model; only CASSI models have a GAP-TV start")
        dst = P.WEIGHTS / e["file"]
        retarget(dst, start)
        e.update(sha256=sha256_file(dst), bytes=dst.stat().st_size)
        note = f"served with --warm-start {args.warm_start} (trained from its earlier start; no retraining)"
        note += f"; {args.note}" if args.note else ""
        e["command"] = e["command"].split("  # served with")[0] + f"  # {note}"
        P.MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n")
    for name in args.names:
        e = entries[name]
        e["metrics"] = P.measure(e, args.data)
        e["sample"] = sample_metrics.measure(e)
        print(f"{name}: {e['metrics']}, sample {e['sample']['psnr']} dB")
        P.MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n")
    (P.ROOT / "lorun_cli" / "assets" / "weights_manifest.json").write_text(P.MANIFEST.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
