"""The onboard encoder on ONNX Runtime: reference features computed once per registered reference,
and `EncoderPipeline` (stages overlapped) writing exactly the bag `FrameEncoder.encode` writes."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import numpy as np
import pytest
from test_pipeline import CAM, POSITIONS, T0, World, build_world

from refscale_model import load_weights
from refscale_model.backends.onnx_export import export_onnx
from refscale_model.backends.onnx_runtime import CPU, OnnxDownscaler
from refscale_model.bags import BagWriter, msgs, read_messages
from refscale_model.bags import refscale_format as fmt
from refscale_model.pipeline import FrameEncoder, FrameError, FrameResult, Pose
from refscale_model.pipeline.stages import EncoderPipeline
from refscale_model.refcache import ReferenceCache


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> World:
    return build_world(tmp_path_factory.mktemp("world"))


@pytest.fixture(scope="module")
def runtime(world: World, tmp_path_factory: pytest.TempPathFactory) -> OnnxDownscaler:
    model = load_weights(world.weights)
    path = export_onnx(model, tmp_path_factory.mktemp("onnx") / "tiny.onnx", model_id="tiny").path
    return OnnxDownscaler(path, providers=[CPU], intra_op_threads=2)


def frames_of(world: World) -> list[tuple[dict, int, Pose | None]]:
    """Frames 0..3 (two per reference), frame 0 again (same reference, same matrix), a corrupt one,
    one without a pose."""
    out = []
    for i, rgb in enumerate([*world.frames, world.frames[0], world.frames[1], world.frames[2]]):
        s = T0 + i * 100_000_000
        msg = msgs.image_msg(rgb, s, "cam")
        if i == 5:
            msg = dict(msg, data=bytes(msg["data"])[:100])  # truncated: a corrupt frame
        out.append((msg, s, None if i == 6 else Pose(*POSITIONS[i % 4])))
    return out


def bag_frames(path: Path) -> list[tuple[str, int, bytes]]:
    return sorted((m.topic, m.log_time_ns, bytes(m.msg.data)) for m in read_messages(path)
                  if m.topic in (fmt.lr_topic(CAM), fmt.smap_topic(CAM)))


def encode_one_by_one(enc: FrameEncoder, items: list[tuple[str, dict, int, Pose | None]]) -> list[FrameResult | str]:
    """`FrameEncoder.encode` per (topic, msg, stamp, pose): each result, or the kind of its FrameError."""
    out: list[FrameResult | str] = []
    for topic, msg, s, pose in items:
        try:
            out.append(enc.encode(topic, msg, s, pose))
        except FrameError as exc:
            out.append(exc.kind)
    return out


def encoder(path: Path, world: World, runtime: OnnxDownscaler, **kw) -> tuple[FrameEncoder, ReferenceCache]:
    cache = ReferenceCache.open(world.cache, readonly=True)
    return FrameEncoder(BagWriter(path), runtime, runtime.model_info(), cache=cache, **kw), cache


def test_pipeline_writes_the_bag_encode_writes(tmp_path: Path, world: World, runtime: OnnxDownscaler) -> None:
    frames = frames_of(world)
    enc, cache = encoder(tmp_path / "serial", world, runtime)
    serial = encode_one_by_one(enc, [(CAM, *f) for f in frames])
    enc.close()
    cache.close()
    assert enc.stats.feature_reuse == 1  # frame 0 again: same reference, same registration matrix
    assert serial[5] == "corrupt_image"

    enc2, cache2 = encoder(tmp_path / "piped", world, runtime)
    got: list[tuple[FrameResult | str, np.ndarray | None]] = []
    order = threading.Lock()

    def done(result: FrameResult | BaseException, lr: np.ndarray | None) -> None:
        with order:
            got.append((result.kind if isinstance(result, FrameError) else result, lr))  # type: ignore[arg-type]

    pipe = EncoderPipeline(enc2, depth=2)
    for msg, s, pose in frames:
        pipe.submit(CAM, msg, s, pose, done)
    assert pipe.flush(timeout=120)
    pipe.close()
    enc2.close()
    cache2.close()
    assert len(got) == len(frames) and [r for r, _ in got][5] == "corrupt_image"
    for (a, lr), b in zip(got, serial, strict=True):  # same results, in submission order
        if isinstance(b, str):
            assert a == b and lr is None
            continue
        assert isinstance(a, FrameResult) and lr is not None
        assert (a.stamp_ns, a.has_reference, a.reference_id, a.lr_bytes, a.smap_bytes) == (
            b.stamp_ns, b.has_reference, b.reference_id, b.lr_bytes, b.smap_bytes)
        assert lr.shape == (*b.lr_shape, 3)
    assert sum(isinstance(b, FrameResult) and b.has_reference for b in serial) >= 4
    assert enc2.stats.errors == enc.stats.errors and enc2.stats.frames == enc.stats.frames == 6
    assert enc2.stats.feature_reuse == 1
    assert bag_frames(tmp_path / "piped") == bag_frames(tmp_path / "serial")


def test_features_path_writes_what_the_plain_downscale_path_writes(
    tmp_path: Path, world: World, runtime: OnnxDownscaler
) -> None:
    """The encoder's feature path (features graph once, then the per-frame graphs) against the
    plain `downscale(hr, ref)` contract on the same ONNX export: identical bags."""

    class Plain:  # only the contract: no reference_features, so the encoder uses downscale()
        def downscale(self, hr: np.ndarray, ref: np.ndarray | None,
                      choose_smap=None) -> tuple[np.ndarray, np.ndarray | None]:
            return runtime.downscale(hr, ref, choose_smap)

    paths = {}
    for name, ds in (("features", runtime), ("plain", Plain())):
        cache = ReferenceCache.open(world.cache, readonly=True)
        enc = FrameEncoder(BagWriter(tmp_path / name), ds, runtime.model_info(), cache=cache)
        for msg, s, pose in frames_of(world)[:5]:
            enc.encode(CAM, msg, s, pose)
        assert enc.stats.feature_reuse == (1 if name == "features" else 0)
        enc.close()
        cache.close()
        paths[name] = tmp_path / name
    assert bag_frames(paths["features"]) == bag_frames(paths["plain"])


def test_closed_encoder_refuses_submissions(tmp_path: Path, world: World, runtime: OnnxDownscaler) -> None:
    enc, cache = encoder(tmp_path / "closed", world, runtime)
    pipe = EncoderPipeline(enc)
    enc.close()
    cache.close()
    with pytest.raises(RuntimeError, match="closed"):
        pipe.submit(CAM, frames_of(world)[0][0], T0)
    pipe.close()


class _Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, msg: str, **_: object) -> None:
        self.lines.append(msg)

    warning = error = info


@pytest.mark.parametrize("stages", [False, True])
def test_recording_serial_or_pipelined_counts_and_previews_every_frame(
    tmp_path: Path, world: World, runtime: OnnxDownscaler, stages: bool
) -> None:
    """The recorder's worker (no rclpy), one frame after another or through `EncoderPipeline`
    (`pipeline_stages`): every queued frame is encoded or counted as an error before the bag is
    finalised, each LR reaches the preview callback in arrival order, and both bags are equal."""
    recording = pytest.importorskip("refscale_ros.recording")
    from refscale_ros.frame_queue import FrameQueue
    from refscale_ros.recorder_stats import RecorderStats

    queue = FrameQueue([CAM], max_frames=16)
    stats = RecorderStats([CAM], queue, "test")
    previews: list[int] = []
    cache = ReferenceCache.open(world.cache, readonly=True)
    params = {"split_size_mb": 0, "split_duration_s": 0, "flush_interval_s": 0, "shutdown_drain_s": 60.0,
              "output_dir": str(tmp_path), "bag_name": "bag", "bag_prefix": "x", "pipeline_stages": stages}
    rec = recording.Recording(
        encoder_args={"downscaler": runtime, "info": runtime.model_info(), "provider": "cpu", "cache": cache},
        params=params, queue=queue, stats=stats, logger=_Log(), now_ns=lambda: T0,
        subscribe=lambda: None, unsubscribe=lambda: None,
        on_lr=lambda topic, msg, lr: previews.append(msgs.stamp_or(msg, 0)))
    path = rec.start()
    assert (rec.bag.pipeline is not None) == stages
    for i, rgb in enumerate([*world.frames, world.frames[0]]):
        s = T0 + i * 100_000_000
        rec.on_other("/gps/fix", msgs.NAV_SAT_FIX, msgs.navsatfix_msg(*POSITIONS[i % 4], 1000.0, s))
        rec.on_frame(CAM, msgs.image_msg(rgb, s, "cam"))
    rec.close()
    cache.close()
    c = stats.counters[CAM]
    assert c.received == 5 and c.encoded == 5 and c.dropped == 0 and c.dropped_at_stop == 0
    assert previews == [T0 + i * 100_000_000 for i in range(5)]
    frames = bag_frames(path)
    assert len([f for f in frames if f[0] == fmt.lr_topic(CAM)]) == 5
    assert sum(f[0] == fmt.smap_topic(CAM) for f in frames) >= 4  # GPS passthrough gave the poses
    RECORDED[stages] = frames
    if len(RECORDED) == 2:  # serial and pipelined runs of the same frames wrote the same frames
        assert RECORDED[True] == RECORDED[False]


RECORDED: dict[bool, list[tuple[str, int, bytes]]] = {}


def test_cameras_batched_write_the_bag_one_frame_at_a_time_writes(
    tmp_path: Path, world: World, runtime: OnnxDownscaler
) -> None:
    """Three cameras whose frames arrive together: `encode_frames` runs the network once per size and
    kind for them and writes the same frames as `encode` one by one; a corrupt frame or one without a
    pose in the batch costs only itself."""
    cams = [CAM, "/cam/left/image_raw", "/cam/right/image_raw"]
    names = {c: CAM for c in cams}  # all three look up the one camera's cache entries
    frames = frames_of(world)
    batches = [[(cams[k], *frames[(i + k) % len(frames)]) for k in range(3)] for i in range(len(frames))]

    enc, cache = encoder(tmp_path / "serial", world, runtime, camera_names=names)
    serial = encode_one_by_one(enc, [item for batch in batches for item in batch])
    enc.close()
    cache.close()

    calls = []
    many = runtime.downscale_many

    def counted(hrs, frefs, chooses):  # the real runtime, counting its batched calls
        calls.append((len(hrs), frefs is not None))
        return many(hrs, frefs, chooses)

    assert not runtime.batching_pays  # the CPU provider: batching is on here because we ask for it
    enc2, cache2 = encoder(tmp_path / "batched", world, runtime, camera_names=names, batch_network=True)
    enc2.downscaler = type("Counted", (), {"__getattr__": lambda _, name: getattr(runtime, name),
                                           "downscale_many": staticmethod(counted)})()
    batched = []
    for batch in batches:
        for got in enc2.encode_frames(batch):
            batched.append(got.kind if isinstance(got, FrameError) else got[0])
    enc2.close()
    cache2.close()

    def timeless(results: list) -> list:
        return [r if isinstance(r, str) else dataclasses.replace(r, encode_ms=0.0) for r in results]

    assert timeless(batched) == timeless(serial)
    assert batched.count("corrupt_image") == 3
    assert enc2.stats.errors == enc.stats.errors and enc2.stats.frames == enc.stats.frames
    assert any(n == 3 and with_ref for n, with_ref in calls)  # three referenced frames in one run
    assert all(with_ref for _, with_ref in calls)  # a lone frame without pose runs on its own
    assert bag_frames(tmp_path / "batched") == bag_frames(tmp_path / "serial")


def test_cameras_together_on_the_cpu_run_one_by_one_unless_asked(
    tmp_path: Path, world: World, runtime: OnnxDownscaler
) -> None:
    """`batch_network` None (the recorder's `batch_cameras: auto`) batches only where the provider says
    it pays: on the CPU provider `encode_frames` runs the network frame by frame."""
    enc, cache = encoder(tmp_path / "auto", world, runtime, camera_names={"/cam/left/image_raw": CAM})
    msg, s, pose = frames_of(world)[0]
    got = enc.encode_frames([(CAM, msg, s, pose), ("/cam/left/image_raw", msg, s, pose)])
    enc.close()
    cache.close()
    assert all(isinstance(g, tuple) for g in got) and enc.stats.batched_frames == 0
