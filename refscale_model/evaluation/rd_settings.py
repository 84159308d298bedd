"""The scoreboard's fixed settings: metadata allowances, reported rates, methods, codecs, quality sweeps."""

from __future__ import annotations

META_BYTES = {"bicubic": 8, "noref": 8, "refscale": 48, "fullres": 0}
"""Per-frame metadata allowance in bytes: original size + scale (8) for a rescaled frame, plus the
reference's cache id and SHA-256 (40) for a RefScale frame that uses its reference (a gated frame
names none: 8). Full-res anchors carry their sizes in their
own headers. (x265-ref also needs to name its reference: it gets the same 40 bytes.)"""
X265_REF_META_BYTES = 40

RATES_BPP = (0.05, 0.1, 0.2, 0.4, 0.8)
SEQ_RATES_BPP = (0.02, 0.05, 0.1, 0.2)
"""Rates of the sequence (video) table: where a fleet's video uplink lives."""
LOW_RATE_BPP = 0.2
"""The issue's low-rate region: 'at least on par with full-resolution AVIF below 0.2 bpp'."""
VIDEO_CODECS = ("h264", "h265")
RESCALE_METHODS = ("bicubic", "noref", "refscale")
IMAGE_CODECS = ("jpeg", "webp", "avif")
ANCHORS = ("jpeg", "webp", "avif", "x265-intra", "x265-ref")
DEFAULT_QUALITIES: dict[str, list[int]] = {
    "jpeg": [30, 50, 70, 90],
    "webp": [30, 50, 70, 90],
    "avif": [30, 50, 70, 85],
    "x265": [22, 28, 34, 40],
    "h264": [22, 27, 32, 37],
    "h265": [22, 27, 32, 37],
}
