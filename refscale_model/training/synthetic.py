"""Synthetic revisits: turn one real image into a plausible "reference from another drive".

Real revisit pairs are few and rarely aligned; this augmentation covers what a fleet sees:
light and weather changes, a slightly different pose (small homography) and local content
changes (objects moved, added, removed). Every operation is drawn from the given RNG.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class SyntheticRevisit:
    p_photometric: float = 0.9
    p_night: float = 0.15
    p_haze: float = 0.25
    p_rain: float = 0.15
    p_snow: float = 0.1
    p_homography: float = 0.6
    max_corner_shift: float = 0.03
    p_local_change: float = 0.5

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        x = image.astype(np.float32) / 255.0
        if rng.random() < self.p_homography:
            x = small_homography(x, rng, self.max_corner_shift)
        if rng.random() < self.p_local_change:
            x = local_changes(x, rng)
        if rng.random() < self.p_photometric:
            x = photometric(x, rng)
        if rng.random() < self.p_night:
            x = night(x, rng)
        if rng.random() < self.p_haze:
            x = haze(x, rng)
        if rng.random() < self.p_rain:
            x = rain(x, rng)
        if rng.random() < self.p_snow:
            x = snow(x, rng)
        return (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)


def photometric(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Exposure, white balance and gamma of another time of day / camera setting."""
    gain = rng.uniform(0.6, 1.4)
    wb = rng.uniform(0.85, 1.15, size=3).astype(np.float32)
    gamma = rng.uniform(0.7, 1.4)
    return np.clip(x * gain * wb, 0, 1) ** gamma


def night(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Dusk/night: dark, blue-tinted, noisy."""
    dark = x * rng.uniform(0.2, 0.5) * np.array([0.8, 0.9, 1.1], np.float32)
    return dark + rng.normal(0, 0.02, x.shape).astype(np.float32)


def haze(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    t = rng.uniform(0.55, 0.9)
    airlight = rng.uniform(0.7, 0.95)
    return x * t + airlight * (1 - t)


def rain(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Bright, slanted motion-blurred streaks."""
    h, w = x.shape[:2]
    drops = (rng.random((h, w)) < rng.uniform(0.002, 0.01)).astype(np.float32)
    length = int(rng.integers(5, 15))
    kernel = np.zeros((length, length), np.float32)
    cv2.line(kernel, (0, 0), (int(rng.integers(0, length // 2 + 1)), length - 1), 1.0, 1)
    streaks = cv2.filter2D(drops, -1, kernel / max(kernel.sum(), 1.0)) * length * 0.5
    return x + np.clip(streaks, 0, 0.6)[..., None] * rng.uniform(0.3, 0.7)


def snow(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = x.shape[:2]
    flakes = (rng.random((h, w)) < rng.uniform(0.002, 0.01)).astype(np.float32)
    flakes = cv2.GaussianBlur(flakes, (3, 3), 0.8) * 3.0
    return np.maximum(x, np.clip(flakes, 0, 1)[..., None])


def small_homography(x: np.ndarray, rng: np.random.Generator, max_shift: float) -> np.ndarray:
    """The car never stands in the same pose twice: jitter the four corners a few per cent."""
    h, w = x.shape[:2]
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    dst = src + rng.uniform(-max_shift, max_shift, (4, 2)).astype(np.float32) * np.float32([w, h])
    matrix = cv2.getPerspectiveTransform(src, dst)
    return cv2.warpPerspective(x, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def local_changes(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Moved/added/removed objects: copy patches from elsewhere or smear a region flat."""
    h, w = x.shape[:2]
    out = x.copy()
    for _ in range(int(rng.integers(1, 4))):
        ph, pw = int(rng.integers(h // 8, h // 3 + 1)), int(rng.integers(w // 8, w // 3 + 1))
        y0, x0 = int(rng.integers(0, h - ph + 1)), int(rng.integers(0, w - pw + 1))
        if rng.random() < 0.5:
            y1, x1 = int(rng.integers(0, h - ph + 1)), int(rng.integers(0, w - pw + 1))
            out[y0 : y0 + ph, x0 : x0 + pw] = x[y1 : y1 + ph, x1 : x1 + pw]
        else:
            out[y0 : y0 + ph, x0 : x0 + pw] = cv2.blur(out[y0 : y0 + ph, x0 : x0 + pw], (15, 15))
    return out
