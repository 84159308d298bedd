"""Conditional flow block of the INN (paper §3.5): ActNorm -> invertible 1×1 conv -> conditional coupling."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ActNorm(nn.Module):
    """Per-channel affine y = x·exp(log_scale) + bias, initialised to the identity.

    No data-dependent initialisation: it keeps training deterministic and the export trivial.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.exp(self.log_scale) + self.bias

    def inverse(self, y: Tensor) -> Tensor:
        return (y - self.bias) * torch.exp(-self.log_scale)


class InvertibleConv1x1(nn.Module):
    """Learned channel mixing (Glow's invertible 1×1 convolution), initialised to the identity.

    Identity init keeps the LR channels on the Haar LL band at the start of training.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.eye(channels))

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.conv2d(x, self.weight[:, :, None, None])

    def inverse(self, y: Tensor) -> Tensor:
        inv = torch.linalg.inv(self.weight.to(torch.float64)).to(y.dtype)
        return nn.functional.conv2d(y, inv[:, :, None, None])


class CouplingSubnet(nn.Sequential):
    """ψ and φ of eqs. 10–11 as one plain conv stack: 3×3 -> 1×1 -> 3×3 (last one zero-initialised).

    Plain convolutions (no dense blocks) are what runs fast on a car GPU in channels_last.
    """

    def __init__(self, in_channels: int, hidden: int, out_channels: int) -> None:
        last = nn.Conv2d(hidden, out_channels, 3, padding=1)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        super().__init__(
            nn.Conv2d(in_channels, hidden, 3, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(hidden, hidden, 1),
            nn.LeakyReLU(0.2),
            last,
        )


class ConditionalCoupling(nn.Module):
    """a' = a·exp(ψ(b, c)) + φ(b, c), b' = b: the conditional affine coupling of eqs. 10–11.

    `transform_first` picks which part is transformed, so consecutive blocks alternate halves.
    The split is at `split` channels (3: the LR channels against the rest, as in IRN).
    """

    def __init__(
        self, channels: int, split: int, cond_channels: int, hidden: int, clamp: float, transform_first: bool
    ) -> None:
        super().__init__()
        self.split = split
        self.transform_first = transform_first
        self.clamp = clamp
        n_a = split if transform_first else channels - split
        n_b = channels - n_a
        self.n_b = n_b
        self.subnet = CouplingSubnet(n_b + cond_channels, hidden, 2 * n_a)
        self.conv_per_input = False
        """True: the subnet's first conv runs on b and on the condition separately and sums (the ONNX
        export sets it). Same arithmetic up to float rounding; 25 or 19 input channels fall off
        onnxruntime's blocked (NCHWc) CPU kernels, 3/9 and 16 do not: the ref graph is ~18 %
        faster at 720p. PyTorch keeps the concatenation (bit-identical results across batches)."""

    def _parts(self, x: Tensor) -> tuple[Tensor, Tensor]:
        first, second = x[:, : self.split], x[:, self.split :]
        return (first, second) if self.transform_first else (second, first)

    def _join(self, a: Tensor, b: Tensor) -> Tensor:
        return torch.cat((a, b) if self.transform_first else (b, a), dim=1)

    def _scale_shift(self, b: Tensor, cond: Tensor | None) -> tuple[Tensor, Tensor]:
        if self.conv_per_input:
            h = self._first_conv_per_input(b, cond)
            for layer in list(self.subnet)[1:]:
                h = layer(h)
        else:
            h = self.subnet(b if cond is None else torch.cat((b, cond), dim=1))
        raw_scale, shift = h.chunk(2, dim=1)
        return self.clamp * torch.tanh(raw_scale / self.clamp), shift

    def _first_conv_per_input(self, b: Tensor, cond: Tensor | None) -> Tensor:
        """The subnet's first 3×3 conv on [b, cond] as one conv per input, summed: the same sum."""
        first = self.subnet[0]
        out = nn.functional.conv2d(b, first.weight[:, : self.n_b], first.bias, padding=1)
        if cond is not None:
            out = out + nn.functional.conv2d(cond, first.weight[:, self.n_b :], padding=1)
        return out

    def forward(self, x: Tensor, cond: Tensor | None) -> Tensor:
        a, b = self._parts(x)
        log_scale, shift = self._scale_shift(b, cond)
        return self._join(a * torch.exp(log_scale) + shift, b)

    def inverse(self, y: Tensor, cond: Tensor | None) -> Tensor:
        a, b = self._parts(y)
        log_scale, shift = self._scale_shift(b, cond)
        return self._join((a - shift) * torch.exp(-log_scale), b)


class FlowBlock(nn.Module):
    """One conditional flow block (CFB): ActNorm, invertible 1×1 conv, conditional coupling."""

    def __init__(
        self, channels: int, split: int, cond_channels: int, hidden: int, clamp: float, transform_first: bool
    ) -> None:
        super().__init__()
        self.actnorm = ActNorm(channels)
        self.mix = InvertibleConv1x1(channels)
        self.coupling = ConditionalCoupling(channels, split, cond_channels, hidden, clamp, transform_first)

    def forward(self, x: Tensor, cond: Tensor | None) -> Tensor:
        return self.coupling(self.mix(self.actnorm(x)), cond)

    def inverse(self, y: Tensor, cond: Tensor | None) -> Tensor:
        return self.actnorm.inverse(self.mix.inverse(self.coupling.inverse(y, cond)))
