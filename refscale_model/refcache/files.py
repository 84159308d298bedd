"""The cache's image files: lossless PNG bytes, decoding, and crash-safe (atomic) writes."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

from refscale_model.io.images import encode_png

PNG_LEVEL = 3
"""Lossless either way; 3 is ~3× faster to write than 9 for ~5 % more bytes (the cache writes a lot)."""


MIN_SIDE_PX = 32
"""Smallest accepted side of a reference: registration (ORB, ECC pyramids) needs a few dozen pixels."""
MAX_ASPECT = 8.0
"""Largest accepted long/short side ratio: wider strips are not camera frames and break registration."""


def check_reference_size(height: int, width: int) -> str | None:
    """Why an image of this size cannot be a reference, or None when it can."""
    if min(height, width) < MIN_SIDE_PX:
        return f"{width}x{height} px: each side must be at least {MIN_SIDE_PX} px"
    if max(height, width) / min(height, width) > MAX_ASPECT:
        return f"{width}x{height} px: aspect ratio {max(height, width) / min(height, width):.1f} exceeds {MAX_ASPECT:g}"
    return None


def encode_reference_png(image_rgb: np.ndarray) -> bytes:
    """PNG bytes of a reference image (RGB uint8 H×W×3 only) at the cache's compression level."""
    if image_rgb.dtype != np.uint8 or image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        raise ValueError(f"reference must be RGB uint8 H×W×3, got {image_rgb.dtype} {image_rgb.shape}")
    return encode_png(image_rgb, level=PNG_LEVEL)


def decode_png(data: bytes) -> np.ndarray | None:
    """RGB uint8 H×W×3 of an image file's bytes, or None when they do not decode."""
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def image_hw(data: bytes) -> tuple[int, int] | None:
    """(height, width) of an image file's bytes as stored, or None when they do not decode."""
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    return None if img is None else (int(img.shape[0]), int(img.shape[1]))


def write_atomic(path: Path, data: bytes) -> None:
    """Write, fsync, rename: a reader or a crash never sees a partial image under its final name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".png", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
