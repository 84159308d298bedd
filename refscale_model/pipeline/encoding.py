"""What an encoded frame is: its result, its errors, the encoder's counters, how its LR is coded.

Shared by `FrameEncoder` (one frame at a time) and `EncoderPipeline` (its stages on threads).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from refscale_model.codecs import CodecError, get_codec, is_video_codec
from refscale_model.codecs.reference_predicted import CODEC_NAME as REFERENCE_CODEC

if TYPE_CHECKING:
    from refscale_model.pipeline.pose import Pose


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
    """Payload bytes written (LR bitstream + stored S_map)."""
    encode_s: float = 0.0
    lr_codec: str = "png"
    lr_quality: dict[str, int] = field(default_factory=dict)
    """Per camera: the quality of its latest LR frame (-1 lossless)."""
    kbps: dict[str, float] = field(default_factory=dict)
    """Per camera: LR + S_map kbit/s over the rate controller's window (with a `target_kbps` budget)."""
    target_kbps: float | None = None
    lr_encoder: str = ""
    """Video LR: the encoder that runs (libx264, libx265, h264_nvenc, hevc_nvenc)."""
    feature_reuse: int = 0
    """Frames whose reference features were reused (same reference and registration matrix)."""
    batched_frames: int = 0
    """Frames whose network ran in one batch with other cameras' frames (`FrameEncoder.encode_frames`)."""
    lr_predicted: int = 0
    """LR codec `h265-ref`: frames whose LR was predicted from the reference (the others are intra)."""

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
    lr_quality: int = -1
    """Quality this frame's LR was coded with (-1 lossless)."""
    kbps: float = 0.0
    """This camera's LR + S_map kbit/s over the rate window (0 without a `target_kbps` budget)."""
    lr_psnr: float = 0.0
    """PSNR of the coded LR against the LR before its codec, as recorded (`FrameMeta.lr_psnr`; 0: lossless)."""
    lr_predicted: bool = False
    """LR codec `h265-ref`: the LR was predicted from the reference (not intra)."""


@dataclass
class EncodeJob:
    """One frame on its way through the encoder's stages (`_prepare` -> `_infer` -> `_finish`)."""

    topic: str
    msg: Any
    log_time: int
    pose: Pose | None
    t0: float = 0.0
    rgb: np.ndarray | None = None
    stamp: int = 0
    ref_obj: Any = None
    warped: np.ndarray | None = None
    reg: Any = None
    reason: str = ""
    fref: np.ndarray | None = None
    lr: np.ndarray | None = None
    smap: np.ndarray | None = None


@dataclass(frozen=True)
class LrSettings:
    """How a recording codes its LR frames: codec, quality (None: codec default), kbit/s budget.

    For the video codecs (h264, h265) `quality` is the crf 0–51 (lower is better), `gop` the
    keyframe interval in frames and `encoder` the encoder that runs (libx264, hevc_nvenc, ...)."""

    codec: str = "png"
    quality: int | None = None
    target_kbps: float | None = None
    gop: int | None = None
    encoder: str = ""

    @property
    def video(self) -> bool:
        return is_video_codec(self.codec)

    @classmethod
    def checked(
        cls, codec: str, quality: int | None, target_kbps: float | None, gop: int | None = None,
        encoder: str = "auto",
    ) -> LrSettings:
        """Validated settings; `CodecError` (a ValueError) names what is wrong and the valid choices."""
        if is_video_codec(codec):
            from refscale_model.codecs import DEFAULT_CRF, check_crf, check_gop, choose_encoder

            if target_kbps is not None and (isinstance(target_kbps, bool) or not float(target_kbps) > 0):
                raise CodecError(f"target_kbps must be a number > 0, got {target_kbps!r}")
            crf = check_crf(codec, quality)
            kbps = None if target_kbps is None else float(target_kbps)
            return cls(codec, DEFAULT_CRF[codec] if crf is None else crf, kbps, check_gop(gop),
                       choose_encoder(codec, encoder))
        if codec == REFERENCE_CODEC:
            return cls._reference_predicted(quality, target_kbps, gop, encoder)
        if gop is not None:
            raise CodecError(f"gop is a video codec setting (h264, h265); {codec!r} codes every frame alone")
        lr = get_codec(codec)
        if quality is not None:
            from refscale_model.codecs import check_quality

            quality = check_quality(lr.name, quality, lr.lossless)
        if target_kbps is not None:
            if lr.lossless:
                raise CodecError(f"target_kbps needs a lossy LR codec (jpeg, webp, avif); {codec!r} is lossless")
            if isinstance(target_kbps, bool) or not float(target_kbps) > 0:
                raise CodecError(f"target_kbps must be a number > 0, got {target_kbps!r}")
            target_kbps = float(target_kbps)
        return cls(lr.name, quality, target_kbps)

    @classmethod
    def _reference_predicted(cls, quality: int | None, target_kbps: float | None, gop: int | None,
                             encoder: str) -> LrSettings:
        """`h265-ref` (`codecs.reference_predicted`): a crf, every frame alone, libx265 on the CPU only."""
        from refscale_model.codecs import DEFAULT_CRF, check_crf, choose_encoder

        if gop is not None:
            raise CodecError(f"{REFERENCE_CODEC} codes every frame alone (intra or from its reference): no gop")
        if target_kbps is not None:
            raise CodecError(f"{REFERENCE_CODEC} takes a crf (--lr-quality), not a target_kbps budget; for a budget "
                             "use h265 (the encoder's VBV) or a still-image codec")
        if encoder not in ("auto", "cpu", "libx265", ""):
            raise CodecError(f"{REFERENCE_CODEC} runs libx265 on the CPU only (the offboard side codes the hidden "
                             f"reference picture again, bit-exactly); got encoder {encoder!r}")
        choose_encoder("h265", "cpu")  # a clear error where PyAV has no libx265
        crf = check_crf("h265", quality)
        return cls(REFERENCE_CODEC, DEFAULT_CRF["h265"] if crf is None else crf, None, None, "libx265")
