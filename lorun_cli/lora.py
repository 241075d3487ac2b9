"""Stage-wise low-rank adaptation (paper Sec. III-B, Eq. 3, 4, 12).

LoRA is injected into *any* denoiser by replacing its ``nn.Conv2d`` / ``nn.Linear`` modules with
:class:`LoRALayer`, which keeps the frozen base weight W0 and K adapter pairs (one per unfolding stage).
Stage k computes with ``W0 + scale * ΔW_k``; nothing here knows about a particular architecture.

Factor shapes (Eq. 3/4), for a base weight of ``n1`` outputs:
- Linear ``(out, in)``: ``A_k (out, r)``, ``B_k (r, in)``, ``ΔW_k = A_k B_k``.
- Conv2d ``(C_out, C_in/groups, kh, kw)``: ``A_k (C_out·kh, r·kh)``, ``B_k (r·kh, C_in/groups·kw)``;
  the product ``(C_out·kh, C_in/groups·kw)`` holds exactly ``C_out·C_in/groups·kh·kw`` entries and is read
  in row-major order as the kernel tensor (``ΔW = reshape(A B)``, Eq. 4).
``A`` starts at zero and ``B`` random (as in the paper), so every stage equals the backbone at start.
"""

from __future__ import annotations

import copy
import hashlib
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ADAPTER_KEYS = ("lora_A", "lora_B")


def lora_rank(in_dim: int, out_dim: int, gamma: float) -> int:
    """Rank of a layer's adapter: r = ceil(min(in, out) * γ / 100), at least 1.  # Eq. 12"""
    return max(1, math.ceil(min(in_dim, out_dim) * gamma / 100 - 1e-9))


def lora_delta(a: Tensor, b: Tensor, shape: torch.Size, scale: float) -> Tensor:
    """ΔW = reshape(A·B) scaled to the base weight's shape.  # Eq. 3 (linear), Eq. 4 (conv)"""
    return (a @ b).reshape(shape) * scale


class LoRALayer(nn.Module):
    """A frozen Conv2d/Linear with ``stages`` low-rank adapters; ``stage`` selects the active one."""

    def __init__(self, base: nn.Conv2d | nn.Linear, stages: int, rank: int, scale: float = 1.0) -> None:
        super().__init__()
        if not isinstance(base, (nn.Conv2d, nn.Linear)):
            raise TypeError(f"LoRA wraps nn.Conv2d or nn.Linear, not {type(base).__name__}")
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.stages, self.rank, self.scale = stages, rank, scale
        self.stage: int | None = None
        w = base.weight
        if isinstance(base, nn.Conv2d):
            c_out, c_in_g, kh, kw = w.shape
            rows, inner, cols = c_out * kh, rank * kh, c_in_g * kw
        else:
            rows, inner, cols = w.shape[0], rank, w.shape[1]
        self.lora_A = nn.Parameter(torch.zeros(stages, rows, inner, device=w.device, dtype=w.dtype))
        b = torch.empty(stages, inner, cols, device=w.device, dtype=w.dtype)
        nn.init.kaiming_uniform_(b.view(stages * inner, cols), a=math.sqrt(5))
        self.lora_B = nn.Parameter(b)
        self._merged: dict[int, Tensor] = {}

    def weight_for(self, stage: int | None) -> Tensor:
        """Effective weight W0 + scale·ΔW_stage (W0 alone for ``None``)."""
        w0 = self.base.weight
        if stage is None:
            return w0
        if not 0 <= stage < self.stages:
            raise IndexError(f"stage {stage} out of range for {self.stages} adapters")
        cached = self._merged.get(stage)
        if cached is not None and not torch.is_grad_enabled():
            return cached
        return w0 + lora_delta(self.lora_A[stage], self.lora_B[stage], w0.shape, self.scale)

    def cache_merged(self, enable: bool = True,
                     memory_format: torch.memory_format = torch.contiguous_format) -> None:
        """Precompute every stage's merged weight for inference (no extra latency); ``False`` clears.

        ``memory_format``: the layout of the merged conv weights (``torch.channels_last`` for NHWC inference).
        """
        self._merged = {}
        if enable:
            with torch.no_grad():
                self._merged = {k: self.weight_for(k).detach().clone() for k in range(self.stages)}
                if isinstance(self.base, nn.Conv2d):
                    self._merged = {k: w.contiguous(memory_format=memory_format) for k, w in self._merged.items()}

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight_for(self.stage)
        base = self.base
        if isinstance(base, nn.Linear):
            return F.linear(x, w, base.bias)
        if base.padding_mode != "zeros":
            x = F.pad(x, base._reversed_padding_repeated_twice, mode=base.padding_mode)
            return F.conv2d(x, w, base.bias, base.stride, 0, base.dilation, base.groups)
        return F.conv2d(x, w, base.bias, base.stride, base.padding, base.dilation, base.groups)

    def merged_module(self, stage: int) -> nn.Module:
        """A plain Conv2d/Linear with W0 + ΔW_stage baked in."""
        plain = copy.deepcopy(self.base)
        with torch.no_grad():
            plain.weight.copy_(self.weight_for(stage))
        for p in plain.parameters():
            p.requires_grad_(True)
        return plain

    def extra_repr(self) -> str:
        return f"stages={self.stages}, rank={self.rank}, scale={self.scale}"


class LowRankUpdate(nn.Module):
    """Parametrization ``W ↦ W + A·B`` of a frozen matrix; ``A`` starts at zero, so W is unchanged at start."""

    def __init__(self, rows: int, cols: int, rank: int, like: Tensor) -> None:
        super().__init__()
        self.lora_A = nn.Parameter(torch.zeros(rows, rank, device=like.device, dtype=like.dtype))
        b = torch.empty(rank, cols, device=like.device, dtype=like.dtype)
        nn.init.kaiming_uniform_(b, a=math.sqrt(5))
        self.lora_B = nn.Parameter(b)

    def forward(self, w: Tensor) -> Tensor:
        return w + self.lora_A @ self.lora_B  # Eq. 3 on a plain matrix


def add_low_rank_update(module: nn.Module, name: str, gamma: float) -> int:
    """Freeze the matrix parameter ``module.name`` and learn only a low-rank update of it (rank by Eq. 12).

    Works for any 2-D parameter (e.g. a CS sampling matrix); returns the rank.
    """
    from torch.nn.utils import parametrize

    w = getattr(module, name)
    if w.dim() != 2:
        raise ValueError(f"a low-rank update needs a matrix, {name} has shape {tuple(w.shape)}")
    rows, cols = w.shape
    rank = lora_rank(cols, rows, gamma)
    parametrize.register_parametrization(module, name, LowRankUpdate(rows, cols, rank, w))
    module.parametrizations[name].original.requires_grad_(False)
    return rank


def _layer_dims(m: nn.Conv2d | nn.Linear) -> tuple[int, int]:
    """(input_dim, output_dim) of a layer as Eq. 12 counts them (per group for grouped convs)."""
    if isinstance(m, nn.Conv2d):
        return m.in_channels // m.groups, m.out_channels
    return m.in_features, m.out_features


def lora_layers(module: nn.Module) -> Iterator[tuple[str, LoRALayer]]:
    """All LoRA layers of a module with their qualified names."""
    for name, m in module.named_modules():
        if isinstance(m, LoRALayer):
            yield name, m


def inject_lora(
    module: nn.Module,
    stages: int,
    gamma: float = 10.0,
    ranks: dict[str, int] | None = None,
    scale: float = 1.0,
) -> nn.Module:
    """Freeze ``module`` and replace each Conv2d/Linear by a :class:`LoRALayer` (in place).

    ``ranks`` overrides the Eq. 12 rank per layer name (a rank of 0 leaves that layer without adapter).
    Returns the module for chaining.
    """
    ranks = dict(ranks or {})
    for p in module.parameters():
        p.requires_grad_(False)
    targets = [(n, m) for n, m in module.named_modules() if type(m) in (nn.Conv2d, nn.Linear)]
    unknown = set(ranks) - {n for n, _ in targets}
    if unknown:
        raise KeyError(f"rank override for unknown layer(s): {sorted(unknown)}")
    for name, m in targets:
        r = ranks.get(name, lora_rank(*_layer_dims(m), gamma))
        if r <= 0:
            continue
        parent_name, _, child = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        setattr(parent, child, LoRALayer(m, stages, r, scale))
    return module


def set_stage(module: nn.Module, stage: int | None) -> None:
    """Activate adapter ``stage`` (``None``: the bare backbone) in every LoRA layer."""
    for _, layer in lora_layers(module):
        layer.stage = stage


def cache_merged(module: nn.Module, enable: bool = True,
                 memory_format: torch.memory_format = torch.contiguous_format) -> None:
    """Precompute (or drop) the merged weights of every stage for fast inference (in ``memory_format``)."""
    for _, layer in lora_layers(module):
        layer.cache_merged(enable, memory_format)


def merge(module: nn.Module, stage: int) -> nn.Module:
    """A copy of ``module`` with every LoRA layer replaced by its plain merged layer for ``stage``."""
    out = copy.deepcopy(module)
    for name, layer in list(lora_layers(out)):
        parent_name, _, child = name.rpartition(".")
        parent = out.get_submodule(parent_name) if parent_name else out
        setattr(parent, child, layer.merged_module(stage))
    return out




def backbone_state_dict(module: nn.Module) -> dict[str, Tensor]:
    """The frozen backbone weights under their original (pre-injection) names."""
    prefixes = [f"{n}.base." if n else "base." for n, _ in lora_layers(module)]
    out = {}
    for k, v in module.state_dict().items():
        if k.rsplit(".", 1)[-1] in ADAPTER_KEYS:
            continue
        for p in prefixes:
            if k.startswith(p):
                k = p[: -len("base.")] + k[len(p):]
                break
        out[k] = v
    return out




def state_sha256(state: dict[str, Tensor]) -> str:
    """Content hash of a state dict (names, dtypes, shapes, bytes), independent of the file format."""
    h = hashlib.sha256()
    for k in sorted(state):
        t = state[k].detach().to("cpu").contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()



