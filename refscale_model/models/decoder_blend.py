"""How much of the decoder-side correction a rebuild takes, given how much the LR codec changed the LR.

The LR restorer and HR refiner (`models.decoder`) were trained on lossy LRs. On a nearly clean LR they
still "restore", and on smooth, dark frames that costs up to 4 dB against the bare inverse INN (RobotCar
night with a lossless LR), while on a heavily coded LR they gain up to 1 dB. How clean the LR is cannot be
told from the codec's quality setting alone (AVIF q85 leaves 36 dB on a night frame and 28 dB on a
textured webcam), so the car measures it: the PSNR of its decoded LR against the LR it coded, stored in
the frame record (`FrameMeta.lr_psnr`). The rebuild is `inn + α (full − inn)`, α read off a table of
LR-PSNR knots fitted per network by least squares on the training split
(`training.decoder_blend_fit`, `tools/calibrate_decoder_blend.py`). An unknown LR PSNR (old bags) gives
α = 1: the full decoder, as before.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

LOSSLESS_DB = 60.0
"""LR PSNRs at or above this (and a lossless LR: +inf) read the table's last knot."""


@dataclass(frozen=True)
class DecoderBlend:
    """Piecewise-linear α(LR PSNR) through `knots` (dB ascending, α in [0, 1]), flat beyond the ends."""

    knots: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        if not self.knots:
            raise ValueError("a decoder blend needs at least one knot")
        xs = [x for x, _ in self.knots]
        if any(b <= a for a, b in zip(xs, xs[1:], strict=False)):
            raise ValueError(f"decoder blend knots must have increasing LR PSNR, got {xs}")
        if any(not 0.0 <= a <= 1.0 for _, a in self.knots):
            raise ValueError("decoder blend α must lie in [0, 1]")

    def alpha(self, lr_psnr: float | None) -> float:
        """α for one frame; None or a non-positive value (not measured) gives 1, the full decoder."""
        if lr_psnr is None or not lr_psnr > 0.0:
            return 1.0
        x = min(float(lr_psnr), LOSSLESS_DB)
        knots = self.knots
        if x <= knots[0][0]:
            return knots[0][1]
        for (x0, a0), (x1, a1) in zip(knots, knots[1:], strict=False):
            if x <= x1:
                return a0 + (a1 - a0) * (x - x0) / (x1 - x0)
        return knots[-1][1]

    def alphas(self, lr_psnr: float | Sequence[float | None] | None, batch: int) -> list[float]:
        """α per sample of a batch (one value or None applies to all)."""
        return [self.alpha(v) for v in per_sample(lr_psnr, batch)]

    def to_json(self) -> list[list[float]]:
        return [[round(x, 2), round(a, 4)] for x, a in self.knots]

    @classmethod
    def from_json(cls, data: Sequence[Sequence[Any]]) -> DecoderBlend:
        return cls(tuple((float(x), float(a)) for x, a in data))


def per_sample(lr_psnr: float | Sequence[float | None] | None, batch: int) -> list[float | None]:
    """`RefScale.upscale`'s `lr_psnr` as one value per sample of a batch (one value or None applies to all)."""
    if lr_psnr is None or isinstance(lr_psnr, (int, float)):
        return [lr_psnr] * batch
    if len(lr_psnr) != batch:
        raise ValueError(f"lr_psnr has {len(lr_psnr)} values for a batch of {batch}")
    return list(lr_psnr)


def recorded_lr_psnr(value: float) -> float:
    """The LR PSNR as a frame record stores it: 0.1 dB steps (α moves < 0.01 per 0.1 dB); an LR the codec
    left unchanged (+inf) as 99, since 0 means "not measured"."""
    return 99.0 if not math.isfinite(value) else max(0.1, round(float(value), 1))


__all__ = ["LOSSLESS_DB", "DecoderBlend", "per_sample", "recorded_lr_psnr"]
