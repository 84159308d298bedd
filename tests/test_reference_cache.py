"""Reference cache on a real SQLite file with real images and real (generated) ROS 2 bags."""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import REPO_ROOT, read_rgb

from refscale_model.cli import cache as cache_cli
from refscale_model.refcache import (
    CacheError,
    ReferenceCache,
    ReferenceMismatchError,
    ReferenceMissingError,
    add_images,
    build_from_bag,
    haversine_m,
    navsatfix_position,
    pseudo_latlon,
)

LAT0, LON0 = 67.28, 14.40  # Nordland line, near Bodø
M_PER_DEG = math.pi * 6_371_008.8 / 180.0
TILE_W, TILE_H = 96, 64


@pytest.fixture(scope="module")
def strip(shared_data: Path) -> np.ndarray:
    """A real 640×360 train-cab frame; tiles of it stand in for the frames of a drive."""
    return read_rgb(
        shared_data
        / "rail_nordland_640"
        / "summer"
        / sorted(p.name for p in (shared_data / "rail_nordland_640" / "summer").iterdir())[0]
    )


def tile(strip: np.ndarray, i: int) -> np.ndarray:
    """Frame i of the fake drive: a small crop sliding over the real image."""
    x = (i * 5) % (strip.shape[1] - TILE_W)
    y = (i * 3) % (strip.shape[0] - TILE_H)
    return np.ascontiguousarray(strip[y : y + TILE_H, x : x + TILE_W])


def east_of(lat: float, lon: float, metres: float) -> tuple[float, float]:
    return lat, lon + metres / (M_PER_DEG * math.cos(math.radians(lat)))


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="refscale")
    cache_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return int(args.func(args))


# -- raw bags ------------------------------------------------------------------------------------

FRAMES = 100  # 10 s at 10 Hz
SPEED = 10.0  # m/s -> 1 m per frame
T0 = 1_700_000_000_000_000_000


def write_gps_bag(path: Path, strip: np.ndarray) -> Path:
    """Drive due east at 10 m/s: rgb8 Image at 10 Hz, NavSatFix at 5 Hz (some without a fix)."""
    from refscale_model.bags import BagWriter, msgs

    with BagWriter(path) as bag:
        bag.add_topic("/cam/front/image_raw", msgs.IMAGE)
        bag.add_topic("/gps/fix", msgs.NAV_SAT_FIX)
        for i in range(FRAMES + 1):
            t = T0 + i * 100_000_000
            if i % 2 == 0:
                lat, lon = east_of(LAT0, LON0, SPEED * i / 10)
                fix = msgs.navsatfix_msg(lat, lon, 30.0, t)
                if i % 10 == 4:  # receiver lost the fix: garbage position that must be ignored
                    fix = msgs.navsatfix_msg(0.0, 0.0, 0.0, t)
                    fix["status"]["status"] = -1
                bag.write("/gps/fix", fix, t)
            if i < FRAMES:
                bag.write("/cam/front/image_raw", msgs.image_msg(tile(strip, i), t + 1_000, "cam_front", "bgr8"), t)
    return path


def write_odom_bag(path: Path, strip: np.ndarray) -> Path:
    """Drive due north in the odometry frame: JPEG CompressedImage at 10 Hz, Odometry at 20 Hz."""
    from refscale_model.bags import BagWriter, msgs

    with BagWriter(path) as bag:
        bag.add_topic("/cam/left/compressed", msgs.COMPRESSED_IMAGE)
        bag.add_topic("/odom", msgs.ODOMETRY)
        for i in range(2 * FRAMES + 1):
            t = T0 + i * 50_000_000
            bag.write("/odom", msgs.odometry_msg(t, (0.0, SPEED * i / 20, 0.0), math.pi / 2, SPEED), t)
            if i % 2 == 0 and i < 2 * FRAMES:
                img = msgs.compressed_image_msg(tile(strip, i // 2), t, "cam_left", "jpeg")
                bag.write("/cam/left/compressed", img, t)
    return path


@pytest.fixture(scope="module")
def gps_bag(tmp_path_factory: pytest.TempPathFactory, strip: np.ndarray) -> Path:
    return write_gps_bag(tmp_path_factory.mktemp("bags") / "drive_gps", strip)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, gps_bag: Path) -> Path:
    """Cache built once by the CLI from the .mcap file of the GPS bag (tests below copy or read it)."""
    out = tmp_path_factory.mktemp("cache") / "refs"
    mcap_file = next(gps_bag.glob("*.mcap"))
    rc = cli(
        "cache",
        "build",
        "--bag",
        str(mcap_file),
        "--camera",
        "/cam/front/image_raw",
        "--gps",
        "/gps/fix",
        "--every",
        "10",
        "--out",
        str(out),
        "--route",
        "nordland",
        "--drive",
        "d1",
        "--no-progress",
    )
    assert rc == 0
    return out


# -- add / get / load ----------------------------------------------------------------------------


def test_add_get_load_roundtrip(tmp_path: Path, strip: np.ndarray) -> None:
    img = tile(strip, 7)
    with ReferenceCache.open(tmp_path / "c", create=True) as cache:
        ref = cache.add(img, "front", LAT0, LON0, 90.0, 123, "r1", "d1")
        assert len(cache) == 1
        again = cache.add(img, "front", LAT0, LON0, 90.0, 123, "r1", "d1")  # same drive/camera/stamp
        assert again == ref and len(cache) == 1
        assert ref.path == tmp_path / "c" / "images" / ref.sha256[:2] / f"{ref.sha256}.png"
        assert hashlib.sha256(ref.path.read_bytes()).hexdigest() == ref.sha256
        got = cache.get(ref.id, ref.sha256)
        assert got == ref
        np.testing.assert_array_equal(got.load_rgb(), img)  # lossless
        assert (ref.width, ref.height, ref.camera, ref.route, ref.drive) == (TILE_W, TILE_H, "front", "r1", "d1")
    with ReferenceCache.open(tmp_path / "c", readonly=True) as ro:  # what the offboard side does
        np.testing.assert_array_equal(ro.get(ref.id, ref.sha256).load_rgb(), img)
        with pytest.raises(CacheError):
            ro.add(img, "front", LAT0, LON0, 0.0, 1, "r", "d")


def test_get_refuses_unknown_id_and_wrong_hash(tmp_path: Path, strip: np.ndarray) -> None:
    with ReferenceCache.open(tmp_path, create=True) as cache:
        a = cache.add(tile(strip, 1), "front", LAT0, LON0, 0.0, 1, "r", "d")
        b = cache.add(tile(strip, 2), "front", LAT0, LON0, 0.0, 2, "r", "d")
        with pytest.raises(ReferenceMissingError):
            cache.get(b.id + 100, b.sha256)
        with pytest.raises(ReferenceMismatchError, match="expects sha256"):
            cache.get(a.id, b.sha256)  # a frame naming id a but carrying b's hash
        with pytest.raises(CacheError):
            cache.get(a.id, "0" * 64)
        assert [r.id for r in cache.by_sha256(b.sha256)] == [b.id]


def test_open_missing_cache_and_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ReferenceMissingError):
        ReferenceCache.open(tmp_path / "nope")
    with ReferenceCache.open(tmp_path / "c", create=True) as cache:
        with pytest.raises(ValueError):
            cache.add(np.zeros((8, 8), np.uint8), "front", LAT0, LON0, 0.0, 1, "r", "d")
        with pytest.raises(ValueError):
            cache.add(np.zeros((8, 8, 3), np.uint8), "front", math.nan, LON0, 0.0, 1, "r", "d")
    con = sqlite3.connect(tmp_path / "c" / "index.sqlite")
    con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    with pytest.raises(CacheError, match="schema version"):
        ReferenceCache.open(tmp_path / "c")


# -- lookup --------------------------------------------------------------------------------------


def test_nearest_radius_heading_camera(tmp_path: Path, strip: np.ndarray) -> None:
    with ReferenceCache.open(tmp_path, create=True) as cache:
        refs = {}
        for k, metres in enumerate([0.0, 10.0, 20.0, 30.0]):
            lat, lon = east_of(LAT0, LON0, metres)
            refs[metres] = cache.add(tile(strip, k), "front", lat, lon, 90.0, k, "r", "east")
        lat, lon = east_of(LAT0, LON0, 20.0)
        back = cache.add(tile(strip, 9), "front", lat, lon, 270.0, 9, "r", "west")  # opposite lane
        unknown = cache.add(tile(strip, 10), "front", *east_of(LAT0, LON0, 80.0), None, 10, "r", "x")
        q_lat, q_lon = east_of(LAT0, LON0, 13.0)
        assert cache.nearest("front", q_lat, q_lon, 85.0) == refs[10.0]
        assert cache.nearest("front", q_lat, q_lon, 265.0) == back  # 7 m away, same heading
        assert cache.nearest("front", q_lat, q_lon, 180.0) is None  # no heading within 30°
        assert cache.nearest("front", q_lat, q_lon, 180.0, heading_tol_deg=95.0) is not None
        assert cache.nearest("front", q_lat, q_lon, None) == refs[10.0]  # unknown query heading
        assert cache.nearest("rear", q_lat, q_lon, 90.0) is None  # other camera
        assert cache.nearest("front", None, None, 90.0) is None  # no GPS: no-reference mode
        assert cache.nearest("front", math.nan, q_lon, 90.0) is None
        far_lat, far_lon = east_of(LAT0, LON0, 46.0)
        assert cache.nearest("front", far_lat, far_lon, 90.0) is None  # 16 m from the last one
        assert cache.nearest("front", far_lat, far_lon, 90.0, radius_m=17.0) == refs[30.0]
        u_lat, u_lon = east_of(LAT0, LON0, 78.0)
        assert cache.nearest("front", u_lat, u_lon, 0.0) == unknown  # stored heading unknown
        # heading wrap-around: 355° vs 10° is 15° apart
        n_lat, n_lon = LAT0 + 0.01, LON0
        north = cache.add(tile(strip, 11), "front", n_lat, n_lon, 355.0, 11, "r", "n")
        assert cache.nearest("front", n_lat, n_lon, 10.0) == north


def test_nearest_across_antimeridian_and_exact_distance(tmp_path: Path, strip: np.ndarray) -> None:
    with ReferenceCache.open(tmp_path, create=True) as cache:
        west = cache.add(tile(strip, 0), "front", -16.5, 179.99995, 90.0, 1, "r", "d")
        ref = cache.nearest("front", -16.5, -179.99995, 90.0)  # ~10.7 m away, other side of ±180°
        assert ref == west
        assert haversine_m(-16.5, 179.99995, -16.5, -179.99995) == pytest.approx(10.66, abs=0.05)


def test_odometry_pseudo_latlon_is_metric(tmp_path: Path) -> None:
    lat, lon = pseudo_latlon(30.0, 40.0)
    assert haversine_m(0.0, 0.0, lat, lon) == pytest.approx(50.0, rel=1e-6)
    with ReferenceCache.open(tmp_path, create=True, odom_origin=(48.0, 11.0)) as cache:
        assert cache.odom_origin == (48.0, 11.0)
        a, b = cache.pseudo_latlon(0.0, 0.0), cache.pseudo_latlon(3.0, 4.0)
        assert haversine_m(*a, *b) == pytest.approx(5.0, rel=1e-4)
    with ReferenceCache.open(tmp_path) as cache:  # persisted
        assert cache.odom_origin == (48.0, 11.0)


def test_navsatfix_position_ignores_no_fix() -> None:
    fix = {"status": {"status": 0, "service": 1}, "latitude": LAT0, "longitude": LON0}
    assert navsatfix_position(fix) == (LAT0, LON0)
    assert navsatfix_position({**fix, "status": {"status": -1, "service": 1}}) is None
    assert navsatfix_position({**fix, "latitude": math.nan}) is None
    assert navsatfix_position({"status": {"status": 2}}) is None


# -- build from bags -----------------------------------------------------------------------------


def test_build_lookup_verify_roundtrip(built: Path, strip: np.ndarray) -> None:
    with ReferenceCache.open(built, readonly=True) as cache:
        refs = list(cache.entries())
        assert len(refs) == 10  # frames every 1 m over 99 m, one keyframe per 10 m: 0, 10, ..., 90 m
        for a, b in zip(refs, refs[1:], strict=False):
            step = haversine_m(a.lat, a.lon, b.lat, b.lon)
            assert step == pytest.approx(10.0, abs=0.01)
            assert abs(a.lat - LAT0) < 1e-7  # the no-fix messages at 0°N 0°E were ignored
        assert all(abs(r.heading_deg - 90.0) < 1.0 for r in refs)  # course over ground: east
        assert {r.camera for r in refs} == {"/cam/front/image_raw"}
        assert {(r.route, r.drive) for r in refs} == {("nordland", "d1")}
        # the stored pixels are exactly the frame recorded at that stamp
        i = (refs[3].stamp_ns - 1_000 - T0) // 100_000_000
        np.testing.assert_array_equal(refs[3].load_rgb(), tile(strip, int(i)))
        # a later drive 3 m further along, heading east, finds the keyframe before it
        lat, lon = east_of(LAT0, LON0, haversine_m(LAT0, LON0, refs[4].lat, refs[4].lon) + 3.0)
        hit = cache.nearest("/cam/front/image_raw", lat, lon, 92.0)
        assert hit == refs[4]
        assert cache.nearest("/cam/front/image_raw", lat, lon, 270.0) is None
        assert cache.get(hit.id, hit.sha256) == hit
        report = cache.verify()
        assert report.ok and report.entries == len(refs) and not report.orphans
    assert cli("cache", "verify", str(built)) == 0
    assert cli("cache", "info", str(built)) == 0


def test_build_is_resumable(tmp_path: Path, gps_bag: Path) -> None:
    with ReferenceCache.open(tmp_path, create=True) as cache:
        first = build_from_bag(cache, gps_bag, "/cam/front/image_raw", gps_topic="/gps/fix", every_m=10.0)
        second = build_from_bag(cache, gps_bag, "/cam/front/image_raw", gps_topic="/gps/fix", every_m=10.0)
        assert first.added == 10 and first.no_fix == 10 and first.poses == 41
        assert first.distance_m == pytest.approx(100.0, abs=0.1)
        assert second.added == 0 and second.skipped_existing == first.added
        assert len(cache) == first.added
        # every keyframe got its registration features beside its image (the car decodes only the winner)
        from refscale_model.refcache.prepared import load_prepared
        from refscale_model.registration import RegistrationConfig

        assert all(load_prepared(e, RegistrationConfig()) is not None for e in cache.entries())


def test_build_from_odometry_and_compressed_images(tmp_path: Path, strip: np.ndarray) -> None:
    bag = write_odom_bag(tmp_path / "drive_odom", strip)
    with ReferenceCache.open(tmp_path / "cache", create=True) as cache:
        report = build_from_bag(
            cache,
            bag,
            "/cam/left/compressed",
            odom_topic="/odom",
            every_m=25.0,
            camera="left",
            route="yard",
            drive="o1",
        )
        assert report.added == 4 and report.bad_images == 0  # 0, 25, 50, 75 m of 99 m
        refs = list(cache.entries())
        assert all(abs(r.heading_deg) < 1e-6 or abs(r.heading_deg - 360.0) < 1e-6 for r in refs)  # north
        lat, lon = cache.pseudo_latlon(0.0, 52.0)
        hit = cache.nearest("left", lat, lon, 5.0)
        assert hit is not None and haversine_m(lat, lon, hit.lat, hit.lon) == pytest.approx(2.0, abs=0.6)
        assert hit.load_rgb().shape == (TILE_H, TILE_W, 3)
        assert cache.verify().ok


def test_build_without_positions_adds_nothing(tmp_path: Path, gps_bag: Path) -> None:
    with ReferenceCache.open(tmp_path, create=True) as cache:
        report = build_from_bag(cache, gps_bag, "/cam/front/image_raw", gps_topic="/no/such/topic")
        assert report.added == 0 and report.notes and len(cache) == 0
        with pytest.raises(ValueError):
            build_from_bag(cache, gps_bag, "/cam/front/image_raw")


def test_add_images_from_folder(tmp_path: Path, strip: np.ndarray) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    lines = ["file,lat,lon,heading_deg,x,y"]
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.png"), cv2.cvtColor(tile(strip, i), cv2.COLOR_RGB2BGR))
        lat, lon = east_of(LAT0, LON0, 20.0 * i)
        lines.append(f"{i}.png,{lat!r},{lon!r},90,,")
    cv2.imwrite(str(folder / "odo.png"), cv2.cvtColor(tile(strip, 5), cv2.COLOR_RGB2BGR))
    lines.append("odo.png,,,,10,20")  # odometry-only image: pseudo lat/lon
    (tmp_path / "poses.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "cache"
    assert (
        cli(
            "cache",
            "add-images",
            str(folder),
            "--poses",
            str(tmp_path / "poses.csv"),
            "--out",
            str(out),
            "--camera-id",
            "front",
            "--no-progress",
        )
        == 0
    )
    with ReferenceCache.open(out) as cache:
        assert len(cache) == 4
        hit = cache.nearest("front", *east_of(LAT0, LON0, 41.0), 90.0)
        assert hit is not None and hit.stamp_ns == 2
        np.testing.assert_array_equal(hit.load_rgb(), tile(strip, 2))
        odo = cache.nearest("front", *cache.pseudo_latlon(10.0, 21.0), None)
        assert odo is not None and odo.stamp_ns == 3
        again = add_images(cache, folder, tmp_path / "poses.csv", camera="front")
        assert again.added == 0 and again.skipped_existing == 4


# -- verify --------------------------------------------------------------------------------------


def test_verify_detects_tampered_missing_and_orphan_files(tmp_path: Path, strip: np.ndarray) -> None:
    with ReferenceCache.open(tmp_path, create=True) as cache:
        refs = [cache.add(tile(strip, i), "front", LAT0, LON0 + i * 1e-3, 0.0, i, "r", "d") for i in range(4)]
        assert cache.verify().ok
        data = bytearray(refs[1].path.read_bytes())
        data[len(data) // 2] ^= 0x01  # one flipped bit inside the PNG
        refs[1].path.write_bytes(bytes(data))
        refs[2].path.unlink()
        orphan = cache.image_path("f" * 64)
        orphan.parent.mkdir(parents=True, exist_ok=True)
        orphan.write_bytes(b"left by a crash")
        report = cache.verify()
        assert not report.ok
        assert [c[0] for c in report.corrupt] == [refs[1].id]
        assert report.missing == [(refs[2].id, refs[2].sha256)]
        assert report.orphans == [orphan]
        with pytest.raises(ReferenceMismatchError):
            refs[1].load_rgb()  # never decode tampered pixels silently
        with pytest.raises(ReferenceMissingError):
            cache.get(refs[2].id, refs[2].sha256)
        np.testing.assert_array_equal(cache.get(refs[0].id, refs[0].sha256).load_rgb(), tile(strip, 0))
    assert cli("cache", "verify", str(tmp_path)) == 1
    assert cli("cache", "verify", "--remove-orphans", str(tmp_path)) == 1
    assert not orphan.exists()


def test_verify_detects_index_inconsistency(tmp_path: Path, strip: np.ndarray) -> None:
    with ReferenceCache.open(tmp_path, create=True) as cache:
        ref = cache.add(tile(strip, 0), "front", LAT0, LON0, 0.0, 1, "r", "d")
    con = sqlite3.connect(tmp_path / "index.sqlite")
    con.execute("DELETE FROM refs_pos WHERE id = ?", (ref.id,))
    con.commit()
    con.close()
    with ReferenceCache.open(tmp_path) as cache:
        report = cache.verify()
        assert not report.ok and any("spatial index" in e for e in report.index_errors)


# -- concurrency and crashes ---------------------------------------------------------------------

_WRITER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from refscale_model.refcache import ReferenceCache
    root, n, pause = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    rng = np.random.default_rng(0)
    with ReferenceCache.open(root, create=True) as cache:
        for i in range(n):
            img = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
            ref = cache.add(img, "front", 67.28 + i * 1e-4, 14.4, 90.0, i, "r", "sync")
            print(ref.id, flush=True)
            time.sleep(pause)
    """
)


def _spawn_writer(root: Path, n: int, pause: float) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(root), str(n), str(pause)], stdout=subprocess.PIPE, text=True, env=env
    )


def test_reader_sees_entries_while_sync_job_writes(tmp_path: Path) -> None:
    with ReferenceCache.open(tmp_path, create=True):
        pass
    writer = _spawn_writer(tmp_path, 20, 0.01)
    seen: list[int] = []
    with ReferenceCache.open(tmp_path, readonly=True) as reader:
        deadline = time.monotonic() + 60
        while (not seen or seen[-1] < 20) and time.monotonic() < deadline:
            n = len(reader)
            assert n >= (seen[-1] if seen else 0)  # never goes backwards, never errors
            hit = reader.nearest("front", 67.28, 14.4, 90.0)
            if hit is not None:
                hit.load_rgb()  # a visible entry always has its complete image
            seen.append(n)
            time.sleep(0.005)
    assert writer.wait(timeout=60) == 0
    assert seen[-1] == 20 and len(set(seen)) > 2  # the reader watched the cache grow


def test_crash_during_writes_leaves_consistent_cache(tmp_path: Path) -> None:
    writer = _spawn_writer(tmp_path, 10_000, 0.0)
    assert writer.stdout is not None
    done = [int(writer.stdout.readline()) for _ in range(8)]
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)
    with ReferenceCache.open(tmp_path) as cache:
        report = cache.verify()
        assert report.ok, report
        assert len(cache) >= len(done)
        assert {r.id for r in cache.entries()} >= set(done)
        cache.remove_orphans()  # an image (or temp file) written just before the kill, if any
        files = {p for p in (tmp_path / "images").glob("*/*")}
        assert files == {r.path for r in cache.entries()}
        assert cache.verify().ok


# -- degenerate references and the journal mode a writer leaves (issue 20 items 4 and 6) -------------------------


@pytest.mark.parametrize("hw", [(1, 1), (2, 2000), (2000, 2), (31, 64), (40, 400)])
def test_degenerate_reference_is_refused(tmp_path: Path, hw: tuple[int, int]) -> None:
    from refscale_model.refcache import DegenerateReferenceError

    img = np.full((*hw, 3), 128, np.uint8)
    with ReferenceCache.open(tmp_path, create=True) as cache:
        with pytest.raises(DegenerateReferenceError, match="not a usable reference") as info:
            cache.add(img, "front", LAT0, LON0, 0.0, 1, "r", "d")
        assert isinstance(info.value, CacheError) and isinstance(info.value, ValueError)
        assert len(cache) == 0
        for ok in ((32, 32), (32, 256), (720, 1280)):  # the bounds themselves are fine
            cache.add(np.full((*ok, 3), 128, np.uint8), "front", LAT0, LON0, 0.0, ok[1], "r", "d")
        assert len(cache) == 3 and cache.verify().ok
    assert len(list((tmp_path / "images").glob("*/*"))) == 3


def test_add_images_and_build_count_degenerate_references(
    tmp_path: Path, strip: np.ndarray, capsys: pytest.CaptureFixture[str]
) -> None:
    from refscale_model.bags import BagWriter, msgs

    folder = tmp_path / "imgs"
    folder.mkdir()
    shapes = {"good.png": (TILE_H, TILE_W), "dot.png": (1, 1), "line.png": (2, 2000), "strip.png": (40, 400)}
    for name, (h, w) in shapes.items():
        cv2.imwrite(str(folder / name), cv2.resize(strip, (w, h)))
    (tmp_path / "poses.csv").write_text("file,lat,lon\n" + "".join(f"{n},{LAT0},{LON0}\n" for n in shapes))
    assert cli("cache", "add-images", str(folder), "--poses", str(tmp_path / "poses.csv"), "--out",
               str(tmp_path / "c1"), "--no-progress") == 1
    out = capsys.readouterr().out
    assert "added: 1" in out and "degenerate: 3" in out, out
    assert "note: not a usable reference:" in out and "each side must be at least 32 px" in out
    assert "aspect ratio 10.0 exceeds 8" in out

    bag = tmp_path / "bag"
    with BagWriter(bag) as w:  # a camera that sends 1×1 frames every other frame, 1 m apart
        w.add_topic("/gps/fix", msgs.NAV_SAT_FIX)
        w.add_topic("/cam", msgs.IMAGE)
        for i in range(20):
            t = T0 + i * 100_000_000
            w.write("/gps/fix", msgs.navsatfix_msg(*east_of(LAT0, LON0, float(i)), 30.0, t), t)
            img = tile(strip, i) if i % 2 else np.zeros((1, 1, 3), np.uint8)
            w.write("/cam", msgs.image_msg(img, t, "cam"), t)
    with ReferenceCache.open(tmp_path / "c2", create=True) as cache:
        report = build_from_bag(cache, bag, "/cam", gps_topic="/gps/fix", every_m=1.0)
        assert report.degenerate == 10 and report.added == 10, report
        assert all(r.width == TILE_W for r in cache.entries())


def test_writer_leaves_a_rollback_journal_that_opens_without_shm(tmp_path: Path, strip: np.ndarray) -> None:
    with ReferenceCache.open(tmp_path, create=True) as cache:
        cache.add(tile(strip, 0), "front", LAT0, LON0, 0.0, 1, "r", "d")
        assert cache.info().journal_mode == "wal"  # WAL while writing: readers never wait for the writer
    header = (tmp_path / "index.sqlite").read_bytes()[:20]
    assert (header[18], header[19]) == (1, 1)  # rollback journal on disk
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "index.sqlite"]
    reader = ReferenceCache.open(tmp_path, readonly=True)
    writer = ReferenceCache.open(tmp_path)  # the next writer switches back to WAL
    assert writer.info().journal_mode == "wal" and len(reader) == 1
    writer.close()  # another connection still has it open: it stays WAL (switching would need it alone)
    assert (tmp_path / "index.sqlite").read_bytes()[18] == 2 and len(reader) == 1
    reader.close()
    with ReferenceCache.open(tmp_path):
        pass
    assert (tmp_path / "index.sqlite").read_bytes()[18] == 1
