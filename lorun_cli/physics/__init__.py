"""Degradation operators y = Φx + n (Eq. 1) for block CS, CASSI and SR."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor

from ..facts import TASKS, WAVELENGTHS_28
from .base import Operator, per_sample
from .cassi import CASSI, load_mask
from .cs import BlockCS
from .sr import SRBlur, bicubic_aligned, load_kernel_file, load_kernels, psf2otf


def make_operator(task: str, **kw: Any) -> Operator:
    """Build the operator of ``task``.

    - ``cs``: ``ratio``, ``block=32``, ``pad_mode="reflect"``.
    - ``cassi``: ``mask`` (tensor, path, or None for the bundled mask), ``bands``, ``step``
      (default: ``facts.CASSI_BANDS``, ``facts.CASSI_STEP``).
    - ``sr``: ``scale`` and ``kernel`` (tensor, a bundled name "K1".."K12", or a kernel file path).
    """
    name = task.lower()
    if name == "cs":
        return BlockCS(**kw)
    if name == "cassi":
        mask = kw.pop("mask", None)
        if not isinstance(mask, Tensor):
            mask = load_mask(mask)
        return CASSI(mask, **kw)
    if name == "sr":
        if "kernel" not in kw or "scale" not in kw:
            raise ValueError("the sr operator needs kernel= and scale=")
        kernel = kw.pop("kernel")
        if isinstance(kernel, str) and kernel.upper() in {f"K{i}" for i in range(1, 13)}:
            kernel = load_kernels()[kernel.upper()]
        elif isinstance(kernel, (str, Path)):
            kernel = load_kernel_file(kernel)
        return SRBlur(kernel, **kw)
    raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")


__all__ = [
    "Operator",
    "BlockCS",
    "CASSI",
    "SRBlur",
    "TASKS",
    "WAVELENGTHS_28",
    "bicubic_aligned",
    "load_kernel_file",
    "load_kernels",
    "load_mask",
    "make_operator",
    "per_sample",
    "psf2otf",
]
