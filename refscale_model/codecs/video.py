"""Video LR codecs: H.264 / H.265 per camera stream through PyAV (libx264 / libx265, or NVENC).

Stream contract (what `FrameEncoder`, `FrameAssembler` and Foxglove rely on):

* One coded frame per input frame, at once: the encoder runs with zero delay (x264/x265
  `tune=zerolatency`: no B-frames, no lookahead, no frame threads), and `VideoStreamEncoder.encode`
  raises `CodecError` if the encoder ever holds a frame back, so it can never stall a recorder.
* Annex B byte stream, one access unit per message. Frame 0, `gop`, 2·`gop`, ... are IDR
  keyframes (closed GOPs, no scene-cut keyframes in between) and every keyframe carries its own
  parameter sets (SPS/PPS, plus VPS for H.265): playback and decoding can start at any keyframe.
* No encoder-information SEI: libx265 otherwise writes a 2.3 kB text of its version and options
  with every keyframe that repeats the headers (`info=0`). A decoder never reads it; in a GOP-10
  stream at low rates it was ~20 % of the bytes. (libx264 writes its ~600 B text once per stream.)
* Quality is the constant rate factor `crf` (0–51, lower is better; x264/x265 scale). A
  `target_kbps` budget caps the stream with the encoder's own VBV (capped CRF, 1 s buffer) —
  the video codec's rate control, not `RateController` (which steps still-image qualities).
* The decoder (`VideoStreamDecoder`) is ffmpeg's h264 / hevc decoder; it returns exactly one
  frame per access unit and refuses a predicted frame until it has seen a keyframe.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from fractions import Fraction
from functools import cache

import numpy as np

from refscale_model.codecs.base import VIDEO_CODEC_NAMES, CodecError, EncodedLr, check_image

DEFAULT_CRF = {"h264": 28, "h265": 30}
"""Default crf per codec (about equal quality: x265 spends ~20–30 % fewer bits at the same crf+2)."""
DEFAULT_GOP = 10
"""Keyframe interval in frames: 1 s at the usual 10 Hz camera rate."""
CRF_RANGE = (0, 51)
X264_PRESET = "veryfast"
X265_PRESET = "veryfast"
"""Presets of the CPU encoders: real time for several 640×360 cameras on an embedded CPU. The
full-resolution video anchors of `refscale rd` use the same settings (same speed class)."""
X265_NO_INFO_SEI = "info=0"
"""libx265 parameter that leaves out its encoder-information SEI (see the module docstring); the
scoreboard's x265 anchors use it too."""


@dataclass(frozen=True)
class VideoCodecInfo:
    name: str
    format: str
    """`foxglove_msgs/CompressedVideo.format` ("h264" / "h265")."""
    decoder: str
    cpu_encoder: str
    gpu_encoder: str
    parameter_set_nals: frozenset[int]
    """NAL unit types a keyframe must carry (SPS/PPS; VPS/SPS/PPS)."""
    idr_nals: frozenset[int]


_INFO = {
    "h264": VideoCodecInfo("h264", "h264", "h264", "libx264", "h264_nvenc", frozenset({7, 8}), frozenset({5})),
    "h265": VideoCodecInfo("h265", "h265", "hevc", "libx265", "hevc_nvenc", frozenset({32, 33, 34}),
                           frozenset({19, 20})),
}
assert tuple(_INFO) == VIDEO_CODEC_NAMES


def is_video_codec(name: str) -> bool:
    return name in _INFO


def video_info(name: str) -> VideoCodecInfo:
    if name not in _INFO:
        raise CodecError(f"unknown video LR codec {name!r}; valid choices: {', '.join(VIDEO_CODEC_NAMES)}")
    return _INFO[name]


def check_crf(name: str, crf: int | None) -> int | None:
    """None (the codec's default) or an int 0–51."""
    if crf is None:
        return None
    lo, hi = CRF_RANGE
    if isinstance(crf, bool) or not isinstance(crf, (int, np.integer)) or not lo <= int(crf) <= hi:
        raise CodecError(f"codec {name!r}: crf must be an int {lo}–{hi} (lower is better) or None, got {crf!r}")
    return int(crf)


def check_gop(gop: int | None) -> int:
    if gop is None:
        return DEFAULT_GOP
    if isinstance(gop, bool) or not isinstance(gop, (int, np.integer)) or int(gop) < 1:
        raise CodecError(f"gop (keyframe interval in frames) must be an int >= 1, got {gop!r}")
    return int(gop)


# ---------------------------------------------------------------------------------------------- NAL units
def nal_units(data: bytes) -> list[tuple[int, int]]:
    """(offset of the payload, first header byte) of each NAL unit of an Annex B stream."""
    out = []
    i, n = 0, len(data)
    while True:
        j = data.find(b"\x00\x00\x01", i)
        if j < 0 or j + 3 >= n:
            return out
        out.append((j + 3, data[j + 3]))
        i = j + 3


def nal_types(name: str, data: bytes) -> list[int]:
    """NAL unit types of an Annex B access unit (H.264: 5 bits; H.265: 6 bits after the forbidden bit)."""
    if name == "h264":
        return [b & 0x1F for _, b in nal_units(data)]
    return [(b >> 1) & 0x3F for _, b in nal_units(data)]


def is_self_contained_keyframe(name: str, data: bytes) -> bool:
    """An IDR access unit that carries every parameter set it needs (Annex B start code first)."""
    info = video_info(name)
    types = set(nal_types(name, data))
    return data[:4] == b"\x00\x00\x00\x01" and bool(types & info.idr_nals) and info.parameter_set_nals <= types


# ---------------------------------------------------------------------------------------------- encoders
def _encoder_options(info: VideoCodecInfo, encoder: str, crf: int, gop: int, target_kbps: float | None,
                     threads: int) -> dict[str, str]:
    kbps = None if target_kbps is None else max(1, int(target_kbps))
    if encoder == "libx264":
        opts = {"preset": X264_PRESET, "tune": "zerolatency", "crf": str(crf), "g": str(gop),
                "keyint_min": str(gop), "sc_threshold": "0", "bf": "0", "forced-idr": "1", "threads": str(threads),
                "x264-params": "repeat-headers=1:annexb=1:open-gop=0"}
        if kbps:
            opts["x264-params"] += f":vbv-maxrate={kbps}:vbv-bufsize={kbps}"
        return opts
    if encoder == "libx265":
        params = (f"log-level=error:keyint={gop}:min-keyint={gop}:scenecut=0:bframes=0:open-gop=0:repeat-headers=1"
                  f":annexb=1:{X265_NO_INFO_SEI}:frame-threads=1:pools={'none' if threads <= 1 else threads}"
                  ":lookahead-slices=0")
        if kbps:
            params += f":vbv-maxrate={kbps}:vbv-bufsize={kbps}"
        return {"preset": X265_PRESET, "tune": "zerolatency", "crf": str(crf), "forced-idr": "1",
                "x265-params": params}
    # NVENC: constant QP close to the crf scale, low-latency tuning, no B-frames, IDR every gop
    opts = {"preset": "p4", "tune": "ll", "rc": "constqp", "qp": str(crf), "g": str(gop), "bf": "0",
            "forced-idr": "1", "delay": "0", "zerolatency": "1"}
    if kbps:
        opts.update({"rc": "cbr", "b": f"{kbps}k", "maxrate": f"{kbps}k", "bufsize": f"{kbps}k"})
        opts.pop("qp")
    return opts


def _open_encoder(encoder: str, info: VideoCodecInfo, width: int, height: int, crf: int, gop: int,
                  target_kbps: float | None, threads: int, fps: int, x265_extra: str = ""):  # noqa: ANN202 - av types
    """An open encoder context; `x265_extra` appends `key=value:...` to libx265's parameters."""
    import av

    ctx = av.codec.CodecContext.create(encoder, "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    ctx.time_base = Fraction(1, fps)
    ctx.framerate = Fraction(fps, 1)
    options = _encoder_options(info, encoder, crf, gop, target_kbps, threads)
    if x265_extra and encoder == "libx265":
        options["x265-params"] += f":{x265_extra}"
    ctx.options = options
    ctx.open()
    return ctx


@cache
def _encoder_works(encoder: str, name: str) -> str | None:
    """None when `encoder` opens and codes a frame here, else why not (NVENC needs a GPU + driver)."""
    try:
        import av
    except ImportError as exc:
        return f"PyAV not installed ({exc})"
    if encoder not in av.codecs_available:
        return f"this PyAV/ffmpeg has no {encoder}"
    try:
        ctx = _open_encoder(encoder, video_info(name), 64, 64, 30, 1, None, 1, 10)
        frame = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24").reformat(format="yuv420p")
        frame.pts = 0
        ctx.encode(frame)
    except Exception as exc:  # noqa: BLE001 - PyAV raises several types for an unusable encoder
        return f"{encoder}: {exc}"
    return None


def choose_encoder(name: str, prefer: str = "auto") -> str:
    """The encoder that runs here: NVENC when it works (`prefer` "auto"/"gpu"), else the CPU one.
    `prefer` may also name an encoder ("libx264", "h264_nvenc", ...) or be "cpu"."""
    info = video_info(name)
    if prefer in ("auto", "gpu"):
        candidates = [info.gpu_encoder, info.cpu_encoder] if prefer == "auto" else [info.gpu_encoder]
    elif prefer == "cpu":
        candidates = [info.cpu_encoder]
    elif prefer in (info.cpu_encoder, info.gpu_encoder):
        candidates = [prefer]
    else:
        raise CodecError(f"{name}: encoder must be auto, cpu, gpu, {info.cpu_encoder} or {info.gpu_encoder}, "
                         f"got {prefer!r}")
    reasons = []
    for enc in candidates:
        why = _encoder_works(enc, name)
        if why is None:
            return enc
        reasons.append(why)
    raise CodecError(f"no working {name} encoder: {'; '.join(reasons)}")


def _even(rgb: np.ndarray) -> np.ndarray:
    """yuv420p needs even sizes: replicate the last row/column (the decoder crops it off)."""
    h, w = rgb.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return rgb
    return np.pad(rgb, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


class VideoStreamEncoder:
    """`LrStreamEncoder` of one camera: H.264/H.265, IDR every `gop` frames, zero delay.

    `encode(rgb, crf)` returns the frame's access unit at once. The coder opens on the first frame
    (its size); a size change (or `crf` change) starts a new stream at a keyframe.
    """

    def __init__(self, name: str, crf: int | None = None, gop: int | None = None, target_kbps: float | None = None,
                 encoder: str = "auto", threads: int = 1, fps: int = 10) -> None:
        self.info = video_info(name)
        self.name, self.format = name, self.info.format
        self.crf = check_crf(name, crf)
        self.gop = check_gop(gop)
        self.target_kbps = target_kbps
        self.encoder = choose_encoder(name, encoder)
        self.threads, self.fps = int(threads), int(fps)
        self._ctx = None
        self._key: tuple[int, int, int] | None = None
        self._index = 0
        """Frames coded since the last scheduled GOP start; IDR when `_index % gop == 0`."""
        self._pts = 0
        self._force_key = False
        self._lock = threading.Lock()

    def request_keyframe(self) -> None:
        """Make the next frame a keyframe (e.g. the frame before it was never stored)."""
        self._force_key = True

    def encode(self, rgb: np.ndarray, quality: int | None = None) -> EncodedLr:
        import av

        rgb = check_image(rgb)
        if rgb.ndim == 2:
            rgb = np.repeat(rgb[:, :, None], 3, axis=2)
        crf = check_crf(self.name, quality)
        crf = (self.crf if self.crf is not None else DEFAULT_CRF[self.name]) if crf is None else crf
        padded = np.ascontiguousarray(_even(rgb))
        key = (padded.shape[0], padded.shape[1], crf)
        with self._lock:
            if self._ctx is None or key != self._key:
                self._ctx = _open_encoder(self.encoder, self.info, padded.shape[1], padded.shape[0], crf, self.gop,
                                          self.target_kbps, self.threads, self.fps)
                self._key, self._index, self._pts = key, 0, 0
            keyframe = self._index % self.gop == 0 or self._force_key
            if self._force_key:
                self._index = 0
            frame = av.VideoFrame.from_ndarray(padded, format="rgb24").reformat(format="yuv420p")
            frame.pts = self._pts
            frame.pict_type = av.video.frame.PictureType.I if keyframe else av.video.frame.PictureType.NONE
            packets = self._ctx.encode(frame)
            if len(packets) != 1:
                self._ctx = None  # a stream that lost sync starts over with a keyframe
                raise CodecError(f"{self.encoder} returned {len(packets)} packets for one frame: the encoder is "
                                 "not running with zero delay")
            data = bytes(packets[0])
            self._index += 1
            self._pts += 1
            self._force_key = False
        if keyframe and not is_self_contained_keyframe(self.name, data):
            self._ctx = None
            raise CodecError(f"{self.encoder}: keyframe without its parameter sets (NAL types "
                             f"{nal_types(self.name, data)})")
        return EncodedLr(data, keyframe, self.format)


class VideoStreamDecoder:
    """`LrStreamDecoder` of one camera: access units in coded order -> RGB uint8 H×W×3.

    `size` (H, W) crops the even-padded picture back to the LR size. A predicted frame before
    the first keyframe raises `CodecError`; so does a frame the decoder rejects (the stream is then
    broken until the next keyframe).
    """

    def __init__(self, name: str) -> None:
        import av

        self.info = video_info(name)
        self.name = name
        self._av = av
        self._ctx = av.codec.CodecContext.create(self.info.decoder, "r")
        self._ctx.thread_count = 1  # frame threads would delay the output by a frame
        self._ctx.flags |= av.codec.context.Flags.low_delay
        self.synced = False

    def decode(self, frame: EncodedLr | bytes, size: tuple[int, int] | None = None) -> np.ndarray:
        data = frame.data if isinstance(frame, EncodedLr) else bytes(frame)
        if isinstance(frame, EncodedLr) and frame.format != self.info.format:
            raise CodecError(f"frame is {frame.format!r}, decoder is {self.info.format!r}")
        if is_self_contained_keyframe(self.name, data):
            self.synced = True
        elif not self.synced:
            raise CodecError(f"{self.name}: predicted frame before any keyframe (its GOP start is missing)")
        try:
            out = self._ctx.decode(self._av.Packet(data))
        except Exception as exc:  # noqa: BLE001 - ffmpeg errors come as several PyAV types
            self.synced = False
            raise CodecError(f"{self.name}: not decodable: {exc}") from exc
        if len(out) != 1:
            self.synced = False
            raise CodecError(f"{self.name}: decoder gave {len(out)} pictures for one access unit")
        rgb = out[0].to_ndarray(format="rgb24")
        if size is not None:
            rgb = rgb[: size[0], : size[1]]
        return np.ascontiguousarray(rgb)
