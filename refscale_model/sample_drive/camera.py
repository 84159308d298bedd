"""Camera model, poses and trajectories of the sample drive, plus WGS84 placement.

World frame ("street frame"): x along the street (direction of travel), y to the left, z up, metres.
The camera is an ideal pinhole without roll; the street frame is placed on the globe by an origin
and a compass bearing so that GPS fixes look like a real car's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

EARTH_RADIUS_M = 6_378_137.0


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels (no distortion: a rectified automotive camera)."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float

    @property
    def matrix(self) -> np.ndarray:
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])


def intrinsics_for(size: tuple[int, int], hfov_deg: float = 80.0) -> Intrinsics:
    """Square pixels, principal point at the centre; `size` is (width, height)."""
    width, height = size
    f = 0.5 * width / math.tan(math.radians(hfov_deg) / 2.0)
    return Intrinsics(width, height, f, f, (width - 1) / 2.0, (height - 1) / 2.0)


@dataclass(frozen=True)
class Pose:
    """Camera pose in the street frame; `index`/`t` make per-frame effects (noise, rain) reproducible."""

    x: float
    y: float
    yaw: float = 0.0  # radians, positive turns left
    height: float = 1.45  # camera height above the road, metres
    pitch: float = 0.0  # radians, positive looks down
    t: float = 0.0
    index: int = 0


def rotation(pose: Pose) -> np.ndarray:
    """World-to-camera rotation (camera: x right, y down, z forward)."""
    cy, sy = math.cos(pose.yaw), math.sin(pose.yaw)
    fwd = np.array([cy, sy, 0.0])
    right = np.array([sy, -cy, 0.0])
    down = np.array([0.0, 0.0, -1.0])
    cp, sp = math.cos(pose.pitch), math.sin(pose.pitch)
    # Pitch down: the optical axis dips towards -z, "down" tilts forward.
    fwd_p = cp * fwd + sp * down
    down_p = cp * down - sp * fwd
    return np.stack([right, down_p, fwd_p])


def camera_centre(pose: Pose) -> np.ndarray:
    return np.array([pose.x, pose.y, pose.height])


def plane_homography(
    k: Intrinsics, pose: Pose, origin: np.ndarray, du: np.ndarray, dv: np.ndarray
) -> np.ndarray:
    """3×3 map from texel (u, v, 1) to image pixels for the plane origin + u*du + v*dv.

    This is what lets a whole textured plane be drawn with one cv2.warpPerspective call.
    """
    r = rotation(pose)
    m = np.stack([r @ du, r @ dv, r @ (origin - camera_centre(pose))], axis=1)
    return k.matrix @ m


class View:
    """Per-frame camera constants (K·R, centre), so that per-object maths is a few 3×3 products."""

    def __init__(self, k: Intrinsics, pose: Pose) -> None:
        self.k, self.pose = k, pose
        self.r = rotation(pose)
        self.c = camera_centre(pose)
        self.kr = k.matrix @ self.r

    def homography(self, origin: np.ndarray, du: np.ndarray, dv: np.ndarray) -> np.ndarray:
        """Texel (u, v, 1) -> pixel map of the plane origin + u*du + v*dv."""
        return self.kr @ np.stack([du, dv, origin - self.c], axis=1)

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """N×3 world points -> (N×2 pixels, N depths)."""
        h = (points - self.c) @ self.kr.T
        z = h[:, 2]
        safe = np.where(np.abs(z) < 1e-9, 1e-9, z)
        return h[:, :2] / safe[:, None], z


def project(k: Intrinsics, pose: Pose, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project N×3 world points; returns (N×2 pixels, N depths along the optical axis)."""
    cam = (points - camera_centre(pose)) @ rotation(pose).T
    z = cam[:, 2]
    safe = np.where(np.abs(z) < 1e-9, 1e-9, z)
    px = np.stack([k.fx * cam[:, 0] / safe + k.cx, k.fy * cam[:, 1] / safe + k.cy], axis=1)
    return px, z


@dataclass(frozen=True)
class DriveProfile:
    """How one drive moves along the route: what differs between the reference drive and a revisit."""

    speed_mps: float = 10.0
    speed_wobble: float = 0.0  # relative amplitude of a slow speed variation
    start_x: float = 0.0
    lateral: float = -1.65  # right-hand lane centre (Sweden drives on the right)
    lateral_wobble: float = 0.0  # metres, slow lane-keeping drift
    yaw_bias_deg: float = 0.0  # camera mounting / heading difference
    height: float = 1.45
    pitch_deg: float = 1.0
    phase: float = 0.0  # phase of the wobbles, so two drives do not wobble alike


def drive_poses(profile: DriveProfile, frames: int, rate_hz: float) -> list[Pose]:
    """Smooth, deterministic poses; the heading follows the lateral drift as a real car's would."""
    t = np.arange(frames) / rate_hz
    speed = profile.speed_mps * (1.0 + profile.speed_wobble * np.sin(0.31 * t + profile.phase))
    x = profile.start_x + np.concatenate([[0.0], np.cumsum(0.5 * (speed[1:] + speed[:-1]) / rate_hz)])
    w = 0.23
    lat = profile.lateral + profile.lateral_wobble * np.sin(w * t + 1.7 * profile.phase)
    dlat_dt = profile.lateral_wobble * w * np.cos(w * t + 1.7 * profile.phase)
    yaw = np.arctan2(dlat_dt, speed) + math.radians(profile.yaw_bias_deg)
    bump = 0.004 * np.sin(5.3 * t + profile.phase) + 0.002 * np.sin(11.9 * t + 2.0 * profile.phase)
    return [
        Pose(
            x=float(x[i]),
            y=float(lat[i]),
            yaw=float(yaw[i]),
            height=profile.height + float(bump[i]),
            pitch=math.radians(profile.pitch_deg) + 0.5 * float(bump[i]),
            t=float(t[i]),
            index=i,
        )
        for i in range(frames)
    ]


@dataclass(frozen=True)
class GeoFrame:
    """Places the street frame on the globe: origin (deg) and the compass bearing of the +x axis."""

    lat0: float = 59.33418
    lon0: float = 18.05826
    alt0: float = 24.0
    bearing_deg: float = 62.0  # clockwise from north

    def to_enu(self, x: float, y: float) -> tuple[float, float]:
        """Street (x forward, y left) to local east/north metres."""
        b = math.radians(self.bearing_deg)
        fwd = (math.sin(b), math.cos(b))
        left = (-math.cos(b), math.sin(b))
        return x * fwd[0] + y * left[0], x * fwd[1] + y * left[1]

    def enu_yaw(self, street_yaw: float) -> float:
        """ENU yaw (counter-clockwise from east) of a street-frame heading."""
        return math.pi / 2.0 - math.radians(self.bearing_deg) + street_yaw

    def to_wgs84(self, east: float, north: float) -> tuple[float, float]:
        """Local tangent plane to latitude/longitude (equirectangular: exact to mm over a few 100 m)."""
        lat = self.lat0 + math.degrees(north / EARTH_RADIUS_M)
        lon = self.lon0 + math.degrees(east / (EARTH_RADIUS_M * math.cos(math.radians(self.lat0))))
        return lat, lon


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance, for checks of GPS spacing."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(a))
