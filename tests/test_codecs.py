"""LR codec layer: real round trips, clear errors, and a rate controller that meets its budget."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from refscale_model.codecs import (
    CODEC_NAMES,
    CodecError,
    EncodedLr,
    LrCodec,
    LrStreamDecoder,
    LrStreamEncoder,
    RateController,
    get_codec,
    open_stream_decoder,
    open_stream_encoder,
)
from refscale_model.metrics import psnr


@pytest.fixture(scope="module")
def lr_image(webcam_pair: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """A real frame at LR size (2× down), odd-sized on purpose (547×704 -> 273×352)."""
    target = webcam_pair[0]
    return cv2.resize(target, (target.shape[1] // 2, target.shape[0] // 2), interpolation=cv2.INTER_AREA)


@pytest.mark.parametrize("name", CODEC_NAMES)
def test_round_trip_real_image(name: str, lr_image: np.ndarray) -> None:
    codec = get_codec(name)
    assert isinstance(codec, LrCodec) and codec.name == name and codec.format == name
    quality = None if codec.lossless else 90
    data = codec.encode(lr_image, quality)
    out = codec.decode(data)
    assert out.dtype == np.uint8 and out.shape == lr_image.shape
    if codec.lossless:
        assert np.array_equal(out, lr_image)
        return
    assert psnr(lr_image, out) > 30.0
    # RGB order: swapping channels must hurt (the webcam frame is not grey).
    assert psnr(lr_image, out) > psnr(lr_image[..., ::-1], out) + 3.0
    # Lower quality, fewer bytes.
    assert len(codec.encode(lr_image, 30)) < len(data)


@pytest.mark.parametrize("name", CODEC_NAMES)
def test_grey_round_trip(name: str, lr_image: np.ndarray) -> None:
    codec = get_codec(name)
    grey = np.ascontiguousarray(lr_image[..., 1])
    out = codec.decode(codec.encode(grey, None))
    out = out if out.ndim == 2 else out[..., 1]
    assert out.shape == grey.shape
    assert psnr(grey, out) > (99.0 if codec.lossless else 30.0)


def test_stream_wrappers_are_keyframes(lr_image: np.ndarray) -> None:
    enc, dec = open_stream_encoder("jpeg"), open_stream_decoder("jpeg")
    assert isinstance(enc, LrStreamEncoder) and isinstance(dec, LrStreamDecoder)
    frames = [enc.encode(lr_image, q) for q in (50, 80)]
    assert all(isinstance(f, EncodedLr) and f.is_keyframe and f.format == "jpeg" for f in frames)
    # any frame decodes alone, in any order
    assert dec.decode(frames[1]).shape == lr_image.shape
    assert dec.decode(frames[0].data).shape == lr_image.shape
    with pytest.raises(CodecError, match="webp"):
        dec.decode(open_stream_encoder("webp").encode(lr_image, 50))


def test_bad_names_and_qualities() -> None:
    with pytest.raises(CodecError, match="valid choices: png, jpeg, webp, avif"):
        get_codec("h264")
    with pytest.raises(CodecError, match="valid choices"):
        get_codec(["jpeg"])  # type: ignore[arg-type]
    assert issubclass(CodecError, ValueError)
    img = np.zeros((16, 16, 3), np.uint8)
    for bad in (-1, 101, 50.0, True, "80"):
        with pytest.raises(CodecError, match="0–100"):
            get_codec("jpeg").encode(img, bad)
    with pytest.raises(CodecError, match="lossless"):
        get_codec("png").encode(img, 80)
    assert get_codec("png").decode(get_codec("png").encode(img, None)).shape == img.shape
    with pytest.raises(CodecError):
        get_codec("jpeg").encode(img.astype(np.float32), 80)
    for name in CODEC_NAMES:
        with pytest.raises(CodecError, match="decodable"):
            get_codec(name).decode(b"not an image at all")


def _run(rc: RateController, frames: list[np.ndarray], seconds: float, t0: float = 0.0) -> list[tuple[float, float]]:
    """Code `frames` in turn at 10 Hz for `seconds`; (time, measured kbps) after each frame."""
    codec, out = get_codec("jpeg"), []
    for i in range(int(seconds * 10)):
        t = t0 + i * 0.1
        data = codec.encode(frames[i % len(frames)], rc.quality)
        rc.update(len(data), int(t * 1e9))
        out.append((t, rc.measured_kbps))
    return out


def test_rate_controller_converges_under_budget(lr_image: np.ndarray, webcam_pair: tuple) -> None:
    codec = get_codec("jpeg")
    budget = 8 * 10 * len(codec.encode(lr_image, 50)) / 1000  # what quality 50 costs at 10 Hz
    rc = RateController(budget, initial_quality=95)
    trace = _run(rc, [lr_image], 8.0)
    settled = [k for t, k in trace if t >= 3.0]
    assert max(settled) <= budget, (max(settled), budget)
    assert min(settled) >= 0.6 * budget  # uses the budget, does not collapse to the lowest quality
    assert 20 <= rc.quality <= 80 and not rc.saturated
    # Busier content (the full-resolution frame): the rate is back under budget within 3 s.
    big = webcam_pair[0]
    budget_big = 8 * 10 * len(codec.encode(big, 40)) / 1000
    rc.target_kbps = budget_big
    trace = _run(rc, [big], 8.0, t0=8.0)
    assert max(k for t, k in trace if t >= 11.0) <= budget_big
    assert rc.quality < 60


def test_rate_controller_reports_saturation(lr_image: np.ndarray) -> None:
    rc = RateController(1.0)  # 1 kbit/s: impossible for any real frame
    _run(rc, [lr_image], 4.0)
    assert rc.quality == rc.config.min_quality and rc.saturated
    with pytest.raises(ValueError):
        RateController(0)
