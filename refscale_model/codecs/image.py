"""Still-image LR codecs (PNG, JPEG, WebP, AVIF) and their trivial per-camera streams.

Backends, chosen by measured speed on a 640×360 LR frame (2 shared cores; see docs/rate-distortion.md):
PNG, JPEG and WebP through OpenCV (libpng, libjpeg-turbo, libwebp); AVIF through Pillow's
built-in libavif (same bitstream as OpenCV's at equal speed, but decodes in half the time).
"""

from __future__ import annotations

import io
from functools import cache
from typing import Any

import cv2
import numpy as np

from refscale_model.codecs.base import (
    CODEC_NAMES,
    LR_CODEC_NAMES,
    CodecError,
    EncodedLr,
    LrCodec,
    LrStreamDecoder,
    LrStreamEncoder,
    check_image,
    check_quality,
)
from refscale_model.io.images import PNG_COMPRESSION

AVIF_SPEED = 9
"""libavif/libaom speed 0–10: 9 codes a 640×360 LR frame in ~14 ms on one core; 8 saves ~4 % of
the bytes for 3× the time (~45 ms), too slow for several 10 Hz cameras onboard."""


def _to_bgr(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image


def _from_bgr(image: np.ndarray | None, name: str) -> np.ndarray:
    if image is None:
        raise CodecError(f"not a decodable {name} bitstream")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if image.ndim == 3 else image


class _OpenCvCodec:
    """A codec behind cv2.imencode / cv2.imdecode."""

    name = ""
    format = ""
    lossless = False
    default_quality: int | None = None
    _ext = ""
    _quality_flag = -1

    def encode(self, image: np.ndarray, quality: int | None = None) -> bytes:
        image = check_image(image)
        q = check_quality(self.name, quality, self.lossless)
        q = self.default_quality if q is None else q
        params = [self._quality_flag, q] if q is not None else [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION]
        ok, buf = cv2.imencode(self._ext, _to_bgr(image), params)
        if not ok:
            raise CodecError(f"{self.name} encoding failed for shape {image.shape}")
        return buf.tobytes()

    def decode(self, data: bytes) -> np.ndarray:
        return _from_bgr(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED), self.name)


class PngCodec(_OpenCvCodec):
    name, format, lossless, _ext = "png", "png", True, ".png"


class JpegCodec(_OpenCvCodec):
    """Baseline JPEG, 4:2:0 chroma (libjpeg-turbo's default through OpenCV)."""

    name, format, default_quality, _ext, _quality_flag = "jpeg", "jpeg", 90, ".jpg", cv2.IMWRITE_JPEG_QUALITY


class WebpCodec(_OpenCvCodec):
    """Lossy WebP (VP8, 4:2:0, libwebp method 4); always stores colour, so grey input decodes as RGB."""

    name, format, default_quality, _ext, _quality_flag = "webp", "webp", 90, ".webp", cv2.IMWRITE_WEBP_QUALITY


class AvifCodec:
    """AVIF (AV1 intra, 8-bit 4:2:0) through Pillow's libavif, speed `AVIF_SPEED`."""

    name, format, lossless, default_quality = "avif", "avif", False, 75

    def __init__(self, speed: int = AVIF_SPEED) -> None:
        from PIL import features

        if not features.check("avif"):
            raise CodecError("avif: this Pillow has no AVIF support (Pillow >= 11.2 wheels carry libavif)")
        self.speed = speed

    def encode(self, image: np.ndarray, quality: int | None = None) -> bytes:
        from PIL import Image

        image = check_image(image)
        q = check_quality(self.name, quality, self.lossless)
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, "AVIF", quality=self.default_quality if q is None else q,
                                    speed=self.speed, subsampling="4:2:0")
        return buf.getvalue()

    def decode(self, data: bytes) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(io.BytesIO(data)) as im:
                im = im.convert("L") if im.mode in ("L", "LA") else im.convert("RGB")
                return np.asarray(im).copy()
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise CodecError(f"not a decodable avif bitstream: {exc}") from exc


_CODECS = {"png": PngCodec, "jpeg": JpegCodec, "webp": WebpCodec, "avif": AvifCodec}
assert tuple(_CODECS) == CODEC_NAMES


def is_lossless(name: str) -> bool:
    """Whether LR codec `name` gives back exactly what it was given (png); video and unknown names: no."""
    return name in _CODECS and _CODECS[name].lossless


def get_codec(name: str) -> LrCodec:
    """The codec called `name` (one shared stateless instance)."""
    if not isinstance(name, str) or name not in _CODECS:
        from refscale_model.codecs.video import is_video_codec

        if isinstance(name, str) and is_video_codec(name):
            raise CodecError(f"{name!r} is a video LR codec (frames decode only in stream order: use "
                             f"open_stream_encoder / open_stream_decoder); get_codec's valid choices: "
                             f"{', '.join(CODEC_NAMES)}")
        raise CodecError(f"unknown LR codec {name!r}; valid choices: {', '.join(LR_CODEC_NAMES)}")
    return _instance(name)


@cache
def _instance(name: str) -> LrCodec:
    return _CODECS[name]()


class ImageStreamEncoder:
    """`LrStreamEncoder` of a still-image codec: every frame is a keyframe."""

    def __init__(self, codec: LrCodec) -> None:
        self.codec = codec
        self.format = codec.format

    def encode(self, rgb: np.ndarray, quality: int | None = None) -> EncodedLr:
        return EncodedLr(self.codec.encode(rgb, quality), True, self.codec.format)


class ImageStreamDecoder:
    """`LrStreamDecoder` of a still-image codec (stateless)."""

    def __init__(self, codec: LrCodec) -> None:
        self.codec = codec

    def decode(self, frame: EncodedLr | bytes) -> np.ndarray:
        if isinstance(frame, EncodedLr):
            if frame.format != self.codec.format:
                raise CodecError(f"frame is {frame.format!r}, decoder is {self.codec.format!r}")
            frame = frame.data
        return self.codec.decode(frame)


def open_stream_encoder(name: str, **video: Any) -> LrStreamEncoder:
    """A fresh per-camera encoder for codec `name`. Video codecs (h264, h265) take `crf`, `gop`,
    `target_kbps`, `encoder` (see `VideoStreamEncoder`); image codecs take none."""
    from refscale_model.codecs.video import VideoStreamEncoder, is_video_codec

    if is_video_codec(name):
        return VideoStreamEncoder(name, **video)
    if video:
        raise CodecError(f"image codec {name!r} takes no stream options ({', '.join(video)})")
    return ImageStreamEncoder(get_codec(name))


def open_stream_decoder(name: str) -> LrStreamDecoder:
    """A fresh per-camera decoder for codec `name` (stateful for video codecs: feed frames in coded order)."""
    from refscale_model.codecs.video import VideoStreamDecoder, is_video_codec

    if is_video_codec(name):
        return VideoStreamDecoder(name)
    return ImageStreamDecoder(get_codec(name))
