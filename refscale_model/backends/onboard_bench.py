"""Frames/s of the whole onboard path on this machine, for `refscale record --dry-run` and
`benchmarks/bench_onboard.py`.

The path measured is what the recorder runs per camera message: decode (sensor_msgs/Image) ->
reference lookup in a real `ReferenceCache` -> registration -> the downscaler -> LR + S_map
coding -> bag write (a real `BagWriter`). Frames are a synthetic drive made from one real revisit
pair: the frame moves a little every step (so registration finds a new homography per frame, as
on a car), and one reference keyframe serves all of them (as one keyframe serves consecutive
frames). Throughput is measured with frames offered back to back (none dropped): the capacity.

Only numpy and OpenCV are imported here; the encoder classes are passed in, so the benchmark can
run the same drive through an older checkout's encoder for side-by-side numbers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np


def synthetic_drive(
    frame: np.ndarray, reference: np.ndarray, size_hw: tuple[int, int], n: int, step_px: float = 4.0
) -> tuple[list[np.ndarray], np.ndarray]:
    """`n` frames of `size_hw` moving `step_px` per frame (with a slight zoom) over `frame`, and the
    reference resized to the same size."""
    h, w = size_hw
    base = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
    ref = cv2.resize(reference, (w, h), interpolation=cv2.INTER_AREA)
    frames = []
    for i in range(n):
        zoom = 1.0 + 0.002 * i
        m = cv2.getRotationMatrix2D((w / 2, h / 2), 0.0, zoom)
        m[0, 2] += step_px * i
        m[1, 2] += 0.25 * step_px * i
        frames.append(cv2.warpAffine(base, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))
    return frames, ref


@dataclass(frozen=True)
class OnboardMeasurement:
    """Frames offered back to back through the whole path, per camera and altogether."""

    frames: int
    seconds: float
    with_reference: int
    errors: int

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("nan")


def measure(
    encoder: Any,
    messages: Sequence[tuple[str, Any, int, Any]],
    pipeline_cls: Callable[..., Any] | None = None,
    warmup: int = 2,
    together: int = 1,
) -> OnboardMeasurement:
    """Run `messages` (topic, sensor_msgs dict, stamp ns, pose) through `encoder` (a FrameEncoder):
    with `pipeline_cls` (EncoderPipeline) the stages overlap; with `together` > 1 each run of that
    many messages (the cameras of one instant) goes through one `encode_frames` (the network batched);
    else one `encode` after another. The first `warmup` messages are run (and written) before the
    clock starts."""
    for i in range(0, warmup, max(1, together)):  # warm-up runs have the timed runs' batch shape
        if together > 1:
            encoder.encode_frames(messages[i : min(i + together, warmup)])
        else:
            encoder.encode(*messages[i])
    timed = messages[warmup:]
    results: list[Any] = []
    t0 = time.perf_counter()
    if together > 1:
        for i in range(0, len(timed), together):
            results += [r if isinstance(r, BaseException) else r[0]
                        for r in encoder.encode_frames(timed[i : i + together])]
    elif pipeline_cls is None:
        for topic, msg, stamp, pose in timed:
            try:
                results.append(encoder.encode(topic, msg, stamp, pose))
            except Exception as exc:  # noqa: BLE001 - counted like the recorder counts it
                results.append(exc)
    else:
        pipe = pipeline_cls(encoder)
        for topic, msg, stamp, pose in timed:
            pipe.submit(topic, msg, stamp, pose, lambda res, _lr: results.append(res))
        pipe.close()
    seconds = time.perf_counter() - t0
    ok = [r for r in results if not isinstance(r, BaseException)]
    return OnboardMeasurement(len(timed), seconds, sum(bool(r.has_reference) for r in ok), len(results) - len(ok))


def expected_rate(fps: float, cameras: int, rate_hz: float) -> tuple[float, float]:
    """(frames/s encoded, share of frames dropped) for `cameras` cameras at `rate_hz` each, given
    the path's measured capacity `fps` (frames/s over all cameras)."""
    offered = cameras * rate_hz
    encoded = min(fps, offered)
    return encoded, max(0.0, 1.0 - encoded / offered) if offered > 0 else 0.0


__all__ = ["OnboardMeasurement", "expected_rate", "measure", "synthetic_drive"]
