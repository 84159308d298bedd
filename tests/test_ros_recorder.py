"""The onboard recorder node on a real ROS 2 graph (rclpy wheels, Fast DDS on this machine).

A player node publishes real frames (rail_nordland_640, 320×180) and NavSatFix from a raw bag at
the recorded rate; the recorder (the same class `ros2 launch` starts, with config/record.yaml)
writes a RefScale bag. Checked here: the bag, `/diagnostics`, bounded queues with counted drops,
an unsupported encoding reported while the next frames are still recorded, the start/stop
services. The rebuild (PSNR) is in test_ros_reconstructor.py, SIGINT/SIGTERM in test_ros_cli.py.

Helpers (`build_drive`, `Probe`, `ros_domain`, ...) are imported by the other test_ros_* files.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
from conftest import load_pair

pytest.importorskip("rclpy", reason="needs the ROS 2 wheels: pip install -e '.[ros]'")

from refscale_ros import common, runtime  # noqa: E402
from refscale_ros import player as player_mod  # noqa: E402
from refscale_ros import recorder as recorder_mod  # noqa: E402
from refscale_ros.frame_queue import FrameQueue  # noqa: E402
from refscale_ros.player import play_bag  # noqa: E402
from refscale_ros.recorder import run_recorder  # noqa: E402
from refscale_ros.recorder_config import CameraSpec  # noqa: E402

from refscale_model import RefScale, RefScaleConfig, save_weights  # noqa: E402
from refscale_model.bags import BagWriter, bag_files, is_complete, msgs, read_messages, topics_of  # noqa: E402
from refscale_model.bags import refscale_format as fmt  # noqa: E402
from refscale_model.refcache import ReferenceCache  # noqa: E402

CAM = "/cam/front/image_raw"
CAM_ID = "front"
DATA_SET = "rail_nordland_640"
CAM_INFO = "/cam/front/camera_info"
T0 = 1_700_000_000_000_000_000
SIZE = (320, 180)  # W, H: small frames, the machine is shared
LAT0, LON0 = 67.28, 14.40  # Nordland line, heading north
M_PER_DEG = 111_195.0
MIN_PSNR_DB = 28.0  # untrained x2 (seed 0), 320×180 Nordland frames 0-11: 29.9-36.5 dB in memory
RECORD_YAML = common.default_params_file("record.yaml")
_domains = itertools.count()
_names = itertools.count()


# --------------------------------------------------------------------------- fixtures / helpers
@pytest.fixture(autouse=True)
def ros_domain(monkeypatch: pytest.MonkeyPatch) -> int:
    """A ROS_DOMAIN_ID of its own per test (from the pid), DDS discovery kept on this host."""
    domain = 1 + (os.getpid() * 7 + next(_domains)) % 100
    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    monkeypatch.setenv("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    return domain


@dataclass
class Drive:
    raw_bag: Path
    cache: Path
    frames: dict[int, np.ndarray]
    """stamp_ns -> RGB of every valid camera frame in the raw bag."""
    bad_stamps: list[int]


def build_drive(root: Path, n: int = 6, hz: float = 5.0, bad: tuple[int, ...] = (),
                cameras: tuple[str, ...] = (CAM,)) -> Drive:
    """A short drive north: camera at `hz`, NavSatFix at 2×`hz`, a summer reference per frame.

    Frames `bad` are published as 32FC1 (an encoding the recorder cannot take). More `cameras`
    publish the same frame at the same stamp (a rig triggered together).
    """
    root.mkdir(parents=True, exist_ok=True)
    frames: dict[int, np.ndarray] = {}
    bad_stamps: list[int] = []
    step_ns = int(1e9 / hz)
    with ReferenceCache.open(root / "cache", create=True) as cache, BagWriter(root / "raw") as bag:
        for cam in cameras:
            bag.add_topic(cam, msgs.IMAGE)
        for i in range(n):
            winter, summer = (cv2.resize(x, SIZE, interpolation=cv2.INTER_AREA) for x in load_pair(DATA_SET, i))
            s = T0 + i * step_ns
            lat = LAT0 + 3.0 * i / M_PER_DEG  # 3 m per frame
            cache.add(summer, CAM_ID, lat, LON0, 0.0, i, "nordland", "summer")
            for k in (-1, 0, 1) if i == 0 else (0, 1):  # GPS before each frame and half-way to the next
                t = s - 1_000_000 + k * step_ns // 2
                fix = msgs.navsatfix_msg(lat + 1.5 * k / M_PER_DEG, LON0, 30.0, t)
                bag.write("/gps/fix", fix, t, type_name=msgs.NAV_SAT_FIX)
            info = msgs.camera_info_msg(s, "cam_front", SIZE[0], SIZE[1], fx=250.0)
            bag.write(CAM_INFO, info, s, type_name=msgs.CAMERA_INFO)
            if i in bad:
                depth = winter.astype(np.float32).mean(axis=2)
                msg = {
                    "header": msgs.header(s, "cam_front"),
                    "height": SIZE[1],
                    "width": SIZE[0],
                    "encoding": "32FC1",
                    "is_bigendian": 0,
                    "step": SIZE[0] * 4,
                    "data": depth.tobytes(),
                }
                bad_stamps.append(s)
            else:
                msg = msgs.image_msg(winter, s, "cam_front", "rgb8")
                frames[s] = winter
            for cam in cameras:
                bag.write(cam, msg, s)
    return Drive(root / "raw", root / "cache", frames, bad_stamps)


class Probe:
    """A test-side ROS node in its own context, spun in a thread: subscribes, plays bags, calls services."""

    def __init__(self) -> None:
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node

        self.ctx = runtime.init_context([])
        self.node = Node(f"refscale_test_probe_{next(_names)}", context=self.ctx)
        self.executor = SingleThreadedExecutor(context=self.ctx)
        self.executor.add_node(self.node)
        self.received: dict[str, list[Any]] = {}
        self.players: list[Any] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set() and self.ctx.ok():
            self.executor.spin_once(timeout_sec=0.02)

    def subscribe(self, msg_type: Any, topic: str, reliable: bool = True, depth: int = 100) -> list[Any]:
        from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

        got: list[Any] = self.received.setdefault(topic, [])
        qos = QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE) if reliable else qos_profile_sensor_data
        self.node.create_subscription(msg_type, topic, got.append, qos)
        return got

    def diagnostics(self) -> list[Any]:
        from diagnostic_msgs.msg import DiagnosticArray

        return self.subscribe(DiagnosticArray, "/diagnostics")

    def play(self, bag: Path, **params: Any) -> Any:
        """Start a BagPlayerNode (it publishes from its own thread) in this probe's context."""
        from rclpy.parameter import Parameter

        overrides = [Parameter(k, value=v) for k, v in {"bag": str(bag), **params}.items()]
        name = f"refscale_player_{next(_names)}"
        player = player_mod.BagPlayerNode(context=self.ctx, node_name=name, parameter_overrides=overrides)
        self.players.append(player)
        return player

    def call(self, srv_type: Any, name: str, timeout: float = 20.0) -> Any:
        client = self.node.create_client(srv_type, name)
        assert client.wait_for_service(timeout_sec=timeout), f"service {name} not available"
        future = client.call_async(srv_type.Request())
        deadline = time.monotonic() + timeout
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert future.done(), f"service {name} did not answer"
        return future.result()

    def close(self) -> None:
        import rclpy

        for p in self.players:
            p.destroy_node()
        self._stop.set()
        self._thread.join(timeout=5)
        self.executor.shutdown(timeout_sec=1)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.ctx)


@pytest.fixture
def probe() -> Iterator[Probe]:
    p = Probe()
    yield p
    p.close()
    for rec in list(RecorderThread.running):  # a failed test must not leave a node spinning
        rec.finish()


def wait_for(pred: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class RecorderThread:
    """`run_recorder` (the in-process API) in a thread, as `make demo` may run it."""

    running: list[RecorderThread] = []

    def __init__(self, overrides: dict[str, Any], params_file: Path | None = RECORD_YAML) -> None:
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.report: Any = None
        self.error: BaseException | None = None

        def run() -> None:
            try:
                self.report = recorder_mod.run_recorder(params_file, overrides, stop=self.stop, ready=self.ready)
            except BaseException as exc:  # noqa: BLE001 - re-raised in finish()
                self.error = exc
                self.ready.set()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        RecorderThread.running.append(self)
        assert self.ready.wait(120), "recorder did not start"
        if self.error is not None:
            raise self.error

    def finish(self) -> Any:
        self.stop.set()
        self.thread.join(timeout=120)
        if self in RecorderThread.running:
            RecorderThread.running.remove(self)
        assert not self.thread.is_alive(), "recorder did not stop"
        if self.error is not None:
            raise self.error
        return self.report


def recorder_overrides(drive: Drive, out: Path, **extra: Any) -> dict[str, Any]:
    """record.yaml as shipped, pointed at the test drive; untrained x2 model (tests only)."""
    return {
        "cameras": [f"{CAM}:Image:{CAM_ID}"],
        "passthrough": [f"{CAM_INFO}:{msgs.CAMERA_INFO}"],
        "cache_dir": str(drive.cache),
        "allow_untrained": True,
        "output_dir": str(out),
        "bag_name": "rec",
        "diagnostics_period_s": 0.25,
        **extra,
    }


def camera_status(arr: Any, topic: str = CAM) -> dict[str, str] | None:
    for s in arr.status:
        if s.name.endswith(topic):
            return {"level": int.from_bytes(s.level, "little") if isinstance(s.level, bytes) else int(s.level),
                    "message": s.message, **{kv.key: kv.value for kv in s.values}}
    return None


def node_status(arr: Any) -> dict[str, str] | None:
    for s in arr.status:
        if s.name == recorder_mod.NODE_NAME:
            return {"message": s.message, **{kv.key: kv.value for kv in s.values}}
    return None


def meta_stamps(bag: Path) -> list[int]:
    return [msgs.stamp_ns(m) for t, _, m in read_messages(bag) if t == fmt.meta_topic(CAM)]


# --------------------------------------------------------------------------- recorded once
@dataclass
class Recorded:
    drive: Drive
    bag: Path
    weights: Path
    report: Any
    diagnostics: list[Any]
    wall_s: float


_ONCE: dict[str, Any] = {}


@pytest.fixture(scope="session")
def x2_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained x2 network saved as a real weights file: onboard and offboard load the same one.

    (`weights: x2` + `allow_untrained` builds a fresh random network per load, fine for recording
    tests, but a rebuild needs the very same weights.) Memoised: other modules import this fixture.
    """
    if "weights" not in _ONCE:
        torch.manual_seed(0)
        path = tmp_path_factory.mktemp("weights") / "x2_untrained_seed0.safetensors"
        save_weights(RefScale(RefScaleConfig.preset("x2")), path)
        _ONCE["weights"] = path
    return _ONCE["weights"]


@pytest.fixture(scope="session")
def recorded(tmp_path_factory: pytest.TempPathFactory, shared_data: Path, x2_weights: Path) -> Recorded:
    """One recording at 5 Hz (frame 2 of 7 in an unsupported encoding), shared by several tests and modules."""
    if "recorded" not in _ONCE:
        _ONCE["recorded"] = _record(tmp_path_factory.mktemp("recorded"), x2_weights)
    return _ONCE["recorded"]


def _record(root: Path, weights: Path) -> Recorded:
    mp = pytest.MonkeyPatch()
    _set_domain(mp)
    drive = build_drive(root / "drive", n=7, hz=5.0, bad=(2,))
    p = Probe()
    try:
        diags = p.diagnostics()
        t0 = time.monotonic()
        params = recorder_overrides(drive, root / "out", max_queue=16, shutdown_drain_s=60.0, weights=str(weights))
        rec = RecorderThread(params)
        player = p.play(drive.raw_bag, wait_for_subscribers=1)
        assert player.done.wait(60), "player did not finish"
        wait_for(lambda: any((node_status(a) or {}).get("frames") == str(len(drive.frames)) for a in diags),
                 60, "all frames encoded")
        time.sleep(0.3)  # one more diagnostics period
        report = rec.finish()
        return Recorded(drive, root / "out" / "rec", weights, report, list(diags), time.monotonic() - t0)
    finally:
        p.close()
        for r in list(RecorderThread.running):
            r.finish()
        mp.undo()


def _set_domain(mp: pytest.MonkeyPatch) -> None:
    mp.setenv("ROS_DOMAIN_ID", str(1 + (os.getpid() * 7 + next(_domains)) % 100))
    mp.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    mp.setenv("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")


# --------------------------------------------------------------------------- tests
def test_recording_is_a_complete_refscale_bag(recorded: Recorded) -> None:
    r, drive = recorded.report, recorded.drive
    assert r.ok and r.bags == [recorded.bag]
    assert r.frames == len(drive.frames) and r.received == len(drive.frames) + len(drive.bad_stamps)
    assert r.dropped == 0 and r.frames_without_reference == 0
    assert (recorded.bag / "metadata.yaml").is_file() and all(is_complete(f) for f in bag_files(recorded.bag))
    assert sorted(meta_stamps(recorded.bag)) == sorted(drive.frames)  # header stamps survive
    topics = topics_of(recorded.bag)
    assert topics["/gps/fix"] == msgs.NAV_SAT_FIX and topics[CAM_INFO] == msgs.CAMERA_INFO  # passthrough
    infos = [m for t, _, m in read_messages(recorded.bag) if t == CAM_INFO]
    assert len(infos) == len(drive.frames) + len(drive.bad_stamps) and infos[0].k[0] == 250.0
    assert {fmt.lr_topic(CAM), fmt.smap_topic(CAM), fmt.meta_topic(CAM)} <= set(topics)
    assert r.bytes_out < r.bytes_in / 3  # LR + S_map PNGs vs raw rgb8


def test_unsupported_encoding_is_reported_and_next_frames_recorded(recorded: Recorded) -> None:
    bad = recorded.drive.bad_stamps[0]
    assert recorded.report.errors == {"unsupported_encoding": 1}
    stamps = meta_stamps(recorded.bag)
    assert bad not in stamps and any(s > bad for s in stamps)  # the frames after it were recorded
    cams = [c for a in recorded.diagnostics if (c := camera_status(a))]
    flagged = [c for c in cams if c.get("errors.unsupported_encoding") == "1"]
    assert flagged and flagged[-1]["level"] == 1 and "32FC1" not in flagged[-1]["message"]  # WARN, counted
    last_error = [n["last_error"] for a in recorded.diagnostics if (n := node_status(a)) and n["last_error"]]
    assert last_error and "32FC1" in last_error[-1]


def test_diagnostics_report_rates_latency_provider(recorded: Recorded) -> None:
    nodes = [n for a in recorded.diagnostics if (n := node_status(a))]
    cams = [c for a in recorded.diagnostics if (c := camera_status(a))]
    assert all(n["provider"] == "torch:cpu" for n in nodes)
    assert nodes[0]["state"] == "recording" and nodes[-1]["state"] == "idle"  # the last one: after close()
    assert max(float(c["fps_in"]) for c in cams) > 1.0 and max(float(c["fps_out"]) for c in cams) > 1.0
    assert max(float(c["encode_latency_ms"]) for c in cams) > 0.0
    assert max(float(n["bytes_per_s"]) for n in nodes) > 0.0
    assert all(int(c["queue_depth"]) <= int(c["queue_max"]) == 16 for c in cams)
    assert cams[-1]["dropped"] == "0" and cams[-1]["frames_without_reference"] == "0"
    assert cams[-1]["missed_upstream"] == "0"  # a steady 5 Hz drive: no stamp gaps


def test_publisher_faster_than_encoder_keeps_queue_bounded_and_counts_drops(
    tmp_path: Path, shared_data: Path, probe: Probe
) -> None:
    drive = build_drive(tmp_path / "drive", n=12, hz=5.0)
    diags = probe.diagnostics()
    rec = RecorderThread(
        recorder_overrides(drive, tmp_path / "out", max_queue=2, shutdown_drain_s=0.0, diagnostics_period_s=0.1)
    )
    published = play_bag(drive.raw_bag, rate=40.0, wait_for_subscribers=1)  # 200 Hz camera, public API
    assert published == sum(1 for _ in read_messages(drive.raw_bag))
    try:
        wait_for(lambda: any(int((camera_status(a) or {}).get("dropped", 0)) > 0 for a in diags), 30, "drops")
    except AssertionError:
        print([camera_status(a) for a in diags[-3:]])
        raise
    report = rec.finish()
    cams = [c for a in diags if (c := camera_status(a))]
    assert cams and all(int(c["queue_depth"]) <= 2 for c in cams)  # never a backlog
    warned = [c for c in cams if int(c["dropped"]) > 0]
    # the status of the period in which drops happened is WARN (the probe may miss single messages under load)
    assert any(c["level"] == 1 and "dropped" in c["message"] for c in warned), [
        (c["dropped"], c["level"], c["message"]) for c in cams]
    c = report.cameras[CAM]
    assert c["dropped"] > 0 and report.dropped == c["dropped"] + c["dropped_at_stop"]
    assert c["received"] == c["encoded"] + c["dropped"] + c["dropped_at_stop"]  # nothing silent
    assert report.frames == c["encoded"] == len(meta_stamps(tmp_path / "out" / "rec"))
    assert all(is_complete(f) for f in bag_files(tmp_path / "out" / "rec"))


def test_stop_and_start_services_finalise_and_open_bags(tmp_path: Path, shared_data: Path, probe: Probe) -> None:
    from std_srvs.srv import Trigger

    drive = build_drive(tmp_path / "drive", n=3, hz=10.0)
    rec = RecorderThread(recorder_overrides(drive, tmp_path / "out", start_recording=False, bag_name=""))
    diags = probe.diagnostics()
    assert not (tmp_path / "out").exists()  # nothing opened before ~/start
    res = probe.call(Trigger, "/refscale_recorder/start")
    assert res.success and "recording to" in res.message
    player = probe.play(drive.raw_bag, wait_for_subscribers=1)
    assert player.done.wait(30)
    first = Path(res.message.split("recording to ", 1)[1])
    wait_for(lambda: any((node_status(a) or {}).get("frames") == "3" for a in diags), 30, "3 frames encoded")
    res = probe.call(Trigger, "/refscale_recorder/stop")  # drains and finalises
    assert res.success and str(first) in res.message
    assert (first / "metadata.yaml").is_file() and all(is_complete(f) for f in bag_files(first))
    n_first = len(meta_stamps(first))
    assert n_first == 3
    assert probe.call(Trigger, "/refscale_recorder/stop").message == "was not recording"
    res = probe.call(Trigger, "/refscale_recorder/start")
    second = Path(res.message.split("recording to ", 1)[1])
    assert res.success and second != first and second.parent == first.parent
    report = rec.finish()
    assert report.bags == [first, second] and report.frames == n_first
    assert (second / "metadata.yaml").is_file() and len(meta_stamps(first)) == n_first


def test_camera_entries_and_queue_policy() -> None:
    spec = CameraSpec.parse
    assert spec("/cam/front/image_raw") == CameraSpec(CAM, msgs.IMAGE, CAM)
    assert spec("/cam/left/image_raw/compressed:auto:left").type_name == msgs.COMPRESSED_IMAGE
    assert spec("/c:CompressedImage:c1") == CameraSpec("/c", msgs.COMPRESSED_IMAGE, "c1")
    for bad in ("cam", "/c:Depth", "/c:Image:x:y"):
        with pytest.raises(ValueError):
            spec(bad)
    q = FrameQueue(["/a", "/b"], max_frames=2)
    assert [q.put_frame("/a", i) for i in range(4)] == [True, True, False, False]
    q.put_other("gps")
    q.put_frame("/b", "b0")
    assert q.dropped == {"/a": 2} and q.depth("/a") == 2 and q.depth() == 4
    assert [q.get(0.1) for _ in range(4)] == [("/a", 2), ("/a", 3), ("other", "gps"), ("/b", "b0")]
    assert q.get(0.01) is None


def test_run_recorder_for_a_bounded_time_returns_its_report(tmp_path: Path, shared_data: Path) -> None:
    drive = build_drive(tmp_path / "drive", n=1)
    report = run_recorder(None, recorder_overrides(drive, tmp_path / "out"), duration_s=0.5)
    assert report.stopped_by == "duration" and report.ok and report.frames == 0
    assert report.bags == [tmp_path / "out" / "rec"] and (tmp_path / "out" / "rec" / "metadata.yaml").is_file()
    assert report.provider == "torch:cpu" and "bag: " in report.summary()


def record_played(probe: Probe, overrides: dict[str, Any], drive: Drive, frames: int,
                  timeout: float) -> tuple[Any, list[Any]]:
    """Start a recorder, play `drive` to it, wait until `frames` frames are encoded, stop it:
    (its report, the /diagnostics arrays seen)."""
    rec = RecorderThread(overrides)
    diags = probe.diagnostics()
    player = probe.play(drive.raw_bag, wait_for_subscribers=1)
    assert player.done.wait(30)
    wait_for(lambda: any((node_status(a) or {}).get("frames") == str(frames) for a in diags), timeout,
             f"{frames} frames encoded")
    return rec.finish(), diags


def test_lossy_lr_codec_with_a_budget_is_recorded_and_reported(tmp_path: Path, shared_data: Path,
                                                               probe: Probe) -> None:
    drive = build_drive(tmp_path / "drive", n=4, hz=10.0)
    overrides = recorder_overrides(drive, tmp_path / "out", lr_codec="webp", lr_quality=90, target_kbps=300.0)
    report, diags = record_played(probe, overrides, drive, frames=4, timeout=30)
    bag = tmp_path / "out" / "rec"
    assert report.frames == 4
    lr = [m for t, _, m in read_messages(bag) if t == fmt.lr_topic(CAM)]
    assert [m.format for m in lr] == ["webp"] * 4  # CompressedImage a viewer shows as it is
    metas = [fmt.meta_from_msg(m) for t, _, m in read_messages(bag) if t == fmt.meta_topic(CAM)]
    assert all(m.lr_codec == "webp" for m in metas) and metas[0].lr_quality == 90
    cams = [c for a in diags if (c := camera_status(a)) and "kbps" in c]
    assert cams and cams[-1]["lr_codec"] == "webp" and float(cams[-1]["target_kbps"]) == 300.0
    assert float(cams[-1]["kbps"]) > 0.0 and "budget_used" in cams[-1]
    assert 20.0 < float(cams[-1]["lr_psnr"]) < 99.0  # what the codec left of the LR, as the record holds it
    assert all(20.0 < m.lr_psnr < 99.0 for m in metas)


def test_lr_predicted_from_the_reference_is_recorded_and_reported(tmp_path: Path, shared_data: Path,
                                                                   probe: Probe, x2_weights: Path) -> None:
    from refscale_model import load_weights
    from refscale_model.pipeline import ReconstructedFrame, Reconstructor

    drive = build_drive(tmp_path / "drive", n=4, hz=10.0)
    overrides = recorder_overrides(drive, tmp_path / "out", lr_codec="h265-ref", lr_quality=40,
                                   weights=str(x2_weights))
    report, diags = record_played(probe, overrides, drive, frames=4, timeout=60)
    bag = tmp_path / "out" / "rec"
    assert report.frames == 4
    lr = [m for t, _, m in read_messages(bag) if t == fmt.lr_topic(CAM)]
    metas = [fmt.meta_from_msg(m) for t, _, m in read_messages(bag) if t == fmt.meta_topic(CAM)]
    assert len(lr) == len(metas) == 4
    for m, meta in zip(lr, metas, strict=True):  # a P-frame after the hidden reference picture, or an IDR
        assert meta.lr_codec == "h265-ref" and meta.lr_quality == 40
        assert (m.format == "h265-ref") == bool(meta.lr_ref_crc) and m.format in ("h265-ref", "h265-ref-intra")
        assert not meta.lr_ref_crc or (meta.format == fmt.FORMAT_REFERENCE_PREDICTED and meta.reference_id)
    cams = [c for a in diags if (c := camera_status(a)) and "lr_predicted" in c]
    assert cams and cams[-1]["lr_codec"] == "h265-ref"
    assert int(cams[-1]["lr_predicted"]) == sum(bool(m.lr_ref_crc) for m in metas)
    with ReferenceCache.open(drive.cache, readonly=True) as cache:  # offboard: every frame rebuilds
        rebuilt = list(Reconstructor(load_weights(x2_weights), cache).run(bag))
    assert len(rebuilt) == 4 and all(isinstance(r, ReconstructedFrame) for r in rebuilt)


def test_unsupported_lr_codec_is_refused_before_recording(tmp_path: Path, shared_data: Path) -> None:
    from refscale_model.codecs import CodecError

    drive = build_drive(tmp_path / "drive", n=1)
    with pytest.raises(CodecError, match="valid choices"):
        run_recorder(None, recorder_overrides(drive, tmp_path / "out", lr_codec="jpeg2000"), duration_s=0.5)
    assert not (tmp_path / "out").exists()


def test_cameras_triggered_together_share_one_network_run(tmp_path: Path, shared_data: Path, probe: Probe,
                                                          x2_weights: Path) -> None:
    """Two cameras publishing at the same instants, the network on ONNX Runtime: frames queued together
    run through the network in one batch (`batch_cameras: on`; `auto` would batch only on a GPU), and
    every frame of both lands in the bag."""
    from refscale_model import load_weights
    from refscale_model.backends.onnx_export import export_onnx

    left = "/camera/left/image_raw"
    drive = build_drive(tmp_path / "drive", n=4, hz=20.0, cameras=(CAM, left))
    onnx = export_onnx(load_weights(x2_weights), tmp_path / "x2.onnx", model_id="x2").path
    overrides = recorder_overrides(drive, tmp_path / "out", weights=str(x2_weights), onnx_model=str(onnx),
                                   cameras=[f"{CAM}:Image:{CAM_ID}", f"{left}:Image:{CAM_ID}"],
                                   max_queue=16, shutdown_drain_s=60.0, batch_cameras="on")
    report, _ = record_played(probe, overrides, drive, frames=8, timeout=60)
    assert report.frames == 8 and not report.errors and report.dropped == 0
    assert report.batched_frames >= 2  # the encoder was still busy when both cameras' next frames came
    bag = tmp_path / "out" / "rec"
    for cam in (CAM, left):
        metas = [fmt.meta_from_msg(m) for t, _, m in read_messages(bag) if t == fmt.meta_topic(cam)]
        assert len(metas) == 4 and all(m.has_smap or m.no_reference_reason for m in metas)
