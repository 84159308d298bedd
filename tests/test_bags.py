"""bags: real MCAP files written, read back by us, `rosbags` and `mcap-ros2-support`; truncation, recovery."""

from __future__ import annotations

import importlib.util
import io
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from mcap.reader import make_reader
from mcap.records import Chunk, Message
from mcap.stream_reader import StreamReader, breakup_chunk
from mcap_ros2.decoder import DecoderFactory

from refscale_model.bags import (
    BagReader,
    BagWriter,
    bag_files,
    is_complete,
    msgs,
    read_messages,
    recover,
    summarize,
)
from refscale_model.io import rosimg

REPO = Path(__file__).resolve().parents[1]
T0 = 1_700_000_000_000_000_000


@pytest.fixture(scope="module")
def crop(webcam_pair: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    return np.ascontiguousarray(webcam_pair[0][:96, :128])


def _camera_info(stamp: int) -> dict:
    return {
        "header": msgs.header(stamp, "cam"),
        "height": 96,
        "width": 128,
        "distortion_model": "plumb_bob",
        "d": [0.1, -0.2, 0.0, 0.0, 0.0],
        "k": [100.0, 0, 64, 0, 100.0, 48, 0, 0, 1],
        "r": [1.0, 0, 0, 0, 1, 0, 0, 0, 1],
        "p": [100.0, 0, 64, 0, 0, 100.0, 48, 0, 0, 0, 1, 0],
        "binning_x": 0,
        "binning_y": 0,
        "roi": {"x_offset": 0, "y_offset": 0, "height": 0, "width": 0, "do_rectify": False},
    }


def _write_raw_bag(path: Path, crop: np.ndarray, n: int = 6, **kw) -> None:
    with BagWriter(path, custom_data={"purpose": "test"}, **kw) as bag:
        bag.add_metadata("drive", {"vehicle": "car7", "route": "test"})
        bag.add_topic("/cam/image_raw", msgs.IMAGE)
        for i in range(n):
            s = T0 + i * 100_000_000
            with bag.group():
                bag.write("/cam/image_raw", msgs.image_msg(crop, s, "cam", "bgr8"), s)
                bag.write(
                    "/cam/compressed", msgs.compressed_image_msg(crop, s, "cam"), s, type_name=msgs.COMPRESSED_IMAGE
                )
                bag.write("/cam/camera_info", _camera_info(s), s, type_name=msgs.CAMERA_INFO)
                bag.write(
                    "/gps/fix", msgs.navsatfix_msg(48.1 + i * 1e-5, 11.5, 520.0, s), s, type_name=msgs.NAV_SAT_FIX
                )
                bag.write("/odom", msgs.odometry_msg(s, (i * 1.0, 0.5, 0.0), 0.25), s, type_name=msgs.ODOMETRY)


def test_round_trip_all_types(tmp_path: Path, crop: np.ndarray) -> None:
    _write_raw_bag(tmp_path / "raw", crop)
    seen: dict[str, int] = {}
    for topic, t, msg in read_messages(tmp_path / "raw"):
        seen[topic] = seen.get(topic, 0) + 1
        assert msgs.stamp_ns(msg) == t
        if topic in ("/cam/image_raw", "/cam/compressed"):
            np.testing.assert_array_equal(rosimg.image_from_msg(msg), crop)
            assert msgs.frame_id(msg) == "cam"
        elif topic == "/cam/camera_info":
            assert list(msg.k) == [100.0, 0, 64, 0, 100.0, 48, 0, 0, 1] and msg.distortion_model == "plumb_bob"
        elif topic == "/odom":
            assert msgs.yaw_from_odometry(msg) == pytest.approx(0.25)
            assert msg.child_frame_id == "base_link"
        elif topic == "/gps/fix":
            assert msg.longitude == 11.5 and msg.position_covariance_type == 2
    assert seen == {t: 6 for t in ("/cam/image_raw", "/cam/compressed", "/cam/camera_info", "/gps/fix", "/odom")}
    # a single .mcap file reads the same as the directory
    assert sum(1 for _ in read_messages(bag_files(tmp_path / "raw")[0])) == 30


def test_rclpy_messages_can_be_written(tmp_path: Path, crop: np.ndarray) -> None:
    if importlib.util.find_spec("sensor_msgs") is None:
        pytest.skip("ROS 2 message wheels not installed")
    from sensor_msgs.msg import CameraInfo, Image

    img = Image(height=crop.shape[0], width=crop.shape[1], encoding="rgb8", step=crop.shape[1] * 3)
    img.data = crop.tobytes()
    img.header.frame_id = "cam"
    img.header.stamp.sec, img.header.stamp.nanosec = 12, 34
    info = CameraInfo(height=96, width=128)  # k/r/p are numpy arrays in rclpy
    info.k[0] = 5.0
    with BagWriter(tmp_path / "b") as bag:
        bag.write("/img", img, 1, type_name=msgs.IMAGE)
        bag.write("/info", info, 2, type_name=msgs.CAMERA_INFO)
    out = {t: m for t, _, m in read_messages(tmp_path / "b")}
    np.testing.assert_array_equal(rosimg.image_from_msg(out["/img"]), crop)
    assert msgs.stamp_ns(out["/img"]) == 12 * 10**9 + 34 and out["/info"].k[0] == 5.0


def test_profile_schemas_qos_metadata_and_mcap_ros2_reader(tmp_path: Path, crop: np.ndarray) -> None:
    _write_raw_bag(tmp_path / "raw", crop, n=8, split_max_bytes=60_000, chunk_size=20_000)
    files = bag_files(tmp_path / "raw")
    assert len(files) > 1, "size split did not happen"
    total = 0
    for f in files:
        assert is_complete(f)
        with open(f, "rb") as fh:
            reader = make_reader(fh, decoder_factories=[DecoderFactory()])
            assert reader.get_header().profile == "ros2"
            summary = reader.get_summary()
            assert {c.compression for c in summary.chunk_indexes} == {"zstd"}
            assert {"drive"} <= {m.name for m in reader.iter_metadata()}  # repeated in every split
            for schema, channel, _msg, decoded in reader.iter_decoded_messages():
                assert schema.encoding == "ros2msg" and channel.message_encoding == "cdr"
                assert "reliability: 1" in channel.metadata["offered_qos_profiles"]
                assert decoded.header.frame_id in ("cam", "gps", "odom")
                total += 1
    assert total == 40
    # one frame's messages never straddle files (written inside group())
    per_file = [{t for t, _, _ in read_messages(f)} for f in files]
    assert all(len(s) == 5 for s in per_file)


def test_duration_split(tmp_path: Path, crop: np.ndarray) -> None:
    _write_raw_bag(tmp_path / "raw", crop, n=6, split_max_duration_s=0.2)
    assert len(bag_files(tmp_path / "raw")) == 3


def test_rosbags_reads_with_bag_schemas(tmp_path: Path, crop: np.ndarray) -> None:
    pytest.importorskip("rosbags")
    from rosbags.highlevel import AnyReader
    from rosbags.rosbag2 import Reader

    _write_raw_bag(tmp_path / "raw", crop, split_max_bytes=60_000)
    with Reader(tmp_path / "raw") as r:
        assert r.message_count == 30
        counts = {c.topic: c.msgcount for c in r.connections}
        assert counts["/cam/image_raw"] == 6
    with AnyReader([tmp_path / "raw"]) as r:  # decodes with the definitions stored in the bag
        n = 0
        for conn, t, raw in r.messages():
            m = r.deserialize(raw, conn.msgtype)
            n += 1
            if conn.topic == "/cam/image_raw":
                np.testing.assert_array_equal(rosimg.image_from_msg(m), crop)
                assert t == msgs.stamp_ns(m)
        assert n == 30


def _messages_in_first_chunks(data: bytes, k: int) -> int:
    """Messages inside the first k chunks, counted independently of BagReader."""
    n = 0
    chunks = [r for r in StreamReader(io.BytesIO(data), emit_chunks=True).records if isinstance(r, Chunk)]
    for chunk in chunks[:k]:
        n += sum(1 for r in breakup_chunk(chunk) if isinstance(r, Message))
    return n


def test_truncated_file_yields_complete_chunks_and_recovers(tmp_path: Path, crop: np.ndarray) -> None:
    _write_raw_bag(tmp_path / "raw", crop, n=10, chunk_size=15_000)
    f = bag_files(tmp_path / "raw")[0]
    full = [(t, lt) for t, lt, _ in read_messages(f)]
    with open(f, "rb") as fh:
        chunks = sorted(make_reader(fh).get_summary().chunk_indexes, key=lambda c: c.chunk_start_offset)
    assert len(chunks) >= 4
    data = f.read_bytes()
    k = len(chunks) // 2
    cut = chunks[k].chunk_start_offset + chunks[k].chunk_length // 2  # mid-way through chunk k
    expected = _messages_in_first_chunks(data, k)
    f.write_bytes(data[:cut])
    assert not is_complete(f)
    reader = BagReader(tmp_path / "raw")
    got = [(m.topic, m.log_time_ns) for m in reader.raw_messages()]
    assert got == full[: len(got)] and len(got) == expected > 0
    assert reader.problems and "ends early" in reader.problems[0]

    report = recover(tmp_path / "raw")
    assert report.rewritten == [f] and report.messages_kept == expected
    assert is_complete(f) and (f.parent / (f.name + ".truncated")).exists()
    with open(f, "rb") as fh:
        r = make_reader(fh, decoder_factories=[DecoderFactory()])
        assert sum(1 for _ in r.iter_decoded_messages()) == expected
        assert {m.name for m in r.iter_metadata()} == {"drive"}
    from rosbags.rosbag2 import Reader

    with Reader(tmp_path / "raw") as r:
        assert r.message_count == expected and sum(1 for _ in r.messages()) == expected
    assert recover(tmp_path / "raw").rewritten == []  # idempotent


def test_damaged_chunk_is_skipped_not_fatal(tmp_path: Path, crop: np.ndarray) -> None:
    _write_raw_bag(tmp_path / "raw", crop, n=10, chunk_size=15_000)
    f = bag_files(tmp_path / "raw")[0]
    with open(f, "rb") as fh:
        chunks = sorted(make_reader(fh).get_summary().chunk_indexes, key=lambda c: c.chunk_start_offset)
    data = bytearray(f.read_bytes())
    c = chunks[1]
    mid = c.chunk_start_offset + c.chunk_length - 200  # inside the compressed payload
    data[mid : mid + 16] = bytes(16)
    f.write_bytes(bytes(data))
    reader = BagReader(f)
    n = sum(1 for _ in reader.raw_messages())
    assert 0 < n < 50 and any("damaged" in p for p in reader.problems)


_KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from refscale_model.bags import BagWriter, msgs
    rgb = np.random.default_rng(1).integers(0, 255, (64, 80, 3)).astype(np.uint8)
    bag = BagWriter(sys.argv[1], chunk_size=1 << 20)
    for i in range(10_000):
        s = 1_000 + i
        bag.write("/cam/image_raw", msgs.image_msg(rgb, s, "cam"), s, type_name=msgs.IMAGE)
        if i % 3 == 2:
            bag.flush()
            print(i + 1, flush=True)
        time.sleep(0.002)
    """
)


def test_sigkill_mid_recording_keeps_flushed_chunks(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILL_SCRIPT, str(tmp_path / "rec")], stdout=subprocess.PIPE, text=True, env=env
    )
    flushed = 0
    while flushed < 12:
        line = proc.stdout.readline()
        assert line, "writer subprocess died early"
        flushed = int(line)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    f = bag_files(tmp_path / "rec")[0]
    assert not is_complete(f)
    reader = BagReader(tmp_path / "rec")
    stamps = [msgs.stamp_ns(m) for _, _, m in reader.messages()]
    assert len(stamps) >= flushed and stamps == list(range(1000, 1000 + len(stamps)))
    recover(tmp_path / "rec", keep_backup=False)
    assert is_complete(f) and summarize(tmp_path / "rec").topics["/cam/image_raw"].count == len(stamps)
    from rosbags.rosbag2 import Reader

    with Reader(tmp_path / "rec") as r:
        assert r.message_count == len(stamps)


_FSIZE_SCRIPT = textwrap.dedent(
    """
    import resource, signal, sys
    import numpy as np
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    from refscale_model.bags import BagWriter, BagWriteError, msgs
    rgb = np.random.default_rng(2).integers(0, 255, (64, 80, 3)).astype(np.uint8)
    bag = BagWriter(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
    ok = 0
    try:
        for i in range(1000):
            bag.write("/cam/image_raw", msgs.image_msg(rgb, 1000 + i, "cam"), 1000 + i, type_name=msgs.IMAGE)
            bag.flush()
            ok += 1
    except BagWriteError as exc:
        print("ERR", exc)
        try:
            bag.write("/cam/image_raw", msgs.image_msg(rgb, 1, "cam"), 1)
        except BagWriteError as again:
            print("AGAIN", again)
    bag.close()  # the error was already raised once: close releases the file and does not raise again
    print("OK", ok)
    """
)


def test_disk_full_clean_error_earlier_frames_intact(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", _FSIZE_SCRIPT, str(tmp_path / "full")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(" ", 1) for line in out.stdout.strip().splitlines())
    assert "file size limit" in lines["ERR"] and "stopped after an earlier error" in lines["AGAIN"]
    ok = int(lines["OK"])
    assert ok > 5
    stamps = [msgs.stamp_ns(m) for _, _, m in read_messages(tmp_path / "full")]
    assert stamps == list(range(1000, 1000 + ok))
    recover(tmp_path / "full")
    assert is_complete(bag_files(tmp_path / "full")[0])


def test_writer_refuses_existing_dir_and_unknown_topic(tmp_path: Path) -> None:
    with BagWriter(tmp_path / "b") as bag:
        with pytest.raises(KeyError):
            bag.write("/x", {"data": "a"}, 1)
        with pytest.raises(KeyError, match="no built-in definition"):
            bag.add_topic("/y", "my_msgs/msg/Custom")
        bag.add_topic("/z", "my_msgs/msg/Custom", msgdef="string data\n")  # own definitions work
        bag.write("/z", {"data": "hi"}, 5)
    assert [m.data for _, _, m in read_messages(tmp_path / "b")] == ["hi"]
    with pytest.raises(FileExistsError):
        BagWriter(tmp_path / "b")


def test_unreadable_split_file_fails_alone_and_is_left_untouched(
    tmp_path: Path, crop: np.ndarray, capsys: pytest.CaptureFixture[str]
) -> None:
    from refscale_model.cli import main

    _write_raw_bag(tmp_path / "raw", crop, n=4)
    junk = tmp_path / "raw" / "raw_1.mcap"
    junk.write_bytes(os.urandom(5000))
    reader = BagReader(tmp_path / "raw")
    assert sum(1 for _ in reader.raw_messages()) == 20
    assert any(p.startswith("raw_1.mcap:") for p in reader.problems)
    assert main(["bag", "info", str(tmp_path / "raw")]) == 1
    before = junk.read_bytes()
    assert main(["bag", "recover", "--no-backup", str(tmp_path / "raw")]) == 1
    err = capsys.readouterr().err
    assert "raw_1.mcap: not recovered" in err and "Traceback" not in err
    assert junk.read_bytes() == before and is_complete(bag_files(tmp_path / "raw")[0])


def test_resync_after_a_damaged_message_index(tmp_path: Path, crop: np.ndarray) -> None:
    """A wrong length in a record without a CRC (a message index) is found at the next record; nothing is lost."""
    _write_raw_bag(tmp_path / "raw", crop, n=10, chunk_size=15_000)
    f = bag_files(tmp_path / "raw")[0]
    data = bytearray(f.read_bytes())
    pos, found = 8, None
    while pos < len(data) - 8 and found is None:
        op, n = data[pos], int.from_bytes(data[pos + 1 : pos + 9], "little")
        found = pos if op == 0x07 else None
        pos += 9 + n
    assert found is not None
    data[found + 1] ^= 0x05  # the index's length is now a few bytes off
    f.write_bytes(bytes(data))
    reader = BagReader(f)
    assert sum(1 for _ in reader.raw_messages()) == 50 and reader.problems
    recover(tmp_path / "raw")
    reader = BagReader(f)
    assert sum(1 for _ in reader.raw_messages()) == 50 and not reader.problems
