"""
Offboard reconstructor: RefScale bag (batch) or `ros2 bag play` topics (live) -> HR Images.

Batch mode (`bag_path` set) runs `Reconstructor.run` over the bag in a worker thread; live mode
subscribes to `<camera>/refscale/{lr,smap,meta}`, pairs the parts of each frame by (camera,
stamp) and rebuilds it. Either way every HR frame is published as `sensor_msgs/Image` (rgb8) on
`<topic_prefix><camera topic>` for RViz / Foxglove, and/or written to `output_bag` under the
original topic name. `/diagnostics` counts rebuilt and failed frames (by failure kind).
"""

from __future__ import annotations

from collections import Counter, deque, OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
import sys
import threading
import time
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
import rclpy
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data, QoSProfile, ReliabilityPolicy
from refscale_ros.common import (
    declare,
    diag_status,
    init_context,
    ros_args,
    set_log_level,
    spin,
    stamp_to_ns,
    stop_on_signals,
    string_list,
)
from sensor_msgs.msg import CompressedImage, Image

NODE_NAME = 'refscale_reconstructor'
PARAMETERS: list[tuple[str, Any, str]] = [
    ('bag_path', '', 'RefScale bag to rebuild (batch mode); "" = live mode'),
    ('cameras', None, 'live mode: camera topics whose <topic>/refscale/* parts to subscribe'),
    ('cache_dir', '', 'reference cache directory (same content as onboard)'),
    ('weights', '', 'weights ("" = the model named in the bag, or x2 in live mode)'),
    ('allow_untrained', False, 'testing only: fresh model when preset weights are missing'),
    ('device', 'cpu', 'torch device of the inverse'),
    ('batch_size', 4, 'frames per inverse pass (batch mode)'),
    ('topic_prefix', '/refscale/hr', 'HR frames go to <prefix><camera topic>'),
    ('publish', True, 'publish HR frames'),
    ('output_bag', '', 'also write HR frames to this bag directory ("" = no)'),
    ('pace', 0.0, 'batch mode: 0 = as fast as possible, 1 = recorded rate'),
    ('wait_for_subscribers', 0, 'batch mode: wait (10 s at most) for this many subscribers'),
    ('exit_when_done', True, 'batch mode: end the node when the bag is done'),
    ('force', False, 'go on although the bag names other weights'),
    ('reliable', True, 'live mode: reliable subscriptions'),
    ('max_pending', 64, 'live mode: incomplete frames kept before the oldest is given up'),
    ('diagnostics_period_s', 1.0, '/diagnostics period'),
    ('log_level', 'info', 'debug, info, warn, error'),
]


@dataclass
class ReconstructReport:
    """What the reconstructor did (returned by `run_reconstructor`, printed by the CLI)."""

    rebuilt: Counter[str] = field(default_factory=Counter)
    failed: dict[str, Counter[str]] = field(default_factory=dict)
    output_bag: str = ''
    stopped_by: str = ''

    @property
    def ok(self) -> bool:
        return bool(self.rebuilt) and not any(self.failed.values())

    def summary(self) -> str:
        lines = []
        for topic in sorted(set(self.rebuilt) | set(self.failed)):
            line = f'{topic}: {self.rebuilt[topic]} frames rebuilt'
            bad = self.failed.get(topic)
            if bad:
                line += f', failed {sum(bad.values())} {dict(bad)}'
            lines.append(line)
        if self.output_bag:
            lines.append(f'wrote {self.output_bag}')
        return '\n'.join(lines) or 'no frames'


class ReconstructorNode(Node):
    """The offboard node (see the module docstring); `done` is set when a batch bag is finished."""

    def __init__(self, *, context: Any = None, node_name: str = NODE_NAME,
                 **kwargs: Any) -> None:
        super().__init__(node_name, context=context, **kwargs)
        self._closed = True  # until fully built: rclpy may destroy a half-built node
        from refscale_model import load_model
        from refscale_model.bags import BagWriter, metadata_of
        from refscale_model.bags import refscale_format as fmt
        from refscale_model.pipeline import Reconstructor
        from refscale_model.refcache.store import ReferenceCache

        p = declare(self, PARAMETERS)
        self.params = p
        set_log_level(self, p['log_level'])
        self.batch = bool(p['bag_path'])
        weights = p['weights']
        if self.batch and not weights:
            weights = metadata_of(p['bag_path']).get(fmt.METADATA_NAME, {}).get('model_id', '')
            if not weights:
                raise ValueError(f"{p['bag_path']} names no model; set the `weights` parameter")
        model = load_model(weights or 'x2', allow_untrained=p['allow_untrained'])
        self.cache = ReferenceCache.open(p['cache_dir'], readonly=True) if p['cache_dir'] else None
        self.rec = Reconstructor(model, self.cache, device=p['device'],
                                 batch_size=p['batch_size'] if self.batch else 1)
        if self.batch:
            problem = self.rec.check_bag(p['bag_path'])
            if problem and not p['force']:
                raise ValueError(f'{problem} (set force:=true to try anyway)')
            self.cameras = sorted(_camera_topics(p['bag_path']))
        else:
            self.cameras = [c.rstrip('/') for c in string_list(p['cameras'])]
            if not self.cameras:
                raise ValueError('live mode needs `cameras` (or set `bag_path`)')
        self.report = ReconstructReport(output_bag=p['output_bag'])
        self.writer = BagWriter(p['output_bag']) if p['output_bag'] else None
        if self.writer is not None:
            self.writer.add_metadata('refscale_reconstruction', {
                'source': p['bag_path'] or 'live: ' + ','.join(self.cameras),
                'weights': str(weights or 'x2'), 'z': 'zero'})
        self._write_lock = threading.Lock()
        prefix = '/' + p['topic_prefix'].strip('/') if p['topic_prefix'].strip('/') else ''
        self.pubs = ({c: self.create_publisher(Image, prefix + c, 10) for c in self.cameras}
                     if p['publish'] else {})
        self.diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.create_timer(max(0.05, float(p['diagnostics_period_s'])), self.publish_diagnostics)
        self.done = threading.Event()
        self._quit = threading.Event()
        self._pending: OrderedDict[tuple[str, int], dict[str, Any]] = OrderedDict()
        self._ready: deque[tuple[str, int, int, dict[str, Any]]] = deque()
        self._cond = threading.Condition()
        if not self.batch:
            self._subscribe(p['reliable'])
        target = self._run_batch if self.batch else self._run_live
        self._worker = threading.Thread(target=target, name='refscale-reconstruct', daemon=True)
        self._worker.start()
        self._closed = False
        self.get_logger().info(
            f"{'batch: ' + p['bag_path'] if self.batch else 'live'}; cameras {self.cameras}; "
            f'publishing under {prefix or "(original names)"}')

    # -- output -----------------------------------------------------------------------------
    def _emit(self, item: Any) -> None:
        from refscale_model.bags import msgs
        from refscale_model.pipeline import FrameFailure

        topic = item.camera_topic
        if isinstance(item, FrameFailure):
            self.report.failed.setdefault(topic, Counter())[item.kind] += 1
            self.get_logger().warning(f'frame failed [{item.kind}]: {item.message}',
                                      throttle_duration_sec=5.0)
            return
        self.report.rebuilt[topic] += 1
        if topic in self.pubs:
            self.pubs[topic].publish(_image(item.rgb, item.stamp_ns, item.frame_id))
        if self.writer is not None:
            with self._write_lock:
                self.writer.write(topic, msgs.image_msg(item.rgb, item.stamp_ns, item.frame_id),
                                  item.log_time_ns, type_name=msgs.IMAGE)

    def _other(self, raw: Any) -> None:
        if self.writer is not None:
            with self._write_lock:
                self.writer.add_topic(raw.topic, raw.type_name, msgdef=raw.schema.data.decode(),
                                      qos=raw.qos)
                self.writer.write_cdr(raw.topic, raw.data, raw.log_time_ns,
                                      publish_time_ns=raw.publish_time_ns)

    # -- batch mode -------------------------------------------------------------------------
    def _run_batch(self) -> None:
        try:
            want = int(self.params['wait_for_subscribers'])
            if want > 0 and self.pubs:
                deadline = time.monotonic() + 10.0
                while time.monotonic() < deadline and not self._quit.is_set() and any(
                        pub.get_subscription_count() < want for pub in self.pubs.values()):
                    time.sleep(0.02)
            pace = float(self.params['pace'])
            t0_bag: int | None = None
            t0_wall = time.monotonic()
            for item in self.rec.run(self.params['bag_path'], self._other):
                if self._quit.is_set():
                    return
                if pace > 0:
                    t0_bag = item.log_time_ns if t0_bag is None else t0_bag
                    due = t0_wall + (item.log_time_ns - t0_bag) / 1e9 / pace
                    if self._quit.wait(max(0.0, due - time.monotonic())):
                        return
                self._emit(item)
        except Exception as exc:  # noqa: BLE001 - reported; the node then ends
            self.report.failed.setdefault('(bag)', Counter())['error'] += 1
            self.get_logger().error(f"reading {self.params['bag_path']} failed: {exc!r}")
        finally:
            for problem in (self.rec.reader.problems if self.rec.reader else []):
                self.get_logger().warning(problem)
            self.done.set()

    # -- live mode --------------------------------------------------------------------------
    def _subscribe(self, reliable: bool) -> None:
        from diagnostic_msgs.msg import DiagnosticArray as Meta

        qos = (QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
               if reliable else qos_profile_sensor_data)
        for cam in self.cameras:
            for part, cls in (('lr', CompressedImage), ('smap', CompressedImage), ('meta', Meta)):
                self.create_subscription(cls, f'{cam}/refscale/{part}',
                                         lambda m, c=cam, k=part: self._on_part(c, k, m), qos)

    def _on_part(self, camera: str, part: str, msg: Any) -> None:
        from refscale_model.bags import refscale_format as fmt

        key = (camera, stamp_to_ns(msg.header.stamp))
        slot = self._pending.setdefault(key, {'_t': self.get_clock().now().nanoseconds})
        slot[part] = msg
        if 'meta' in slot and 'lr' in slot:
            try:
                has_smap = fmt.meta_from_msg(slot['meta']).has_smap
            except (ValueError, KeyError, AttributeError):
                has_smap = False  # _assemble reports the bad metadata
            if has_smap and 'smap' not in slot:
                return
            del self._pending[key]
            with self._cond:
                self._ready.append((camera, key[1], slot.pop('_t'), slot))
                self._cond.notify()
        while len(self._pending) > int(self.params['max_pending']):
            (cam, _stamp), _ = self._pending.popitem(last=False)
            self.report.failed.setdefault(cam, Counter())['incomplete'] += 1

    def _run_live(self) -> None:
        from refscale_model.pipeline import FrameAssembler, FrameFailure

        while not self._quit.is_set():
            with self._cond:
                if not self._cond.wait_for(lambda: bool(self._ready), timeout=0.1):
                    continue
                camera, stamp, t_ns, slot = self._ready.popleft()
            try:
                frame = FrameAssembler.assemble(camera, stamp, t_ns, slot)
                if not isinstance(frame, FrameFailure):
                    frame = self.rec.rebuild_one(frame)
                self._emit(frame)
            except Exception as exc:  # noqa: BLE001 - one frame, not the node
                self.report.failed.setdefault(camera, Counter())['error'] += 1
                self.get_logger().error(f'{camera} @ {stamp}: {exc!r}')

    # -- diagnostics / shutdown -------------------------------------------------------------
    def publish_diagnostics(self) -> None:
        statuses = []
        for cam in self.cameras:
            bad = self.report.failed.get(cam, Counter())
            statuses.append(diag_status(
                f'{self.get_name()}: {cam}', 'WARN' if bad else 'OK',
                f'{sum(bad.values())} frames failed' if bad else 'ok',
                {'rebuilt': self.report.rebuilt[cam], 'failed': sum(bad.values()),
                 'pending': sum(1 for c, _ in list(self._pending) if c == cam),
                 **{f'failed.{k}': v for k, v in sorted(bad.items())}}))
        arr = DiagnosticArray(status=statuses)
        arr.header.stamp = self.get_clock().now().to_msg()
        try:
            self.diag_pub.publish(arr)
        except Exception:  # noqa: BLE001 - the context may be shutting down
            pass

    def close(self) -> None:
        """Stop the worker and finish the output bag (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._quit.set()
        self._worker.join(timeout=10.0)
        for (cam, _stamp) in list(self._pending):
            self.report.failed.setdefault(cam, Counter())['incomplete'] += 1
        self._pending.clear()
        if self.writer is not None:
            with self._write_lock:
                self.writer.close()
        if self.cache is not None:
            self.cache.close()

    def destroy_node(self) -> None:
        self.close()
        super().destroy_node()


def _camera_topics(bag: str | Path) -> set[str]:
    from refscale_model.bags import refscale_format as fmt
    from refscale_model.bags import topics_of

    return {parts[0] for t in topics_of(bag)
            if (parts := fmt.split_topic(t)) and parts[1] == 'meta'}


def _image(rgb: np.ndarray, stamp_ns: int, frame_id: str) -> Image:
    msg = Image(height=int(rgb.shape[0]), width=int(rgb.shape[1]), encoding='rgb8',
                is_bigendian=0, step=int(rgb.shape[1]) * 3)
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)
    msg.header.frame_id = frame_id
    msg.data = np.ascontiguousarray(rgb).tobytes()
    return msg


# --------------------------------------------------------------------------- running it
def run_reconstructor(params_file: str | Path | None = None,
                      overrides: Mapping[str, Any] | Sequence[str] = (), *,
                      duration_s: float | None = None, stop: threading.Event | None = None,
                      domain_id: int | None = None, signals: bool = False) -> ReconstructReport:
    """Run the reconstructor in this process; batch mode returns when the bag is done."""
    return _run(ros_args(params_file, overrides), duration_s=duration_s, stop=stop,
                domain_id=domain_id, signals=signals)


def _run(args: Sequence[str], *, duration_s: float | None = None,
         stop: threading.Event | None = None, domain_id: int | None = None,
         signals: bool = True) -> ReconstructReport:
    signalled = stop_on_signals() if signals else None  # stop, then shut the context down
    ctx = init_context(args, domain_id=domain_id)
    node: ReconstructorNode | None = None
    try:
        node = ReconstructorNode(context=ctx)
        done = node.done.is_set if node.batch and node.params['exit_when_done'] else None
        why = spin(node, ctx, duration_s=duration_s, stop=stop, done=done, signalled=signalled)
        if why == 'done':
            time.sleep(0.2)  # let the last reliable messages leave
        node.close()
        node.report.stopped_by = why
        return node.report
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown(context=ctx)


def main(args: Sequence[str] | None = None) -> None:
    """
    Run `ros2 run refscale_ros reconstructor --ros-args ...`.

    Exit 0 when every frame was rebuilt, 1 when some failed, 2 when the node cannot start.
    """
    try:
        report = _run(list(sys.argv[1:] if args is None else args), signals=True)
    except (ValueError, FileNotFoundError, RuntimeError, OSError) as exc:
        print(f'refscale reconstructor: cannot start: {exc}', file=sys.stderr)
        sys.exit(2)
    print(report.summary(), flush=True)
    sys.exit(0 if report.ok or report.stopped_by == 'signal' and not report.failed else 1)


if __name__ == '__main__':
    main()
