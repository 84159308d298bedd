"""Make a bag whose recording was killed (or ran out of disk) valid for every reader again.

Why rewrite rather than patch: a truncated MCAP lacks the data-end record, summary and footer
that indexed readers (`ros2 bag`, Foxglove, `rosbags`) need. We stream out every complete chunk
with `BagReader`, write the same schemas, channels, metadata and messages into a fresh, finished
file, swap it in atomically, and then rebuild metadata.yaml from what the files really hold (as
`ros2 bag reindex` does).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from mcap.exceptions import McapError
from mcap.reader import make_reader
from mcap.writer import CompressionType
from mcap.writer import Writer as McapWriter

from .reader import BagReader, bag_files
from .rosbag2_meta import BagStats, FileStats, TopicStats, qos_profiles_yaml, read_metadata, write_metadata
from .writer import LIBRARY


def is_complete(path: str | Path) -> bool:
    """True when an .mcap file has its footer and a readable summary (indexed readers will open it)."""
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            if p.stat().st_size < 16:
                return False
            fh.seek(-8, os.SEEK_END)
            if fh.read(8) != b"\x89MCAP0\r\n":
                return False
            fh.seek(0)
            return make_reader(fh).get_summary() is not None
    except (McapError, OSError, ValueError, EOFError):
        return False


class RecoverError(OSError):
    """A file could not be recovered safely; its original was left untouched."""


@dataclass
class RecoverReport:
    """What `recover` did, per file."""

    rewritten: list[Path] = field(default_factory=list)
    already_valid: list[Path] = field(default_factory=list)
    failed: list[Path] = field(default_factory=list)
    messages_kept: int = 0
    bytes_dropped: int = 0
    problems: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    metadata_rewritten: bool = False

    @property
    def ok(self) -> bool:
        return not self.errors


def _count(path: Path) -> tuple[int, list[str], bool]:
    """Messages the resyncing reader gets from a file, its problems, and whether it found an MCAP header."""
    reader = BagReader(path)
    n = sum(1 for _ in reader.raw_messages())
    return n, list(reader.problems), bool(reader.headers)


def recover(path: str | Path, *, keep_backup: bool = True, chunk_size: int = 1 << 20) -> RecoverReport:
    """Rewrite every incomplete or damaged .mcap of a bag (directory or single file) into a valid one.

    A file needs a rewrite when it lacks a footer/summary *or* when reading it hits damage (a file
    with a footer can still hold a broken record). The rewrite goes to a temporary name, is read
    back, and replaces the original only if it holds at least the messages the resyncing reader got
    from the original; otherwise (or on a write error such as ENOSPC) the original stays as it was
    and the failure is listed in `errors`. The original of a rewritten file is kept as
    `<name>.mcap.truncated` unless `keep_backup` is False. For a directory, metadata.yaml is then
    rebuilt from the files' real contents.
    """
    p = Path(path)
    report = RecoverReport()
    for f in bag_files(p):
        before, problems, has_header = _count(f)
        if not problems and is_complete(f):
            report.already_valid.append(f)
            continue
        report.problems += problems
        if before == 0 and not has_header:
            report.failed.append(f)
            report.errors.append(
                f"{f.name}: not recovered (no MCAP record readable in it); the file was left untouched"
            )
            continue
        try:
            count, dropped = _rewrite_verified(f, before, keep_backup, chunk_size)
        except OSError as exc:  # RecoverError, ENOSPC, EFBIG, EIO, ...
            report.failed.append(f)
            why = str(exc) if isinstance(exc, RecoverError) or not exc.strerror else exc.strerror
            report.errors.append(f"{f.name}: not recovered ({why}); the original file was left untouched")
            continue
        report.messages_kept += count
        report.bytes_dropped += dropped
        report.rewritten.append(f)
    if p.is_dir():
        try:
            write_metadata(p, _stats_from_files(p))
            report.metadata_rewritten = True
        except OSError as exc:
            report.errors.append(f"metadata.yaml not rewritten ({exc.strerror or exc})")
    return report


def _rewrite(src: Path, dst: Path, chunk_size: int) -> tuple[int, list[str]]:
    """Copy every readable message of `src` into a finished MCAP at `dst`; returns (count, problems)."""
    reader = BagReader(src)
    profile = "ros2"
    count = 0
    with open(dst, "xb") as fh:
        out = McapWriter(fh, chunk_size=chunk_size, compression=CompressionType.ZSTD)
        schema_ids: dict[tuple[str, bytes], int] = {}
        channel_ids: dict[int, int] = {}
        started = False
        for raw in reader.raw_messages():
            if not started:
                if reader.headers:
                    profile = reader.headers[0].profile or profile
                out.start(profile=profile, library=f"{LIBRARY} (recovered)")
                started = True
            if raw.channel.id not in channel_ids:
                key = (raw.schema.name, raw.schema.data)
                if key not in schema_ids:
                    schema_ids[key] = out.register_schema(raw.schema.name, raw.schema.encoding, raw.schema.data)
                channel_ids[raw.channel.id] = out.register_channel(
                    topic=raw.topic,
                    message_encoding=raw.channel.message_encoding,
                    schema_id=schema_ids[key],
                    metadata=dict(raw.channel.metadata),
                )
            out.add_message(
                channel_id=channel_ids[raw.channel.id],
                log_time=raw.log_time_ns,
                data=raw.data,
                publish_time=raw.publish_time_ns,
                sequence=raw.sequence,
            )
            count += 1
        if not started:
            out.start(profile=profile, library=f"{LIBRARY} (recovered)")
        for name, data in reader.metadata.items():
            out.add_metadata(name, data)
        out.finish()
        fh.flush()
        os.fsync(fh.fileno())
    return count, list(reader.problems)


def _rewrite_verified(f: Path, before: int, keep_backup: bool, chunk_size: int) -> tuple[int, int]:
    """Rewrite `f` via a temporary file that is verified before it replaces `f`.

    Returns (messages in the new file, bytes dropped). On any failure the temporary file is removed
    and `f` is untouched.
    """
    tmp = f.with_name(f".{f.name}.recovering")
    tmp.unlink(missing_ok=True)
    try:
        count, _ = _rewrite(f, tmp, chunk_size)
        after, out_problems, _ = _count(tmp)
        want = max(before, count)
        if out_problems or after < want:
            detail = f": {out_problems[0]}" if out_problems else ""
            raise RecoverError(f"the rewritten file reads back {after} messages, expected {want}{detail}")
        dropped = max(0, f.stat().st_size - tmp.stat().st_size)
        if keep_backup:
            backup = f.with_name(f.name + ".truncated")
            backup.unlink(missing_ok=True)
            os.link(f, backup)  # the original stays reachable at every instant
        os.replace(tmp, f)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return after, dropped


def _stats_from_files(bag_dir: Path) -> BagStats:
    """Rebuild metadata.yaml counters by reading the (now valid) files, keeping the old custom_data."""
    try:
        old = read_metadata(bag_dir)
    except (ValueError, OSError):  # metadata.yaml of random bytes
        old = None
    custom = old.get("custom_data") if isinstance(old, dict) else None
    stats = BagStats(custom_data={str(k): str(v) for k, v in custom.items()} if isinstance(custom, dict) else {})
    for f in bag_files(bag_dir):
        fstats = FileStats(f.name)
        reader = BagReader(f)
        for raw in reader.raw_messages():
            fstats.add(raw.log_time_ns)
            t = stats.topics.get(raw.topic)
            if t is None:
                t = stats.topics[raw.topic] = TopicStats(raw.topic, raw.type_name, raw.qos or qos_profiles_yaml(), 0)
            t.count += 1
        stats.files.append(fstats)
    return stats


__all__ = ["recover", "is_complete", "RecoverReport", "RecoverError"]
