"""Billboard sprites (trees, lamp posts, signs) and parked-car panels, as premultiplied RGBA.

Premultiplied alpha keeps downsampled mip levels free of dark fringes. Every sprite's bottom row
sits on the ground; columns run from world +y to -y (left to right as the camera sees them).
"""

from __future__ import annotations

import cv2
import numpy as np

from .noise import fbm, smoothstep, value_noise


def premultiply(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = np.clip(alpha, 0, 1)[..., None]
    out = np.concatenate([np.clip(rgb, 0, 1) * a, a], axis=2)
    return np.clip(out * 255 + 0.5, 0, 255).astype(np.uint8)


def tree_sprite(rng: np.random.Generator, res: float) -> np.ndarray:
    """A street lime/maple: lacy crown of noisy blobs over a trunk with visible branches."""
    height = rng.uniform(7.0, 10.0)
    crown_w = rng.uniform(4.5, 6.5)
    rows, cols = round((height + 0.3) * res), round((crown_w + 1.0) * res)
    z = (rows - np.arange(rows, dtype=np.float32) - 0.5)[:, None] / res
    y = (np.arange(cols, dtype=np.float32) + 0.5)[None, :] / res - cols / res / 2
    shape = (rows, cols)
    crown_base = rng.uniform(2.4, 3.2)
    cz, rz, ry = (height + crown_base) / 2, (height - crown_base) / 2, crown_w / 2
    density = np.zeros(shape, np.float32)
    for _ in range(16):
        ang, rad = rng.uniform(0, 2 * np.pi), np.sqrt(rng.uniform(0, 1)) * 0.55
        bz, by = cz + rad * np.sin(ang) * rz, rad * np.cos(ang) * ry
        r = rng.uniform(0.28, 0.42) * min(rz, ry)
        density = np.maximum(density, np.exp(-((z - bz) ** 2 + (y - by) ** 2) / (2 * r * r)))
    leaf = fbm(rng, shape, 0.35 * res, octaves=4)
    tiny = value_noise(rng, shape, (0.05 * res, 0.05 * res)) - 0.5
    inside = smoothstep(1.0, 0.85, np.hypot((z - cz) / rz, y / ry))  # never reach the sprite border
    cover = density + (0.3 * leaf + 0.25 * tiny) * smoothstep(0.1, 0.45, density)
    alpha = smoothstep(0.45, 0.53, cover) * inside
    green = np.array(rng.choice([[0.2, 0.33, 0.1], [0.24, 0.36, 0.12], [0.17, 0.28, 0.11]]), np.float32)
    light = 0.55 + 0.45 * smoothstep(cz - rz, cz + rz, z) + 0.3 * (y / crown_w)
    light = light * (0.75 + 0.5 * np.clip(cover - 0.45, 0, 0.5)) * (1 + 0.45 * tiny + 0.25 * leaf)
    rgb = green[None, None, :] * light[..., None]
    rgb[..., 0] *= 1 + 0.25 * (leaf + 0.3)

    # Trunk and branches go underneath the leaves, visible through gaps.
    wood = np.zeros(shape, np.float32)
    trunk_w = rng.uniform(0.24, 0.34)
    wood = np.maximum(wood, (np.abs(y) < trunk_w / 2 * (1.0 - 0.35 * z / height)) & (z < cz + 0.4 * rz))
    canvas = np.zeros(shape, np.uint8)
    for _ in range(7):
        z0 = rng.uniform(crown_base - 0.3, cz)
        ang = rng.uniform(-1.1, 1.1)
        ln = rng.uniform(1.2, 2.6)
        p0 = (round(cols / 2), round(rows - z0 * res))
        p1 = (round(cols / 2 + np.sin(ang) * ln * res), round(rows - (z0 + np.cos(ang) * ln) * res))
        cv2.line(canvas, p0, p1, 1, max(1, round(0.07 * res)), cv2.LINE_AA)
    wood = np.maximum(wood, canvas.astype(np.float32))
    bark = np.array([0.23, 0.2, 0.17], np.float32) * (1 + 0.35 * fbm(rng, shape, (0.3 * res, 0.03 * res), 3))[..., None]
    bark *= (0.7 + 0.3 * (y > 0))[..., None]
    out_rgb = rgb * alpha[..., None] + bark * (wood * (1 - alpha))[..., None]
    out_a = np.maximum(alpha, wood)
    with np.errstate(invalid="ignore", divide="ignore"):
        out_rgb = np.where(out_a[..., None] > 0, out_rgb / np.maximum(out_a, 1e-6)[..., None], 0)
    return premultiply(out_rgb, out_a)


LAMP_WIDTH_M = 2.4
LAMP_HEAD_M = (1.85, 0.42)  # diffuser centre: metres from the sprite's left edge / top (arm to the right)


def lamp_sprite(res: float, arm_right: bool) -> np.ndarray:
    """Tall grey lamp post whose arm reaches over the road (towards the camera's lane)."""
    height, arm = 8.0, LAMP_WIDTH_M - 0.6
    rows, cols = round(height * res), round(LAMP_WIDTH_M * res)
    z = (rows - np.arange(rows, dtype=np.float32) - 0.5)[:, None] / res
    y = (np.arange(cols, dtype=np.float32) + 0.5)[None, :] / res - 0.3
    pole_w = 0.16 - 0.05 * z / height
    pole = (np.abs(y) < pole_w / 2) & (z < height - 0.3)
    arm_m = (y > -0.05) & (y < arm) & (np.abs(z - (height - 0.45 + 0.08 * y)) < 0.05)
    head = (y > arm - 0.55) & (y < arm + 0.05) & (z > height - 0.62 + 0.08 * arm) & (z < height - 0.35 + 0.08 * arm)
    base = (np.abs(y) < 0.13) & (z < 0.9)
    alpha = (pole | arm_m | head | base).astype(np.float32)
    shade = 0.38 + 0.1 * np.cos(np.clip(y / 0.08, -1.5, 1.5))
    rgb = np.repeat((shade * np.ones_like(z))[..., None], 3, axis=2) * np.array([1.0, 1.02, 1.05])
    rgb[head] = (0.55, 0.56, 0.55)
    rgb[head & (z < height - 0.56 + 0.08 * arm)] = (0.9, 0.88, 0.8)  # diffuser
    rgb[base] *= 0.8
    spr = premultiply(rgb, alpha)
    return spr if arm_right else np.ascontiguousarray(spr[:, ::-1])


def lamp_glow_mask(sprite: np.ndarray) -> np.ndarray:
    """Where the lamp's diffuser is (for lit lamps at dusk): the brightest opaque pixels."""
    return ((sprite[..., 3] > 200) & (sprite[..., :3].min(axis=2) > 200)).astype(np.uint8)


def sign_sprite(res: float, kind: str) -> np.ndarray:
    """Swedish-style parking ('P', blue square) or no-parking (blue disc, red ring and bar) sign."""
    height, size = 2.7, 0.6
    rows, cols = round(height * res), round(0.8 * res)
    z = (rows - np.arange(rows, dtype=np.float32) - 0.5)[:, None] / res
    y = (np.arange(cols, dtype=np.float32) + 0.5)[None, :] / res - 0.4
    pole = (np.abs(y) < 0.03) & (z < height - 0.1)
    zc = height - size / 2
    rgb = np.zeros((rows, cols, 3), np.float32) + 0.5
    blue = np.array([0.05, 0.25, 0.6])
    if kind == "P":
        plate = (np.abs(y) < size / 2) & (np.abs(z - zc) < size / 2)
        rgb[plate] = blue
        border = plate & ((np.abs(y) > size / 2 - 0.03) | (np.abs(z - zc) > size / 2 - 0.03))
        rgb[border] = 0.95
        lz, ly = z - zc, y
        stem = (np.abs(ly + 0.08) < 0.045) & (np.abs(lz) < 0.2)
        r = np.hypot(ly - 0.0, lz - 0.08)
        bowl = (r < 0.12) & (r > 0.04) & (ly > -0.08)
        rgb[plate & (stem | bowl)] = 0.97
    else:
        r = np.hypot(y, z - zc)
        plate = r < size / 2
        rgb[plate] = blue
        ring = plate & (r > size / 2 - 0.08)
        bar = plate & (np.abs((y + (z - zc)) / np.sqrt(2)) < 0.045)
        rgb[ring | bar] = (0.8, 0.08, 0.08)
        rgb[plate & (r > size / 2 - 0.02)] = 0.9
    rgb[pole] = 0.55
    alpha = (pole | plate).astype(np.float32)
    return premultiply(rgb, alpha)


CAR_COLOURS: tuple[tuple[float, float, float], ...] = (
    (0.85, 0.86, 0.87), (0.06, 0.06, 0.07), (0.55, 0.57, 0.6), (0.1, 0.16, 0.32),
    (0.55, 0.08, 0.07), (0.32, 0.33, 0.34), (0.72, 0.7, 0.62), (0.12, 0.28, 0.2),
)


def car_panels(
    rng: np.random.Generator, res: float, colour: tuple[float, float, float], tall: bool
) -> dict[str, np.ndarray]:
    """Rear, front and side (front at column 0) panels of one parked car model."""
    length, width = (4.6, 1.85) if tall else (4.4, 1.78)
    height = 1.68 if tall else 1.45
    col = np.array(colour, np.float32)
    return {
        "rear": _car_end(rng, res, col, width, height, front=False),
        "front": _car_end(rng, res, col, width, height, front=True),
        "side": _car_side(rng, res, col * 0.86, length, height),  # flank faces the sky less directly
        "dims": np.array([length, width, height], np.float32),
    }


def _body_shading(z: np.ndarray, height: float, col: np.ndarray) -> np.ndarray:
    """Metallic look: bright shoulder line, darker lower body, clear-coat sheen."""
    shoulder = np.exp(-(((z - 0.62 * height) / 0.05) ** 2))
    lower = smoothstep(0.55 * height, 0.2, z)
    f = 0.85 + 0.35 * shoulder - 0.25 * lower
    return col[None, None, :] * f[..., None] + 0.08 * shoulder[..., None]


def _car_end(
    rng: np.random.Generator, res: float, col: np.ndarray, width: float, height: float, front: bool
) -> np.ndarray:
    rows, cols = round(height * res), round(width * res)
    z = (rows - np.arange(rows, dtype=np.float32) - 0.5)[:, None] / res
    y = (np.arange(cols, dtype=np.float32) + 0.5)[None, :] / res - width / 2
    ay = np.abs(y)
    belt = 0.62 * height
    cabin_half = width / 2 - 0.12 - 0.28 * smoothstep(belt, height, z)
    body = (z < belt) & (ay < width / 2 - 0.02 * smoothstep(0.3, 0.1, z))
    cabin = (z >= belt) & (ay < cabin_half) & (z < height - 0.03)
    alpha = (body | cabin).astype(np.float32)
    rgb = _body_shading(z, height, col) * np.ones((rows, cols, 1), np.float32)
    glass = cabin & (z > belt + 0.06) & (z < height - 0.08) & (ay < cabin_half - 0.06)
    refl = 0.08 + 0.25 * smoothstep(belt, height, z) + 0.05 * (y > 0)
    rgb[glass] = (0.1 + 0.6 * refl[..., None] * np.array([0.95, 1.0, 1.05], np.float32))[glass]
    lamp_z = belt - 0.12
    lamps = (np.abs(z - lamp_z) < 0.07) & (ay > width / 2 - 0.38) & (ay < width / 2 - 0.05)
    if front:
        rgb[lamps] = (0.85, 0.86, 0.85)
        grille = (ay < width / 2 - 0.45) & (np.abs(z - (lamp_z - 0.05)) < 0.1)
        slats = np.broadcast_to(0.05 + 0.07 * (np.mod(z * res, 3) < 1), grille.shape)
        rgb[grille] = slats[grille][:, None]
    else:
        rgb[lamps] = (0.55, 0.04, 0.04)
        rgb[lamps & (np.abs(z - lamp_z) < 0.025)] = (0.8, 0.15, 0.1)
    plate = (ay < 0.26) & (np.abs(z - 0.5) < 0.06)
    rgb[plate] = 0.92
    chars = plate & (np.abs(z - 0.5) < 0.04) & (np.mod((y + 0.26) * 100, 7) < 4.5) & (ay < 0.22)
    rgb[chars] = 0.08
    bumper = (z > 0.25) & (z < 0.4)
    rgb[bumper & body] *= 0.55
    tyres = (z < 0.3) & (ay > width / 2 - 0.3) & (ay < width / 2 - 0.05)
    under = (z < 0.25) & body
    rgb[under] = 0.03
    rgb[tyres] = 0.05
    alpha[tyres | under] = 1.0
    noise = 1 + 0.02 * rng.standard_normal((rows, cols), np.float32)
    return premultiply(rgb * noise[..., None], alpha)


def _car_side(rng: np.random.Generator, res: float, col: np.ndarray, length: float, height: float) -> np.ndarray:
    rows, cols = round(height * res), round(length * res)
    z = (rows - np.arange(rows, dtype=np.float32) - 0.5)[:, None] / res
    x = (np.arange(cols, dtype=np.float32) + 0.5)[None, :] / res  # from the front bumper
    belt = 0.62 * height
    nose = smoothstep(0.0, 0.25, x) * smoothstep(length, length - 0.2, x)
    body = (z > 0.18) & (z < belt) & (z < 0.35 + nose * belt)
    a_pillar, c_pillar = 1.25, length - 0.55
    rise = height - belt
    front_edge = (a_pillar - 0.35) + 0.8 * (z - belt) / rise
    back_edge = c_pillar + 0.3 - 0.7 * (z - belt) / rise
    cabin = (z >= belt) & (z < height) & (x > front_edge) & (x < back_edge)
    wheel_x = (0.85, length - 0.9)
    tyre = np.zeros_like(body)
    rim = np.zeros_like(body)
    arch = np.zeros_like(body)
    for wx in wheel_x:
        r = np.hypot(x - wx, z - 0.32)
        tyre |= r < 0.32
        rim |= r < 0.19
        arch |= (r < 0.38) & (z > 0.18)
    alpha = (body | cabin | tyre).astype(np.float32)
    rgb = _body_shading(z, height, col) * np.ones((rows, cols, 1), np.float32)
    win = cabin & (z > belt + 0.05) & (z < height - 0.06) & (x > front_edge + 0.06) & (x < back_edge - 0.06)
    b_pillar = np.abs(x - (a_pillar + c_pillar) / 2) < 0.06
    glass = win & ~b_pillar
    refl = 0.1 + 0.3 * smoothstep(belt, height, z) * (0.6 + 0.4 * np.sin(x * 2.1))
    rgb[glass] = (0.08 + refl * np.ones_like(x))[glass][:, None] * np.array([0.8, 0.87, 0.95])
    rgb[win & b_pillar] = 0.05
    seams = body & ((np.abs(x - a_pillar - 0.05) < 0.008) | (np.abs(x - (a_pillar + c_pillar) / 2) < 0.008)
                    | (np.abs(x - c_pillar + 0.05) < 0.008))
    rgb[seams] *= 0.5
    handle = (np.abs(z - (belt - 0.1)) < 0.018) & (
        (np.abs(x - (a_pillar + 0.6)) < 0.08) | (np.abs(x - (a_pillar + c_pillar) / 2 - 0.6) < 0.08)
    )
    rgb[handle] *= 0.6
    rgb[arch & ~tyre & body] = 0.06
    rgb[tyre] = 0.05
    spokes = rim & (np.mod(np.arctan2(z - 0.32, x - wheel_x[0]) * 5 / np.pi, 2) < 1.0)
    rgb[rim] = 0.55
    rgb[spokes & (x < length / 2)] = 0.3
    spokes2 = rim & (np.mod(np.arctan2(z - 0.32, x - wheel_x[1]) * 5 / np.pi, 2) < 1.0)
    rgb[spokes2 & (x >= length / 2)] = 0.3
    rgb[(z < 0.3) & body] *= 0.55
    noise = 1 + 0.02 * rng.standard_normal((rows, cols), np.float32)
    return premultiply(rgb * noise[..., None], alpha)


def car_shadow(res: float, length: float, width: float) -> np.ndarray:
    """Soft contact shadow under a parked car (rows along the car), black with alpha: it grounds the car."""
    rows, cols = max(2, round(length * res)), max(2, round(width * res))
    x = (np.arange(rows, dtype=np.float32) + 0.5)[:, None] / res
    y = (np.arange(cols, dtype=np.float32) + 0.5)[None, :] / res
    edge = np.minimum(np.minimum(x, length - x), np.minimum(y, width - y))
    alpha = 0.85 * smoothstep(0.0, 0.5, edge) ** 0.5
    return premultiply(np.zeros((rows, cols, 3), np.float32), alpha)
