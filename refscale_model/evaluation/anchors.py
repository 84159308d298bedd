"""Full-resolution anchors of the rate–distortion scoreboard: what a fleet would do without RefScale.

Still-image codecs (JPEG, WebP, AVIF through `refscale_model.codecs`) code the HR frame itself.
x265 (PyAV's libx265) codes it as an intra frame, or as the second frame of the sequence
[reference, target] so that it may predict from the reference (only the target's bytes count): the
classic "video codec given the same side information" anchor for a reference-based method.
Both x265 anchors: 8-bit yuv420p (BT.601 limited range through swscale), preset `X265_PRESET`,
no B-frames, constant rate factor (crf) as the quality knob; the bitstream's own VPS/SPS/PPS are
counted with the (first) frame, and libx265's 2.3 kB encoder-information SEI is left out
(`codecs.video.X265_NO_INFO_SEI`), as the recorder leaves it out: until 2026-12-04 every x265-intra
frame carried it.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from refscale_model.codecs.video import X265_NO_INFO_SEI

X265_PRESET = "medium"
"""x265's default: a fair anchor; 'fast' would flatter RefScale."""


class AnchorUnavailable(RuntimeError):
    """The anchor cannot run here (missing encoder); the scoreboard marks it skipped with this reason."""


@dataclass
class Coded:
    """One coded-and-decoded frame: the bytes that count and the rebuilt RGB frame."""

    nbytes: int
    decoded: np.ndarray
    enc_ms: float = 0.0
    dec_ms: float = 0.0


def x265_available() -> str | None:
    """None when libx265 encoding and HEVC decoding work here, else the reason they do not."""
    try:
        import av
    except ImportError as exc:
        return f"PyAV not installed ({exc})"
    try:
        av.codec.Codec("libx265", "w")
        av.codec.Codec("hevc", "r")
    except Exception as exc:  # noqa: BLE001 - PyAV raises several types for a missing codec
        return f"PyAV has no libx265 encoder / hevc decoder: {exc}"
    return None


def _even_pad(rgb: np.ndarray) -> np.ndarray:
    """yuv420p needs even sizes: replicate the last row/column (cropped off after decoding)."""
    h, w = rgb.shape[:2]
    return np.pad(rgb, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def x265_sequence(frames: list[np.ndarray], crf: int, preset: str = X265_PRESET) -> list[Coded]:
    """Code RGB frames (same size) as one HEVC stream (first frame intra, the rest may predict);
    per frame: its packet bytes and its decoded RGB. Timings are per frame (the whole stream / n)."""
    import time

    import av

    reason = x265_available()
    if reason:
        raise AnchorUnavailable(reason)
    h, w = frames[0].shape[:2]
    padded = [_even_pad(f) for f in frames]
    t0 = time.perf_counter()
    ctx = av.codec.CodecContext.create("libx265", "w")
    ctx.width, ctx.height = padded[0].shape[1], padded[0].shape[0]
    ctx.pix_fmt = "yuv420p"
    ctx.time_base = Fraction(1, 10)
    ctx.options = {"crf": str(crf), "preset": preset,
                   "x265-params": f"log-level=error:bframes=0:keyint=250:scenecut=0:{X265_NO_INFO_SEI}"}
    packets: list[list[bytes]] = [[] for _ in frames]
    order: list[int] = []
    for i, rgb in enumerate(padded):
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        for pkt in ctx.encode(frame):
            order.append(int(pkt.pts))
            packets[int(pkt.pts)].append(bytes(pkt))
    for pkt in ctx.encode(None):
        packets[int(pkt.pts)].append(bytes(pkt))
    enc_ms = (time.perf_counter() - t0) * 1000 / len(frames)
    t0 = time.perf_counter()
    dec = av.codec.CodecContext.create("hevc", "r")
    decoded: list[np.ndarray] = []
    for chunks in packets:
        for out in dec.decode(av.Packet(b"".join(chunks))):
            decoded.append(out.to_ndarray(format="rgb24")[:h, :w])
    for out in dec.decode(None):
        decoded.append(out.to_ndarray(format="rgb24")[:h, :w])
    dec_ms = (time.perf_counter() - t0) * 1000 / len(frames)
    if len(decoded) != len(frames):
        raise RuntimeError(f"x265 round trip gave {len(decoded)} frames for {len(frames)}")
    return [Coded(sum(len(c) for c in chunks), d, enc_ms, dec_ms) for chunks, d in zip(packets, decoded, strict=True)]


def x265_intra(rgb: np.ndarray, crf: int) -> Coded:
    """The frame alone, intra coded."""
    return x265_sequence([rgb], crf)[0]


def x265_given_reference(rgb: np.ndarray, reference: np.ndarray, crf: int) -> Coded:
    """The frame as the P-frame after its reference; only the frame's bytes count (both ends hold the
    reference). The reference itself passes through the same crf, as an in-stream reference would:
    PyAV's libx265 ignores per-frame QP (zones, qpfile), so a lossless reference is not possible here;
    this makes the anchor slightly pessimistic at high crf."""
    return x265_sequence([reference, rgb], crf)[1]


def video_sequence(codec: str, images: list[np.ndarray], crf: int, gop: int | None = None,
                   encoder: str = "cpu") -> list[Coded]:
    """The images in order as one stream with the recorder's video LR settings (`codecs.video`:
    zero-latency, no B-frames, IDR every `gop`): per frame its access unit's bytes, the decoded frame,
    and the encode / decode time. `encoder` "cpu" (libx264/libx265) keeps the scoreboard deterministic.
    The sequence curves of `refscale rd` and the demo's full-resolution video anchor both use it."""
    import time

    from refscale_model.codecs import open_stream_decoder, open_stream_encoder

    enc = open_stream_encoder(codec, crf=crf, gop=gop, encoder=encoder)
    dec = open_stream_decoder(codec)
    out = []
    for img in images:
        t0 = time.perf_counter()
        coded = enc.encode(img)
        t1 = time.perf_counter()
        rgb = dec.decode(coded, img.shape[:2])
        out.append(Coded(len(coded.data), rgb, (t1 - t0) * 1000, (time.perf_counter() - t1) * 1000))
    return out
