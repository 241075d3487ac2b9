"""Residual U-Net denoiser (USRNet-style prior module for super-resolution)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from .common import Denoiser, int_list, make_act, u_shape, zero_init_


class ResBlock(nn.Module):
    """x + conv3x3(act(conv3x3(x))), no normalisation."""

    def __init__(self, dim: int, act: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(dim, dim, 3, padding=1)
        self.act = make_act(act)
        self.conv2 = nn.Conv2d(dim, dim, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(self.act(self.conv1(x))).add_(x)  # in place: no fresh full-size buffer per block


class UpShuffle(nn.Module):
    """conv1x1 (C_in -> 4 C_out) then PixelShuffle(2)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, 4 * cout, 1)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x: Tensor) -> Tensor:
        return self.shuffle(self.conv(x))


class UpBilinear(nn.Module):
    """Bilinear x2 up-sampling then conv3x3 (C_in -> C_out)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(self.up(x))


class ResUNet(Denoiser):
    """Conv head, ``len(widths)`` levels of ``nb`` residual blocks with strided-conv (2x2, stride 2)
    down-sampling, a bottleneck of ``nb`` blocks at the last width, a mirrored decoder with additive skips
    and a conv tail.

    Args:
        channels: image channels C.
        widths: feature widths per level, e.g. ``(16, 32, 64, 128)``.
        nb: residual blocks per level.
        act: ``relu`` or ``lrelu``.
        up: ``shuffle`` (1x1 conv + PixelShuffle) or ``bilinear`` (bilinear + conv3x3).
    """

    name = "resunet"

    def __init__(
        self,
        channels: int,
        widths: Sequence[int] = (16, 32, 64, 128),
        nb: int = 1,
        act: str = "relu",
        up: str = "shuffle",
        cond: int = 0,
    ) -> None:
        widths = int_list(widths)
        if up not in ("shuffle", "bilinear"):
            raise ValueError(f"up must be 'shuffle' or 'bilinear', got {up!r}")
        if nb < 1:
            raise ValueError(f"nb must be >= 1, got {nb}")
        cfg = {"widths": widths, "nb": int(nb), "act": act, "up": up}
        super().__init__(channels, cfg, multiple=2 ** (len(widths) - 1), cond=cond)
        up_cls = UpShuffle if up == "shuffle" else UpBilinear

        def blocks(dim: int) -> nn.Sequential:
            return nn.Sequential(*[ResBlock(dim, act) for _ in range(nb)])

        self.head = nn.Conv2d(self.in_channels, widths[0], 3, padding=1)
        self.encoders = nn.ModuleList(blocks(w) for w in widths[:-1])
        pairs = list(zip(widths[:-1], widths[1:], strict=True))  # (level width, next level width)
        self.downs = nn.ModuleList(nn.Conv2d(a, b, 2, stride=2) for a, b in pairs)
        self.bottleneck = blocks(widths[-1])
        self.ups = nn.ModuleList(up_cls(b, a) for a, b in reversed(pairs))
        self.decoders = nn.ModuleList(blocks(w) for w in widths[-2::-1])
        self.tail = zero_init_(nn.Conv2d(widths[0], channels, 3, padding=1))

    def body(self, inp: Tensor) -> Tensor:
        x = u_shape(self.head(inp), self.downs, self.ups, self.decoders, lambda _i, up, skip: up.add_(skip),
                    self.encoders, self.bottleneck)
        return self.tail(x)
