"""Every frame that enters ends in exactly one counter, also when a library raises unexpectedly.

Faults are injected into the real pipeline (real bag, real cache, real model): registration that
raises (as OpenCV did on degenerate references) and an LR coder that raises. The counters must add
up to the camera messages read, the good frames must be in the bag, and the job must not abort.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest
from test_pipeline import CAM, World, build_world

from refscale_model import load_weights
from refscale_model.backends.base import ModelInfo
from refscale_model.backends.loader import Backend
from refscale_model.backends.torch_backend import TorchDownscaler
from refscale_model.bags import read_messages
from refscale_model.bags import refscale_format as fmt
from refscale_model.codecs import image as image_codecs
from refscale_model.pipeline.jobs import encode_bag
from refscale_model.refcache import ReferenceCache


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> World:
    return build_world(tmp_path_factory.mktemp("world"), n=4, encodings=("rgb8",))


def test_counters_add_up_under_injected_faults(tmp_path: Path, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    import refscale_model.registration as registration

    calls = {"register": 0, "code": 0}
    real_register = registration.register
    real_encode = image_codecs.ImageStreamEncoder.encode

    def register(*args, **kwargs):
        calls["register"] += 1
        if calls["register"] == 1:
            raise cv2.error("injected: OpenCV failed inside registration")
        return real_register(*args, **kwargs)

    def code(self, rgb, quality=None):
        calls["code"] += 1
        if calls["code"] == 3:
            raise RuntimeError("injected: the LR coder failed")
        return real_encode(self, rgb, quality)

    monkeypatch.setattr(registration, "register", register)
    monkeypatch.setattr(image_codecs.ImageStreamEncoder, "encode", code)
    model = load_weights(world.weights)
    backend = Backend(TorchDownscaler(model), ModelInfo.of(model, "tiny"), "torch:cpu")
    with ReferenceCache.open(world.cache, readonly=True) as cache:
        report = encode_bag(world.raw_bag, tmp_path / "bag", backend, [CAM], cache=cache)
    s = report.stats
    assert s.frames + sum(s.errors.values()) == len(world.frames)  # nothing vanished
    assert s.frames == 3 and s.errors == {"internal": 1} and len(report.frame_errors) == 1
    metas = [fmt.meta_from_msg(m) for t, _, m in read_messages(tmp_path / "bag") if t == fmt.meta_topic(CAM)]
    assert len(metas) == 3
    assert metas[0].no_reference_reason.startswith("registration error: error")  # coded without reference
    assert all(m.has_smap for m in metas[1:])


def test_an_undecodable_message_fails_its_frame_not_the_run(tmp_path: Path, world: World) -> None:
    """A message whose CDR is damaged (as a salvaged chunk may hold): the frame fails, the rest rebuild."""
    from refscale_model.bags import BagWriter
    from refscale_model.pipeline import FrameFailure, ReconstructedFrame, Reconstructor

    model = load_weights(world.weights)
    backend = Backend(TorchDownscaler(model), ModelInfo.of(model, "tiny"), "torch:cpu")
    with ReferenceCache.open(world.cache, readonly=True) as cache:
        encode_bag(world.raw_bag, tmp_path / "good", backend, [CAM], cache=cache)
    lr_topic = fmt.lr_topic(CAM)
    damaged = tmp_path / "damaged"
    with BagWriter(damaged) as w:
        first_lr = True
        for topic, t, msg in read_messages(tmp_path / "good"):
            if topic == lr_topic and first_lr:  # the first frame's LR: a CDR string length far past the end
                first_lr = False
                w.add_topic(topic, "sensor_msgs/msg/CompressedImage")
                w.write_cdr(topic, b"\x00\x01\x00\x00" + b"\xff" * 12, t)
                continue
            w.write(topic, msg, t, type_name=_type_of(topic))
    with ReferenceCache.open(world.cache, readonly=True) as cache:
        rec = Reconstructor(model, cache)
        items = list(rec.run(damaged))
    assert [type(i) for i in items].count(ReconstructedFrame) == len(world.frames) - 1
    failed = [i for i in items if isinstance(i, FrameFailure)]
    assert len(failed) == 1 and failed[0].kind == "incomplete"
    assert any("undecodable message skipped" in p for p in rec.reader.problems)


def _type_of(topic: str) -> str:
    if topic.endswith("/refscale/meta"):
        return "diagnostic_msgs/msg/DiagnosticArray"
    if topic.endswith("/refscale/lr") or topic.endswith("/refscale/smap"):
        return "sensor_msgs/msg/CompressedImage"
    return {"/gps/fix": "sensor_msgs/msg/NavSatFix", "/odom": "nav_msgs/msg/Odometry",
            "/cam/front/camera_info": "sensor_msgs/msg/CameraInfo"}[topic]
