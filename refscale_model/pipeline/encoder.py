"""Onboard: `FrameEncoder` turns camera messages into a RefScale bag.

Per camera message: decode (rosimg) -> nearest reference (ReferenceCache) -> registration
(align_reference) -> downscaler (ONNX runtime or PyTorch) -> LR codec (png, jpeg, webp, avif; a
fixed quality or a per-camera kbit/s budget) -> bag writer. A bad frame raises
`FrameError` (counted in `stats`); the bag is never touched for it. A failing bag write raises
`BagWriteError`: the recording itself cannot go on. Bag layout: docs/bag-format.md.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from refscale_model.backends.base import Downscaler, ModelInfo
from refscale_model.bags import BagWriter, msgs
from refscale_model.bags import refscale_format as fmt
from refscale_model.codecs import (
    EncodedLr,
    LrStreamEncoder,
    RateController,
    get_codec,
    open_stream_encoder,
)
from refscale_model.codecs import reference_predicted as rp
from refscale_model.io import rosimg
from refscale_model.io.images import stored_smap
from refscale_model.io.smap_coding import encode_smap
from refscale_model.pipeline.encoding import EncodeJob, EncoderStats, FrameError, FrameResult, LrSettings
from refscale_model.pipeline.lr_fidelity import LrFidelity, measured_lr_psnr
from refscale_model.pipeline.pose import Pose, PoseTracker
from refscale_model.pipeline.reference_choice import DEFAULT_CANDIDATES, ReferenceLoader, choose_reference
from refscale_model.pipeline.smap_reuse import DEFAULT_TOLERANCE, SmapReuse
from refscale_model.pipeline.smap_smoothing import DEFAULT_BLOCK, DEFAULT_MEDIAN, SmapStorage
from refscale_model.utils import LruCache

if TYPE_CHECKING:
    from refscale_model.refcache import Reference, ReferenceCache
    from refscale_model.registration import RegistrationConfig

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
        lr_codec: str = "png",
        lr_quality: int | None = None,
        target_kbps: float | None = None,
        lr_gop: int | None = None,
        lr_encoder: str = "auto",
        smap_reuse: float = DEFAULT_TOLERANCE,
        reference_candidates: int = DEFAULT_CANDIDATES,
        smap_median: int = DEFAULT_MEDIAN,
        smap_block: int = DEFAULT_BLOCK,
        batch_network: bool | None = None,
    ) -> None:
        """`lr_codec` / `lr_quality` (0–100, None: the codec's default) / `target_kbps` (per camera
        LR + S_map budget; the quality then adapts, starting at `lr_quality`): a bad combination
        raises `CodecError` here, before anything is written. Video codecs (h264, h265): `lr_quality`
        is the crf 0–51, `lr_gop` the keyframe interval, `lr_encoder` auto / cpu / gpu / a name,
        `target_kbps` caps the LR stream (VBV at 90 % of it). `smap_reuse`: with a video LR, the
        tolerance (mean S_map levels) within which a frame reuses the map stored earlier in its GOP
        (`pipeline.smap_reuse`; 0: a map per frame); still-image codecs always store one per frame.
        `reference_candidates`: the nearest cache entries registered per frame, the most confident
        of which is used (`pipeline.reference_choice`; 1: the nearest). `smap_median`: median window
        of the stored S_map, `smap_block`: cells per side of one stored value (`pipeline.smap_smoothing`;
        1: off). `batch_network`: in `encode_frames`, run the network once for frames of one size and
        kind (True), one by one (False), or where the downscaler says it pays (None: `batching_pays`,
        GPU providers)."""
        from refscale_model import __version__

        self.lr = LrSettings.checked(lr_codec, lr_quality, target_kbps, lr_gop, lr_encoder)

        self.writer = writer
        self.downscaler = downscaler
        self.model = model
        if reference_candidates < 1:
            raise ValueError(f"reference_candidates must be >= 1, got {reference_candidates}")
        self.cache = cache
        self.registration = registration
        self.reference_candidates = int(reference_candidates)
        self.batch_network = batch_network
        self.smap_storage = SmapStorage(smap_median, smap_block)  # a bad setting is refused here, not per frame
        self.camera_names = dict(camera_names or {})
        self.flush_interval_s = flush_interval_s
        self.stats = EncoderStats()
        self.poses = pose_tracker or PoseTracker(pseudo_latlon=getattr(cache, "pseudo_latlon", None))
        self._lock = threading.Lock()
        self._last_flush = time.monotonic()
        self._load_reference = ReferenceLoader(registration)
        """Decoded references + their registration features, kept for a few entries (frames share them)."""
        self._frefs: LruCache[tuple[Any, ...], np.ndarray] = LruCache(4)
        self._with_features = model.uses_reference and callable(getattr(downscaler, "reference_features", None)) \
            and callable(getattr(downscaler, "downscale_with_features", None))
        self._closed = False
        self._unflushed = False
        """Something was written since the last chunk close."""
        self._lr_streams: dict[str, LrStreamEncoder] = {}
        self._lr_fidelity = LrFidelity(self.lr.codec)
        """Per camera: the coded LR decoded as the far end will, for the record's `lr_psnr`."""
        self._lr_prev: dict[str, int] = {}
        """Per camera: stamp of the last LR frame written (video: what the next P-frame predicts from)."""
        self._rates: dict[str, RateController] = {}
        self._camera_sources: dict[str, dict[str, str]] = {}
        """Per camera: the source type and encoding its bag-level record holds (`_camera_record`)."""
        reuse = SmapReuse(smap_reuse)  # checks the tolerance for every codec
        self._smap_reuse = reuse if self.lr.video and reuse.tolerance > 0 else None
        self.stats.lr_codec, self.stats.target_kbps = self.lr.codec, self.lr.target_kbps
        self.stats.lr_encoder = self.lr.encoder
        info = fmt.bag_metadata(model.model_id, model.weights_sha256, model.config, software_version or __version__)
        if self.lr.video:
            info.update(lr_codec=self.lr.codec, lr_encoder=self.lr.encoder,
                        lr_gop=str(self.lr.gop), lr_crf=str(self.lr.quality))
        writer.add_metadata(fmt.METADATA_NAME, info)
        for key in ("format", "software_version", "model_id", "weights_sha256"):
            writer.set_custom_data(f"refscale.{key}", info[key])

    # -- per message --------------------------------------------------------------------------
    def encode(self, topic: str, msg: Any, log_time_ns: int | None = None, pose: Pose | None = None) -> FrameResult:
        """Encode one sensor_msgs Image / CompressedImage; raises FrameError (counted) for a bad frame."""
        return self.encode_frame(topic, msg, log_time_ns, pose)[0]

    def encode_frame(
        self, topic: str, msg: Any, log_time_ns: int | None = None, pose: Pose | None = None
    ) -> tuple[FrameResult, np.ndarray]:
        """`encode`, also returning the frame's LR (uint8 h×w×3; for a live preview)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("FrameEncoder is closed")
            log_time = time.time_ns() if log_time_ns is None else int(log_time_ns)
            return self._counted(topic, lambda: self._encode(topic, msg, log_time, pose))

    def encode_frames(
        self, frames: Sequence[tuple[str, Any, int | None, Pose | None]]
    ) -> list[tuple[FrameResult, np.ndarray] | FrameError | OSError]:
        """Frames of several cameras that arrived together, `(topic, msg, log_time_ns, pose)` each: the
        network runs once for all frames of one size and kind (with / without reference) where batching
        is on (`batch_network`) and the downscaler can (`downscale_many`), else once per frame;
        everything else is per frame and in order. Per frame: `encode_frame`'s result, or the FrameError
        it raised (counted), or the bag write error (OSError) that stopped it and every frame after it."""
        with self._lock:
            if self._closed:
                raise RuntimeError("FrameEncoder is closed")
            out: list[Any] = [None] * len(frames)
            jobs: list[tuple[int, EncodeJob]] = []
            for i, (topic, msg, log_time_ns, pose) in enumerate(frames):
                log_time = time.time_ns() if log_time_ns is None else int(log_time_ns)
                out[i] = self._caught(topic, lambda t=topic, m=msg, lt=log_time, p=pose:
                                      self._prepare(EncodeJob(t, m, lt, p)))
                if isinstance(out[i], EncodeJob):
                    jobs.append((i, out[i]))
            row = {id(job): i for i, job in jobs}
            for group in self._batches([job for _, job in jobs]):
                for job, result in zip(group, self._caught_many(group), strict=True):
                    if isinstance(result, FrameError):
                        out[row[id(job)]] = result
            write_error: OSError | None = None
            for i, job in jobs:
                if write_error is not None:  # the bag cannot take more: this frame is not written either
                    out[i] = write_error
                elif not isinstance(out[i], FrameError):
                    try:
                        done = self._caught(job.topic, lambda j=job: self._finish(j))
                    except OSError as exc:
                        out[i] = write_error = exc
                        continue
                    out[i] = done if isinstance(done, FrameError) else (done, job.lr)
            return out

    def _counted(self, topic: str, work: Callable[[], Any]) -> Any:
        """Run one frame's `work`, counting its failure (FrameError, a write error, or anything else)."""
        try:
            return work()
        except FrameError as exc:
            self.stats.errors[exc.kind] += 1
            raise
        except OSError:
            self.stats.errors["write"] += 1
            raise
        except Exception as exc:  # a bug or a library failure: count it, the frame is not written
            self.stats.errors["internal"] += 1
            raise FrameError("internal", f"{topic}: unexpected {type(exc).__name__}: {exc}") from exc

    def _caught(self, topic: str, work: Callable[[], Any]) -> Any:
        """`_counted`, returning the FrameError instead of raising it (one frame of a batch)."""
        try:
            return self._counted(topic, work)
        except FrameError as exc:
            return exc

    def _batches(self, jobs: list[EncodeJob]) -> list[list[EncodeJob]]:
        """Jobs the network runs together: one size and kind (with / without reference) each, and
        one frame per camera (a camera's S_map reuse state moves frame by frame). All of them singly
        when the downscaler cannot batch or batching is off (`batch_network`)."""
        wanted = self.batch_network
        if wanted is None:
            wanted = bool(getattr(self.downscaler, "batching_pays", False))
        batches = wanted and callable(getattr(self.downscaler, "downscale_many", None))
        if not batches or (self.model.uses_reference and not self._with_features):
            return [[job] for job in jobs]
        groups: list[tuple[tuple[Any, ...], list[EncodeJob]]] = []
        for job in jobs:
            assert job.rgb is not None
            key = (job.rgb.shape, job.warped is None)
            group = next((g for k, g in groups if k == key and all(j.topic != job.topic for j in g)), None)
            if group is None:
                groups.append((key, [job]))
            else:
                group.append(job)
        return [g for _, g in groups]

    def _caught_many(self, group: list[EncodeJob]) -> list[EncodeJob | FrameError]:
        """The network stage of a group (`_infer` for one frame, one `downscale_many` for several)."""
        if len(group) == 1:
            return [self._caught(group[0].topic, lambda: self._infer(group[0]))]
        try:
            for job in group:
                if job.warped is not None:
                    job.fref = self._features(job.ref_obj, job.reg, job.warped)
            frefs = None if group[0].fref is None else [job.fref for job in group]
            chooses = [None if job.warped is None else (lambda m, t=job.topic: self._choose_smap(t, m))
                       for job in group]
            results = self.downscaler.downscale_many([job.rgb for job in group], frefs, chooses)  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 - a backend failure is each of these frames' failure
            errors = [FrameError("model", f"{job.topic}: downscaler failed: {exc}") for job in group]
            for e in errors:
                self.stats.errors[e.kind] += 1
            return list(errors)
        self.stats.batched_frames += len(group)
        out: list[EncodeJob | FrameError] = []
        for job, (lr, smap) in zip(group, results, strict=True):
            job.lr, job.smap = lr, smap
            if job.warped is not None and job.smap is None:
                self.stats.errors["model"] += 1
                out.append(FrameError("model", f"{job.topic}: the downscaler returned no S_map for a referenced frame"))
            else:
                out.append(job)
        return out

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
            self._unflushed = True
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
    def _encode(self, topic: str, msg: Any, log_time: int, pose: Pose | None) -> tuple[FrameResult, np.ndarray]:
        job = self._infer(self._prepare(EncodeJob(topic, msg, log_time, pose)))
        assert job.lr is not None
        return self._finish(job), job.lr

    def _prepare(self, job: EncodeJob) -> EncodeJob:
        """Stage 1: decode, reference lookup, registration (no network: one network stage at a time
        keeps onnxruntime's intra-op threads from fighting over the cores)."""
        job.t0 = time.perf_counter()
        topic, msg = job.topic, job.msg
        try:
            job.rgb = rosimg.image_from_msg(msg)
        except rosimg.UnsupportedEncodingError as exc:
            raise FrameError("unsupported_encoding", f"{topic}: {exc}") from exc
        except rosimg.ImageDecodeError as exc:
            raise FrameError("corrupt_image", f"{topic}: {exc}") from exc
        job.stamp = msgs.stamp_or(msg, job.log_time)
        job.ref_obj, job.warped, job.reg, job.reason = self._reference(
            topic, job.rgb, job.pose or self.poses.pose(job.stamp)
        )
        return job

    def _features(self, ref: Reference, reg: Any, warped: np.ndarray) -> np.ndarray:
        """The registered reference's features, computed once per (reference, applied matrix, size).

        Exact reuse only: the network sees the reference warped by this frame's matrix, so the
        features are shared by the frames that get the same reference with the same matrix (a
        static camera, a reference used unregistered). Warping cached features of the unwarped
        reference instead was measured at 0.1–1.0 dB of rebuilt PSNR lost (docs/onnx-runtime.md).
        """
        key = (ref.id, warped.shape, np.asarray(reg.matrix, np.float64).tobytes())
        fref = self._frefs.get(key)
        if fref is None:
            fref = self._frefs.put(key, self.downscaler.reference_features(warped))  # type: ignore[attr-defined]
        else:
            self.stats.feature_reuse += 1
        return fref

    def _choose_smap(self, topic: str, smap: np.ndarray) -> np.ndarray:
        """The map a referenced frame conditions on: the computed one median-smoothed and in its stored
        resolution (`pipeline.smap_smoothing`), or with a video LR the one held in its GOP
        (`pipeline.smap_reuse`)."""
        smap = self.smap_storage.condition(smap)
        return smap if self._smap_reuse is None else self._smap_reuse.choose(topic, smap)

    def _infer(self, job: EncodeJob) -> EncodeJob:
        """Stage 2: the network (the only stage that needs the downscaler): the reference's
        features (or the cached ones), then the per-frame graphs."""
        extra = {} if job.warped is None else {"choose_smap": lambda m: self._choose_smap(job.topic, m)}
        try:
            if job.warped is not None and self._with_features:
                job.fref = self._features(job.ref_obj, job.reg, job.warped)
            if job.fref is not None:
                job.lr, job.smap = self.downscaler.downscale_with_features(  # type: ignore[attr-defined]
                    job.rgb, job.fref, **extra)
            else:
                job.lr, job.smap = self.downscaler.downscale(job.rgb, job.warped, **extra)  # type: ignore[call-arg]
        except Exception as exc:  # noqa: BLE001 - any backend failure is this frame's failure
            raise FrameError("model", f"{job.topic}: downscaler failed: {exc}") from exc
        if job.warped is not None and job.smap is None:
            raise FrameError("model", f"{job.topic}: the downscaler returned no S_map for a referenced frame")
        return job

    def _finish(self, job: EncodeJob) -> FrameResult:
        """Stage 3 (in arrival order): LR and S_map coding, the bag write, the counters."""
        topic, msg, log_time, rgb, lr, smap, reason = (
            job.topic, job.msg, job.log_time, job.rgb, job.lr, job.smap, job.reason)
        ref_obj, reg, stamp = job.ref_obj, job.reg, job.stamp
        assert rgb is not None and lr is not None
        compressed = rosimg.is_compressed_msg(msg)
        source_bytes = rosimg.payload_size(msg)
        header = msgs.header(stamp, msgs.frame_id(msg))
        if smap is not None and stored_smap(smap) is None:  # LR was made with the no-reference condition
            smap, reason = None, "reference gated: no more similar than an unrelated image (S_map all zero)"
        quality = self._quality(topic)
        lr = np.ascontiguousarray(lr)
        lr_coded, lr_psnr, ref_crc = self._code_lr(topic, lr, quality, job.warped)
        names_reference = smap is not None or bool(ref_crc)  # an LR predicted from it names it, map or not
        smap_from = 0  # a map stored by an earlier frame of this GOP (video S_map reuse)
        if self._smap_reuse is not None:  # every frame: a keyframe without a map still starts a new GOP
            smap_from = self._smap_reuse.source(topic, smap, lr_coded.is_keyframe)
        own_smap = smap is not None and not smap_from
        smap_format, smap_data = (encode_smap(np.ascontiguousarray(self.smap_storage.stored(smap))) if own_smap
                                  else ("", b""))
        encode_ms = (time.perf_counter() - job.t0) * 1e3
        meta = fmt.FrameMeta(
            source_topic=topic,
            source_type=msgs.COMPRESSED_IMAGE if compressed else msgs.IMAGE,
            source_encoding=str(msgs.field(msg, "format") if compressed else msgs.field(msg, "encoding")),
            height=int(rgb.shape[0]),
            width=int(rgb.shape[1]),
            scale=self.model.scale,
            model_id=self.model.model_id,
            weights_sha256=self.model.weights_sha256,
            smap_levels=self.model.smap_levels,
            reference_id=str(ref_obj.id) if names_reference else "",
            reference_sha256=ref_obj.sha256 if names_reference else "",
            **(fmt.registration_fields(reg.matrix, rgb.shape[:2]) if names_reference else {}),
            registration_confidence=round(float(reg.confidence), 2) if reg is not None else 0.0,
            registration_method=reg.method if reg is not None else "none",
            has_smap=smap is not None,
            encode_ms=float(round(encode_ms)),
            no_reference_reason="" if smap is not None else reason,
            lr_codec=self.lr.codec,
            lr_quality=-1 if quality is None else int(quality),
            lr_psnr=lr_psnr,
            lr_ref_crc=ref_crc,
        )
        if self.lr.video:
            meta.lr_keyframe = lr_coded.is_keyframe
            meta.lr_prev_stamp_ns = 0 if lr_coded.is_keyframe else self._lr_prev.get(topic, 0)
            meta.lr_encoder = self.lr.encoder
            meta.smap_from_stamp_ns = smap_from
            if lr.shape[0] % 2 or lr.shape[1] % 2:  # coded even-padded: the decoder crops back
                meta.extra["lr_size"] = f"{lr.shape[0]}x{lr.shape[1]}"
            lr_type = msgs.COMPRESSED_VIDEO
            lr_msg = msgs.compressed_video_msg(stamp, header["frame_id"], lr_coded.format, lr_coded.data)
        else:
            lr_type = msgs.COMPRESSED_IMAGE
            lr_msg = {"header": header, "format": lr_coded.format, "data": lr_coded.data}
        if own_smap and self.smap_storage.block > 1:  # stored coarser than the grid it conditions
            meta.smap_block, meta.smap_grid = self.smap_storage.block, f"{smap.shape[0]}x{smap.shape[1]}"
        meta.format = fmt.record_format(meta, smap_format)  # short: its constants are in the bag's records
        try:
            self._camera_record(topic, meta)
            self._write_frame(topic, header, log_time, lr_msg, lr_type, smap, (smap_format, smap_data), meta)
            if smap is not None and not smap_from and self._smap_reuse is not None:
                self._smap_reuse.stored(topic, stamp, smap)
        except BaseException:
            request = getattr(self._lr_streams.get(topic), "request_keyframe", None)
            if request is not None:  # the decoder never sees this frame: the next one must not predict from it
                request()
            raise
        self._lr_prev[topic] = stamp
        self.stats.frames += 1
        self.stats.frames_without_reference += smap is None
        self.stats.lr_predicted += bool(ref_crc)
        self.stats.bytes_in += source_bytes
        self.stats.bytes_out += len(lr_coded.data) + len(smap_data)
        self._account_rate(topic, len(lr_coded.data) + len(smap_data), stamp, quality)
        self.stats.encode_s += encode_ms / 1e3
        self._unflushed = True
        self._maybe_flush()
        return FrameResult(
            topic,
            stamp,
            (int(lr.shape[0]), int(lr.shape[1])),
            smap is not None,
            meta.reference_id,
            len(lr_coded.data),
            len(smap_data),
            encode_ms,
            meta.no_reference_reason,
            meta.lr_quality,
            self.stats.kbps.get(topic, 0.0),
            lr_psnr,
            bool(ref_crc),
        )

    def _camera_record(self, topic: str, meta: fmt.FrameMeta) -> None:
        """The bag-level record of what a camera sends (type, encoding), which short frame records leave
        out: written with the camera's first frame (every split file repeats it). Informational: a
        camera that changes its encoding later still decodes; the record names the first."""
        if topic not in self._camera_sources:
            source = {"source_type": meta.source_type, "source_encoding": meta.source_encoding}
            self.writer.add_metadata(fmt.camera_record_name(topic), source)
            self._camera_sources[topic] = source

    def _write_frame(self, topic: str, header: dict[str, Any], log_time: int, lr_msg: dict[str, Any], lr_type: str,
                     smap: np.ndarray | None, stored: tuple[str, bytes], meta: fmt.FrameMeta) -> None:
        """One frame's LR, S_map (`stored`: its message format and bytes) and record, as one group."""
        with self.writer.group():
            self.writer.write(fmt.lr_topic(topic), lr_msg, log_time, type_name=lr_type)
            smap_format, smap_data = stored
            if smap is not None and smap_data:  # no bytes: the map is stored by an earlier frame of the GOP
                self.writer.write(
                    fmt.smap_topic(topic),
                    {"header": header, "format": smap_format, "data": smap_data},
                    log_time,
                    type_name=msgs.COMPRESSED_IMAGE,
                )
            note = "encoded" if smap is not None else "encoded without reference"  # why: no_reference_reason
            self.writer.write(
                fmt.meta_topic(topic), fmt.meta_msg(meta, header, note), log_time, type_name=msgs.DIAGNOSTIC_ARRAY
            )

    def _code_lr(self, topic: str, lr: np.ndarray, quality: int | None,
                 warped: np.ndarray | None) -> tuple[EncodedLr, float, str]:
        """The frame's coded LR, its record's `lr_psnr`, and the CRC of the reference picture the LR is
        predicted from ("": it decodes alone). `h265-ref` codes each frame intra or from `warped` (the
        reference as this frame's network saw it), whichever costs less (`codecs.reference_predicted`)."""
        if self.lr.codec != rp.CODEC_NAME:
            coded = self._lr_stream(topic).encode(lr, quality)
            return coded, self._lr_fidelity.measure(topic, lr, coded), ""
        reference = None
        if warped is not None and lr.shape[:2] == rp.lr_shape(warped.shape[:2], self.model.scale):
            reference = rp.reference_lr(warped, lr.shape[:2], self.model.scale)
        chosen = rp.code_frame(lr, reference, quality)
        return EncodedLr(chosen.data, True, chosen.format), measured_lr_psnr(lr, chosen.decoded), chosen.digest

    def _lr_stream(self, topic: str) -> LrStreamEncoder:
        stream = self._lr_streams.get(topic)
        if stream is None:
            opts = ({"crf": self.lr.quality, "gop": self.lr.gop, "encoder": self.lr.encoder,
                     "target_kbps": None if self.lr.target_kbps is None else 0.9 * self.lr.target_kbps}
                    if self.lr.video else {})
            stream = self._lr_streams[topic] = open_stream_encoder(self.lr.codec, **opts)
        return stream

    def _quality(self, topic: str) -> int | None:
        """This camera's quality for the next frame: fixed, or its rate controller's."""
        if self.lr.target_kbps is None:
            return self.lr.quality
        rate = self._rates.get(topic)
        if self.lr.video:  # the video encoder's VBV holds the budget; the controller only measures
            if rate is None:
                self._rates[topic] = RateController(self.lr.target_kbps)
            return self.lr.quality
        if rate is None:
            start = self.lr.quality if self.lr.quality is not None else get_codec(self.lr.codec).default_quality
            rate = self._rates[topic] = RateController(self.lr.target_kbps, initial_quality=start or 75)
        return rate.quality

    def _account_rate(self, topic: str, nbytes: int, stamp_ns: int, quality: int | None) -> None:
        self.stats.lr_quality[topic] = -1 if quality is None else int(quality)
        rate = self._rates.get(topic)
        if rate is not None:
            rate.update(nbytes, stamp_ns)
            self.stats.kbps[topic] = rate.measured_kbps

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
        from refscale_model.refcache import CacheError

        camera = self.camera_names.get(topic, topic)
        try:
            registers = self.registration is None or bool(self.registration.estimators)
            limit = self.reference_candidates if registers else 1  # unregistered: nothing to choose by
            entries = self.cache.near(camera, pose.lat, pose.lon, pose.heading_deg, limit=limit)
            if not entries:
                return None, None, None, "no reference near this pose"
            for entry in entries:  # features before registering: a cache error is the cache's, not registration's
                self._load_reference.prepared(entry)  # stored ones when `cache build` wrote them: no decoding
        except CacheError as exc:
            self.stats.errors["reference_cache"] += 1
            return None, None, None, f"reference cache: {exc}"
        except Exception as exc:  # noqa: BLE001 - e.g. OpenCV on a degenerate reference: code without it
            return None, None, None, f"reference unusable: {type(exc).__name__}: {exc}"
        try:
            choice = choose_reference(rgb, entries, self._load_reference, self.registration)
        except CacheError as exc:  # the chosen entry's image is missing or damaged (its features were stored)
            self.stats.errors["reference_cache"] += 1
            return None, None, None, f"reference cache: {exc}"
        except Exception as exc:  # noqa: BLE001 - registration must not cost the frame: code it without reference
            return None, None, None, f"registration error: {type(exc).__name__}: {exc}"
        assert choice is not None
        reg = choice.registration
        if choice.warped is None:
            return choice.entry, None, reg, f"registration failed (confidence {reg.confidence:.2f})"
        return choice.entry, choice.warped, reg, ""

    def flush_if_due(self) -> None:
        """Close the open chunk once `flush_interval_s` has passed since the last close.

        Call it when idle (the recorder's worker does, between frames): a chunk is otherwise closed
        only by the next message, and a recording killed after a quiet spell would lose it.
        """
        with self._lock:
            if not self._closed:
                self._maybe_flush()

    def _maybe_flush(self) -> None:
        if not self._unflushed:
            self._last_flush = time.monotonic()
        elif self.flush_interval_s is not None and time.monotonic() - self._last_flush >= self.flush_interval_s:
            self.writer.flush()
            self._last_flush = time.monotonic()
            self._unflushed = False


__all__ = ["EncoderStats", "FrameEncoder", "FrameError", "FrameResult", "LrSettings"]
