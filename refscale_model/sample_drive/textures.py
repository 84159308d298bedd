"""Road texture atlases (asphalt, markings, kerbs, street furniture), painted once per world with numpy.

Why atlases: a frame is then only a handful of cv2.warpPerspective calls, and the same texels are
seen from both drives, which is what makes a revisit look like its reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .noise import fbm, hash01, smoothstep, to_u8


@dataclass(frozen=True)
class StreetLayout:
    """Cross-section of the street, metres from the centre line (y > 0 is left)."""

    facade: float = 9.0  # facades at y = ±facade
    kerb: float = 5.5  # road edge
    kerb_width: float = 0.3
    lane_width: float = 3.3  # driving lane; parking lane between lane and kerb


@dataclass(frozen=True)
class Building:
    """One building of a facade row; all sizes in metres."""

    x0: float
    x1: float
    height: float  # eaves
    roof_h: float
    floor0_h: float
    floor_h: float
    material: str  # "plaster" | "brick"
    wall: tuple[float, float, float]
    trim: tuple[float, float, float]
    roof: tuple[float, float, float]
    window_w: float
    window_h: float
    window_spacing: float
    shops: bool
    seed: int


# ----------------------------------------------------------------------------------------- ground


def ground_texture(
    rng: np.random.Generator,
    layout: StreetLayout,
    x_start: float,
    length: float,
    res: float,
    crossings: list[float],
    tree_pits: list[tuple[float, float]],
) -> np.ndarray:
    """Road + kerbs + sidewalks, rows along the street (row 0 at x_start), column 0 at y = +facade."""
    rows, cols = round(length * res), round(2 * layout.facade * res)
    out = np.empty((rows, cols, 3), np.uint8)
    y = layout.facade - (np.arange(cols, dtype=np.float32) + 0.5) / res
    patches = _patches(rng, layout, x_start, length)
    chunk = max(64, round(40 * res))
    for r0 in range(0, rows, chunk):
        r1 = min(rows, r0 + chunk)
        x = x_start + (np.arange(r0, r1, dtype=np.float32) + 0.5) / res
        out[r0:r1] = to_u8(_ground_chunk(rng, layout, x, y, res, crossings, tree_pits, patches))
    _draw_street_furniture_on_ground(rng, out, layout, x_start, res)
    return out


def _patches(rng: np.random.Generator, lay: StreetLayout, x_start: float, length: float) -> list[tuple[float, ...]]:
    """Asphalt repairs (x0, x1, y0, y1, tone): rectangles of newer or older asphalt."""
    out = []
    for _ in range(int(length / 14)):
        cx, cy = x_start + rng.uniform(0, length), rng.uniform(-lay.kerb + 0.8, lay.kerb - 0.8)
        hx, hy = rng.uniform(0.4, 1.8), rng.uniform(0.4, 1.4)
        out.append((cx - hx, cx + hx, cy - hy, cy + hy, float(rng.choice([0.82, 0.88, 1.12]))))
    return out


def _apply_patches(asphalt: np.ndarray, x: np.ndarray, y: np.ndarray, patches: list[tuple[float, ...]]) -> None:
    for x0, x1, y0, y1, tone in patches:
        r0, r1 = np.searchsorted(x, [x0, x1])
        c0, c1 = np.sort(np.searchsorted(-y, [-y1, -y0]))
        if r1 <= r0 or c1 <= c0:
            continue
        sub = asphalt[r0:r1, c0:c1]
        sub *= tone
        edge = np.minimum(np.minimum(x[r0:r1, None] - x0, x1 - x[r0:r1, None]),
                          np.minimum(y[None, c0:c1] - y0, y1 - y[None, c0:c1]))
        sub[edge < 0.035] *= 0.8  # bitumen seal along the cut


def _ground_chunk(
    rng: np.random.Generator,
    lay: StreetLayout,
    x: np.ndarray,
    y: np.ndarray,
    res: float,
    crossings: list[float],
    tree_pits: list[tuple[float, float]],
    patches: list[tuple[float, ...]],
) -> np.ndarray:
    shape = (x.size, y.size)
    X, Y = x[:, None], y[None, :]
    ay = np.abs(Y)
    road = ay < lay.kerb
    kerb = (ay >= lay.kerb) & (ay < lay.kerb + lay.kerb_width)

    big = fbm(rng, shape, 3.0 * res, octaves=3)
    mid = fbm(rng, shape, 0.5 * res, octaves=3)
    fine = fbm(rng, shape, 0.08 * res, octaves=2)

    # Asphalt: dark, stained, with polished wheel paths and a dirty gutter.
    asphalt = 0.25 + 0.014 * big + 0.012 * mid + 0.025 * fine
    for lane_c in (lay.lane_width / 2, -lay.lane_width / 2):
        for off in (-0.85, 0.85):
            asphalt = asphalt - 0.025 * np.exp(-(((Y - lane_c - off) / 0.35) ** 2))
    gutter = smoothstep(lay.kerb - 0.5, lay.kerb, ay) * road
    asphalt = asphalt * (1.0 - 0.18 * gutter * (0.6 + 0.4 * (mid > 0)))
    _apply_patches(asphalt, x, y, patches)

    # Sidewalk: concrete slabs with joints and per-slab tone.
    slab = 1.0
    sx, sy = np.floor(X / slab), np.floor((ay - lay.kerb) / slab)
    tone = hash01(sx.astype(np.int64), sy.astype(np.int64) + 1000 * (Y > 0))
    fx_, fy_ = X / slab - sx, (ay - lay.kerb) / slab - sy
    joint_w = max(0.5 / res, 0.012)
    joint = (np.minimum(fx_, 1 - fx_) * slab < joint_w) | (np.minimum(fy_, 1 - fy_) * slab < joint_w)
    concrete = 0.50 + 0.05 * (tone - 0.5) + 0.03 * big + 0.025 * mid + 0.05 * fine
    concrete = np.where(joint, concrete * 0.62, concrete)

    # Granite kerb: light, speckled, with a shadowed road-side face.
    granite = 0.55 + 0.02 * mid + 0.09 * fine
    face = (ay - lay.kerb) < 0.06
    granite = np.where(face, granite * 0.55, granite)

    grey = np.where(road, asphalt, np.where(kerb, granite, concrete))
    wall_ao = smoothstep(lay.facade - 0.6, lay.facade, ay)
    grey = grey * (1.0 - 0.35 * wall_ao)

    img = np.repeat(grey[:, :, None], 3, axis=2)
    img *= np.array([1.0, 0.99, 0.97], np.float32)  # slightly warm stone
    _tree_pits(img, X, Y, tree_pits, mid)
    paint = _markings(lay, X, Y, crossings) * road
    wear = smoothstep(-0.35, 0.2, mid + 0.6 * fine)
    alpha = paint * (0.55 + 0.45 * wear)
    img = img * (1 - alpha[..., None]) + 0.82 * alpha[..., None]
    return img


def _markings(lay: StreetLayout, X: np.ndarray, Y: np.ndarray, crossings: list[float]) -> np.ndarray:
    """White paint coverage in [0, 1]: dashed centre line, lane edge lines, zebra crossings."""
    period, dash = 12.0, 3.0
    centre = (np.abs(Y) < 0.07) & (np.mod(X, period) < dash)
    edge_y = lay.lane_width
    edge = (np.abs(np.abs(Y) - edge_y) < 0.05) & (np.mod(X + 1.0, 3.0) < 2.0)
    paint = (centre | edge).astype(np.float32)
    for xc in crossings:
        band = (X > xc - 2.0) & (X < xc + 2.0)
        stripes = np.mod(Y + 0.25, 1.0) < 0.5
        stop = (np.abs(X - (xc - 3.2)) < 0.15) & (Y < 0)
        paint = np.maximum(paint, (band & stripes & (np.abs(Y) < lay.kerb - 0.3)) | stop)
    return paint


def _tree_pits(
    img: np.ndarray, X: np.ndarray, Y: np.ndarray, pits: list[tuple[float, float]], noise: np.ndarray
) -> None:
    """Dark soil squares with an iron grating ring around street trees."""
    xs = X[:, 0]
    for px, py in pits:
        r0, r1 = np.searchsorted(xs, [px - 0.75, px + 0.75])
        if r1 <= r0:
            continue
        x, sub, nz = X[r0:r1], img[r0:r1], noise[r0:r1]
        d = np.maximum(np.abs(x - px), np.abs(Y - py))
        soil = d < 0.65
        ring = (d >= 0.65) & (d < 0.72)
        grate = soil & (np.mod((x - px) * 12.0, 1.0) < 0.25) & (d > 0.25)
        sub[soil] = (np.array([0.17, 0.14, 0.11]) * (1 + 0.3 * nz[soil, None])).astype(np.float32)
        sub[grate] = (0.13, 0.13, 0.14)
        sub[ring] = (0.3, 0.3, 0.32)


def _draw_street_furniture_on_ground(
    rng: np.random.Generator, img: np.ndarray, lay: StreetLayout, x_start: float, res: float
) -> None:
    """Manhole covers, drains and patch repairs: cheap cv2 primitives that break periodicity."""
    rows, cols = img.shape[:2]
    length = rows / res

    def px(x: float, y: float) -> tuple[int, int]:
        return round((lay.facade - y) * res), round((x - x_start) * res)

    x = 6.0
    while x < length + x_start:
        # Manhole cover in a lane.
        if rng.random() < 0.35:
            c = px(x + rng.uniform(0, 10), rng.choice([-1.6, 1.6, -0.7]) + rng.uniform(-0.3, 0.3))
            r = round(0.33 * res)
            cv2.circle(img, c, r + max(1, round(0.04 * res)), (95, 95, 98), -1, cv2.LINE_AA)
            cv2.circle(img, c, r, (52, 50, 48), -1, cv2.LINE_AA)
            for k in range(-2, 3):
                off = round(k * 0.11 * res)
                cv2.line(img, (c[0] - r + 2, c[1] + off), (c[0] + r - 2, c[1] + off), (40, 40, 40), 1)
        # Drain grate by the kerb.
        if rng.random() < 0.6:
            side = rng.choice([-1.0, 1.0])
            c0 = px(x + rng.uniform(0, 10), side * (lay.kerb - 0.1))
            w, h = round(0.45 * res), round(0.8 * res)
            cv2.rectangle(img, (c0[0] - w // 2, c0[1]), (c0[0] + w // 2, c0[1] + h), (30, 30, 32), -1)
            for k in range(1, 6):
                xx = c0[0] - w // 2 + k * w // 6
                cv2.line(img, (xx, c0[1] + 1), (xx, c0[1] + h - 1), (75, 75, 78), 1)
        x += 12.0
    # A few long cracks (random walks), drawn thin and dark.
    for _ in range(int(length / 15)):
        pts = [(rng.uniform(x_start, x_start + length), rng.uniform(-lay.kerb + 0.3, lay.kerb - 0.3))]
        for _ in range(int(rng.integers(6, 20))):
            px_, py_ = pts[-1]
            pts.append((px_ + rng.uniform(-0.1, 0.45), py_ + rng.uniform(-0.25, 0.25)))
        poly = np.array([px(a, b) for a, b in pts], np.int32)
        cv2.polylines(img, [poly], False, (34, 34, 35), 1, cv2.LINE_AA)


def ground_detail(rng: np.random.Generator, size: int) -> np.ndarray:
    """Tileable asphalt grain (uint8, 128 = neutral), multiplied onto near road bands.

    Aggregate stones a few mm to cm across: what makes the road look sharp right under the camera.
    """
    cell = max(1, size // 256)
    stones = fbm(rng, (size, size), float(cell * 4), octaves=2, periodic=True)
    white = rng.random((size, size), dtype=np.float32) - 0.5
    speck = rng.random((size, size), dtype=np.float32)
    grain = 0.09 * stones + 0.16 * white + 0.2 * (speck > 0.95) - 0.22 * (speck < 0.05)
    grain = cv2.GaussianBlur(np.pad(grain, 2, mode="wrap"), (3, 3), 0.55)[2:-2, 2:-2]
    return np.clip(128 * (1.0 + grain), 60, 200).astype(np.uint8)


# ---------------------------------------------------------------------------------------- facades
