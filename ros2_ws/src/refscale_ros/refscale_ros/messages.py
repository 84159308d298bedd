"""Message helpers of the nodes (no rclpy import): classes by type name, rgb8 Images."""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
from sensor_msgs.msg import Image


def message_class(type_name: str) -> Any:
    """Return the rclpy class of 'pkg/msg/Name' (or 'pkg/Name')."""
    parts = type_name.split('/')
    if len(parts) == 2:
        parts = [parts[0], 'msg', parts[1]]
    if len(parts) != 3:
        raise ValueError(f'not a message type name: {type_name!r}')
    return getattr(importlib.import_module(f'{parts[0]}.{parts[1]}'), parts[2])


def rgb_image(rgb: np.ndarray, *, header: Any = None, stamp_ns: int = 0,
              frame_id: str = '') -> Image:
    """Return a `sensor_msgs/Image` (rgb8) with `header`, or with `stamp_ns` and `frame_id`."""
    msg = Image(height=int(rgb.shape[0]), width=int(rgb.shape[1]), encoding='rgb8',
                is_bigendian=0, step=int(rgb.shape[1]) * 3)
    if header is not None:
        msg.header = header
    else:
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)
        msg.header.frame_id = frame_id
    msg.data = np.ascontiguousarray(rgb).tobytes()
    return msg
