"""H.265 LR predicted from the reference: a frame's LR coded as the P-frame after a hidden picture of its reference.

Why: both ends already hold the reference (the car in its route cache, the offboard side in the same cache),
and on revisits much of a frame is in it. The scoreboard's "x265 given the reference" anchor gets this for
free; an LR coded intra does not. Here the LR gets it too.

Contract (what `FrameEncoder`, `Reconstructor` and `refscale rd` rely on):

* `reference_lr(warped_reference, lr_shape, scale)` is the hidden picture both ends predict from: the reference
  as the frame's encoder warped it, averaged over `scale`×`scale` blocks in integers (the same bytes on any CPU)
  and edge-padded to the LR's size.
* `code_frame(lr, reference, crf)` is the `h265-ref` LR codec's work per frame. A fresh libx265 stream with the
  recorder's video settings (`codecs.video`: veryfast, zero latency, one thread) codes the LR as one IDR with its
  parameter sets (message format "h265-ref-intra"); with a reference, a second fresh stream codes the hidden
  picture as its IDR and the LR as the P-frame after it (message format "h265-ref": only the P-frame's access
  unit is stored, with the CRC-32 of the hidden IDR, 8 hex digits). The frame keeps whichever has the lower
  `SSE + λ(crf)·bits` on the LR, so a reference that does not help (a night frame against a day reference)
  costs an encode, not bits. The P-frame runs at `crf - PREDICTED_CRF_OFFSET`: at the same crf x265 quantises
  a P-frame after an IDR far more coarsely (on 16 training pairs' LR a P-frame at crf c − 9 to c − 10 matches
  the IDR at crf c in PSNR; `tools/calibrate_predicted_crf.py`), so one crf setting means about the same LR
  quality either way.
* `decode_frame(data, format, size, crf, reference, crc)` decodes either. For a predicted frame it codes the
  hidden picture again with the same settings (x265 is deterministic for the same picture, parameters and
  build) and decodes IDR + P. A different IDR (another x265 build, a reference one pixel off) is reported by
  `DecodedLr.digest_matches` = False, not refused: the P-frame then predicts from a slightly different picture
  and the frame still rebuilds, a little worse.
* Each frame is its own stream: no state between frames, so any frame decodes alone once its reference is
  there. Foxglove cannot show these frames (a P-frame lacks its hidden picture; the panel takes no HEVC stills).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from refscale_model.codecs.base import CodecError, check_image
from refscale_model.codecs.video import DEFAULT_CRF, _even, _open_encoder, check_crf, video_info

CODEC_NAME = "h265-ref"
"""The LR codec name of frames coded this way (bag records, `refscale rd` curves)."""
MESSAGE_FORMAT = "h265-ref"
"""`sensor_msgs/CompressedImage.format` of such a frame: an HEVC P-frame that needs the hidden picture."""
ENCODER = "libx265"
"""CPU only: the offboard side must code the hidden picture bit-exactly again (NVENC cannot be re-run)."""
PREDICTED_CRF_OFFSET = 9
"""The predicted frame's crf is the setting's minus this (see the module docstring); the record keeps the setting."""
LAMBDA_SCALE = 0.57
"""λ = LAMBDA_SCALE · 2^((crf − 12) / 3) per bit against the LR's squared error (HEVC's reference encoder's
intra λ of the quantiser; x265's crf is close to its QP for an IDR)."""
INTRA_FORMAT = "h265-ref-intra"
"""Message format of a frame coded intra (a self-contained HEVC IDR; not "h265", which names a video stream's
access unit, `foxglove_msgs/CompressedVideo`)."""
_STREAM_GOP = 2
"""keyint of the two-picture stream; the same on both ends (it shapes the encoder's settings)."""
MIN_SIDE = 16
"""libx265 refuses pictures under 16 pixels a side."""
HIDDEN_IPRATIO = 3.0
"""x265's I/P quantiser ratio in the predicted frame's stream (default 1.4): its IDR, the hidden picture, costs
nothing, so it is quantised ~6.6 QP more finely than x265 would (6·log2(3 / 1.4)), and the P-frame predicts from
a cleaner picture (−2.3 % BD-rate on the sample drive, docs/rate-distortion.md). Both ends use it: it shapes the
hidden IDR."""


@dataclass(frozen=True)
class DecodedLr:
    """A decoded `h265-ref` LR."""

    rgb: np.ndarray
    digest_matches: bool
    """Whether the offboard hidden picture has the bytes the car's had (False: decoded, slightly off)."""


def lr_shape(hr_shape: tuple[int, int], scale: int) -> tuple[int, int]:
    """The LR size of an HR frame (the network pads to a multiple of the scale): what both ends assume."""
    return -(-int(hr_shape[0]) // scale), -(-int(hr_shape[1]) // scale)


def reference_lr(warped_reference: np.ndarray, lr_shape: tuple[int, int], scale: int) -> np.ndarray:
    """The hidden picture: `warped_reference` (RGB uint8, HR size) block-averaged by `scale` with integer
    rounding, cropped or edge-padded to `lr_shape` (H, W)."""
    ref = _rgb(warped_reference)
    if scale < 1:
        raise CodecError(f"scale must be >= 1, got {scale}")
    h, w = (ref.shape[0] // scale) * scale, (ref.shape[1] // scale) * scale
    if h == 0 or w == 0:
        raise CodecError(f"reference {ref.shape[:2]} is smaller than one {scale}×{scale} block")
    blocks = ref[:h, :w].astype(np.uint32).reshape(h // scale, scale, w // scale, scale, 3).sum(axis=(1, 3))
    area = scale * scale
    small = ((blocks + area // 2) // area).astype(np.uint8)
    lh, lw = lr_shape
    small = small[:lh, :lw]
    pad = ((0, lh - small.shape[0]), (0, lw - small.shape[1]), (0, 0))
    return np.ascontiguousarray(np.pad(small, pad, mode="edge") if any(p[1] for p in pad) else small)


def _crf(crf: int | None) -> int:
    checked = check_crf("h265", crf)
    return DEFAULT_CRF["h265"] if checked is None else checked


def _pictures(*rgbs: np.ndarray) -> list:  # noqa: ANN401 - av.VideoFrame
    import av

    return [av.VideoFrame.from_ndarray(np.ascontiguousarray(_even(x)), format="rgb24").reformat(format="yuv420p")
            for x in rgbs]


def _code(pictures: list[np.ndarray], crf: int, hidden_first: bool = False) -> list[bytes]:
    """The access units of `pictures` as one fresh stream: the first an IDR, the rest P-frames. With
    `hidden_first` the first is the hidden picture, quantised more finely (`HIDDEN_IPRATIO`)."""
    import av

    if pictures[0].shape[0] < MIN_SIDE or pictures[0].shape[1] < MIN_SIDE:
        raise CodecError(f"{CODEC_NAME}: LR {pictures[0].shape[:2]} is too small for libx265 "
                         f"({MIN_SIDE}×{MIN_SIDE} at least)")
    height, width = _even(pictures[0]).shape[:2]
    try:
        ctx = _open_encoder(ENCODER, video_info("h265"), width, height, crf, _STREAM_GOP, None, 1, 10,
                            f"ipratio={HIDDEN_IPRATIO}" if hidden_first else "")
    except Exception as exc:  # noqa: BLE001 - PyAV raises several types for a refused setting
        raise CodecError(f"{CODEC_NAME}: {ENCODER} refuses a {width}×{height} picture at crf {crf}: {exc}") from exc
    out = []
    for i, frame in enumerate(_pictures(*pictures)):
        frame.pts = i
        frame.pict_type = av.video.frame.PictureType.I if i == 0 else av.video.frame.PictureType.P
        packets = ctx.encode(frame)
        if len(packets) != 1:
            raise CodecError(f"{ENCODER} returned {len(packets)} packets for one picture (not zero delay)")
        out.append(bytes(packets[0]))
    return out


def _digest(idr: bytes) -> str:
    return f"{zlib.crc32(idr):08x}"


def _decode_units(units: list[bytes], size: tuple[int, int]) -> np.ndarray:
    """The last picture of a fresh HEVC stream made of `units`, cropped to `size` (H, W)."""
    import av

    ctx = av.codec.CodecContext.create(video_info("h265").decoder, "r")
    ctx.thread_count = 1
    ctx.flags |= av.codec.context.Flags.low_delay
    out = []
    try:
        for unit in units:
            out = ctx.decode(av.Packet(unit))
    except Exception as exc:  # noqa: BLE001 - ffmpeg errors come as several PyAV types
        raise CodecError(f"{CODEC_NAME}: not decodable: {exc}") from exc
    if len(out) != 1:
        raise CodecError(f"{CODEC_NAME}: decoder gave {len(out)} pictures for one access unit")
    return np.ascontiguousarray(out[0].to_ndarray(format="rgb24")[: size[0], : size[1]])


@dataclass(frozen=True)
class CodedFrame:
    """`code_frame`'s choice for one LR: the stored bytes, their message format, the hidden picture's CRC-32
    ("" for an intra frame) and the LR as the far end decodes it."""

    data: bytes
    format: str
    digest: str
    decoded: np.ndarray

    @property
    def predicted(self) -> bool:
        return bool(self.digest)


def predicted_crf(crf: int | None) -> int:
    """The crf of a predicted frame (and of its hidden picture) for the setting `crf`."""
    return max(0, _crf(crf) - PREDICTED_CRF_OFFSET)


def rd_cost(lr: np.ndarray, decoded: np.ndarray, nbytes: int, crf: int) -> float:
    """`SSE + λ·bits` on the LR (squared error averaged over the colour channels of each pixel)."""
    err = lr.astype(np.float64) - decoded.astype(np.float64)
    return float((err * err).sum() / 3 + LAMBDA_SCALE * 2 ** ((crf - 12) / 3) * 8 * nbytes)


def code_frame(lr: np.ndarray, reference: np.ndarray | None, crf: int | None = None) -> CodedFrame:
    """The LR coded intra, or predicted from `reference` (`reference_lr`'s picture) where that costs less."""
    lr = _rgb(lr)
    crf = _crf(crf)
    (idr,) = _code([lr], crf)
    intra = CodedFrame(idr, INTRA_FORMAT, "", _decode_units([idr], lr.shape[:2]))
    if reference is None:
        return intra
    lr, reference = _same_pictures(lr, reference)
    hidden, p_frame = _code([reference, lr], predicted_crf(crf), hidden_first=True)
    predicted = CodedFrame(p_frame, MESSAGE_FORMAT, _digest(hidden), _decode_units([hidden, p_frame], lr.shape[:2]))
    if rd_cost(lr, predicted.decoded, len(p_frame), crf) < rd_cost(lr, intra.decoded, len(idr), crf):
        return predicted
    return intra


def decode_frame(data: bytes, message_format: str, size: tuple[int, int], crf: int | None,
                 reference: np.ndarray | None = None, digest: str = "") -> DecodedLr:
    """The LR of one `code_frame` output (`size` the LR's H, W); a predicted one needs its `reference`."""
    if message_format == INTRA_FORMAT:
        return DecodedLr(_decode_units([bytes(data)], size), True)
    if message_format != MESSAGE_FORMAT:
        raise CodecError(f"{CODEC_NAME}: unknown message format {message_format!r} "
                         f"(expected {INTRA_FORMAT!r} or {MESSAGE_FORMAT!r})")
    if reference is None:
        raise CodecError(f"{CODEC_NAME}: the frame is predicted from its reference, and none is given")
    if reference.shape[:2] != tuple(size):
        raise CodecError(f"{CODEC_NAME}: reference picture {reference.shape[:2]} differs from the LR {tuple(size)}")
    return _decode_predicted(data, reference, predicted_crf(crf), digest)


def _decode_predicted(data: bytes, reference: np.ndarray, crf: int, digest: str) -> DecodedLr:
    """The LR of a P-frame coded after `reference` at `crf` (the hidden picture coded again, then IDR + P)."""
    reference = _rgb(reference)
    (idr,) = _code([reference], crf, hidden_first=True)
    rgb = _decode_units([idr, bytes(data)], reference.shape[:2])
    return DecodedLr(rgb, not digest or digest == _digest(idr))


def _rgb(image: np.ndarray) -> np.ndarray:
    """A checked uint8 picture as RGB H×W×3 (grey repeated): what x265 is fed on both ends."""
    image = check_image(image)
    return np.repeat(image[:, :, None], 3, axis=2) if image.ndim == 2 else image


def _same_pictures(lr: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lr, reference = _rgb(lr), _rgb(reference)
    if lr.shape != reference.shape:
        raise CodecError(f"{CODEC_NAME}: reference picture {reference.shape[:2]} differs from the LR {lr.shape[:2]}")
    return lr, reference
