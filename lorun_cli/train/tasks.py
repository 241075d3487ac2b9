"""Per-task training batches and validation items: (clean x, measurement y, operator)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..errors import UsageError
from ..facts import DEFAULT_NOISE, TRAIN_PATCH
from ..io import datasets
from ..models import cassi_operator
from ..physics.base import Operator
from ..physics.cassi import CASSI, load_mask
from ..physics.sr import SRBlur, load_kernels
from . import data

SR_VAL_PLAN = (("K1", 2), ("K5", 3), ("K9", 4))  # fixed kernel/scale per validation image, noise-free
#: HR side of the crop whose LR image the kernel estimator sees under ``--sr-kernel auto``: LR 72/48/36 px at
#: ×2/×3/×4, the sizes the estimator was trained on; the training patch is an aligned crop of it.
SR_AUTO_CONTEXT = 144
#: ``--sr-kernel`` → the ``--kernel auto`` policy (:data:`~lorun_cli.physics.sr_estimate.AUTO_POLICIES`).
SR_AUTO_POLICY = {"auto": "blend", "auto-raw": "raw"}


class TaskData:
    """Training batches and fixed validation items for one task."""

    def __init__(self, cfg: Any, model: torch.nn.Module) -> None:
        self.cfg, self.model, self.task = cfg, model, cfg.task
        root = datasets.data_root(cfg.data)
        self.patch = cfg.patch or TRAIN_PATCH[self.task]
        if cfg.rgb_share and self.task != "cassi":
            raise UsageError("--rgb-share applies to --task cassi only; drop it for other tasks")
        if cfg.sr_kernel != "true" and self.task != "sr":
            raise UsageError("--sr-kernel applies to --task sr only; drop it for other tasks")
        if cfg.extra.get("sr_mix") is not None and self.task != "sr":
            raise UsageError("sr_mix (config extra) applies to --task sr only; drop it for other tasks")
        extra = {"rgb_share": cfg.rgb_share} if cfg.rgb_share else {}
        self.sampler = data.train_sampler(self.task, root, self.patch, **extra)
        self.val = datasets.validation_set(self.task, root)
        if cfg.val_limit:
            self.val = self.val[: cfg.val_limit]
        self.estimator = None
        if self.task == "sr":
            self.kernels = load_kernels()
            self.sr_mix = data.sr_train_mix(cfg.extra.get("sr_mix"))
            if cfg.sr_kernel in SR_AUTO_POLICY:
                from ..physics.sr_estimate import load_estimator

                self.estimator = load_estimator()
                self.estimator.requires_grad_(False)
        if self.task == "cassi":
            self.cassi = cassi_operator(model, load_mask())

    def batch(self, gen: torch.Generator, device: torch.device) -> tuple[Tensor, Tensor, Operator | None]:
        """One training batch (all randomness drawn from ``gen``, so a run is reproducible)."""
        if self.task == "cassi":
            x, op = self.clean_batch(gen, device)
            y = op.A(x)
            if self.cfg.noise:  # detector noise: std uniform in [0, noise] per sample, like SR
                sigma = torch.rand(x.shape[0], generator=gen) * self.cfg.noise
                y = y + sigma.to(device).view(-1, 1, 1, 1) * torch.randn(y.shape, generator=gen).to(device)
            return x, y, op
        if self.estimator is not None:
            return self._sr_auto_batch(gen, device)
        x = self.sampler.sample(self.cfg.batch, gen).to(device)
        if self.task == "cs":
            noise = self.cfg.noise or 0.0
            return x, self.model.op.measure(x, noise, generator=gen) if noise else self.model.op.A(x), None
        if self.task == "sr":
            return self._sr_batch(x, gen, device)
        raise ValueError(f"unknown task {self.task!r}")

    def _sr_batch(self, x: Tensor, gen: torch.Generator, device: torch.device) -> tuple[Tensor, Tensor, Operator]:
        """y = (x ⊛ k)↓s + n with a broad random degradation; the network's operator may get a slightly wrong
        kernel (:func:`~lorun_cli.train.data.sample_sr_training_degradation`). ``cfg.extra['sr_degradations']
        == 'bundled'`` restores the earlier recipe (the 12 kernels, σ uniform up to ``--noise``);
        ``cfg.extra['sr_mix']`` reweights the kernel families (:func:`~lorun_cli.train.data.sr_train_mix`)."""
        if self.cfg.extra.get("sr_degradations", "broad") == "bundled":
            noise = self.cfg.noise if self.cfg.noise is not None else DEFAULT_NOISE
            scale, k, sigma = data.sample_sr_degradation(x, self.kernels, gen, noise_max=noise)
            k_given = k
        else:
            noise = self.cfg.noise if self.cfg.noise is not None else data.SR_NOISE_MAX
            scale, k, k_given, sigma = data.sample_sr_training_degradation(x.shape[0], self.kernels, gen,
                                                                           mix=self.sr_mix, noise_max=noise)
        y = SRBlur(k.to(device), scale).A(x) + sigma.to(device).view(-1, 1, 1, 1) * torch.randn(
            (x.shape[0], x.shape[1], x.shape[2] // scale, x.shape[3] // scale), generator=gen
        ).to(device)
        return x, y, SRBlur(k_given.to(device=device, dtype=x.dtype), scale)

    def _sr_auto_batch(self, gen: torch.Generator, device: torch.device) -> tuple[Tensor, Tensor, Operator]:
        """A broad-degradation batch whose data step gets what ``restore --kernel auto`` gives it: the estimator's
        kernel and noise-driven data weight, estimated from the LR image of a larger crop around each patch."""
        n, p = self.cfg.batch, self.patch
        ctx = max(SR_AUTO_CONTEXT, p)
        big = self.sampler.sample(n, gen, patch=ctx).to(device)
        noise = self.cfg.noise if self.cfg.noise is not None else data.SR_NOISE_MAX
        scale, k, _, sigma = data.sample_sr_training_degradation(n, self.kernels, gen, mix=self.sr_mix,
                                                                 noise_max=noise, perturb_share=0.0)
        blur, sigma = SRBlur(k.to(device), scale), sigma.to(device).view(-1, 1, 1, 1)
        y_big = blur.A(big)
        y_big = y_big + sigma * torch.randn(y_big.shape, generator=gen).to(device)
        k_use, gamma = self.auto_terms(y_big, scale)
        oy, ox = (scale * int(torch.randint((ctx - p) // scale + 1, (1,), generator=gen)) for _ in range(2))
        x = big[..., oy : oy + p, ox : ox + p].contiguous()
        y = blur.A(x)
        y = y + sigma * torch.randn(y.shape, generator=gen).to(device)
        return x, y, SRBlur(k_use.to(device=device, dtype=x.dtype), scale, data_weight=gamma.to(device))

    def auto_terms(self, y: Tensor, scale: int) -> tuple[Tensor, Tensor]:
        """(kernels (N, 25, 25), data weights (N,)) that ``--kernel auto`` uses for the LR images ``y``."""
        from ..physics import sr_estimate as E

        ks, noise = E.estimate_batch(self.estimator, y, scale)
        policy = SR_AUTO_POLICY[self.cfg.sr_kernel]
        k_use = torch.stack([E.kernel_policy(None, k, policy=policy)[0] for k in ks]).float()
        gamma = torch.tensor([E.data_weight_policy(float(s), explicit=False) for s in noise])
        return k_use, gamma

    def clean_batch(self, gen: torch.Generator, device: torch.device) -> tuple[Tensor, Operator]:
        """Clean training patches and an operator for them (phase 0 uses the operator's side information only)."""
        x = self.sampler.sample(self.cfg.batch, gen).to(device)
        if self.task == "cassi":
            return x, self._cassi_op(x, gen)
        if self.task == "sr":
            scale, k, _ = data.sample_sr_degradation(x, self.kernels, gen, noise_max=0.0)
            return x, SRBlur(k.to(device), scale)
        return x, self.model.op

    def _cassi_op(self, x: Tensor, gen: torch.Generator) -> CASSI:
        """The mask cropped to the patch (a random-position crop would also do; fixed keeps it cheap)."""
        h, w = x.shape[-2:]
        mh, mw = self.cassi.mask.shape[-2:]
        if (h, w) == (mh, mw):
            return self.cassi.to(x.device)
        i = int(torch.randint(0, mh - h + 1, (1,), generator=gen)) if h < mh else 0
        j = int(torch.randint(0, mw - w + 1, (1,), generator=gen)) if w < mw else 0
        return cassi_operator(self.model, self.cassi.mask[..., i : i + h, j : j + w].reshape(h, w)).to(x.device)

    def val_items(self, device: torch.device):
        """Fixed (name, x, y, op) validation items (op ``None`` means the model's own operator)."""
        for idx, (name, x) in enumerate(self.val):
            x = x.unsqueeze(0).to(device)
            if self.task == "cs":
                op = self.model.op
                op.set_image_size(*x.shape[-2:])
                yield name, x, op.measure(x), None
            elif self.task == "sr":
                kname, s = SR_VAL_PLAN[idx % len(SR_VAL_PLAN)]
                x = datasets.modcrop(x, s)
                y = SRBlur(self.kernels[kname].to(device), s).A(x)
                if self.estimator is None:
                    yield name, x, y, SRBlur(self.kernels[kname].to(device), s)
                    continue
                k_use, gamma = self.auto_terms(y, s)  # blind: the model restores with the estimate
                yield name, x, y, SRBlur(k_use[0].to(device), s, data_weight=float(gamma[0]))
            else:
                op = cassi_operator(self.model, self.cassi.mask[..., : x.shape[-2], : x.shape[-1]].to(device))
                yield name, x, op.A(x), op


def make_task_data(cfg: Any, model: torch.nn.Module) -> TaskData:
    """The task's data source for a training run."""
    return TaskData(cfg, model)
