"""The RefScale pipeline as a library: `FrameEncoder` (onboard) and `Reconstructor` (offboard).

Onboard, per camera message: decode (rosimg) -> nearest reference (ReferenceCache) ->
registration (align_reference) -> downscaler (ONNX runtime or PyTorch) -> PNG -> bag writer.
A bad frame raises `FrameError` (counted in `stats`); the bag is never touched for it. A failing
bag write raises `BagWriteError`: the recording itself cannot go on.

Offboard: pair each frame's LR / S_map / metadata from the bag, fetch the named reference by id
*and* sha256, warp it with the stored matrix, and run the PyTorch inverse in batches.

Everything is plain Python so the ROS node (a thin shell) and the CLI share it, and it is testable
without a ROS graph. Bag layout: docs/bag-format.md.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from refscale_model import rosimg
from refscale_model.bags import BagReader, BagWriter, RawMessage, metadata_of, msgs
from refscale_model.bags import refscale_format as fmt
from refscale_model.codec import decode_png, encode_png, stored_smap

if TYPE_CHECKING:
    from refscale_model.model import RefScale
    from refscale_model.reference_cache import Reference, ReferenceCache
    from refscale_model.registration import RegistrationConfig


# --------------------------------------------------------------------------- downscaler backends
@runtime_checkable
class Downscaler(Protocol):
    """What the encoder needs from a backend (PyTorch adapter below, or runtime.OnnxDownscaler)."""

    def downscale(self, hr: np.ndarray, ref: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        """RGB uint8 H×W×3 (+ same-size reference or None) -> (LR uint8 h×w×3, S_map uint8 hs×ws or None)."""
        ...


@dataclass(frozen=True)
class ModelInfo:
    """Identity of the model a bag was encoded with; the offboard side must load the same weights."""

    model_id: str
    weights_sha256: str
    scale: int
    smap_levels: int
    uses_reference: bool
    config: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, model: RefScale, model_id: str) -> ModelInfo:
        cfg = model.config
        return cls(
            model_id=model_id,
            weights_sha256=str(getattr(model, "weights_sha256", None) or ""),
            scale=int(cfg.scale),
            smap_levels=int(cfg.smap_levels),
            uses_reference=bool(cfg.use_reference),
            config=cfg.to_dict() if hasattr(cfg, "to_dict") else dataclasses.asdict(cfg),
        )


# --------------------------------------------------------------------------- poses
@dataclass(frozen=True)
class Pose:
    """Where the car is: WGS84 degrees and compass heading (0 = north, clockwise; NaN = unknown)."""

    lat: float
    lon: float
    heading_deg: float = math.nan


class PoseTracker:
    """Latest pose from the NavSatFix / Odometry messages seen so far (online: no look-ahead).

    Heading is the course between the two latest fixes at least `min_course_m` apart, or the
    odometry yaw when there is odometry. Odometry-only drives use the cache's pseudo lat/lon.
    """

    def __init__(
        self,
        max_age_s: float = 2.0,
        min_course_m: float = 2.0,
        pseudo_latlon: Callable[[float, float], tuple[float, float]] | None = None,
    ) -> None:
        self.max_age_ns = int(max_age_s * 1e9)
        self.min_course_m = min_course_m
        self.pseudo_latlon = pseudo_latlon
        self._fix: tuple[int, float, float] | None = None
        self._course_from: tuple[float, float] | None = None
        self._course = math.nan
        self._odom: tuple[int, float, float, float] | None = None  # t, x, y, heading

    def update(self, type_name: str, msg: Any, t_ns: int) -> None:
        from refscale_model.reference_cache import bearing_deg, haversine_m, navsatfix_position, yaw_to_heading_deg

        if type_name == msgs.NAV_SAT_FIX:
            pos = navsatfix_position(msg)
            if pos is None:
                return
            if self._course_from is None:
                self._course_from = pos
            elif haversine_m(*self._course_from, *pos) >= self.min_course_m:
                self._course = bearing_deg(*self._course_from, *pos)
                self._course_from = pos
            self._fix = (t_ns, pos[0], pos[1])
        elif type_name == msgs.ODOMETRY:
            p = msg.pose.pose.position if not isinstance(msg, Mapping) else msg["pose"]["pose"]["position"]
            x, y = (float(p[k]) for k in "xy") if isinstance(p, Mapping) else (float(p.x), float(p.y))
            self._odom = (t_ns, x, y, yaw_to_heading_deg(msgs.yaw_from_odometry(msg)))

    def pose(self, t_ns: int) -> Pose | None:
        odom = self._odom if self._odom and abs(t_ns - self._odom[0]) <= self.max_age_ns else None
        if self._fix and abs(t_ns - self._fix[0]) <= self.max_age_ns:
            heading = odom[3] if odom else self._course
            return Pose(self._fix[1], self._fix[2], heading)
        if odom and self.pseudo_latlon is not None:
            lat, lon = self.pseudo_latlon(odom[1], odom[2])
            return Pose(lat, lon, odom[3])
        return None


# --------------------------------------------------------------------------- onboard
class FrameError(ValueError):
    """One frame could not be encoded; `kind` is the counter it was added to. The bag is untouched."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass
class EncoderStats:
    """Counters the node publishes as diagnostics and the CLI prints."""

    frames: int = 0
    frames_without_reference: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    passthrough: int = 0
    bytes_in: int = 0
    """Image payload bytes received (Image.data / CompressedImage.data)."""
    bytes_out: int = 0
    """PNG payload bytes written (LR + S_map)."""
    encode_s: float = 0.0

    @property
    def compression_ratio(self) -> float:
        return self.bytes_in / self.bytes_out if self.bytes_out else float("nan")


@dataclass(frozen=True)
class FrameResult:
    camera_topic: str
    stamp_ns: int
    lr_shape: tuple[int, int]
    has_reference: bool
    reference_id: str
    lr_bytes: int
    smap_bytes: int
    encode_ms: float
    no_reference_reason: str = ""


class FrameEncoder:
    """Encode camera messages into a RefScale bag; thread-safe (one frame at a time).

    API for the ROS node: `encode(topic, msg, log_time_ns, pose)` per camera message,
    `passthrough(topic, type_name, msg, log_time_ns)` for CameraInfo / NavSatFix / Odometry / any
    other topic (NavSatFix and Odometry also feed the internal `PoseTracker` used when no `pose`
    is given), `stats`, `close()`.
    """

    def __init__(
        self,
        writer: BagWriter,
        downscaler: Downscaler,
        model: ModelInfo,
        *,
        cache: ReferenceCache | None = None,
        registration: RegistrationConfig | None = None,
        camera_names: Mapping[str, str] | None = None,
        flush_interval_s: float | None = 1.0,
        software_version: str | None = None,
        pose_tracker: PoseTracker | None = None,
    ) -> None:
        from refscale_model import __version__

        self.writer = writer
        self.downscaler = downscaler
        self.model = model
        self.cache = cache
        self.registration = registration
        self.camera_names = dict(camera_names or {})
        self.flush_interval_s = flush_interval_s
        self.stats = EncoderStats()
        self.poses = pose_tracker or PoseTracker(pseudo_latlon=getattr(cache, "pseudo_latlon", None))
        self._lock = threading.Lock()
        self._last_flush = time.monotonic()
        self._refs: OrderedDict[int, tuple[np.ndarray, Any]] = OrderedDict()
        self._closed = False
        info = fmt.bag_metadata(model.model_id, model.weights_sha256, model.config, software_version or __version__)
        writer.add_metadata(fmt.METADATA_NAME, info)
        for key in ("format", "software_version", "model_id", "weights_sha256"):
            writer.set_custom_data(f"refscale.{key}", info[key])

    # -- per message --------------------------------------------------------------------------
    def encode(self, topic: str, msg: Any, log_time_ns: int | None = None, pose: Pose | None = None) -> FrameResult:
        """Encode one sensor_msgs Image / CompressedImage; raises FrameError (counted) for a bad frame."""
        with self._lock:
            if self._closed:
                raise RuntimeError("FrameEncoder is closed")
            log_time = time.time_ns() if log_time_ns is None else int(log_time_ns)
            try:
                return self._encode(topic, msg, log_time, pose)
            except FrameError as exc:
                self.stats.errors[exc.kind] += 1
                raise
            except OSError:
                self.stats.errors["write"] += 1
                raise

    def passthrough(
        self,
        topic: str,
        type_name: str,
        msg: Any,
        log_time_ns: int | None = None,
        *,
        msgdef: str | None = None,
        qos: str | None = None,
    ) -> None:
        """Copy a non-camera message into the bag (`msg` may be CDR bytes, then give `msgdef`)."""
        with self._lock:
            log_time = time.time_ns() if log_time_ns is None else int(log_time_ns)
            self.writer.add_topic(topic, type_name, msgdef=msgdef, qos=qos)
            if isinstance(msg, (bytes, bytearray, memoryview)):
                self.writer.write_cdr(topic, bytes(msg), log_time)
            else:
                self.writer.write(topic, msg, log_time)
                self.poses.update(type_name, msg, log_time)
            self.stats.passthrough += 1
            self._maybe_flush()

    def update_pose(self, type_name: str, msg: Any, log_time_ns: int) -> None:
        """Feed a NavSatFix / Odometry without writing it (e.g. a CDR passthrough decoded elsewhere)."""
        with self._lock:
            self.poses.update(type_name, msg, log_time_ns)

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self.writer.set_custom_data("refscale.frames", str(self.stats.frames))
                self.writer.close()

    # -- internals ----------------------------------------------------------------------------
    def _encode(self, topic: str, msg: Any, log_time: int, pose: Pose | None) -> FrameResult:
        t0 = time.perf_counter()
        try:
            rgb = rosimg.image_from_msg(msg)
        except rosimg.UnsupportedEncodingError as exc:
            raise FrameError("unsupported_encoding", f"{topic}: {exc}") from exc
        except rosimg.ImageDecodeError as exc:
            raise FrameError("corrupt_image", f"{topic}: {exc}") from exc
        compressed = rosimg.is_compressed_msg(msg)
        source_bytes = rosimg.payload_size(msg)
        stamp = _stamp_or(msg, log_time)
        header = msgs.header(stamp, msgs.frame_id(msg))

        ref_obj, warped, reg, reason = self._reference(topic, rgb, pose or self.poses.pose(stamp))
        try:
            lr, smap = self.downscaler.downscale(rgb, warped)
        except Exception as exc:  # noqa: BLE001 - any backend failure is this frame's failure
            raise FrameError("model", f"{topic}: downscaler failed: {exc}") from exc
        if warped is not None and smap is None:
            raise FrameError("model", f"{topic}: the downscaler returned no S_map for a referenced frame")
        if smap is not None and stored_smap(smap) is None:  # LR was made with the no-reference condition
            smap, reason = None, "reference gated: no more similar than an unrelated image (S_map all zero)"
        lr_png = encode_png(np.ascontiguousarray(lr))
        smap_png = encode_png(np.ascontiguousarray(smap)) if smap is not None else b""
        encode_ms = (time.perf_counter() - t0) * 1e3
        meta = fmt.FrameMeta(
            source_topic=topic,
            source_type=msgs.COMPRESSED_IMAGE if compressed else msgs.IMAGE,
            source_encoding=str(_field(msg, "format") if compressed else _field(msg, "encoding")),
            height=int(rgb.shape[0]),
            width=int(rgb.shape[1]),
            scale=self.model.scale,
            model_id=self.model.model_id,
            weights_sha256=self.model.weights_sha256,
            smap_levels=self.model.smap_levels,
            reference_id=str(ref_obj.id) if smap is not None else "",
            reference_sha256=ref_obj.sha256 if smap is not None else "",
            registration_matrix=fmt.matrix_to_text(reg.matrix) if smap is not None else fmt.matrix_to_text(np.eye(3)),
            registration_confidence=float(reg.confidence) if reg is not None else 0.0,
            registration_method=reg.method if reg is not None else "none",
            has_smap=smap is not None,
            encode_ms=round(encode_ms, 3),
            no_reference_reason="" if smap is not None else reason,
        )
        with self.writer.group():
            self.writer.write(
                fmt.lr_topic(topic),
                {"header": header, "format": "png", "data": lr_png},
                log_time,
                type_name=msgs.COMPRESSED_IMAGE,
            )
            if smap is not None:
                self.writer.write(
                    fmt.smap_topic(topic),
                    {"header": header, "format": "png", "data": smap_png},
                    log_time,
                    type_name=msgs.COMPRESSED_IMAGE,
                )
            note = "encoded" if smap is not None else f"encoded without reference: {reason}"
            self.writer.write(
                fmt.meta_topic(topic), fmt.meta_msg(meta, header, note), log_time, type_name=msgs.DIAGNOSTIC_ARRAY
            )
        self.stats.frames += 1
        self.stats.frames_without_reference += smap is None
        self.stats.bytes_in += source_bytes
        self.stats.bytes_out += len(lr_png) + len(smap_png)
        self.stats.encode_s += encode_ms / 1e3
        self._maybe_flush()
        return FrameResult(
            topic,
            stamp,
            (int(lr.shape[0]), int(lr.shape[1])),
            smap is not None,
            meta.reference_id,
            len(lr_png),
            len(smap_png),
            encode_ms,
            meta.no_reference_reason,
        )

    def _reference(
        self, topic: str, rgb: np.ndarray, pose: Pose | None
    ) -> tuple[Reference | None, np.ndarray | None, Any, str]:
        """(reference entry, warped reference or None, Registration or None, reason when None)."""
        if not self.model.uses_reference:
            return None, None, None, "model without reference"
        if self.cache is None:
            return None, None, None, "no reference cache"
        if pose is None:
            return None, None, None, "no pose"
        from refscale_model.reference_cache import CacheError
        from refscale_model.registration import align_reference

        camera = self.camera_names.get(topic, topic)
        try:
            ref = self.cache.nearest(camera, pose.lat, pose.lon, pose.heading_deg)
            if ref is None:
                return None, None, None, "no reference near this pose"
            ref_rgb, prepared = self._load_reference(ref)
        except CacheError as exc:
            self.stats.errors["reference_cache"] += 1
            return None, None, None, f"reference cache: {exc}"
        warped, reg = align_reference(rgb, ref_rgb, self.registration, prepared=prepared)
        if warped is None:
            return ref, None, reg, f"registration failed (confidence {reg.confidence:.2f})"
        return ref, warped, reg, ""

    def _load_reference(self, ref: Reference) -> tuple[np.ndarray, Any]:
        """Decoded reference + its registration features, kept for a few references (frames share them)."""
        from refscale_model.registration import prepare_reference

        entry = self._refs.get(ref.id)
        if entry is None:
            rgb = ref.load_rgb()
            entry = (rgb, prepare_reference(rgb, self.registration))
            self._refs[ref.id] = entry
            while len(self._refs) > 8:
                self._refs.popitem(last=False)
        else:
            self._refs.move_to_end(ref.id)
        return entry

    def _maybe_flush(self) -> None:
        if self.flush_interval_s is not None and time.monotonic() - self._last_flush >= self.flush_interval_s:
            self.writer.flush()
            self._last_flush = time.monotonic()


def _field(msg: Any, name: str) -> Any:
    return msg.get(name) if isinstance(msg, Mapping) else getattr(msg, name, None)


def _stamp_or(msg: Any, fallback_ns: int) -> int:
    """Header stamp of `msg`, or `fallback_ns` when it has no header or a zero stamp."""
    try:
        ns = msgs.stamp_ns(msg)
    except (TypeError, AttributeError, ValueError):
        return fallback_ns
    return ns if ns > 0 else fallback_ns


# --------------------------------------------------------------------------- offboard
@dataclass
class EncodedFrame:
    """One frame's stored parts, paired from the bag."""

    camera_topic: str
    stamp_ns: int
    frame_id: str
    log_time_ns: int
    meta: fmt.FrameMeta
    lr: np.ndarray
    smap: np.ndarray | None


@dataclass
class ReconstructedFrame:
    camera_topic: str
    stamp_ns: int
    frame_id: str
    log_time_ns: int
    meta: fmt.FrameMeta
    rgb: np.ndarray


@dataclass
class FrameFailure:
    """A frame that could not be rebuilt; `kind`: reference_missing, reference_mismatch,
    model_mismatch, corrupt_frame, incomplete."""

    camera_topic: str
    stamp_ns: int
    log_time_ns: int
    kind: str
    message: str


class Reconstructor:
    """Rebuild HR frames from a RefScale bag with the PyTorch inverse (batched, z = 0 by default).

    `z` may be an int seed: frame i then samples z with seed `z + i` (decoded one at a time, so
    the result does not depend on batching).
    """

    def __init__(
        self,
        model: RefScale,
        cache: ReferenceCache | None = None,
        *,
        device: str = "cpu",
        batch_size: int = 4,
        z: str | int = "zero",
    ) -> None:
        self.model = model.to(device).eval()
        self.cache = cache
        self.device = device
        self.batch_size = max(1, int(batch_size))
        self.z = z
        self.weights_sha256 = str(getattr(model, "weights_sha256", None) or "")
        self._refs: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._index = 0
        self.reader: BagReader | None = None

    def check_bag(self, path: str | Path) -> str | None:
        """A clear message if the bag's model differs from ours (None when they match)."""
        meta = metadata_of(path).get(fmt.METADATA_NAME)
        if meta is None:
            return f"{path}: no '{fmt.METADATA_NAME}' metadata record; not a RefScale bag"
        want = meta.get("weights_sha256", "")
        if want != self.weights_sha256:
            return (
                f"{path} was encoded with model {meta.get('model_id')!r} weights sha256 {want or '(untrained)'}, "
                f"but the loaded weights are {self.weights_sha256 or '(untrained)'}"
            )
        return None

    def frames(
        self, path: str | Path, others: Callable[[RawMessage], None] | None = None
    ) -> Iterator[EncodedFrame | FrameFailure]:
        """Pair LR / S_map / meta per (camera, stamp); non-RefScale messages go to `others`."""
        self.reader = reader = BagReader(path)
        pending: dict[tuple[str, int], tuple[int, dict[str, Any]]] = {}
        for raw in reader.raw_messages():
            parts = fmt.split_topic(raw.topic)
            if parts is None:
                if others is not None:
                    others(raw)
                continue
            camera, kind = parts
            msg = reader.decode(raw)
            key = (camera, msgs.stamp_ns(msg))
            log_time, slot = pending.setdefault(key, (raw.log_time_ns, {}))
            slot[kind] = msg
            if kind == "meta":  # written last: the frame is complete (or never will be)
                del pending[key]
                yield self._assemble(camera, key[1], log_time, slot)
        for (camera, stamp), (log_time, _slot) in pending.items():
            yield FrameFailure(
                camera,
                stamp,
                log_time,
                "incomplete",
                f"{camera} @ {stamp}: frame record missing (bag ends or was cut before it)",
            )

    def _assemble(self, camera: str, stamp: int, log_time: int, slot: dict[str, Any]) -> EncodedFrame | FrameFailure:
        try:
            meta = fmt.meta_from_msg(slot["meta"])
        except (ValueError, KeyError, AttributeError) as exc:
            return FrameFailure(camera, stamp, log_time, "corrupt_frame", f"{camera} @ {stamp}: bad metadata: {exc}")
        if "lr" not in slot or (meta.has_smap and "smap" not in slot):
            return FrameFailure(camera, stamp, log_time, "incomplete", f"{camera} @ {stamp}: LR or S_map missing")
        try:
            lr = decode_png(bytes(slot["lr"].data))
            smap = decode_png(bytes(slot["smap"].data)) if meta.has_smap else None
        except ValueError as exc:
            return FrameFailure(camera, stamp, log_time, "corrupt_frame", f"{camera} @ {stamp}: {exc}")
        return EncodedFrame(camera, stamp, msgs.frame_id(slot["meta"]), log_time, meta, lr, smap)

    def run(
        self, path: str | Path, others: Callable[[RawMessage], None] | None = None
    ) -> Iterator[ReconstructedFrame | FrameFailure]:
        """Reconstruct every frame of the bag, in bag order per batch; failures are yielded, not raised."""
        batch: list[tuple[EncodedFrame, np.ndarray | None]] = []
        for item in self.frames(path, others):
            prepared = item if isinstance(item, FrameFailure) else self._prepare(item)
            if isinstance(prepared, FrameFailure):
                if batch:  # keep bag order: finish the frames before this one first
                    yield from self._run_batch(batch)
                    batch = []
                yield prepared
                continue
            assert isinstance(item, EncodedFrame)
            if batch and not self._batchable(batch[0], (item, prepared)):
                yield from self._run_batch(batch)
                batch = []
            batch.append((item, prepared))
            if len(batch) >= self.batch_size or isinstance(self.z, int):
                yield from self._run_batch(batch)
                batch = []
        if batch:
            yield from self._run_batch(batch)

    def _prepare(self, f: EncodedFrame) -> np.ndarray | None | FrameFailure:
        """The warped reference for a frame (None without S_map), or why it cannot be had."""
        m = f.meta
        if m.weights_sha256 != self.weights_sha256:
            return FrameFailure(
                f.camera_topic,
                f.stamp_ns,
                f.log_time_ns,
                "model_mismatch",
                f"{f.camera_topic} @ {f.stamp_ns}: encoded with weights {m.weights_sha256 or '(untrained)'}"
                f", loaded {self.weights_sha256 or '(untrained)'}",
            )
        if not m.has_smap:
            return None
        from refscale_model.reference_cache import CacheError, ReferenceMismatchError
        from refscale_model.registration import warp_reference

        where = f"{f.camera_topic} @ {f.stamp_ns}: reference {m.reference_id} (sha256 {m.reference_sha256[:12]}…)"
        if self.cache is None:
            return FrameFailure(
                f.camera_topic, f.stamp_ns, f.log_time_ns, "reference_missing", f"{where}: no reference cache given"
            )
        key = (m.reference_id, m.reference_sha256)
        ref = self._refs.get(key)
        if ref is None:
            try:
                ref = self.cache.get(int(m.reference_id), m.reference_sha256).load_rgb()
            except ReferenceMismatchError as exc:
                return FrameFailure(f.camera_topic, f.stamp_ns, f.log_time_ns, "reference_mismatch", f"{where}: {exc}")
            except CacheError as exc:
                return FrameFailure(f.camera_topic, f.stamp_ns, f.log_time_ns, "reference_missing", f"{where}: {exc}")
            self._refs[key] = ref
            while len(self._refs) > 8:
                self._refs.popitem(last=False)
        return warp_reference(ref, m.matrix, m.size)

    @staticmethod
    def _batchable(a: tuple[EncodedFrame, np.ndarray | None], b: tuple[EncodedFrame, np.ndarray | None]) -> bool:
        return a[0].meta.size == b[0].meta.size and (a[1] is None) == (b[1] is None) and a[0].lr.shape == b[0].lr.shape

    def _run_batch(
        self, batch: list[tuple[EncodedFrame, np.ndarray | None]]
    ) -> Iterator[ReconstructedFrame | FrameFailure]:
        import torch

        frames = [f for f, _ in batch]
        size = frames[0].meta.size
        lr = torch.from_numpy(np.stack([f.lr for f in frames])).permute(0, 3, 1, 2).to(self.device)
        has_ref = batch[0][1] is not None
        smap = torch.from_numpy(np.stack([f.smap for f in frames]))[:, None].to(self.device) if has_ref else None
        ref = torch.from_numpy(np.stack([r for _, r in batch])).permute(0, 3, 1, 2).to(self.device) if has_ref else None
        z: str | int = self.z if self.z == "zero" else int(self.z) + self._index
        self._index += len(frames)
        try:
            hr = self.model.upscale(lr, smap, ref, size, z=z)
        except (ValueError, RuntimeError) as exc:
            for f in frames:
                yield FrameFailure(
                    f.camera_topic,
                    f.stamp_ns,
                    f.log_time_ns,
                    "corrupt_frame",
                    f"{f.camera_topic} @ {f.stamp_ns}: inverse failed: {exc}",
                )
            return
        out = (hr.clamp(0, 1) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        for f, rgb in zip(frames, out, strict=True):
            yield ReconstructedFrame(
                f.camera_topic, f.stamp_ns, f.frame_id, f.log_time_ns, f.meta, np.ascontiguousarray(rgb)
            )


def to_uint8(hr: Any) -> np.ndarray:
    """float B×3×H×W (or 3×H×W) tensor in [0, 1] -> uint8 H×W×3 of the first image: the rounding used offboard."""
    import torch

    t = hr[0] if hr.ndim == 4 else hr
    return (t.clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def iter_camera_frames(path: str | Path, topics: Iterable[str]) -> Iterator[tuple[str, int, int, np.ndarray]]:
    """(topic, stamp_ns, log_time_ns, RGB) of raw camera topics; undecodable frames are skipped."""
    reader = BagReader(path)
    for raw in reader.raw_messages(list(topics)):
        msg = reader.decode(raw)
        try:
            rgb = rosimg.image_from_msg(msg)
        except rosimg.ImageDecodeError:
            continue
        yield raw.topic, _stamp_or(msg, raw.log_time_ns), raw.log_time_ns, rgb
