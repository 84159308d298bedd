"""Hostile inputs through the real `refscale` CLI: one line on stderr, the documented exit code, nothing lost.

Exit codes (docs/reference-cache.md, docs/bag-format.md): 2 bad input or usage, 1 a run that failed.
Read-only mounts and full disks are real (bind mounts remounted `ro`, a small tmpfs): those tests
need root and skip without it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_pipeline import CAM, POSITIONS, T0, World, build_world

from refscale_model.bags import BagWriter, msgs
from refscale_model.cli import main
from refscale_model.pipeline.jobs import safe_name
from refscale_model.refcache import ReferenceCache

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Encoded:
    world: World
    bag: Path
    pngs: Path


@pytest.fixture(scope="module")
def enc(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Encoded:
    root = tmp_path_factory.mktemp("faults")
    world = build_world(root)
    bag, pngs = root / "enc", root / "pngs"
    common = ["--cache", str(world.cache), "--weights", str(world.weights), "--no-progress"]
    assert main(["encode-bag", str(world.raw_bag), "--camera", CAM, "--out", str(bag), *common]) == 0
    assert main(["reconstruct", str(bag), "--out", str(pngs), "--format", "png", *common]) == 0
    assert len(list(pngs.rglob("*.png"))) == 4
    return Encoded(world, bag, pngs)


def _common(e: Encoded, cache: Path | None = None) -> list[str]:
    return ["--cache", str(cache or e.world.cache), "--weights", str(e.world.weights), "--no-progress"]


def _one_error_line(capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def _tree(path: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under `path` (what must not change)."""
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def _root_or_skip() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for real mounts")


@contextlib.contextmanager
def _ro_bind(src: Path, dst: Path) -> Iterator[Path]:
    """`src` seen read-only at `dst` (a real read-only bind mount, as Docker's `-v cache:/data/cache:ro`)."""
    _root_or_skip()
    dst.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "--bind", str(src), str(dst)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(dst)], check=True)
        yield dst
    finally:
        _umount(dst)


def _umount(path: Path) -> None:
    """Unmount; lazily if something (a failing test's open file) still holds it."""
    if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(path)], check=True)


@contextlib.contextmanager
def _tmpfs(dst: Path, size: str) -> Iterator[Path]:
    _root_or_skip()
    dst.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(dst)], check=True)
    try:
        yield dst
    finally:
        _umount(dst)


def _copy_cache(src: Path, dst: Path) -> Path:
    """A byte copy of a cache, as the offboard side holds it."""
    import shutil

    shutil.copytree(src, dst)
    return dst


# -- item 6: read-only reference cache ---------------------------------------------------------------------------


def test_cache_straight_after_build_works_from_a_read_only_mount(
    tmp_path: Path, enc: Encoded, capsys: pytest.CaptureFixture[str]
) -> None:
    # a cache built by the CLI, exactly as `cache build` / `add-images` leave it (no -shm / -wal)
    images = tmp_path / "imgs"
    images.mkdir()
    for name, ref in zip("ab", enc.world.refs, strict=True):
        cv2.imwrite(str(images / f"{name}.png"), cv2.cvtColor(ref, cv2.COLOR_RGB2BGR))
    rows = f"a.png,{POSITIONS[0][0]},{POSITIONS[0][1]},0,1\nb.png,{POSITIONS[2][0]},{POSITIONS[2][1]},0,2\n"
    (tmp_path / "poses.csv").write_text("file,lat,lon,heading_deg,stamp_ns\n" + rows)
    cache = tmp_path / "cache"
    assert main(["cache", "add-images", str(images), "--poses", str(tmp_path / "poses.csv"), "--out", str(cache),
                 "--camera-id", CAM, "--no-progress"]) == 0
    assert sorted(p.name for p in cache.iterdir()) == ["images", "index.sqlite"]
    before = _tree(cache)
    capsys.readouterr()
    with _ro_bind(cache, tmp_path / "ro") as ro:
        assert main(["cache", "info", str(ro)]) == 0
        assert "entries:        2" in capsys.readouterr().out
        assert main(["cache", "verify", str(ro)]) == 0
        assert capsys.readouterr().out.strip().endswith("OK")
        out = tmp_path / "rec"
        assert main(["reconstruct", str(enc.bag), "--out", str(out), "--format", "png", *_common(enc, ro)]) == 0
        assert len(list(out.rglob("*.png"))) == 4
        with ReferenceCache.open(ro, readonly=True) as c:
            assert c.nearest(CAM, *POSITIONS[0], 0.0) is not None
        # the recorder's way in: a subprocess with the library only (no ROS needed for the cache part)
        code = "import sys; from refscale_model.refcache import ReferenceCache as C; "
        code += "print(len(C.open(sys.argv[1], readonly=True)))"
        proc = subprocess.run([sys.executable, "-c", code, str(ro)], cwd=REPO, capture_output=True, text=True)
        assert proc.returncode == 0 and proc.stdout.strip() == "2", proc.stderr
    assert _tree(cache) == before


def test_wal_cache_on_a_read_only_mount(tmp_path: Path, enc: Encoded, capsys: pytest.CaptureFixture[str]) -> None:
    """An index left in WAL mode (built by an older version, or closed while others had it open)."""
    cache = _copy_cache(enc.world.cache, tmp_path / "cache")
    with sqlite3.connect(cache / "index.sqlite") as conn:
        assert conn.execute("PRAGMA journal_mode = WAL").fetchone()[0] == "wal"
    with _ro_bind(cache, tmp_path / "ro") as ro:
        assert main(["cache", "verify", str(ro)]) == 0  # immutable=1: no -wal, so the file holds every commit
        capsys.readouterr()
    # a crashed writer's -wal holding commits: refused with one line, never read without them
    writer = sqlite3.connect(cache / "index.sqlite", isolation_level=None)
    writer.execute("PRAGMA journal_mode = WAL")
    writer.execute("PRAGMA wal_autocheckpoint = 0")
    writer.execute("INSERT INTO meta (key, value) VALUES ('note', 'in the wal only')")
    wal = cache / "index.sqlite-wal"
    assert wal.stat().st_size > 0
    saved = {p: p.read_bytes() for p in (wal, cache / "index.sqlite")}
    writer.close()  # checkpoints and deletes the -wal: put the crashed state back
    for p, data in saved.items():
        p.write_bytes(data)
    (cache / "index.sqlite-shm").unlink(missing_ok=True)
    with _ro_bind(cache, tmp_path / "ro2") as ro:
        assert main(["cache", "info", str(ro)]) == 2
        _one_error_line(capsys, "refscale cache: error:", "index.sqlite-wal", "read-only")
    assert main(["cache", "verify", str(cache)]) == 0  # writable again: SQLite applies the -wal
    with sqlite3.connect(cache / "index.sqlite") as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'note'").fetchone() == ("in the wal only",)


# -- item 7: damaged inputs, bad --out, full disk ------------------------------------------------------------------


def test_corrupt_index_is_one_line_exit_2_and_left_alone(
    tmp_path: Path, enc: Encoded, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = _copy_cache(enc.world.cache, tmp_path / "cache")
    index = cache / "index.sqlite"
    index.write_bytes(np.random.default_rng(0).bytes(8192))
    before = _tree(cache)
    for argv in (["cache", "info", str(cache)], ["cache", "verify", str(cache)],
                 ["cache", "build", "--bag", str(enc.world.raw_bag), "--camera", CAM, "--gps", "/gps/fix",
                  "--out", str(cache), "--no-progress"],
                 ["reconstruct", str(enc.bag), "--out", str(tmp_path / "o"), *_common(enc, cache)]):
        assert main(argv) == 2, argv
        _one_error_line(capsys, "error:", "index.sqlite", "not a database")
    assert _tree(cache) == before
    assert not (tmp_path / "o").exists()


def test_existing_out_and_out_under_a_file(tmp_path: Path, enc: Encoded, capsys: pytest.CaptureFixture[str]) -> None:
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    a_file = tmp_path / "file"
    a_file.write_text("a file")
    for out in (existing, a_file / "sub"):
        assert main(["encode-bag", str(enc.world.raw_bag), "--camera", CAM, "--out", str(out), *_common(enc)]) == 2
        _one_error_line(capsys, "refscale encode-bag: error:", str(out if out == existing else a_file))
        for fmt in ("bag", "png"):
            argv = ["reconstruct", str(enc.bag), "--out", str(out), "--format", fmt, *_common(enc)]
            assert main(argv) == (0 if (fmt, out) == ("png", existing) else 2), argv
            if (fmt, out) != ("png", existing):
                _one_error_line(capsys, "refscale reconstruct: error:")
    assert (existing / "keep.txt").read_text() == "mine" and a_file.read_text() == "a file"


def test_truncated_onnx_model_is_not_a_provider_failure(
    tmp_path: Path, enc: Encoded, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("onnxruntime")
    model = tmp_path / "x2.onnx"
    model.write_bytes(b"\x08\x07\x12\x07pytorch" + np.random.default_rng(1).bytes(3000))  # a cut-off protobuf
    argv = ["encode-bag", str(enc.world.raw_bag), "--camera", CAM, "--onnx", str(model), "--out", str(tmp_path / "o"),
            *_common(enc)]
    assert main(argv) == 2
    line = _one_error_line(capsys, "not a valid ONNX model", str(model))
    assert "could not start" not in line and "CUDA" not in line
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("content", [b"- a\n- b\n", np.random.default_rng(2).bytes(600)], ids=["yaml-list", "bytes"])
def test_bad_metadata_yaml(tmp_path: Path, enc: Encoded, content: bytes, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    bag = tmp_path / "bag"
    shutil.copytree(enc.bag, bag)
    (bag / "metadata.yaml").write_bytes(content)
    rc = main(["bag", "info", str(bag)])
    assert rc in (1, 2)
    assert "Traceback" not in capsys.readouterr().err
    out = tmp_path / "o"
    rc = main(["reconstruct", str(bag), "--out", str(out), "--format", "png", *_common(enc)])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert rc == 0 and len(list(out.rglob("*.png"))) == 4, err  # the MCAP files still hold every frame


def test_reconstruct_on_a_full_disk_keeps_only_complete_pngs(
    tmp_path: Path, enc: Encoded, capsys: pytest.CaptureFixture[str]
) -> None:
    good = {p.relative_to(enc.pngs): p.read_bytes() for p in enc.pngs.rglob("*.png")}
    sizes = sorted(len(b) for b in good.values())
    with _tmpfs(tmp_path / "small", "1m") as disk:
        # leave room for about 1.5 frames: the second one runs out of space half-way
        free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
        filler_size = free - sizes[0] - sizes[-1] // 2 - 8192
        (disk / "filler").write_bytes(b"\0" * filler_size)
        out = disk / "out"
        assert main(["reconstruct", str(enc.bag), "--out", str(out), "--format", "png", *_common(enc)]) == 1
        line = _one_error_line(capsys, "refscale reconstruct: error:", "No space left on device", "frames written")
        written = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
        assert 1 <= len(written) < len(good), line
        for rel, data in written.items():  # every file under a frame's name is that frame, complete
            assert rel.suffix == ".png" and data == good[rel], rel


def test_reconstruct_png_does_not_overwrite_without_overwrite(
    tmp_path: Path, enc: Encoded, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "png"
    assert main(["reconstruct", str(enc.bag), "--out", str(out), "--format", "png", *_common(enc)]) == 0
    victim = next(out.rglob("*.png"))
    victim.write_bytes(b"the user's edited frame")
    before = _tree(out)
    capsys.readouterr()
    assert main(["reconstruct", str(enc.bag), "--out", str(out), "--format", "png", *_common(enc)]) == 2
    _one_error_line(capsys, "refscale reconstruct: error:", "--overwrite")
    assert _tree(out) == before
    argv = ["reconstruct", str(enc.bag), "--out", str(out), "--format", "png", "--overwrite", *_common(enc)]
    assert main(argv) == 0
    assert victim.read_bytes() != b"the user's edited frame" and cv2.imread(str(victim)) is not None
    assert not [p for p in out.rglob("*") if p.is_file() and p.suffix != ".png"]  # no temporary files left


@pytest.mark.parametrize("topic", ["/..", "/.", "/", "//", "/../..", "/a/../../b", "/./x"])
def test_safe_name_never_leaves_the_output_folder(topic: str) -> None:
    name = safe_name(topic)
    assert name and name not in (".", "..") and "/" not in name and "\\" not in name and "\0" not in name
    base = Path("/out")
    assert (base / name).resolve().parent == base
    assert safe_name("/cam/front/image_raw") == "cam__front__image_raw"


def test_camera_topic_dotdot_stays_inside_out(tmp_path: Path, enc: Encoded, capsys: pytest.CaptureFixture[str]) -> None:
    raw, bag = tmp_path / "raw", tmp_path / "enc"
    with BagWriter(raw) as w:
        w.add_topic("/..", msgs.IMAGE)
        for i, rgb in enumerate(enc.world.frames[:2]):
            s = T0 + i * 100_000_000
            w.write("/..", msgs.image_msg(rgb, s, "cam"), s)
    weights = ["--weights", str(enc.world.weights), "--no-progress"]
    assert main(["encode-bag", str(raw), "--camera", "/..", "--out", str(bag), *weights]) == 0
    parent = tmp_path / "parent"
    out = parent / "out"
    out.mkdir(parents=True)
    assert main(["reconstruct", str(bag), "--out", str(out), "--format", "png", *weights]) == 0
    assert [p.name for p in parent.iterdir()] == ["out"]
    pngs = list(out.rglob("*.png"))
    assert len(pngs) == 2 and all(p.parent.parent == out and p.parent.name == "%2E%2E" for p in pngs)


# -- item 8: sample-drive --out -------------------------------------------------------------------------------------


def test_sample_drive_keeps_a_users_folder_without_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    user = tmp_path / "drive_a"
    user.mkdir()
    (user / "notes.txt").write_text("do not delete")
    argv = ["sample-drive", "--out", str(tmp_path), "--frames", "2", "--width", "64", "--height", "48", "--no-progress"]
    assert main(argv) == 2
    _one_error_line(capsys, "refscale sample-drive:", str(user), "--force")
    assert (user / "notes.txt").read_text() == "do not delete"
    assert not (tmp_path / "drive_b").exists()
    (user / "notes.txt").unlink()
    user.rmdir()
    assert main(argv) == 0  # a fresh folder, and then a rerun with other parameters, need no --force
    assert main([*argv[:4], "3", *argv[5:]]) == 0
    (tmp_path / "drive_b" / "notes.txt").write_text("mine")
    assert main([*argv[:4], "4", *argv[5:]]) == 2
    assert (tmp_path / "drive_b" / "notes.txt").read_text() == "mine"
    assert main([*argv, "--force"]) == 0
