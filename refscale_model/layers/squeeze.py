"""Haar-wavelet squeeze: trades 2×2 spatial blocks for channels, exactly invertible."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class HaarSqueeze(nn.Module):
    """C×H×W -> 4C×H/2×W/2 as [LL of all channels, LH…, HL…, HH…].

    LL is the 2×2 mean, so the first 3 output channels of an RGB input are a box-downscaled
    image: the INN starts from a sensible LR and only has to learn the residual.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        bands = torch.tensor(
            [
                [[1.0, 1.0], [1.0, 1.0]],
                [[1.0, -1.0], [1.0, -1.0]],
                [[1.0, 1.0], [-1.0, -1.0]],
                [[1.0, -1.0], [-1.0, 1.0]],
            ]
        )
        self.register_buffer("weight", bands.unsqueeze(1).repeat(channels, 1, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        y = nn.functional.conv2d(x, self.weight.to(x.dtype), stride=2, groups=c) / 4.0
        return y.reshape(b, c, 4, h // 2, w // 2).transpose(1, 2).reshape(b, 4 * c, h // 2, w // 2)

    def inverse(self, y: Tensor) -> Tensor:
        b, c4, h, w = y.shape
        c = c4 // 4
        y = y.reshape(b, 4, c, h, w).transpose(1, 2).reshape(b, c4, h, w)
        return nn.functional.conv_transpose2d(y, self.weight.to(y.dtype), stride=2, groups=c)
