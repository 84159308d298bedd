"""
A small `diagnostic_updater` equivalent (that package has no PyPI wheel); no rclpy import.

`Status` is `DiagnosticStatusWrapper`: `summary(level, message)`, `add(key, value)`. `Updater`
calls its registered tasks (`task(status)`, in order) on a node timer and publishes one
`diagnostic_msgs/DiagnosticArray` on `/diagnostics` per period.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

OK, WARN, ERROR, STALE = 0, 1, 2, 3
LEVEL_NAMES = {'OK': OK, 'WARN': WARN, 'ERROR': ERROR, 'STALE': STALE}


class Status:
    """One diagnostic status being built (name, level, message, key/value pairs)."""

    def __init__(self, name: str, hardware_id: str = '') -> None:
        self.name = name
        self.hardware_id = hardware_id
        self.level = OK
        self.message = ''
        self.values: dict[str, str] = {}

    def summary(self, level: int | str, message: str) -> None:
        """Set the level (0-3 or 'OK', 'WARN', 'ERROR', 'STALE') and the message."""
        self.level = LEVEL_NAMES[level] if isinstance(level, str) else int(level)
        self.message = message

    def add(self, key: str, value: Any) -> None:
        """Add a key/value pair; floats are rounded for humans, everything becomes a string."""
        self.values[str(key)] = f'{value:.3f}' if isinstance(value, float) else str(value)

    def to_msg(self) -> Any:
        """Return the `diagnostic_msgs/DiagnosticStatus`."""
        from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

        return DiagnosticStatus(
            level=bytes([self.level]), name=self.name, message=self.message,
            hardware_id=self.hardware_id,
            values=[KeyValue(key=k, value=v) for k, v in self.values.items()])


Task = Callable[[Status], None]


class Updater:
    """Run the registered tasks every `period_s` and publish their statuses on /diagnostics."""

    def __init__(self, node: Any, period_s: float) -> None:
        from diagnostic_msgs.msg import DiagnosticArray

        self.node = node
        self.tasks: list[tuple[str, Task]] = []
        self._array = DiagnosticArray
        self.pub = node.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.timer = node.create_timer(max(0.05, float(period_s)), self.update)

    def add(self, name: str, task: Task) -> None:
        """Register `task(status)`; it fills the status called `name` every period."""
        self.tasks.append((name, task))

    def statuses(self) -> list[Status]:
        """Run every task once, in registration order."""
        out = []
        for name, task in self.tasks:
            status = Status(name)
            task(status)
            out.append(status)
        return out

    def array(self) -> Any:
        """Run the tasks and return the DiagnosticArray (stamped with the node's clock)."""
        arr = self._array(status=[s.to_msg() for s in self.statuses()])
        arr.header.stamp = self.node.get_clock().now().to_msg()
        return arr

    def update(self) -> None:
        """Publish one DiagnosticArray; a failure is logged, never raised into the timer."""
        try:
            self.pub.publish(self.array())
        except Exception as exc:  # noqa: BLE001 - the context may be shutting down
            self.node.get_logger().debug(f'diagnostics not published: {exc}')
