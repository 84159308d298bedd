"""
A small `ros2 bag play` stand-in: publish a rosbag2 MCAP bag's messages at the recorded rate.

Why: rosbag2_py has no PyPI wheel, yet the recorder needs live camera topics in tests and in
`make demo`, and the live reconstructor needs the topics of a played RefScale bag. Messages go
out as the bag's raw CDR bytes (no decode / re-encode), with their recorded types.

Run: `ros2 run refscale_ros player --ros-args -p bag:=drive_b -p rate:=1.0`, or in-process with
`BagPlayerNode(bag=..., context=...)` and its `done` event.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
import sys
import threading
import time
from typing import Any

import rclpy
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data, QoSProfile, ReliabilityPolicy
from refscale_ros.common import declare, ros_args, string_list
from refscale_ros.messages import message_class
from refscale_ros.runtime import init_context, spin, stop_on_signals

NODE_NAME = 'refscale_player'
PARAMETERS: list[tuple[str, Any, str]] = [
    ('bag', '', 'rosbag2 directory or .mcap file to play'),
    ('rate', 1.0, 'playback speed factor (2 = twice as fast); 0 = as fast as possible'),
    ('topics', None, 'topics to play (list or comma-separated string; empty = all)'),
    ('reliable', True, 'reliable publishers (false: best effort, sensor-data QoS)'),
    ('depth', 10, 'publisher history depth'),
    ('wait_for_subscribers', 0, 'wait until this many subscribers match each `wait_topics`'),
    ('wait_topics', None, 'topics to wait for (list or comma-separated; empty = all played)'),
    ('wait_timeout_s', 10.0, 'give up waiting for subscribers after this long'),
    ('start_delay_s', 0.5, 'sleep this long before the first message (matching is two-sided: '
     'a subscriber the publisher already sees may not see the publisher yet)'),
    ('loop', False, 'play the bag again and again'),
]


class BagPlayerNode(Node):
    """Publish a bag from a worker thread; `done` is set when it has been played (once)."""

    def __init__(self, *, context: Any = None, node_name: str = NODE_NAME,
                 **kwargs: Any) -> None:
        super().__init__(node_name, context=context, **kwargs)
        from refscale_model.bags import topics_of

        p = declare(self, PARAMETERS)
        self.params = p
        if not p['bag']:
            raise ValueError('parameter `bag` is required')
        self.bag = Path(p['bag'])
        wanted = set(string_list(p['topics']))
        all_topics = topics_of(self.bag)
        self.topics = {t: ty for t, ty in all_topics.items() if not wanted or t in wanted}
        if not self.topics:
            raise ValueError(f'{self.bag}: none of the topics {sorted(wanted)} is in the bag')
        qos = (QoSProfile(depth=int(p['depth']), reliability=ReliabilityPolicy.RELIABLE)
               if p['reliable'] else qos_profile_sensor_data)
        self.pubs = {t: self.create_publisher(message_class(ty), t, qos)
                     for t, ty in self.topics.items()}
        self.published = 0
        self.done = threading.Event()
        self._quit = threading.Event()
        self._thread = threading.Thread(target=self._play, name='refscale-player', daemon=True)
        self._thread.start()

    def _wait_for_subscribers(self) -> None:
        want = int(self.params['wait_for_subscribers'])
        if want <= 0:
            return
        topics = string_list(self.params['wait_topics']) or list(self.pubs)
        pubs = [self.pubs[t] for t in topics if t in self.pubs]
        deadline = time.monotonic() + float(self.params['wait_timeout_s'])
        while any(p.get_subscription_count() < want for p in pubs):
            if time.monotonic() > deadline:
                self.get_logger().warning(f'playing without all {want} subscriber(s) of {topics}')
                return
            if self._quit.wait(0.02):
                return

    def _play(self) -> None:
        from refscale_model.bags import BagReader

        try:
            self._wait_for_subscribers()
            self._quit.wait(float(self.params['start_delay_s']))
            rate = float(self.params['rate'])
            while not self._quit.is_set():
                t_bag0: int | None = None
                t_wall0 = time.monotonic()
                for raw in BagReader(self.bag).raw_messages(list(self.topics)):
                    if self._quit.is_set():
                        return
                    if t_bag0 is None:
                        t_bag0 = raw.log_time_ns
                    if rate > 0:
                        due = t_wall0 + (raw.log_time_ns - t_bag0) / 1e9 / rate
                        if self._quit.wait(max(0.0, due - time.monotonic())):
                            return
                    self.pubs[raw.topic].publish(bytes(raw.data))
                    self.published += 1
                self.done.set()
                if not self.params['loop']:
                    return
        except Exception as exc:  # noqa: BLE001 - reported, then the node is done
            self.get_logger().error(f'playing {self.bag} failed: {exc!r}')
            self.done.set()

    def close(self) -> None:
        """Stop playing (idempotent)."""
        self._quit.set()
        self._thread.join(timeout=2.0)

    def destroy_node(self) -> None:
        self.close()
        super().destroy_node()


def play_bag(bag: str | Path, *, rate: float = 1.0, topics: Sequence[str] = (),
             wait_for_subscribers: int = 1, wait_topics: Sequence[str] = (),
             timeout_s: float | None = None, domain_id: int | None = None) -> int:
    """
    Play `bag` once in this process (its own rclpy context) and return the messages published.

    For scripts such as `make demo`: run `run_recorder` in a thread, then `play_bag(drive_b)`.
    """
    overrides: dict[str, Any] = {'bag': str(bag), 'rate': float(rate),
                                 'wait_for_subscribers': int(wait_for_subscribers)}
    if topics:
        overrides['topics'] = list(topics)
    if wait_topics:
        overrides['wait_topics'] = list(wait_topics)
    ctx = init_context(ros_args(None, overrides), domain_id=domain_id)
    node = None
    try:
        node = BagPlayerNode(context=ctx)
        spin(node, ctx, duration_s=timeout_s, done=node.done.is_set)
        time.sleep(0.2)  # let the last reliable messages leave
        return node.published
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown(context=ctx)


def main(args: Sequence[str] | None = None) -> None:
    """Run `ros2 run refscale_ros player --ros-args -p bag:=PATH`; exits when the bag is done."""
    signalled = stop_on_signals()  # stop, then shut the context down
    ctx = init_context(list(sys.argv[1:] if args is None else args))
    node = None
    try:
        node = BagPlayerNode(context=ctx)
        spin(node, ctx, done=node.done.is_set, signalled=signalled)
        time.sleep(0.2)  # let the last reliable messages leave
        print(f'published {node.published} messages from {node.bag}', flush=True)
    except (ValueError, FileNotFoundError) as exc:
        print(f'refscale player: {exc}', file=sys.stderr)
        sys.exit(2)
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown(context=ctx)


if __name__ == '__main__':
    main()
