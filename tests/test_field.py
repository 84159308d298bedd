"""The demo's "against the field" answers: full-resolution video anchor, bytes to reach a PSNR."""

from __future__ import annotations

import numpy as np

from refscale_model.evaluation.field import (
    AnchorPoint,
    bytes_to_reach,
    nearest_end,
    video_anchor_curve,
)


def _panning(pair: tuple[np.ndarray, np.ndarray], frames: int = 6) -> list[np.ndarray]:
    """A short real-image 'drive': 192×256 crops of a webcam frame, 4 px further right each time."""
    target, _ = pair
    return [np.ascontiguousarray(target[40:232, 20 + 4 * i:276 + 4 * i]) for i in range(frames)]


def test_video_anchor_codes_the_sequence_and_gop_pays(webcam_pair: tuple[np.ndarray, np.ndarray]) -> None:
    frames = _panning(webcam_pair)
    video = video_anchor_curve(frames, "h265", gop=10, crfs=(40, 30, 22))
    intra = video_anchor_curve(frames, "h265", gop=1, crfs=(40, 30, 22))
    assert [p.setting for p in video] == [40, 30, 22] and all(p.codec == "h265 video" for p in video)
    # lower crf: more bytes, higher PSNR; bpp is bytes per HR pixel
    assert video[0].bytes_per_frame < video[1].bytes_per_frame < video[2].bytes_per_frame
    assert video[0].psnr < video[1].psnr < video[2].psnr
    assert abs(video[1].bpp - 8 * video[1].bytes_per_frame / (192 * 256)) < 1e-9
    # predicted frames of a pan cost less than keyframes every frame at the same crf
    assert video[1].bytes_per_frame < intra[1].bytes_per_frame


def test_bytes_to_reach_reads_inside_the_curve_and_names_its_end_outside() -> None:
    curve = [AnchorPoint("webp", q, b, b * 8 / 1000, db) for q, b, db in
             [(5, 1000.0, 30.0), (20, 2000.0, 32.0), (50, 4000.0, 34.0)]]
    inside = bytes_to_reach(curve, 33.0)
    assert inside is not None and 2000.0 < inside < 4000.0
    assert bytes_to_reach(curve, 29.0) is None and bytes_to_reach(curve, 35.0) is None
    assert nearest_end(curve, 29.0).setting == 5 and nearest_end(curve, 35.0).setting == 50
