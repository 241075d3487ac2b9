"""Every bundled checkpoint matches weights_manifest.json, loads, and restores its sample as recorded.

The expected figures live in the manifest (``"sample"`` of each entry, written by
``python scripts/sample_metrics.py``), so retraining a model means rerunning that script, and a file or a
figure that changes without it fails here.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import sample_metrics  # noqa: E402

MANIFEST = json.loads(sample_metrics.MANIFEST.read_text())
ENTRIES = MANIFEST["models"]


def test_manifest_copy_and_files_agree() -> None:
    shipped = ROOT / "lorun_cli" / "assets" / "weights_manifest.json"
    assert json.loads(shipped.read_text()) == MANIFEST, "run python scripts/sync_manifest.py"
    files = sorted(p.name for p in sample_metrics.WEIGHTS.glob("*.safetensors"))
    assert files == sorted(e["file"] for e in ENTRIES), "bundled files and manifest entries differ"
    assert len({e["name"] for e in ENTRIES}) == len(ENTRIES)


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["name"] for e in ENTRIES])
def test_bundled_file_matches_manifest_and_its_sample_psnr(entry: dict) -> None:
    path = sample_metrics.WEIGHTS / entry["file"]
    data = path.read_bytes()
    assert len(data) == entry["bytes"], f"{entry['file']}: {len(data)} bytes, manifest says {entry['bytes']}"
    assert hashlib.sha256(data).hexdigest() == entry["sha256"], f"{entry['file']}: sha256 differs from the manifest"
    rec = entry.get("sample")
    assert rec is not None, f"{entry['name']} has no sample figure; run python scripts/sample_metrics.py"
    assert rec["input"] == sample_metrics.PLAN[entry["task"]]["input"]
    got = sample_metrics.measure(entry)
    assert got["psnr"] == pytest.approx(rec["psnr"], abs=sample_metrics.TOLERANCE_DB), (
        f"{entry['name']}: {got['psnr']:.3f} dB on {rec['input']}, manifest records {rec['psnr']:.3f} dB")
    assert got["psnr"] > 20  # a restoration, not noise: every shipped model beats 20 dB on its sample


def test_every_task_serves_its_lorun9_by_default() -> None:
    """A variant is served only by name, so each task's lorun9 must not be one (CS: at the default ratio)."""
    from lorun_cli.restore import default_model_name

    for task, name in (("cs", "cs-lorun9-r25"), ("sr", "sr-lorun9"), ("cassi", "cassi-lorun9")):
        assert default_model_name(task, "lorun9") == name
