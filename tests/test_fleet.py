"""Fleet reconstruction on a real local Ray cluster, and cache distribution (export / merge / check-bag).

Small real RefScale bags made with the project's own tools (webcam revisits, tiny seeded weights,
`refscale encode-bag`); one Ray session for the module.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from test_pipeline import CAM, POSITIONS, T0, World, build_world

from refscale_model import load_weights
from refscale_model.bags import BagWriter, msgs, read_messages
from refscale_model.cli import main
from refscale_model.fleet import Manifest, fleet_reconstruct  # imports no Ray: the onboard install has none
from refscale_model.fleet.runner import MANIFEST_NAME
from refscale_model.pipeline import Reconstructor
from refscale_model.pipeline.jobs import reconstruct_bag
from refscale_model.refcache import ReferenceCache

REPO = Path(__file__).resolve().parents[1]
FRAMES = (4, 6, 8)


def write_raw_bag(path: Path, frames: list[np.ndarray], positions: list[tuple[float, float]], t0: int = T0) -> Path:
    with BagWriter(path) as bag:
        bag.add_topic(CAM, msgs.IMAGE)
        for i, (rgb, pos) in enumerate(zip(frames, positions, strict=True)):
            s = t0 + i * 100_000_000
            bag.write("/gps/fix", msgs.navsatfix_msg(*pos, 1000.0, s), s, type_name=msgs.NAV_SAT_FIX)
            bag.write(CAM, msgs.image_msg(rgb, s, "cam_front"), s)
    return path


def encode(raw: Path, out: Path, weights: Path, cache: Path) -> Path:
    argv = ["encode-bag", str(raw), "--camera", CAM, "--weights", str(weights), "--cache", str(cache), "--out",
            str(out), "--no-progress"]
    assert main(argv) == 0
    return out


class Fleet:
    def __init__(self, root: Path) -> None:
        self.world: World = build_world(root / "world")
        self.bags = root / "bags"
        for k, n in enumerate(FRAMES):
            idx = [(i + k) % len(self.world.frames) for i in range(n)]
            raw = write_raw_bag(root / "raw" / f"drive{k}", [self.world.frames[i] for i in idx],
                                [POSITIONS[i] for i in idx], T0 + k * 10**9)
            encode(raw, self.bags / f"drive{k}", self.world.weights, self.world.cache)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Fleet:
    return Fleet(tmp_path_factory.mktemp("fleet"))


@pytest.fixture(scope="module")
def ray_session() -> str:
    ray = pytest.importorskip("ray")  # the [fleet] extra
    pytest.importorskip("fsspec")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def frames_of(bag: Path) -> list[tuple[int, np.ndarray]]:
    return [(msgs.stamp_ns(m), _rgb(m)) for _t, _lt, m in read_messages(bag, [CAM])]


def _rgb(m: object) -> np.ndarray:
    assert m.encoding == "rgb8"  # type: ignore[attr-defined]
    return np.frombuffer(bytes(m.data), np.uint8).reshape(m.height, m.width, 3)  # type: ignore[attr-defined]


def single_process(fleet: Fleet, root: Path) -> dict[str, list[tuple[int, np.ndarray]]]:
    """The reference: every bag through `reconstruct_bag` in this process."""
    model = load_weights(fleet.world.weights)
    out = {}
    with ReferenceCache.open(fleet.world.cache, readonly=True) as cache:
        for bag in sorted(fleet.bags.iterdir()):
            reconstruct_bag(bag, root / bag.name, Reconstructor(model, cache))
            out[bag.name] = frames_of(root / bag.name)
    return out


def assert_outputs(out: Path, expected: dict[str, list[tuple[int, np.ndarray]]]) -> None:
    assert sorted(p.name for p in out.iterdir() if p.name != MANIFEST_NAME and "sqlite" not in p.name) == sorted(
        expected
    )
    for name, frames in expected.items():
        got = frames_of(out / name)
        assert [s for s, _ in got] == [s for s, _ in frames]
        for (_, a), (_, b) in zip(got, frames, strict=True):
            assert np.array_equal(a, b)
    with Manifest(out / MANIFEST_NAME) as m:
        rows = m.done_rows()
    assert sorted(Path(r.input).name for r in rows) == sorted(expected)  # once each, none twice
    assert [r.frames for r in sorted(rows, key=lambda r: r.input)] == list(FRAMES)
    assert all(r.failed == 0 for r in rows)


@pytest.fixture(scope="module")
def expected(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[tuple[int, np.ndarray]]]:
    return single_process(fleet, tmp_path_factory.mktemp("single"))


def test_fleet_is_bit_identical_to_single_process_and_resumes(
    fleet: Fleet, ray_session: str, expected: dict, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    report = fleet_reconstruct([str(fleet.bags)], str(out), str(fleet.world.cache), weights=str(fleet.world.weights),
                               workers=2, progress=False, log=lambda _s: None)
    assert report.ok and len(report.done) == 3 and report.frames == sum(FRAMES), report
    assert_outputs(out, expected)
    again = fleet_reconstruct([str(fleet.bags)], str(out), str(fleet.world.cache), weights=str(fleet.world.weights),
                              workers=2, progress=False, log=lambda _s: None)
    assert not again.done and len(again.skipped) == 3
    assert_outputs(out, expected)

    png = tmp_path / "png"
    report = fleet_reconstruct([str(fleet.bags / "drive0")], str(png), str(fleet.world.cache),
                               weights=str(fleet.world.weights), output="png", progress=False, log=lambda _s: None)
    assert report.ok
    from refscale_model.io.images import decode_png

    files = sorted((png / "drive0" / "cam__front__image_raw").glob("*.png"))
    assert [int(f.stem) for f in files] == [s for s, _ in expected["drive0"]]
    assert all(np.array_equal(decode_png(f.read_bytes()), a) for f, (_, a) in zip(files, expected["drive0"],
                                                                                  strict=True))


def test_worker_killed_mid_bag_is_retried_exactly_once(
    fleet: Fleet, ray_session: str, expected: dict, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result: dict = {}

    def go() -> None:
        result["report"] = fleet_reconstruct(
            [str(fleet.bags)], str(out), str(fleet.world.cache), weights=str(fleet.world.weights), workers=2,
            progress=False, log=lambda _s: None)

    t = threading.Thread(target=go)
    t.start()
    killed = None
    deadline = time.monotonic() + 60
    while killed is None and t.is_alive() and time.monotonic() < deadline:
        for p in out.glob(".tmp-*") if out.is_dir() else []:
            pid = int(p.name.rsplit("-", 2)[1])  # .tmp-<name>-<pid>-<uuid>: the worker writing it
            os.kill(pid, signal.SIGKILL)
            killed = p.name
            break
        time.sleep(0.002)
    t.join(120)
    assert killed is not None, "never saw a bag in progress"
    report = result["report"]
    assert report.ok and len(report.done) == 3 and not report.failed, report
    assert not list(out.glob(".tmp-*"))
    assert_outputs(out, expected)


def test_driver_sigkilled_then_rerun_finishes_without_gaps_or_duplicates(
    fleet: Fleet, ray_session: str, expected: dict, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "refscale_model.cli", "fleet", "reconstruct", str(fleet.bags), "--out", str(out),
            "--cache", str(fleet.world.cache), "--weights", str(fleet.world.weights), "--address", ray_session,
            "--workers", "1", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # now: it carries the running cluster's settings
    proc = subprocess.Popen(argv, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if (out / MANIFEST_NAME).is_file():
            with sqlite3.connect(out / MANIFEST_NAME) as c:
                try:
                    if c.execute("SELECT COUNT(*) FROM done").fetchone()[0] >= 1:
                        break
                except sqlite3.OperationalError:
                    pass
        time.sleep(0.01)
    assert proc.poll() is None, proc.communicate()[0]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with Manifest(out / MANIFEST_NAME) as m:
        before = len(m.done_rows())
    assert 1 <= before < 3
    rerun = subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"{before} skipped" in rerun.stdout and f"{3 - before} rebuilt" in rerun.stdout, rerun.stdout
    assert not list(out.glob(".tmp-*"))
    assert_outputs(out, expected)


def test_cache_export_encode_merge_check_bag_round_trip(
    fleet: Fleet, ray_session: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    w = fleet.world
    master, car = tmp_path / "master", tmp_path / "car"
    shutil.copytree(w.cache, master)
    with ReferenceCache.open(master, readonly=True) as m:
        ids = {r.id: r.sha256 for r in m.entries()}
    assert main(["cache", "export", str(master), "--bbox", "45.915,6.865,45.925,6.875", "--out", str(car)]) == 0
    with ReferenceCache.open(car, readonly=True) as c:
        assert {r.id: r.sha256 for r in c.entries()} == {1: ids[1]}  # ids kept: bags name master ids
    # export along a track: the NavSatFix of a drive near the second reference only
    far = write_raw_bag(tmp_path / "far", [w.frames[2]], [POSITIONS[2]])
    assert main(["cache", "export", str(master), "--route", str(far), "--radius", "30", "--out",
                 str(tmp_path / "car2")]) == 0
    with ReferenceCache.open(tmp_path / "car2", readonly=True) as c:
        assert [r.id for r in c.entries()] == [2]

    # the car drives: one bag against the exported reference, and it records new references
    bag1 = encode(write_raw_bag(tmp_path / "raw1", w.frames[:2], POSITIONS[:2]), tmp_path / "bag1", w.weights, car)
    with ReferenceCache.open(car) as c:
        new = c.add(np.ascontiguousarray(w.refs[1][::-1]), CAM, *POSITIONS[2], 0.0, 5, "route", "car1")
        c.add(w.refs[1], CAM, *POSITIONS[2], 0.0, 6, "route", "car1")  # same pixels as master id 2
        c.add(w.refs[0][:, ::-1].copy(), CAM, *POSITIONS[2], 0.0, 2, "route", "drive0")  # clashes with master
    assert new.id == 2  # the car's next free id: the master's id 2 holds other pixels
    bag2 = encode(write_raw_bag(tmp_path / "raw2", w.frames[2:4], POSITIONS[2:4]), tmp_path / "bag2", w.weights, car)
    capsys.readouterr()
    assert main(["cache", "merge", str(car), "--into", str(master)]) == 1  # the clash is reported
    text = capsys.readouterr().out
    assert "CONFLICT" in text and "RENUMBERED  source id 2 -> master id" in text, text
    assert "added: 1, duplicates: 2, conflicts: 1" in text, text
    with ReferenceCache.open(master, readonly=True) as m:
        assert m.get(2, ids[2]).sha256 == ids[2]  # never overwritten
        assert len(m.by_sha256(new.sha256)) == 1
    assert main(["cache", "check-bag", str(bag1), "--cache", str(master)]) == 0
    assert main(["cache", "check-bag", str(bag2), "--cache", str(master)]) == 0
    text = capsys.readouterr().out
    # bag2 names the car's id 3 (its newest, same pixels as master id 2): deduped, found by content hash
    assert "OK       id=1" in text and "OK_BY_SHA256 id=3" in text and "held as id 2" in text, text
    # the renumbered reference still rebuilds on the fleet (found by content hash)
    rep = fleet_reconstruct([str(bag2)], str(tmp_path / "out2"), str(master), weights=str(w.weights),
                            progress=False, log=lambda _s: None)
    assert rep.ok and rep.frames == 2, rep
    # ... and so it does with the plain single-process reconstruct
    assert main(["reconstruct", str(bag2), "--out", str(tmp_path / "plain2"), "--format", "png",
                 "--cache", str(master), "--weights", str(w.weights), "--no-progress"]) == 0
    assert len(list((tmp_path / "plain2").rglob("*.png"))) == 2

    # tamper with the master's copy of reference 1: check-bag and fleet reconstruct both report it
    path = ReferenceCache.open(master, readonly=True).get(1, ids[1]).path
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    assert main(["cache", "check-bag", str(bag1), "--cache", str(master)]) == 1
    assert f"CORRUPT  id=1 sha256={ids[1][:16]}" in capsys.readouterr().out  # as the bag names it (format 6)
    lines: list[str] = []
    rep = fleet_reconstruct([str(bag1)], str(tmp_path / "out1"), str(master), weights=str(w.weights),
                            progress=False, log=lines.append)
    assert not rep.ok and rep.frame_failures[str(bag1)] == 2
    assert any("reference problem" in s and "corrupt id=1" in s for s in lines), lines
    with Manifest(tmp_path / "out1" / MANIFEST_NAME) as m:
        assert {f[3] for f in m.failures()} == {"reference_mismatch"} and len(m.failures()) == 2


def test_fleet_without_ray_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` does when it is not installed
    assert main(["fleet", "reconstruct", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "pip install" in capsys.readouterr().err
