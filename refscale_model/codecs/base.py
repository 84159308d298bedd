"""The codec interfaces and their one error type (no codec library imported here)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

CODEC_NAMES: tuple[str, ...] = ("png", "jpeg", "webp", "avif")
"""Still-image codecs (`get_codec`): every frame decodes alone."""
VIDEO_CODEC_NAMES: tuple[str, ...] = ("h264", "h265")
"""Video codecs (`open_stream_encoder/decoder` only): frames decode in stream order from a keyframe."""
LR_CODEC_NAMES: tuple[str, ...] = CODEC_NAMES + VIDEO_CODEC_NAMES


class CodecError(ValueError):
    """A bad codec name or quality, or a bitstream that does not decode."""


def check_quality(name: str, quality: int | None, lossless: bool) -> int | None:
    """The quality to use: None or an int 0–100 (bools and floats are rejected, not rounded)."""
    if quality is None:
        return None
    if lossless:
        raise CodecError(f"codec {name!r} is lossless and takes no quality (got {quality!r}); pass None")
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not 0 <= int(quality) <= 100:
        raise CodecError(f"codec {name!r}: quality must be an int 0–100 or None, got {quality!r}")
    return int(quality)


def check_image(image: np.ndarray) -> np.ndarray:
    """RGB uint8 H×W×3 or grey H×W, contiguous."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise CodecError(f"LR images are uint8 arrays, got {getattr(image, 'dtype', type(image))}")
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise CodecError(f"expected RGB H×W×3 or grey H×W, got shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise CodecError(f"empty image {image.shape}")
    return np.ascontiguousarray(image)


@runtime_checkable
class LrCodec(Protocol):
    """A still-image codec: every bitstream decodes on its own."""

    name: str
    format: str
    lossless: bool
    default_quality: int | None

    def encode(self, image: np.ndarray, quality: int | None = None) -> bytes: ...

    def decode(self, data: bytes) -> np.ndarray: ...


@dataclass(frozen=True)
class EncodedLr:
    """One coded LR frame of a camera stream."""

    data: bytes
    is_keyframe: bool
    """Decodable without earlier frames (always true for image codecs)."""
    format: str
    """`sensor_msgs/CompressedImage.format` of `data`."""


@runtime_checkable
class LrStreamEncoder(Protocol):
    """Per-camera encoder: frames go in in capture order; a video codec keeps its GOP state here."""

    format: str

    def encode(self, rgb: np.ndarray, quality: int | None = None) -> EncodedLr: ...


@runtime_checkable
class LrStreamDecoder(Protocol):
    """Per-camera decoder matching an `LrStreamEncoder`: frames in the order they were coded."""

    def decode(self, frame: EncodedLr | bytes) -> np.ndarray: ...
