"""The recorder's counters, its per-period diagnostics and its final report (no rclpy import)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
import time
from typing import Any

import numpy as np
from refscale_ros.diagnostics import Status, Task
from refscale_ros.frame_queue import FrameQueue
from refscale_ros.stamp_gaps import StampGapDetector

DROP_WARN_HOLD_S = 5.0
"""A camera's diagnostics stay WARN this long after its last dropped frame."""


@dataclass
class CameraCounters:
    """Per-camera totals over the node's life (all recordings)."""

    received: int = 0
    encoded: int = 0
    dropped: int = 0
    dropped_at_stop: int = 0
    without_reference: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    latency_ms: list[float] = field(default_factory=list)
    """Encode latencies (receipt to written) since the last diagnostics message."""
    latency_sum_ms: float = 0.0
    last_drop_at: float = float('-inf')
    """time.monotonic() of the diagnostics period in which frames were last dropped."""
    missed_upstream: int = 0
    """Frames that never arrived: gaps in the header stamps (lost in DDS or before it)."""
    lr_bytes: int = 0
    """LR + S_map bytes written (all recordings)."""
    lr_quality: int = -1
    """Quality of the latest LR frame (-1 lossless)."""
    lr_psnr: float = 0.0
    """PSNR the codec left the latest LR at (dB; 0: lossless): how clean it arrives offboard."""
    lr_predicted: int = 0
    """LR codec `h265-ref`: frames whose LR was predicted from the reference (the rest intra)."""
    kbps: float = 0.0
    """LR + S_map kbit/s over the rate controller's window (with a budget)."""


@dataclass
class RecorderReport:
    """What one run of the recorder did (returned by `run_recorder`, printed by the CLI)."""

    bags: list[Path]
    stopped_by: str
    provider: str
    cameras: dict[str, dict[str, Any]]
    frames: int
    received: int
    dropped: int
    errors: dict[str, int]
    frames_without_reference: int
    bytes_in: int
    bytes_out: int
    bytes_on_disk: int
    encode_ms_mean: float
    write_error: str = ''
    missed_upstream: int = 0
    """Frames that never reached the recorder (header stamp gaps), all cameras."""
    batched_frames: int = 0
    """Frames whose network ran in one batch with other cameras' frames (`batch_cameras`)."""

    @property
    def ok(self) -> bool:
        """No write failure (frame errors and drops are counted, not fatal)."""
        return not self.write_error

    def summary(self) -> str:
        """Human-readable lines (what the CLI prints)."""
        lines = [f'bag: {b}' for b in self.bags]
        lines.append(f'provider: {self.provider}; stopped by: {self.stopped_by}')
        for topic, c in self.cameras.items():
            lines.append(
                f"{topic}: received {c['received']}, encoded {c['encoded']}, "
                f"dropped {c['dropped'] + c['dropped_at_stop']} "
                f"(queue full {c['dropped']}, at stop {c['dropped_at_stop']}), "
                f"without reference {c['without_reference']}, errors {dict(c['errors']) or 0}, "
                f"never arrived {c['missed_upstream']}")
        ratio = self.bytes_in / self.bytes_out if self.bytes_out else float('nan')
        lines.append(f'frames: {self.frames}; camera payload {self.bytes_in:,} B -> '
                     f'{self.bytes_out:,} B (ratio {ratio:.2f}); '
                     f'on disk {self.bytes_on_disk:,} B; mean encode {self.encode_ms_mean:.1f} ms')
        if self.write_error:
            lines.append(f'WRITE ERROR: {self.write_error}')
        return '\n'.join(lines)


@dataclass
class RecordingState:
    """What the diagnostics need to know about the recording right now."""

    recording: bool
    bag: str = ''
    bytes_written: int = 0
    failed: str = ''


class RecorderStats:
    """Counters of every camera and of finished recordings; builds diagnostics and the report."""

    def __init__(self, topics: list[str], queue: FrameQueue, provider: str,
                 lr: Any = None) -> None:
        self.lr = lr
        """`LrSettings` of the recordings (codec, quality, budget), shown per camera."""
        self.counters = {t: CameraCounters() for t in topics}
        self.gaps = {t: StampGapDetector() for t in topics}
        self.queue = queue
        self.provider = provider
        self.totals: Counter[str] = Counter()
        self.last_error = ''
        self._last = (time.monotonic(), {t: (0, 0, 0) for t in topics}, 0)
        self._cams: dict[str, tuple[str, str, dict[str, Any]]] = {}

    def add_finished(self, stats: Any) -> None:
        """Add the `EncoderStats` of a finished recording to the totals."""
        for key in ('frames', 'frames_without_reference', 'bytes_in', 'bytes_out', 'passthrough',
                    'batched_frames'):
            self.totals[key] += int(getattr(stats, key))
        self.totals['encode_ms'] += stats.encode_s * 1e3

    def dropped(self) -> int:
        """Frames dropped so far (queue full and at stop), all cameras."""
        return sum(c.dropped + c.dropped_at_stop for c in self.counters.values())

    # -- diagnostics (one period) -----------------------------------------------------------
    def node_task(self, state: Callable[[], RecordingState]) -> Task:
        """Return a diagnostics task for the node status; it also measures the camera period."""
        def task(stat: Status) -> None:
            now = time.monotonic()
            t_prev, prev, bytes_prev = self._last
            dt = max(1e-3, now - t_prev)
            st = state()
            any_drop = any_err = False
            snapshot = {}
            for topic, c in self.counters.items():
                level, why, values = self._camera(topic, c, prev.get(topic, (0, 0, 0)), now, dt,
                                                  st.recording)
                self._cams[topic] = (level, why, values)
                snapshot[topic] = (c.received, c.encoded, values['dropped'])
                any_drop |= now - c.last_drop_at < DROP_WARN_HOLD_S
                any_err |= bool(c.errors)
            written = st.bytes_written if st.recording else 0
            self._last = (now, snapshot, written)
            if st.failed:
                stat.summary('ERROR', f'write failed: {st.failed}')
            elif not st.recording:
                stat.summary('OK', 'not recording (call ~/start)')
            elif any_drop or any_err:
                stat.summary('WARN', 'recording with ' + ('drops' if any_drop else 'frame errors'))
            else:
                stat.summary('OK', 'recording')
            state_name = 'error' if st.failed else ('recording' if st.recording else 'idle')
            for key, value in {
                'state': state_name, 'bag': st.bag, 'provider': self.provider,
                'bytes_per_s': max(0, written - bytes_prev) / dt if st.recording else 0.0,
                'bytes_written': written,
                'frames': sum(c.encoded for c in self.counters.values()),
                'dropped': self.dropped(), 'dropped_other': self.queue.dropped['other'],
                'queue_depth': self.queue.depth(),
                'frames_without_reference': sum(
                    c.without_reference for c in self.counters.values()),
                'last_error': self.last_error,
            }.items():
                stat.add(key, value)
        return task

    def camera_task(self, topic: str) -> Task:
        """Return the diagnostics task of one camera (runs after `node_task` in each period)."""
        def task(stat: Status) -> None:
            level, why, values = self._cams.get(topic, ('OK', 'idle', {}))
            stat.summary(level, why)
            for key, value in values.items():
                stat.add(key, value)
        return task

    def _camera(self, topic: str, c: CameraCounters, prev: tuple[int, int, int], now: float,
                dt: float, recording: bool) -> tuple[str, str, dict[str, Any]]:
        lat, c.latency_ms = c.latency_ms, []
        got_prev, enc_prev, drop_prev = prev
        dropped_now = c.dropped + c.dropped_at_stop
        errors_now = sum(c.errors.values())
        level, why = 'OK', 'ok' if recording else 'idle'
        if c.errors:  # a camera that ever sent bad frames stays WARN: someone must look
            level, why = 'WARN', f'{errors_now} frames skipped {dict(c.errors)}'
        if dropped_now > drop_prev:
            c.last_drop_at = now
        if now - c.last_drop_at < DROP_WARN_HOLD_S:  # held: a slow poller still sees it
            level, why = 'WARN', (
                f'encoder behind: frames dropped {now - c.last_drop_at:.1f} s ago '
                f'({dropped_now - drop_prev} in the last {dt:.1f} s, {dropped_now} in all)')
        return level, why, {
            'fps_in': (c.received - got_prev) / dt,
            'fps_out': (c.encoded - enc_prev) / dt,
            'received': c.received,
            'encoded': c.encoded,
            'dropped': dropped_now,
            'queue_depth': self.queue.depth(topic),
            'queue_max': self.queue.max_frames,
            'encode_latency_ms': float(np.mean(lat)) if lat else 0.0,
            'encode_latency_ms_max': float(np.max(lat)) if lat else 0.0,
            'frames_without_reference': c.without_reference,
            'missed_upstream': c.missed_upstream,
            **self._rate_values(c),
            'errors': errors_now,
            **{f'errors.{k}': v for k, v in sorted(c.errors.items())},
        }

    def _rate_values(self, c: CameraCounters) -> dict[str, Any]:
        """LR codec, quality and bytes/s against the budget (docs/ros.md)."""
        if self.lr is None:
            return {}
        values: dict[str, Any] = {'lr_codec': self.lr.codec, 'lr_quality': c.lr_quality,
                                  'lr_bytes': c.lr_bytes}
        if c.lr_psnr > 0:
            values['lr_psnr'] = c.lr_psnr
        if self.lr.codec == 'h265-ref':
            values['lr_predicted'] = c.lr_predicted
        if self.lr.target_kbps:
            values.update(target_kbps=self.lr.target_kbps, kbps=round(c.kbps, 1),
                          budget_used=round(c.kbps / self.lr.target_kbps, 3))
        return values

    # -- the report -------------------------------------------------------------------------
    def report(self, bags: list[Path], stopped_by: str, write_error: str) -> RecorderReport:
        """The `RecorderReport` of everything counted so far."""
        cams = {t: {**asdict(c), 'errors': dict(c.errors)} for t, c in self.counters.items()}
        for c in cams.values():
            c.pop('latency_ms')
        errors: Counter[str] = Counter()
        for c in self.counters.values():
            errors.update(c.errors)
        frames = self.totals['frames']
        return RecorderReport(
            bags=list(bags), stopped_by=stopped_by, provider=self.provider, cameras=cams,
            frames=frames, received=sum(c.received for c in self.counters.values()),
            dropped=self.dropped(), errors=dict(errors),
            frames_without_reference=self.totals['frames_without_reference'],
            bytes_in=self.totals['bytes_in'], bytes_out=self.totals['bytes_out'],
            bytes_on_disk=self.totals['bytes_on_disk'],
            encode_ms_mean=self.totals['encode_ms'] / frames if frames else 0.0,
            write_error=write_error,
            missed_upstream=sum(c.missed_upstream for c in self.counters.values()),
            batched_frames=self.totals['batched_frames'])
