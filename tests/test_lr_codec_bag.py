"""Lossy LR codecs through a real bag: the stored frame rebuilds as the same pipeline without the bag.

Real webcam revisits (`build_world` of test_pipeline), the shipped x2 weights, real JPEG / WebP /
AVIF bitstreams in real MCAP files; format-1 bags still read; bad codec settings fail before writing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_pipeline import CAM, World, build_world

from refscale_model import load_model
from refscale_model.backends.torch_backend import TorchDownscaler
from refscale_model.bags import BagWriter, metadata_of, read_messages
from refscale_model.bags import refscale_format as fmt
from refscale_model.codecs import CodecError, get_codec
from refscale_model.metrics import psnr
from refscale_model.pipeline import FrameEncoder, ModelInfo, ReconstructedFrame, Reconstructor
from refscale_model.pipeline.jobs import encode_bag
from refscale_model.refcache import ReferenceCache
from refscale_model.registration import warp_reference


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> World:
    return build_world(tmp_path_factory.mktemp("world"), n=2, encodings=("rgb8",))


@pytest.fixture(scope="module")
def x2():
    return load_model("x2")


def encode_world(world: World, model, out: Path, model_id: str = "x2", **lr) -> None:
    """The world's raw bag through `FrameEncoder` (PyTorch downscaler) with LR settings `lr`."""
    from refscale_model.backends.loader import Backend

    backend = Backend(TorchDownscaler(model), ModelInfo.of(model, model_id), "torch:cpu")
    with ReferenceCache.open(world.cache, readonly=True) as cache:
        report = encode_bag(world.raw_bag, out, backend, [CAM], cache=cache, encoder_options=lr)
    assert report.stats.frames == len(world.frames) and not report.stats.errors


def _without_bag(model, frame: np.ndarray, codec: str, quality: int, meta: fmt.FrameMeta, ref: np.ndarray) -> float:
    """Downscale -> the same codec -> inverse, in memory, with the reference as the bag's frame used it."""
    hr = torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 255.0
    warped = warp_reference(ref, meta.matrix, meta.size) if meta.has_smap else None
    r = torch.from_numpy(warped).permute(2, 0, 1)[None].float() / 255.0 if warped is not None else None
    with torch.no_grad():
        enc = model.downscale(hr, r)
        lr = enc.lr[0].permute(1, 2, 0).numpy()
        decoded = get_codec(codec).decode(get_codec(codec).encode(np.ascontiguousarray(lr), quality))
        lr_t = torch.from_numpy(decoded).permute(2, 0, 1)[None]
        smap = enc.smap if meta.has_smap else None
        out = model.upscale(lr_t, smap, r if meta.has_smap else None, enc.size)
    rgb = (out[0].clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return psnr(rgb, frame)


@pytest.mark.parametrize(("codec", "quality"), [("jpeg", 80), ("webp", 70), ("avif", 60)])
def test_lossy_lr_round_trip_through_a_bag(tmp_path: Path, world: World, x2, codec: str, quality: int) -> None:
    bag = tmp_path / "bag"
    encode_world(world, x2, bag, lr_codec=codec, lr_quality=quality)
    lr_msgs = [m for t, _, m in read_messages(bag) if t == fmt.lr_topic(CAM)]
    assert [m.format for m in lr_msgs] == [get_codec(codec).format] * len(world.frames)
    with ReferenceCache.open(world.cache, readonly=True) as cache:
        items = list(Reconstructor(x2, cache).run(bag))
    assert all(isinstance(i, ReconstructedFrame) for i in items)
    refs = {0: world.refs[0], 1: world.refs[0]}
    for i, item in enumerate(items):
        assert item.meta.lr_codec == codec and item.meta.lr_quality == quality
        via_bag = psnr(item.rgb, world.frames[i])
        direct = _without_bag(x2, world.frames[i], codec, quality, item.meta, refs[i])
        assert abs(via_bag - direct) <= 0.1, (codec, i, via_bag, direct)


def test_rate_budget_steps_the_quality_down(tmp_path: Path, shared_data: Path, x2) -> None:
    world = build_world(tmp_path / "w", n=4, encodings=("rgb8",))  # 10 Hz: ~30 kB frames are ~2.4 Mbit/s
    bag = tmp_path / "bag"
    encode_world(world, x2, bag, lr_codec="webp", lr_quality=90, target_kbps=20.0)
    qualities = [m.lr_quality for m in (fmt.meta_from_msg(m) for t, _, m in read_messages(bag)
                                        if t == fmt.meta_topic(CAM))]
    assert qualities[0] == 90 and qualities[-1] < 90  # over budget at q90: it stepped down


def test_format_1_bags_still_read(tmp_path: Path, world: World, x2) -> None:
    """A bag written before the LR codec existed: format 1 records without lr_codec read as png."""
    bag = tmp_path / "v2"
    encode_world(world, x2, bag)
    old = tmp_path / "v1"
    with BagWriter(old) as w:
        for topic, t, msg in read_messages(bag):
            if topic == fmt.meta_topic(CAM):  # a full record, as format 1 wrote every field
                meta = fmt.meta_from_msg(msg, fmt.frame_context(CAM, metadata_of(bag)))
                meta.format = fmt.FORMAT
                values = {k: v for k, v in ((kv["key"], kv["value"]) for kv in fmt.meta_msg(meta, {}, "")["status"][0]
                                            ["values"]) if k not in ("lr_codec", "lr_quality")}
                values["format"] = "refscale-bag/1"
                status = msg.status[0]
                w.write(topic, {"header": {"stamp": {"sec": msg.header.stamp.sec, "nanosec": msg.header.stamp.nanosec},
                                           "frame_id": msg.header.frame_id},
                                "status": [{"level": status.level, "name": status.name, "message": status.message,
                                            "hardware_id": status.hardware_id,
                                            "values": [{"key": k, "value": v} for k, v in values.items()]}]},
                        t, type_name="diagnostic_msgs/msg/DiagnosticArray")
            elif topic.startswith(CAM + "/refscale/"):
                w.write(topic, {"header": {"stamp": {"sec": msg.header.stamp.sec, "nanosec": msg.header.stamp.nanosec},
                                           "frame_id": msg.header.frame_id}, "format": msg.format,
                                "data": bytes(msg.data)}, t, type_name="sensor_msgs/msg/CompressedImage")
    with ReferenceCache.open(world.cache, readonly=True) as cache:
        new = list(Reconstructor(x2, cache).run(bag))
        legacy = list(Reconstructor(x2, cache).run(old))
    assert [i.meta.lr_codec for i in legacy] == ["png"] * len(world.frames)
    assert all(np.array_equal(a.rgb, b.rgb) for a, b in zip(new, legacy, strict=True))


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"lr_codec": "h266"}, "valid choices"),
        ({"lr_codec": "jpeg", "lr_quality": 101}, "0–100"),
        ({"lr_codec": "png", "lr_quality": 50}, "lossless"),
        ({"lr_codec": "png", "target_kbps": 500.0}, "lossy"),
        ({"lr_codec": "webp", "target_kbps": -1.0}, "> 0"),
    ],
)
def test_bad_codec_settings_fail_before_writing(tmp_path: Path, x2, options: dict, needle: str) -> None:
    out = tmp_path / "never"
    with pytest.raises(CodecError, match=needle):
        FrameEncoder(BagWriter(out), TorchDownscaler(x2), ModelInfo.of(x2, "x2"), **options)
