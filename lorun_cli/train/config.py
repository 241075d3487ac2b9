"""The training configuration: every knob of a run and its default, in one place (no torch import).

The command line (`lorun pretrain`, `lorun adapt`) takes its defaults from here, a YAML ``--config`` file may
set any field, and the training loop reads nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from ..facts import CS_BLOCK, DEFAULT_RATIO

#: Defaults that differ by phase (adapting LoRA adapters converges in fewer steps than pretraining).
PHASE_DEFAULTS: dict[str, dict[str, Any]] = {"adapt": {"steps": 1000}}


@dataclass
class TrainConfig:
    """Every knob of a training run (also what a YAML ``--config`` file may set)."""

    task: str = "cs"
    phase: str = "pretrain"  # denoise | pretrain | adapt
    init: str | None = None  # pretrain: start the denoiser(s) from this shareK file's shared denoiser
    sigma_max: float = 0.2  # denoise: training noise levels are drawn uniformly from [0, sigma_max]
    strategy: str = "share9"
    denoiser: str | None = None
    size: str = "small"
    algo: str | None = None
    ratio: float = DEFAULT_RATIO
    block: int = CS_BLOCK
    gamma: float = 10.0
    phi: str = "learn"  # adapt, CS: learn | lora | frozen (models.derive_phi)
    backbone: str | None = None
    data: str | None = None
    steps: int = 2000
    batch: int = 16
    patch: int | None = None  # default: facts.TRAIN_PATCH[task]
    lr: float = 1e-3
    min_lr: float = 1e-5
    warmup: int = 50
    clip: float = 1.0
    seed: int = 0
    val_every: int = 100
    ckpt_every: int = 100
    log_every: int = 10
    max_minutes: float | None = None
    out: str = "backbone.safetensors"  # adapt: BACKBONE-lorunK-gG.safetensors when not given
    resume: bool = False
    device: str = "cpu"
    noise: float | None = None  # measurement noise std (SR: maximum of a uniform draw; default DEFAULT_NOISE)
    val_limit: int | None = None
    stage_loss: float = 0.0  # weight of the mean L2 loss of stages 1..K-1 beside the final output's (Eq. 13)
    rgb_share: float = 0.0  # CASSI: share of training patches synthesised from RGB images (data.SpectralFromRGB)
    sr_kernel: str = "true"  # SR: the data step's kernel: true | auto | auto-raw (tasks.TaskData._sr_batch)
    # x⁰ of the trained model: op | gap-tv:N[:LAMBDA[:RANK[:INNER]]] (CASSI); None keeps the model's
    warm_start: str | None = None
    command: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def defaults(cls, phase: str = "pretrain") -> TrainConfig:
        """The defaults of ``phase`` (what the command line shows and uses when a flag is not given)."""
        return replace(cls(phase=phase), **PHASE_DEFAULTS.get(phase, {}))

    @classmethod
    def field_names(cls) -> set[str]:
        """Every option name a YAML file may set."""
        return {f.name for f in fields(cls)}
