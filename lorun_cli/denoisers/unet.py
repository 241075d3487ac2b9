"""U-Net denoiser of double-convolution blocks (supplement Fig. 14)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .common import Denoiser, int_list, make_act, u_shape, zero_init_


class DoubleConv(nn.Module):
    """conv3x3 - act - conv3x3 - act; the first conv may stride by 2 (down-sampling)."""

    def __init__(self, cin: int, cout: int, act: str, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1)
        self.act1 = make_act(act)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.act2 = make_act(act)

    def forward(self, x: Tensor) -> Tensor:
        return self.act2(self.conv2(self.act1(self.conv1(x))))


class UpNet(nn.Module):
    """Up-sampling network: bilinear x2 up-sampling followed by conv3x3 - act."""

    def __init__(self, cin: int, cout: int, act: str) -> None:
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.act = make_act(act)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.conv(self.up(x)))


class UNet(Denoiser):
    """U-Net with ``len(widths) - 1`` down-sampling levels.

    Args:
        channels: image channels C (the input conv sees C + 1 with the noise-level map).
        widths: feature widths per level, e.g. ``(16, 32, 64)``.
        act: ``relu`` or ``lrelu``.
        down: ``pool`` (avg-pool then double conv) or ``stride`` (first conv of the block has stride 2).
        skip: ``cat`` (concatenate encoder features) or ``add``.
    """

    name = "unet"

    def __init__(
        self,
        channels: int,
        widths: Sequence[int] = (16, 32, 64),
        act: str = "relu",
        down: str = "pool",
        skip: str = "cat",
        cond: int = 0,
    ) -> None:
        widths = int_list(widths)
        if down not in ("pool", "stride"):
            raise ValueError(f"down must be 'pool' or 'stride', got {down!r}")
        if skip not in ("cat", "add"):
            raise ValueError(f"skip must be 'cat' or 'add', got {skip!r}")
        cfg = {"widths": widths, "act": act, "down": down, "skip": skip}
        super().__init__(channels, cfg, multiple=2 ** (len(widths) - 1), cond=cond)
        self.skip = skip
        self.head = DoubleConv(self.in_channels, widths[0], act)
        self.downs = nn.ModuleList()
        for cin, cout in zip(widths[:-1], widths[1:], strict=True):
            if down == "pool":
                self.downs.append(nn.Sequential(nn.AvgPool2d(2), DoubleConv(cin, cout, act)))
            else:
                self.downs.append(DoubleConv(cin, cout, act, stride=2))
        self.ups = nn.ModuleList()
        self.decs = nn.ModuleList()
        for cin, cout in zip(widths[:0:-1], widths[-2::-1], strict=True):
            self.ups.append(UpNet(cin, cout, act))
            self.decs.append(DoubleConv(2 * cout if skip == "cat" else cout, cout, act))
        self.tail = zero_init_(nn.Conv2d(widths[0], channels, 1))

    def _merge(self, _level: int, up: Tensor, skip: Tensor) -> Tensor:
        return torch.cat([up, skip], dim=1) if self.skip == "cat" else up + skip

    def body(self, inp: Tensor) -> Tensor:
        x = u_shape(self.head(inp), self.downs, self.ups, self.decs, self._merge)
        return self.tail(x)
