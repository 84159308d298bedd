"""The `h265-ref` LR codec: an LR coded intra or as a P-frame after a hidden picture of its reference.

Real revisit pairs from ../shared/data, real libx265 / ffmpeg HEVC, real bags through `FrameEncoder` and the
`Reconstructor` with the shipped codec-aware weights.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import load_pair
from test_pipeline import CAM, POSITIONS, T0, crop

from refscale_model import load_model
from refscale_model.backends.torch_backend import TorchDownscaler
from refscale_model.bags import BagWriter, msgs, read_messages
from refscale_model.bags import refscale_format as fmt
from refscale_model.codecs import CodecError
from refscale_model.codecs import reference_predicted as rp
from refscale_model.metrics import psnr
from refscale_model.pipeline import FrameEncoder, FrameFailure, ModelInfo, ReconstructedFrame, Reconstructor
from refscale_model.pipeline.encoder import LrSettings
from refscale_model.pipeline.pose import Pose
from refscale_model.refcache import ReferenceCache

N = 4


def _lr(img: np.ndarray) -> np.ndarray:
    return cv2.resize(img, (img.shape[1] // 2, img.shape[0] // 2), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def revisit(shared_data: Path) -> tuple[np.ndarray, np.ndarray]:
    """(target, reference) crops of a real webcam revisit whose reference predicts the target's LR well."""
    target, ref = load_pair("webcam_tilde", 3)
    return crop(target), crop(ref)


def test_reference_lr_is_the_integer_block_mean_padded_to_the_lr() -> None:
    ref = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3)
    small = rp.reference_lr(ref, (3, 4), 2)
    assert small.shape == (3, 4, 3) and small.dtype == np.uint8
    block = ref[:2, :2].astype(int).sum(axis=(0, 1))
    assert np.array_equal(small[0, 0], (block + 2) // 4)
    assert np.array_equal(small[2], small[1]) and np.array_equal(small[:, 3], small[:, 2])  # edge-padded
    assert rp.lr_shape((5, 7), 2) == (3, 4)


def test_a_helpful_reference_is_predicted_from_and_decodes_exactly(revisit) -> None:
    target, ref = revisit
    lr, picture = _lr(target), rp.reference_lr(ref, _lr(target).shape[:2], 2)
    intra = rp.code_frame(lr, None, 32)
    coded = rp.code_frame(lr, picture, 32)
    assert not intra.predicted and intra.format == rp.INTRA_FORMAT
    assert coded.predicted and coded.format == rp.MESSAGE_FORMAT and len(coded.digest) == 8
    # chosen because it costs less: squared error + λ·bits on the LR
    assert rp.rd_cost(lr, coded.decoded, len(coded.data), 32) < rp.rd_cost(lr, intra.decoded, len(intra.data), 32)
    # the far end: the hidden picture coded again, its CRC as the car's, the same pixels
    out = rp.decode_frame(coded.data, coded.format, lr.shape[:2], 32, picture, coded.digest)
    assert out.digest_matches and np.array_equal(out.rgb, coded.decoded)
    back = rp.decode_frame(intra.data, intra.format, lr.shape[:2], 32)
    assert np.array_equal(back.rgb, intra.decoded)


def test_an_unrelated_reference_costs_an_encode_not_bits(revisit) -> None:
    target, _ = revisit
    night, _ = load_pair("road_robotcar_seasons", 0)
    unrelated = cv2.resize(night, (target.shape[1], target.shape[0]), interpolation=cv2.INTER_AREA)
    lr = _lr(target)
    coded = rp.code_frame(lr, rp.reference_lr(unrelated, lr.shape[:2], 2), 32)
    assert not coded.predicted and coded.data == rp.code_frame(lr, None, 32).data


def test_a_different_hidden_picture_is_reported_not_refused(revisit) -> None:
    target, ref = revisit
    lr = _lr(target)
    picture = rp.reference_lr(ref, lr.shape[:2], 2)
    coded = rp.code_frame(lr, picture, 32)
    assert coded.predicted
    brighter = np.clip(picture.astype(int) + 2, 0, 255).astype(np.uint8)
    out = rp.decode_frame(coded.data, coded.format, lr.shape[:2], 32, brighter, coded.digest)
    assert not out.digest_matches
    assert psnr(lr, out.rgb) > psnr(lr, coded.decoded) - 3  # predicts from a slightly different picture


def test_odd_sizes_code_even_padded_and_come_back_cropped(revisit) -> None:
    target, ref = revisit
    hr, hr_ref = target[:91, :123], ref[:91, :123]  # an odd HR: its LR is 46×62 (ceil), coded as is
    size = rp.lr_shape(hr.shape[:2], 2)
    lr = cv2.resize(hr, (size[1], size[0]), interpolation=cv2.INTER_AREA)[:, :61]  # and an odd LR side
    picture = rp.reference_lr(hr_ref, lr.shape[:2], 2)
    assert size == (46, 62) and picture.shape == lr.shape
    for reference in (None, picture):
        coded = rp.code_frame(lr, reference, 36)
        out = rp.decode_frame(coded.data, coded.format, lr.shape[:2], 36, reference, coded.digest)
        assert out.rgb.shape == lr.shape and np.array_equal(out.rgb, coded.decoded)


def test_bad_input_gets_a_clear_error(revisit) -> None:
    target, ref = revisit
    lr = _lr(target)
    picture = rp.reference_lr(ref, lr.shape[:2], 2)
    coded = rp.code_frame(lr, picture, 32)
    with pytest.raises(CodecError, match="differs from the LR"):
        rp.code_frame(lr, picture[:-2], 32)
    with pytest.raises(CodecError, match="too small"):
        rp.code_frame(lr[:10, :10], None, 32)
    with pytest.raises(CodecError, match="crf"):
        rp.code_frame(lr, None, 60)
    with pytest.raises(CodecError, match="none is given"):
        rp.decode_frame(coded.data, coded.format, lr.shape[:2], 32)
    with pytest.raises(CodecError, match="unknown message format"):
        rp.decode_frame(coded.data, "h265", lr.shape[:2], 32, picture)
    with pytest.raises(CodecError, match="not decodable|pictures"):
        rp.decode_frame(coded.data[: len(coded.data) // 3], rp.INTRA_FORMAT, lr.shape[:2], 32)
    for kwargs, match in (({"gop": 2}, "no gop"), ({"target_kbps": 100.0}, "target_kbps"),
                          ({"encoder": "gpu"}, "CPU only")):
        with pytest.raises(CodecError, match=match):
            LrSettings.checked("h265-ref", 30, kwargs.get("target_kbps"), kwargs.get("gop"),
                               kwargs.get("encoder", "auto"))
    assert LrSettings.checked("h265-ref", None, None).quality == 30


def encode_predicted_bag(root: Path) -> tuple[list[np.ndarray], object]:
    """N frames of a real webcam revisit panning a pixel per frame, its reference in `root / "cache"`, through
    a real `FrameEncoder` (shipped x2-lossy, torch) with `h265-ref` at crf 40 into `root / "bag"`: most of them
    are predicted from the reference. Returns (frames, model)."""
    target, ref = (crop(x) for x in load_pair("webcam_tilde", 3))
    with ReferenceCache.open(root / "cache", create=True) as cache:
        cache.add(ref, CAM, *POSITIONS[0], 0.0, 1, "route", "drive0")
    model = load_model("x2-lossy")
    frames = [np.ascontiguousarray(np.roll(target, i, axis=1)) for i in range(N)]
    with ReferenceCache.open(root / "cache", readonly=True) as cache:
        enc = FrameEncoder(BagWriter(root / "bag"), TorchDownscaler(model), ModelInfo.of(model, "x2-lossy"),
                           cache=cache, lr_codec="h265-ref", lr_quality=40)
        for i, rgb in enumerate(frames):
            s = T0 + i * 100_000_000
            enc.encode(CAM, msgs.image_msg(rgb, s, "cam_front"), s, Pose(*POSITIONS[0], 0.0))
        enc.close()
    return frames, model


@pytest.fixture(scope="module")
def predicted_bag(tmp_path_factory: pytest.TempPathFactory, shared_data: Path):
    root = tmp_path_factory.mktemp("h265ref")
    frames, model = encode_predicted_bag(root)
    return root, frames, model


def test_a_bag_of_predicted_frames_rebuilds_with_its_reference(predicted_bag) -> None:
    root, frames, model = predicted_bag
    lr_msgs = [m for t, _, m in read_messages(root / "bag") if t == fmt.lr_topic(CAM)]
    assert {m.format for m in lr_msgs} <= {rp.MESSAGE_FORMAT, rp.INTRA_FORMAT}
    with ReferenceCache.open(root / "cache", readonly=True) as cache:
        rec = Reconstructor(model, cache)
        rebuilt = list(rec.run(root / "bag"))
        encoded = list(Reconstructor(model, cache).frames(root / "bag"))
    predicted = [f for f in encoded if f.meta.lr_ref_crc]
    assert predicted, "no frame was predicted from its reference"
    for f in predicted:  # format 9 names the reference (map or not); the LR waits for it
        assert f.meta.format == fmt.FORMAT_REFERENCE_PREDICTED and f.meta.reference_id == "1"
        assert f.lr is None and f.lr_coded
    assert all(isinstance(r, ReconstructedFrame) for r in rebuilt) and len(rebuilt) == N
    for r, hr in zip(rebuilt, frames, strict=True):
        assert psnr(r.rgb, hr) > 24, r.stamp_ns


def test_predicted_frames_without_the_cache_fail_visibly(predicted_bag) -> None:
    root, _, model = predicted_bag
    out = list(Reconstructor(model, None).run(root / "bag"))
    assert len(out) == N
    for item in out:
        if isinstance(item, FrameFailure):
            assert item.kind == "reference_missing"
    assert any(isinstance(item, FrameFailure) for item in out)
