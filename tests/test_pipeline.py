"""FrameEncoder / Reconstructor on real images: encodings, bad frames, references, model identity, readers.

Shared builders (`tiny_weights`, `build_world`) are reused by test_pipeline_cli.py.
"""

from __future__ import annotations

import dataclasses
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import load_pair

from refscale_model import RefScale, RefScaleConfig, load_model, load_weights, save_weights
from refscale_model.backends.torch_backend import TorchDownscaler
from refscale_model.bags import BagWriter, bag_files, is_complete, metadata_of, msgs, read_messages
from refscale_model.bags import refscale_format as fmt
from refscale_model.io.images import encode_png
from refscale_model.io.rosimg import compressed_msg_fields
from refscale_model.io.smap_coding import SMAP_FORMAT, decode_smap
from refscale_model.metrics import psnr
from refscale_model.pipeline import (
    FrameEncoder,
    FrameError,
    FrameFailure,
    ModelInfo,
    Pose,
    PoseTracker,
    ReconstructedFrame,
    Reconstructor,
)
from refscale_model.refcache import ReferenceCache

CAM = "/cam/front/image_raw"
T0 = 1_700_000_000_000_000_000
H, W = 192, 256
# frame i sits at POSITIONS[i]; positions 0/1 share reference A, 2/3 reference B (≈ 1 km apart)
POSITIONS = [(45.92, 6.87), (45.92, 6.87), (45.93, 6.87), (45.93, 6.87)]


def tiny_weights(path: Path, seed: int = 0) -> Path:
    """A small, freshly initialised model saved as real weights (so the sha256 check is real)."""
    torch.manual_seed(seed)
    model = RefScale(RefScaleConfig(scale=2, blocks=(1,), hidden=8, encoder_channels=8))
    save_weights(model, path)
    return path


def crop(img: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(img[60 : 60 + H, 100 : 100 + W])


def webcam_pan(root: Path, n: int) -> list[np.ndarray]:
    """`n` crops of one real webcam scene moving a pixel per frame; its reference in a one-entry cache
    at `root / "cache"` (at POSITIONS[0])."""
    target, ref = load_pair("webcam_tilde", 0)
    with ReferenceCache.open(root / "cache", create=True) as cache:
        cache.add(crop(ref), CAM, *POSITIONS[0], 0.0, 1, "route", "drive0")
    return [crop(np.roll(target, i, axis=1)) for i in range(n)]


def encode_pan(out: Path, cache_dir: Path, frames: list[np.ndarray], downscaler, info, **options) -> Path:
    """The frames 0.1 s apart at POSITIONS[0] through a real `FrameEncoder` (`options`: its keywords)."""
    with ReferenceCache.open(cache_dir, readonly=True) as cache:
        enc = FrameEncoder(BagWriter(out), downscaler, info, cache=cache, **options)
        for i, rgb in enumerate(frames):
            s = T0 + i * 100_000_000
            enc.encode(CAM, msgs.image_msg(rgb, s, "cam_front"), s, Pose(*POSITIONS[0], 0.0))
        enc.close()
    return out


@dataclass
class World:
    weights: Path
    cache: Path
    raw_bag: Path
    frames: list[np.ndarray]
    refs: list[np.ndarray]


def build_world(
    root: Path, n: int = 4, encodings: tuple[str, ...] = ("rgb8", "bgr8", "bayer_rggb8", "yuv422")
) -> World:
    """Real webcam revisits as a small raw bag and a reference cache.

    The bag holds the camera in several encodings, CameraInfo, NavSatFix and Odometry.
    """
    pairs = [load_pair("webcam_tilde", i) for i in (0, 2)]
    refs = [crop(r) for _, r in pairs]
    frames = [crop(load_pair("webcam_tilde", i)[0]) for i in range(n)]
    weights = tiny_weights(root / "w" / "tiny.safetensors")
    with ReferenceCache.open(root / "cache", create=True) as cache:
        cache.add(refs[0], CAM, *POSITIONS[0], 0.0, 1, "route", "drive0")
        cache.add(refs[1], CAM, *POSITIONS[2], 0.0, 2, "route", "drive0")
    with BagWriter(root / "raw") as bag:
        bag.add_topic(CAM, msgs.IMAGE)
        for i, rgb in enumerate(frames):
            s = T0 + i * 100_000_000
            # pose first (as a car's GPS would have it), heading north in both fix track and odometry
            bag.write("/gps/fix", msgs.navsatfix_msg(*POSITIONS[i], 1000.0, s), s, type_name=msgs.NAV_SAT_FIX)
            bag.write("/odom", msgs.odometry_msg(s, (0.0, float(i), 0.0), np.pi / 2), s, type_name=msgs.ODOMETRY)
            info = msgs.camera_info_msg(s, "cam_front", W, H, fx=200.0)
            bag.write("/cam/front/camera_info", info, s, type_name=msgs.CAMERA_INFO)
            bag.write(CAM, msgs.image_msg(rgb, s, "cam_front", encodings[i % len(encodings)]), s)
    return World(weights, root / "cache", root / "raw", frames, refs)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> World:
    return build_world(tmp_path_factory.mktemp("world"))


def _encoder(bag: Path, weights: Path, cache: Path | None, **kw) -> tuple[FrameEncoder, ReferenceCache | None]:
    model = load_weights(weights)
    c = ReferenceCache.open(cache, readonly=True) if cache else None
    enc = FrameEncoder(BagWriter(bag), TorchDownscaler(model), ModelInfo.of(model, "tiny"), cache=c, **kw)
    return enc, c


def _run(bag: Path, weights: Path, cache: Path | None) -> list[ReconstructedFrame | FrameFailure]:
    c = ReferenceCache.open(cache, readonly=True) if cache else None
    try:
        return list(Reconstructor(load_weights(weights), c, batch_size=3).run(bag))
    finally:
        if c is not None:
            c.close()


def test_every_encoding_and_bad_frames_are_counted_not_written(tmp_path: Path, world: World) -> None:
    enc, cache = _encoder(tmp_path / "enc", world.weights, world.cache)
    rgb = world.frames[0]
    good = [msgs.image_msg(rgb, 0, "cam", e) for e in ("rgb8", "bgr8", "mono8", "bayer_grbg8", "yuv422", "bgra8")]
    good.append({"header": msgs.header(0, "cam"), **compressed_msg_fields(rgb, "jpeg")})
    jpeg = good[-1]["data"]
    bad = [
        ({**msgs.image_msg(rgb, 0, "cam"), "encoding": "32FC1"}, "unsupported_encoding"),
        ({**msgs.image_msg(rgb, 0, "cam"), "data": b"\x00" * 100}, "corrupt_image"),
        ({"header": msgs.header(0, "cam"), "format": "jpeg", "data": jpeg[: len(jpeg) // 3]}, "corrupt_image"),
    ]
    stamps = []
    pose = Pose(*POSITIONS[0], 0.0)
    for i, m in enumerate(good):
        s = T0 + i * 10_000_000
        m["header"] = msgs.header(s, "cam")
        if i < len(bad):  # interleave a bad frame before each of the first good ones
            b, kind = bad[i]
            with pytest.raises(FrameError) as err:
                enc.encode(CAM, b, s - 1, pose)
            assert err.value.kind == kind and CAM in str(err.value)
        res = enc.encode(CAM, m, s, pose)
        assert res.has_reference and res.lr_shape == (H // 2, W // 2)
        stamps.append(s)
    enc.close()
    cache.close()
    assert enc.stats.frames == len(good) and enc.stats.errors == {"unsupported_encoding": 1, "corrupt_image": 2}
    assert enc.stats.bytes_out > 0 and enc.stats.frames_without_reference == 0
    assert all(is_complete(f) for f in bag_files(tmp_path / "enc"))
    out = _run(tmp_path / "enc", world.weights, world.cache)
    assert [o.stamp_ns for o in out] == stamps and all(isinstance(o, ReconstructedFrame) for o in out)
    assert out[0].frame_id == "cam" and out[0].rgb.shape == (H, W, 3)
    assert psnr(out[0].rgb, rgb) > 30.0


def test_without_cache_frames_are_encoded_without_reference(tmp_path: Path, world: World) -> None:
    enc, _ = _encoder(tmp_path / "enc", world.weights, None)
    for i in range(2):
        enc.encode(CAM, msgs.image_msg(world.frames[i], T0 + i, "cam"), T0 + i)
    enc.close()
    assert enc.stats.frames_without_reference == 2
    topics = {t for t, _, _ in read_messages(tmp_path / "enc")}
    assert topics == {fmt.lr_topic(CAM), fmt.meta_topic(CAM)}  # no S_map without a reference
    meta = [fmt.meta_from_msg(m) for t, _, m in read_messages(tmp_path / "enc") if t == fmt.meta_topic(CAM)]
    assert meta[0].no_reference_reason == "no reference cache" and not meta[0].has_smap
    out = _run(tmp_path / "enc", world.weights, None)
    assert len(out) == 2 and all(isinstance(o, ReconstructedFrame) for o in out)


def _encode_world(bag: Path, world: World) -> list[int]:
    enc, cache = _encoder(bag, world.weights, world.cache)
    stamps = []
    for i, rgb in enumerate(world.frames):
        s = T0 + i * 100_000_000
        enc.passthrough("/gps/fix", msgs.NAV_SAT_FIX, msgs.navsatfix_msg(*POSITIONS[i], 1000.0, s), s)
        res = enc.encode(CAM, msgs.image_msg(rgb, s, "cam_front"), s)  # pose from the tracker
        assert res.has_reference and res.reference_id == ("1" if i < 2 else "2")
        stamps.append(s)
    enc.close()
    cache.close()
    return stamps


def test_reference_missing_or_mismatched_fails_only_those_frames(tmp_path: Path, world: World) -> None:
    stamps = _encode_world(tmp_path / "enc", world)
    # offboard cache 1: reference B's image file is gone
    shutil.copytree(world.cache, tmp_path / "c_missing")
    with ReferenceCache.open(tmp_path / "c_missing", readonly=True) as c:
        b_path = c.get(2, next(r.sha256 for r in c.entries() if r.id == 2)).path
    b_path.unlink()
    out = _run(tmp_path / "enc", world.weights, tmp_path / "c_missing")
    assert [type(o).__name__ for o in out] == ["ReconstructedFrame"] * 2 + ["FrameFailure"] * 2
    assert {o.kind for o in out[2:]} == {"reference_missing"} and "reference 2" in out[2].message
    assert [o.stamp_ns for o in out] == stamps
    # offboard cache 2: same ids, but reference B has other pixels (so another sha256)
    with ReferenceCache.open(tmp_path / "c_other", create=True) as c:
        c.add(world.refs[0], CAM, *POSITIONS[0], 0.0, 1, "route", "drive0")
        c.add(255 - world.refs[1], CAM, *POSITIONS[2], 0.0, 2, "route", "drive0")
    out = _run(tmp_path / "enc", world.weights, tmp_path / "c_other")
    assert [getattr(o, "kind", "ok") for o in out] == ["ok", "ok", "reference_mismatch", "reference_mismatch"]
    assert "sha256" in out[2].message
    # the frames that did work are identical to a run with the right cache
    good = _run(tmp_path / "enc", world.weights, world.cache)
    np.testing.assert_array_equal(out[0].rgb, good[0].rgb)


def test_other_weights_are_refused(tmp_path: Path, world: World) -> None:
    _encode_world(tmp_path / "enc", world)
    other = load_weights(tiny_weights(tmp_path / "w2" / "other.safetensors", seed=1))
    rec = Reconstructor(other, None)
    problem = rec.check_bag(tmp_path / "enc")
    assert problem is not None and "tiny" in problem and other.weights_sha256 in problem
    assert {o.kind for o in rec.run(tmp_path / "enc")} == {"model_mismatch"}
    assert Reconstructor(load_weights(world.weights)).check_bag(tmp_path / "enc") is None


def test_encoded_bag_opens_with_rosbags_and_mcap_ros2(tmp_path: Path, world: World) -> None:
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory
    from rosbags.highlevel import AnyReader

    _encode_world(tmp_path / "enc", world)
    meta = metadata_of(tmp_path / "enc")[fmt.METADATA_NAME]
    model = load_weights(world.weights)
    assert meta["weights_sha256"] == model.weights_sha256 and meta["software_version"]
    assert '"hidden": 8' in meta["model_config"]
    with AnyReader([tmp_path / "enc"]) as r:
        types = {c.topic: c.msgtype for c in r.connections}
        assert types[fmt.lr_topic(CAM)] == "sensor_msgs/msg/CompressedImage"
        assert types[fmt.meta_topic(CAM)] == "diagnostic_msgs/msg/DiagnosticArray"
        for conn, _t, raw in r.messages():
            m = r.deserialize(raw, conn.msgtype)
            if conn.topic == fmt.meta_topic(CAM):
                kv = {v.key: v.value for v in m.status[0].values}
                # the short record (format 6): a weights prefix, no per-bag constants (in the bag's records);
                # 8 where the frame stores its own map in the coded form, 7 where corners, else 6
                own_map = kv.get("has_smap") == "true" and "smap_from_stamp_ns" not in kv
                assert kv["format"] == (fmt.FORMAT_SMAP_CODED if own_map else
                                        fmt.FORMAT_CORNERS if "registration_corners" in kv else fmt.FORMAT_SHORT)
                assert model.weights_sha256.startswith(kv["weights_sha256"])
                assert len(kv["weights_sha256"]) == 12 and "model_id" not in kv and "source_type" not in kv
                assert m.header.frame_id == "cam_front"
    n = 0
    for f in bag_files(tmp_path / "enc"):
        with open(f, "rb") as fh:
            for _s, ch, _m, dec in make_reader(fh, decoder_factories=[DecoderFactory()]).iter_decoded_messages():
                n += 1
                if ch.topic == fmt.smap_topic(CAM):  # the smaller lossless form (`io.smap_coding`)
                    assert dec.format in (SMAP_FORMAT, "png") and decode_smap(bytes(dec.data), dec.format).ndim == 2
    assert n == 4 * 3 + 4  # lr + smap + meta per frame, plus the passed-through fixes


def test_encode_from_two_threads(tmp_path: Path, world: World) -> None:
    enc, cache = _encoder(tmp_path / "enc", world.weights, world.cache)
    cams = ["/cam/a/image_raw", "/cam/b/image_raw"]

    def work(k: int) -> None:
        for i in range(3):
            s = T0 + i * 1000 + k
            enc.encode(cams[k], msgs.image_msg(world.frames[i], s, "cam"), s, Pose(*POSITIONS[0]))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    enc.close()
    cache.close()
    assert enc.stats.frames == 6 and enc.stats.frames_without_reference == 6  # cache keyed by CAM only
    out = _run(tmp_path / "enc", world.weights, world.cache)
    assert sorted((o.camera_topic, o.stamp_ns) for o in out) == sorted(
        (cams[k], T0 + i * 1000 + k) for k in range(2) for i in range(3)
    )


def test_pose_tracker_course_and_odometry_heading() -> None:
    tr = PoseTracker()
    assert tr.pose(0) is None
    tr.update(msgs.NAV_SAT_FIX, msgs.navsatfix_msg(45.0, 7.0, 0.0, 0), 0)
    tr.update(msgs.NAV_SAT_FIX, msgs.navsatfix_msg(45.0001, 7.0, 0.0, 1), 10**8)  # ~11 m north
    p = tr.pose(10**8)
    assert p is not None and p.lat == 45.0001 and p.heading_deg == pytest.approx(0.0, abs=1e-6)
    tr.update(msgs.ODOMETRY, msgs.odometry_msg(2, (0, 0, 0), 0.0), 2 * 10**8)  # ENU yaw 0 = east
    assert tr.pose(2 * 10**8).heading_deg == pytest.approx(90.0)
    assert tr.pose(10 * 10**9) is None  # stale
    no_fix = {**msgs.navsatfix_msg(1.0, 1.0, 0.0, 0), "status": {"status": -1, "service": 1}}
    tr.update(msgs.NAV_SAT_FIX, no_fix, 3 * 10**8)
    assert tr.pose(3 * 10**8).lat == 45.0001


def test_gated_reference_stores_no_map_and_rebuilds_reference_free(tmp_path: Path, world: World) -> None:
    """A reference below the model's `smap_gate` yields an all-zero map: not stored, said why, rebuilt."""
    model = load_model("x2")  # a trained encoder: an untrained one finds any two natural images similar
    model.config = dataclasses.replace(model.config, smap_gate=0.95)  # only a near-identical reference passes
    gated = tmp_path / "w" / "gated.safetensors"
    save_weights(model, gated)
    enc, cache = _encoder(tmp_path / "enc", gated, world.cache)
    results = [enc.encode(CAM, msgs.image_msg(rgb, T0 + i, "cam"), T0 + i, Pose(*POSITIONS[i], 0.0))
               for i, rgb in enumerate(world.frames[:2])]
    enc.close()
    cache.close()
    assert [r.has_reference for r in results] == [False, False] and all(r.smap_bytes == 0 for r in results)
    assert results[0].no_reference_reason.startswith("reference gated")
    topics = {t for t, _, _ in read_messages(tmp_path / "enc")}
    assert fmt.smap_topic(CAM) not in topics
    lr_stored = [m for t, _, m in read_messages(tmp_path / "enc") if t == fmt.lr_topic(CAM)][0]
    lr_noref, _ = TorchDownscaler(load_weights(gated)).downscale(world.frames[0], None)
    assert bytes(lr_stored.data) == encode_png(lr_noref)  # S_map = 0 is exactly the no-reference condition
    out = _run(tmp_path / "enc", gated, world.cache)
    assert all(isinstance(o, ReconstructedFrame) for o in out) and psnr(out[0].rgb, world.frames[0]) > 30.0
