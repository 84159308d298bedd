"""Offboard: `Reconstructor` rebuilds HR frames from a RefScale bag.

Pair each frame's LR / S_map / metadata from the bag, fetch the named reference by id *and*
sha256, warp it with the stored matrix, and run the PyTorch inverse in batches.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from refscale_model.bags import BagReader, RawMessage, metadata_of, msgs
from refscale_model.bags import refscale_format as fmt
from refscale_model.codecs import (
    CodecError,
    LrStreamDecoder,
    get_codec,
    is_lossless,
    is_video_codec,
    open_stream_decoder,
)
from refscale_model.codecs import reference_predicted as rp
from refscale_model.io.smap_coding import decode_smap
from refscale_model.pipeline.smap_smoothing import expand_smap
from refscale_model.utils import LruCache, hash_names

if TYPE_CHECKING:
    from refscale_model.models.refscale import RefScale
    from refscale_model.refcache import ReferenceCache


@dataclass
class EncodedFrame:
    """One frame's stored parts, paired from the bag."""

    camera_topic: str
    stamp_ns: int
    frame_id: str
    log_time_ns: int
    meta: fmt.FrameMeta
    lr: np.ndarray | None
    """The decoded LR; None until `Reconstructor.reference_for` decodes an LR predicted from the reference."""
    smap: np.ndarray | None
    stored_bytes: int = 0
    """LR bitstream + stored S_map bytes as the bag holds them (what it cost to send this frame)."""
    lr_coded: bytes = b""
    """An `h265-ref` LR predicted from the reference (`meta.lr_ref_crc`): its bytes, decoded once the
    reference is warped (`codecs.reference_predicted`)."""


def lr_psnr_of(meta: fmt.FrameMeta) -> float | None:
    """The LR's PSNR after its codec for the decoder blend: +inf for a lossless LR, None when the car did
    not measure it (the full decoder, as before)."""
    if is_lossless(meta.lr_codec):
        return float("inf")
    return meta.lr_psnr if meta.lr_psnr > 0 else None


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


class FrameAssembler:
    """Pairs each frame's LR / S_map / meta messages, from a bag or from live topics (one rule for both).

    A frame is complete when its meta and LR (and its S_map when the meta says one is stored) have
    arrived. In a bag the meta is written last (`meta_closes=True`): a frame whose meta arrives
    without its other parts never completes and fails as `incomplete` at once. Live, parts arrive
    in any order; at most `max_pending` frames wait, the oldest are failed as `incomplete`.

    Video LR (foxglove_msgs/CompressedVideo, h264/h265): each camera has one stateful decoder that
    decodes the LR messages in arrival (= coded) order. A predicted frame is only given out when the
    frame its meta says it follows (`lr_prev_stamp_ns`) was the one decoded just before it and was
    itself good; otherwise (its GOP start or a frame of its GOP is missing) it fails as
    `corrupt_frame` until the next keyframe. A video frame may name the earlier frame of its GOP
    whose S_map it shares (`smap_from_stamp_ns`, `pipeline.smap_reuse`): it gets that frame's map,
    or fails as `incomplete` when that frame never arrived.
    """

    def __init__(self, *, meta_closes: bool, max_pending: int | None = None,
                 context: Callable[[str], Mapping[str, str]] | None = None) -> None:
        """`context(camera)`: what a short frame record (format 6 and 7) leaves out, for that camera
        (`refscale_format.frame_contexts`, which builds each camera's once)."""
        self.meta_closes = meta_closes
        self.max_pending = max_pending
        self.context = context
        self._pending: OrderedDict[tuple[str, int], tuple[int, dict[str, Any]]] = OrderedDict()
        self._video: dict[str, _VideoChain] = {}
        self._maps: dict[str, LruCache[int, np.ndarray]] = {}
        """Per camera: the S_maps stored with its recent frames, for frames that share them."""

    def add(self, camera: str, kind: str, msg: Any, log_time_ns: int) -> list[EncodedFrame | FrameFailure]:
        """Take one part (`kind`: lr, smap or meta); returns the frames it completed or failed."""
        key = (camera, msgs.stamp_ns(msg))
        log_time, slot = self._pending.setdefault(key, (log_time_ns, {}))
        slot[kind] = msg
        if kind == "lr" and is_video_codec(str(msgs.field(msg, "format") or "")):
            slot["video"] = self._video.setdefault(camera, _VideoChain()).decode(key[1], msg)
        out: list[EncodedFrame | FrameFailure] = []
        if self.meta_closes and kind == "meta" or self._complete(slot, camera):
            del self._pending[key]
            frame = self.assemble(camera, key[1], log_time, slot)
            chain = self._video.get(camera)
            if chain is not None and "video" in slot:
                frame = chain.check(frame, slot["video"])
            out.append(self._shared_smap(frame))
        while self.max_pending is not None and len(self._pending) > self.max_pending:
            (cam, stamp), (t, _slot) = self._pending.popitem(last=False)
            out.append(_incomplete(cam, stamp, t, "evicted before all its parts arrived"))
        return out

    def flush(self) -> list[FrameFailure]:
        """Fail every frame still waiting (the bag ended or was cut before its parts)."""
        left = [_incomplete(c, s, t, "frame record missing (bag ends or was cut before it)")
                for (c, s), (t, _) in self._pending.items()]
        self._pending.clear()
        return left

    def _shared_smap(self, frame: EncodedFrame | FrameFailure) -> EncodedFrame | FrameFailure:
        """Keep a frame's own S_map for later frames of its GOP; give a sharing frame the map it names."""
        if isinstance(frame, FrameFailure):
            return frame
        source = frame.meta.smap_from_stamp_ns
        if not source:
            if frame.smap is not None and is_video_codec(frame.meta.lr_codec):  # only video frames share maps
                maps = self._maps.get(frame.camera_topic)
                if maps is None:
                    maps = self._maps[frame.camera_topic] = LruCache(64)
                maps.put(frame.stamp_ns, frame.smap)
            return frame
        maps = self._maps.get(frame.camera_topic)
        smap = None if maps is None else maps.get(source)
        if smap is None:
            return _incomplete(frame.camera_topic, frame.stamp_ns, frame.log_time_ns,
                               f"its S_map is stored with frame {source}, which is missing")
        frame.smap = smap
        return frame

    def _meta(self, camera: str, msg: Any) -> fmt.FrameMeta:
        return fmt.meta_from_msg(msg, None if self.context is None else self.context(camera))

    def _complete(self, slot: dict[str, Any], camera: str) -> bool:
        if "meta" not in slot or "lr" not in slot:
            return False
        try:
            meta = self._meta(camera, slot["meta"])
        except (ValueError, KeyError, AttributeError):
            return True  # assemble() reports the bad metadata
        return not _own_smap(meta) or "smap" in slot

    def assemble(self, camera: str, stamp: int, log_time: int, slot: dict[str, Any]) -> EncodedFrame | FrameFailure:
        """Decode one frame's parts into an `EncodedFrame`, or say why they do not make one."""
        try:
            meta = self._meta(camera, slot["meta"])
        except (ValueError, KeyError, AttributeError) as exc:
            return FrameFailure(camera, stamp, log_time, "corrupt_frame", f"{camera} @ {stamp}: bad metadata: {exc}")
        if "lr" not in slot or (_own_smap(meta) and "smap" not in slot):
            return FrameFailure(camera, stamp, log_time, "incomplete", f"{camera} @ {stamp}: LR or S_map missing")
        try:
            if "video" in slot:  # decoded on arrival by the camera's stream decoder (checked by the caller)
                lr = slot["video"].rgb
                if lr is None:
                    raise CodecError(slot["video"].error)
                if "lr_size" in meta.extra:
                    h, w = (int(v) for v in meta.extra["lr_size"].split("x"))
                    lr = lr[:h, :w]
            elif is_video_codec(meta.lr_codec):
                raise CodecError(f"{meta.lr_codec} LR outside a stream: decode with FrameAssembler.add")
            elif meta.lr_codec == rp.CODEC_NAME:  # intra decodes here; predicted waits for its reference
                lr = None if meta.lr_ref_crc else rp.decode_frame(
                    bytes(slot["lr"].data), str(msgs.field(slot["lr"], "format") or ""),
                    rp.lr_shape(meta.size, meta.scale), meta.lr_quality).rgb
            else:
                lr = get_codec(meta.lr_codec).decode(bytes(slot["lr"].data))
            smap = (decode_smap(bytes(slot["smap"].data), getattr(slot["smap"], "format", ""))
                    if _own_smap(meta) else None)
            if smap is not None and meta.smap_block > 1:  # stored coarser than the grid it conditions
                smap = expand_smap(smap, meta.smap_block, meta.smap_grid_shape)
        except ValueError as exc:
            return FrameFailure(camera, stamp, log_time, "corrupt_frame", f"{camera} @ {stamp}: {exc}")
        nbytes = len(slot["lr"].data) + (len(slot["smap"].data) if _own_smap(meta) else 0)
        return EncodedFrame(camera, stamp, msgs.frame_id(slot["meta"]), log_time, meta, lr, smap, nbytes,
                            bytes(slot["lr"].data) if lr is None else b"")


@dataclass
class _VideoLr:
    """One video LR message as the camera's decoder saw it."""

    rgb: np.ndarray | None
    error: str
    after: int | None
    """Stamp of the LR decoded just before this one by the same decoder (None: first)."""
    keyframe: bool


class _VideoChain:
    """Per camera: the stream decoder and which decoded frames are good (an unbroken chain from an IDR)."""

    def __init__(self) -> None:
        self.decoder: LrStreamDecoder | None = None
        self.format = ""
        self.last: int | None = None
        self.good: LruCache[int, bool] = LruCache(64)

    def decode(self, stamp: int, msg: Any) -> _VideoLr:
        from refscale_model.codecs.video import is_self_contained_keyframe

        fmt_name, data = str(msgs.field(msg, "format")), bytes(msgs.field(msg, "data") or b"")
        if self.decoder is None or fmt_name != self.format:
            self.decoder, self.format = open_stream_decoder(fmt_name), fmt_name
        after, self.last = self.last, stamp
        key = is_self_contained_keyframe(fmt_name, data)
        try:
            return _VideoLr(self.decoder.decode(data), "", after, key)
        except CodecError as exc:
            return _VideoLr(None, str(exc), after, key)

    def check(self, frame: EncodedFrame | FrameFailure, lr: _VideoLr) -> EncodedFrame | FrameFailure:
        """The frame, or a `corrupt_frame` failure when it does not continue a good chain from its keyframe."""
        if isinstance(frame, FrameFailure):
            self.good.put(frame.stamp_ns, False)
            return frame
        m = frame.meta
        if m.lr_keyframe and lr.keyframe:
            ok, why = True, ""
        elif m.lr_keyframe:
            ok, why = False, "meta says keyframe but the LR is no IDR with parameter sets"
        elif lr.after != m.lr_prev_stamp_ns:
            ok, why = False, (f"predicted from frame {m.lr_prev_stamp_ns}, but the decoder's previous frame was "
                              f"{lr.after} (a frame of its GOP or its GOP start is missing)")
        elif not self.good.get(m.lr_prev_stamp_ns):
            ok, why = False, f"the frame it predicts from ({m.lr_prev_stamp_ns}) did not decode"
        else:
            ok, why = True, ""
        self.good.put(frame.stamp_ns, ok)
        if ok:
            return frame
        return FrameFailure(frame.camera_topic, frame.stamp_ns, frame.log_time_ns, "corrupt_frame",
                            f"{frame.camera_topic} @ {frame.stamp_ns}: video LR: {why}")


def _own_smap(meta: fmt.FrameMeta) -> bool:
    """The frame carries its own S_map message (not none, not one shared with an earlier frame)."""
    return meta.has_smap and not meta.smap_from_stamp_ns


def _incomplete(camera: str, stamp: int, log_time: int, why: str) -> FrameFailure:
    return FrameFailure(camera, stamp, log_time, "incomplete", f"{camera} @ {stamp}: {why}")


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
        self._refs: LruCache[tuple[str, str], np.ndarray] = LruCache(8)
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
        records = metadata_of(path)
        model = getattr(self, "model", None)  # (a bare instance only reads frames)
        config = None if model is None else model.config.to_dict()
        assembler = FrameAssembler(meta_closes=True, context=fmt.frame_contexts(records, config))
        for raw in reader.raw_messages():
            parts = fmt.split_topic(raw.topic)
            if parts is None:
                if others is not None:
                    others(raw)
                continue
            camera, kind = parts
            try:
                msg = reader.decode(raw)
            except Exception as exc:  # noqa: BLE001 - a damaged message (salvaged from a damaged chunk)
                # its frame then lacks this part and fails as incomplete: counted, never a crash
                reader.problems.append(f"{raw.topic} @ {raw.log_time_ns}: undecodable message skipped "
                                       f"({type(exc).__name__}: {exc})")
                continue
            yield from assembler.add(camera, kind, msg, raw.log_time_ns)
        yield from assembler.flush()

    def run(
        self, path: str | Path, others: Callable[[RawMessage], None] | None = None
    ) -> Iterator[ReconstructedFrame | FrameFailure]:
        """Reconstruct every frame of the bag, in bag order per batch; failures are yielded, not raised."""
        batch: list[tuple[EncodedFrame, np.ndarray | None]] = []
        for item in self.frames(path, others):
            prepared = item if isinstance(item, FrameFailure) else self.reference_for(item)
            if isinstance(prepared, FrameFailure):
                if batch:  # keep bag order: finish the frames before this one first
                    yield from self.rebuild(batch)
                    batch = []
                yield prepared
                continue
            assert isinstance(item, EncodedFrame)
            if batch and not self._batchable(batch[0], (item, prepared)):
                yield from self.rebuild(batch)
                batch = []
            batch.append((item, prepared))
            if len(batch) >= self.batch_size or isinstance(self.z, int):
                yield from self.rebuild(batch)
                batch = []
        if batch:
            yield from self.rebuild(batch)

    def reference_for(self, f: EncodedFrame) -> np.ndarray | None | FrameFailure:
        """The warped reference for a frame (None without S_map), or why it cannot be had. A frame whose LR
        is predicted from the reference gets its LR decoded here (the reference is warped for it, map or not)."""
        m = f.meta
        if not hash_names(m.weights_sha256, self.weights_sha256):
            return FrameFailure(
                f.camera_topic,
                f.stamp_ns,
                f.log_time_ns,
                "model_mismatch",
                f"{f.camera_topic} @ {f.stamp_ns}: encoded with weights {m.weights_sha256 or '(untrained)'}"
                f", loaded {self.weights_sha256 or '(untrained)'}",
            )
        if not m.has_smap and not m.lr_ref_crc:
            return None
        from refscale_model.refcache import CacheError, ReferenceMismatchError
        from refscale_model.refcache.distribution import resolve
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
                # by id and hash, else by hash alone: a `cache merge` may have renumbered it
                ref = resolve(self.cache, int(m.reference_id), m.reference_sha256).load_rgb()
            except ReferenceMismatchError as exc:
                return FrameFailure(f.camera_topic, f.stamp_ns, f.log_time_ns, "reference_mismatch", f"{where}: {exc}")
            except CacheError as exc:
                return FrameFailure(f.camera_topic, f.stamp_ns, f.log_time_ns, "reference_missing", f"{where}: {exc}")
            self._refs.put(key, ref)
        warped = warp_reference(ref, m.matrix, m.size)
        if f.lr is None:
            failure = self._decode_predicted_lr(f, warped)
            if failure is not None:
                return failure
        return warped if m.has_smap else None

    @staticmethod
    def _decode_predicted_lr(f: EncodedFrame, warped: np.ndarray) -> FrameFailure | None:
        """Decode an `h265-ref` LR predicted from `warped` into `f.lr`, or say why it does not decode. A hidden
        picture whose CRC differs from the car's (another x265 build, a reference warped a pixel differently)
        still decodes, slightly off: logged, not refused."""
        m = f.meta
        size = rp.lr_shape(m.size, m.scale)
        try:
            out = rp.decode_frame(f.lr_coded, rp.MESSAGE_FORMAT, size, m.lr_quality,
                                  rp.reference_lr(warped, size, m.scale), m.lr_ref_crc)
        except CodecError as exc:
            return FrameFailure(f.camera_topic, f.stamp_ns, f.log_time_ns, "corrupt_frame",
                                f"{f.camera_topic} @ {f.stamp_ns}: LR predicted from the reference: {exc}")
        if not out.digest_matches:
            logging.getLogger(__name__).warning(
                "%s @ %d: the reference picture coded here differs from the car's (CRC %s): the LR decodes "
                "slightly off (another x265 build?)", f.camera_topic, f.stamp_ns, m.lr_ref_crc)
        f.lr = out.rgb
        return None

    def rebuild_one(self, frame: EncodedFrame) -> ReconstructedFrame | FrameFailure:
        """Rebuild one frame (the live node's path): its reference, then the inverse."""
        prepared = self.reference_for(frame)
        if isinstance(prepared, FrameFailure):
            return prepared
        return next(iter(self.rebuild([(frame, prepared)])))

    @staticmethod
    def _batchable(a: tuple[EncodedFrame, np.ndarray | None], b: tuple[EncodedFrame, np.ndarray | None]) -> bool:
        return a[0].meta.size == b[0].meta.size and (a[1] is None) == (b[1] is None) and a[0].lr.shape == b[0].lr.shape

    def rebuild(
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
            hr = self.model.upscale(lr, smap, ref, size, z=z, lr_psnr=[lr_psnr_of(f.meta) for f in frames])
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
