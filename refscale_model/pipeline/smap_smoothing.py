"""Median-filter the quantised S_map before the network conditions on it and the bag stores it.

The stored map is a 16-level grey PNG, entropy-coded cell by cell (`io.images.encode_smap_png`); on a
720p frame it was ~1.2 kB, 8–10 % of a WebP LR at 0.1 bits per HR pixel. Much of that is cell-to-cell
noise that carries nothing the inverse uses: a 3×3 median of the levels cut the map by about a third
(1,239 → 785 B on a sample-drive frame) and rebuilt PSNR did not drop (sample drive, 6 frames, WebP:
RefScale against the no-ref INN −12.0 → −13.9 % BD-rate; docs/rate-distortion.md). Encoder and decoder
condition on the same smoothed map, so the inverse stays exact; no decoder change is needed.
"""

from __future__ import annotations

import cv2
import numpy as np

DEFAULT_MEDIAN = 3
"""Median window (cells) applied to every stored S_map; 1 = off. A 5×5 median saved a little more
(684 B) but cost rebuilt PSNR."""


def checked_median(median: int) -> int:
    """`median` if it is a window `smooth_smap` takes (1 = off, 3 or 5 cells), else a ValueError."""
    if median not in (1, 3, 5):
        raise ValueError(f"S_map median must be 1 (off), 3 or 5 cells, got {median}")
    return int(median)


def smooth_smap(levels: np.ndarray, median: int = DEFAULT_MEDIAN) -> np.ndarray:
    """The `median`×`median` median of one frame's S_map levels (hs×ws uint8). An all-zero (gated) map
    stays all zero; a map the median empties is then gated like one (no map stored, no reference)."""
    checked_median(median)
    if levels.dtype != np.uint8 or levels.ndim != 2:
        raise ValueError(f"an S_map is hs×ws uint8, got {levels.dtype} {levels.shape}")
    return levels if median == 1 else cv2.medianBlur(np.ascontiguousarray(levels), median)


__all__ = ["DEFAULT_MEDIAN", "checked_median", "smooth_smap"]
