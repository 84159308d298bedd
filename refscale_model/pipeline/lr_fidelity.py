"""The car's measure of what its LR codec did to a frame: PSNR of the decoded LR against the coded one.

The offboard decoder takes less of its learned restoring the cleaner the LR arrived
(`models.decoder_blend`), and only the car has the LR before its codec. Decoding each coded LR once
more, as the far end will, costs a few ms per frame at 720p (an image decode, or one access unit of
a per-camera video decoder fed in coded order).
"""

from __future__ import annotations

import numpy as np

from refscale_model.codecs import CodecError, EncodedLr, is_lossless, is_video_codec, open_stream_decoder
from refscale_model.codecs.base import LrStreamDecoder
from refscale_model.metrics import uint8_psnr
from refscale_model.models.decoder_blend import recorded_lr_psnr


class LrFidelity:
    """Per camera: decode each coded LR as the far end will and measure it against the LR that was coded."""

    def __init__(self, codec: str) -> None:
        self.codec = codec
        self.video = is_video_codec(codec)
        self.lossless = is_lossless(codec)
        self._decoders: dict[str, LrStreamDecoder] = {}

    def measure(self, topic: str, lr: np.ndarray, coded: EncodedLr) -> float:
        """The record's `lr_psnr` for this frame: 0.0 for a lossless LR (not stored) or when the coded
        frame does not decode here (a video stream then resyncs at its next keyframe)."""
        if self.lossless:
            return 0.0
        decoder = self._decoders.get(topic)
        if decoder is None:
            decoder = self._decoders[topic] = open_stream_decoder(self.codec)
        try:
            decoded = decoder.decode(coded, lr.shape[:2]) if self.video else decoder.decode(coded)
        except CodecError:
            return 0.0
        return measured_lr_psnr(lr, decoded)


def measured_lr_psnr(coded: np.ndarray, decoded: np.ndarray) -> float:
    """The record's `lr_psnr` of an LR that was coded as `coded` and decodes as `decoded` (the car's and
    the scoreboard's one measurement)."""
    return recorded_lr_psnr(uint8_psnr(coded, decoded))


__all__ = ["LrFidelity", "measured_lr_psnr"]
