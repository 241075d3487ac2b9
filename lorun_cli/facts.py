"""Facts the whole project shares, each defined here once (no torch import: the CLI reads them at start-up)."""

from __future__ import annotations

#: The restoration tasks, in the order every table and listing uses.
TASKS: tuple[str, ...] = ("cs", "sr", "cassi")

#: Band centres (nm) of the standard 28-band CASSI simulation setup.
WAVELENGTHS_28: tuple[float, ...] = (
    453.5, 457.5, 462.0, 466.0, 471.5, 476.5, 481.5, 487.0, 492.5, 498.0, 504.0, 510.0, 516.0, 522.5,
    529.5, 536.5, 544.0, 551.5, 558.5, 567.5, 575.5, 584.5, 594.5, 604.0, 614.5, 625.0, 636.5, 648.0,
)
#: CASSI spectral bands and dispersion step (pixels of shift per band) of the simulation setup.
CASSI_BANDS: int = len(WAVELENGTHS_28)
CASSI_STEP: int = 2

#: Classical, training-free baselines per task (the names ``classical.run_baseline`` accepts).
BASELINES: dict[str, tuple[str, ...]] = {"cs": ("linear", "tv"), "sr": ("bicubic",), "cassi": ("gap-tv",)}
#: The learned strategies the weights manifest ships per task (and ``bench --compare`` accepts by name).
LEARNED: tuple[str, ...] = ("block1", "share9", "block9", "lorun9")

#: Each task's headline test set: the one the weights manifest's metrics are measured on, and bench's default.
HEADLINE_TESTSET: dict[str, str] = {"cs": "set11", "sr": "set5", "cassi": "cave"}

#: Image file extensions read as images (inputs, test sets, training folders).
IMAGE_EXTS: tuple[str, ...] = (".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg", ".pgm", ".ppm", ".webp", ".gif")

#: Full-range ITU-R BT.601 luma weights (R, G, B).
LUMA_BT601: tuple[float, float, float] = (0.299, 0.587, 0.114)

#: Default measurement noise std in [0, 1] units: SR training draws σ uniformly from [0, this].
DEFAULT_NOISE: float = 2.55 / 255
#: Default CS sampling ratio (training, and the bundled model restore/bench pick without --ratio).
DEFAULT_RATIO: float = 0.25
#: CS block size B (pixels per side).
CS_BLOCK: int = 32

#: SR ``--grid`` values: where the LR pixels sit on the HR grid under ``--kernel auto`` (estimated, resizers'
#: centred grid, top-left decimation; ``sr_estimate.grid_centre``).
SR_GRIDS: tuple[str, ...] = ("auto", "centre", "top-left")

#: SR scales the models and the kernel estimator are trained on (restore also runs ×1 and ×5–×8).
SR_SCALES: tuple[int, ...] = (2, 3, 4)

#: Training patch size per task (pixels per side; SR patches are multiples of 12 so scales 2, 3, 4 divide them).
TRAIN_PATCH: dict[str, int] = {"cs": 32, "sr": 72, "cassi": 64}

__all__ = [
    "BASELINES", "CASSI_BANDS", "CASSI_STEP", "CS_BLOCK", "DEFAULT_NOISE", "DEFAULT_RATIO", "HEADLINE_TESTSET",
    "IMAGE_EXTS", "LEARNED", "LUMA_BT601", "SR_GRIDS", "SR_SCALES", "TASKS", "TRAIN_PATCH", "WAVELENGTHS_28",
]
