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


@dataclass
class RecoverReport:
    """What `recover` did, per file."""

    rewritten: list[Path] = field(default_factory=list)
    already_valid: list[Path] = field(default_factory=list)
    messages_kept: int = 0
    bytes_dropped: int = 0
    problems: list[str] = field(default_factory=list)
    metadata_rewritten: bool = False


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


def recover(path: str | Path, *, keep_backup: bool = True, chunk_size: int = 1 << 20) -> RecoverReport:
    """Rewrite every incomplete .mcap of a bag (directory or single file) into a valid one.

    The original of a rewritten file is kept as `<name>.mcap.truncated` unless `keep_backup` is
    False. For a directory, metadata.yaml is then rebuilt from the files' real contents.
    """
    p = Path(path)
    report = RecoverReport()
    for f in bag_files(p):
        if is_complete(f):
            report.already_valid.append(f)
            continue
        tmp = f.with_name(f".{f.name}.recovering")
        tmp.unlink(missing_ok=True)
        count, problems = _rewrite(f, tmp, chunk_size)
        report.messages_kept += count
        report.problems += problems
        report.bytes_dropped += max(0, f.stat().st_size - tmp.stat().st_size)
        if keep_backup:
            os.replace(f, f.with_name(f.name + ".truncated"))
        os.replace(tmp, f)
        report.rewritten.append(f)
    if p.is_dir():
        write_metadata(p, _stats_from_files(p))
        report.metadata_rewritten = True
    return report


def _stats_from_files(bag_dir: Path) -> BagStats:
    """Rebuild metadata.yaml counters by reading the (now valid) files, keeping the old custom_data."""
    old = read_metadata(bag_dir) or {}
    stats = BagStats(custom_data=dict(old.get("custom_data") or {}))
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


__all__ = ["recover", "is_complete", "RecoverReport"]
