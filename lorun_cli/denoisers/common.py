"""Shared building blocks of the denoisers (proximal mapping modules).

Every denoiser derives from :class:`Denoiser`, which appends the noise level as a constant input channel,
pads the input to the network's down-sampling multiple, crops the prediction back and adds it to the input
(residual learning). The last convolution (``tail``) is zero-initialised so an untrained denoiser is the
identity map.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def sigma_map(x: Tensor, sigma: Tensor | float) -> Tensor:
    """Constant noise-level channel ``(N, 1, H, W)`` for ``x``; ``sigma`` is a float, a scalar or ``(N,)``."""
    n, _, h, w = x.shape
    s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1)
    if s.numel() == 1:
        s = s.expand(n)
    elif s.numel() != n:
        raise ValueError(f"sigma has {s.numel()} values for a batch of {n}")
    return s.view(n, 1, 1, 1).expand(n, 1, h, w)


def pad_to_multiple(x: Tensor, multiple: int) -> tuple[Tensor, tuple[int, int]]:
    """Pad bottom/right of ``x`` to multiples of ``multiple``; returns the padded tensor and the old (H, W).

    Reflect padding is used where the image is large enough, replicate padding otherwise.
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x, (h, w)
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode), (h, w)


def zero_init_(module: nn.Module) -> nn.Module:
    """Set every parameter of ``module`` to zero in place (used for the output convolution)."""
    with torch.no_grad():
        for p in module.parameters():
            p.zero_()
    return module


def make_act(name: str) -> nn.Module:
    """Activation module by name: ``relu``, ``lrelu`` (slope 0.2) or ``gelu``."""
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "lrelu":
        return nn.LeakyReLU(0.2, inplace=True)
    if name == "gelu":
        return nn.GELU()
    raise ValueError(f"unknown activation {name!r} (relu, lrelu, gelu)")


def int_list(values: Sequence[int] | int, length: int | None = None) -> list[int]:
    """Normalise an int or a sequence of ints to a list (optionally broadcast/checked to ``length``)."""
    out = [int(values)] * (length or 1) if isinstance(values, int) else [int(v) for v in values]
    if length is not None and len(out) != length:
        raise ValueError(f"expected {length} values, got {len(out)}")
    if not out:
        raise ValueError("expected at least one value")
    return out


def u_shape(
    x: Tensor,
    downs: Sequence[nn.Module],
    ups: Sequence[nn.Module],
    decoders: Sequence[nn.Module],
    merge: Callable[[int, Tensor, Tensor], Tensor],
    encoders: Sequence[nn.Module] | None = None,
    bottleneck: nn.Module | None = None,
) -> Tensor:
    """The encoder–decoder traversal every U-shaped denoiser here shares.

    Each level runs its encoder (if any), keeps the result as a skip, and down-samples; after the optional
    bottleneck each decoder level up-samples, joins the skip with ``merge(level, up, skip)`` and decodes.
    """
    skips = []
    for i, down in enumerate(downs):
        if encoders is not None:
            x = encoders[i](x)
        skips.append(x)
        x = down(x)
    if bottleneck is not None:
        x = bottleneck(x)
    for i, (up, dec) in enumerate(zip(ups, decoders, strict=True)):
        x = dec(merge(i, up(x), skips.pop()))
    return x


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel dimension of an ``(N, C, H, W)`` tensor (per pixel)."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        mu = x.mean(1, keepdim=True)
        var = (x - mu).pow(2).mean(1, keepdim=True)
        y = (x - mu) * torch.rsqrt(var + self.eps)
        return y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class Denoiser(nn.Module):
    """Base class: ``forward(x, sigma, cond) = x + crop(body(pad([x, sigma, cond])))``.

    Subclasses build ``self.tail`` (the zero-initialised output conv, called at the end of ``body``),
    set ``self.multiple`` (the total down-sampling factor) and implement :meth:`body`.
    ``self.config`` holds the constructor keyword arguments (except ``channels``), so
    ``build(self.name, self.channels, **self.config)`` rebuilds the same architecture.
    """

    name: str = ""

    def __init__(self, channels: int, config: dict[str, Any], multiple: int, cond: int = 0) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        if int(cond) != cond or cond < 0:
            raise ValueError(f"cond must be a non-negative integer, got {cond!r}")
        self.channels = int(channels)
        self.cond = int(cond)
        self.config = dict(config, **({"cond": self.cond} if self.cond else {}))
        self.multiple = int(multiple)
        #: input channels of the first convolution: image, noise-level map, conditioning maps
        self.in_channels = self.channels + 1 + self.cond

    def body(self, inp: Tensor) -> Tensor:
        """Residual prediction for the padded input ``(N, C+1, H', W')`` (image + noise-level channel)."""
        raise NotImplementedError

    def forward(self, x: Tensor, sigma: Tensor | float, cond: Tensor | None = None) -> Tensor:
        """Denoise ``x`` ``(N, C, H, W)`` at noise level ``sigma`` (float or ``(N,)``).

        ``cond`` ``(N or 1, self.cond, H, W)``: side information about the degradation (e.g. the CASSI
        mask), required when the denoiser was built with ``cond > 0`` and ignored otherwise.
        """
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"expected input (N, {self.channels}, H, W), got {tuple(x.shape)}")
        parts = [x, sigma_map(x, sigma)]
        if self.cond:
            if cond is None or cond.dim() != 4 or cond.shape[1] != self.cond or cond.shape[-2:] != x.shape[-2:]:
                got = None if cond is None else tuple(cond.shape)
                raise ValueError(f"this denoiser needs cond of shape (N, {self.cond}, H, W), got {got}")
            parts.append(cond.to(x).expand(x.shape[0], -1, -1, -1))
        if x.shape[1] > 1 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
            # channels_last inference: concatenate straight into NHWC (the first conv would convert anyway)
            inp = torch.empty((x.shape[0], sum(p.shape[1] for p in parts), *x.shape[-2:]), dtype=x.dtype,
                              device=x.device, memory_format=torch.channels_last)
            torch.cat(parts, dim=1, out=inp)
        else:
            inp = torch.cat(parts, dim=1)
        inp, (h, w) = pad_to_multiple(inp, self.multiple)
        res = self.body(inp)
        return x + res[..., :h, :w]

    def extra_repr(self) -> str:
        return f"channels={self.channels}, multiple={self.multiple}"
