"""A real lossy LR codec inside the training forward pass (IRN-CRM style), with a straight-through gradient.

The shipped nets were trained for a lossless PNG LR; at fleet rates the LR goes through JPEG/WebP,
whose error they never saw. Running the *real* codec in the forward pass makes the inverse and the
decoder-side networks learn from exactly the decoded LR they will receive; the gradient passes
straight through (d decoded / d LR = identity), so the onboard forward still gets a training signal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import Tensor

from refscale_model.codecs import get_codec

IMAGE_CODECS = ("jpeg", "webp", "avif")
VIDEO_CODECS = ("h264", "h265")
CODECS = IMAGE_CODECS + VIDEO_CODECS
"""Lossy LR codecs the training loop can run: the same `refscale_model.codecs` objects the recorder uses."""
CRF_AT_QUALITY = ((20, 43), (95, 22))
"""(quality, CRF) ends of the linear map that gives a video codec a CRF from the one quality draw every
codec gets: quality 20–95 -> CRF 43–22, the range `refscale rd` sweeps for the video LR (it was 40–22
before predicted frames were drawn; those are coded harder than a keyframe at the same CRF)."""
PREDICTED_SHARE = 0.9
"""Share of video samples coded as a predicted frame: at the default GOP of 10, 9 frames in 10 are."""
MAX_SHIFT = 2.0
MAX_ZOOM = 0.03
"""Motion of the previous frame a predicted sample is coded against: a translation up to `MAX_SHIFT`
LR pixels and a zoom up to ±`MAX_ZOOM` (a car driving forward), both uniform."""


def crf_for_quality(quality: int) -> int:
    """The CRF a video codec gets for a drawn `quality` (`CRF_AT_QUALITY`, rounded, clipped to 0–51)."""
    (q0, c0), (q1, c1) = CRF_AT_QUALITY
    return int(np.clip(round(c0 + (quality - q0) * (c1 - c0) / (q1 - q0)), 0, 51))


def previous_frame(img: np.ndarray, motion: tuple[float, float, float]) -> np.ndarray:
    """`img` as the frame before it might have shown it: moved by (dx, dy) LR pixels and zoomed by
    1 + `zoom` about its centre, edges mirrored. What a predicted sample is coded against."""
    dx, dy, zoom = motion
    h, w = img.shape[:2]
    scale = 1.0 + zoom
    matrix = np.array([[scale, 0.0, (1 - scale) * (w - 1) / 2 + dx],
                       [0.0, scale, (1 - scale) * (h - 1) / 2 + dy]], np.float64)
    return cv2.warpAffine(img, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def _mosaic(images: Sequence[np.ndarray]) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The images tiled into one picture (cells padded to multiples of 8) and each one's top-left corner."""
    h, w = images[0].shape[:2]
    cell_h, cell_w = -(-h // 8) * 8, -(-w // 8) * 8
    cols = int(np.ceil(np.sqrt(len(images))))
    rows = -(-len(images) // cols)
    mosaic = np.full((rows * cell_h, cols * cell_w, 3), 128, np.uint8)
    corners = [(r * cell_h, c * cell_w) for r, c in (divmod(i, cols) for i in range(len(images)))]
    for img, (y, x) in zip(images, corners, strict=True):
        mosaic[y: y + h, x: x + w] = img
    return mosaic, corners


def video_roundtrip_tiled(images: Sequence[np.ndarray], codec: str, crf: int,
                          motions: Sequence[tuple[float, float, float]] | None = None) -> list[np.ndarray]:
    """The decoded images after coding them tiled into one picture of a `codec` stream.

    Without `motions`: as one keyframe. With one (dx, dy, zoom) per image: as the predicted frame
    that follows a keyframe of the images moved by those motions (`previous_frame`), which is
    what 9 in 10 frames of the LR stream are: coded harder, with skipped blocks and motion
    compensated detail that a keyframe never shows. One encoder per batch instead of one per
    sample (opening libx265 costs ~30 ms). Tiles are whole multiples of 8 pixels apart, but a
    coding unit may still straddle two of them, which a real LR frame never sees: a small, stated
    approximation.
    """
    from refscale_model.codecs.video import VideoStreamDecoder, VideoStreamEncoder

    if codec not in VIDEO_CODECS:
        raise ValueError(f"{codec!r} is not a video codec ({VIDEO_CODECS})")
    if any(img.shape != images[0].shape for img in images):
        raise ValueError("tiled video coding needs images of one size")
    if motions is not None and len(motions) != len(images):
        raise ValueError(f"one motion per image: {len(motions)} for {len(images)}")
    mosaic, corners = _mosaic(images)
    if motions is None:
        frames = [mosaic]
    else:
        frames = [_mosaic([previous_frame(img, m) for img, m in zip(images, motions, strict=True)])[0], mosaic]
    encoder, decoder = VideoStreamEncoder(codec, crf=crf, gop=len(frames)), VideoStreamDecoder(codec)
    for frame in frames:
        decoded = decoder.decode(encoder.encode(frame), mosaic.shape[:2])
    h, w = images[0].shape[:2]
    return [decoded[y: y + h, x: x + w].copy() for y, x in corners]


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
    """One sample's codec and quality; for a video codec, the motion (dx, dy, zoom) of the frame it
    is predicted from, or None for a keyframe."""

    codec: str
    quality: int
    motion: tuple[float, float, float] | None = None


def draw_codecs(
    rng: np.random.Generator, n: int, codecs: Sequence[str], quality: tuple[int, int]
) -> list[CodecDraw]:
    """Per-sample codec (uniform over `codecs`) and quality (uniform integer in the closed range);
    a video sample is a predicted frame with probability `PREDICTED_SHARE`, its motion uniform
    within `MAX_SHIFT` and `MAX_ZOOM`."""
    lo, hi = quality
    if not codecs or not 1 <= lo <= hi <= 100:
        raise ValueError(f"need at least one codec and 1 <= quality range <= 100, got {codecs} {quality}")
    draws = []
    for _ in range(n):
        codec, q = str(codecs[rng.integers(len(codecs))]), int(rng.integers(lo, hi + 1))
        motion = None
        if codec in VIDEO_CODECS and rng.random() < PREDICTED_SHARE:
            dx, dy = rng.uniform(-MAX_SHIFT, MAX_SHIFT, 2)
            motion = (float(dx), float(dy), float(rng.uniform(-MAX_ZOOM, MAX_ZOOM)))
        draws.append(CodecDraw(codec, q, motion))
    return draws


def codec_straight_through(lr: Tensor, draws: Sequence[CodecDraw]) -> Tensor:
    """The float B×3×h×w LR (on the 8-bit grid) replaced by its real codec decode, gradient straight through.

    Forward: exactly what a decoder reads back from the stored JPEG/WebP/AVIF (uint8 / 255); for
    H.264/H.265 what it reads back from the batch's tiled keyframe or predicted frame
    (`video_roundtrip_tiled`).
    Backward: identity, as for the 8-bit rounding (`quantise_lr`).
    """
    if len(draws) != lr.shape[0]:
        raise ValueError(f"one codec draw per sample: {len(draws)} draws for a batch of {lr.shape[0]}")
    u8 = torch.round(lr.detach().clamp(0, 1) * 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    decoded = np.empty_like(u8)
    for i, (img, d) in enumerate(zip(u8, draws, strict=True)):
        if d.codec in IMAGE_CODECS:
            decoded[i] = roundtrip_rgb(img, d.codec, d.quality)[0]
    for codec in VIDEO_CODECS:  # one tiled stream per codec and frame type: its samples share the first one's CRF
        for predicted in (False, True):
            rows = [i for i, d in enumerate(draws) if d.codec == codec and (d.motion is not None) == predicted]
            if rows:
                motions = [draws[i].motion for i in rows] if predicted else None
                decoded[rows] = np.stack(video_roundtrip_tiled([u8[i] for i in rows], codec,
                                                               crf_for_quality(draws[rows[0]].quality), motions))
    dec = torch.from_numpy(decoded).permute(0, 3, 1, 2).to(lr.device, lr.dtype) / 255.0
    return lr + (dec - lr).detach()


__all__ = ["CODECS", "IMAGE_CODECS", "PREDICTED_SHARE", "VIDEO_CODECS", "CodecDraw", "codec_straight_through",
           "crf_for_quality", "decode_rgb", "draw_codecs", "encode_rgb", "previous_frame", "roundtrip_rgb",
           "video_roundtrip_tiled"]
