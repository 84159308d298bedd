"""A real lossy LR codec inside the training forward pass (IRN-CRM style), with a straight-through gradient.

The shipped nets were trained for a lossless PNG LR; at fleet rates the LR goes through JPEG/WebP,
whose error they never saw. Running the *real* codec in the forward pass makes the inverse and the
decoder-side networks learn from exactly the decoded LR they will receive; the gradient passes
straight through (d decoded / d LR = identity), so the onboard forward still gets a training signal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from refscale_model.codecs import get_codec

CODECS = ("jpeg", "webp", "avif")
"""Lossy LR codecs the training loop can run: the same `refscale_model.codecs` objects the recorder uses."""


def encode_rgb(rgb: np.ndarray, codec: str, quality: int) -> bytes:
    """Bytes of an RGB uint8 H×W×3 image coded by the LR codec layer's `codec` at `quality` (1–100)."""
    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}; choose one of {CODECS}")
    return get_codec(codec).encode(np.ascontiguousarray(rgb), int(quality))


def decode_rgb(data: bytes, codec: str) -> np.ndarray:
    """RGB uint8 H×W×3 of a JPEG/WebP/AVIF byte string."""
    return get_codec(codec).decode(data)


def roundtrip_rgb(rgb: np.ndarray, codec: str, quality: int) -> tuple[np.ndarray, int]:
    """(decoded RGB uint8, coded bytes) of one image through the real codec."""
    data = encode_rgb(rgb, codec, quality)
    return decode_rgb(data, codec), len(data)


@dataclass(frozen=True)
class CodecDraw:
    """One sample's codec and quality."""

    codec: str
    quality: int


def draw_codecs(
    rng: np.random.Generator, n: int, codecs: Sequence[str], quality: tuple[int, int]
) -> list[CodecDraw]:
    """Per-sample codec (uniform over `codecs`) and quality (uniform integer in the closed range)."""
    lo, hi = quality
    if not codecs or not 1 <= lo <= hi <= 100:
        raise ValueError(f"need at least one codec and 1 <= quality range <= 100, got {codecs} {quality}")
    return [CodecDraw(str(codecs[rng.integers(len(codecs))]), int(rng.integers(lo, hi + 1))) for _ in range(n)]


def codec_straight_through(lr: Tensor, draws: Sequence[CodecDraw]) -> Tensor:
    """The float B×3×h×w LR (on the 8-bit grid) replaced by its real codec decode, gradient straight through.

    Forward: exactly what a decoder reads back from the stored JPEG/WebP (uint8 / 255).
    Backward: identity, as for the 8-bit rounding (`quantise_lr`).
    """
    if len(draws) != lr.shape[0]:
        raise ValueError(f"one codec draw per sample: {len(draws)} draws for a batch of {lr.shape[0]}")
    u8 = torch.round(lr.detach().clamp(0, 1) * 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    decoded = np.stack([roundtrip_rgb(img, d.codec, d.quality)[0] for img, d in zip(u8, draws, strict=True)])
    dec = torch.from_numpy(decoded).permute(0, 3, 1, 2).to(lr.device, lr.dtype) / 255.0
    return lr + (dec - lr).detach()


__all__ = ["CODECS", "CodecDraw", "codec_straight_through", "decode_rgb", "draw_codecs", "encode_rgb",
           "roundtrip_rgb"]
