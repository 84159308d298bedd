"""The car's pose from the NavSatFix / Odometry messages seen so far (online, no look-ahead)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from refscale_model.bags import msgs
from refscale_model.geo import bearing_deg, haversine_m, navsatfix_position, yaw_to_heading_deg


@dataclass(frozen=True)
class Pose:
    """Where the car is: WGS84 degrees and compass heading (0 = north, clockwise; NaN = unknown)."""

    lat: float
    lon: float
    heading_deg: float = math.nan


class PoseTracker:
    """Latest pose from the NavSatFix / Odometry messages seen so far (online: no look-ahead).

    Heading is the course between the two latest fixes at least `min_course_m` apart, or the
    odometry yaw when there is odometry. Odometry-only drives use the cache's pseudo lat/lon.
    """

    def __init__(
        self,
        max_age_s: float = 2.0,
        min_course_m: float = 2.0,
        pseudo_latlon: Callable[[float, float], tuple[float, float]] | None = None,
    ) -> None:
        self.max_age_ns = int(max_age_s * 1e9)
        self.min_course_m = min_course_m
        self.pseudo_latlon = pseudo_latlon
        self._fix: tuple[int, float, float] | None = None
        self._course_from: tuple[float, float] | None = None
        self._course = math.nan
        self._odom: tuple[int, float, float, float] | None = None  # t, x, y, heading

    def update(self, type_name: str, msg: Any, t_ns: int) -> None:
        if type_name == msgs.NAV_SAT_FIX:
            pos = navsatfix_position(msg)
            if pos is None:
                return
            if self._course_from is None:
                self._course_from = pos
            elif haversine_m(*self._course_from, *pos) >= self.min_course_m:
                self._course = bearing_deg(*self._course_from, *pos)
                self._course_from = pos
            self._fix = (t_ns, pos[0], pos[1])
        elif type_name == msgs.ODOMETRY:
            p = msg.pose.pose.position if not isinstance(msg, Mapping) else msg["pose"]["pose"]["position"]
            x, y = (float(p[k]) for k in "xy") if isinstance(p, Mapping) else (float(p.x), float(p.y))
            self._odom = (t_ns, x, y, yaw_to_heading_deg(msgs.yaw_from_odometry(msg)))

    def pose(self, t_ns: int) -> Pose | None:
        odom = self._odom if self._odom and abs(t_ns - self._odom[0]) <= self.max_age_ns else None
        if self._fix and abs(t_ns - self._fix[0]) <= self.max_age_ns:
            heading = odom[3] if odom else self._course
            return Pose(self._fix[1], self._fix[2], heading)
        if odom and self.pseudo_latlon is not None:
            lat, lon = self.pseudo_latlon(odom[1], odom[2])
            return Pose(lat, lon, odom[3])
        return None
