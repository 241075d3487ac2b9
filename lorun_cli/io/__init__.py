"""File I/O: images, hyperspectral cubes, CASSI measurements and checkpoints.

The names below are imported lazily (PEP 562), so that ``lorun_cli.io.weights`` (the `lorun weights`
commands) loads without importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "atomic_path": "checkpoint",
    "atomic_write_bytes": "checkpoint",
    "load_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
    "sha256_file": "paths",
    "cache_dir": "paths",
    "cie_cmf": "images",
    "cube_preview_rgb": "images",
    "read_cube": "images",
    "read_cube_wavelengths": "images",
    "read_image": "images",
    "read_measurement": "images",
    "write_cube": "images",
    "write_image": "images",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
