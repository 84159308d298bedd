"""Fit a network's decoder blend α(LR PSNR) (`models.decoder_blend`) on training pairs.

For each training crop, LR codec and quality: rebuild with the full decoder (`full`) and with the bare
inverse (`inn`); with d = full − inn and e = HR − inn, the α that minimises ‖e − α d‖² over a set of
samples is Σ⟨d, e⟩ / Σ⟨d, d⟩. The samples are binned by the LR's PSNR after its codec, α is fitted per
bin, made non-increasing in LR PSNR (a cleaner LR never needs more restoring; pool-adjacent-violators
weighted by Σ⟨d, d⟩) and clipped to [0, 1]: never more than the trained decoder. Validation pairs and
the named validation sets (`EXCLUDED_SETS`) are never read.
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from refscale_model.codecs import get_codec, is_video_codec
from refscale_model.evaluation.anchors import video_sequence
from refscale_model.evaluation.pairs import to_tensor
from refscale_model.metrics import psnr
from refscale_model.models.decoder_blend import LOSSLESS_DB, DecoderBlend
from refscale_model.models.refscale import RefScale
from refscale_model.training.data import read_rgb, split_pairs

EXCLUDED_SETS = ("road_robotcar_seasons",)
"""Validation sets as a whole (the project's named validation split): never calibrated on."""
CODEC_PLAN: tuple[tuple[str, tuple[int | None, ...]], ...] = (
    ("avif", (20, 35, 50, 70, 85)),
    ("webp", (30, 60, 90)),
    ("jpeg", (50, 90)),
    ("h265", (40, 32, 24)),
    ("png", (None,)),
)
"""LR codecs and rate settings (quality, or crf for h265: each LR one keyframe) a calibration codes."""
BIN_EDGES = (24.0, 26.0, 28.0, 30.0, 32.0, 34.0, 36.0, 38.0, 42.0, LOSSLESS_DB)
"""LR PSNR bin edges (dB): below the first, between consecutive ones, and lossless (≥ LOSSLESS_DB)."""


@dataclass(frozen=True)
class BlendSample:
    """One coded crop: the LR's PSNR after its codec and the least-squares sums of its two rebuilds."""

    lr_psnr: float
    de: float
    dd: float


@dataclass(frozen=True)
class BlendFit:
    blend: DecoderBlend
    bins: list[tuple[float, int, float]]
    """(mean LR PSNR, samples, raw least-squares α) per populated bin, before the monotone fit."""

    def describe(self, samples: int) -> str:
        raw = ", ".join(f"{x:.1f} dB: {a:.2f} (n={n})" for x, n, a in self.bins)
        knots = ", ".join(f"{x:.1f} dB: {a:.2f}" for x, a in self.blend.knots)
        return (f"least-squares α per LR-PSNR bin over {samples} coded training crops ({raw}); "
                f"non-increasing, clipped to [0, 1]: {knots}")


def fit_decoder_blend(samples: Sequence[BlendSample], min_samples: int = 3) -> BlendFit:
    """The monotone per-bin least-squares fit (see the module docstring); bins with fewer than
    `min_samples` samples are left out."""
    edges = (-math.inf, *BIN_EDGES, math.inf)
    bins: list[tuple[float, int, float, float]] = []  # (mean psnr, n, Σde, Σdd)
    for lo, hi in zip(edges, edges[1:], strict=False):
        sel = [s for s in samples if lo <= min(s.lr_psnr, LOSSLESS_DB) < hi and s.dd > 0]
        if len(sel) < min_samples:
            continue
        x = LOSSLESS_DB if lo >= LOSSLESS_DB else float(np.mean([s.lr_psnr for s in sel]))
        bins.append((x, len(sel), sum(s.de for s in sel), sum(s.dd for s in sel)))
    if not bins:
        raise ValueError(f"no LR-PSNR bin has {min_samples} samples")
    raw = [(x, n, de / dd) for x, n, de, dd in bins]
    # pool adjacent violators: α must not increase with LR PSNR
    blocks = [[de / dd, dd, [i]] for i, (_, _, de, dd) in enumerate(bins)]
    merged: list[list] = []
    for block in blocks:
        merged.append(block)
        while len(merged) > 1 and merged[-2][0] < merged[-1][0]:
            b = merged.pop()
            a = merged.pop()
            weight = a[1] + b[1]
            merged.append([(a[0] * a[1] + b[0] * b[1]) / weight, weight, a[2] + b[2]])
    alpha = [0.0] * len(bins)
    for value, _, members in merged:
        for i in members:
            alpha[i] = min(1.0, max(0.0, value))
    knots = tuple((bins[i][0], alpha[i]) for i in range(len(bins)))
    return BlendFit(DecoderBlend(knots), raw)


@contextlib.contextmanager
def bare_inverse(net: RefScale) -> Iterator[None]:
    """Within the block, `net` rebuilds with its inverse INN only (decoder networks off)."""
    saved = (net.lr_restore, net.hr_refine, net.decoder_blend)
    net.lr_restore = net.hr_refine = net.decoder_blend = None
    try:
        yield
    finally:
        net.lr_restore, net.hr_refine, net.decoder_blend = saved


def _coded(lr: np.ndarray, codec: str, setting: int | None) -> np.ndarray:
    """`lr` through `codec` and back: a still image, or one IDR (`video_sequence`, the scoreboard's CPU encoder)."""
    if is_video_codec(codec):
        return video_sequence(codec, [lr], setting, gop=1)[0].decoded
    image = get_codec(codec)
    return image.decode(image.encode(lr, setting))


@torch.no_grad()
def blend_samples(net: RefScale, hr: np.ndarray, ref: np.ndarray | None,
                  plan: Sequence[tuple[str, Sequence[int | None]]] = CODEC_PLAN) -> tuple[list[BlendSample], bool]:
    """Samples of one crop coded by `net`, and whether its referenced path coded it (False: no
    reference, or gated to the fallback, whose decoder the samples then do not measure)."""
    hr_t = to_tensor(hr)
    ref_t = to_tensor(ref) if ref is not None and net.encoder is not None else None
    enc = net.downscale(hr_t, ref_t)
    lr = enc.lr[0].permute(1, 2, 0).numpy()
    target = hr_t
    ref_in = ref_t if enc.smap is not None else None
    referenced = enc.smap is not None and not bool(net.empty_smaps(enc.smap).all())
    out = []
    for codec, settings in plan:
        for setting in settings:
            decoded = _coded(lr, codec, setting)
            lr_psnr = psnr(lr, decoded)
            args = (to_tensor(decoded), enc.smap, ref_in, enc.size)
            full = net.upscale(*args)
            with bare_inverse(net):
                bare = net.upscale(*args)
            d, e = full - bare, target - bare
            out.append(BlendSample(min(lr_psnr, 99.0), float((d * e).sum()), float((d * d).sum())))
    return out, referenced


def training_crops(data_root: Path, per_set: int, crop: int, seed: int = 0,
                   ) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(set, target crop, reference crop) from each set's training split, `per_set` pairs drawn per set."""
    rng = random.Random(seed)
    for set_dir in sorted(p for p in data_root.iterdir() if (p / "pairs.csv").is_file()):
        if set_dir.name in EXCLUDED_SETS:
            continue
        train, _ = split_pairs(set_dir)
        for row in rng.sample(train, min(per_set, len(train))):
            hr, ref = read_rgb(row.target), read_rgb(row.reference)
            h, w = min(hr.shape[0], ref.shape[0], crop), min(hr.shape[1], ref.shape[1], crop)
            h, w = h // 16 * 16, w // 16 * 16
            y0, x0 = (hr.shape[0] - h) // 2, (hr.shape[1] - w) // 2
            yr, xr = (ref.shape[0] - h) // 2, (ref.shape[1] - w) // 2
            yield set_dir.name, hr[y0:y0 + h, x0:x0 + w], ref[yr:yr + h, xr:xr + w]


__all__ = ["CODEC_PLAN", "EXCLUDED_SETS", "BlendFit", "BlendSample", "bare_inverse", "blend_samples",
           "fit_decoder_blend", "training_crops"]
