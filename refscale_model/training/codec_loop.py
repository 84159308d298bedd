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

IMAGE_CODECS = ("jpeg", "webp", "avif")
VIDEO_CODECS = ("h264", "h265")
CODECS = IMAGE_CODECS + VIDEO_CODECS
"""Lossy LR codecs the training loop can run: the same `refscale_model.codecs` objects the recorder uses."""
CRF_AT_QUALITY = ((20, 40), (95, 22))
"""(quality, CRF) ends of the linear map that gives a video codec a CRF from the one quality draw every
codec gets: quality 20–95 -> CRF 40–22, the range `refscale rd` sweeps for the video LR."""


def crf_for_quality(quality: int) -> int:
    """The CRF a video codec gets for a drawn `quality` (`CRF_AT_QUALITY`, rounded, clipped to 0–51)."""
    (q0, c0), (q1, c1) = CRF_AT_QUALITY
    return int(np.clip(round(c0 + (quality - q0) * (c1 - c0) / (q1 - q0)), 0, 51))


def video_roundtrip_tiled(images: Sequence[np.ndarray], codec: str, crf: int) -> list[np.ndarray]:
    """The decoded images after coding them tiled into one picture as one keyframe of `codec`.

    One encoder per batch instead of one per sample (opening libx265 costs ~30 ms). The LR stream
    is mostly predicted frames, which at one CRF are quantised a little harder than a keyframe; the
    CRF range covers that. Tiles are whole multiples of 8 pixels apart, but a coding unit may still
    straddle two of them, which a real LR frame never sees: a small, stated approximation.
    """
    from refscale_model.codecs.video import VideoStreamDecoder, VideoStreamEncoder

    if codec not in VIDEO_CODECS:
        raise ValueError(f"{codec!r} is not a video codec ({VIDEO_CODECS})")
    h, w = images[0].shape[:2]
    if any(img.shape != images[0].shape for img in images):
        raise ValueError("tiled video coding needs images of one size")
    cell_h, cell_w = -(-h // 8) * 8, -(-w // 8) * 8
    cols = int(np.ceil(np.sqrt(len(images))))
    rows = -(-len(images) // cols)
    mosaic = np.full((rows * cell_h, cols * cell_w, 3), 128, np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        mosaic[r * cell_h: r * cell_h + h, c * cell_w: c * cell_w + w] = img
    coded = VideoStreamEncoder(codec, crf=crf, gop=1).encode(mosaic)
    decoded = VideoStreamDecoder(codec).decode(coded, mosaic.shape[:2])
    return [decoded[r * cell_h: r * cell_h + h, c * cell_w: c * cell_w + w].copy()
            for r, c in (divmod(i, cols) for i in range(len(images)))]


def encode_rgb(rgb: np.ndarray, codec: str, quality: int) -> bytes:
    """Bytes of an RGB uint8 H×W×3 image coded by the LR codec layer's `codec` at `quality` (1–100)."""
    if codec not in IMAGE_CODECS:
        raise ValueError(f"unknown image codec {codec!r}; choose one of {IMAGE_CODECS}")
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

    Forward: exactly what a decoder reads back from the stored JPEG/WebP/AVIF (uint8 / 255); for
    H.264/H.265 what it reads back from the batch's tiled keyframe (`video_roundtrip_tiled`).
    Backward: identity, as for the 8-bit rounding (`quantise_lr`).
    """
    if len(draws) != lr.shape[0]:
        raise ValueError(f"one codec draw per sample: {len(draws)} draws for a batch of {lr.shape[0]}")
    u8 = torch.round(lr.detach().clamp(0, 1) * 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    decoded = np.empty_like(u8)
    for i, (img, d) in enumerate(zip(u8, draws, strict=True)):
        if d.codec in IMAGE_CODECS:
            decoded[i] = roundtrip_rgb(img, d.codec, d.quality)[0]
    for codec in VIDEO_CODECS:  # one tiled picture per codec: its samples share the first one's CRF
        rows = [i for i, d in enumerate(draws) if d.codec == codec]
        if rows:
            decoded[rows] = np.stack(video_roundtrip_tiled([u8[i] for i in rows], codec,
                                                           crf_for_quality(draws[rows[0]].quality)))
    dec = torch.from_numpy(decoded).permute(0, 3, 1, 2).to(lr.device, lr.dtype) / 255.0
    return lr + (dec - lr).detach()


__all__ = ["CODECS", "IMAGE_CODECS", "VIDEO_CODECS", "CodecDraw", "codec_straight_through", "crf_for_quality",
           "decode_rgb", "draw_codecs", "encode_rgb", "roundtrip_rgb", "video_roundtrip_tiled"]
