"""Geodesy of poses: distances, bearings, headings, pseudo lat/lon, and a drive's interpolated track.

Positions are WGS84 latitude/longitude in degrees. Headings are compass degrees (0 = north,
clockwise); NaN means unknown. Drives with odometry but no GPS use local metric x/y (east/north,
metres) as *pseudo* lat/lon around an origin (`pseudo_latlon`): locally isometric, so radius
lookups keep working within one odometry frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from refscale_model.bags.msgs import field

EARTH_RADIUS_M = 6_371_008.8
M_PER_DEG_LAT = math.pi * EARTH_RADIUS_M / 180.0


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2.0 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def bearing_deg(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Initial compass bearing (0 = north, clockwise) from point 1 to point 2."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dl = math.radians(lon2 - lon1)
    x = math.sin(dl) * math.cos(p2)
    y = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return math.degrees(math.atan2(x, y)) % 360.0


def heading_diff_deg(a: float, b: float) -> float:
    """Smallest absolute angle between two headings (0..180)."""
    d = abs((a - b) % 360.0)
    return min(d, 360.0 - d)


def pseudo_latlon(x_m: float, y_m: float, origin: tuple[float, float] = (0.0, 0.0)) -> tuple[float, float]:
    """Local east/north metres -> pseudo lat/lon around `origin` (equirectangular, locally isometric)."""
    lat0, lon0 = origin
    lat = lat0 + y_m / M_PER_DEG_LAT
    lon = lon0 + x_m / (M_PER_DEG_LAT * max(1e-9, math.cos(math.radians(lat0))))
    return lat, lon


def yaw_to_heading_deg(yaw_rad: float) -> float:
    """ENU yaw (0 = east, counter-clockwise, ROS convention) -> compass heading degrees."""
    return (90.0 - math.degrees(yaw_rad)) % 360.0


def navsatfix_position(msg: Any) -> tuple[float, float] | None:
    """(lat, lon) of a sensor_msgs/NavSatFix, or None when it has no fix or no finite position.

    Works on rclpy, mcap_ros2-decoded and dict messages.
    """
    status = field(field(msg, "status"), "status")
    if status is not None and int(status) < 0:  # STATUS_NO_FIX = -1
        return None
    lat, lon = field(msg, "latitude"), field(msg, "longitude")
    if lat is None or lon is None:
        return None
    lat, lon = float(lat), float(lon)
    if not (math.isfinite(lat) and math.isfinite(lon)) or abs(lat) > 90.0 or abs(lon) > 180.0:
        return None
    return lat, lon


def degree_boxes(lat: float, lon: float, radius_m: float) -> list[tuple[float, float, float, float]]:
    """(min_lat, max_lat, min_lon, max_lon) boxes covering a circle; split at the antimeridian."""
    dlat = radius_m / M_PER_DEG_LAT
    lo_lat, hi_lat = lat - dlat, lat + dlat
    cos_lat = math.cos(math.radians(min(89.999, max(abs(lo_lat), abs(hi_lat)))))
    dlon = radius_m / (M_PER_DEG_LAT * cos_lat)
    if lo_lat <= -90.0 or hi_lat >= 90.0 or dlon >= 180.0:
        return [(lo_lat, hi_lat, -180.0, 180.0)]
    lo_lon, hi_lon = lon - dlon, lon + dlon
    if lo_lon < -180.0:
        return [(lo_lat, hi_lat, lo_lon + 360.0, 180.0), (lo_lat, hi_lat, -180.0, hi_lon)]
    if hi_lon > 180.0:
        return [(lo_lat, hi_lat, lo_lon, 180.0), (lo_lat, hi_lat, -180.0, hi_lon - 360.0)]
    return [(lo_lat, hi_lat, lo_lon, hi_lon)]


@dataclass
class Track:
    """A drive's positions over time: stamps (ns), pseudo/real lat/lon, odometer (m), heading (deg)."""

    t_ns: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    odometer_m: np.ndarray
    heading_deg: np.ndarray | None  # from odometry; None: derive course from the GPS track

    def __post_init__(self) -> None:
        # Precomputed once: `at` runs per image, so it must stay O(log n) on hour-long drives.
        self._tx = (self.t_ns - self.t_ns[0]).astype(np.float64) if len(self.t_ns) else np.zeros(0)
        self._heading_unwrapped = None if self.heading_deg is None else np.unwrap(self.heading_deg, period=360.0)

    def at(self, t_ns: int, max_gap_ns: int) -> tuple[float, float, float, float] | None:
        """(lat, lon, odometer, heading) at `t_ns`, interpolated; None outside the track or in a gap."""
        t = self.t_ns
        if len(t) == 0 or t_ns < t[0] - max_gap_ns or t_ns > t[-1] + max_gap_ns:
            return None
        i = int(np.searchsorted(t, t_ns))
        if 0 < i < len(t) and t[i] - t[i - 1] > max_gap_ns:
            return None
        x = float(t_ns - t[0])
        lat = float(np.interp(x, self._tx, self.lat))
        lon = float(np.interp(x, self._tx, self.lon))
        odo = float(np.interp(x, self._tx, self.odometer_m))
        if self._heading_unwrapped is not None:
            heading = float(np.interp(x, self._tx, self._heading_unwrapped)) % 360.0
        else:
            heading = self._course(odo)
        return lat, lon, odo, heading

    def _course(self, odo: float, half_window_m: float = 3.0) -> float:
        """Course over ground at odometer reading `odo`: bearing across ±half_window_m of track."""
        s = self.odometer_m
        if s[-1] - s[0] < 1.0:
            return math.nan
        a = max(s[0], odo - half_window_m)
        b = min(s[-1], odo + half_window_m)
        if b - a < 0.5:
            return math.nan
        lat_a, lon_a = float(np.interp(a, s, self.lat)), float(np.interp(a, s, self.lon))
        lat_b, lon_b = float(np.interp(b, s, self.lat)), float(np.interp(b, s, self.lon))
        return bearing_deg(lat_a, lon_a, lat_b, lon_b)
