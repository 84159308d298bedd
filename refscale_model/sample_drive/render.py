"""Frame rendering: a 2.5D street canyon drawn as textured planes with cv2.warpPerspective.

Order (painter's algorithm): sky, road (depth bands, each from the ripmap level that matches its
footprint, so nothing aliases or shimmers), the cross building at the end of the street, both
facade rows (bands again), then sprites and car panels far to near. A per-pixel haze weight is
collected along the way and applied once at the end with grading, rain and sensor noise.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .camera import Pose, View
from .scene import MipTex, PlaneTex, SceneObject, World
from .weather import Conditions, Lit, frame_offsets, lighting

NEAR_M = 0.6
BAND_STEP = math.sqrt(2.0)
LOD_BIAS = 0.35  # > 0 prefers a slightly sharper level (a little aliasing) over blur
SPRITE_RANGE_M = 110.0


def render_frame(world: World, pose: Pose, conditions: Conditions) -> np.ndarray:
    """Render one RGB uint8 H×W×3 frame; a pure function of (world, pose, conditions)."""
    lit = lighting(world, conditions)
    view = View(world.k, pose)
    k = world.k
    frame = np.empty((k.height, k.width, 3), np.uint8)
    haze = np.zeros((k.height, k.width), np.float32)
    dens = 3.0 / conditions.visibility_m
    _sky(frame, lit, view)
    _ground(frame, haze, lit, view, dens)
    _end_facade(frame, haze, world, lit, view, dens)
    for side in ("left", "right"):
        _facade(frame, haze, world, lit.facades[side], view, dens)
    _objects(frame, haze, world, lit, view, conditions, dens)
    return _finish(frame, haze, lit, conditions, pose)


# --------------------------------------------------------------------------------------- helpers


def _shift(h: np.ndarray, x0: int, y0: int) -> np.ndarray:
    """Homography into a region of interest whose top-left pixel is (x0, y0)."""
    out = h.copy()
    out[0] -= x0 * h[2]
    out[1] -= y0 * h[2]
    return out


def _levels(h: np.ndarray, x: float, y: float) -> tuple[int, int]:
    """Ripmap levels (rows, cols) whose texel footprint at pixel (x, y) is about one pixel."""
    try:
        hinv = np.linalg.inv(h)
    except np.linalg.LinAlgError:
        return 0, 0
    pts = hinv @ np.array([[x, x + 1.0, x], [y, y, y + 1.0], [1.0, 1.0, 1.0]])
    uv = pts[:2] / pts[2]
    du = max(abs(uv[0, 1] - uv[0, 0]), abs(uv[0, 2] - uv[0, 0]))
    dv = max(abs(uv[1, 1] - uv[1, 0]), abs(uv[1, 2] - uv[1, 0]))
    lu = max(0, math.floor(math.log2(max(du, 1e-9)) + LOD_BIAS))
    lv = max(0, math.floor(math.log2(max(dv, 1e-9)) + LOD_BIAS))
    return lv, lu


def _warp_level(plane: PlaneTex, view: View, box: tuple[int, int, int, int], border: int) -> np.ndarray:
    """Warp a plane into a box (x0, y0, x1, y1), from the ripmap level matching the box centre."""
    x0, y0, x1, y1 = box
    _, o, du, dv = plane.level(0, 0)
    lv, lu = _levels(view.homography(o, du, dv), 0.5 * (x0 + x1), 0.5 * (y0 + y1))
    tex, o, du, dv = plane.level(lv, lu)
    hm = _shift(view.homography(o, du, dv), x0, y0)
    return cv2.warpPerspective(tex, hm, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR, borderMode=border)


def _haze_of(depth: np.ndarray | float, dens: float) -> np.ndarray:
    return (1.0 - np.exp(-np.asarray(depth, np.float32) * dens)).astype(np.float32)


def _roi(view: View, corners: np.ndarray) -> tuple[int, int, int, int] | None:
    """Clipped pixel bounding box (x0, y0, x1, y1) of world points that are all in front of the camera."""
    px, z = view.project(corners)
    if (z <= NEAR_M * 0.5).any():
        return None
    k = view.k
    x0 = max(0, math.floor(px[:, 0].min()))
    y0 = max(0, math.floor(px[:, 1].min()))
    x1 = min(k.width, math.ceil(px[:, 0].max()) + 1)
    y1 = min(k.height, math.ceil(px[:, 1].max()) + 1)
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1


def _corners(plane: PlaneTex) -> np.ndarray:
    h, w = plane.tex.shape[:2]
    a, du, dv = plane.origin, (w - 1) * plane.du, (h - 1) * plane.dv
    return np.array([a, a + du, a + dv, a + du + dv])


# ------------------------------------------------------------------------------------------- sky


def _sky(frame: np.ndarray, lit: Lit, view: View) -> None:
    off = int(round(lit.sky_margin - view.k.fx * view.pose.yaw))
    off = min(max(off, 0), 2 * lit.sky_margin)
    frame[:] = lit.sky[:, off : off + view.k.width]


# ---------------------------------------------------------------------------------------- ground


def _ground_depth(view: View, rows: np.ndarray | float) -> np.ndarray:
    """Optical-axis depth of the road seen at image rows (inf above the horizon)."""
    pose, k = view.pose, view.k
    yn = (np.asarray(rows, np.float64) - k.cy) / k.fy
    denom = yn * math.cos(pose.pitch) + math.sin(pose.pitch)
    return np.where(denom > 1e-9, pose.height / np.maximum(denom, 1e-9), np.inf)


def _ground_row(view: View, depth: float) -> float:
    yn = (view.pose.height / depth - math.sin(view.pose.pitch)) / math.cos(view.pose.pitch)
    return view.k.cy + view.k.fy * yn


def _ground(frame: np.ndarray, haze: np.ndarray, lit: Lit, view: View, dens: float) -> None:
    """Road in horizontal bands of growing depth, each warped from its own ripmap level."""
    k = view.k
    horizon = k.cy - k.fy * math.tan(view.pose.pitch)
    row_top = max(0, math.ceil(horizon + 0.5))
    row_hi = k.height
    z = float(_ground_depth(view, k.height - 0.5))
    while row_hi > row_top:
        z *= BAND_STEP
        row_lo = row_top if z > 4e3 else max(row_top, math.ceil(_ground_row(view, z)))
        if row_lo < row_hi:
            _ground_band(frame, lit, view, row_lo, row_hi)
        row_hi = min(row_hi, row_lo)
    rows = np.arange(row_top, k.height, dtype=np.float64) + 0.5
    depth = _ground_depth(view, rows)
    haze[row_top:] = _haze_of(depth, dens)[:, None]
    if lit.sheen_rgb.max() > 0:
        _wet_sheen(frame[row_top:], lit, view.pose.height / depth)


def _wet_sheen(dst: np.ndarray, lit: Lit, cos_incidence: np.ndarray) -> None:
    """Wet asphalt mirrors the bright horizon, more so at grazing angles (Schlick's Fresnel)."""
    fresnel = 0.02 + 0.98 * (1.0 - np.clip(cos_incidence, 0, 1)) ** 5
    rows = (fresnel[:, None] * 0.18 * lit.sheen_rgb[None, :]).astype(np.uint8)
    add = np.ascontiguousarray(np.broadcast_to(rows[:, None, :], dst.shape))
    cv2.add(dst, add, dst=dst)


def _ground_band(frame: np.ndarray, lit: Lit, view: View, r0: int, r1: int) -> None:
    k = view.k
    box = (0, r0, k.width, r1)
    dst = frame[r0:r1]
    _, o, du, dv = lit.ground.level(0, 0)
    lv, lu = _levels(view.homography(o, du, dv), k.cx, 0.5 * (r0 + r1))
    tex, o, du, dv = lit.ground.level(lv, lu)
    cv2.warpPerspective(tex, _shift(view.homography(o, du, dv), 0, r0), (k.width, r1 - r0), dst=dst,
                        flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    _, o, du, dv = lit.detail.level(0, 0)
    dlv, dlu = _levels(view.homography(o, du, dv), k.cx, 0.5 * (r0 + r1))
    if max(dlv, dlu) > 3:
        return
    grain = _warp_level(lit.detail, view, box, cv2.BORDER_WRAP)
    fade = 1.0 / (1 << max(0, max(dlv, dlu) - 1))  # grain averages out as it is minified
    if fade < 1.0:
        grain = cv2.addWeighted(grain, fade, grain, 0.0, 128.0 * (1 - fade))
    cv2.multiply(dst, cv2.merge([grain, grain, grain]), dst=dst, scale=1.0 / 128.0)


# --------------------------------------------------------------------------------------- facades


def _key_composite(frame: np.ndarray, haze: np.ndarray, warped: np.ndarray, x0: int, y0: int,
                   hz: np.ndarray) -> None:
    """Copy non-key (non-black) pixels of a warped facade into the frame and set their haze."""
    h, w = warped.shape[:2]
    mask = cv2.threshold(cv2.cvtColor(warped, cv2.COLOR_RGB2GRAY), 0, 255, cv2.THRESH_BINARY)[1]
    cv2.copyTo(warped, mask, frame[y0 : y0 + h, x0 : x0 + w])
    cv2.copyTo(np.ascontiguousarray(np.broadcast_to(hz, (h, w))), mask, haze[y0 : y0 + h, x0 : x0 + w])


def _facade(frame: np.ndarray, haze: np.ndarray, world: World, plane: PlaneTex, view: View, dens: float) -> None:
    """A facade row in vertical bands of growing depth (columns move towards the vanishing point)."""
    pose = view.pose
    y_f = float(plane.origin[1])
    top = float(plane.origin[2]) + abs(float(plane.dv[2]))
    d = 1.0
    x_limit = world.x_end - pose.x
    while d < x_limit:
        d1 = min(d * BAND_STEP, x_limit)
        xa, xb = pose.x + d, pose.x + d1
        corners = np.array([[xa, y_f, 0.0], [xa, y_f, top], [xb, y_f, 0.0], [xb, y_f, top]])
        box = _roi(view, corners)
        if box is not None:
            x0, y0, x1, _ = box
            warped = _warp_level(plane, view, box, cv2.BORDER_CONSTANT)
            px, z = view.project(corners[[0, 2]])
            cols = np.arange(x0, x1, dtype=np.float32) + 0.5
            t = np.clip((cols - px[0, 0]) / (px[1, 0] - px[0, 0] + 1e-9), 0, 1)
            inv_z = (1 - t) / z[0] + t / z[1]  # 1/depth is affine across a plane's image
            _key_composite(frame, haze, warped, x0, y0, _haze_of(1.0 / inv_z, dens)[None, :])
        d = d1


def _end_facade(frame: np.ndarray, haze: np.ndarray, world: World, lit: Lit, view: View, dens: float) -> None:
    plane = lit.facades["end"]
    box = _roi(view, _corners(plane))
    if box is None:
        return
    warped = _warp_level(plane, view, box, cv2.BORDER_CONSTANT)
    _key_composite(frame, haze, warped, box[0], box[1], _haze_of(world.x_end - view.pose.x, dens))


# --------------------------------------------------------------------------------------- objects


def _visible_objects(world: World, pose: Pose, variant: str) -> list[SceneObject]:
    out = []
    for obj in world.objects:
        if variant not in obj.variants:
            continue
        far = obj.depth_key if obj.x_far is None else obj.x_far
        if far < pose.x + NEAR_M or obj.depth_key > pose.x + SPRITE_RANGE_M:
            continue
        out.append(obj)
    out.sort(key=lambda o: (-o.depth_key, o.order))
    return out


def _objects(frame: np.ndarray, haze: np.ndarray, world: World, lit: Lit, view: View, cond: Conditions,
             dens: float) -> None:
    """Sprites and car panels, far to near, premultiplied-alpha composited."""
    pose = view.pose
    for obj in _visible_objects(world, pose, cond.variant):
        plane = obj.plane.with_mip(lit.mips[id(obj.plane.mip)])
        if obj.x_far is not None:
            plane = _clip_near(plane, pose)
            if plane is None:
                continue
        depth = max(obj.depth_key - pose.x, NEAR_M)
        _draw_sprite(frame, haze, plane, view, _haze_of(depth, dens), solid=obj.kind != "car_shadow")
        if obj.glow_centre is not None and cond.lamp_glow > 0:
            _lamp_glow(frame, obj.glow_centre, view, cond.lamp_glow)


def _clip_near(plane: PlaneTex, pose: Pose) -> PlaneTex | None:
    """Drop the part of a plane running along the street that is behind the camera.

    A homography would otherwise mirror that part into the image.
    """
    along_cols = abs(float(plane.du[0])) > 0
    step = float(plane.du[0] if along_cols else plane.dv[0])
    first = math.ceil((pose.x + NEAR_M - float(plane.origin[0])) / step)
    if first <= 0:
        return plane
    tex = plane.tex
    n = tex.shape[1] if along_cols else tex.shape[0]
    if first >= n - 1:
        return None
    cut = tex[:, first:] if along_cols else tex[first:]
    return PlaneTex(MipTex(np.ascontiguousarray(cut)), plane.origin + first * (plane.du if along_cols else plane.dv),
                    plane.du, plane.dv)


def _draw_sprite(
    frame: np.ndarray, haze: np.ndarray, plane: PlaneTex, view: View, hz: np.ndarray, solid: bool = True
) -> None:
    box = _roi(view, _corners(plane))
    if box is None:
        return
    x0, y0, x1, y1 = box
    warped = _warp_level(plane, view, box, cv2.BORDER_CONSTANT)
    alpha = cv2.extractChannel(warped, 3)
    roi = frame[y0:y1, x0:x1]
    under = cv2.multiply(roi, cv2.merge([255 - alpha] * 3), scale=1.0 / 255.0)
    cv2.add(under, cv2.cvtColor(warped, cv2.COLOR_RGBA2RGB), dst=roi)
    if solid:  # shadows keep the haze of the road they darken
        mask = cv2.threshold(alpha, 127, 255, cv2.THRESH_BINARY)[1]
        cv2.copyTo(np.full(alpha.shape, hz, np.float32), mask, haze[y0:y1, x0:x1])


def _lamp_glow(frame: np.ndarray, centre: np.ndarray, view: View, strength: float) -> None:
    """A soft additive halo around a lit lamp head (dusk)."""
    k = view.k
    px, z = view.project(centre[None, :])
    if z[0] < NEAR_M:
        return
    r = max(2, int(0.9 * k.fx / z[0]))
    cx, cy = int(px[0, 0]), int(px[0, 1])
    x0, y0, x1, y1 = max(0, cx - r), max(0, cy - r), min(k.width, cx + r + 1), min(k.height, cy + r + 1)
    if x1 <= x0 or y1 <= y0:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    g = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * (r / 2.5) ** 2)) * 110 * strength
    add = (g[..., None] * np.array([1.0, 0.85, 0.6], np.float32)).astype(np.uint8)
    cv2.add(frame[y0:y1, x0:x1], add, dst=frame[y0:y1, x0:x1])


# ---------------------------------------------------------------------------------------- finish


def _finish(frame: np.ndarray, haze: np.ndarray, lit: Lit, cond: Conditions, pose: Pose) -> np.ndarray:
    """Haze + vignette in one blend, then rain, grading LUT and sensor noise."""
    h, w = frame.shape[:2]
    w2 = cv2.multiply(lit.vignette, haze)
    w1 = cv2.subtract(lit.vignette, w2)
    out = cv2.blendLinear(frame, lit.haze_img, w1, w2)
    (ny, nx), (ry, rx) = frame_offsets(cond, pose, lit.sky_margin)
    if lit.streaks is not None:
        cv2.add(out, lit.streaks[ry : ry + h, rx : rx + w], dst=out)
    out = cv2.LUT(out, lit.lut)
    cv2.add(out, lit.noise_pos[ny : ny + h, nx : nx + w], dst=out)
    cv2.subtract(out, lit.noise_neg[ny : ny + h, nx : nx + w], dst=out)
    return out
