"""Denoisers (proximal mapping modules) and their registry.

``build(name, channels, size, **overrides)`` creates a denoiser; ``config(name, size)`` gives the constructor
keyword arguments of a preset. A built model keeps ``model.name``, ``model.channels`` and ``model.config``, so
``spec(model)`` / ``from_spec(spec)`` store and rebuild the exact architecture (e.g. from a checkpoint).
"""

from __future__ import annotations

import copy
from typing import Any

from torch import nn

from .common import Denoiser, pad_to_multiple, sigma_map
from .resunet import ResUNet
from .spectral import Spectral
from .transformer import Transformer
from .unet import UNet

NAMES: tuple[str, ...] = ("unet", "transformer", "resunet", "spectral")
SIZES: tuple[str, ...] = ("small", "base")

_CLASSES: dict[str, type[Denoiser]] = {
    "unet": UNet,
    "transformer": Transformer,
    "resunet": ResUNet,
    "spectral": Spectral,
}

_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "unet": {
        "small": {"widths": [16, 32, 64], "act": "relu", "down": "pool", "skip": "cat"},
        "base": {"widths": [32, 64, 128, 256], "act": "relu", "down": "pool", "skip": "cat"},
    },
    "transformer": {
        "small": {"dim": 16, "blocks": [1, 2, 2], "heads": [1, 2, 4], "expansion": 2.0, "refine": 1},
        "base": {"dim": 32, "blocks": [2, 3, 4], "heads": [1, 2, 4], "expansion": 2.0, "refine": 2},
    },
    "resunet": {
        "small": {"widths": [16, 32, 64, 64], "nb": 1, "act": "relu", "up": "shuffle"},
        # base: 2.3 M parameters (7x small), sized to train in minutes on one GPU and ship under 10 MB as lorun9
        "base": {"widths": [32, 64, 128, 256], "nb": 1, "act": "relu", "up": "shuffle"},
    },
    "spectral": {
        "small": {"dim": 28, "blocks": [1, 1, 1], "heads": [1, 2, 4], "expansion": 2.0},
        "base": {"dim": 40, "blocks": [2, 2, 2], "heads": [1, 2, 4], "expansion": 4.0},
    },
}


def _check_name(name: str) -> None:
    if name not in _CLASSES:
        raise ValueError(f"unknown denoiser {name!r}; choose one of {', '.join(NAMES)}")


def config(name: str, size: str = "small") -> dict[str, Any]:
    """Constructor keyword arguments (without ``channels``) of the ``size`` preset of denoiser ``name``."""
    _check_name(name)
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose one of {', '.join(SIZES)}")
    return copy.deepcopy(_PRESETS[name][size])


def build(name: str, channels: int, size: str = "small", **overrides: Any) -> Denoiser:
    """Build denoiser ``name`` for ``channels``-channel images from a preset, with keyword overrides."""
    kwargs = config(name, size)
    unknown = set(overrides) - set(kwargs) - {"cond"}
    if unknown:
        raise ValueError(f"unknown option(s) for {name}: {', '.join(sorted(unknown))}; "
                         f"valid: {', '.join(sorted(kwargs))}")
    kwargs.update(overrides)
    return _CLASSES[name](channels, **kwargs)


def spec(model: Denoiser) -> dict[str, Any]:
    """JSON-friendly description ``{"name", "channels", "config"}`` that :func:`from_spec` rebuilds."""
    return {"name": model.name, "channels": model.channels, "config": copy.deepcopy(model.config)}


def from_spec(desc: dict[str, Any]) -> Denoiser:
    """Rebuild a denoiser from :func:`spec` output (``size`` may be given instead of / besides ``config``)."""
    return build(desc["name"], int(desc["channels"]), desc.get("size", "small"), **desc.get("config", {}))


def param_count(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of (trainable) parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


__all__ = [
    "NAMES", "SIZES", "Denoiser", "UNet", "Transformer", "ResUNet", "Spectral",
    "build", "config", "spec", "from_spec", "param_count", "sigma_map", "pad_to_multiple",
]
