"""File I/O: images, hyperspectral cubes, CASSI measurements and checkpoints."""

from lorun_cli.io.checkpoint import (
    atomic_path,
    atomic_write_bytes,
    load_checkpoint,
    save_checkpoint,
    sha256_file,
)
from lorun_cli.io.images import (
    cie_cmf,
    cube_preview_rgb,
    read_cube,
    read_cube_wavelengths,
    read_image,
    read_measurement,
    write_cube,
    write_image,
)

__all__ = [
    "atomic_path",
    "atomic_write_bytes",
    "cie_cmf",
    "cube_preview_rgb",
    "load_checkpoint",
    "read_cube",
    "read_cube_wavelengths",
    "read_image",
    "read_measurement",
    "save_checkpoint",
    "sha256_file",
    "write_cube",
    "write_image",
]
