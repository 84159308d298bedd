"""Lighting and weather: what differs between the reference drive and the revisit.

Lighting is baked into texture copies once per Conditions (cheap per frame: the renderer only warps),
the rest (sky, haze, rain, grading, sensor noise) is a few full-frame passes at the end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .camera import Intrinsics, Pose
from .noise import fbm, hash01
from .scene import MipTex, PlaneTex, World

RGB = tuple[float, float, float]


@dataclass(frozen=True)
class Conditions:
    """Light, weather and scene variant of one drive. Frozen and hashable: it keys the lighting cache."""

    name: str
    variant: str = "a"  # which parked cars exist ("a" or "b")
    sky_zenith: RGB = (0.70, 0.73, 0.77)
    sky_horizon: RGB = (0.86, 0.87, 0.88)
    clouds: float = 0.09  # cloud contrast
    cloud_tint: RGB = (1.0, 1.0, 1.0)
    ambient: RGB = (1.0, 1.0, 1.0)  # diffuse light on every surface
    sun: RGB = (0.0, 0.0, 0.0)  # added on sunlit surfaces (times the cosine)
    sun_azimuth_deg: float = 130.0  # direction towards the sun, from +x towards +y
    sun_elevation_deg: float = 14.0
    haze: RGB = (0.80, 0.81, 0.83)
    visibility_m: float = 1200.0
    wet: float = 0.0  # darkens and glosses the road
    rain: float = 0.0  # rain streak density
    window_glow: float = 0.0
    lamp_glow: float = 0.0
    exposure: float = 1.0
    tint: RGB = (1.0, 1.0, 1.0)
    contrast: float = 1.0
    gamma: float = 1.0
    vignette: float = 0.25
    noise_sigma: float = 1.5  # sensor noise, 8-bit levels
    noise_seed: int = 0


OVERCAST_NOON = Conditions(name="overcast_noon", variant="a", noise_seed=11)
DUSK_DRIZZLE = Conditions(
    name="dusk_drizzle",
    variant="b",
    sky_zenith=(0.30, 0.36, 0.52),
    sky_horizon=(0.93, 0.66, 0.42),
    clouds=0.22,
    cloud_tint=(1.0, 0.78, 0.62),
    ambient=(0.50, 0.53, 0.64),
    sun=(1.05, 0.68, 0.38),
    haze=(0.62, 0.56, 0.58),
    visibility_m=420.0,
    wet=0.8,
    rain=0.3,
    window_glow=0.85,
    lamp_glow=1.0,
    exposure=1.12,
    tint=(1.04, 0.98, 0.92),
    contrast=1.08,
    gamma=1.05,
    vignette=0.35,
    noise_sigma=3.0,
    noise_seed=23,
)


@dataclass
class Lit:
    """A world as lit by one Conditions: textures with light baked in plus per-frame layers."""

    ground: PlaneTex
    detail: PlaneTex
    facades: dict[str, PlaneTex]
    mips: dict[int, MipTex]  # id(original MipTex) -> lit MipTex (sprites share their mips)
    sky: np.ndarray  # H × (W + 2·margin) RGB
    sky_margin: int
    haze_rgb: np.ndarray  # float32 (3,)
    vignette: np.ndarray  # float32 H×W
    streaks: np.ndarray | None  # uint8 (H+2m)×(W+2m)×3 additive rain layer
    noise_pos: np.ndarray
    noise_neg: np.ndarray
    lut: np.ndarray  # 1×256×3 grading LUT
    haze_img: np.ndarray  # H×W×3 uint8 filled with the haze colour
    sheen_rgb: np.ndarray  # float32 (3,): what a wet road mirrors (the bright sky near the horizon)


def lighting(world: World, cond: Conditions) -> Lit:
    """The lit world for `cond`, cached on the world (one entry: drives are rendered in turn)."""
    cache = world._lit_cache
    if cond not in cache:
        cache.clear()
        cache[cond] = _bake(world, cond)
    return cache[cond]


def _lut(scale: np.ndarray) -> np.ndarray:
    """Per-channel multiply as a LUT (fast on uint8 textures)."""
    x = np.arange(256, dtype=np.float32)[:, None]
    return np.clip(x * scale[None, :] + 0.5, 0, 255).astype(np.uint8)[None, :, :]


def _apply(img: np.ndarray, scale: np.ndarray) -> np.ndarray:
    if img.ndim == 3 and img.shape[2] == 4:
        rgb = cv2.LUT(np.ascontiguousarray(img[..., :3]), _lut(scale))
        return np.concatenate([rgb, img[..., 3:]], axis=2)
    return cv2.LUT(img, _lut(scale))


def _bake(world: World, cond: Conditions) -> Lit:
    amb = np.array(cond.ambient, np.float32)
    sun = np.array(cond.sun, np.float32)
    ground_scale = amb * (1.0 - 0.35 * cond.wet)
    ground = world.ground.with_mip(MipTex(_ground_lit(world, cond, ground_scale, sun)))
    facades = {side: world.facades[side].with_mip(MipTex(_facade_lit(world, cond, side, amb, sun)))
               for side in ("left", "right", "end")}
    mips: dict[int, MipTex] = {}
    for obj in world.objects:
        key = id(obj.plane.mip)
        if key in mips:
            continue
        tex = obj.plane.tex if np.allclose(amb, 1.0) else _apply(obj.plane.tex, amb)
        if obj.glow is not None and cond.lamp_glow > 0:
            tex = tex.copy()
            tex[obj.glow.astype(bool)] = (255, 236, 190, 255)
        mips[key] = MipTex(tex)
    k = world.k
    margin = int(math.ceil(k.fx * math.tan(math.radians(6.0))))
    rng = np.random.default_rng([world.seed, cond.noise_seed, 7])
    pos, neg = _noise_layers(rng, k, margin, cond.noise_sigma)
    return Lit(
        ground=ground,
        detail=world.detail,
        facades=facades,
        mips=mips,
        sky=_sky(rng, k, margin, cond),
        sky_margin=margin,
        haze_rgb=np.array(cond.haze, np.float32) * 255.0,
        vignette=_vignette(k, cond.vignette),
        streaks=_rain_layer(rng, k, margin, cond.rain) if cond.rain > 0 else None,
        noise_pos=pos,
        noise_neg=neg,
        lut=_grade_lut(cond),
        haze_img=np.full((k.height, k.width, 3), np.clip(cond.haze, 0, 1) * 255, np.uint8),
        sheen_rgb=np.array(cond.sky_horizon, np.float32) * 255.0 * cond.wet,
    )


def _sun_vector(cond: Conditions) -> np.ndarray:
    az, el = math.radians(cond.sun_azimuth_deg), math.radians(cond.sun_elevation_deg)
    return np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])


def _skyline(world: World, side: str, x: np.ndarray) -> np.ndarray:
    """Height of the roofline (eaves + half the roof) of one facade row at positions x."""
    out = np.zeros_like(x, dtype=np.float32)
    blds = world.buildings[side]
    x = np.clip(x, blds[0].x0, blds[-1].x1 - 1e-3)  # beyond the row: same as its last building
    for b in blds:
        m = (x >= b.x0) & (x < b.x1)
        out[m] = b.height + 0.5 * b.roof_h
    return out


def _shadow_height(world: World, cond: Conditions, x: np.ndarray, dist_to_blocker: np.ndarray) -> np.ndarray:
    """Height above which a point is sunlit, given its horizontal distance to the sun-side facade."""
    s = _sun_vector(cond)
    blocker = "left" if s[1] > 0 else "right"
    horiz = np.hypot(s[0], s[1])
    run = dist_to_blocker / max(abs(s[1]) / horiz, 1e-3)  # horizontal path to the blocking facade
    x_hit = x + run * s[0] / horiz
    return _skyline(world, blocker, x_hit) - run * s[2] / horiz


def _facade_lit(world: World, cond: Conditions, side: str, amb: np.ndarray, sun: np.ndarray) -> np.ndarray:
    """Ambient everywhere, plus sun above the shadow line cast by the opposite rooftops."""
    plane = world.facades[side]
    tex = plane.tex
    normal = {"left": np.array([0, -1.0, 0]), "right": np.array([0, 1.0, 0]), "end": np.array([-1.0, 0, 0])}[side]
    s = _sun_vector(cond)
    ndl = float(normal @ s)
    sunny = ndl > 0 and sun.max() > 0
    if np.allclose(amb, 1.0) and not sunny and cond.window_glow <= 0:
        return tex  # neutral light: share the albedo texels (the Lit gets its own mip cache)
    out = tex.copy() if np.allclose(amb, 1.0) else _apply(tex, amb)
    if sunny:
        cols = np.arange(tex.shape[1])
        pos = plane.origin[None, :] + cols[:, None] * plane.du[None, :]
        blocker_y = world.layout.facade if s[1] > 0 else -world.layout.facade
        dist = np.abs(blocker_y - pos[:, 1])
        z_shadow = _shadow_height(world, cond, pos[:, 0].astype(np.float32), dist.astype(np.float32))
        lit_rows = np.clip(np.ceil((plane.origin[2] - z_shadow) / abs(plane.dv[2])), 0, tex.shape[0]).astype(int)
        lut = _lut(amb + sun * ndl)
        # The shadow line is piecewise constant (one piece per blocking building): LUT per piece.
        edges = np.flatnonzero(np.diff(lit_rows)) + 1
        for c0, c1 in zip(np.r_[0, edges], np.r_[edges, cols.size], strict=True):
            r = int(lit_rows[c0])
            if r > 0:
                out[:r, c0:c1] = cv2.LUT(tex[:r, c0:c1], lut)
    if cond.window_glow > 0:
        # Lit windows are a few % of the facade: add their glow sparsely.
        glow = world.lit_windows[side].reshape(-1)
        idx = np.flatnonzero(glow)
        warm = np.array([1.0, 0.78, 0.45], np.float32) * 0.75 * cond.window_glow
        flat = out.reshape(-1, 3)
        flat[idx] = np.clip(flat[idx] + glow[idx, None].astype(np.float32) * warm, 0, 255).astype(np.uint8)
    return out


def _ground_lit(world: World, cond: Conditions, scale: np.ndarray, sun: np.ndarray) -> np.ndarray:
    tex = world.ground.tex
    out = _apply(tex, scale)
    s = _sun_vector(cond)
    if sun.max() <= 0 or s[2] <= 0:
        return out
    # Sun patches on the road where the light passes over the sun-side rooftops (coarse grid).
    g = world.ground
    step = 8
    rows = np.arange(0, tex.shape[0], step)
    cols = np.arange(0, tex.shape[1], step)
    x = (g.origin[0] + rows * g.dv[0]).astype(np.float32)[:, None]
    y = (g.origin[1] + cols * g.du[1]).astype(np.float32)[None, :]
    blocker_y = world.layout.facade if s[1] > 0 else -world.layout.facade
    zs = _shadow_height(world, cond, np.broadcast_to(x, (rows.size, cols.size)).copy(),
                        np.broadcast_to(np.abs(blocker_y - y), (rows.size, cols.size)).copy())
    sunny = cv2.resize((zs < 0).astype(np.uint8) * 255, (tex.shape[1], tex.shape[0]), interpolation=cv2.INTER_LINEAR)
    if not sunny.any():
        return out
    rows_any = np.flatnonzero(sunny.max(axis=1))
    r0, r1 = int(rows_any[0]), int(rows_any[-1]) + 1
    lit = _apply(tex[r0:r1], scale + sun * float(s[2]))
    a = sunny[r0:r1]
    out[r0:r1] = cv2.blendLinear(out[r0:r1], lit, (255 - a).astype(np.float32), a.astype(np.float32))
    return out


def _sky(rng: np.random.Generator, k: Intrinsics, margin: int, cond: Conditions) -> np.ndarray:
    """Sky panorama (at nominal pitch) a little wider than the frame, so yaw can pan it."""
    h, w = k.height, k.width + 2 * margin
    rows = np.arange(h, dtype=np.float32)
    elev = np.arctan2(k.cy - rows, k.fy) + math.radians(1.0)
    t = np.clip(elev / math.radians(40.0), 0, 1) ** 0.6
    zen, hor = np.array(cond.sky_zenith, np.float32), np.array(cond.sky_horizon, np.float32)
    grad = hor[None, :] * (1 - t[:, None]) + zen[None, :] * t[:, None]
    cloud = fbm(rng, (h, w), (k.fy * 0.12, k.fx * 0.35), octaves=5)
    c = np.clip(cloud * 1.6, -1, 1)
    tint = np.array(cond.cloud_tint, np.float32)
    img = grad[:, None, :] * (1 + cond.clouds * c[..., None] * tint[None, None, :])
    return np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)


def _vignette(k: Intrinsics, strength: float) -> np.ndarray:
    y, x = np.mgrid[0 : k.height, 0 : k.width].astype(np.float32)
    r2 = ((x - k.cx) ** 2 + (y - k.cy) ** 2) / (k.cx**2 + k.cy**2)
    return (1.0 - strength * r2**1.5).astype(np.float32)


def _noise_layers(rng: np.random.Generator, k: Intrinsics, margin: int, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Zero-mean sensor noise split into positive/negative uint8 layers (saturating add/subtract)."""
    shape = (k.height + 2 * margin, k.width + 2 * margin, 3)
    n = rng.standard_normal(shape[:2], np.float32)[..., None] * 0.7 + rng.standard_normal(shape, np.float32) * 0.5
    n = np.round(n * sigma)
    return np.clip(n, 0, 255).astype(np.uint8), np.clip(-n, 0, 255).astype(np.uint8)


def _rain_layer(rng: np.random.Generator, k: Intrinsics, margin: int, rain: float) -> np.ndarray:
    """Motion-blurred rain streaks, panned per frame so they never repeat in place."""
    h, w = k.height + 2 * margin, k.width + 2 * margin
    layer = np.zeros((h, w), np.uint8)
    n = int(rain * 2.2e-3 * h * w)
    scale = k.width / 1280.0
    x0 = rng.uniform(0, w, n)
    y0 = rng.uniform(0, h, n)
    length = rng.uniform(12, 40, n) * scale
    ang = math.radians(100.0)
    vals = rng.integers(10, 40, n)
    for xa, ya, ln, v in zip(x0, y0, length, vals, strict=True):
        p1 = (int(xa + math.cos(ang) * ln), int(ya + math.sin(ang) * ln))
        cv2.line(layer, (int(xa), int(ya)), p1, int(v), 1, cv2.LINE_AA)
    layer = cv2.GaussianBlur(layer, (3, 3), 0.7)
    return cv2.merge([layer, layer, (layer.astype(np.float32) * 1.05).clip(0, 255).astype(np.uint8)])


def _grade_lut(cond: Conditions) -> np.ndarray:
    """Exposure, white balance, gamma and a gentle S-curve in one per-channel LUT."""
    x = np.arange(256, dtype=np.float32)[:, None] / 255.0
    y = np.clip(x * cond.exposure * np.array(cond.tint, np.float32)[None, :], 0, 1) ** (1.0 / cond.gamma)
    y = np.clip(0.5 + (y - 0.5) * cond.contrast, 0, 1)
    return np.clip(y * 255 + 0.5, 0, 255).astype(np.uint8)[None, :, :]


def frame_offsets(cond: Conditions, pose: Pose, margin: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Per-frame (noise, rain) crop offsets: deterministic in (noise_seed, frame index)."""
    h = hash01(np.array([pose.index, pose.index + 7, pose.index + 13, pose.index + 29]), cond.noise_seed)
    m = 2 * margin
    noise = (int(h[0] * m), int(h[1] * m))
    fall = int(pose.index * 37) % max(m, 1)  # rain falls: the streak layer scrolls downwards
    rain = (max(0, m - 1 - fall), int(h[3] * m))
    return noise, rain
