"""
Onboard recorder node: camera topics (+ GPS / odometry) -> a RefScale bag, via `FrameEncoder`.

A thin shell: parameters, subscriptions, services and /diagnostics here; the frame queue
(`frame_queue`), the counters and report (`recorder_stats`) and the recording state machine
(`recording`) are plain Python. DDS callbacks never wait for the encoder: they only queue.
SIGINT/SIGTERM or the `~/stop` service drain the queue for at most `shutdown_drain_s`, count what
is left, and finalise the bag (metadata.yaml).

Run: `ros2 launch refscale_ros record.launch.py`, `ros2 run refscale_ros recorder --ros-args
--params-file record.yaml`, `refscale record --params record.yaml`, or `run_recorder()`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
import sys
import threading
import time
from typing import Any

from nav_msgs.msg import Odometry
import numpy as np
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data, QoSProfile, ReliabilityPolicy
from refscale_model.bags import msgs
from refscale_ros.common import declare, default_params_file, ros_args, set_log_level, string_list
from refscale_ros.diagnostics import Updater
from refscale_ros.frame_queue import FrameQueue
from refscale_ros.messages import message_class, rgb_image
from refscale_ros.recorder_config import (
    encoder_args,
    lr_settings,
    PARAMETERS,
    parse_cameras,
    passthrough_spec,
)
from refscale_ros.recorder_stats import RecorderReport, RecorderStats
from refscale_ros.recording import Recording
from refscale_ros.runtime import exit_with_report, run_node
from sensor_msgs.msg import CompressedImage, Image, NavSatFix
from std_srvs.srv import Trigger

NODE_NAME = 'refscale_recorder'
RELIABLE = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
"""GPS, odometry and passthrough topics: few, small and all needed (docs/ros.md)."""


class RecorderNode(Node):
    """The onboard recorder (see the module docstring). `close()` finalises everything."""

    def __init__(self, *, context: Any = None, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        super().__init__(node_name, context=context, **kwargs)
        self._closed = True  # until fully built: rclpy may destroy a half-built node
        from refscale_model.backends.loader import load_downscaler
        from refscale_model.refcache import ReferenceCache
        from refscale_model.registration import RegistrationConfig

        p = self.params = declare(self, PARAMETERS)
        set_log_level(self, p['log_level'])
        lr = lr_settings(p)
        self.cameras = parse_cameras(string_list(p['cameras']))
        self.passthrough = [passthrough_spec(s) for s in string_list(p['passthrough'])]
        self.backend = load_downscaler(p['weights'], onnx_model=p['onnx_model'] or None,
                                       providers=p['providers'], device=p['device'],
                                       allow_untrained=p['allow_untrained'])
        self.cache = (ReferenceCache.open(p['cache_dir'], readonly=True)
                      if p['cache_dir'] else None)
        topics = [c.topic for c in self.cameras]
        self.queue = FrameQueue(topics, p['max_queue'])
        self.stats = RecorderStats(topics, self.queue, self.backend.provider, lr)
        self._subs: list[Any] = []
        self.lr_pubs = ({t: self.create_publisher(Image, t + '/refscale/lr_preview',
                                                  qos_profile_sensor_data)
                         for t in topics} if p['publish_lr'] else {})
        self.recording = Recording(
            encoder_args={
                'downscaler': self.backend.downscaler, 'info': self.backend.info,
                'provider': self.backend.provider, 'cache': self.cache,
                'registration': (RegistrationConfig() if p['registration']
                                 else RegistrationConfig(estimators=(), fallback='identity')),
                'camera_names': {c.topic: c.cache_id for c in self.cameras},
                **encoder_args(p)},
            params=p, queue=self.queue, stats=self.stats, logger=self.get_logger(),
            now_ns=lambda: self.get_clock().now().nanoseconds, subscribe=self._subscribe,
            unsubscribe=self._unsubscribe, on_lr=self._publish_lr if p['publish_lr'] else None)
        self.updater = Updater(self, p['diagnostics_period_s'])
        self.updater.add(self.get_name(), self.stats.node_task(self.recording.state))
        for t in topics:
            self.updater.add(f'{self.get_name()}: {t}', self.stats.camera_task(t))
        self.create_service(Trigger, '~/start', self._srv_start)
        self.create_service(Trigger, '~/stop', self._srv_stop)
        self._closed = False
        cache = p['cache_dir'] or '(none: no-reference mode)'
        self.get_logger().info(f'cameras {topics}, provider {self.backend.provider}, '
                               f'cache {cache}, queue {p["max_queue"]}')
        if p['start_recording']:
            try:
                self.recording.start()
            except BaseException:
                self.recording.abort()
                raise

    def _subscribe(self) -> None:
        rec = self.recording
        for cam in self.cameras:
            cls = CompressedImage if cam.type_name == msgs.COMPRESSED_IMAGE else Image
            self._subs.append(self.create_subscription(
                cls, cam.topic, lambda m, t=cam.topic: rec.on_frame(t, m),
                qos_profile_sensor_data))
        others = [(self.params['gps_topic'], NavSatFix, msgs.NAV_SAT_FIX),
                  (self.params['odom_topic'], Odometry, msgs.ODOMETRY)]
        others += [(t, message_class(ty), ty) for t, ty in self.passthrough]
        for topic, cls, type_name in others:
            if topic:
                self._subs.append(self.create_subscription(
                    cls, topic, lambda m, t=topic, n=type_name: rec.on_other(t, n, m), RELIABLE))

    def _unsubscribe(self) -> None:
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs.clear()

    def _publish_lr(self, topic: str, msg: Any, lr: np.ndarray) -> None:
        try:
            self.lr_pubs[topic].publish(rgb_image(lr, header=msg.header))
        except Exception:  # noqa: BLE001 - the context may be shutting down; preview only
            pass

    def _srv_start(self, _req: Trigger.Request, resp: Trigger.Response) -> Trigger.Response:
        try:
            resp.message = f'recording to {self.recording.start()}'
            resp.success = True
        except Exception as exc:  # noqa: BLE001 - reported to the caller
            resp.success, resp.message = False, f'cannot start: {exc}'
        return resp

    def _srv_stop(self, _req: Trigger.Request, resp: Trigger.Response) -> Trigger.Response:
        path = self.recording.stop()
        resp.success = True
        resp.message = f'finished {path}' if path else 'was not recording'
        return resp

    def report(self, stopped_by: str = '') -> RecorderReport:
        """What this node recorded so far."""
        return self.stats.report(self.recording.bags, stopped_by, self.recording.write_error)

    def close(self) -> None:
        """Stop recording (drain + finalise), stop the worker, close the cache. Idempotent."""
        if self._closed:  # also a node whose __init__ failed
            return
        self._closed = True
        self.recording.close()
        if self.cache is not None:
            self.cache.close()

    def destroy_node(self) -> None:
        self.close()
        super().destroy_node()


def run_recorder(params_file: str | Path | None = None,
                 overrides: Mapping[str, Any] | Sequence[str] = (), *,
                 duration_s: float | None = None, stop: threading.Event | None = None,
                 domain_id: int | None = None, signals: bool = False,
                 ready: threading.Event | None = None) -> RecorderReport:
    """
    Run the recorder in this process and return its report once the bag is finalised.

    It runs until `duration_s`, `stop`, SIGINT (KeyboardInterrupt) or, with `signals=True`,
    SIGINT/SIGTERM (the queue is drained before the rclpy context shuts down). `params_file`
    None is the package's config/record.yaml; `overrides` are parameter values (a mapping, or
    'name:=value' strings) applied on top, like `--ros-args -p`. `ready` is set once the node
    subscribes (or failed to start: this call then raises).
    """
    if params_file is None:
        params_file = default_params_file('record.yaml')
    return _run(ros_args(params_file, overrides), duration_s=duration_s, stop=stop,
                domain_id=domain_id, signals=signals, ready=ready)


def _run(args: Sequence[str], **kwargs: Any) -> RecorderReport:
    def finish(node: RecorderNode, why: str, ctx: Any) -> RecorderReport:
        node.close()
        if ctx.ok():
            node.updater.update()
            time.sleep(0.2)  # let the final (idle) status leave before the node is destroyed
        return node.report(why)

    return run_node(lambda ctx: RecorderNode(context=ctx), args, finish=finish, **kwargs)


def main(args: Sequence[str] | None = None) -> None:
    """
    Run `ros2 run refscale_ros recorder --ros-args ...`.

    Exit 0 after a clean stop, 1 on a write error, 2 when the node cannot start (bad
    parameters, missing weights or cache).
    """
    exit_with_report('recorder', lambda: _run(list(sys.argv[1:] if args is None else args)),
                     lambda r: 0 if r.ok else 1)


if __name__ == '__main__':
    main()
