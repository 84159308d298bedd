"""Capture-condition jitter of the *target* (and its reference alike): night, glare and saturated colour.

The training frames are mostly daylight, so the INN never saw what a night drive is made of: dark
frames lit by sodium lamps, saturated yellows and clipped highlights. There the shipped nets rebuilt
4–11 dB below bicubic (RobotCar night queries) with colour casts and a 2×2 checkerboard, also from a
lossless LR. Revisit-side changes live in `synthetic.py`; this one changes what is being coded.
"""

from __future__ import annotations

import numpy as np


def capture_jitter(images: tuple[np.ndarray, ...], rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """The same drawn capture condition applied to uint8 RGB images of one sample (target, reference)."""
    kind = rng.choice(["night", "glare", "saturate"])
    gamma = float(rng.uniform(0.8, 1.6))
    if kind == "night":  # dark, warm lamp light, exposure pushed so lamps and signs clip
        gain = np.float32(rng.uniform(0.15, 0.5)) * np.array([1.15, 0.95, 0.6], np.float32)
        boost = float(rng.uniform(1.0, 3.0))
    elif kind == "glare":  # over-exposed: large clipped areas
        gain = np.float32(rng.uniform(1.3, 2.2)) * rng.uniform(0.9, 1.1, size=3).astype(np.float32)
        boost = 1.0
    else:  # vivid colour: saturation up around the grey level
        gain = rng.uniform(0.8, 1.2, size=3).astype(np.float32)
        boost = 1.0
    saturation = float(rng.uniform(1.2, 2.0)) if kind != "glare" else 1.0
    out = []
    for image in images:
        x = image.astype(np.float32) / 255.0
        x = x**gamma * gain
        if boost > 1.0:  # bright pixels (lamps, signs) pushed over the top
            x = x * (1.0 + (boost - 1.0) * np.clip(x.max(axis=2, keepdims=True) * 2.0 - 0.2, 0.0, 1.0))
        if saturation != 1.0:
            grey = x.mean(axis=2, keepdims=True)
            x = grey + (x - grey) * saturation
        out.append((np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))
    return tuple(out)
