"""Spectral transformer denoiser for hyperspectral cubes (MST/SSR-style spectral-wise attention)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .common import Denoiser, int_list, u_shape, zero_init_


class SpectralAttention(nn.Module):
    """Spectral-wise multi-head self-attention.

    Tokens are pixels ``(N, HW, C)``; q, k, v come from ``nn.Linear`` maps and each head attends across its
    channels (a d x d map, d = C / heads) with a learnable rescale. A depthwise-conv positional branch on v
    is added to the projected output.
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(dim, dim, bias=False)
        self.to_v = nn.Linear(dim, dim, bias=False)
        self.rescale = nn.Parameter(torch.ones(heads))
        self.proj = nn.Linear(dim, dim)
        self.pos = nn.Sequential(
            nn.Conv2d(dim, dim, 3, padding=1, groups=dim, bias=False),
            nn.GELU(),
            nn.Conv2d(dim, dim, 3, padding=1, groups=dim, bias=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # (N, HW, C)
        v = self.to_v(tokens)

        def heads_first(t: Tensor) -> Tensor:  # (N, HW, C) -> (N, heads, d, HW)
            return t.transpose(1, 2).reshape(n, self.heads, c // self.heads, h * w)

        q = F.normalize(heads_first(self.to_q(tokens)), dim=-1)
        k = F.normalize(heads_first(self.to_k(tokens)), dim=-1)
        attn = (k @ q.transpose(-2, -1)) * self.rescale.view(1, -1, 1, 1)
        out = attn.softmax(dim=-1) @ heads_first(v)  # (N, heads, d, HW)
        out = self.proj(out.reshape(n, c, h * w).transpose(1, 2))  # (N, HW, C)
        v_img = v.transpose(1, 2).reshape(n, c, h, w)
        return out.transpose(1, 2).reshape(n, c, h, w) + self.pos(v_img)


class SpectralFFN(nn.Module):
    """1x1 expand - GELU - depthwise 3x3 - GELU - 1x1 project."""

    def __init__(self, dim: int, expansion: float) -> None:
        super().__init__()
        hidden = max(1, int(round(dim * expansion)))
        self.net = nn.Sequential(
            nn.Conv2d(dim, hidden, 1, bias=False),
            nn.GELU(),
            nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden, bias=False),
            nn.GELU(),
            nn.Conv2d(hidden, dim, 1, bias=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class SpectralBlock(nn.Module):
    """x + attention(norm(x)), then x + ffn(norm(x)); LayerNorm over channels of the pixel tokens."""

    def __init__(self, dim: int, heads: int, expansion: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SpectralAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = SpectralFFN(dim, expansion)

    @staticmethod
    def _norm(norm: nn.LayerNorm, x: Tensor) -> Tensor:
        return norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self._norm(self.norm1, x))
        return x + self.ffn(self._norm(self.norm2, x))


class Spectral(Denoiser):
    """U-shaped spectral transformer; width ``dim * 2**i`` at level i, ``len(blocks) - 1`` down-samplings
    (3x3 stride-2 convs) and up-samplings (1x1 conv + PixelShuffle), skips fused by concatenation + 1x1 conv.

    Args:
        channels: image channels C (28 for CASSI cubes; 1 and 3 work too).
        dim: width of the first level.
        blocks: blocks per encoder level; the last entry is the bottleneck; the decoder mirrors the encoder.
        heads: attention heads per level (default ``dim_head = dim``, i.e. 1, 2, 4 heads).
        expansion: hidden-width factor of the feed-forward network.
    """

    name = "spectral"

    def __init__(
        self,
        channels: int,
        dim: int = 28,
        blocks: Sequence[int] = (1, 1, 1),
        heads: Sequence[int] = (1, 2, 4),
        expansion: float = 2.0,
        cond: int = 0,
    ) -> None:
        blocks = int_list(blocks)
        heads = int_list(heads, len(blocks))
        cfg = {"dim": int(dim), "blocks": blocks, "heads": heads, "expansion": float(expansion)}
        levels = len(blocks)
        super().__init__(channels, cfg, multiple=2 ** (levels - 1), cond=cond)
        widths = [dim * 2**i for i in range(levels)]

        def stage(i: int) -> nn.Sequential:
            return nn.Sequential(*[SpectralBlock(widths[i], heads[i], expansion) for _ in range(blocks[i])])

        self.embed = nn.Conv2d(self.in_channels, dim, 3, padding=1)
        self.encoders = nn.ModuleList(stage(i) for i in range(levels - 1))
        self.downs = nn.ModuleList(
            nn.Conv2d(widths[i], widths[i + 1], 3, stride=2, padding=1) for i in range(levels - 1)
        )
        self.bottleneck = stage(levels - 1)
        rev = list(reversed(range(levels - 1)))
        self.ups = nn.ModuleList(
            nn.Sequential(nn.Conv2d(widths[i + 1], 4 * widths[i], 1), nn.PixelShuffle(2)) for i in rev
        )
        self.fuses = nn.ModuleList(nn.Conv2d(2 * widths[i], widths[i], 1, bias=False) for i in rev)
        self.decoders = nn.ModuleList(stage(i) for i in rev)
        self.tail = zero_init_(nn.Conv2d(dim, channels, 3, padding=1))

    def _fuse(self, level: int, up: Tensor, skip: Tensor) -> Tensor:
        return self.fuses[level](torch.cat([up, skip], dim=1))

    def body(self, inp: Tensor) -> Tensor:
        x = u_shape(self.embed(inp), self.downs, self.ups, self.decoders, self._fuse, self.encoders, self.bottleneck)
        return self.tail(x)
