"""The training loop of Algorithm 1: phase 1 ``pretrain`` (shareK / blockK / block1), phase 2 ``adapt`` (lorunK).

An optional phase 0, ``denoise``, trains the shared denoiser of a shareK network as a noise-level-conditioned
Gaussian denoiser with no operator in the loop; ``pretrain --init FILE`` then starts from it.

One loop serves both phases; what differs is which parameters are trainable (the optimiser only ever
sees those, so a frozen backbone gets neither gradients nor optimiser state).
"""

from __future__ import annotations

import json
import math
import os
import statistics
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from .. import lora, models
from ..errors import Interrupted, LorunError, OptionError, UsageError
from ..io.checkpoint import atomic_path
from ..metrics import psnr
from ..runtime import deferred_interrupts, peak_rss_mb
from ..unfold import DUN, param_report
from ..validate import WARM_START_SPELLING
from .config import TrainConfig


class SpikeGuard:
    """Skips an update whose loss is not finite or ``factor`` times the median of the last ``window``
    taken steps (a bad batch must not wreck Adam's moments: seen once on a GPU run, a loss of 530 among
    losses of 0.003, then 7e30, then NaN); ``patience`` skips in a row stop the run as diverged."""

    def __init__(self, factor: float = 20.0, window: int = 50, patience: int = 20, warm: int = 10) -> None:
        self.factor, self.patience, self.warm = factor, patience, warm
        self.recent: deque[float] = deque(maxlen=window)
        self.skipped = self.in_row = 0

    def take(self, loss: float, step: int) -> bool:
        """True: apply this step's update; False: skip it (LorunError once the run has diverged)."""
        spike = len(self.recent) >= self.warm and loss > self.factor * statistics.median(self.recent)
        if math.isfinite(loss) and not spike:
            self.recent.append(loss)
            self.in_row = 0
            return True
        self.skipped += 1
        self.in_row += 1
        if self.in_row >= self.patience:
            raise LorunError(f"training diverged at step {step}: {self.in_row} losses in a row non-finite or over "
                             f"{self.factor:g}x the recent median; resume from the last checkpoint with a lower "
                             f"--lr (--resume keeps the schedule)")
        return False


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up then cosine decay to ``min_lr``."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * min(1.0, t)))


def l2_loss(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Training objective: mean squared error between output and ground truth.  # Eq. 13"""
    return torch.mean((x - ref) ** 2)


def stage_loss(outs: list[torch.Tensor], ref: torch.Tensor, weight: float) -> torch.Tensor:
    """Eq. 13 on the last stage's output plus ``weight`` × the mean of Eq. 13 over the earlier stages
    (deep supervision: asks every stage to stay an image; ``weight`` 0 is the paper's loss)."""
    loss = l2_loss(outs[-1], ref)
    if weight and len(outs) > 1:
        loss = loss + weight * torch.stack([l2_loss(o, ref) for o in outs[:-1]]).mean()
    return loss


def build_for_phase(cfg: TrainConfig) -> DUN:
    """Phase 0/1 build a fresh network (phase 1 optionally from ``--init``); phase 2 loads the backbone,
    freezes it and injects adapters."""
    if cfg.phase in ("denoise", "pretrain"):
        strat = models.parse_strategy(cfg.strategy)
        if strat.kind == "lorun":
            raise UsageError("pretrain trains shareK/blockK/block1; use `lorun adapt --backbone …` for lorunK")
        if cfg.phase == "denoise" and strat.kind != "share":
            raise OptionError("denoise", None, f"trains the shared denoiser of a shareK network, not {strat}")
        model = models.build_model(cfg.task, cfg.strategy, cfg.denoiser, cfg.size, cfg.algo, cfg.ratio, cfg.block)
        if cfg.init:
            init_denoisers(model, cfg.init)
        return set_warm_start(model, cfg)
    if not cfg.backbone:
        raise UsageError("adapt needs --backbone FILE (a shareK model from `lorun pretrain`)")
    base = models.load_model(cfg.backbone)
    if base.strategy.kind != "share":
        raise OptionError("backbone", cfg.backbone, f"a {base.strategy} model; adapt needs a shareK backbone")
    stages = models.parse_strategy(cfg.strategy).stages if cfg.strategy else base.strategy.stages
    if stages != base.strategy.stages:
        base.strategy = models.parse_strategy(f"share{stages}")
        base.rho_raw = nn.Parameter(base.rho_raw.detach()[:1].repeat(stages))
        base.lam_raw = nn.Parameter(base.lam_raw.detach()[:1].repeat(stages))
    cfg.task = base.task
    if cfg.task != "cs" and cfg.phi != "learn":
        raise OptionError("phi", cfg.phi, f"is for CS (the sampling matrix Φ); {cfg.task} has no learned operator")
    if cfg.phi not in models.PHI_MODES:
        raise OptionError("phi", repr(cfg.phi), f"use one of {', '.join(models.PHI_MODES)}")
    base.to_lorun(cfg.gamma)
    if cfg.task == "cs":
        # another sampling ratio (Table VI): Φ starts from the backbone's, then is learned, low-rank
        # updated or kept as derived (--phi)
        from ..physics.cs import BlockCS

        phi0 = base.op.phi.detach()
        if abs(base.op.ratio - cfg.ratio) > 1e-9:
            base.op = BlockCS(cfg.ratio, base.op.block)
        models.derive_phi(base, phi0, cfg.phi, cfg.gamma)
    if cfg.init:
        init_adapters(base, cfg.init, cfg.backbone)
    return set_warm_start(base, cfg)


def set_warm_start(model: DUN, cfg: TrainConfig) -> DUN:
    """Give the model the initial estimate ``--warm-start`` asks for (kept in the trained file)."""
    if cfg.warm_start is None:
        return model
    try:
        x0 = model.x0.override(cfg.warm_start)
    except ValueError as e:
        raise OptionError("warm_start", cfg.warm_start, f"use {WARM_START_SPELLING}") from e
    if x0.method == "gap-tv" and model.task != "cassi":
        raise OptionError("warm_start", cfg.warm_start, f"GAP-TV starts are for CASSI, not {model.task}")
    model.x0 = x0
    return model


def init_adapters(model: DUN, path: str, backbone: str) -> None:
    """Start phase 2 from an earlier adapter set on the same backbone (continue with other settings)."""
    src = models.load_model(path, backbone)
    if not _load_whole(model, src):
        raise OptionError("init", path, f"an adapter set of another shape ({src.strategy}, "
                          f"{src.config().get('gamma')}); pass the --gamma and --stages it was trained with")


def _load_whole(model: DUN, src: DUN) -> bool:
    """Load ``src`` into ``model`` when it is the same network (task, strategy, config but its start x⁰);
    False otherwise. The model takes ``src``'s x⁰ too: a continued run keeps its file's start unless
    ``--warm-start`` sets another."""
    same = {k: v for k, v in src.config().items() if k != "x0"} == {
        k: v for k, v in model.config().items() if k != "x0"}
    if src.task != model.task or src.strategy != model.strategy or not same:
        return False
    model.load_state_dict(src.state_dict())
    model.x0 = src.x0
    return True


def init_denoisers(model: DUN, path: str) -> None:
    """Copy the shared denoiser of the shareK file ``path`` into every denoiser of ``model``.

    A file of the same strategy as ``model`` (e.g. an earlier block9 leg) is loaded whole instead, stage
    scalars included, so a run can continue with other settings (a larger patch) from where it stopped.
    """
    src = models.load_model(path)
    if _load_whole(model, src):
        return
    if src.strategy.kind != "share" or src.task != model.task:
        raise OptionError("init", path, f"expected a {model.task} shareK file (e.g. from `pretrain --denoise`), "
                          f"got {src.task} {src.strategy}")
    state = src.denoisers[0].state_dict()
    for d in model.denoisers:
        try:
            d.load_state_dict(state)
        except RuntimeError:
            raise OptionError("init", path, f"its denoiser differs from this run's ({src.denoiser_name} "
                              f"{src.denoiser_kwargs}); pass the same --denoiser/--size") from None


def denoise_step(model: DUN, task_data: Any, gen: torch.Generator, device: torch.device,
                 sigma_max: float) -> torch.Tensor:
    """Phase 0 loss: ‖D(x + σn, σ) − x‖² with σ ~ U[0, sigma_max] per sample, no operator in the loop."""
    x, op = task_data.clean_batch(gen, device)
    sigma = torch.rand(x.shape[0], generator=gen).to(device) * sigma_max
    noisy = x + sigma.view(-1, 1, 1, 1) * torch.randn(x.shape, generator=gen).to(device)
    info = op.side_info(op.A(x)) if model.denoiser_kwargs.get("cond") else None
    return l2_loss(model.denoisers[0](noisy, sigma, info), x)


def validate_denoise(model: DUN, task_data: Any, device: torch.device, sigma: float = 25 / 255) -> float:
    """Mean denoising PSNR at ``sigma`` over the validation items (fixed noise; phase 0's own measure)."""
    model.eval()
    gen = torch.Generator().manual_seed(0)
    vals = []
    with torch.no_grad():
        for _, x, y, op in task_data.val_items(device):
            op = op if op is not None else model.op
            noisy = x + sigma * torch.randn(x.shape, generator=gen).to(device)
            info = op.side_info(y) if model.denoiser_kwargs.get("cond") else None
            vals.append(psnr(model.denoisers[0](noisy, torch.full((1,), sigma), info).clamp(0, 1), x))
    model.train()
    return float(sum(vals) / max(1, len(vals)))


def make_optimizer(model: DUN, lr: float) -> torch.optim.Optimizer:
    """Adam over the trainable parameters; the per-stage scalars get their own group with a tiny eps.

    Their gradients can be far below Adam's default eps (CASSI: ~1e-11 on μ, because μ ≪ ΦΦᵀ ≈ 14), where
    eps = 1e-8 would freeze them; with eps = 1e-16 Adam moves them at the rate of every other parameter.
    """
    scalars = [p for n, p in model.named_parameters() if p.requires_grad and n in ("rho_raw", "lam_raw")]
    ids = {id(p) for p in scalars}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    groups = [{"params": rest}] + ([{"params": scalars, "eps": 1e-16}] if scalars else [])
    return torch.optim.Adam(groups, lr=lr)


def _state_path(cfg: TrainConfig) -> Path:
    return Path(str(cfg.out) + ".ckpt")


def _log_path(cfg: TrainConfig) -> Path:
    return Path(str(cfg.out) + ".log.jsonl")


def _rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def save_train_state(path: Path, model: DUN, opt: torch.optim.Optimizer, step: int, gen: torch.Generator,
                     extra: dict[str, Any]) -> None:
    """Everything `--resume` needs, written atomically (plain tensors/containers: weights_only-loadable)."""
    state = {
        "model": model.state_dict(),
        "opt": opt.state_dict(),
        "step": step,
        "gen": gen.get_state(),
        "cpu_rng": torch.get_rng_state(),
        "extra": json.dumps(extra),
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


TRAIN_STATE_KEYS = ("model", "opt", "step", "gen", "cpu_rng", "extra")


def load_train_state(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Read a ``--resume`` state (weights-only); one-line LorunError for a missing, truncated or foreign file."""
    if not path.is_file():
        raise OptionError("resume", None, f"no training state {path}; start without --resume")
    try:
        st = torch.load(path, map_location=device, weights_only=True)
    except Exception:  # noqa: BLE001 - torch's multi-line unpickling texts help nobody here
        raise OptionError("resume", None, f"training state {path} is truncated or corrupt; start over with --force "
                          f"(it will be replaced) or restore a good copy", exit_code=1) from None
    if not isinstance(st, dict) or any(k not in st for k in TRAIN_STATE_KEYS):
        raise OptionError("resume", None, f"{path} is not a lorun training state; start over with --force", exit_code=1)
    return st


def peak_memory_mb(device: torch.device) -> dict[str, float]:
    """Peak memory of this process so far: resident set (MB) and, on CUDA, the allocator's peak (MB)."""
    out = {"peak_rss_mb": round(peak_rss_mb(), 1)}
    if device.type == "cuda":
        out["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return out


def validate(model: DUN, task_data: Any, device: torch.device) -> float:
    """Mean PSNR (float, [0,1] range, the task's own crop) over the fixed validation items."""
    model.eval()
    vals = []
    with torch.no_grad():
        for _, x, y, op in task_data.val_items(device):
            out = (op if op is not None else model.op).crop(model(y, op)).clamp(0, 1)
            vals.append(psnr(out, x))
    model.train()
    return float(sum(vals) / max(1, len(vals)))


def init_distributed(device: str) -> None:
    """Join the process group when launched by ``torchrun`` (WORLD_SIZE > 1): NCCL on CUDA, gloo on CPU."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        dist.init_process_group(backend)
        if device.startswith("cuda"):
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))


def train(cfg: TrainConfig, on_event: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run (or resume) a training run; returns a summary. ``on_event`` receives progress records.

    Under ``torchrun`` every rank draws its own batches (generator seeded by seed and rank — the
    random-crop equivalent of a DistributedSampler); DDP averages gradients, so all ranks hold identical
    weights; only rank 0 logs and writes files.
    """
    from .tasks import SR_AUTO_POLICY, make_task_data

    init_distributed(cfg.device)
    if cfg.device.startswith("cuda") and _world() > 1:
        cfg.device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    device = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)
    state_file = _state_path(cfg)
    st = load_train_state(state_file, device) if cfg.resume else None
    model = build_for_phase(cfg).to(device)
    model.auto_policy = SR_AUTO_POLICY.get(cfg.sr_kernel)  # SR trained on estimated kernels: kept in the file
    task_data = make_task_data(cfg, model)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(model, cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + _rank())
    step, elapsed0 = 0, 0.0
    if st is not None:
        try:
            model.load_state_dict(st["model"])
        except RuntimeError:
            raise OptionError("resume", None, f"{state_file} was written by a run with other settings; resume "
                              f"with the same options, or start over with --force", exit_code=1) from None
        opt.load_state_dict(st["opt"])
        step = int(st["step"])
        gen.set_state(st["gen"])
        torch.set_rng_state(st["cpu_rng"])
        elapsed0 = json.loads(st["extra"]).get("elapsed", 0.0)
    ddp = _world() > 1
    net: nn.Module = nn.parallel.DistributedDataParallel(model) if ddp else model
    is_main = _rank() == 0
    log_file = _log_path(cfg)
    if is_main and log_file.exists():
        # a fresh run starts a new curve; a resumed one drops what was logged after its checkpoint
        kept = [ln for ln in log_file.read_text().splitlines() if cfg.resume and json.loads(ln)["step"] <= step]
        log_file.write_text("".join(ln + "\n" for ln in kept))
    t0 = time.monotonic()
    last_t, last_step, val = t0, step, float("nan")
    first_step, aside = step, [0.0, 0.0]  # seconds in validation/checkpoints: total, and since the last it/s
    emit = on_event or (lambda _r: None)
    guard = SpikeGuard()
    emit({"event": "start", "step": step, "steps": cfg.steps, "params": param_report(model)})

    def elapsed() -> float:
        return elapsed0 + time.monotonic() - t0

    def log(rec: dict[str, Any]) -> None:
        if is_main:
            with open(log_file, "a") as f:
                f.write(json.dumps(rec) + "\n")

    def checkpoint() -> None:
        if is_main:
            t = time.monotonic()
            save_train_state(state_file, model, opt, step, gen, {"elapsed": elapsed(), "config": asdict(cfg)})
            aside[0] += time.monotonic() - t
            aside[1] += time.monotonic() - t

    stop_reason = "steps"
    model.train()
    with deferred_interrupts() as interrupted:  # Ctrl-C / SIGTERM: finish the step, checkpoint, then stop
        while step < cfg.steps:
            code = interrupted()
            if code is not None:
                checkpoint()
                emit({"event": "interrupted", "step": step})
                raise Interrupted(f"training state saved to {state_file} at step {step}; continue with --resume",
                                  code)
            if cfg.max_minutes is not None and elapsed() / 60 >= cfg.max_minutes:
                stop_reason = "max-minutes"
                break
            for g in opt.param_groups:
                g["lr"] = lr_at(step, cfg)
            if cfg.phase == "denoise":
                loss = denoise_step(model, task_data, gen, device, cfg.sigma_max)
            else:
                x, y, op = task_data.batch(gen, device)
                outs = net(y, op, return_stages=True)  # op None: the model's own operator (CS)
                loss = stage_loss(outs, x, cfg.stage_loss)
            lval = loss.item()  # this rank's loss: what the log records
            shared = lval
            if ddp:  # every rank takes or skips the same update: decided on the ranks' mean loss
                t = torch.tensor(lval, device=device)
                dist.all_reduce(t)
                shared = t.item() / _world()
            opt.zero_grad(set_to_none=True)
            take = guard.take(shared, step + 1)
            if take:
                loss.backward()
                if cfg.clip:
                    torch.nn.utils.clip_grad_norm_(params, cfg.clip)
                opt.step()
            step += 1
            rec: dict[str, Any] = {"event": "step", "step": step, "loss": lval, "lr": opt.param_groups[0]["lr"]}
            if not take:
                rec["skipped"] = True
            if step % cfg.val_every == 0 or step == cfg.steps:
                t_val = time.monotonic()
                val = validate(model, task_data, device)
                rec["val_psnr"] = val
                if cfg.phase == "denoise":
                    rec["val_denoise"] = validate_denoise(model, task_data, device)
                aside[0] += time.monotonic() - t_val
                aside[1] += time.monotonic() - t_val
            if step % cfg.log_every == 0 or "val_psnr" in rec:
                now = time.monotonic()  # training steps only: validation and checkpoints left out
                rec["it_s"] = (step - last_step) / max(1e-9, now - last_t - aside[1])
                last_t, last_step, aside[1] = now, step, 0.0
            rec["minutes"] = elapsed() / 60
            if "val_psnr" in rec or step % cfg.log_every == 0 or not take:
                log(rec)
            emit(rec)
            if step % cfg.ckpt_every == 0:
                checkpoint()
    checkpoint()
    if math.isnan(val) or stop_reason != "steps":
        # a run stopped by --max-minutes ends between validations: validate once more and log it
        t_val = time.monotonic()
        val = validate(model, task_data, device)
        aside[0] += time.monotonic() - t_val
        log({"event": "end", "step": step, "val_psnr": val, "minutes": elapsed() / 60})
    summary = {
        "steps": step,
        "minutes": round(elapsed() / 60, 2),
        "stop": stop_reason,
        "val_psnr": round(val, 3),
        "it_s": round((step - first_step) / max(1e-9, time.monotonic() - t0 - aside[0]), 3),  # w/o validation
        "skipped_steps": guard.skipped,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU",
        "world_size": _world(),
        "threads": torch.get_num_threads(),
        "weights_sha256": lora.state_sha256(model.state_dict()),
        **peak_memory_mb(device),
    }
    if is_main:
        extra = {"training": {**summary, "command": cfg.command, "config": asdict(cfg)}}
        if cfg.phase == "adapt":
            extra["backbone"] = os.path.basename(cfg.backbone or "")
        models.save_model(cfg.out, model.cpu(), extra)
        model.to(device)
    emit({"event": "end", **summary})
    return summary
