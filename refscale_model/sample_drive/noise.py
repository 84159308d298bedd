"""Procedural noise helpers: value-noise fBm built from cv2.resize, so large textures stay cheap.

Everything takes an explicit `np.random.Generator`, which keeps the world bit-for-bit reproducible.
"""

from __future__ import annotations

import math

import cv2
import numpy as np


def value_noise(
    rng: np.random.Generator, shape: tuple[int, int], cell: tuple[float, float], periodic: bool = False
) -> np.ndarray:
    """Smooth noise in [0, 1] with features of `cell` = (rows, cols) pixels.

    Periodic noise tiles seamlessly (shape must then be a multiple of the cell), which is what
    lets a detail texture be drawn with BORDER_WRAP.
    """
    h, w = shape
    cy, cx = max(cell[0], 1.0), max(cell[1], 1.0)
    if periodic:
        ny, nx = max(1, round(h / cy)), max(1, round(w / cx))
        grid = rng.random((ny, nx), dtype=np.float32)
        pad = 2
        grid = np.pad(grid, pad, mode="wrap")
        out_h, out_w = round(h * (ny + 2 * pad) / ny), round(w * (nx + 2 * pad) / nx)
        up = cv2.resize(grid, (out_w, out_h), interpolation=cv2.INTER_CUBIC)
        oy, ox = round(h * pad / ny), round(w * pad / nx)
        return np.ascontiguousarray(up[oy : oy + h, ox : ox + w])
    ny, nx = math.ceil(h / cy) + 3, math.ceil(w / cx) + 3
    grid = rng.random((ny, nx), dtype=np.float32)
    up = cv2.resize(grid, (round(nx * cx), round(ny * cy)), interpolation=cv2.INTER_CUBIC)
    oy, ox = round(cy), round(cx)
    return np.ascontiguousarray(up[oy : oy + h, ox : ox + w])


def fbm(
    rng: np.random.Generator,
    shape: tuple[int, int],
    cell: float | tuple[float, float],
    octaves: int = 4,
    gain: float = 0.5,
    periodic: bool = False,
) -> np.ndarray:
    """Fractal noise, zero-mean, roughly in [-1, 1]; `cell` is the largest feature size in pixels."""
    cy, cx = (cell, cell) if isinstance(cell, int | float) else cell
    total = np.zeros(shape, np.float32)
    amp, norm = 1.0, 0.0
    for _ in range(octaves):
        if periodic and (shape[0] % max(1, round(cy)) or shape[1] % max(1, round(cx))):
            break
        total += amp * (value_noise(rng, shape, (cy, cx), periodic) - 0.5)
        norm += amp * 0.5
        amp *= gain
        cy, cx = cy / 2.0, cx / 2.0
        if cy < 1.0 and cx < 1.0:
            break
    return total / max(norm, 1e-6) * 1.6


def smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def hash01(*ints: np.ndarray | int) -> np.ndarray:
    """Cheap deterministic integer hash to [0, 1): per-brick / per-slab random tones without loops."""
    shape = np.broadcast(*[np.asarray(v) for v in ints]).shape
    acc = np.full(shape, 2166136261, dtype=np.uint32)
    for i, v in enumerate(ints):
        a = np.asarray(v).astype(np.int64).astype(np.uint32)
        acc = (acc ^ (a * np.uint32(2654435761 + 97 * i))) * np.uint32(16777619)
        acc = acc ^ (acc >> np.uint32(13))
    acc = acc * np.uint32(1274126177)
    acc = acc ^ (acc >> np.uint32(16))
    return (acc & np.uint32(0xFFFFFF)).astype(np.float32) / np.float32(16777216.0)


def to_u8(img: np.ndarray, floor: int = 0) -> np.ndarray:
    """Float [0, 1] to uint8; `floor` keeps painted pixels away from the 0 key colour."""
    scaled = img * np.float32(255.0)
    scaled += np.float32(0.5)
    np.clip(scaled, floor, 255, out=scaled)
    return scaled.astype(np.uint8)
