"""
Offboard reconstructor: RefScale bag (batch) or `ros2 bag play` topics (live) -> HR Images.

Batch mode (`bag_path` set) runs `Reconstructor.run` over the bag in a worker thread; live mode
subscribes to `<camera>/refscale/{lr,smap,meta}`, pairs the parts of each frame by (camera,
stamp) and rebuilds it. Either way every HR frame is published as `sensor_msgs/Image` (rgb8) on
`<topic_prefix><camera topic>` for RViz / Foxglove, and/or written to `output_bag` under the
original topic name. `/diagnostics` counts rebuilt and failed frames (by failure kind).
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Mapping, Sequence
from pathlib import Path
import sys
import threading
import time
from typing import Any

from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data, QoSProfile, ReliabilityPolicy
from refscale_ros.common import declare, default_params_file, ros_args, set_log_level
from refscale_ros.diagnostics import Status, Updater
from refscale_ros.hr_output import HrOutput
from refscale_ros.reconstructor_config import open_reconstructor, PARAMETERS, ReconstructReport
from refscale_ros.runtime import exit_with_report, run_node
from sensor_msgs.msg import CompressedImage, Image

NODE_NAME = 'refscale_reconstructor'


class ReconstructorNode(Node):
    """The offboard node (see the module docstring); `done` is set when a batch bag is finished."""

    def __init__(self, *, context: Any = None, node_name: str = NODE_NAME,
                 **kwargs: Any) -> None:
        super().__init__(node_name, context=context, **kwargs)
        self._closed = True  # until fully built: rclpy may destroy a half-built node
        from refscale_model.pipeline import FrameAssembler

        p = self.params = declare(self, PARAMETERS)
        set_log_level(self, p['log_level'])
        self.batch = bool(p['bag_path'])
        self.rec, self.cache, weights, self.cameras = open_reconstructor(p)
        self.report = ReconstructReport(output_bag=p['output_bag'])
        prefix = '/' + p['topic_prefix'].strip('/') if p['topic_prefix'].strip('/') else ''
        self.pubs = ({c: self.create_publisher(Image, prefix + c, 10) for c in self.cameras}
                     if p['publish'] else {})
        self.out = HrOutput(self.report, self.pubs, p['output_bag'], {
            'source': p['bag_path'] or 'live: ' + ','.join(self.cameras),
            'weights': str(weights or 'x2'), 'z': 'zero'}, self.get_logger())
        self.updater = Updater(self, p['diagnostics_period_s'])
        for cam in self.cameras:
            self.updater.add(f'{self.get_name()}: {cam}', lambda s, c=cam: self._diagnose(c, s))
        self.done = threading.Event()
        self._quit = threading.Event()
        from refscale_model.bags import metadata_of
        from refscale_model.bags import refscale_format as fmt

        records = metadata_of(p['bag_path']) if self.batch else {}  # live: the model's own config
        config = self.rec.model.config.to_dict()
        self.assembler = FrameAssembler(
            meta_closes=False, max_pending=int(p['max_pending']),
            context=fmt.frame_contexts(records, config))
        self._ready: deque[Any] = deque()
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
            for item in self.rec.run(self.params['bag_path'], self.out.copy_raw):
                if self._quit.is_set():
                    return
                if pace > 0:
                    t0_bag = item.log_time_ns if t0_bag is None else t0_bag
                    due = t0_wall + (item.log_time_ns - t0_bag) / 1e9 / pace
                    if self._quit.wait(max(0.0, due - time.monotonic())):
                        return
                self.out.emit(item)
        except Exception as exc:  # noqa: BLE001 - reported; the node then ends
            self.out.count_failure('(bag)', 'error')
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
        done = self.assembler.add(camera, part, msg, self.get_clock().now().nanoseconds)
        if done:
            with self._cond:
                self._ready.extend(done)
                self._cond.notify()

    def _run_live(self) -> None:
        from refscale_model.pipeline import FrameFailure

        while not self._quit.is_set():
            with self._cond:
                if not self._cond.wait_for(lambda: bool(self._ready), timeout=0.1):
                    continue
                frame = self._ready.popleft()
            try:
                self.out.emit(frame if isinstance(frame, FrameFailure)
                              else self.rec.rebuild_one(frame))
            except Exception as exc:  # noqa: BLE001 - one frame, not the node
                self.out.count_failure(frame.camera_topic, 'error')
                self.get_logger().error(f'{frame.camera_topic} @ {frame.stamp_ns}: {exc!r}')

    # -- diagnostics / shutdown -------------------------------------------------------------
    def _diagnose(self, cam: str, stat: Status) -> None:
        bad = self.report.failed.get(cam, Counter())
        stat.summary('WARN' if bad else 'OK',
                     f'{sum(bad.values())} frames failed' if bad else 'ok')
        stat.add('rebuilt', self.report.rebuilt[cam])
        stat.add('failed', sum(bad.values()))
        for k, v in sorted(bad.items()):
            stat.add(f'failed.{k}', v)

    def close(self) -> None:
        """Stop the worker and finish the output bag (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._quit.set()
        self._worker.join(timeout=10.0)
        for failure in self.assembler.flush():
            self.out.count_failure(failure.camera_topic, 'incomplete')
        self.out.close()
        if self.cache is not None:
            self.cache.close()

    def destroy_node(self) -> None:
        self.close()
        super().destroy_node()


# --------------------------------------------------------------------------- running it
def run_reconstructor(params_file: str | Path | None = None,
                      overrides: Mapping[str, Any] | Sequence[str] = (), *,
                      duration_s: float | None = None, stop: threading.Event | None = None,
                      domain_id: int | None = None, signals: bool = False) -> ReconstructReport:
    """Run the reconstructor in this process; batch mode returns when the bag is done."""
    if params_file is None:
        params_file = default_params_file('reconstruct.yaml')
    return _run(ros_args(params_file, overrides), duration_s=duration_s, stop=stop,
                domain_id=domain_id, signals=signals)


def _run(args: Sequence[str], **kwargs: Any) -> ReconstructReport:
    def finish(node: ReconstructorNode, why: str, _ctx: Any) -> ReconstructReport:
        if why == 'done':
            time.sleep(0.2)  # let the last reliable messages leave
        node.close()
        node.report.stopped_by = why
        return node.report

    def done(node: ReconstructorNode) -> Any:
        return node.done.is_set if node.batch and node.params['exit_when_done'] else None

    return run_node(lambda ctx: ReconstructorNode(context=ctx), args, finish=finish, done=done,
                    **kwargs)


def main(args: Sequence[str] | None = None) -> None:
    """
    Run `ros2 run refscale_ros reconstructor --ros-args ...`.

    Exit 0 when every frame was rebuilt, 1 when some failed, 2 when the node cannot start.
    """
    exit_with_report(
        'reconstructor', lambda: _run(list(sys.argv[1:] if args is None else args)),
        lambda r: 0 if r.ok or r.stopped_by == 'signal' and not r.failed else 1)


if __name__ == '__main__':
    main()
