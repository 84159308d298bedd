"""Write one drive as a raw rosbag2 bag, as the car's recorder would: image, camera info, GPS, odometry.

Uses the project's `refscale_model.bags.BagWriter` (rosbag2 directory: metadata.yaml + MCAP, zstd).
Frames are rendered on the calling thread and serialised/compressed on a writer thread, so the two
overlap on a two-core machine; the single writer keeps the byte stream deterministic.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from refscale_model.bags import BagWriter, msgs

from .camera import GeoFrame, Intrinsics, Pose

TOPIC_IMAGE = "/camera/front/image_raw"
TOPIC_INFO = "/camera/front/camera_info"
TOPIC_FIX = "/gps/fix"
TOPIC_ODOM = "/odom"
CAMERA_FRAME = "camera_front_optical"


@dataclass(frozen=True)
class Fix:
    """GPS fix and odometry of one frame (what the car's localisation publishes)."""

    stamp_ns: int
    lat: float
    lon: float
    alt: float
    east: float
    north: float
    enu_yaw: float
    speed: float
    sigma_m: float


def fixes_for(
    poses: list[Pose], geo: GeoFrame, start_ns: int, rate_hz: float, gps_sigma_m: float, rng: np.random.Generator
) -> list[Fix]:
    """Fixes along the poses; GPS error is a slowly wandering offset (AR(1)), as real receivers show."""
    out: list[Fix] = []
    err = rng.standard_normal(2) * gps_sigma_m
    rho = 0.9
    dt = 1.0 / rate_hz
    for i, p in enumerate(poses):
        if i:
            err = rho * err + np.sqrt(1 - rho**2) * gps_sigma_m * rng.standard_normal(2)
        e, n = geo.to_enu(p.x, p.y)
        lat, lon = geo.to_wgs84(e + float(err[0]), n + float(err[1]))
        nxt = poses[min(i + 1, len(poses) - 1)]
        prv = poses[max(i - 1, 0)]
        span = max(nxt.index - prv.index, 1) * dt
        speed = float(np.hypot(nxt.x - prv.x, nxt.y - prv.y) / span)
        out.append(Fix(start_ns + round(i * 1e9 / rate_hz), lat, lon, geo.alt0, e, n, geo.enu_yaw(p.yaw), speed,
                       max(gps_sigma_m, 0.05)))
    return out


def write_drive(
    bag_dir: Path,
    k: Intrinsics,
    fixes: list[Fix],
    frames: Iterable[np.ndarray],
    metadata: dict[str, str],
    on_frame: Callable[[int], None] | None = None,
) -> int:
    """Write all messages of one drive; returns the number of frames written."""
    q: queue.Queue = queue.Queue(maxsize=4)
    errors: list[BaseException] = []
    with BagWriter(bag_dir) as bag:
        bag.add_metadata("refscale_sample_drive", metadata)
        for topic, type_name in ((TOPIC_IMAGE, msgs.IMAGE), (TOPIC_INFO, msgs.CAMERA_INFO),
                                 (TOPIC_FIX, msgs.NAV_SAT_FIX), (TOPIC_ODOM, msgs.ODOMETRY)):
            bag.add_topic(topic, type_name)
        worker = threading.Thread(target=_drain, args=(bag, k, q, errors), daemon=True)
        worker.start()
        count = 0
        try:
            for fix, rgb in zip(fixes, frames, strict=False):
                if errors:
                    break
                q.put((fix, rgb))
                count += 1
                if on_frame is not None:
                    on_frame(count)
        finally:
            q.put(None)
            worker.join()
        if errors:
            raise errors[0]
    return count


def _drain(bag: BagWriter, k: Intrinsics, q: queue.Queue, errors: list[BaseException]) -> None:
    while (item := q.get()) is not None:
        if errors:
            continue
        try:
            _write_frame(bag, k, *item)
        except BaseException as exc:  # surfaced on the producer thread
            errors.append(exc)


def _write_frame(bag: BagWriter, k: Intrinsics, fix: Fix, rgb: np.ndarray) -> None:
    t = fix.stamp_ns
    with bag.group():
        bag.write(TOPIC_IMAGE, msgs.image_msg(rgb, t, CAMERA_FRAME), t)
        bag.write(TOPIC_INFO, msgs.camera_info_msg(t, CAMERA_FRAME, k.width, k.height, k.fx, k.fy, k.cx, k.cy), t)
        bag.write(TOPIC_FIX, msgs.navsatfix_msg(fix.lat, fix.lon, fix.alt, t, "gps", sigma_m=fix.sigma_m), t)
        bag.write(TOPIC_ODOM, msgs.odometry_msg(t, (fix.east, fix.north, 0.0), fix.enu_yaw, fix.speed), t)
