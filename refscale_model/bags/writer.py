"""rosbag2-compatible MCAP bag writer: a bag directory of split `.mcap` files plus `metadata.yaml`.

Why `mcap` + `mcap-ros2-support` (and not `rosbags`' writer): the official MCAP library gives us
chunking, zstd, channel user-data (`offered_qos_profiles`), MCAP metadata records and a
streaming reader that survives truncated files, and mcap-ros2-support encodes CDR from the schema
text alone, so no ROS install is needed. `rosbags` stays a test-time cross-check.

Crash safety: every finished chunk is handed to the kernel at once (no user-space buffering), so
a SIGKILL loses at most the chunk being filled; `flush()` closes that chunk early. A write error
(disk full, file-size limit) raises `BagWriteError`, stops the writer, and leaves every earlier
chunk readable (see `reader.BagReader` and `recover.recover`).
"""

from __future__ import annotations

import array
import dataclasses
import errno as errno_mod
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np
from mcap.well_known import MessageEncoding, SchemaEncoding
from mcap.writer import CompressionType
from mcap.writer import Writer as McapWriter
from mcap_ros2._dynamic import serialize_dynamic  # CDR encoder from schema text (as mcap_ros2.Writer uses)

from .msgdefs import complete_definition
from .rosbag2_meta import BagStats, FileStats, TopicStats, qos_profiles_yaml, write_metadata

LIBRARY = "refscale-bags/1"


class BagWriteError(OSError):
    """Writing the bag failed (disk full, size limit, I/O error); the writer is stopped.

    Everything written before the failing chunk stays readable.
    """


class _FlushingFile:
    """Binary file wrapper: every write goes to the kernel at once and is counted.

    mcap's writer emits a whole chunk (plus its indexes) in one write, so flushing per write
    means a killed process never loses a completed chunk to a user-space buffer.
    """

    def __init__(self, path: Path) -> None:
        self._fh: IO[bytes] = open(path, "xb")  # noqa: SIM115 - closed in close()
        self.bytes = 0

    def write(self, data: bytes) -> int:
        n = self._fh.write(data)
        self._fh.flush()
        self.bytes += len(data)
        return n

    def tell(self) -> int:
        return self.bytes

    def close(self) -> None:
        self._fh.close()


def to_plain(obj: Any) -> Any:
    """Any message-like object (rclpy, mcap_ros2-decoded, rosbags, dataclass, dict) -> dicts/lists/bytes.

    The CDR encoder accepts dicts, lists, bytes and array('B'); rclpy and rosbags use numpy arrays
    for fixed-size fields, so everything is normalised once here.
    """
    if obj is None or isinstance(obj, (bool, int, float, str, bytes)):
        return obj
    if isinstance(obj, np.ndarray):
        return obj.tobytes() if obj.dtype == np.uint8 else obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (bytearray, memoryview)):
        return bytes(obj)
    if isinstance(obj, array.array):
        return obj.tobytes() if obj.typecode == "B" else obj.tolist()
    if isinstance(obj, Mapping):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    fields = getattr(obj, "get_fields_and_field_types", None)  # rclpy message
    if callable(fields):
        return {name: to_plain(getattr(obj, name)) for name in fields()}
    if dataclasses.is_dataclass(obj):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    slots = getattr(type(obj), "__slots__", None)  # mcap_ros2-decoded message
    if slots:
        return {name: to_plain(getattr(obj, name)) for name in slots if not name.startswith("_")}
    if hasattr(obj, "__dict__"):
        return {k: to_plain(v) for k, v in vars(obj).items() if not k.startswith("_")}
    raise TypeError(f"cannot serialise {type(obj).__name__} as a ROS message field")


@dataclasses.dataclass
class _Topic:
    type_name: str
    msgdef: str
    qos: str
    encoder: Callable[[Any], bytes] | None = None


class BagWriter:
    """Write a rosbag2 MCAP bag directory (see the package docstring for an example).

    `split_max_bytes` / `split_max_duration_s` start a new `<name>_<i>.mcap` when exceeded;
    inside `with writer.group():` splitting waits until the group ends, so the messages of one
    frame always share a file. Thread-safe: one lock around every write.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        split_max_bytes: int | None = None,
        split_max_duration_s: float | None = None,
        chunk_size: int = 1 << 20,
        compression: str = "zstd",
        custom_data: Mapping[str, str] | None = None,
        exist_ok: bool = False,
    ) -> None:
        self.path = Path(path)
        if self.path.suffix == ".mcap":
            raise ValueError(f"{self.path}: a bag is a directory (rosbag2 layout), not a .mcap file name")
        if self.path.exists() and (not exist_ok or any(self.path.iterdir())):
            raise FileExistsError(f"bag directory {self.path} already exists")
        self.path.mkdir(parents=True, exist_ok=True)
        self.split_max_bytes = split_max_bytes
        self.split_max_duration_ns = None if split_max_duration_s is None else int(split_max_duration_s * 1e9)
        self.chunk_size = chunk_size
        self._compression = {"zstd": CompressionType.ZSTD, "lz4": CompressionType.LZ4, "none": CompressionType.NONE}[
            compression
        ]
        self._topics: dict[str, _Topic] = {}
        self._metadata: list[tuple[str, dict[str, str]]] = []
        self._stats = BagStats(custom_data=dict(custom_data or {}))
        self._lock = threading.RLock()
        self._group_depth = 0
        self._group_fresh = False
        self._error: BagWriteError | None = None
        self._closed = False
        self._file: _FlushingFile | None = None
        self._mcap: McapWriter | None = None
        self._schema_ids: dict[str, int] = {}
        self._channel_ids: dict[str, int] = {}
        self._pending_bytes = 0  # uncompressed bytes in the chunk being filled (an upper bound)
        self._bytes_at_last_write = 0
        self._guard(self._open_next)

    # -- public API ---------------------------------------------------------------------------
    @property
    def files(self) -> list[Path]:
        return [self.path / f.path for f in self._stats.files]

    @property
    def bytes_written(self) -> int:
        """Bytes handed to the OS so far, over all split files."""
        closed = sum((self.path / f.path).stat().st_size for f in self._stats.files[:-1])
        return closed + (self._file.bytes if self._file else 0)

    @property
    def message_count(self) -> int:
        return sum(f.count for f in self._stats.files)

    @property
    def failed(self) -> BagWriteError | None:
        return self._error

    def add_topic(self, topic: str, type_name: str, *, msgdef: str | None = None, qos: str | None = None) -> None:
        """Declare a topic; `msgdef` defaults to our built-in standard definition of `type_name`."""
        with self._lock:
            if topic in self._topics:
                if self._topics[topic].type_name != type_name:
                    raise ValueError(f"{topic}: already registered as {self._topics[topic].type_name}")
                return
            text = msgdef if msgdef is not None else complete_definition(type_name)
            self._topics[topic] = _Topic(type_name, text, qos or qos_profiles_yaml())
            self._stats.topics[topic] = TopicStats(topic, type_name, self._topics[topic].qos)

    def set_custom_data(self, key: str, value: str) -> None:
        """A `custom_data` entry of metadata.yaml (rosbag2's free key/value map), written at close."""
        with self._lock:
            self._stats.custom_data[str(key)] = str(value)

    def add_metadata(self, name: str, data: Mapping[str, str]) -> None:
        """Bag-level MCAP metadata record; repeated in every split file so each is self-describing."""
        entry = (name, {str(k): str(v) for k, v in data.items()})
        with self._lock:
            self._metadata.append(entry)
            self._guard(lambda: self._mcap.add_metadata(*entry))

    def write(
        self,
        topic: str,
        msg: Any,
        log_time_ns: int | None = None,
        *,
        type_name: str | None = None,
        publish_time_ns: int | None = None,
        sequence: int = 0,
    ) -> None:
        """Serialise `msg` (dict, rclpy or decoded message) as CDR and append it to `topic`."""
        with self._lock:
            if topic not in self._topics:
                if type_name is None:
                    raise KeyError(f"{topic}: unknown topic; call add_topic() or pass type_name")
                self.add_topic(topic, type_name)
            t = self._topics[topic]
            if t.encoder is None:
                t.encoder = serialize_dynamic(t.type_name, t.msgdef)[t.type_name]
            data = t.encoder(to_plain(msg))
            self.write_cdr(topic, data, log_time_ns, publish_time_ns=publish_time_ns, sequence=sequence)

    def write_cdr(
        self,
        topic: str,
        data: bytes,
        log_time_ns: int | None = None,
        *,
        publish_time_ns: int | None = None,
        sequence: int = 0,
    ) -> None:
        """Append an already CDR-serialised message (pass-through from another bag or rclpy)."""
        log_time = time.time_ns() if log_time_ns is None else int(log_time_ns)
        with self._lock:
            self._check_usable()
            if topic not in self._topics:
                raise KeyError(f"{topic}: unknown topic; call add_topic() first")
            if self._file is not None and self._file.bytes != self._bytes_at_last_write:
                self._pending_bytes = 0  # mcap wrote out the chunk that was pending
            if self._group_depth == 0 or self._group_fresh:
                self._maybe_split(log_time)
                self._group_fresh = False
            channel = self._channel(topic)
            self._guard(
                lambda: self._mcap.add_message(
                    channel_id=channel,
                    log_time=log_time,
                    data=data,
                    publish_time=log_time if publish_time_ns is None else int(publish_time_ns),
                    sequence=sequence,
                )
            )
            self._pending_bytes += len(data)
            self._bytes_at_last_write = self._file.bytes if self._file else 0
            self._stats.files[-1].add(log_time)
            self._stats.topics[topic].count += 1

    @contextmanager
    def group(self) -> Iterator[None]:
        """Keep the messages written inside in one split file (e.g. LR + S_map + metadata of a frame)."""
        with self._lock:
            self._group_depth += 1
            self._group_fresh = self._group_depth == 1  # a split may happen before its first message
            try:
                yield
            finally:
                self._group_depth -= 1

    def flush(self) -> None:
        """Close the chunk being filled now, so a crash cannot lose it (costs a little compression)."""
        with self._lock:
            self._check_usable()
            # mcap has no public "end chunk now"; this is the method its own finish() calls.
            self._guard(self._mcap._Writer__finalize_chunk)  # type: ignore[union-attr]
            self._pending_bytes = 0

    def close(self) -> None:
        """Finish the current file (summary, footer) and write the final metadata.yaml.

        After an earlier `BagWriteError` (already raised to the caller) this only releases the file
        and tries to update metadata.yaml; it raises only for a new failure during close.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            already_failed = self._error is not None
            if not already_failed:
                try:
                    self._finish_current()
                except OSError as exc:
                    self._error = self._wrap(exc)
            elif self._file is not None:
                try:
                    self._file.close()
                except OSError:
                    pass  # the buffered tail of the failed chunk cannot be written either
            try:
                write_metadata(self.path, self._stats)
            except OSError as exc:
                if self._error is None:
                    self._error = self._wrap(exc)
            if self._error is not None and not already_failed:
                raise self._error

    def __enter__(self) -> BagWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc is None:
            self.close()
        else:  # do not mask the original exception
            try:
                self.close()
            except OSError:
                pass

    # -- internals ----------------------------------------------------------------------------
    def _check_usable(self) -> None:
        if self._error is not None:
            raise BagWriteError(self._error.errno, f"bag writer stopped after an earlier error: {self._error}")
        if self._closed:
            raise ValueError(f"bag {self.path} is closed")

    def _wrap(self, exc: OSError) -> BagWriteError:
        code = exc.errno or errno_mod.EIO
        reason = {errno_mod.ENOSPC: "disk full", errno_mod.EFBIG: "file size limit reached"}.get(
            code, exc.strerror or str(exc)
        )
        current = self._stats.files[-1].path if self._stats.files else "?"
        return BagWriteError(code, f"writing {self.path / current} failed: {reason}")

    def _guard(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except OSError as exc:
            self._error = self._wrap(exc)
            raise self._error from exc

    def _open_next(self) -> None:
        name = f"{self.path.name}_{len(self._stats.files)}.mcap"
        self._stats.files.append(FileStats(name))
        self._file = _FlushingFile(self.path / name)
        self._mcap = McapWriter(self._file, chunk_size=self.chunk_size, compression=self._compression)
        self._mcap.start(profile="ros2", library=LIBRARY)
        self._schema_ids.clear()
        self._channel_ids.clear()
        self._pending_bytes = 0
        for name_, data in self._metadata:
            self._mcap.add_metadata(name_, data)
        write_metadata(self.path, self._stats)

    def _finish_current(self) -> None:
        assert self._mcap is not None and self._file is not None
        self._mcap.finish()
        self._file.close()

    def _channel(self, topic: str) -> int:
        cid = self._channel_ids.get(topic)
        if cid is None:
            t = self._topics[topic]
            sid = self._schema_ids.get(t.type_name)
            if sid is None:
                sid = self._guard(
                    lambda: self._mcap.register_schema(t.type_name, SchemaEncoding.ROS2, t.msgdef.encode())
                )
                self._schema_ids[t.type_name] = sid
            cid = self._guard(
                lambda: self._mcap.register_channel(
                    topic=topic,
                    message_encoding=MessageEncoding.CDR,
                    schema_id=sid,
                    metadata={"offered_qos_profiles": t.qos},
                )
            )
            self._channel_ids[topic] = cid
        return cid

    def _maybe_split(self, log_time: int) -> None:
        current = self._stats.files[-1]
        if current.count == 0:
            return
        too_big = (
            self.split_max_bytes is not None
            and self._file is not None
            and self._file.bytes + self._pending_bytes >= self.split_max_bytes
        )
        too_long = self.split_max_duration_ns is not None and log_time - current.start_ns >= self.split_max_duration_ns
        if too_big or too_long:
            self._guard(self._finish_current)
            self._guard(self._open_next)
