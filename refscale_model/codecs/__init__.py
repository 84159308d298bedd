"""LR codecs: how the low-resolution image of a frame becomes bytes (and back).

Contract (what the encoder node, the bags and the rate–distortion scoreboard rely on):

* `get_codec(name)` returns an `LrCodec` for "png" (lossless), "jpeg", "webp" or "avif".
  `encode(image, quality)` takes RGB uint8 H×W×3 (or grey H×W) and returns one self-contained
  bitstream; `decode(data)` returns RGB uint8 H×W×3 (grey H×W where the format stores grey).
  `quality` is an int 0–100 (None: the codec's default); png takes none. Bad names or qualities
  raise `CodecError` (a ValueError) naming the valid choices.
* `.format` is the `sensor_msgs/CompressedImage.format` string viewers such as Foxglove understand.
* Streams: the onboard side talks to an `LrStreamEncoder` per camera (`encode(rgb, quality) ->
  EncodedLr(data, is_keyframe, format)`), the offboard side to an `LrStreamDecoder`. Image codecs
  make every frame a keyframe (`ImageStreamEncoder`), so any frame decodes alone. The video codecs
  "h264" and "h265" (`video.VideoStreamEncoder/Decoder`, PyAV libx264/libx265 or NVENC) implement
  the same two protocols with state per camera: quality is the crf 0–51, IDR every `gop` frames
  with its parameter sets, zero encoder delay. `get_codec` refuses them (no frame decodes alone).
* `rate.RateController` turns a kbit/s budget per camera into the next frame's quality.
"""

from refscale_model.codecs.base import (
    CODEC_NAMES,
    LR_CODEC_NAMES,
    VIDEO_CODEC_NAMES,
    CodecError,
    EncodedLr,
    LrCodec,
    LrStreamDecoder,
    LrStreamEncoder,
    check_quality,
)
from refscale_model.codecs.image import (
    AVIF_SPEED,
    ImageStreamDecoder,
    ImageStreamEncoder,
    get_codec,
    is_lossless,
    open_stream_decoder,
    open_stream_encoder,
)
from refscale_model.codecs.rate import RateConfig, RateController
from refscale_model.codecs.video import (
    DEFAULT_CRF,
    DEFAULT_GOP,
    VideoStreamDecoder,
    VideoStreamEncoder,
    check_crf,
    check_gop,
    choose_encoder,
    is_video_codec,
)

__all__ = [
    "AVIF_SPEED",
    "CODEC_NAMES",
    "CodecError",
    "DEFAULT_CRF",
    "DEFAULT_GOP",
    "LR_CODEC_NAMES",
    "VIDEO_CODEC_NAMES",
    "VideoStreamDecoder",
    "VideoStreamEncoder",
    "check_crf",
    "check_gop",
    "choose_encoder",
    "is_lossless",
    "is_video_codec",
    "EncodedLr",
    "ImageStreamDecoder",
    "ImageStreamEncoder",
    "LrCodec",
    "LrStreamDecoder",
    "LrStreamEncoder",
    "RateConfig",
    "RateController",
    "check_quality",
    "get_codec",
    "open_stream_decoder",
    "open_stream_encoder",
]
