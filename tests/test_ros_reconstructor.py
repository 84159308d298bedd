"""The offboard reconstructor node on a real ROS 2 graph, on the bag the recorder node wrote.

Batch mode reads the bag and publishes HR `sensor_msgs/Image` under /refscale/hr (+ writes a
bag); live mode rebuilds the topics of a played RefScale bag. Both must give exactly what the
library's `Reconstructor` gives (the node is a shell), and the PSNR against the original frames.
"""

# ruff: noqa: F811 - the shared fixtures imported from test_ros_recorder are used as arguments

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="needs the ROS 2 wheels: pip install -e '.[ros]'")

from refscale_ros import common  # noqa: E402
from refscale_ros import reconstructor as reconstructor_mod  # noqa: E402
from test_reference_predicted import encode_predicted_bag  # noqa: E402
from test_ros_recorder import (  # noqa: E402, F401 - fixtures are used by name
    CAM,
    MIN_PSNR_DB,
    Probe,
    Recorded,
    probe,
    recorded,
    ros_domain,
    wait_for,
    x2_weights,
)

from refscale_model import load_weights  # noqa: E402
from refscale_model.bags import msgs, read_messages, topics_of  # noqa: E402
from refscale_model.bags import refscale_format as fmt  # noqa: E402
from refscale_model.metrics import psnr  # noqa: E402
from refscale_model.pipeline import ReconstructedFrame, Reconstructor  # noqa: E402
from refscale_model.refcache import ReferenceCache  # noqa: E402

RECONSTRUCT_YAML = common.default_params_file("reconstruct.yaml")
HR_TOPIC = "/refscale/hr" + CAM


@pytest.fixture(scope="module")
def library_frames(recorded: Recorded) -> dict[int, np.ndarray]:
    """stamp -> HR frame as the library rebuilds it (what the node must reproduce exactly)."""
    with ReferenceCache.open(recorded.drive.cache, readonly=True) as cache:
        items = list(Reconstructor(load_weights(recorded.weights), cache).run(recorded.bag))
    assert all(isinstance(i, ReconstructedFrame) for i in items)
    return {i.stamp_ns: i.rgb for i in items}


def _rgb(msg: Any) -> tuple[int, np.ndarray]:
    assert msg.encoding == "rgb8"
    rgb = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.width, 3)
    return msgs.stamp_ns(msg), rgb


def _check(frames: dict[int, np.ndarray], recorded: Recorded, library: dict[int, np.ndarray]) -> None:
    assert sorted(frames) == sorted(recorded.drive.frames)
    for stamp, rgb in frames.items():
        assert np.array_equal(rgb, library[stamp])  # the node adds nothing and loses nothing
        assert psnr(rgb, recorded.drive.frames[stamp]) > MIN_PSNR_DB


def test_batch_mode_publishes_and_writes_hr_frames(
    tmp_path: Path, recorded: Recorded, library_frames: dict[int, np.ndarray], probe: Probe
) -> None:
    from sensor_msgs.msg import Image

    got = probe.subscribe(Image, HR_TOPIC)
    overrides = {
        "bag_path": str(recorded.bag),
        "cache_dir": str(recorded.drive.cache),
        "weights": str(recorded.weights),
        "output_bag": str(tmp_path / "hr"),
        "wait_for_subscribers": 1,
    }
    report = reconstructor_mod.run_reconstructor(RECONSTRUCT_YAML, overrides)  # returns when the bag is done
    n = len(recorded.drive.frames)
    assert report.ok and report.stopped_by == "done" and report.rebuilt == {CAM: n}
    wait_for(lambda: len(got) >= n, 10, "HR frames on " + HR_TOPIC)
    _check(dict(_rgb(m) for m in got), recorded, library_frames)
    written = {msgs.stamp_ns(m): m for t, _, m in read_messages(tmp_path / "hr") if t == CAM}
    _check(dict(_rgb(m) for m in written.values()), recorded, library_frames)
    assert topics_of(tmp_path / "hr")["/gps/fix"] == msgs.NAV_SAT_FIX  # other topics carried over


def test_batch_mode_refuses_other_weights(recorded: Recorded) -> None:
    with pytest.raises(ValueError, match="weights"):
        reconstructor_mod.run_reconstructor(
            RECONSTRUCT_YAML, {"bag_path": str(recorded.bag), "weights": "x2", "allow_untrained": True}
        )


def _run_live(probe: Probe, bag: Path, cache_dir: Path, weights: str, n: int) -> tuple[Any, list[Any]]:
    """Run the live reconstructor node, play `bag` to it until `n` HR frames came out: (its report, the frames)."""
    from sensor_msgs.msg import Image

    got = probe.subscribe(Image, HR_TOPIC)
    stop = threading.Event()
    result: dict[str, Any] = {}
    overrides = {"cameras": [CAM], "cache_dir": str(cache_dir), "weights": weights}

    def run() -> None:
        result["report"] = reconstructor_mod.run_reconstructor(RECONSTRUCT_YAML, overrides, stop=stop)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        parts = [fmt.lr_topic(CAM), fmt.smap_topic(CAM), fmt.meta_topic(CAM)]
        player = probe.play(bag, rate=2.0, wait_for_subscribers=1, wait_topics=parts)
        assert player.done.wait(60)
        wait_for(lambda: len(got) >= n, 60, f"{n} HR frames from live topics")
    finally:
        stop.set()
        thread.join(timeout=60)
    return result["report"], got


def test_live_mode_rebuilds_played_refscale_topics(
    recorded: Recorded, library_frames: dict[int, np.ndarray], probe: Probe
) -> None:
    n = len(recorded.drive.frames)
    report, got = _run_live(probe, recorded.bag, recorded.drive.cache, str(recorded.weights), n)
    assert report.rebuilt == {CAM: n} and not report.failed
    _check(dict(_rgb(m) for m in got), recorded, library_frames)


def test_live_mode_rebuilds_lr_predicted_from_the_reference(tmp_path: Path, shared_data: Path, probe: Probe) -> None:
    """h265-ref frames over live topics: the node decodes each predicted LR once its reference is warped,
    exactly as the library does from the bag."""
    frames, model = encode_predicted_bag(tmp_path)
    bag, cache_dir = tmp_path / "bag", tmp_path / "cache"
    with ReferenceCache.open(cache_dir, readonly=True) as cache:
        library = {i.stamp_ns: i.rgb for i in Reconstructor(model, cache).run(bag)}
        encoded = list(Reconstructor(model, cache).frames(bag))
    assert any(f.meta.lr_ref_crc for f in encoded) and len(library) == len(frames)
    report, got = _run_live(probe, bag, cache_dir, "x2-lossy", len(frames))
    assert report.rebuilt == {CAM: len(frames)} and not report.failed
    for stamp, rgb in (_rgb(m) for m in got):
        assert np.array_equal(rgb, library[stamp])
