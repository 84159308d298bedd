"""Bags under faults: damaged records, cut split files, full disks, broken metadata.yaml, random corruption.

Every bag here is a real RefScale bag: frames encoded by `FrameEncoder` (tiny model) into a `BagWriter`.
The guarantee checked: reading skips damage and goes on, recovery never ends with fewer messages than
the resyncing reader finds in the damaged input, and nothing ends in a traceback.
"""

from __future__ import annotations

import io
import os
import random
import shutil
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from mcap.reader import make_reader
from mcap.records import Chunk, Message
from mcap.stream_reader import StreamReader, breakup_chunk
from test_pipeline import CAM, T0, World, build_world

from refscale_model import load_weights
from refscale_model.backends.torch_backend import TorchDownscaler
from refscale_model.bags import BagReader, BagWriter, bag_files, is_complete, msgs, recover
from refscale_model.bags.rosbag2_meta import read_metadata
from refscale_model.cli import main
from refscale_model.pipeline import FrameEncoder, ModelInfo, ReconstructedFrame, Reconstructor

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> World:
    return build_world(tmp_path_factory.mktemp("faultworld"))


def _encode(world: World, out: Path, frames: int, **writer_kw) -> None:
    """A RefScale bag: `frames` camera frames encoded (no reference) plus a GPS fix per frame."""
    model = load_weights(world.weights)
    writer = BagWriter(out, **writer_kw)
    enc = FrameEncoder(writer, TorchDownscaler(model), ModelInfo.of(model, "tiny"), flush_interval_s=None)
    for i in range(frames):
        s = T0 + i * 100_000_000
        rgb = world.frames[i % len(world.frames)][:64, :96]
        writer.write("/gps/fix", msgs.navsatfix_msg(48.1, 11.5, 500.0, s), s, type_name=msgs.NAV_SAT_FIX)
        enc.encode(CAM, msgs.image_msg(rgb, s, "cam_front"), s)
    enc.close()


@pytest.fixture(scope="module")
def small_bag(world: World, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("small") / "bag"
    _encode(world, out, 12, chunk_size=4_000)
    return out


@pytest.fixture(scope="module")
def split_bag(world: World, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("split") / "bag"
    _encode(world, out, 12, chunk_size=4_000, split_max_bytes=20_000)
    assert len(bag_files(out)) >= 3
    return out


def _copy(bag: Path, dst: Path) -> Path:
    shutil.copytree(bag, dst)
    return dst


def _records(data: bytes) -> list[tuple[int, int, int]]:
    """(offset, opcode, length) of every top-level record of an intact file."""
    out, pos = [], 8
    while pos + 9 <= len(data) - 8:
        op, n = data[pos], struct.unpack_from("<Q", data, pos + 1)[0]
        out.append((pos, op, n))
        pos += 9 + n
    return out


def _count(path: Path) -> tuple[int, list[str]]:
    r = BagReader(path)
    return sum(1 for _ in r.raw_messages()), list(r.problems)


def _plain_count(f: Path, crcs: bool = False) -> int:
    """What the `mcap` library itself reads: the index when there is one, else the stream; up to its first error.

    With `crcs`, chunks whose CRC fails are refused (the plain reader otherwise yields garbage from them).
    """
    n = 0
    data = f.read_bytes()
    try:
        for _ in make_reader(io.BytesIO(data), validate_crcs=crcs).iter_messages():
            n += 1
    except Exception:  # noqa: BLE001 - the plain reader's failure is what we compare against
        pass
    m = 0
    try:
        for rec in StreamReader(io.BytesIO(data), validate_crcs=crcs).records:
            m += type(rec).__name__ == "Message"
    except Exception:  # noqa: BLE001
        pass
    return max(n, m)


def _frames(bag: Path, world: World) -> int:
    return sum(isinstance(x, ReconstructedFrame) for x in Reconstructor(load_weights(world.weights), None).run(bag))


# -- item 2: a damaged record does not end the read ---------------------------------------------------------------
def test_chunk_length_field_corrupted_reads_every_chunk_and_recover_rewrites(
    tmp_path: Path, small_bag: Path, world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    bag = _copy(small_bag, tmp_path / "bag")
    f = bag_files(bag)[0]
    total, problems = _count(f)
    assert not problems and total == 36
    data = bytearray(f.read_bytes())
    chunks = [r for r in _records(bytes(data)) if r[1] == 0x06]
    assert len(chunks) >= 4
    off = chunks[1][0]
    data[off + 1 : off + 9] = struct.pack("<Q", 0xFFFF_FFFF_FFFF)  # the length field of chunk 1
    f.write_bytes(bytes(data))
    got, problems = _count(f)
    assert got >= _plain_count(f) and got == total  # the chunk's CRC still matches: nothing is lost
    assert any("length field damaged" in p for p in problems)
    assert _frames(bag, world) == 12

    assert main(["bag", "recover", str(bag)]) == 0  # has a footer, but is damaged: rewritten
    out = capsys.readouterr().out
    assert f"recovered: {f}" in out
    assert read_metadata(bag)["message_count"] == total
    assert _count(f) == (total, []) and is_complete(f)


@pytest.mark.parametrize("delta", [1, 2, 9])
def test_message_index_one_byte_too_long_does_not_hide_the_next_chunk(
    tmp_path: Path, small_bag: Path, delta: int
) -> None:
    """A message index whose length field grew a little still parses (MCAP lets records grow), so the
    scan steps into the next chunk's header; the resync must still find that chunk, not skip past it."""
    bag = _copy(small_bag, tmp_path / "bag")
    f = bag_files(bag)[0]
    total, _ = _count(f)
    data = bytearray(f.read_bytes())
    recs = _records(bytes(data))
    before_chunk = [r for r, nxt in zip(recs, recs[1:], strict=False) if r[1] == 0x07 and nxt[1] == 0x06]
    assert before_chunk
    for off, _, n in before_chunk:
        data[off + 1 : off + 9] = struct.pack("<Q", n + delta)
    f.write_bytes(bytes(data))
    got, problems = _count(f)
    assert got == total and got >= _plain_count(f, crcs=True), problems


def test_footerless_bag_with_damage_in_the_middle_recovers_what_resync_reads(
    tmp_path: Path, small_bag: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bag = _copy(small_bag, tmp_path / "bag")
    f = bag_files(bag)[0]
    data = f.read_bytes()
    recs = _records(data)
    data_end = next(r[0] for r in recs if r[1] == 0x0F)
    chunks = [r for r in recs if r[1] == 0x06]
    cut = bytearray(data[:data_end])  # a killed recording: no summary, no footer
    off, _, n = chunks[1]
    cut[off + 1 : off + 9] = struct.pack("<Q", 12345678)  # wrong length ...
    cut[off + n - 40 : off + n - 8] = bytes(32)  # ... and a damaged payload: this chunk is lost
    f.write_bytes(bytes(cut))
    before, problems = _count(f)
    assert before > _plain_count(f) and before >= 16, problems
    assert main(["bag", "recover", "--no-backup", str(bag)]) == 0
    assert _count(f) == (before, []) and is_complete(f)
    assert read_metadata(bag)["message_count"] == before
    assert "messages kept in recovered files: " + str(before) in capsys.readouterr().out


def test_recover_keeps_the_input_when_the_rewrite_does_not_verify(
    tmp_path: Path, small_bag: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    recover_mod = sys.modules["refscale_model.bags.recover"]

    bag = _copy(small_bag, tmp_path / "bag")
    f = bag_files(bag)[0]
    data = f.read_bytes()
    f.write_bytes(data[: len(data) * 2 // 3])
    original = f.read_bytes()
    real = recover_mod._rewrite

    def lossy(src: Path, dst: Path, chunk_size: int) -> tuple[int, list[str]]:
        count, problems = real(src, dst, chunk_size)
        dst.write_bytes(dst.read_bytes()[:200])  # a rewrite that lost messages
        return count, problems

    monkeypatch.setattr(recover_mod, "_rewrite", lossy)
    assert main(["bag", "recover", "--no-backup", str(bag)]) == 1
    err = capsys.readouterr().err
    assert "left untouched" in err and "Traceback" not in err
    assert f.read_bytes() == original and not list(bag.glob(".*recovering"))


# -- item 3: one split file cut inside its first metadata record ---------------------------------------------------
@pytest.mark.parametrize("into", [11, 20, 30])
def test_split_file_cut_in_its_metadata_record_fails_alone(
    tmp_path: Path, split_bag: Path, world: World, capsys: pytest.CaptureFixture[str], into: int
) -> None:
    bag = _copy(split_bag, tmp_path / "bag")
    files = bag_files(bag)
    per_file = [_count(f)[0] for f in files]
    data = files[1].read_bytes()
    meta = next(r for r in _records(data) if r[1] == 0x0C)
    assert meta[2] > into
    files[1].write_bytes(data[: meta[0] + into])
    got, problems = _count(bag)
    assert got == sum(per_file) - per_file[1]
    assert any(p.startswith(files[1].name) and "ends early" in p for p in problems)

    assert main(["bag", "info", str(bag)]) == 1
    out = capsys.readouterr().out
    assert "TRUNCATED" in out and "problem:" in out
    metas = sum(1 for m in BagReader(bag).raw_messages() if m.topic.endswith("/refscale/meta"))
    assert metas > 0 and _frames(bag, world) == metas
    assert main(["bag", "recover", str(bag)]) == 0
    assert _count(bag) == (got, [])
    assert read_metadata(bag)["message_count"] == got


# -- item 7: full disk, broken metadata.yaml -----------------------------------------------------------------------
_FSIZE = textwrap.dedent(
    """
    import resource, signal, sys
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), int(sys.argv[2])))
    from refscale_model.cli import main
    sys.exit(main(["bag", "recover", "--no-backup", sys.argv[1]]))
    """
)


def _mount_tmpfs(where: Path, size: int) -> bool:
    where.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
    return r.returncode == 0


def test_recover_on_a_full_disk_leaves_the_input_untouched(tmp_path: Path, small_bag: Path) -> None:
    """A real full disk (a tmpfs just larger than the bag) when we may mount one, else RLIMIT_FSIZE (EFBIG)."""
    src = bag_files(small_bag)[0].read_bytes()
    cut = src[: len(src) * 3 // 4]
    size = len(cut) + 40_000  # the bag fits, its rewrite does not
    mnt = tmp_path / "mnt"
    mounted = _mount_tmpfs(mnt, size)
    try:
        bag = mnt / "bag"
        bag.mkdir()
        (bag / "metadata.yaml").write_bytes((small_bag / "metadata.yaml").read_bytes())
        f = bag / bag_files(small_bag)[0].name
        f.write_bytes(cut)
        if mounted:
            st = os.statvfs(mnt)
            (mnt / "filler").write_bytes(b"\0" * (st.f_bavail * st.f_frsize - 8192))  # 8 KiB left
            argv = [
                sys.executable,
                "-c",
                "import sys; from refscale_model.cli import main; sys.exit(main(sys.argv[1:]))",
            ]
            argv += ["bag", "recover", "--no-backup", str(bag)]
        else:
            argv = [sys.executable, "-c", _FSIZE, str(bag), str(len(cut) // 3)]
        r = subprocess.run(argv, capture_output=True, text=True, env=ENV, timeout=120)
        assert r.returncode == 1, (mounted, r.stdout, r.stderr)
        assert "Traceback" not in r.stderr and "left untouched" in r.stderr
        assert ("No space left" if mounted else "too large") in r.stderr, r.stderr
        assert f.read_bytes() == cut and not list(bag.glob(".*recovering"))
    finally:
        if mounted:
            subprocess.run(["umount", str(mnt)], check=False)


@pytest.mark.parametrize(
    "content",
    [
        b"\x89\xff" + random.Random(3).randbytes(300),
        b"- a\n- b\n",
        b"rosbag2_bagfile_information: [1, 2]\n",
    ],
    ids=["random-bytes", "yaml-list", "info-is-a-list"],
)
def test_broken_metadata_yaml_is_no_traceback(
    tmp_path: Path, small_bag: Path, content: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    bag = _copy(small_bag, tmp_path / "bag")
    (bag / "metadata.yaml").write_bytes(content)
    assert main(["bag", "info", str(bag)]) == 1
    out = capsys.readouterr().out
    assert "36 msgs" not in out and "problem: metadata.yaml is unreadable" in out
    assert main(["bag", "recover", str(bag)]) == 0
    assert read_metadata(bag)["message_count"] == 36  # rebuilt from the files
    assert main(["bag", "info", str(bag)]) == 0
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "metadata.yaml").write_bytes(content)
    assert main(["bag", "recover", str(empty)]) == 2
    assert main(["bag", "info", str(empty)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 2


# -- randomised fault injection ------------------------------------------------------------------------------------
def _corrupt(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    buf = bytearray(data)
    recs = _records(data)
    kind = rng.choice(["flip", "zero", "truncate", "length", "flip+truncate"])
    if kind in ("flip", "flip+truncate"):
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
    if kind == "zero":
        i, n = rng.randrange(len(buf)), rng.randint(1, 400)
        buf[i : i + n] = bytes(len(buf[i : i + n]))
    if kind == "length":
        off, _, n = rng.choice(recs)
        new = rng.choice([0, n + 1, n - 1, rng.randrange(1 << 40), rng.randrange(len(buf))])
        buf[off + 1 : off + 9] = struct.pack("<Q", max(0, new))
    if kind in ("truncate", "flip+truncate"):
        buf = buf[: rng.randrange(8, len(buf))]
    return bytes(buf), kind


def test_randomised_fault_injection(tmp_path: Path, small_bag: Path) -> None:
    rng = random.Random(20240611)
    src = bag_files(small_bag)[0]
    data = src.read_bytes()
    kinds: dict[str, int] = {}
    for i in range(60):
        damaged, kind = _corrupt(data, rng)
        kinds[kind] = kinds.get(kind, 0) + 1
        bag = tmp_path / f"b{i}"
        bag.mkdir()
        f = bag / src.name
        f.write_bytes(damaged)
        shutil.copy(small_bag / "metadata.yaml", bag / "metadata.yaml")
        resynced, _ = _count(f)
        plain = _plain_count(f, crcs=True)
        assert resynced >= plain, (i, kind, resynced, plain)
        report = recover(bag, keep_backup=False)
        after, problems = _count(f)
        if report.ok:
            assert after >= resynced and not problems, (i, kind, after, resynced, problems)
            assert is_complete(f)
        else:  # the input stays as it was
            assert f.read_bytes() == damaged and after == resynced, (i, kind, report.errors)
        shutil.rmtree(bag)
    assert len(kinds) == 5 and sum(kinds.values()) >= 50


@pytest.mark.parametrize("footer", [True, False], ids=["with-index", "killed-recording"])
def test_chunk_header_wiped_later_chunks_still_read(tmp_path: Path, small_bag: Path, footer: bool) -> None:
    """A chunk whose opcode and length are zeroed: with a summary it is read via the chunk index; without one,
    only its messages are lost, the chunks after it are read, and the skipped range is named."""
    f = _copy(small_bag, tmp_path / "bag") / bag_files(small_bag)[0].name
    data = full = f.read_bytes()
    recs = _records(data)
    if not footer:
        data = data[: next(r[0] for r in recs if r[1] == 0x0F)]
    buf = bytearray(data)
    off = [r for r in recs if r[1] == 0x06][2][0]
    buf[off : off + 9] = bytes(9)
    f.write_bytes(bytes(buf))
    got, problems = _count(f)
    chunks = [r for r in StreamReader(io.BytesIO(full), emit_chunks=True).records if isinstance(r, Chunk)]
    lost = sum(isinstance(r, Message) for r in breakup_chunk(chunks[2]))
    assert lost > 0
    if footer:
        assert got == 36 and any(f"chunk at byte {off} has a damaged header; read via the index" in p for p in problems)
    else:
        assert got == 36 - lost and any(f"bytes {off}.." in p and "skipped" in p for p in problems)
