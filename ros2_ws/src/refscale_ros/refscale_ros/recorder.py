"""
Onboard recorder: camera topics (+ GPS / odometry) -> a RefScale bag, via `FrameEncoder`.

Why the shape: DDS callbacks must never wait for the encoder. Each callback only appends to a
bounded per-camera queue (the oldest frame is dropped, and counted, when it is full); one worker
thread encodes in arrival order. `/diagnostics` reports rates, drops, queue depths, latency and
errors once per period. SIGINT/SIGTERM or the `~/stop` service drain the queue for at most
`shutdown_drain_s`, count what is left, and finalise the bag (metadata.yaml).

Run: `ros2 launch refscale_ros record.launch.py`, `ros2 run refscale_ros recorder --ros-args
--params-file record.yaml`, `refscale record --params record.yaml`, or `run_recorder()`.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, UTC
import itertools
from pathlib import Path
import sys
import threading
import time
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import Odometry
import numpy as np
import rclpy
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from refscale_ros.common import (
    declare,
    diag_status,
    init_context,
    load_backend,
    message_class,
    ros_args,
    set_log_level,
    spin,
    stop_on_signals,
    string_list,
)
from sensor_msgs.msg import CompressedImage, Image, NavSatFix
from std_srvs.srv import Trigger

DROP_WARN_HOLD_S = 5.0
"""A camera's diagnostics stay WARN this long after its last dropped frame."""
NODE_NAME = 'refscale_recorder'
IMAGE = 'sensor_msgs/msg/Image'
COMPRESSED_IMAGE = 'sensor_msgs/msg/CompressedImage'
NAV_SAT_FIX = 'sensor_msgs/msg/NavSatFix'
ODOMETRY = 'nav_msgs/msg/Odometry'
_TYPES = {'image': IMAGE, 'compressedimage': COMPRESSED_IMAGE}

PARAMETERS: list[tuple[str, Any, str]] = [
    ('cameras', None, 'TOPIC[:TYPE[:CACHE_ID]] entries (list, or one comma-separated string)'),
    ('gps_topic', '', 'sensor_msgs/NavSatFix topic ("" = none)'),
    ('odom_topic', '', 'nav_msgs/Odometry topic ("" = none)'),
    ('passthrough', Parameter.Type.STRING_ARRAY,
     'other topics copied into the bag as they are: TOPIC:pkg/msg/Type entries'),
    ('cache_dir', '', 'reference cache directory ("" = no-reference mode)'),
    ('weights', 'x2', 'x2, x4, x2-noref, x4-noref or a .safetensors path'),
    ('allow_untrained', False, 'testing only: fresh model when preset weights are missing'),
    ('onnx_model', '', 'ONNX downscaler path ("" = PyTorch)'),
    ('providers', Parameter.Type.STRING_ARRAY,
     'ONNX Runtime providers in order ([] = TensorRT fp16, CUDA, CPU)'),
    ('device', 'cpu', 'torch device of the PyTorch downscaler'),
    ('output_dir', 'recordings', 'directory that receives one bag directory per recording'),
    ('bag_prefix', 'refscale', 'bag directory name prefix (<prefix>_<UTC time>)'),
    ('bag_name', '', 'exact bag directory name instead of <prefix>_<time> (suffix _N if taken)'),
    ('split_size_mb', 1024.0, 'new .mcap file after this many MB (0 = never)'),
    ('split_duration_s', 300.0, 'new .mcap file after this many seconds (0 = never)'),
    ('max_queue', 4, 'frames waiting per camera; the oldest is dropped (and counted) when full'),
    ('registration', True, 'homography registration of the reference (false = unwarped)'),
    ('flush_interval_s', 1.0, 'close the open MCAP chunk at most this often'),
    ('diagnostics_period_s', 1.0, '/diagnostics period'),
    ('publish_lr', False, 'publish LR frames on <camera>/refscale/lr_preview (Image rgb8)'),
    ('start_recording', True, 'false: wait for the ~/start service'),
    ('shutdown_drain_s', 2.0, 'encode queued frames for at most this long when stopping'),
    ('log_level', 'info', 'debug, info, warn, error'),
]


@dataclass(frozen=True)
class CameraSpec:
    """One camera: topic, message type and the camera id its references carry in the cache."""

    topic: str
    type_name: str
    cache_id: str

    @classmethod
    def parse(cls, spec: str) -> CameraSpec:
        """'TOPIC[:TYPE[:CACHE_ID]]'; TYPE Image, CompressedImage or auto (by '/compressed')."""
        parts = [p.strip() for p in spec.split(':')]
        if not parts[0].startswith('/') or len(parts) > 3:
            raise ValueError(f'camera entry {spec!r}: expected /TOPIC[:TYPE[:CACHE_ID]]')
        topic = parts[0].rstrip('/')
        kind = (parts[1] if len(parts) > 1 else '').lower().replace('sensor_msgs/msg/', '')
        if kind in ('', 'auto'):
            type_name = COMPRESSED_IMAGE if topic.endswith('/compressed') else IMAGE
        elif kind in _TYPES:
            type_name = _TYPES[kind]
        else:
            raise ValueError(f'camera entry {spec!r}: type must be Image, CompressedImage or auto')
        cache_id = parts[2] if len(parts) > 2 and parts[2] else topic
        return cls(topic, type_name, cache_id)


def _passthrough_spec(spec: str) -> tuple[str, str]:
    """Parse 'TOPIC:pkg/msg/Type' (a type the bag writer carries a definition for)."""
    from refscale_model.bags import complete_definition

    topic, _, type_name = spec.partition(':')
    if not topic.startswith('/') or type_name.count('/') != 2:
        raise ValueError(f'passthrough entry {spec!r}: expected /TOPIC:pkg/msg/Type')
    try:
        complete_definition(type_name)
        message_class(type_name)
    except (KeyError, ImportError, AttributeError) as exc:
        raise ValueError(f'passthrough entry {spec!r}: {exc}') from exc
    return topic, type_name


# --------------------------------------------------------------------------- the queue
class FrameQueue:
    """
    Bounded per-camera queues plus one bounded queue of other messages, served in arrival order.

    `put_*` never blocks: a full queue drops its oldest entry and counts it in `dropped`.
    """

    def __init__(self, cameras: Iterable[str], max_frames: int, max_other: int = 512) -> None:
        self.max_frames = max(1, int(max_frames))
        self._frames: dict[str, deque[tuple[int, Any]]] = {
            c: deque() for c in cameras}
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

    def _any(self) -> bool:
        return bool(self._other) or any(self._frames.values())

    def depth(self, topic: str | None = None) -> int:
        with self._cond:
            if topic is not None:
                return len(self._frames[topic])
            return len(self._other) + sum(len(q) for q in self._frames.values())

    def clear(self) -> Counter[str]:
        """Empty every queue; returns how many entries each held."""
        with self._cond:
            left: Counter[str] = Counter(
                {k: len(q) for k, q in self._frames.items() if q})
            if self._other:
                left['other'] = len(self._other)
            for q in self._frames.values():
                q.clear()
            self._other.clear()
            return left


# --------------------------------------------------------------------------- counters
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

    @property
    def ok(self) -> bool:
        """No write failure (frame errors and drops are counted, not fatal)."""
        return not self.write_error

    def summary(self) -> str:
        lines = [f'bag: {b}' for b in self.bags]
        lines.append(f'provider: {self.provider}; stopped by: {self.stopped_by}')
        for topic, c in self.cameras.items():
            lines.append(
                f"{topic}: received {c['received']}, encoded {c['encoded']}, "
                f"dropped {c['dropped'] + c['dropped_at_stop']} "
                f"(queue full {c['dropped']}, at stop {c['dropped_at_stop']}), "
                f"without reference {c['without_reference']}, errors {dict(c['errors']) or 0}")
        ratio = self.bytes_in / self.bytes_out if self.bytes_out else float('nan')
        lines.append(f'frames: {self.frames}; camera payload {self.bytes_in:,} B -> '
                     f'{self.bytes_out:,} B (ratio {ratio:.2f}); '
                     f'on disk {self.bytes_on_disk:,} B; mean encode {self.encode_ms_mean:.1f} ms')
        if self.write_error:
            lines.append(f'WRITE ERROR: {self.write_error}')
        return '\n'.join(lines)


class _Tap:
    """Downscaler wrapper that keeps the last LR frame (for the live preview topic)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.last_lr: np.ndarray | None = None

    def downscale(self, hr: np.ndarray, ref: np.ndarray | None) -> tuple[np.ndarray, Any]:
        lr, smap = self.inner.downscale(hr, ref)
        self.last_lr = lr
        return lr, smap


@dataclass
class _Recording:
    path: Path
    writer: Any
    encoder: Any
    started: float = field(default_factory=time.monotonic)
    failed: str = ''


# --------------------------------------------------------------------------- the node
class RecorderNode(Node):
    """The onboard recorder (see the module docstring). `close()` finalises everything."""

    def __init__(self, *, context: Any = None, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        super().__init__(node_name, context=context, **kwargs)
        self._closed = True  # until fully built: rclpy may destroy a half-built node
        p = declare(self, PARAMETERS)
        self.params = p
        set_log_level(self, p['log_level'])
        self.cameras = [CameraSpec.parse(s) for s in string_list(p['cameras'])]
        if not self.cameras:
            raise ValueError('no cameras configured (parameter `cameras`)')
        if len({c.topic for c in self.cameras}) != len(self.cameras):
            raise ValueError('a camera topic is listed twice in `cameras`')
        self.passthrough = [_passthrough_spec(s) for s in string_list(p['passthrough'])]

        from refscale_model.refcache.store import ReferenceCache
        from refscale_model.registration import RegistrationConfig

        self.backend = load_backend(p['weights'], p['allow_untrained'], p['onnx_model'],
                                    p['providers'], p['device'])
        self._tap = _Tap(self.backend.downscaler) if p['publish_lr'] else None
        self.cache = (ReferenceCache.open(p['cache_dir'], readonly=True)
                      if p['cache_dir'] else None)
        self.registration = (RegistrationConfig() if p['registration']
                             else RegistrationConfig(estimators=(), fallback='identity'))
        self.queue = FrameQueue([c.topic for c in self.cameras], p['max_queue'])
        self.counters = {c.topic: CameraCounters() for c in self.cameras}
        self.bags: list[Path] = []
        self.write_error = ''
        self.last_error = ''
        self._totals: Counter[str] = Counter()
        self._recording: _Recording | None = None
        self._accepting = False
        self._rec_lock = threading.Lock()       # held by the worker while it writes
        self._state_lock = threading.RLock()    # start / stop / close
        self._subs: list[Any] = []
        self._last_diag = (time.monotonic(), {t: (0, 0, 0) for t in self.counters}, 0)

        self.diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.lr_pubs = ({c.topic: self.create_publisher(Image, c.topic + '/refscale/lr_preview',
                                                        qos_profile_sensor_data)
                         for c in self.cameras} if p['publish_lr'] else {})
        self.create_service(Trigger, '~/start', self._srv_start)
        self.create_service(Trigger, '~/stop', self._srv_stop)
        self.create_timer(max(0.05, float(p['diagnostics_period_s'])), self.publish_diagnostics)

        self._quit = threading.Event()
        self._worker = threading.Thread(target=self._work, name='refscale-encoder', daemon=True)
        self._worker.start()
        self._closed = False
        topics = [c.topic for c in self.cameras]
        cache = p['cache_dir'] or '(none: no-reference mode)'
        self.get_logger().info(f'cameras {topics}, provider {self.backend.provider}, '
                               f'cache {cache}, queue {p["max_queue"]}')
        if p['start_recording']:
            try:
                self.start_recording()
            except BaseException:
                self._quit.set()
                raise

    # -- recording control ------------------------------------------------------------------
    @property
    def recording(self) -> bool:
        return self._recording is not None

    @property
    def bag_path(self) -> Path | None:
        rec = self._recording
        return rec.path if rec is not None else None

    def start_recording(self) -> Path:
        """Open a new bag and subscribe; returns the bag directory (idempotent while recording)."""
        from refscale_model.bags import BagWriter
        from refscale_model.pipeline import FrameEncoder

        with self._state_lock:
            if self._closed:
                raise RuntimeError('recorder is closed')
            if self._recording is not None:
                return self._recording.path
            p = self.params
            path = self._new_bag_path()
            writer = BagWriter(
                path,
                split_max_bytes=int(p['split_size_mb'] * 1e6) if p['split_size_mb'] > 0 else None,
                split_max_duration_s=p['split_duration_s'] if p['split_duration_s'] > 0 else None)
            encoder = FrameEncoder(
                writer, self._tap or self.backend.downscaler, self.backend.info, cache=self.cache,
                registration=self.registration,
                camera_names={c.topic: c.cache_id for c in self.cameras},
                flush_interval_s=p['flush_interval_s'] if p['flush_interval_s'] > 0 else None)
            writer.set_custom_data('refscale.recorder.provider', self.backend.provider)
            self._recording = _Recording(path, writer, encoder)
            self.queue.clear()
            self._accepting = True
            self._subscribe()
            self.get_logger().info(f'recording to {path}')
            return path

    def stop_recording(self) -> Path | None:
        """Unsubscribe, drain the queue (at most `shutdown_drain_s`), count the rest, finalise."""
        with self._state_lock:
            rec = self._recording
            if rec is None:
                return None
            self._accepting = False
            self._unsubscribe()
            deadline = time.monotonic() + max(0.0, float(self.params['shutdown_drain_s']))
            while self.queue.depth() and time.monotonic() < deadline and self._worker.is_alive():
                time.sleep(0.01)
            with self._rec_lock:
                left = self.queue.clear()
                for topic, n in left.items():
                    if topic in self.counters:
                        self.counters[topic].dropped_at_stop += n
                self._recording = None
            self._finalise(rec, left)
            return rec.path

    def _finalise(self, rec: _Recording, left: Counter[str]) -> None:
        from refscale_model.bags import BagWriteError

        s = rec.encoder.stats
        for key in ('frames', 'frames_without_reference', 'bytes_in', 'bytes_out', 'passthrough'):
            self._totals[key] += int(getattr(s, key))
        self._totals['encode_ms'] += s.encode_s * 1e3
        dropped = sum(c.dropped for c in self.counters.values()) + sum(
            v for k, v in left.items() if k != 'other')
        try:
            rec.writer.set_custom_data('refscale.recorder.dropped_frames', str(dropped))
            errors = str(sum(s.errors.values()))
            rec.writer.set_custom_data('refscale.recorder.frame_errors', errors)
            rec.encoder.close()
        except BagWriteError as exc:
            rec.failed = rec.failed or str(exc)
        except Exception as exc:  # noqa: BLE001 - a broken writer must not hide the report
            rec.failed = rec.failed or f'closing the bag failed: {exc}'
        self._totals['bytes_on_disk'] += sum(f.stat().st_size for f in rec.writer.files
                                             if f.exists())
        self.bags.append(rec.path)
        if rec.failed:
            self.write_error = rec.failed
            self.get_logger().error(f'{rec.path}: {rec.failed}')
        self.get_logger().info(
            f'finished {rec.path}: {s.frames} frames, {sum(left.values())} queued entries '
            f'not encoded at stop')

    def _new_bag_path(self) -> Path:
        out = Path(self.params['output_dir']).expanduser()
        out.mkdir(parents=True, exist_ok=True)
        name = self.params['bag_name'] or '{}_{}'.format(
            self.params['bag_prefix'], datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ'))
        path = out / name
        for i in itertools.count(2):
            if not path.exists():
                return path
            path = out / f'{name}_{i}'
        raise AssertionError('unreachable')

    def _subscribe(self) -> None:
        for cam in self.cameras:
            cls = CompressedImage if cam.type_name == COMPRESSED_IMAGE else Image
            self._subs.append(self.create_subscription(
                cls, cam.topic, lambda m, t=cam.topic: self._on_frame(t, m),
                qos_profile_sensor_data))
        others = [(self.params['gps_topic'], NavSatFix, NAV_SAT_FIX),
                  (self.params['odom_topic'], Odometry, ODOMETRY)]
        others += [(t, message_class(ty), ty) for t, ty in self.passthrough]
        for topic, cls, type_name in others:
            if topic:
                self._subs.append(self.create_subscription(
                    cls, topic, lambda m, t=topic, n=type_name: self._on_other(t, n, m),
                    qos_profile_sensor_data))

    def _unsubscribe(self) -> None:
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs.clear()

    # -- callbacks (never block) ------------------------------------------------------------
    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def _on_frame(self, topic: str, msg: Any) -> None:
        if not self._accepting:
            return
        c = self.counters[topic]
        c.received += 1
        if not self.queue.put_frame(topic, (self._now_ns(), msg)):
            c.dropped += 1

    def _on_other(self, topic: str, type_name: str, msg: Any) -> None:
        if self._accepting:
            self.queue.put_other((topic, type_name, self._now_ns(), msg))

    def _srv_start(self, _req: Trigger.Request, resp: Trigger.Response) -> Trigger.Response:
        try:
            resp.message = f'recording to {self.start_recording()}'
            resp.success = True
        except Exception as exc:  # noqa: BLE001 - reported to the caller
            resp.success, resp.message = False, f'cannot start: {exc}'
        return resp

    def _srv_stop(self, _req: Trigger.Request, resp: Trigger.Response) -> Trigger.Response:
        path = self.stop_recording()
        resp.success = True
        resp.message = f'finished {path}' if path else 'was not recording'
        return resp

    # -- the worker -------------------------------------------------------------------------
    def _work(self) -> None:
        while not self._quit.is_set():
            got = self.queue.get(timeout=0.1)
            if got is None:
                continue
            with self._rec_lock:
                rec = self._recording
                if rec is None or rec.failed:
                    continue
                try:
                    self._process(rec, *got)
                except Exception as exc:  # noqa: BLE001 - a bug must not kill the recording
                    self.last_error = f'internal: {exc!r}'
                    self.get_logger().error(f'worker: {exc!r}')

    def _process(self, rec: _Recording, key: str, item: Any) -> None:
        from refscale_model.bags import BagWriteError
        from refscale_model.pipeline import FrameError

        try:
            if key == 'other':
                topic, type_name, t_ns, msg = item
                rec.encoder.passthrough(topic, type_name, msg, t_ns)
                return
            t_ns, msg = item
            c = self.counters[key]
            res = rec.encoder.encode(key, msg, t_ns, pose=rec.encoder.poses.pose(t_ns))
        except FrameError as exc:
            self.counters[key].errors[exc.kind] += 1
            self.last_error = str(exc)
            self.get_logger().warning(f'frame skipped [{exc.kind}]: {exc}',
                                      throttle_duration_sec=5.0)
            return
        except BagWriteError as exc:
            rec.failed = str(exc)
            self.write_error = str(exc)
            self._accepting = False
            self.get_logger().error(f'recording stopped: cannot write {rec.path}: {exc}')
            return
        c.encoded += 1
        c.without_reference += not res.has_reference
        latency = (self._now_ns() - t_ns) / 1e6
        c.latency_ms.append(latency)
        c.latency_sum_ms += latency
        if self._tap is not None and self._tap.last_lr is not None:
            self._publish_lr(key, msg, self._tap.last_lr)

    def _publish_lr(self, topic: str, msg: Any, lr: np.ndarray) -> None:
        out = Image(header=msg.header, height=int(lr.shape[0]), width=int(lr.shape[1]),
                    encoding='rgb8', is_bigendian=0, step=int(lr.shape[1]) * 3)
        out.data = np.ascontiguousarray(lr).tobytes()
        try:
            self.lr_pubs[topic].publish(out)
        except Exception:  # noqa: BLE001 - the context may be shutting down; preview only
            pass

    # -- diagnostics ------------------------------------------------------------------------
    def diagnostics(self) -> DiagnosticArray:
        """Build the DiagnosticArray of the period since the last call (node + one per camera)."""
        now = time.monotonic()
        t_prev, prev, bytes_prev = self._last_diag
        dt = max(1e-3, now - t_prev)
        rec = self._recording
        written = int(rec.writer.bytes_written) if rec is not None else 0
        bytes_rate = max(0, written - bytes_prev) / dt if rec is not None else 0.0
        statuses = []
        snapshot = {}
        any_drop = any_err = False
        for topic, c in self.counters.items():
            lat = c.latency_ms
            c.latency_ms = []
            got_prev, enc_prev, drop_prev = prev.get(topic, (0, 0, 0))
            dropped_now = c.dropped + c.dropped_at_stop
            errors_now = sum(c.errors.values())
            snapshot[topic] = (c.received, c.encoded, dropped_now)
            level, why = 'OK', 'ok' if rec is not None else 'idle'
            if c.errors:  # a camera that ever sent bad frames stays WARN: someone must look
                any_err = True
                level, why = 'WARN', f'{errors_now} frames skipped {dict(c.errors)}'
            if dropped_now > drop_prev:
                c.last_drop_at = now
            if now - c.last_drop_at < DROP_WARN_HOLD_S:  # held: a slow poller still sees it
                any_drop = True
                level, why = 'WARN', (
                    f'encoder behind: frames dropped {now - c.last_drop_at:.1f} s ago '
                    f'({dropped_now - drop_prev} in the last {dt:.1f} s, {dropped_now} in all)')
            statuses.append(diag_status(
                f'{self.get_name()}: {topic}', level, why, {
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
                    'errors': errors_now,
                    **{f'errors.{k}': v for k, v in sorted(c.errors.items())},
                }))
        self._last_diag = (now, snapshot, written)
        failed = rec.failed if rec is not None else self.write_error
        if failed:
            level, why = 'ERROR', f'write failed: {failed}'
        elif rec is None:
            level, why = 'OK', 'not recording (call ~/start)'
        elif any_drop or any_err:
            level, why = 'WARN', 'recording with ' + ('drops' if any_drop else 'frame errors')
        else:
            level, why = 'OK', 'recording'
        values: dict[str, Any] = {
            'state': 'error' if failed else ('recording' if rec is not None else 'idle'),
            'bag': str(rec.path) if rec is not None else '',
            'provider': self.backend.provider,
            'bytes_per_s': bytes_rate,
            'bytes_written': written,
            'frames': sum(c.encoded for c in self.counters.values()),
            'dropped': sum(c.dropped + c.dropped_at_stop for c in self.counters.values()),
            'dropped_other': self.queue.dropped['other'],
            'queue_depth': self.queue.depth(),
            'frames_without_reference': sum(c.without_reference for c in self.counters.values()),
            'last_error': self.last_error,
        }
        statuses.insert(0, diag_status(self.get_name(), level, why, values))
        arr = DiagnosticArray(status=statuses)
        arr.header.stamp = self.get_clock().now().to_msg()
        return arr

    def publish_diagnostics(self) -> None:
        try:
            self.diag_pub.publish(self.diagnostics())
        except Exception as exc:  # noqa: BLE001 - never let diagnostics stop the timer
            self.get_logger().debug(f'diagnostics not published: {exc}')

    # -- shutdown ---------------------------------------------------------------------------
    def report(self, stopped_by: str = '') -> RecorderReport:
        cams = {t: {**asdict(c), 'errors': dict(c.errors)} for t, c in self.counters.items()}
        for c in cams.values():
            c.pop('latency_ms')
        errors: Counter[str] = Counter()
        for c in self.counters.values():
            errors.update(c.errors)
        frames = self._totals['frames']
        return RecorderReport(
            bags=list(self.bags), stopped_by=stopped_by, provider=self.backend.provider,
            cameras=cams, frames=frames,
            received=sum(c.received for c in self.counters.values()),
            dropped=sum(c.dropped + c.dropped_at_stop for c in self.counters.values()),
            errors=dict(errors), frames_without_reference=self._totals['frames_without_reference'],
            bytes_in=self._totals['bytes_in'], bytes_out=self._totals['bytes_out'],
            bytes_on_disk=self._totals['bytes_on_disk'],
            encode_ms_mean=self._totals['encode_ms'] / frames if frames else 0.0,
            write_error=self.write_error)

    def close(self) -> None:
        """Stop recording (drain + finalise), stop the worker, close the cache. Idempotent."""
        if self._closed:  # also a node whose __init__ failed
            return
        with self._state_lock:
            if self._closed:
                return
            self.stop_recording()
            self._closed = True
            self._quit.set()
        self._worker.join(timeout=5.0)
        if self.cache is not None:
            self.cache.close()

    def destroy_node(self) -> None:
        self.close()
        super().destroy_node()


# --------------------------------------------------------------------------- running it
def run_recorder(params_file: str | Path | None = None,
                 overrides: Mapping[str, Any] | Sequence[str] = (), *,
                 duration_s: float | None = None, stop: threading.Event | None = None,
                 domain_id: int | None = None, signals: bool = False,
                 ready: threading.Event | None = None) -> RecorderReport:
    """
    Run the recorder in this process and return its report once the bag is finalised.

    It runs until `duration_s`, `stop`, SIGINT (KeyboardInterrupt) or, with `signals=True`,
    SIGINT/SIGTERM (the queue is drained before the rclpy context shuts down).

    `overrides` are parameter values (a mapping, or 'name:=value' strings) applied on top of
    `params_file`, exactly like `--ros-args -p`. `ready` is set once the node subscribes (or
    failed to start: this call then raises).
    """
    return _run(ros_args(params_file, overrides), duration_s=duration_s, stop=stop,
                domain_id=domain_id, signals=signals, ready=ready)


def _run(args: Sequence[str], *, duration_s: float | None = None,
         stop: threading.Event | None = None, domain_id: int | None = None,
         signals: bool = True, ready: threading.Event | None = None) -> RecorderReport:
    signalled = stop_on_signals() if signals else None  # stop, drain, then shut the context down
    ctx = init_context(args, domain_id=domain_id)
    node: RecorderNode | None = None
    try:
        try:
            node = RecorderNode(context=ctx)
        finally:
            if ready is not None:  # also when the node failed to start: callers never hang
                ready.set()
        why = spin(node, ctx, duration_s=duration_s, stop=stop, signalled=signalled)
        node.close()
        if ctx.ok():
            node.publish_diagnostics()
            time.sleep(0.2)  # let the final (idle) status leave before the node is destroyed
        return node.report(why)
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown(context=ctx)


def main(args: Sequence[str] | None = None) -> None:
    """
    Run `ros2 run refscale_ros recorder --ros-args ...`.

    Exit 0 after a clean stop, 1 on a write error, 2 when the node cannot start (bad
    parameters, missing weights or cache).
    """
    argv = list(sys.argv[1:] if args is None else args)
    try:
        report = _run(argv, signals=True)
    except (ValueError, FileNotFoundError, RuntimeError, OSError) as exc:
        print(f'refscale recorder: cannot start: {exc}', file=sys.stderr)
        sys.exit(2)
    print(report.summary(), flush=True)
    sys.exit(0 if report.ok else 1)


if __name__ == '__main__':
    main()


__all__ = ['CameraSpec', 'FrameQueue', 'RecorderNode', 'RecorderReport', 'run_recorder', 'main']
