"""Sample-drive generator: deterministic rendering, detail, revisit similarity, and the raw bags."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from refscale_model.sample_drive import (
    DRIVE_NAMES,
    drive_plan,
    generate_sample_drive,
    make_world,
    render_frame,
)
from refscale_model.sample_drive.camera import haversine_m
from refscale_model.sample_drive.writer import TOPIC_FIX, TOPIC_IMAGE, TOPIC_INFO, TOPIC_ODOM

SMALL = (320, 180)
TOPICS = {TOPIC_IMAGE, TOPIC_INFO, TOPIC_FIX, TOPIC_ODOM}


@pytest.fixture(scope="module")
def plan() -> dict:
    return drive_plan(60)


@pytest.fixture(scope="module")
def world(plan: dict):
    return make_world(0, SMALL, plan)


@pytest.fixture(scope="module")
def small_drive(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("sample") / "drive"
    t0 = time.perf_counter()
    drive = generate_sample_drive(out, frames=10, size=SMALL, seed=3)
    return drive, time.perf_counter() - t0


def _gray_ncc(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised cross-correlation of blurred luminance: structure, not lighting."""

    def prep(img: np.ndarray) -> np.ndarray:
        g = cv2.GaussianBlur(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32), (0, 0), 2.0)
        g -= g.mean()
        return g / (np.linalg.norm(g) + 1e-9)

    return float((prep(a) * prep(b)).sum())


def test_render_is_deterministic(plan: dict, world) -> None:
    settings, poses = plan["drive_b"]
    for pose in poses[::-9]:  # another history of lazily built texture levels must not matter
        render_frame(world, pose, settings.conditions)
    first = render_frame(world, poses[7], settings.conditions)
    again = render_frame(make_world(0, SMALL, plan), poses[7], settings.conditions)
    assert first.shape == (SMALL[1], SMALL[0], 3) and first.dtype == np.uint8
    assert first.tobytes() == again.tobytes()
    other_seed = render_frame(make_world(1, SMALL, plan), poses[7], settings.conditions)
    assert np.abs(first.astype(int) - other_seed.astype(int)).mean() > 5


def test_frames_have_high_frequency_detail(plan: dict, world) -> None:
    for name in DRIVE_NAMES:
        settings, poses = plan[name]
        img = render_frame(world, poses[30], settings.conditions)
        g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
        sobel = np.hypot(cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1))
        assert sobel.mean() > 20.0, (name, sobel.mean())
        assert img.std() > 25  # not a flat image
        assert 40 < img.mean() < 220


def test_revisit_resembles_reference_at_same_place(plan: dict, world) -> None:
    (sa, pa), (sb, pb) = plan["drive_a"], plan["drive_b"]
    ax = np.array([p.x for p in pa])
    for ib in (10, 40):
        b = render_frame(world, pb[ib], sb.conditions)
        near = int(np.argmin(np.abs(ax - pb[ib].x)))
        far = int(np.argmax(np.abs(ax - pb[ib].x)))
        assert abs(ax[far] - pb[ib].x) > 20
        s_near = _gray_ncc(b, render_frame(world, pa[near], sa.conditions))
        s_far = _gray_ncc(b, render_frame(world, pa[far], sa.conditions))
        assert s_near > s_far + 0.05, (ib, s_near, s_far)
        assert s_near > 0.6


def test_drives_differ_in_light_cars_and_pose(plan: dict) -> None:
    (sa, pa), (sb, pb) = plan["drive_a"], plan["drive_b"]
    assert sa.conditions != sb.conditions and sa.conditions.variant != sb.conditions.variant
    assert abs(pa[0].y - pb[0].y) > 0.1
    assert pb[-1].x < pa[-1].x  # B is slower: every B frame has a nearby A frame


def _read(bag: Path) -> dict[str, list]:
    from refscale_model.bags import read_messages

    out: dict[str, list] = {}
    for topic, log_time, msg in read_messages(bag):
        out.setdefault(topic, []).append((log_time, msg))
    return out


def test_bags_topics_stamps_and_positions(small_drive) -> None:
    from refscale_model.bags import msgs
    from refscale_model.io.rosimg import image_from_msg

    drive, _ = small_drive
    manifest = json.loads((drive.root / "manifest.json").read_text())
    assert manifest["frames"] == 10 and manifest["size"] == list(SMALL) and manifest["seed"] == 3
    for name in DRIVE_NAMES:
        profile = manifest["drives"][name]["profile"]
        by_topic = _read(drive.root / name)
        assert set(by_topic) == TOPICS
        assert all(len(v) == 10 for v in by_topic.values())
        stamps = [msgs.stamp_ns(m) for _, m in by_topic[TOPIC_IMAGE]]
        assert all(b - a == 100_000_000 for a, b in zip(stamps, stamps[1:], strict=False))
        assert [t for t, _ in by_topic[TOPIC_IMAGE]] == stamps
        first = by_topic[TOPIC_IMAGE][0][1]
        assert msgs.frame_id(first) == "camera_front_optical" and first.encoding == "rgb8"
        assert image_from_msg(first).shape == (SMALL[1], SMALL[0], 3)
        info = by_topic[TOPIC_INFO][0][1]
        assert (info.width, info.height) == SMALL and info.k[0] > 0
        fixes = [m for _, m in by_topic[TOPIC_FIX]]
        assert all(f.status.status == 0 and msgs.frame_id(f) == "gps" for f in fixes)
        assert all(abs(f.latitude - 59.334) < 0.01 and abs(f.longitude - 18.058) < 0.02 for f in fixes)
        travelled = haversine_m(fixes[0].latitude, fixes[0].longitude, fixes[-1].latitude, fixes[-1].longitude)
        expected = profile["speed_mps"] * 0.9
        assert abs(travelled - expected) < 0.25 * expected + 1.0, (name, travelled, expected)
        odom = [m for _, m in by_topic[TOPIC_ODOM]]
        p0, p1 = odom[0].pose.pose.position, odom[-1].pose.pose.position
        heading = math.atan2(p1.y - p0.y, p1.x - p0.x)
        yaw = msgs.yaw_from_odometry(odom[5])
        assert abs(math.remainder(heading - yaw, 2 * math.pi)) < math.radians(5)
        assert abs(math.hypot(p1.x - p0.x, p1.y - p0.y) - expected) < 0.15 * expected


def test_small_generation_is_fast_and_reused(small_drive) -> None:
    drive, seconds = small_drive
    assert drive.regenerated and seconds < 15.0
    mcap = sorted((drive.root / "drive_a").glob("*.mcap"))
    assert [p.name for p in mcap] == ["drive_a_0.mcap"]
    before = mcap[0].stat().st_mtime_ns
    again = generate_sample_drive(drive.root, frames=10, size=SMALL, seed=3)
    assert not again.regenerated and mcap[0].stat().st_mtime_ns == before
    assert again.manifest == drive.manifest


def test_same_seed_gives_identical_bytes(small_drive, tmp_path: Path) -> None:
    drive, _ = small_drive
    other = generate_sample_drive(tmp_path / "again", frames=10, size=SMALL, seed=3, force=True)
    for rel in ("manifest.json", "drive_a/drive_a_0.mcap", "drive_a/metadata.yaml",
                "drive_b/drive_b_0.mcap", "drive_b/metadata.yaml"):
        assert (drive.root / rel).read_bytes() == (other.root / rel).read_bytes(), rel


def test_cli_sample_drive(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import argparse

    from refscale_model.cli import sample_drive as cli

    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    out = tmp_path / "cli"
    argv = ["sample-drive", "--out", str(out), "--frames", "3", "--width", "96", "--height", "54", "--no-progress"]
    args = parser.parse_args(argv)
    assert args.func(args) == 0 and (out / "drive_b" / "metadata.yaml").is_file()
    assert args.func(parser.parse_args(argv)) == 0
    assert "up to date" in capsys.readouterr().out
    assert args.func(parser.parse_args([*argv[:4], "0", *argv[5:]])) == 2
