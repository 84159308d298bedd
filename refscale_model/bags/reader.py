"""Read rosbag2 MCAP bags (a bag directory or one `.mcap`), tolerating truncated files.

Why a streaming reader: a recording killed mid-write has no summary or footer, which the indexed
readers need. Reading records front to back yields every chunk that was written completely (its
CRC is checked). A damaged or cut record does not end the read: `resync.Scanner` skips to the next
record that checks out, so intact chunks after the damage are still read; every skipped byte range
is reported in `problems`. Each split file is read on its own: one broken file never hides another.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from mcap.records import Channel, Header, Message, Metadata, Schema
from mcap.well_known import MessageEncoding
from mcap_ros2.decoder import DecoderFactory

from .resync import Scanner, open_mapped, read_summary
from .rosbag2_meta import read_metadata


class BagMessage(NamedTuple):
    """One decoded message: `for topic, log_time_ns, msg in read_messages(path): ...`."""

    topic: str
    log_time_ns: int
    msg: Any


@dataclass(frozen=True)
class RawMessage:
    """One message as stored: CDR bytes plus what is needed to decode or copy it elsewhere."""

    topic: str
    type_name: str
    log_time_ns: int
    publish_time_ns: int
    sequence: int
    data: bytes
    schema: Schema
    channel: Channel

    @property
    def qos(self) -> str | None:
        return self.channel.metadata.get("offered_qos_profiles")


@dataclass
class TopicInfo:
    type_name: str
    msgdef: str
    qos: str | None
    count: int = 0


_SPLIT_INDEX = re.compile(r"_(\d+)\.mcap$")


def bag_files(path: str | Path) -> list[Path]:
    """The .mcap files of a bag: the file itself, or a directory's files in split order.

    Files listed in metadata.yaml come first (their order), then any other `*.mcap` present: a
    recording killed before updating metadata.yaml still has its last file read.
    """
    p = Path(path)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise FileNotFoundError(f"no bag at {p}")
    listed: list[Path] = []
    try:
        meta = read_metadata(p)
        names = meta.get("relative_file_paths") if isinstance(meta, dict) else None
        if isinstance(names, list):
            listed = [p / Path(str(x)).name for x in names if (p / Path(str(x)).name).is_file()]
    except (ValueError, OSError):  # metadata.yaml of random bytes: fall back to the files present
        listed = []
    listed = list(dict.fromkeys(listed))

    def key(f: Path) -> tuple[int, str]:
        m = _SPLIT_INDEX.search(f.name)
        return (int(m.group(1)) if m else 1 << 30, f.name)

    extra = sorted((f for f in p.glob("*.mcap") if f not in listed), key=key)
    files = listed + extra
    if not files:
        raise FileNotFoundError(f"{p} contains no .mcap files")
    return files


class BagReader:
    """Iterate a bag's messages in file order; see `messages()` and `raw_messages()`.

    After a full iteration, `problems` lists every file that ended early (and how), `metadata`
    holds the MCAP metadata records and `topics` what was seen per topic.
    """

    def __init__(self, path: str | Path, *, validate_crcs: bool = True) -> None:
        self.path = Path(path)
        self.files = bag_files(self.path)
        self.validate_crcs = validate_crcs
        self.problems: list[str] = []
        self.metadata: dict[str, dict[str, str]] = {}
        self.topics: dict[str, TopicInfo] = {}
        self.headers: list[Header] = []
        self._decoders = DecoderFactory()
        self._decoder_cache: dict[tuple[str, str], Callable[[bytes], Any]] = {}

    def raw_messages(self, topics: Iterable[str] | None = None) -> Iterator[RawMessage]:
        wanted = set(topics) if topics is not None else None
        self.problems.clear()
        self.topics.clear()
        self.metadata.clear()
        self.headers.clear()
        for f in self.files:
            yield from self._file_messages(f, wanted)

    def messages(self, topics: Iterable[str] | None = None) -> Iterator[BagMessage]:
        for raw in self.raw_messages(topics):
            yield BagMessage(raw.topic, raw.log_time_ns, self.decode(raw))

    def decode(self, raw: RawMessage) -> Any:
        """Decode CDR with the schema stored in the bag (no ROS install needed)."""
        key = (raw.schema.name, raw.schema.data.decode(errors="replace"))
        fn = self._decoder_cache.get(key)
        if fn is None:
            fn = self._decoders.decoder_for(MessageEncoding.CDR, raw.schema)
            if fn is None:
                raise ValueError(f"{raw.topic}: cannot decode schema encoding {raw.schema.encoding!r}")
            self._decoder_cache[key] = fn
        return fn(raw.data)

    def scan(self) -> BagReader:
        """Read everything once (without decoding) to fill `topics`, `metadata`, `problems`."""
        for _ in self.raw_messages():
            pass
        return self

    def _file_messages(self, path: Path, wanted: set[str] | None) -> Iterator[RawMessage]:
        """Every message of one file; damage is skipped (see `resync.Scanner`) and noted in `problems`."""
        schemas: dict[int, Schema] = {}
        channels: dict[int, Channel] = {}
        try:
            data = open_mapped(path)
        except OSError as exc:
            self.problems.append(f"{path.name}: cannot be read ({exc.strerror or exc}); skipped")
            return
        summary = read_summary(path)
        hints: list[Any] = []
        if summary is not None:  # the summary's schemas/channels also decode messages whose chunk lost them
            for rec in [*summary.schemas.values(), *summary.channels.values()]:
                self._handle(rec, schemas, channels, wanted)
            hints = list(summary.chunk_indexes)
        scanner = Scanner(data, path.name, validate_crcs=self.validate_crcs, hints=hints)
        unknown: dict[int, int] = {}
        try:
            for item in scanner.records():
                for rec in item.inner if item.inner is not None else [item.record]:
                    if isinstance(rec, Message) and rec.channel_id not in channels:
                        unknown[rec.channel_id] = unknown.get(rec.channel_id, 0) + 1
                        continue
                    msg = self._handle(rec, schemas, channels, wanted)
                    if msg is not None:
                        yield msg
        finally:
            self.problems.extend(scanner.problems)
            for cid, n in unknown.items():
                self.problems.append(
                    f"{path.name}: {n} messages on channel {cid} skipped (its channel record was lost)"
                )
            if hasattr(data, "close"):
                data.close()

    def _handle(
        self, rec: Any, schemas: dict[int, Schema], channels: dict[int, Channel], wanted: set[str] | None
    ) -> RawMessage | None:
        if isinstance(rec, Schema):
            schemas[rec.id] = rec
        elif isinstance(rec, Channel):
            channels[rec.id] = rec
            schema = schemas.get(rec.schema_id)
            if rec.topic not in self.topics and schema is not None:
                try:
                    msgdef = bytes(schema.data).decode()
                except UnicodeDecodeError:  # salvaged from a damaged chunk: keep the messages, note it
                    msgdef = bytes(schema.data).decode(errors="replace")
                    self.problems.append(f"schema of {rec.topic} is damaged (not UTF-8); its definition is unreliable")
                self.topics[rec.topic] = TopicInfo(schema.name, msgdef, rec.metadata.get("offered_qos_profiles"))
        elif isinstance(rec, Metadata):
            self.metadata[rec.name] = dict(rec.metadata)
        elif isinstance(rec, Header):
            self.headers.append(rec)
        elif isinstance(rec, Message):
            channel = channels.get(rec.channel_id)
            if channel is None:
                self.problems.append(f"message on unknown channel {rec.channel_id} skipped")
                return None
            info = self.topics.get(channel.topic)
            if info is not None:
                info.count += 1
            if wanted is not None and channel.topic not in wanted:
                return None
            schema = schemas.get(channel.schema_id)
            if schema is None:
                self.problems.append(f"message on {channel.topic} without its schema skipped")
                return None
            return RawMessage(
                channel.topic,
                schema.name,
                rec.log_time,
                rec.publish_time,
                rec.sequence,
                bytes(rec.data),
                schema,
                channel,
            )
        return None


def _summary_or_none(path: Path) -> Any:
    from mcap.reader import make_reader

    try:
        with open(path, "rb") as fh:
            fh.seek(-8, 2)
            if fh.read(8) != b"\x89MCAP0\r\n":
                return None
            fh.seek(0)
            reader = make_reader(fh)
            summary = reader.get_summary()
            metadata = {m.name: dict(m.metadata) for m in reader.iter_metadata()} if summary else {}
            return (summary, metadata) if summary is not None else None
    except Exception:  # noqa: BLE001 - a damaged summary or index: fall back to a full scan
        return None


def metadata_of(path: str | Path) -> dict[str, dict[str, str]]:
    """MCAP metadata records of a bag, via the index when files are complete (no full read)."""
    out: dict[str, dict[str, str]] = {}
    for f in bag_files(path):
        found = _summary_or_none(f)
        records = found[1] if found is not None else BagReader(f).scan().metadata
        for name, data in records.items():
            out.setdefault(name, data)
    return out


def topics_of(path: str | Path) -> dict[str, str]:
    """topic -> type name of a bag, via the index when files are complete (no full read)."""
    out: dict[str, str] = {}
    for f in bag_files(path):
        found = _summary_or_none(f)
        if found is None:
            out.update({t: i.type_name for t, i in BagReader(f).scan().topics.items()})
            continue
        summary = found[0]
        for ch in summary.channels.values():
            schema = summary.schemas.get(ch.schema_id)
            out.setdefault(ch.topic, schema.name if schema else "")
    return out


def read_messages(path: str | Path, topics: Iterable[str] | None = None) -> Iterator[BagMessage]:
    """Shortcut: decoded `(topic, log_time_ns, msg)` of a bag directory or a single .mcap file."""
    yield from BagReader(path).messages(topics)


@dataclass
class BagSummary:
    """What `refscale bag info` prints."""

    files: list[Path]
    topics: dict[str, TopicInfo] = field(default_factory=dict)
    metadata: dict[str, dict[str, str]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    start_ns: int = 0
    end_ns: int = 0
    bytes_on_disk: int = 0


def summarize(path: str | Path) -> BagSummary:
    reader = BagReader(path)
    start, end = None, None
    for raw in reader.raw_messages():
        start = raw.log_time_ns if start is None else min(start, raw.log_time_ns)
        end = raw.log_time_ns if end is None else max(end, raw.log_time_ns)
    problems = list(reader.problems)
    p = Path(path)
    if p.is_dir() and (p / "metadata.yaml").exists():
        try:
            meta = read_metadata(p)
        except (ValueError, OSError):
            meta = None
        if not isinstance(meta, dict):
            problems.append("metadata.yaml is unreadable or not rosbag2 metadata; `refscale bag recover` rebuilds it")
    return BagSummary(
        files=reader.files,
        topics=reader.topics,
        metadata=reader.metadata,
        problems=problems,
        start_ns=start or 0,
        end_ns=end or 0,
        bytes_on_disk=sum(f.stat().st_size for f in reader.files),
    )
