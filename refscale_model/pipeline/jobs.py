"""Whole-bag jobs: encode a raw bag into a RefScale bag, rebuild a RefScale bag into HR frames.

The CLI (`refscale encode-bag`, `refscale reconstruct`) and the fleet backend call these; they
return typed reports and never print, so every caller shows the same figures its own way.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import tempfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from refscale_model.bags import BagReader, BagWriter, RawMessage, bag_files, camera_topics, msgs
from refscale_model.io.images import encode_png
from refscale_model.pipeline.decoder import FrameFailure, ReconstructedFrame, Reconstructor
from refscale_model.pipeline.encoder import EncoderStats, FrameEncoder, FrameError
from refscale_model.pipeline.raw import iter_camera_frames

if TYPE_CHECKING:
    from refscale_model.backends.loader import Backend
    from refscale_model.refcache import ReferenceCache

Progress = Callable[[int], None]
"""Called with the number of messages (encode) or frames (reconstruct) just handled."""


def bytes_on_disk(path: str | Path) -> int:
    return sum(f.stat().st_size for f in bag_files(path))


@dataclass
class EncodeBagReport:
    """What `encode_bag` did: the encoder's counters plus what the raw bag lacked."""

    stats: EncoderStats
    frame_errors: list[str] = field(default_factory=list)
    missing_cameras: list[str] = field(default_factory=list)
    read_problems: list[str] = field(default_factory=list)
    bytes_in: int = 0
    bytes_out: int = 0


def encode_bag(
    raw_bag: str | Path,
    out: str | Path,
    backend: Backend,
    cameras: Iterable[str],
    *,
    cache: ReferenceCache | None = None,
    camera_ids: Mapping[str, str] | None = None,
    drop: Iterable[str] = (),
    split_max_bytes: int | None = None,
    split_max_duration_s: float | None = None,
    encoder_options: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
) -> EncodeBagReport:
    """Encode the `cameras` of `raw_bag` into a new RefScale bag at `out`; other topics pass through.

    A bad frame is counted and skipped; a failing write raises `BagWriteError` after closing what
    was written (frames before it stay readable). `encoder_options` go to `FrameEncoder`.
    """
    cameras, drop = set(cameras), set(drop)
    writer = BagWriter(out, split_max_bytes=split_max_bytes, split_max_duration_s=split_max_duration_s)
    encoder = FrameEncoder(
        writer,
        backend.downscaler,
        backend.info,
        cache=cache,
        camera_names=dict(camera_ids or {}),
        flush_interval_s=None,
        **dict(encoder_options or {}),
    )
    reader = BagReader(raw_bag)
    report = EncodeBagReport(encoder.stats)
    seen: Counter[str] = Counter()
    for raw in reader.raw_messages():
        if progress is not None:
            progress(1)
        if raw.topic in cameras:
            seen[raw.topic] += 1
            try:
                msg = reader.decode(raw)
            except Exception as exc:  # noqa: BLE001 - a damaged message: counted like a corrupt image
                encoder.stats.errors["corrupt_message"] += 1
                report.frame_errors.append(f"{raw.topic} @ {raw.log_time_ns}: undecodable message ({exc})")
                continue
            try:
                encoder.encode(raw.topic, msg, raw.log_time_ns)
            except FrameError as exc:
                report.frame_errors.append(str(exc))
            continue
        if raw.topic in drop:
            continue
        if raw.type_name in (msgs.NAV_SAT_FIX, msgs.ODOMETRY):
            try:
                encoder.update_pose(raw.type_name, reader.decode(raw), raw.log_time_ns)
            except Exception as exc:  # noqa: BLE001 - a damaged fix: copied as it is, not used for poses
                reader.problems.append(f"{raw.topic} @ {raw.log_time_ns}: undecodable pose ({exc})")
        encoder.passthrough(
            raw.topic, raw.type_name, raw.data, raw.log_time_ns, msgdef=raw.schema.data.decode(), qos=raw.qos
        )
    encoder.close()
    report.read_problems = list(reader.problems)
    report.missing_cameras = sorted(cameras - set(seen))
    report.bytes_in, report.bytes_out = bytes_on_disk(raw_bag), bytes_on_disk(out)
    return report


class RawFrames:
    """Raw camera frames by (topic, stamp), streaming the raw bag once in order (for scoring)."""

    def __init__(self, path: str | Path, topics: set[str]) -> None:
        self._it = iter_camera_frames(path, topics)
        self._buf: dict[tuple[str, int], np.ndarray] = {}

    def get(self, topic: str, stamp: int) -> np.ndarray | None:
        key = (topic, stamp)
        while key not in self._buf:
            try:
                t, s, _log, rgb = next(self._it)
            except StopIteration:
                return None
            self._buf[(t, s)] = rgb
        rgb = self._buf.pop(key)
        for k in [k for k in self._buf if k[0] == topic and k[1] < stamp]:
            del self._buf[k]
        return rgb


_SAFE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.")


def safe_name(topic: str) -> str:
    """A single folder name for a topic: never empty, `.`, `..`, absolute or holding a separator.

    `/cam/front` -> `cam__front`; characters outside [A-Za-z0-9_.-] become `%XX`; a `.` or `..`
    part becomes `%2E` / `%2E%2E`, so `/..` cannot climb out of the output folder.
    """
    parts = []
    for part in topic.split("/"):
        if not part:
            continue
        enc = "".join(c if c in _SAFE_CHARS else "".join(f"%{b:02X}" for b in c.encode()) for c in part)
        parts.append(enc.replace(".", "%2E") if enc in (".", "..") else enc)
    name = "__".join(parts) or "root"
    return name if len(name) <= 200 else f"{name[:150]}~{hashlib.sha256(name.encode()).hexdigest()[:16]}"


@dataclass
class ReconstructReport:
    """Per camera topic: frames rebuilt, failures by kind, and (when verified) PSNR/SSIM per frame."""

    rebuilt: Counter[str] = field(default_factory=Counter)
    failed: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    scores: dict[str, list[tuple[float, float]]] = field(default_factory=lambda: defaultdict(list))
    read_problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.rebuilt or self.failed) and not any(self.failed.values())


def reconstruct_bag(
    bag: str | Path,
    out: str | Path,
    reconstructor: Reconstructor,
    *,
    output: str = "bag",
    image_format: str = "raw",
    provenance: Mapping[str, str] | None = None,
    verify_against: str | Path | None = None,
    on_frame: Callable[[ReconstructedFrame | FrameFailure, str], None] | None = None,
    overwrite: bool = False,
) -> ReconstructReport:
    """Rebuild every frame of `bag` into `out`: a bag (`output="bag"`, Image rgb8 or PNG) or PNG files.

    Non-RefScale topics are copied into an output bag. `on_frame(item, note)` sees each frame as it
    is done (note: a verify line or a failure message), for progress bars and logs.

    PNG output: each file is written under a temporary name and renamed when complete, so a full
    disk or a crash never leaves a truncated PNG under a frame's name; an existing file is never
    replaced unless `overwrite` (`FileExistsError` otherwise, files written before it stay).
    """
    from refscale_model.metrics import psnr, ssim

    out = Path(out)
    report = ReconstructReport()
    writer = None
    if output == "bag":
        writer = BagWriter(out)
        writer.add_metadata("refscale_reconstruction", dict(provenance or {}))
    else:
        out.mkdir(parents=True, exist_ok=True)

    def other(raw: RawMessage) -> None:
        if writer is not None:
            writer.add_topic(raw.topic, raw.type_name, msgdef=raw.schema.data.decode(), qos=raw.qos)
            writer.write_cdr(raw.topic, raw.data, raw.log_time_ns, publish_time_ns=raw.publish_time_ns)

    raw_frames = RawFrames(verify_against, camera_topics(bag)) if verify_against is not None else None
    try:
        for item in reconstructor.run(bag, other):
            if isinstance(item, FrameFailure):
                report.failed[item.camera_topic][item.kind] += 1
                if on_frame is not None:
                    on_frame(item, f"frame failed [{item.kind}]: {item.message}")
                continue
            report.rebuilt[item.camera_topic] += 1
            _write_frame(item, writer, out, image_format, overwrite)
            note = ""
            if raw_frames is not None:
                original = raw_frames.get(item.camera_topic, item.stamp_ns)
                if original is None or original.shape != item.rgb.shape:
                    note = f"verify: {item.camera_topic} @ {item.stamp_ns}: no matching raw frame"
                else:
                    p, s = psnr(item.rgb, original), ssim(item.rgb, original)
                    report.scores[item.camera_topic].append((p, s))
                    note = f"verify: {item.camera_topic} @ {item.stamp_ns}: PSNR {p:.2f} dB  SSIM {s:.4f}"
            if on_frame is not None:
                on_frame(item, note)
    finally:
        if writer is not None:
            writer.close()
    report.read_problems = list(reconstructor.reader.problems) if reconstructor.reader else []
    return report


def _write_frame(item: ReconstructedFrame, writer: BagWriter | None, out: Path, image_format: str,
                 overwrite: bool = False) -> None:
    if writer is None:
        folder = out / safe_name(item.camera_topic)
        folder.mkdir(exist_ok=True)
        write_png_atomic(folder / f"{item.stamp_ns}.png", encode_png(item.rgb), overwrite)
        return
    if image_format == "png":
        m = {"header": msgs.header(item.stamp_ns, item.frame_id), "format": "png", "data": encode_png(item.rgb)}
        writer.write(item.camera_topic, m, item.log_time_ns, type_name=msgs.COMPRESSED_IMAGE)
    else:
        msg = msgs.image_msg(item.rgb, item.stamp_ns, item.frame_id)
        writer.write(item.camera_topic, msg, item.log_time_ns, type_name=msgs.IMAGE)


def write_png_atomic(path: Path, data: bytes, overwrite: bool = False) -> None:
    """Write `data` to a temporary file beside `path`, fsync, then move it to `path`.

    Without `overwrite` an existing `path` is kept and `FileExistsError` raised (the link is
    atomic, so a file appearing meanwhile is not replaced either). On any error (full disk) the
    temporary file is removed and `path` is untouched.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise FileExistsError(
                    f"{path} already exists; not overwriting it (pass --overwrite to replace existing frames)"
                ) from None
            except OSError as exc:  # no hard links here (FAT, some FUSE): check, then rename
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK) or path.exists():
                    raise
                os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
