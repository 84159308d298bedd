"""sensor_msgs Image / CompressedImage <-> RGB uint8 numpy, without cv_bridge.

Why not cv_bridge: the ROS 2 one is not pip-installable and PyPI's `cv-bridge` is a ROS 1 copy that
breaks on numpy 2. Everything here is numpy + OpenCV and works on *duck-typed* messages, so the same
code serves rclpy messages, `mcap_ros2`-decoded messages, `rosbags` messages and plain dicts::

    rgb = image_from_msg(msg)                    # Image (.encoding/.height/.width/.step/.data)
    rgb = image_from_msg(compressed_msg)         # CompressedImage (.format/.data), jpeg or png
    fields = rgb_to_image_msg_fields(rgb, "bgr8")  # dict(height, width, encoding, is_bigendian, step, data)
    fields = compressed_msg_fields(rgb, "png")     # dict(format="png", data=b"...")

Decoding always returns a C-contiguous RGB uint8 H×W×3 array (mono is replicated to 3 channels,
alpha is dropped, 16-bit is scaled to 8 bit with round(v / 257) so 65535 -> 255; YUV 4:2:2 is read as
BT.601 limited range, OpenCV's and therefore cv_bridge's convention; "yuv422" is UYVY byte order).
Failures raise `UnsupportedEncodingError` or `CorruptImageError`; both are `ImageDecodeError`, a
`ValueError`, so a caller can count a bad frame and go on.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from refscale_model.bags.msgs import field
from refscale_model.io.images import encode_png

__all__ = [
    "ImageDecodeError",
    "UnsupportedEncodingError",
    "CorruptImageError",
    "SUPPORTED_ENCODINGS",
    "image_from_msg",
    "image_from_raw",
    "image_from_compressed",
    "rgb_to_image_msg_fields",
    "compressed_msg_fields",
    "compressed_png",
    "is_compressed_msg",
    "payload_size",
]


class ImageDecodeError(ValueError):
    """A frame could not be turned into RGB; the message says why (count it, skip the frame)."""


class UnsupportedEncodingError(ImageDecodeError):
    """The message's `encoding` / `format` is not one we convert."""


class CorruptImageError(ImageDecodeError):
    """The payload does not match its header (short data, bad step, broken JPEG/PNG stream)."""


def _code(*names: str) -> int:
    """First OpenCV colour code that exists (OpenCV 5 adds unambiguous Bayer names)."""
    for name in names:
        if hasattr(cv2, name):
            return int(getattr(cv2, name))
    raise AttributeError(names)


# ROS bayer_XXXX names the 2×2 pattern from the top-left pixel; OpenCV's legacy names use the
# second row's 2nd/3rd pixel, hence RGGB -> BayerBG. The explicit names are preferred when present.
_BAYER = {
    "bayer_rggb8": _code("COLOR_BayerRGGB2RGB", "COLOR_BayerBG2RGB"),
    "bayer_bggr8": _code("COLOR_BayerBGGR2RGB", "COLOR_BayerRG2RGB"),
    "bayer_gbrg8": _code("COLOR_BayerGBRG2RGB", "COLOR_BayerGR2RGB"),
    "bayer_grbg8": _code("COLOR_BayerGRBG2RGB", "COLOR_BayerGB2RGB"),
}
_YUV422 = {
    "yuv422": cv2.COLOR_YUV2RGB_UYVY,  # ROS: "yuv422" is UYVY byte order
    "uyvy": cv2.COLOR_YUV2RGB_UYVY,
    "yuv422_yuy2": cv2.COLOR_YUV2RGB_YUY2,
    "yuyv": cv2.COLOR_YUV2RGB_YUY2,
}
# encoding -> (channels, bytes per channel)
_LAYOUT: dict[str, tuple[int, int]] = {
    "rgb8": (3, 1),
    "bgr8": (3, 1),
    "rgba8": (4, 1),
    "bgra8": (4, 1),
    "mono8": (1, 1),
    "8UC1": (1, 1),
    "8UC3": (3, 1),
    "mono16": (1, 2),
    "16UC1": (1, 2),
    **{name: (1, 1) for name in _BAYER},
    **{name: (2, 1) for name in _YUV422},
}
SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(_LAYOUT)


def is_compressed_msg(msg: Any) -> bool:
    """True for CompressedImage-shaped messages (a `format` field and no `encoding`)."""
    return field(msg, "format") is not None and field(msg, "encoding") is None


def _as_bytes_view(data: Any) -> np.ndarray:
    """uint8 view of whatever the message library put in `data` (bytes, array('B'), list, ndarray)."""
    if data is None:
        return np.zeros(0, np.uint8)
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8) if data.dtype.itemsize == 1 else data.astype(np.uint8)
    if isinstance(data, (bytes, bytearray, memoryview)):
        return np.frombuffer(data, np.uint8)
    try:  # array.array and other buffer-protocol objects
        return np.frombuffer(memoryview(data).cast("B"), np.uint8)
    except TypeError:
        return np.asarray(list(data), dtype=np.uint8)


def payload_size(msg: Any) -> int:
    """Bytes in a message's `data` field (what the camera driver sent), for compression statistics."""
    return int(_as_bytes_view(field(msg, "data")).size)


def image_from_msg(msg: Any) -> np.ndarray:
    """RGB uint8 H×W×3 from a sensor_msgs Image or CompressedImage (duck-typed)."""
    if is_compressed_msg(msg):
        return image_from_compressed(str(field(msg, "format")), field(msg, "data"))
    encoding = field(msg, "encoding")
    if encoding is None:
        raise UnsupportedEncodingError(
            f"{type(msg).__name__} has neither `encoding` (Image) nor `format` (CompressedImage)"
        )
    return image_from_raw(
        str(encoding),
        int(field(msg, "height") or 0),
        int(field(msg, "width") or 0),
        int(field(msg, "step") or 0),
        field(msg, "data"),
        bool(field(msg, "is_bigendian") or 0),
    )


def image_from_raw(
    encoding: str, height: int, width: int, step: int, data: Any, is_bigendian: bool = False
) -> np.ndarray:
    """Decode sensor_msgs/Image fields; `step` row padding and `is_bigendian` are honoured."""
    enc = encoding.strip()
    layout = _LAYOUT.get(enc) or _LAYOUT.get(enc.lower())
    if layout is None:
        raise UnsupportedEncodingError(
            f"unsupported Image encoding {encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}"
        )
    enc = enc if enc in _LAYOUT else enc.lower()
    channels, depth = layout
    if height <= 0 or width <= 0:
        raise CorruptImageError(f"{enc} image has empty size {width}×{height}")
    row_bytes = width * channels * depth
    step = step or row_bytes
    if step < row_bytes:
        raise CorruptImageError(f"{enc} {width}×{height}: step {step} < width × bytes per pixel {row_bytes}")
    buf = _as_bytes_view(data)
    needed = step * (height - 1) + row_bytes  # the last row's padding may be absent
    if buf.size < needed:
        raise CorruptImageError(f"{enc} {width}×{height} step {step}: data has {buf.size} bytes, needs {needed}")
    if enc in _YUV422 and width % 2:
        raise CorruptImageError(f"{enc} needs an even width, got {width}")
    rows = np.lib.stride_tricks.as_strided(buf, shape=(height, row_bytes), strides=(step, 1))
    if depth == 2:
        dtype = np.dtype(">u2" if is_bigendian else "<u2")
        px = np.ascontiguousarray(rows).view(dtype).reshape(height, width, channels).astype(np.uint32)
        img8 = ((px + 128) // 257).astype(np.uint8)  # round(v/257): exact 0->0, 65535->255
    else:
        img8 = np.ascontiguousarray(rows).reshape(height, width, channels)
    out = _to_rgb(enc, img8)
    return out if out.flags.writeable else out.copy()  # never hand out a view of the message buffer


def _to_rgb(enc: str, img: np.ndarray) -> np.ndarray:
    if enc in ("rgb8", "8UC3"):
        return np.ascontiguousarray(img)
    if enc == "bgr8":
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if enc == "rgba8":
        return cv2.cvtColor(img, cv2.COLOR_RGBA2RGB)
    if enc == "bgra8":
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    if enc in _BAYER:
        return cv2.cvtColor(img[:, :, 0], _BAYER[enc])
    if enc in _YUV422:
        return cv2.cvtColor(img, _YUV422[enc])
    return cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2RGB)  # mono8 / mono16 / 8UC1 / 16UC1


_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_SOI = b"\xff\xd8"


def image_from_compressed(fmt: str, data: Any) -> np.ndarray:
    """Decode a CompressedImage payload (`format` "jpeg", "png" or image_transport's "bgr8; jpeg ...")."""
    f = fmt.lower()
    if "compresseddepth" in f:
        raise UnsupportedEncodingError(f"CompressedImage format {fmt!r} (depth) is not a camera image")
    kind = "png" if "png" in f else "jpeg" if ("jpeg" in f or "jpg" in f) else None
    if kind is None:
        raise UnsupportedEncodingError(f"unsupported CompressedImage format {fmt!r}; supported: jpeg, png")
    buf = _as_bytes_view(data)
    raw = buf.tobytes()
    if kind == "png":
        if not raw.startswith(_PNG_MAGIC):
            raise CorruptImageError(f"CompressedImage {fmt!r}: payload does not start with the PNG signature")
        if b"IEND" not in raw[-16:]:
            raise CorruptImageError(f"CompressedImage {fmt!r}: PNG stream is truncated (no IEND chunk)")
    else:
        if not raw.startswith(_JPEG_SOI):
            raise CorruptImageError(f"CompressedImage {fmt!r}: payload does not start with a JPEG SOI marker")
        if not raw.rstrip(b"\x00").endswith(b"\xff\xd9"):
            raise CorruptImageError(f"CompressedImage {fmt!r}: JPEG stream is truncated (no EOI marker)")
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise CorruptImageError(f"CompressedImage {fmt!r}: OpenCV could not decode {len(raw)} bytes")
    if img.dtype == np.uint16:
        img = ((img.astype(np.uint32) + 128) // 257).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise UnsupportedEncodingError(f"CompressedImage {fmt!r}: pixel type {img.dtype} not supported")
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected RGB uint8 H×W×3, got {rgb.dtype} {rgb.shape}")
    return np.ascontiguousarray(rgb)


def _mosaic(rgb: np.ndarray, pattern: str) -> np.ndarray:
    """Sample an RGB image into a Bayer mosaic; `pattern` is the 2×2 tile read row-major."""
    out = np.empty(rgb.shape[:2], np.uint8)
    index = {"r": 0, "g": 1, "b": 2}
    for k, (dy, dx) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        out[dy::2, dx::2] = rgb[dy::2, dx::2, index[pattern[k]]]
    return out


def rgb_to_image_msg_fields(
    rgb: np.ndarray, encoding: str = "rgb8", *, step: int | None = None, is_bigendian: bool = False
) -> dict[str, Any]:
    """sensor_msgs/Image fields (no header) holding `rgb` in `encoding`.

    Used to write raw camera bags and in tests; `step` larger than a row adds zero padding.
    mono encodings store BT.601 luma; mono16 stores v × 257; bayer stores the pattern's samples.
    """
    rgb = _check_rgb(rgb)
    h, w = rgb.shape[:2]
    if encoding in ("rgb8", "8UC3"):
        px = rgb
    elif encoding == "bgr8":
        px = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    elif encoding == "rgba8":
        px = cv2.cvtColor(rgb, cv2.COLOR_RGB2RGBA)
    elif encoding == "bgra8":
        px = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA)
    elif encoding in ("mono8", "8UC1"):
        px = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    elif encoding in ("mono16", "16UC1"):
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.uint16) * 257
        px = gray.astype(">u2" if is_bigendian else "<u2")
    elif encoding in _BAYER:
        px = _mosaic(rgb, encoding[len("bayer_") : len("bayer_") + 4])
    elif encoding in ("yuv422", "uyvy"):
        px = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_UYVY)
    elif encoding in ("yuv422_yuy2", "yuyv"):
        px = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_YUY2)
    else:
        raise UnsupportedEncodingError(f"cannot write Image encoding {encoding!r}")
    row = px.reshape(h, -1).view(np.uint8)
    row_bytes = row.shape[1]
    step = row_bytes if step is None else step
    if step < row_bytes:
        raise ValueError(f"step {step} < row size {row_bytes}")
    if step > row_bytes:
        padded = np.zeros((h, step), np.uint8)
        padded[:, :row_bytes] = row
        row = padded
    return {
        "height": h,
        "width": w,
        "encoding": encoding,
        "is_bigendian": int(bool(is_bigendian) and encoding in ("mono16", "16UC1")),
        "step": step,
        "data": row.tobytes(),
    }


def compressed_png(rgb: np.ndarray) -> bytes:
    """PNG bytes of an RGB image (lossless), as carried in a CompressedImage with format "png"."""
    return encode_png(_check_rgb(rgb))


def compressed_msg_fields(rgb: np.ndarray, fmt: str = "png", jpeg_quality: int = 90) -> dict[str, Any]:
    """sensor_msgs/CompressedImage fields (no header) for `rgb` as "png" or "jpeg"."""
    if fmt == "png":
        return {"format": "png", "data": compressed_png(rgb)}
    if fmt in ("jpeg", "jpg"):
        bgr = cv2.cvtColor(_check_rgb(rgb), cv2.COLOR_RGB2BGR)
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
        if not ok:
            raise RuntimeError("OpenCV JPEG encoder failed")
        return {"format": "jpeg", "data": buf.tobytes()}
    raise UnsupportedEncodingError(f"cannot write CompressedImage format {fmt!r}")
