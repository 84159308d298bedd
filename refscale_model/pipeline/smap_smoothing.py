"""Shape the quantised S_map before the network conditions on it and the bag stores it.

Two steps, both exact at the far end (encoder and decoder condition on the same map):

* a median of the levels (`smooth_smap`), and
* coarser storage (`coarsen_smap` / `expand_smap`): the rounded mean of each `block`×`block` group of
  cells is stored, and both ends condition on it repeated back over the group.

The stored map was a 16-level grey PNG, entropy-coded cell by cell (`io.images.encode_smap_png`; since
2026-12-04 it is context-coded where that is smaller, `io.smap_coding`); on a 720p frame it was ~1.2 kB,
8–10 % of a WebP LR at 0.1 bits per HR pixel. Much of that is cell-to-cell noise that carries nothing
the inverse uses: a 3×3 median of the levels cut the map by about a third
(1,239 → 785 B on a sample-drive frame) and rebuilt PSNR did not drop (sample drive, 6 frames, WebP:
RefScale against the no-ref INN −12.0 → −13.9 % BD-rate; docs/rate-distortion.md). The map's detail
below two cells is also worth less than its bytes: storing 2×2 means took another ~450 B off a
sample-drive frame (~150 B off a webcam frame) within 0.02 dB, while zeroing the low levels instead cost 0.05–0.1 dB
(docs/rate-distortion.md, "A coarser stored S_map").
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

DEFAULT_MEDIAN = 3
"""Median window (cells) applied to every stored S_map; 1 = off. A 5×5 median saved a little more
(684 B) but cost rebuilt PSNR."""


DEFAULT_BLOCK = 2
"""Cells per side of a stored S_map value (1 = every cell stored, as before format 5)."""
BLOCKS = (1, 2, 3, 4)


def checked_block(block: int) -> int:
    """`block` if it is one `coarsen_smap` takes (1 = off, 2–4 cells), else a ValueError."""
    if block not in BLOCKS:
        raise ValueError(f"S_map block must be one of {BLOCKS} cells, got {block}")
    return int(block)


def checked_median(median: int) -> int:
    """`median` if it is a window `smooth_smap` takes (1 = off, 3 or 5 cells), else a ValueError."""
    if median not in (1, 3, 5):
        raise ValueError(f"S_map median must be 1 (off), 3 or 5 cells, got {median}")
    return int(median)


def smooth_smap(levels: np.ndarray, median: int = DEFAULT_MEDIAN) -> np.ndarray:
    """The `median`×`median` median of one frame's S_map levels (hs×ws uint8). An all-zero (gated) map
    stays all zero; a map the median empties is then gated like one (no map stored, no reference)."""
    checked_median(median)
    _check_levels(levels)
    return levels if median == 1 else cv2.medianBlur(np.ascontiguousarray(levels), median)


def coarsen_smap(levels: np.ndarray, block: int = DEFAULT_BLOCK) -> np.ndarray:
    """The stored form of a map: per `block`×`block` group of cells the rounded mean level of its
    cells inside the map (edge groups average fewer cells), ⌈hs/block⌉×⌈ws/block⌉ uint8."""
    checked_block(block)
    _check_levels(levels)
    if block == 1:
        return levels
    h, w = levels.shape
    rows, cols = -(-h // block), -(-w // block)
    padded = np.zeros((rows * block, cols * block), np.float64)
    inside = np.zeros_like(padded)
    padded[:h, :w], inside[:h, :w] = levels, 1.0
    sums = padded.reshape(rows, block, cols, block).sum(axis=(1, 3))
    counts = inside.reshape(rows, block, cols, block).sum(axis=(1, 3))
    return np.floor(sums / counts + 0.5).astype(np.uint8)


def expand_smap(coarse: np.ndarray, block: int, shape: tuple[int, int]) -> np.ndarray:
    """The map both ends condition on: each stored value repeated over its group, cropped to `shape`
    (the S_map grid); refuses a stored map that does not cover `shape` in ⌈·/block⌉ values."""
    checked_block(block)
    _check_levels(coarse)
    want = (-(-shape[0] // block), -(-shape[1] // block))
    if coarse.shape != want:
        raise ValueError(f"stored S_map is {coarse.shape[0]}×{coarse.shape[1]}, expected {want[0]}×{want[1]} "
                         f"for a {shape[0]}×{shape[1]} grid in {block}×{block} blocks")
    if block == 1:
        return coarse
    return np.ascontiguousarray(np.repeat(np.repeat(coarse, block, axis=0), block, axis=1)[: shape[0], : shape[1]])


def shape_smap(levels: np.ndarray, median: int = DEFAULT_MEDIAN, block: int = DEFAULT_BLOCK) -> np.ndarray:
    """What a referenced frame conditions on: the median-smoothed map in its stored resolution,
    repeated back to the grid (`expand_smap(coarsen_smap(...))`); the bag stores `coarsen_smap` of it."""
    smooth = smooth_smap(levels, median)
    return expand_smap(coarsen_smap(smooth, block), block, smooth.shape)


@dataclass(frozen=True)
class SmapStorage:
    """How the recorder shapes and stores a referenced frame's map (`median`, `block`, both checked)."""

    median: int = DEFAULT_MEDIAN
    block: int = DEFAULT_BLOCK

    def __post_init__(self) -> None:
        checked_median(self.median)
        checked_block(self.block)

    def condition(self, levels: np.ndarray) -> np.ndarray:
        """The map the network conditions on (full grid)."""
        return shape_smap(levels, self.median, self.block)

    def stored(self, conditioned: np.ndarray) -> np.ndarray:
        """What the bag stores of a conditioned map (one value per block)."""
        return coarsen_smap(conditioned, self.block)


def _check_levels(levels: np.ndarray) -> None:
    if levels.dtype != np.uint8 or levels.ndim != 2:
        raise ValueError(f"an S_map is hs×ws uint8, got {levels.dtype} {levels.shape}")


__all__ = ["BLOCKS", "DEFAULT_BLOCK", "DEFAULT_MEDIAN", "SmapStorage", "checked_block", "checked_median",
           "coarsen_smap", "expand_smap", "shape_smap", "smooth_smap"]
