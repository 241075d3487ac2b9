"""Degradation operators y = Φx + n (Eq. 1) for block CS, CASSI and SR."""

from __future__ import annotations

from ..facts import TASKS, WAVELENGTHS_28
from .base import Operator, per_sample
from .cassi import CASSI, load_mask
from .cs import BlockCS
from .sr import SRBlur, bicubic_aligned, bicubic_on_grid, load_kernel_file, load_kernels, psf2otf

__all__ = [
    "Operator",
    "BlockCS",
    "CASSI",
    "SRBlur",
    "TASKS",
    "WAVELENGTHS_28",
    "bicubic_aligned",
    "bicubic_on_grid",
    "load_kernel_file",
    "load_kernels",
    "load_mask",
    "per_sample",
    "psf2otf",
]
