"""Rewrite the README's bundled-models table from weights_manifest.json (the numbers are never typed in).

    python scripts/readme_table.py            # rewrites the block between the README markers
"""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- models-table:begin -->", "<!-- models-table:end -->"
PROTOCOL = {"cs": "gray 8-bit", "sr": "Y, border = scale", "cassi": "float, 28-band mean"}


def setting(m: dict) -> str:
    extra = ""
    if m.get("variant") and m["variant"] != "compact":  # another training recipe, served by name
        extra = f" ({m['variant']} variant)"
    elif m.get("variant") and "gamma" in m:  # adapter settings other than the paper's γ = 10 with a learned Φ
        extra = f" (γ {m['gamma']:g}" + (f", Φ {m['phi']}" if m.get("phi", "learn") != "learn" else "") + ")"
    if m["task"] == "cs":
        return f"cs {m['ratio'] * 100:g} %, {m['strategy']}{extra}"
    return f"{m['task']}, {m['strategy']}{extra}"


def label(dataset: str, metric: dict) -> str:
    """'set11', or 'set5 ×3 K5' where the metric records a scale and kernel."""
    return f"{dataset} ×{metric['scale']} {metric['kernels']}" if "scale" in metric else dataset


def table(manifest: dict) -> str:
    order = {"cs": 0, "sr": 1, "cassi": 2}
    models = sorted(manifest["models"], key=lambda m: (order[m["task"]], m.get("ratio", 0), m["name"]))
    rows = ["| name | setting | file | headline result (protocol) | training (this phase) |",
            "|---|---|---:|---|---|"]
    for m in models:
        ds, met = next(iter(m["metrics"].items()))
        t = m["training"]
        rows.append(f"| `{m['name']}` | {setting(m)} | {m['bytes'] / 1e6:.2f} MB | {label(ds, met)}: "
                    f"{met['psnr']:.2f} dB / SSIM {met['ssim']:.3f} ({PROTOCOL[m['task']]}) | "
                    f"{t['steps']} steps, {t['minutes']:.1f} min |")
    return "\n".join(rows)


def main() -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    new = table(json.loads((ROOT / "weights_manifest.json").read_text()))
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise SystemExit(f"README.md has no {BEGIN} … {END} block")
    readme.write_text(pattern.sub(lambda _m: f"{BEGIN}\n{new}\n{END}", text))


if __name__ == "__main__":
    main()
