"""The RefScale layer inside a rosbag2 bag: topic names and the per-frame metadata record.

Per camera topic `T` (e.g. `/cam/front/image_raw`) an encoded bag holds, all with the source
frame's header (stamp + frame_id):

- `T/refscale/lr`    sensor_msgs/msg/CompressedImage: the 8-bit LR frame (RGB) coded with the
                     bag's LR codec, format "png" (lossless), "jpeg", "webp" or "avif"; with a
                     video LR codec foxglove_msgs/msg/CompressedVideo, format "h264" / "h265":
                     one Annex B access unit per frame, IDR + parameter sets every `lr_gop` frames
- `T/refscale/smap`  sensor_msgs/msg/CompressedImage, format "png": grey S_map levels 0..L-1,
                     one per `smap_block`×`smap_block` cells of the map (absent for frames encoded
                     without a reference)
- `T/refscale/meta`  diagnostic_msgs/msg/DiagnosticArray with one DiagnosticStatus whose
                     KeyValue list is `FrameMeta` (written last: it completes the frame)

Why DiagnosticArray: it is a standard type with a Header (stamp/frame_id survive) and a free
key/value list, so `ros2 topic echo`, Foxglove and `rosbags` show the metadata readably with no
custom package. A field at its default value is not written (readers fill the default back in),
and the registration matrix is written to the decimals that move a pixel by under 0.01 px: the encoder
warps with exactly the matrix it stores (`registration.round_matrix`), so the record costs fewer bytes without
the decoder seeing another matrix. See docs/bag-format.md.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from refscale_model.io.smap_coding import SMAP_FORMAT
from refscale_model.registration import (
    corners_from_text,
    corners_text,
    exact_corners,
    matrix_from_corners,
)
from refscale_model.registration import matrix_text as matrix_to_text

# `matrix_to_text` is `registration.matrix_text`: exact for the applied matrix (`registration.round_matrix`);
# older bags wrote `repr`, which `matrix_from_text` reads the same way.

FORMAT = "refscale-bag/2"
"""Written for still-image LR codecs: adds the LR codec (`lr_codec`, `lr_quality`) to every frame record."""
FORMAT_VIDEO = "refscale-bag/3"
"""Written for video LR (h264/h265): LR as CompressedVideo, plus `lr_keyframe`, `lr_prev_stamp_ns` and
`lr_encoder` per frame. Older readers refuse these frames by name instead of misreading them."""
FORMAT_SMAP_REUSE = "refscale-bag/4"
"""A video LR frame whose S_map is the one stored with an earlier frame of its GOP (`smap_from_stamp_ns`):
it has no S_map message of its own. Written only for such frames; older readers refuse them by name."""
FORMAT_SMAP_BLOCK = "refscale-bag/5"
"""A frame whose stored S_map holds one value per `smap_block`×`smap_block` cells (`smap_grid` names the
full grid it expands to). Written only for such frames; older readers refuse them by name instead of
conditioning on a map of the wrong size."""
FORMAT_SHORT = "refscale-bag/6"
"""The short frame record, written for every frame since software 2026-12-03: what the bag's `refscale`
record, its per-camera `refscale.camera:<topic>` record or the topic already say is left out
(`CONTEXT_FIELDS`), and the weights and reference hashes are prefixes (`HASH_DIGITS`). A reader fills
the rest in from that context (`frame_context`). Older readers refuse these frames by name."""
FORMAT_CORNERS = "refscale-bag/7"
"""A short record whose registration is `registration_corners` (the frame's corners in the reference at
1/8 px, `registration.matrix_corners`) instead of `registration_matrix`: written since software
2026-12-04 for every frame warped by a matrix that corners hold. Older readers refuse these frames by name
(they would otherwise take the identity for the missing matrix)."""
FORMAT_SMAP_CODED = "refscale-bag/8"
"""A short record (corners or matrix as format 6/7) whose S_map message is in the coded form
(`io.smap_coding`: format `"refscale-smap"`, a context-adaptive range code, about half PNG's bytes).
Written since software 2026-12-04 for every frame that stores such a map; older readers refuse these
frames by name instead of failing on the map's bytes."""
FORMAT_REFERENCE_PREDICTED = "refscale-bag/9"
"""A short record (as format 8) whose LR (codec `h265-ref`) is an HEVC P-frame predicted from a hidden picture
of the reference (`codecs.reference_predicted`): `lr_ref_crc` holds that picture's CRC-32, and the record
names its reference even when the S_map was gated (`has_smap` false). Written since software 2026-12-04 for
such frames only; older readers refuse them by name instead of failing on the LR."""
SHORT_FORMATS = (FORMAT_SHORT, FORMAT_CORNERS, FORMAT_SMAP_CODED, FORMAT_REFERENCE_PREDICTED)
"""Formats whose records leave `CONTEXT_FIELDS` to the context and keep hash prefixes."""
READABLE_FORMATS = ("refscale-bag/1", FORMAT, FORMAT_VIDEO, FORMAT_SMAP_REUSE, FORMAT_SMAP_BLOCK, FORMAT_SHORT,
                    FORMAT_CORNERS, FORMAT_SMAP_CODED, FORMAT_REFERENCE_PREDICTED)
"""Format 1 bags (lossless PNG LR only) read as frames with `lr_codec = "png"`."""
CONTEXT_FIELDS = ("source_topic", "source_type", "source_encoding", "scale", "model_id", "smap_levels",
                  "lr_encoder")
"""Fields a short record leaves to its context: the same for every frame of a camera in a bag."""
HASH_DIGITS = {"weights_sha256": 12, "reference_sha256": 16}
"""Hex digits a short record keeps of each hash (48 and 64 bits: a wrong model or reference is still
caught; `utils.hash_names` compares such a prefix with a full hash)."""
METADATA_NAME = "refscale"
"""Name of the bag-level MCAP metadata record (model, config, software version)."""

SUFFIX_LR = "/refscale/lr"
SUFFIX_SMAP = "/refscale/smap"
SUFFIX_META = "/refscale/meta"


def lr_topic(camera_topic: str) -> str:
    return camera_topic.rstrip("/") + SUFFIX_LR


def smap_topic(camera_topic: str) -> str:
    return camera_topic.rstrip("/") + SUFFIX_SMAP


def meta_topic(camera_topic: str) -> str:
    return camera_topic.rstrip("/") + SUFFIX_META


def camera_record_name(camera_topic: str) -> str:
    """Name of the bag-level metadata record that holds a camera's `CONTEXT_FIELDS` (source type and encoding)."""
    return f"{METADATA_NAME}.camera:{camera_topic.rstrip('/')}"


def frame_context(camera_topic: str, metadata: Mapping[str, Mapping[str, str]] | None = None,
                  model_config: Mapping[str, Any] | None = None) -> dict[str, str]:
    """What a short record leaves out, for one camera: from the bag's metadata records (`metadata_of`),
    else from the model that rebuilds it (a live stream has no bag records)."""
    return frame_contexts(metadata, model_config)(camera_topic)


def frame_contexts(metadata: Mapping[str, Mapping[str, str]] | None = None,
                   model_config: Mapping[str, Any] | None = None) -> Callable[[str], dict[str, str]]:
    """`frame_context` of each camera of one bag (or live stream), built once per camera: readers call
    it per frame. The bag's model config is parsed once, here."""
    metadata = metadata or {}
    bag = metadata.get(METADATA_NAME, {})
    config: Mapping[str, Any] = model_config or {}
    if bag.get("model_config"):
        try:
            config = json.loads(bag["model_config"])
        except ValueError:
            pass
    shared = {"scale": str(config.get("scale", 0)), "smap_levels": str(config.get("smap_levels", 0)),
              "model_id": bag.get("model_id", ""), "lr_encoder": bag.get("lr_encoder", "")}

    @cache
    def of_camera(camera_topic: str) -> dict[str, str]:
        camera = metadata.get(camera_record_name(camera_topic), {})
        return {"source_topic": camera_topic, "source_type": camera.get("source_type", ""),
                "source_encoding": camera.get("source_encoding", ""), **shared}

    return of_camera


def split_topic(topic: str) -> tuple[str, str] | None:
    """`(camera_topic, "lr"|"smap"|"meta")` for a RefScale topic, else None."""
    for kind, suffix in (("lr", SUFFIX_LR), ("smap", SUFFIX_SMAP), ("meta", SUFFIX_META)):
        if topic.endswith(suffix):
            return topic[: -len(suffix)], kind
    return None


def matrix_from_text(text: str) -> np.ndarray:
    values = [float(v) for v in text.split(",")]
    if len(values) != 9:
        raise ValueError(f"registration_matrix needs 9 values, got {len(values)}")
    return np.array(values, dtype=np.float64).reshape(3, 3)


@dataclass
class FrameMeta:
    """Everything the offboard side needs besides the LR/S_map images and the reference cache."""

    source_topic: str
    source_type: str
    source_encoding: str
    height: int
    width: int
    scale: int
    model_id: str
    weights_sha256: str
    smap_levels: int
    reference_id: str = ""
    reference_sha256: str = ""
    registration_matrix: str = "1,0,0,0,1,0,0,0,1"
    """The applied matrix (ref -> frame) as `matrix_text`; left at the identity when `registration_corners` holds it."""
    registration_corners: str = ""
    """Format 7: the applied matrix as the frame's corners in the reference (`registration.corners_text`)."""
    registration_confidence: float = 0.0
    registration_method: str = "none"
    has_smap: bool = False
    encode_ms: float = 0.0
    no_reference_reason: str = ""
    lr_codec: str = "png"
    """Codec of the LR message (`refscale_model.codecs` name); format 1 bags are all png."""
    lr_quality: int = -1
    """Codec quality 0–100 the frame was coded with; -1 for lossless; the crf 0–51 for h264/h265."""
    lr_psnr: float = 0.0
    """PSNR (dB, 0.1 dB steps; 99: unchanged) of the decoded LR against the LR that was coded, measured by
    the car (`pipeline.lr_fidelity`): how much decoder-side restoring the rebuild takes
    (`models.decoder_blend`). 0: not measured (a lossless LR, or software before 2026-12-04); readers
    that do not know the key ignore it and rebuild with the full decoder."""
    lr_ref_crc: str = ""
    """LR codec `h265-ref`: CRC-32 (8 hex digits) of the hidden picture of the reference the LR is predicted
    from (format 9; `codecs.reference_predicted`); empty: the LR decodes alone."""
    lr_keyframe: bool = True
    """Video LR: this frame is an IDR access unit with its parameter sets (image codecs: always)."""
    lr_prev_stamp_ns: int = 0
    """Video LR predicted frame: stamp of the frame it follows in the camera's stream (0: keyframe).
    The offboard decoder checks it, so a missing frame breaks the GOP visibly, not silently."""
    lr_encoder: str = ""
    """Video LR: the encoder that ran (libx264, libx265, h264_nvenc, hevc_nvenc)."""
    smap_from_stamp_ns: int = 0
    """Video LR: the frame's S_map is the one stored with frame `smap_from_stamp_ns` of the same camera
    and GOP (no S_map message of its own; format 4); 0: its own S_map message, or none."""
    smap_block: int = 1
    """Cells per side of one stored S_map value (format 5 when > 1); the decoder repeats each value over
    its block to the full grid `smap_grid` (`pipeline.smap_smoothing.expand_smap`)."""
    smap_grid: str = ""
    """"ROWSxCOLS" of the full S_map grid the network conditions on; set with `smap_block` > 1."""
    format: str = FORMAT
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def smap_grid_shape(self) -> tuple[int, int]:
        """(rows, cols) of `smap_grid`; ValueError when it is missing or malformed."""
        try:
            rows, cols = (int(v) for v in self.smap_grid.split("x"))
        except ValueError:
            raise ValueError(f"bad smap_grid {self.smap_grid!r} for smap_block {self.smap_block}") from None
        if rows < 1 or cols < 1:
            raise ValueError(f"bad smap_grid {self.smap_grid!r}")
        return rows, cols

    @property
    def size(self) -> tuple[int, int]:
        return (self.height, self.width)

    @property
    def matrix(self) -> np.ndarray:
        """The matrix the encoder warped the reference with (ref -> frame)."""
        if not self.registration_corners:
            return matrix_from_text(self.registration_matrix)
        matrix = matrix_from_corners(corners_from_text(self.registration_corners), self.size)
        if matrix is None:
            raise ValueError(f"registration_corners {self.registration_corners!r} hold no homography")
        return matrix

    def to_key_values(self) -> list[dict[str, str]]:
        """The record's KeyValue list: every field except those at their default (`from_key_values`
        restores them), so a frame pays only for what it says; a short record (`FORMAT_SHORT`) also
        leaves out its `CONTEXT_FIELDS` and keeps hash prefixes."""
        items = asdict(self)
        extra = items.pop("extra")
        if self.format in SHORT_FORMATS:
            for name in CONTEXT_FIELDS:
                items.pop(name)
            for name, digits in HASH_DIGITS.items():
                items[name] = items[name][:digits]
        out = [{"key": k, "value": _text(v)} for k, v in items.items() if k not in _DEFAULTS or v != _DEFAULTS[k]]
        out += [{"key": f"x.{k}", "value": str(v)} for k, v in extra.items()]
        return out

    @classmethod
    def from_key_values(cls, values: Mapping[str, str], context: Mapping[str, str] | None = None) -> FrameMeta:
        """Parse a record; a short one takes its `CONTEXT_FIELDS` from `context` (`frame_context`)."""
        if values.get("format") not in READABLE_FORMATS:
            raise ValueError(
                f"not a RefScale frame record (format {values.get('format')!r}, expected one of {READABLE_FORMATS})"
            )
        if values.get("format") in SHORT_FORMATS:  # unknown context: "" or 0
            filled = {f.name: "0" if f.type in ("int", int) else "" for f in fields(cls) if f.name in CONTEXT_FIELDS}
            filled.update({k: v for k, v in (context or {}).items() if k in CONTEXT_FIELDS})
            values = {**filled, **values}
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            if f.name == "extra" or f.name not in values:
                continue
            raw = values[f.name]
            kwargs[f.name] = (
                int(raw)
                if f.type in ("int", int)
                else float(raw)
                if f.type in ("float", float)
                else raw == "true"
                if f.type in ("bool", bool)
                else raw
            )
        kwargs["extra"] = {k[2:]: v for k, v in values.items() if k.startswith("x.")}
        missing = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING
                   and f.name not in kwargs]
        if missing:
            raise ValueError(f"frame record ({values.get('format')}) lacks {', '.join(missing)}")
        return cls(**kwargs)


_DEFAULTS: dict[str, Any] = {
    f.name: f.default for f in fields(FrameMeta) if f.name not in ("format", "extra") and f.default is not MISSING
}
"""Fields a record may leave out: readers (this one and older ones) take the default for a missing key."""


def _text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        text = repr(v)
        return text[:-2] if text.endswith(".0") else text
    return str(v)


def registration_fields(matrix: np.ndarray, size_hw: tuple[int, int]) -> dict[str, str]:
    """`FrameMeta` fields that store `matrix` exactly for a frame of `size_hw`: `registration_corners`
    when corners give back this very matrix (`registration.quantise_matrix` made it), else
    `registration_matrix`; nothing for the identity (the default)."""
    m = np.asarray(matrix, dtype=np.float64)
    if np.array_equal(m, np.eye(3)):
        return {}
    corners = exact_corners(m, size_hw)
    if corners is not None:
        return {"registration_corners": corners_text(corners)}
    return {"registration_matrix": matrix_to_text(m)}


def record_format(meta: FrameMeta, smap_format: str = "") -> str:
    """The format a new short record declares: 9 where the LR is predicted from the reference, 8 where the
    frame stores its S_map in the coded form (`smap_format`, the S_map message's format), else 7 where it
    stores corners, else 6."""
    if meta.lr_ref_crc:
        return FORMAT_REFERENCE_PREDICTED
    if smap_format == SMAP_FORMAT:
        return FORMAT_SMAP_CODED
    return FORMAT_CORNERS if meta.registration_corners else FORMAT_SHORT


def meta_msg(meta: FrameMeta, header: Mapping[str, Any], message: str) -> dict[str, Any]:
    """The DiagnosticArray dict for one frame; level WARN marks frames encoded without reference."""
    return {
        "header": header,
        "status": [
            {
                "level": 0 if meta.has_smap else 1,
                "name": f"refscale: {meta.source_topic}",
                "message": message,
                "hardware_id": str(header.get("frame_id", "")),
                "values": meta.to_key_values(),
            }
        ],
    }


def meta_from_msg(msg: Any, context: Mapping[str, str] | None = None) -> FrameMeta:
    """Parse a decoded `.../refscale/meta` DiagnosticArray (any message library); `context` as
    `FrameMeta.from_key_values`'s."""
    status = msg["status"] if isinstance(msg, Mapping) else msg.status
    if not status:
        raise ValueError("RefScale meta message has no status entry")
    values = status[0]["values"] if isinstance(status[0], Mapping) else status[0].values
    kv = {
        (v["key"] if isinstance(v, Mapping) else v.key): (v["value"] if isinstance(v, Mapping) else v.value)
        for v in values
    }
    return FrameMeta.from_key_values(kv, context)


def bag_metadata(
    model_id: str, weights_sha256: str, config: Mapping[str, Any], software_version: str
) -> dict[str, str]:
    """The bag-level `refscale` MCAP metadata record (also copied into metadata.yaml custom_data)."""
    return {
        "format": FORMAT_REFERENCE_PREDICTED,  # the newest its frames may use
        "software_version": software_version,
        "model_id": model_id,
        "weights_sha256": weights_sha256,
        "model_config": json.dumps(dict(config), sort_keys=True),
    }


__all__ = [
    "CONTEXT_FIELDS",
    "FORMAT",
    "FORMAT_CORNERS",
    "FORMAT_REFERENCE_PREDICTED",
    "FORMAT_SMAP_CODED",
    "FORMAT_SHORT",
    "FORMAT_SMAP_BLOCK",
    "FORMAT_SMAP_REUSE",
    "FORMAT_VIDEO",
    "HASH_DIGITS",
    "READABLE_FORMATS",
    "SHORT_FORMATS",
    "METADATA_NAME",
    "FrameMeta",
    "bag_metadata",
    "camera_record_name",
    "frame_context",
    "frame_contexts",
    "lr_topic",
    "matrix_from_text",
    "matrix_to_text",
    "meta_from_msg",
    "meta_msg",
    "meta_topic",
    "record_format",
    "registration_fields",
    "smap_topic",
    "split_topic",
]


def camera_topics(bag: str | Path) -> set[str]:
    """The camera topics of a RefScale bag (those with a `meta` part)."""
    from refscale_model.bags.reader import topics_of

    return {parts[0] for t in topics_of(bag) if (parts := split_topic(t)) and parts[1] == "meta"}
