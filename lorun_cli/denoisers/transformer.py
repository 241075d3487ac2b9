"""Transformer denoiser with channel-wise ("transposed") self-attention (supplement Fig. 13)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .common import Denoiser, LayerNorm2d, int_list, u_shape, zero_init_


class ChannelAttention(nn.Module):
    """Multi-head self-attention across channels: the attention map per head is (C/h) x (C/h)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads))
        self.qkv = nn.Conv2d(dim, 3 * dim, 1)
        self.qkv_dw = nn.Conv2d(3 * dim, 3 * dim, 3, padding=1, groups=3 * dim)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        q, k, v = self.qkv_dw(self.qkv(x)).reshape(n, 3, self.heads, c // self.heads, h * w).unbind(1)
        q = F.normalize(q, dim=-1)
        k = F.normalize(k, dim=-1)
        attn = (q @ k.transpose(-2, -1)) * self.temperature.view(1, -1, 1, 1)
        out = attn.softmax(dim=-1) @ v
        return self.proj(out.reshape(n, c, h, w))


class GatedFFN(nn.Module):
    """Gated feed-forward: 1x1 expand to 2 branches, depthwise 3x3, GELU(a) * b, 1x1 project."""

    def __init__(self, dim: int, expansion: float) -> None:
        super().__init__()
        hidden = max(1, int(round(dim * expansion)))
        self.expand = nn.Conv2d(dim, 2 * hidden, 1)
        self.dw = nn.Conv2d(2 * hidden, 2 * hidden, 3, padding=1, groups=2 * hidden)
        self.project = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        a, b = self.dw(self.expand(x)).chunk(2, dim=1)
        return self.project(F.gelu(a) * b)


class TransformerBlock(nn.Module):
    """Pre-norm block: x + attention(norm(x)), then x + ffn(norm(x))."""

    def __init__(self, dim: int, heads: int, expansion: float) -> None:
        super().__init__()
        self.norm1 = LayerNorm2d(dim)
        self.attn = ChannelAttention(dim, heads)
        self.norm2 = LayerNorm2d(dim)
        self.ffn = GatedFFN(dim, expansion)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class Downsample(nn.Module):
    """Halve the resolution, double the width: conv3x3 (C -> C/2) then PixelUnshuffle(2)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim, dim // 2, 3, padding=1)
        self.shuffle = nn.PixelUnshuffle(2)

    def forward(self, x: Tensor) -> Tensor:
        return self.shuffle(self.conv(x))


class Upsample(nn.Module):
    """Double the resolution, halve the width: conv1x1 (C -> 2C) then PixelShuffle(2)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim, 2 * dim, 1)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x: Tensor) -> Tensor:
        return self.shuffle(self.conv(x))


class Transformer(Denoiser):
    """U-shaped transformer: width ``dim * 2**i`` at level i; ``len(blocks) - 1`` down-sampling levels.

    Args:
        channels: image channels C.
        dim: width of the first level (even).
        blocks: number of transformer blocks per encoder level (the last entry is the bottleneck);
            the decoder mirrors the encoder.
        heads: attention heads per level.
        expansion: hidden-width factor of the gated feed-forward network.
        refine: extra blocks at full resolution before the output conv.
    """

    name = "transformer"

    def __init__(
        self,
        channels: int,
        dim: int = 16,
        blocks: Sequence[int] = (1, 2, 2),
        heads: Sequence[int] = (1, 2, 4),
        expansion: float = 2.0,
        refine: int = 1,
        cond: int = 0,
    ) -> None:
        blocks = int_list(blocks)
        heads = int_list(heads, len(blocks))
        if dim % 2:
            raise ValueError(f"dim must be even, got {dim}")
        cfg = {"dim": int(dim), "blocks": blocks, "heads": heads, "expansion": float(expansion),
               "refine": int(refine)}
        levels = len(blocks)
        super().__init__(channels, cfg, multiple=2 ** (levels - 1), cond=cond)
        widths = [dim * 2**i for i in range(levels)]

        def stage(i: int, count: int) -> nn.Sequential:
            return nn.Sequential(*[TransformerBlock(widths[i], heads[i], expansion) for _ in range(count)])

        self.embed = nn.Conv2d(self.in_channels, dim, 3, padding=1)
        self.encoders = nn.ModuleList(stage(i, blocks[i]) for i in range(levels - 1))
        self.downs = nn.ModuleList(Downsample(widths[i]) for i in range(levels - 1))
        self.bottleneck = stage(levels - 1, blocks[-1])
        rev = list(reversed(range(levels - 1)))
        self.ups = nn.ModuleList(Upsample(widths[i + 1]) for i in rev)
        self.fuses = nn.ModuleList(nn.Conv2d(2 * widths[i], widths[i], 1) for i in rev)
        self.decoders = nn.ModuleList(stage(i, blocks[i]) for i in rev)
        self.refine = stage(0, refine)
        self.tail = zero_init_(nn.Conv2d(dim, channels, 3, padding=1))

    def _fuse(self, level: int, up: Tensor, skip: Tensor) -> Tensor:
        return self.fuses[level](torch.cat([up, skip], dim=1))

    def body(self, inp: Tensor) -> Tensor:
        x = u_shape(self.embed(inp), self.downs, self.ups, self.decoders, self._fuse, self.encoders, self.bottleneck)
        return self.tail(self.refine(x))
