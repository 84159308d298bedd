"""The issue's reliability checks through the real CLI and real subprocesses (SIGKILL, file-size limit)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from test_pipeline import CAM, T0, World, build_world

from refscale_model import load_weights
from refscale_model.bags import bag_files, is_complete, msgs, read_messages
from refscale_model.cli import main
from refscale_model.metrics import psnr
from refscale_model.pipeline import PoseTracker, iter_camera_frames, to_uint8
from refscale_model.refcache import ReferenceCache
from refscale_model.registration import align_reference

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> World:
    return build_world(tmp_path_factory.mktemp("cliworld"))


def _in_memory_psnr(world: World) -> list[float]:
    """The same frames through the model in memory: decode, pose, reference, register, down, up."""
    model = load_weights(world.weights)
    tracker = PoseTracker()
    out = []
    with ReferenceCache.open(world.cache, readonly=True) as cache:
        fixes = {msgs.stamp_ns(m): m for t, _, m in read_messages(world.raw_bag, ["/gps/fix"])}
        for _topic, stamp, _log, rgb in iter_camera_frames(world.raw_bag, [CAM]):
            tracker.update(msgs.NAV_SAT_FIX, fixes[stamp], stamp)
            pose = tracker.pose(stamp)
            ref = cache.nearest(CAM, pose.lat, pose.lon, pose.heading_deg)
            warped, _reg = align_reference(rgb, ref.load_rgb())
            hr = torch.from_numpy(rgb).permute(2, 0, 1)[None]
            rt = torch.from_numpy(warped).permute(2, 0, 1)[None]
            enc = model.downscale(hr, rt)
            out.append(psnr(to_uint8(model.upscale(enc.lr, enc.smap, rt, enc.size)), rgb))
    return out


def test_round_trip_cli_matches_in_memory(tmp_path: Path, world: World, capsys: pytest.CaptureFixture[str]) -> None:
    enc, rec = tmp_path / "enc", tmp_path / "rec"
    args = [
        "--cache",
        str(world.cache),
        "--weights",
        str(world.weights),
        "--weights",
        str(world.weights),
        "--no-progress",
    ]
    assert (
        main(
            [
                "encode-bag",
                str(world.raw_bag),
                "--camera",
                CAM,
                "--weights",
                str(world.weights),
                "--out",
                str(enc),
                *args,
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "frames: 4" in text and "frames without reference: 0" in text and "ratio" in text
    assert main(["reconstruct", str(enc), "--out", str(rec), "--verify-against", str(world.raw_bag), *args]) == 0
    text = capsys.readouterr().out
    bag_psnr = [float(x) for x in re.findall(r"PSNR ([0-9.]+) dB  SSIM", text)]
    assert len(bag_psnr) == 4 and f"{CAM}: 4 frames rebuilt" in text
    assert np.allclose(bag_psnr, _in_memory_psnr(world), atol=0.1), (bag_psnr, text)

    got = [(t, lt, m) for t, lt, m in read_messages(rec)]
    frames = [(lt, m) for t, lt, m in got if t == CAM]
    assert [msgs.stamp_ns(m) for _, m in frames] == [T0 + i * 100_000_000 for i in range(4)]
    assert all(lt == msgs.stamp_ns(m) and m.encoding == "rgb8" and m.header.frame_id == "cam_front" for lt, m in frames)
    counts = {t: sum(1 for x in got if x[0] == t) for t in {x[0] for x in got}}
    assert counts == {CAM: 4, "/gps/fix": 4, "/odom": 4, "/cam/front/camera_info": 4}

    assert main(["reconstruct", str(enc), "--out", str(tmp_path / "png"), "--format", "png", *args]) == 0
    assert len(list((tmp_path / "png").rglob("*.png"))) == 4
    assert main(["bag", "info", str(enc)]) == 0
    assert "weights_sha256" in capsys.readouterr().out


_KILL = textwrap.dedent(
    """
    import sys
    from refscale_model import load_weights
    from refscale_model.bags import BagWriter, msgs
    from refscale_model.pipeline import FrameEncoder, ModelInfo, Pose, iter_camera_frames
    from refscale_model.backends.torch_backend import TorchDownscaler
    from refscale_model.refcache import ReferenceCache
    weights, cache_dir, raw, out, cam, limit = sys.argv[1:7]
    model = load_weights(weights)
    frames = [rgb for _t, _s, _l, rgb in iter_camera_frames(raw, [cam])]
    bag = BagWriter(out)
    if int(limit):
        import resource, signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (int(limit), int(limit)))
    enc = FrameEncoder(bag, TorchDownscaler(model), ModelInfo.of(model, "tiny"),
                       cache=ReferenceCache.open(cache_dir, readonly=True), flush_interval_s=0.0)
    ok = 0
    try:
        for i in range(200):
            s = 1_000_000_000 + i * 10_000_000
            enc.encode(cam, msgs.image_msg(frames[i % 2], s, "cam"), s, Pose(45.92, 6.87, 0.0))
            ok += 1
            print("OK", ok, flush=True)
    except OSError as exc:
        print("ERR", type(exc).__name__, exc, flush=True)
        print("STATS", enc.stats.frames, dict(enc.stats.errors), flush=True)
    """
)


def _start(world: World, out: Path, limit: int = 0) -> subprocess.Popen[str]:
    argv = [sys.executable, "-c", _KILL, str(world.weights), str(world.cache), str(world.raw_bag), str(out), CAM]
    return subprocess.Popen([*argv, str(limit)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


def test_sigkill_mid_recording_then_reconstruct_and_recover(
    tmp_path: Path, world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    proc = _start(world, tmp_path / "rec")
    done = 0
    while done < 4:
        line = proc.stdout.readline()
        assert line.startswith("OK"), f"encoder subprocess failed: {line!r} {proc.stderr.read() if not line else ''}"
        done = int(line.split()[1])
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    files = bag_files(tmp_path / "rec")
    assert not is_complete(files[-1])

    args = [
        "--cache",
        str(world.cache),
        "--weights",
        str(world.weights),
        "--weights",
        str(world.weights),
        "--no-progress",
    ]
    rc = main(["reconstruct", str(tmp_path / "rec"), "--out", str(tmp_path / "out1"), *args])
    text = capsys.readouterr().out
    rebuilt = int(re.search(rf"{re.escape(CAM)}: (\d+) frames rebuilt", text).group(1))
    assert rebuilt >= done and "file ends early" in text  # every frame whose chunk was complete
    assert rc in (0, 1)

    assert main(["bag", "recover", str(tmp_path / "rec")]) == 0
    assert all(is_complete(f) for f in bag_files(tmp_path / "rec"))
    from rosbags.highlevel import AnyReader

    with AnyReader([tmp_path / "rec"]) as r:
        assert sum(1 for c, _, _ in r.messages() if c.topic.endswith("/refscale/meta")) == rebuilt
    assert main(["reconstruct", str(tmp_path / "rec"), "--out", str(tmp_path / "out2"), *args]) == 0
    assert f"{CAM}: {rebuilt} frames rebuilt" in capsys.readouterr().out
    a = [m for t, _, m in read_messages(tmp_path / "out1") if t == CAM]
    b = [m for t, _, m in read_messages(tmp_path / "out2") if t == CAM]
    assert len(a) == len(b) == rebuilt and bytes(a[-1].data) == bytes(b[-1].data)


def test_disk_full_is_a_clean_error_and_earlier_frames_survive(
    tmp_path: Path, world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    proc = _start(world, tmp_path / "full", limit=120_000)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    lines = out.strip().splitlines()
    ok = int([x for x in lines if x.startswith("OK")][-1].split()[1])
    assert any(x.startswith("ERR BagWriteError") and "file size limit" in x for x in lines), out
    assert ok >= 2
    rc = main(
        [
            "reconstruct",
            str(tmp_path / "full"),
            "--out",
            str(tmp_path / "o"),
            "--cache",
            str(world.cache),
            "--weights",
            str(world.weights),
            "--no-progress",
        ]
    )
    text = capsys.readouterr().out
    assert f"{CAM}: {ok} frames rebuilt" in text, text
    assert rc in (0, 1)
