"""The scoreboard's fixed settings: metadata allowances, reported rates, methods, codecs, quality sweeps."""

from __future__ import annotations

META_BYTES = {"bicubic": 8, "noref": 47, "refscale": 115, "fullres": 0}
"""Per-frame metadata in bytes. RefScale and the no-ref INN: what the recorder's frame record really
costs on disk (`bags.accounting.topic_disk_bytes`, 1 s chunks at 10 frames/s, 120 frames of the
sample drive, H.265 LR; the short record with the registration as corners, format 7): 113 B with a
reference (its id and hash prefix, corners, S_map grid; a gated frame names none) and 45 B without,
plus 2 B for the measured LR PSNR (`lr_psnr`, since 2026-12-04: the whole bag grew by 1.7 B per frame);
`tests/test_record_cost.py` keeps the recorder within them. Bicubic:
original size + scale (8 B), the least a rescaled frame needs. Full-res anchors carry their sizes in
their own headers; x265-ref needs to name its reference (40 B: cache id + SHA-256)."""
X265_REF_META_BYTES = 40
PREDICTED_LR_META_BYTES = 32
"""A frame whose LR is predicted from its reference (LR codec `h265-ref`) also records the hidden picture's
CRC-32 (`lr_ref_crc`: the key and 8 hex digits as CDR strings, 32 B before chunk compression)."""
REFERENCE_NAMING_BYTES = META_BYTES["refscale"] - META_BYTES["noref"]
"""... and a frame whose record names no reference otherwise (bicubic, the no-ref INN, a gated RefScale frame)
pays what a RefScale record with a reference costs more than one without: its id, hash prefix and corners."""
REFERENCE_CODECS = ("h265-ref",)
"""LR codecs that may predict the LR from the reference (`codecs.reference_predicted`; crf from the video sweep)."""

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
