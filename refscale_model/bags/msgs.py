"""The standard messages our bags carry: type names, field access, stamps, and dict builders.

`field`, `stamp_ns`, `stamp_or`, `frame_id` and `yaw_from_odometry` read rclpy, mcap_ros2-decoded
and dict messages alike; this module imports nothing of the package at load time, so any layer
may use it (`io.rosimg` and `geo` do).

Builders return plain dicts (what `BagWriter.write` takes).

Why dicts: the same code then serves the offline tools (no ROS install) and tests; rclpy messages
can be written directly too. Stamps are integer nanoseconds throughout; `header()` splits them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
NAV_SAT_FIX = "sensor_msgs/msg/NavSatFix"
ODOMETRY = "nav_msgs/msg/Odometry"
DIAGNOSTIC_ARRAY = "diagnostic_msgs/msg/DiagnosticArray"
STRING = "std_msgs/msg/String"
COMPRESSED_VIDEO = "foxglove_msgs/msg/CompressedVideo"
"""Foxglove's video frame type (no std_msgs/Header: `timestamp` + `frame_id` at the top level)."""


def header(stamp_ns: int, frame_id: str = "") -> dict[str, Any]:
    return {
        "stamp": {"sec": int(stamp_ns // 1_000_000_000), "nanosec": int(stamp_ns % 1_000_000_000)},
        "frame_id": frame_id,
    }


def field(msg: Any, name: str) -> Any:
    """Field `name` of a message (rclpy, mcap_ros2-decoded or dict); None when absent or `msg` is None."""
    return msg.get(name) if isinstance(msg, Mapping) else getattr(msg, name, None)


def stamp_ns(msg_or_header: Any) -> int:
    """Nanoseconds of a message's `header.stamp` (or of a header / Time passed directly; the
    top-level `timestamp` of a foxglove_msgs/CompressedVideo)."""
    h = field(msg_or_header, "header")
    if h is None and field(msg_or_header, "timestamp") is not None:
        h = field(msg_or_header, "timestamp")
    h = msg_or_header if h is None else h
    stamp = field(h, "stamp")
    stamp = h if stamp is None else stamp
    return int(field(stamp, "sec")) * 1_000_000_000 + int(field(stamp, "nanosec"))


def stamp_or(msg: Any, fallback_ns: int) -> int:
    """Header stamp of `msg`, or `fallback_ns` (e.g. the bag's log time) when it has no header or a zero stamp."""
    try:
        ns = stamp_ns(msg)
    except (TypeError, AttributeError, ValueError):
        return int(fallback_ns)
    return ns if ns > 0 else int(fallback_ns)


def frame_id(msg: Any) -> str:
    h = field(msg, "header")
    return str(field(h, "frame_id") or "") if h is not None else str(field(msg, "frame_id") or "")


def compressed_video_msg(stamp: int, frame: str, fmt: str, data: bytes) -> dict[str, Any]:
    """foxglove_msgs/CompressedVideo dict: one access unit (Annex B for h264/h265) of a video stream."""
    return {"timestamp": header(stamp)["stamp"], "frame_id": frame, "data": data, "format": fmt}


def image_msg(rgb: np.ndarray, stamp: int, frame: str = "", encoding: str = "rgb8") -> dict[str, Any]:
    """sensor_msgs/Image dict of an RGB frame in any encoding `rosimg` writes."""
    from refscale_model.io.rosimg import rgb_to_image_msg_fields

    return {"header": header(stamp, frame), **rgb_to_image_msg_fields(rgb, encoding)}


def compressed_image_msg(rgb: np.ndarray, stamp: int, frame: str = "", fmt: str = "png") -> dict[str, Any]:
    from refscale_model.io.rosimg import compressed_msg_fields

    return {"header": header(stamp, frame), **compressed_msg_fields(rgb, fmt)}


def camera_info_msg(
    stamp: int,
    frame: str,
    width: int,
    height: int,
    fx: float,
    fy: float | None = None,
    cx: float | None = None,
    cy: float | None = None,
    d: Sequence[float] = (0.0, 0.0, 0.0, 0.0, 0.0),
) -> dict[str, Any]:
    """Pinhole CameraInfo ("plumb_bob"), no rectification: K, identity R, P = [K | 0]."""
    fy = fx if fy is None else fy
    cx = (width - 1) / 2.0 if cx is None else cx
    cy = (height - 1) / 2.0 if cy is None else cy
    return {
        "header": header(stamp, frame),
        "height": int(height),
        "width": int(width),
        "distortion_model": "plumb_bob",
        "d": [float(v) for v in d],
        "k": [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0],
        "r": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
        "p": [fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0],
        "binning_x": 0,
        "binning_y": 0,
        "roi": {"x_offset": 0, "y_offset": 0, "height": 0, "width": 0, "do_rectify": False},
    }


def navsatfix_msg(
    lat: float, lon: float, alt: float, stamp: int, frame: str = "gps", *, sigma_m: float = 1.0
) -> dict[str, Any]:
    var = float(sigma_m) ** 2
    return {
        "header": header(stamp, frame),
        "status": {"status": 0, "service": 1},
        "latitude": float(lat),
        "longitude": float(lon),
        "altitude": float(alt),
        "position_covariance": [var, 0.0, 0.0, 0.0, var, 0.0, 0.0, 0.0, var],
        "position_covariance_type": 2,
    }


def odometry_msg(
    stamp: int,
    position: Sequence[float],
    yaw_rad: float,
    speed_mps: float = 0.0,
    frame: str = "odom",
    child_frame: str = "base_link",
) -> dict[str, Any]:
    """Planar odometry: position (x, y, z) and heading as a yaw quaternion, forward speed."""
    half = 0.5 * float(yaw_rad)
    return {
        "header": header(stamp, frame),
        "child_frame_id": child_frame,
        "pose": {
            "pose": {
                "position": dict(zip("xyz", map(float, position), strict=True)),
                "orientation": {"x": 0.0, "y": 0.0, "z": float(np.sin(half)), "w": float(np.cos(half))},
            },
            "covariance": [0.0] * 36,
        },
        "twist": {
            "twist": {"linear": {"x": float(speed_mps), "y": 0.0, "z": 0.0}, "angular": {"x": 0.0, "y": 0.0, "z": 0.0}},
            "covariance": [0.0] * 36,
        },
    }


def yaw_from_odometry(msg: Any) -> float:
    """Heading (rad, ENU yaw) of an Odometry message's orientation quaternion."""
    q = field(field(field(msg, "pose"), "pose"), "orientation")
    x, y, z, w = (float(field(q, k)) for k in "xyzw")
    return float(np.arctan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z)))
