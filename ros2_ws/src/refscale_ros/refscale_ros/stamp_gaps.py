"""Frames lost before they reach the recorder, seen as gaps in a camera's header stamps.

Why: DDS drops frames silently when a subscriber falls behind (best-effort sensor QoS, a starved
executor), so the recorder's own counters never see them. A camera runs at a steady rate, so a
stamp step of k periods means k - 1 frames went missing upstream. The period is the median of
recent steps (robust to the gaps themselves); no rclpy import, so it is tested on its own.
"""

from __future__ import annotations

from collections import deque
import statistics


class StampGapDetector:
    """Count frames missing between consecutive header stamps of one camera."""

    def __init__(self, history: int = 32, tolerance: float = 0.5, warmup: int = 4) -> None:
        self.tolerance = tolerance
        """A step counts as k periods when it is within `tolerance` periods of k * period."""
        self.warmup = warmup
        self._steps: deque[int] = deque(maxlen=history)
        self._last: int | None = None
        self.missing = 0
        """Frames missing so far (all gaps)."""
        self.gaps = 0
        """Gaps seen so far."""

    @property
    def period_ns(self) -> int | None:
        """Median stamp step once `warmup` steps are known, else None."""
        if len(self._steps) < self.warmup:
            return None
        return int(statistics.median(self._steps))

    def add(self, stamp_ns: int) -> int:
        """Take the next frame's stamp; return how many frames are missing just before it."""
        last, self._last = self._last, stamp_ns
        if last is None or stamp_ns <= last:  # first frame, a repeat or a clock jump back
            return 0
        step = stamp_ns - last
        period = self.period_ns
        self._steps.append(step)
        if period is None or period <= 0:
            return 0
        periods = step / period
        missing = int(round(periods)) - 1
        if missing < 1 or periods < 1 + self.tolerance:
            return 0
        self._steps.pop()  # a gap is not a period sample
        self.missing += missing
        self.gaps += 1
        return missing
