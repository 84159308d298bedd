"""The recorder's frame queue (no rclpy): bounded per camera, never blocks a callback."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable
import itertools
import threading
from typing import Any


class FrameQueue:
    """
    Bounded per-camera queues plus one bounded queue of other messages, served in arrival order.

    `put_*` never blocks: a full queue drops its oldest entry and counts it in `dropped`.
    """

    def __init__(self, cameras: Iterable[str], max_frames: int, max_other: int = 512) -> None:
        self.max_frames = max(1, int(max_frames))
        self._frames: dict[str, deque[tuple[int, Any]]] = {c: deque() for c in cameras}
        self._other: deque[tuple[int, Any]] = deque()
        self._max_other = max_other
        self._cond = threading.Condition()
        self._seq = itertools.count()
        self.dropped: Counter[str] = Counter()
        """Frames (by camera topic) and 'other' messages dropped because a queue was full."""

    def put_frame(self, topic: str, item: Any) -> bool:
        """Queue a frame; False when that dropped the camera's oldest frame."""
        return self._put(self._frames[topic], self.max_frames, topic, item)

    def put_other(self, item: Any) -> bool:
        """Queue a non-camera message (GPS, odometry, passthrough)."""
        return self._put(self._other, self._max_other, 'other', item)

    def _put(self, q: deque[tuple[int, Any]], limit: int, key: str, item: Any) -> bool:
        with self._cond:
            kept = True
            if len(q) >= limit:
                q.popleft()
                self.dropped[key] += 1
                kept = False
            q.append((next(self._seq), item))
            self._cond.notify()
            return kept

    def get(self, timeout: float) -> tuple[str, Any] | None:
        """(camera topic or 'other', item) of the oldest queued entry, or None after `timeout`."""
        with self._cond:
            if not self._cond.wait_for(self._any, timeout):
                return None
            heads = [(q[0][0], k) for k, q in self._frames.items() if q]
            if self._other:
                heads.append((self._other[0][0], 'other'))
            _, key = min(heads)
            q = self._other if key == 'other' else self._frames[key]
            return key, q.popleft()[1]

    def get_batch(self, timeout: float, max_frames: int) -> list[tuple[str, Any]]:
        """
        The oldest entry, and with it the camera frames queued right after it.

        Entries follow in arrival order while they are frames of cameras not yet taken, up to
        `max_frames`; a non-camera message (a GPS fix may place the next frames) ends the batch.
        Empty after `timeout`.
        """
        with self._cond:
            if not self._cond.wait_for(self._any, timeout):
                return []
            out: list[tuple[str, Any]] = []
            while len(out) < max(1, max_frames) and self._any():
                heads = [(q[0][0], k) for k, q in self._frames.items() if q]
                if self._other:
                    heads.append((self._other[0][0], 'other'))
                _, key = min(heads)
                if out and (key == 'other' or any(k == key for k, _ in out)):
                    break
                q = self._other if key == 'other' else self._frames[key]
                out.append((key, q.popleft()[1]))
                if key == 'other':
                    break
            return out

    def _any(self) -> bool:
        return bool(self._other) or any(self._frames.values())

    def depth(self, topic: str | None = None) -> int:
        """Entries waiting for `topic`, or in all queues."""
        with self._cond:
            if topic is not None:
                return len(self._frames[topic])
            return len(self._other) + sum(len(q) for q in self._frames.values())

    def clear(self) -> Counter[str]:
        """Empty every queue; returns how many entries each held."""
        with self._cond:
            left: Counter[str] = Counter({k: len(q) for k, q in self._frames.items() if q})
            if self._other:
                left['other'] = len(self._other)
            for q in self._frames.values():
                q.clear()
            self._other.clear()
            return left
