"""Copy trained models into the package and (re)write weights_manifest.json with sha256, bytes, the exact
training command and metrics measured on the shipped files.

    python scripts/publish_weights.py RUNS_DIR --data DATA_ROOT [--names cs-lorun9-r25 ...]

Backbones (shareK) are stored as float32: adapters are bound to the content hash of their backbone.
Adapter sets are stored as float16 and blockK models as int8 with per-channel scales (biases and stage
scalars float16), to keep every file under 20 MB; both are cast back to float32 on load, and every metric in
the manifest is measured on the shipped files.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import sample_metrics  # scripts/: the shipped-model check's sample figure
import torch

from lorun_cli.bench import BenchOptions, Method, _score_method, run_sr_auto_bench
from lorun_cli.facts import HEADLINE_TESTSET as HEADLINE
from lorun_cli.io import datasets as DS
from lorun_cli.io.checkpoint import load_checkpoint, quantize_int8, save_checkpoint
from lorun_cli.io.paths import sha256_file
from lorun_cli.metrics import PROTOCOL_TEXT
from lorun_cli.restore import PROTOCOL

ROOT = Path(__file__).resolve().parent.parent
WEIGHTS = ROOT / "lorun_cli" / "assets" / "weights"
MANIFEST = ROOT / "weights_manifest.json"
SETTING = {"sr": {"scale": 3, "kernels": "K5"}}  # the headline setting where a test set needs one
EVAL = {task: {"dataset": name, **SETTING.get(task, {})} for task, name in HEADLINE.items()}  # more: RESULTS.md


def trained_on(meta: dict, given: str | None = None) -> str:
    """Where the model was trained: ``given`` (--trained-on), else the run's recorded device."""
    tr = meta.get("training", {})
    device = given or tr.get("device_name") or ("CPU" if tr.get("config", {}).get("device", "cpu") == "cpu" else None)
    if device is None:
        raise SystemExit(f"{meta['config']['strategy']}: trained on a GPU whose name the file does not record; "
                         "give --trained-on NAME")
    return f"{device}-trained"


def describe(name: str, meta: dict, device: str | None = None) -> str:
    cfg = meta["config"]
    task = meta["task"]
    what = {"share": "shared backbone (LoRun phase 1)", "lorun": "stage-wise LoRA adapters (LoRun phase 2)",
            "block": "independent per-stage denoisers (baseline)"}[re.match(r"[a-z]+", cfg["strategy"]).group(0)]
    extra = f", ratio {meta['op']['ratio']:g}" if "ratio" in meta.get("op", {}) else ""
    if cfg["strategy"].startswith("lorun") and (cfg.get("gamma") or 10.0) != 10.0:
        extra += f", γ {cfg['gamma']:g}"
    if meta.get("op", {}).get("phi", "learn") != "learn":
        extra += f", Φ = backbone's resized Φ{' + low-rank update' if meta['op']['phi'] == 'lora' else ''}"
    if meta.get("auto_policy"):
        extra += f"; trained on the kernel estimator's estimates (serves --kernel auto, {meta['auto_policy']} policy)"
    return f"{task} {cfg['strategy']}: {what}, {cfg['denoiser']}/{cfg['size']}, {cfg['algo']}{extra}; " + trained_on(
        meta, device)


def publish(src: Path, name: str, device: str | None = None) -> dict:
    tensors, meta = load_checkpoint(src)
    kind = re.match(r"[a-z]+", meta["config"]["strategy"]).group(0)
    if kind != "share":
        tensors = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
    if kind == "block":
        tensors = quantize_int8(tensors)
    if meta.get("backbone"):
        meta["backbone"] = Path(meta["backbone"]).name.removesuffix(".safetensors")
    dst = WEIGHTS / f"{name}.safetensors"
    WEIGHTS.mkdir(parents=True, exist_ok=True)
    save_checkpoint(dst, tensors, meta)
    tr = meta.get("training", {})
    entry = {
        "name": name,
        "task": meta["task"],
        "strategy": meta["config"]["strategy"],
        "denoiser": f"{meta['config']['denoiser']}/{meta['config']['size']}",
        "file": dst.name,
        "sha256": sha256_file(dst),
        "bytes": dst.stat().st_size,
        "urls": [],
        "description": describe(name, meta, device),
        "command": tr.get("command", ""),
        "training": {k: tr[k] for k in ("steps", "minutes", "it_s", "threads", "val_psnr", "stop", "peak_rss_mb",
                                        "peak_gpu_mb", "device_name", "skipped_steps") if k in tr},
    }
    if "ratio" in meta.get("op", {}):
        entry["ratio"] = meta["op"]["ratio"]
    if kind == "lorun":
        gamma, phi = meta["config"].get("gamma") or 10.0, meta.get("op", {}).get("phi", "learn")
        entry["gamma"] = gamma
        if "ratio" in meta.get("op", {}):
            entry["phi"] = phi
            if gamma != 10.0 or phi != "learn":  # a CS ratio's second model: served only when asked by name
                entry["variant"] = "compact"
    if meta.get("backbone"):
        entry["backbone"] = meta["backbone"]
    if meta.get("auto_policy"):  # blind SR: restore/bench serve --kernel auto with it (restore.default_model_name)
        entry.update(kernel="auto", auto_policy=meta["auto_policy"])
    return entry


def measure(entry: dict, data_root: Path) -> dict:
    task = entry["task"]
    if entry.get("kernel") == "auto":  # blind SR adapters: scored as `--kernel auto` runs them, true kernel K5
        opts = BenchOptions(task="sr", model=entry["name"], compare=[], data=data_root, threads=1, memory=False,
                            dataset=EVAL["sr"]["dataset"], scale=EVAL["sr"]["scale"], kernels="auto:K5")
        res = run_sr_auto_bench(opts, quiet=True)
        auto = next(r for r in res.rows if r["strategy"] == "auto")
        return {opts.dataset: {"psnr": round(auto["psnr"], 3), "scale": opts.scale, "kernels": "auto (true: K5)",
                               "protocol": f"{res.protocol}; the estimated kernel"}}
    opts = BenchOptions(task=task, model=entry["name"], compare=[], data=data_root, threads=1, memory=False,
                        ratio=entry.get("ratio"), **EVAL[task])
    items = DS.load_testset(task, opts.dataset, data_root)
    scores, _, _, _ = _score_method(Method(entry["name"], opts, is_model=True), opts, items)
    setting = {k: v for k, v in EVAL[task].items() if k != "dataset"}
    proto = PROTOCOL_TEXT[PROTOCOL[task]] + (f", border {opts.scale}" if task == "sr" else "")
    return {f"{opts.dataset}": {"psnr": round(scores["psnr"], 3), "ssim": round(scores["ssim"], 4),
                                **setting, "protocol": proto}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--names", nargs="*", help="model names (= file stems in RUNS); default: all models there")
    ap.add_argument("--variant", help="mark these entries as a variant (served only when asked for by name)")
    ap.add_argument("--trained-on", help="the training device's name, for files that do not record it")
    args = ap.parse_args()
    torch.set_num_threads(1)
    names = args.names or sorted(p.stem for p in args.runs.glob("*.safetensors"))
    old = {e["name"]: e for e in json.loads(MANIFEST.read_text())["models"]} if MANIFEST.exists() else {}
    # backbones first: adapters reference them
    names.sort(key=lambda n: 0 if "share" in n else 1)
    for n in names:
        old[n] = publish(args.runs / f"{n}.safetensors", n, args.trained_on)
        if args.variant:
            old[n]["variant"] = args.variant
        print(f"published {n}: {old[n]['bytes']:,} B")
    import os

    os.environ["LORUN_MANIFEST"] = str(MANIFEST)
    MANIFEST.write_text(json.dumps({"version": 1, "models": list(old.values())}, indent=2) + "\n")
    for n in names:
        old[n]["metrics"] = measure(old[n], args.data)
        old[n]["sample"] = sample_metrics.measure(old[n])  # the figure tests/test_shipped_models.py checks
        print(f"measured {n}: {old[n]['metrics']}, sample {old[n]['sample']['psnr']} dB")
        MANIFEST.write_text(json.dumps({"version": 1, "models": list(old.values())}, indent=2) + "\n")
    (ROOT / "lorun_cli" / "assets" / "weights_manifest.json").write_text(MANIFEST.read_text())


if __name__ == "__main__":
    main()
