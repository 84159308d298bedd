"""rosimg: every supported encoding against independently built payloads, real crops, errors."""

from __future__ import annotations

import importlib.util

import cv2
import numpy as np
import pytest

from refscale_model.io import rosimg
from refscale_model.io.rosimg import (
    CorruptImageError,
    ImageDecodeError,
    UnsupportedEncodingError,
    compressed_msg_fields,
    image_from_msg,
    rgb_to_image_msg_fields,
)


@pytest.fixture(scope="module")
def crop(webcam_pair: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """A real 256×192 RGB crop (odd content, not a synthetic gradient)."""
    target, _ = webcam_pair
    return np.ascontiguousarray(target[40:232, 60:316])


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def _msg(encoding: str, h: int, w: int, step: int, data: bytes, big: bool = False) -> dict:
    return {"encoding": encoding, "height": h, "width": w, "step": step, "data": data, "is_bigendian": big}


@pytest.mark.parametrize("encoding,order", [("rgb8", [0, 1, 2]), ("bgr8", [2, 1, 0])])
def test_rgb_bgr_exact_with_step_padding(crop: np.ndarray, encoding: str, order: list[int]) -> None:
    h, w = crop.shape[:2]
    step = w * 3 + 13
    buf = np.full((h, step), 0xAB, np.uint8)  # padding is garbage, must be ignored
    buf[:, : w * 3] = crop[:, :, order].reshape(h, -1)
    out = image_from_msg(_msg(encoding, h, w, step, buf.tobytes()))
    assert out.dtype == np.uint8 and out.shape == (h, w, 3)
    np.testing.assert_array_equal(out, crop)


@pytest.mark.parametrize("encoding,order", [("rgba8", [0, 1, 2]), ("bgra8", [2, 1, 0])])
def test_alpha_is_dropped(crop: np.ndarray, encoding: str, order: list[int]) -> None:
    h, w = crop.shape[:2]
    px = np.concatenate([crop[:, :, order], np.full((h, w, 1), 7, np.uint8)], axis=2)
    out = image_from_msg(_msg(encoding, h, w, w * 4, px.tobytes()))
    np.testing.assert_array_equal(out, crop)


def test_mono8_and_last_row_without_padding(crop: np.ndarray) -> None:
    gray = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    h, w = gray.shape
    step = w + 3
    buf = np.zeros((h, step), np.uint8)
    buf[:, :w] = gray
    data = buf.tobytes()[:-3]  # some drivers omit the final row's padding
    out = image_from_msg(_msg("mono8", h, w, step, data))
    np.testing.assert_array_equal(out, np.repeat(gray[:, :, None], 3, axis=2))


@pytest.mark.parametrize("big", [False, True])
def test_mono16_endianness(big: bool) -> None:
    rng = np.random.default_rng(0)
    v = rng.integers(0, 65536, size=(6, 10), dtype=np.uint32).astype(np.uint16)
    v[0, 0], v[0, 1] = 0, 65535
    data = v.astype(">u2" if big else "<u2").tobytes()
    out = image_from_msg(_msg("mono16", 6, 10, 20, data, big))
    expected = np.floor(v / 257.0 + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(out[:, :, 0], expected)
    assert out[0, 0, 0] == 0 and out[0, 1, 0] == 255
    # the wrong byte order must give a different picture (the flag really is read)
    wrong = image_from_msg(_msg("mono16", 6, 10, 20, data, not big))
    assert not np.array_equal(wrong, out)


BAYER_TILES = {"bayer_rggb8": "rggb", "bayer_bggr8": "bggr", "bayer_gbrg8": "gbrg", "bayer_grbg8": "grbg"}


@pytest.mark.parametrize("encoding", list(BAYER_TILES))
def test_bayer_flat_colour(encoding: str) -> None:
    """A hand-built mosaic of one colour must demosaic to that colour (catches swapped patterns)."""
    colour = {"r": 200, "g": 120, "b": 30}
    tile = BAYER_TILES[encoding]
    m = np.zeros((8, 12), np.uint8)
    for k, (dy, dx) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        m[dy::2, dx::2] = colour[tile[k]]
    out = image_from_msg(_msg(encoding, 8, 12, 12, m.tobytes()))
    np.testing.assert_array_equal(out[2:-2, 2:-2].reshape(-1, 3), np.tile([[200, 120, 30]], (4 * 8, 1)))


@pytest.mark.parametrize("encoding", list(BAYER_TILES))
def test_bayer_real_crop(crop: np.ndarray, encoding: str) -> None:
    fields = rgb_to_image_msg_fields(crop, encoding)
    assert fields["step"] == crop.shape[1]
    out = image_from_msg(fields)
    assert _psnr(out[2:-2, 2:-2], crop[2:-2, 2:-2]) > 24.0


def _yuv(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    """BT.601 limited-range Y'CbCr, the convention of OpenCV's (and cv_bridge's) 4:2:2 decoders."""
    r, g, b = rgb
    y = 16 + 0.257 * r + 0.504 * g + 0.098 * b
    u = 128 - 0.148 * r - 0.291 * g + 0.439 * b
    v = 128 + 0.439 * r - 0.368 * g - 0.071 * b
    return round(y), round(u), round(v)


@pytest.mark.parametrize(
    "encoding,order", [("yuv422", "uyvy"), ("uyvy", "uyvy"), ("yuv422_yuy2", "yuyv"), ("yuyv", "yuyv")]
)
def test_yuv422_byte_orders(encoding: str, order: str) -> None:
    left, right = (200, 40, 90), (20, 180, 240)
    row = []
    for y, u, v in (_yuv(left), _yuv(right)):  # one macro-pixel (2 pixels sharing U/V) per colour
        row += [u, y, v, y] if order == "uyvy" else [y, u, y, v]
    out = image_from_msg(_msg(encoding, 2, 4, 8, bytes(row) * 2))
    assert np.abs(out[:, :2].astype(int) - np.array(left)).max() <= 3
    assert np.abs(out[:, 2:].astype(int) - np.array(right)).max() <= 3


@pytest.mark.parametrize("encoding", ["yuv422", "yuv422_yuy2"])
def test_yuv422_real_crop(crop: np.ndarray, encoding: str) -> None:
    out = image_from_msg(rgb_to_image_msg_fields(crop, encoding))
    assert _psnr(out, crop) > 30.0


def test_compressed_png_exact_and_jpeg_close(crop: np.ndarray) -> None:
    np.testing.assert_array_equal(image_from_msg(compressed_msg_fields(crop, "png")), crop)
    jpeg = compressed_msg_fields(crop, "jpeg", jpeg_quality=95)
    assert _psnr(image_from_msg(jpeg), crop) > 30.0
    # image_transport's format string
    assert image_from_msg({"format": "bgr8; jpeg compressed bgr8", "data": jpeg["data"]}).shape == crop.shape


def test_compressed_gray_and_16bit_png() -> None:
    gray = np.arange(0, 240, dtype=np.uint8).reshape(12, 20)
    ok, buf = cv2.imencode(".png", gray)
    assert ok
    out = image_from_msg({"format": "png", "data": buf.tobytes()})
    np.testing.assert_array_equal(out, np.repeat(gray[:, :, None], 3, axis=2))
    g16 = gray.astype(np.uint16) * 257
    ok, buf = cv2.imencode(".png", g16)
    np.testing.assert_array_equal(image_from_msg({"format": "png", "data": buf.tobytes()})[:, :, 1], gray)


@pytest.mark.parametrize("encoding", ["32FC1", "nv12", "rgb16", ""])
def test_unsupported_encoding(encoding: str) -> None:
    with pytest.raises(UnsupportedEncodingError, match="unsupported Image encoding"):
        image_from_msg(_msg(encoding, 2, 2, 8, bytes(32)))


def test_corrupt_payloads(crop: np.ndarray) -> None:
    f = rgb_to_image_msg_fields(crop, "rgb8")
    with pytest.raises(CorruptImageError, match="needs"):
        image_from_msg({**f, "data": f["data"][:-100]})
    with pytest.raises(CorruptImageError, match="step"):
        image_from_msg({**f, "step": 10})
    with pytest.raises(CorruptImageError, match="even width"):
        image_from_msg(_msg("yuyv", 2, 3, 8, bytes(16)))
    png = compressed_msg_fields(crop, "png")["data"]
    jpg = compressed_msg_fields(crop, "jpeg")["data"]
    with pytest.raises(CorruptImageError, match="truncated"):
        image_from_msg({"format": "png", "data": png[: len(png) // 2]})
    with pytest.raises(CorruptImageError, match="truncated"):
        image_from_msg({"format": "jpeg", "data": jpg[: len(jpg) // 2]})
    with pytest.raises(CorruptImageError, match="signature"):
        image_from_msg({"format": "png", "data": b"not an image at all"})
    damaged = bytearray(png)
    damaged[60:400] = bytes(340)  # header/IEND intact, IDAT data destroyed
    with pytest.raises(CorruptImageError):
        image_from_msg({"format": "png", "data": bytes(damaged)})
    with pytest.raises(UnsupportedEncodingError):
        image_from_msg({"format": "16UC1; compressedDepth png", "data": png})
    with pytest.raises(UnsupportedEncodingError):
        image_from_msg({"format": "webp", "data": png})
    assert issubclass(CorruptImageError, ImageDecodeError) and issubclass(ImageDecodeError, ValueError)


def test_writer_options(crop: np.ndarray) -> None:
    f = rgb_to_image_msg_fields(crop, "mono16", is_bigendian=True, step=crop.shape[1] * 2 + 6)
    assert f["is_bigendian"] == 1 and len(f["data"]) == f["step"] * crop.shape[0]
    gray = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    np.testing.assert_array_equal(image_from_msg(f)[:, :, 0], gray)
    for enc in ("rgba8", "bgra8", "bgr8", "rgb8"):
        np.testing.assert_array_equal(image_from_msg(rgb_to_image_msg_fields(crop, enc, step=1100)), crop)
    with pytest.raises(ValueError):
        rgb_to_image_msg_fields(crop.astype(np.float32))


@pytest.mark.skipif(importlib.util.find_spec("sensor_msgs") is None, reason="ROS 2 sensor_msgs not installed")
def test_rclpy_messages(crop: np.ndarray) -> None:
    from sensor_msgs.msg import CompressedImage, Image

    f = rgb_to_image_msg_fields(crop, "bgr8", step=crop.shape[1] * 3 + 4)
    msg = Image(**{k: v for k, v in f.items() if k != "data"})
    msg.data = f["data"]  # rclpy stores it as array('B')
    np.testing.assert_array_equal(image_from_msg(msg), crop)
    cmsg = CompressedImage(format="png")
    cmsg.data = rosimg.compressed_png(crop)
    np.testing.assert_array_equal(image_from_msg(cmsg), crop)


def _ros2_cv_bridge():
    """The real ROS 2 cv_bridge, or None (PyPI's `cv-bridge` is a ROS 1 copy: never used)."""
    if importlib.util.find_spec("cv_bridge") is None:
        return None
    try:
        from cv_bridge import CvBridge
        from sensor_msgs.msg import Image  # noqa: F401  (ROS 2 bridge needs rclpy messages)
    except Exception:  # noqa: BLE001 - any import failure means "not usable here"
        return None
    return CvBridge()


@pytest.mark.skipif(
    _ros2_cv_bridge() is None,
    reason="ROS 2 cv_bridge not importable (only ships with a ROS 2 distro, not pip); "
    "the decoders above are checked against hand-built payloads instead",
)
@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "bayer_rggb8", "yuv422"])
def test_matches_ros2_cv_bridge(crop: np.ndarray, encoding: str) -> None:
    from sensor_msgs.msg import Image

    f = rgb_to_image_msg_fields(crop, encoding)
    msg = Image(**{k: v for k, v in f.items() if k != "data"})
    msg.data = f["data"]
    theirs = _ros2_cv_bridge().imgmsg_to_cv2(msg, desired_encoding="rgb8")
    ours = image_from_msg(msg)
    assert np.abs(theirs.astype(int) - ours.astype(int)).max() <= 1
