"""Task-level model construction and model files (full models, backbones and adapter sets)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from . import lora
from .errors import LorunError
from .facts import CASSI_BANDS, CASSI_STEP, CS_BLOCK, DEFAULT_RATIO, TASKS
from .io.checkpoint import atomic_path, load_checkpoint, save_checkpoint
from .io.paths import sha256_file
from .physics.cassi import CASSI
from .physics.cs import BlockCS, derive_sampling
from .unfold import DUN, parse_strategy

PHI_MODES = ("learn", "lora", "frozen")
FORMAT = "lorun-1"
TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    "cs": {"channels": 1, "algo": "pgd", "denoiser": "unet"},
    # CASSI: a ResUNet whose full-resolution width (32) exceeds the 28 bands (a 16-wide U-Net cannot carry a
    # per-band correction and barely learned), fed the mask side information (cond = 1 + bands), starting
    # from the cheap projected shift-back; stage noise levels start on a decaying schedule (docs/CASSI.md)
    "cassi": {"channels": CASSI_BANDS, "algo": "hqs", "denoiser": "resunet",
              "small": {"widths": [32, 64, 128, 128], "nb": 1, "act": "relu", "up": "shuffle", "cond": 1 + CASSI_BANDS},
              "sigmas": (0.1, 0.02), "floor": 1e-7},
    "sr": {"channels": 3, "algo": "hqs", "denoiser": "resunet"},
}


def build_model(
    task: str,
    strategy: str = "share9",
    denoiser: str | None = None,
    size: str = "small",
    algo: str | None = None,
    ratio: float = DEFAULT_RATIO,
    block: int = CS_BLOCK,
    gamma: float = 10.0,
    channels: int | None = None,
    step: int = CASSI_STEP,
    **dun_kwargs: Any,
) -> DUN:
    """A fresh DUN for ``task`` with the task's defaults (CS owns its learnable sampling matrix Φ).

    ``step``: the CASSI dispersion step the model is trained for (stored in the model file).
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; use one of {', '.join(TASKS)}")
    d = TASK_DEFAULTS[task]
    op = BlockCS(ratio, block) if task == "cs" else None
    if "floor" in d:
        dun_kwargs.setdefault("floor", d["floor"])
    fresh = "denoiser_kwargs" not in dun_kwargs
    if fresh and size in d and denoiser in (None, d["denoiser"]):
        dun_kwargs["denoiser_kwargs"] = d[size]
    model = DUN(
        channels or d["channels"],
        strategy,
        denoiser or d["denoiser"],
        size,
        algo or d["algo"],
        op=op,
        gamma=gamma,
        **dun_kwargs,
    )
    model.task = task
    if task == "cassi":
        model.cassi_step = int(step)
    if fresh and "sigmas" in d and "init" not in dun_kwargs:
        model.set_sigma_schedule(*d["sigmas"])
    return model


def derive_phi(model: DUN, phi0: Tensor, mode: str = "learn", gamma: float = 10.0) -> None:
    """Start a CS model's Φ from a backbone's Φ0 (resized to the model's ratio) and set how it adapts.

    ``learn``: Φ is a free parameter, stored with the adapters; ``lora``: Φ = derived Φ0 + A·B with the rank of
    Eq. 12 (only A, B are stored); ``frozen``: Φ stays the derived Φ0 (nothing stored).
    """
    if mode not in PHI_MODES:
        raise ValueError(f"unknown Φ mode {mode!r}; use one of {', '.join(PHI_MODES)}")
    op = model.op
    if not isinstance(op, BlockCS):
        raise ValueError("only CS models have a sampling matrix Φ to derive")
    with torch.no_grad():
        op.phi.copy_(derive_sampling(phi0, op.m))
    op.phi_mode = mode
    if mode != "learn":
        op.phi.requires_grad_(False)
        op.phi._lorun_derived = True  # rebuilt from the backbone on load, so no file stores it
    if mode == "lora":
        lora.add_low_rank_update(op, "phi", gamma)


def _derived_keys(model: DUN) -> set[str]:
    """State-dict keys of tensors rebuilt from the backbone (never written to adapter files)."""
    return {k for k, p in model.state_dict(keep_vars=True).items() if getattr(p, "_lorun_derived", False)}


def model_meta(model: DUN) -> dict[str, Any]:
    """Metadata that rebuilds ``model`` (weights aside)."""
    meta: dict[str, Any] = {"format": FORMAT, "task": model.task, "config": model.config()}
    if isinstance(model.op, BlockCS):
        meta["op"] = {"ratio": model.op.ratio, "block": model.op.block}
        if model.op.phi_mode != "learn":
            meta["op"]["phi"] = model.op.phi_mode
    if model.task == "cassi":
        meta["op"] = {"bands": model.channels, "step": cassi_step(model)}
    if model.auto_policy:
        meta["auto_policy"] = model.auto_policy
    return meta


def cassi_step(model: DUN) -> int:
    """The CASSI dispersion step a model was trained for (files from before it was stored: the default)."""
    return int(getattr(model, "cassi_step", CASSI_STEP))


def cassi_operator(model: DUN, mask: Tensor) -> CASSI:
    """The CASSI operator of ``mask`` with the model's bands and dispersion step."""
    return CASSI(mask, bands=model.channels, step=cassi_step(model))


def _build_from_meta(meta: dict[str, Any], strategy: str | None = None) -> DUN:
    cfg = dict(meta["config"])
    cfg["strategy"] = strategy or cfg["strategy"]
    task = meta["task"]
    op_cfg = meta.get("op", {})
    gamma = cfg.pop("gamma", None) or 10.0
    model = build_model(
        task,
        cfg.pop("strategy"),
        cfg.pop("denoiser"),
        cfg.pop("size"),
        cfg.pop("algo"),
        ratio=op_cfg.get("ratio", DEFAULT_RATIO),
        block=op_cfg.get("block", CS_BLOCK),
        step=op_cfg.get("step", CASSI_STEP),
        gamma=gamma,
        channels=cfg.pop("channels"),
        ranks=cfg.pop("ranks", None) or None,
        denoiser_kwargs=cfg.pop("denoiser_kwargs"),
        floor=cfg.pop("floor", 1e-5),
        x0=cfg.pop("x0", None),  # a dict, an earlier file's "op" / "gap-tv:N", or absent (the operator's init)
    )
    return model


def backbone_sha256(model: DUN) -> str:
    """Content hash of the frozen/shared denoiser that adapters are bound to."""
    return lora.state_sha256(lora.backbone_state_dict(model.backbone))


def save_model(path: str | Path, model: DUN, extra: dict[str, Any] | None = None) -> str:
    """Write a model file; lorunK writes only its adapter set (+ ρ, λ, Φ) bound to its backbone hash."""
    meta = model_meta(model) | (extra or {})
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if model.strategy.kind == "lorun":
        meta["kind"] = "adapter"
        meta["backbone_sha256"] = backbone_sha256(model)
        prefix = "denoisers.0."
        derived = _derived_keys(model)
        state = {k: v for k, v in state.items() if k not in derived
                 and (not k.startswith(prefix) or k.rsplit(".", 1)[-1] in lora.ADAPTER_KEYS)}
    else:
        meta["kind"] = "full"
        if model.strategy.kind == "share":
            meta["backbone_sha256"] = backbone_sha256(model)
    if Path(path).suffix in (".pt", ".pth"):
        # a weights-only PyTorch file: tensors + plain JSON-able metadata (torch.load(weights_only=True) reads it)
        import json

        with atomic_path(path) as tmp:
            torch.save({"state_dict": state, "meta": json.loads(json.dumps(meta))}, tmp)
        return sha256_file(path)
    return save_checkpoint(path, state, meta)


def read_meta(path: str | Path) -> dict[str, Any]:
    """Metadata of a model file (loads the tensors too; files are small)."""
    return load_checkpoint(path)[1]


def load_model(path: str | Path, backbone: str | Path | None = None) -> DUN:
    """Load a full model, or an adapter set onto its backbone (given, or named in the file's metadata)."""
    tensors, meta = load_checkpoint(path)
    if meta.get("format") != FORMAT:
        raise LorunError(f"{path} is not a lorun model file (no '{FORMAT}' metadata); pass a file made by lorun")
    if meta.get("kind") != "adapter":
        model = _build_from_meta(meta)
        _load_state(model, tensors, path)
        model.auto_policy = meta.get("auto_policy")
        return model
    bb_path = _resolve_backbone(path, meta, backbone)
    base = load_model(bb_path)
    if base.strategy.kind != "share":
        raise LorunError(f"backbone {bb_path} is a {base.strategy} model; adapters need a shareK backbone")
    got = backbone_sha256(base)
    if got != meta["backbone_sha256"]:
        raise LorunError(
            f"adapters {Path(path).name} were trained on backbone {meta['backbone_sha256'][:12]}…, but "
            f"{Path(bb_path).name} is {got[:12]}…; pass --backbone with the backbone they were trained on"
        )
    model = _build_from_meta(meta, strategy=f"share{meta['config']['strategy'].removeprefix('lorun')}")
    model.denoisers[0].load_state_dict(base.denoisers[0].state_dict())
    gamma = meta["config"].get("gamma") or 10.0
    model.to_lorun(gamma, meta["config"].get("ranks") or None)
    phi_mode = meta.get("op", {}).get("phi", "learn")
    if phi_mode != "learn":
        derive_phi(model, base.op.phi, phi_mode, gamma)
    _load_state(model, tensors, path, partial=True)
    model.auto_policy = meta.get("auto_policy")
    return model


def _resolve_backbone(path: str | Path, meta: dict[str, Any], backbone: str | Path | None) -> Path:
    if backbone is not None:
        return Path(backbone)
    ref = meta.get("backbone")
    if not ref:
        raise LorunError(f"{path} is an adapter set with no backbone reference; pass --backbone FILE")
    local = Path(path).parent / Path(ref).name
    if local.exists():
        return local
    from .io.weights import resolve_model

    return resolve_model(ref)


def _load_state(model: DUN, tensors: dict[str, Tensor], path: str | Path, partial: bool = False) -> None:
    own = model.state_dict()
    bad = [k for k, v in tensors.items() if k not in own or own[k].shape != v.shape]
    missing = [] if partial else [k for k in own if k not in tensors]
    if bad or missing:
        raise LorunError(
            f"{path} does not match its own metadata ({len(bad)} unexpected/mis-shaped, {len(missing)} missing "
            f"tensors); the file is corrupt or was made by an incompatible lorun version"
        )
    with torch.no_grad():
        for k, v in tensors.items():
            own[k].copy_(v)


def strategy_label(model: DUN) -> str:
    """The strategy, plus the adapter settings where they differ from the paper's (γ = 10, Φ learned)."""
    label = str(model.strategy)
    if model.strategy.kind == "lorun":
        extra = [f"γ{model.gamma:g}"] if model.gamma != 10 else []
        mode = getattr(model.op, "phi_mode", "learn")
        extra += [f"Φ-{mode}"] if mode != "learn" else []
        label += f" ({', '.join(extra)})" if extra else ""
    return label


def describe(model: DUN) -> str:
    """One-line description, e.g. ``cs lorun9 unet/small pgd ratio=0.25``."""
    s = f"{model.task} {model.strategy} {model.denoiser_name}/{model.size} {model.algo}"
    if isinstance(model.op, BlockCS):
        s += f" ratio={model.op.ratio:g}"
    return s


__all__ = ["PHI_MODES", "cassi_operator", "cassi_step", "derive_phi", "build_model", "save_model", "load_model",
           "read_meta", "backbone_sha256", "describe", "strategy_label", "parse_strategy"]
