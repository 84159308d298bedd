"""Per-camera rate control: a kbit/s budget -> the quality of the next LR frame.

Why not a fixed quality: bytes per frame swing by 3–5× between a night motorway and a busy
street at the same quality, so a fleet that budgets uplink/storage per camera needs the quality to
follow the content. The controller is deliberately simple (no model of the codec): it watches the
rate of the latest frame (what the current quality costs, no lag, hence no wind-up), steps the
quality down fast when over the aim (a headroom under the budget) and up by one when well under.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class RateConfig:
    min_quality: int = 10
    max_quality: int = 95
    window_s: float = 2.0
    """Sliding window of the measured rate (the diagnostic `measured_kbps`)."""
    headroom: float = 0.9
    """Aim at this fraction of the budget so that frame-to-frame swings stay under it."""
    raise_below: float = 0.85
    """Step the quality up only while the recent rate is under this fraction of the budget (and the
    window under `headroom`): one step up then costs ~5 % more, still under the aim."""
    max_step: int = 8
    """Largest quality change per frame (smooth steps; at 10 Hz a 10→95 sweep takes ~1–2 s down)."""
    hold_s: float = 1.0
    """After a step down, wait this long before stepping up again (no limit cycles)."""
    recent_frames: int = 1
    """Latest frames whose rate the steps react to (1: exactly what the current quality costs, no lag)."""


class RateController:
    """Adapts the quality so that bytes/s of one camera stay at or under `target_kbps`.

    Use: `q = rc.quality`; code the frame at q; `rc.update(len(data), stamp_ns)`; repeat.
    """

    def __init__(self, target_kbps: float, initial_quality: int = 75, config: RateConfig | None = None) -> None:
        if not target_kbps > 0:
            raise ValueError(f"target_kbps must be > 0, got {target_kbps!r}")
        self.config = config or RateConfig()
        c = self.config
        if not 0 <= c.min_quality <= c.max_quality <= 100:
            raise ValueError(f"quality bounds need 0 <= min <= max <= 100, got {c.min_quality}, {c.max_quality}")
        self.target_kbps = float(target_kbps)
        self._quality = min(max(int(initial_quality), c.min_quality), c.max_quality)
        self._window: deque[tuple[int, int]] = deque()
        self._last_down_ns: int | None = None
        self.saturated = False
        """True while the budget is exceeded at `min_quality` (the content needs a bigger budget)."""

    @property
    def quality(self) -> int:
        """Quality for the next frame."""
        return self._quality

    @property
    def measured_kbps(self) -> float:
        """Bytes/s over the sliding window, in kbit/s (0 until two frames are seen)."""
        return self._rate_kbps(list(self._window))

    def recent_kbps(self) -> float:
        """Rate of the last few frames: what the current quality costs."""
        return self._rate_kbps(list(self._window)[-(self.config.recent_frames + 1):])

    @staticmethod
    def _rate_kbps(frames: list[tuple[int, int]]) -> float:
        """Bytes of the frames over the time they cover: each frame accounts for one frame period."""
        if len(frames) < 2:
            return 0.0
        span_ns = frames[-1][0] - frames[0][0]
        if span_ns <= 0:
            return 0.0
        period_ns = span_ns / (len(frames) - 1)
        total = sum(b for _, b in frames)
        return 8.0 * total / ((span_ns + period_ns) * 1e-9) / 1000.0

    def update(self, nbytes: int, stamp_ns: int) -> int:
        """Account one coded frame (its size and capture time); returns the quality for the next one."""
        c = self.config
        if self._window and stamp_ns < self._window[-1][0]:  # a clock jump back: start over
            self._window.clear()
        self._window.append((int(stamp_ns), int(nbytes)))
        while self._window and self._window[0][0] < stamp_ns - int(c.window_s * 1e9):
            self._window.popleft()
        recent = self.recent_kbps()
        if recent <= 0:
            return self._quality
        aim = c.headroom * self.target_kbps
        if recent > aim:
            # Step proportional to how far over: size roughly doubles per ~15 quality points for JPEG/WebP.
            step = min(c.max_step, max(1, math.ceil(15 * math.log2(recent / aim))))
            new = max(c.min_quality, self._quality - step)
            self.saturated = new == self._quality == c.min_quality
            if new != self._quality:
                self._last_down_ns = stamp_ns
            self._quality = new
        else:
            self.saturated = False
            held = self._last_down_ns is not None and stamp_ns - self._last_down_ns < c.hold_s * 1e9
            under = recent < c.raise_below * self.target_kbps and self.measured_kbps <= aim
            if under and not held:
                self._quality = min(c.max_quality, self._quality + 1)
        return self._quality
