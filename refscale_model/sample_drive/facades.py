"""Facade texture atlases (walls, brick, windows, doors), painted once per world with vectorised numpy.

Why atlases: a frame is then only a handful of cv2.warpPerspective calls, and the same texels are
seen from both drives, which is what makes a revisit look like its reference.
"""

from __future__ import annotations

import cv2
import numpy as np

from .noise import fbm, hash01, smoothstep, to_u8, value_noise
from .textures import Building


def facade_texture(
    buildings: list[Building], x_start: float, length: float, tex_height: float, res: float
) -> tuple[np.ndarray, np.ndarray]:
    """One side's facade row: (RGB uint8 with 0 = sky, lit-window mask uint8).

    Column 0 is at x_start, row 0 at height `tex_height`; pixels above the roofline stay 0 so
    that the renderer can key them out.
    """
    rows, cols = round(tex_height * res), round(length * res)
    rgb = np.zeros((rows, cols, 3), np.uint8)
    lit = np.zeros((rows, cols), np.uint8)
    for b in buildings:
        c0 = max(0, round((b.x0 - x_start) * res))
        c1 = min(cols, round((b.x1 - x_start) * res))
        if c1 <= c0:
            continue
        top_m = min(tex_height, b.height + b.roof_h + 1.5)
        r0 = rows - round(top_m * res)
        # Paint the full building, then keep the columns that fall inside this atlas.
        full_c0 = round((b.x0 - x_start) * res)
        cv = _Canvas(b, rows - r0, round((b.x1 - b.x0) * res), res)
        cv.paint()
        k0, k1 = c0 - full_c0, min(cv.cols, c1 - full_c0)
        c1 = full_c0 + k1
        mask = cv.alpha[:, k0:k1].view(np.uint8)
        cv2.copyTo(to_u8(cv.img[:, k0:k1], floor=1), mask, rgb[r0:, c0:c1])
        cv2.copyTo(to_u8(cv.light[:, k0:k1]), mask, lit[r0:, c0:c1])
    return rgb, lit


class _Canvas:
    """Painting state of one building; rectangles are addressed in metres (height z, offset u)."""

    def __init__(self, b: Building, rows: int, cols: int, res: float) -> None:
        self.b, self.rows, self.cols, self.res = b, rows, cols, res
        self.width = cols / res
        self.rng = np.random.default_rng(b.seed)
        self.z = ((rows - np.arange(rows, dtype=np.float32)) - 0.5) / res  # height of each row
        self.u = (np.arange(cols, dtype=np.float32) + 0.5) / res  # metres from the left edge
        self.img = np.empty((rows, cols, 3), np.float32)
        self.light = np.zeros((rows, cols), np.float32)
        self.alpha = np.zeros((rows, cols), bool)
        self.fine = fbm(self.rng, (rows, cols), 0.25 * res, octaves=3)

    def sl(self, z_top: float, z_bot: float, u0: float = 0.0, u1: float | None = None) -> tuple[slice, slice]:
        """Row/column slices of the rectangle z in [z_bot, z_top], u in [u0, u1]."""
        top, res = self.rows / self.res, self.res
        u1 = self.width if u1 is None else u1
        r0 = min(max(round((top - z_top) * res), 0), self.rows)
        r1 = min(max(round((top - z_bot) * res), 0), self.rows)
        c0 = min(max(round(u0 * res), 0), self.cols)
        c1 = min(max(round(u1 * res), 0), self.cols)
        return slice(r0, r1), slice(c0, c1)

    def grid(self, s: tuple[slice, slice]) -> tuple[np.ndarray, np.ndarray]:
        """Heights and offsets (broadcastable) of a rectangle's texels."""
        return self.z[s[0], None], self.u[None, s[1]]

    def paint(self) -> None:
        b = self.b
        self._wall()
        self._plinth()
        n_upper = max(1, int((b.height - b.floor0_h - 0.6) / b.floor_h))
        floors = [b.floor0_h + i * b.floor_h for i in range(n_upper)]
        trim = np.array(b.trim, np.float32)
        for fz in floors:  # string course: a light band with a shadow under it
            s = self.sl(fz + 0.14, fz - 0.05)
            self.img[s] = trim * (0.95 + 0.05 * self.fine[s][..., None])
            self.img[self.sl(fz - 0.05, fz - 0.12)] *= 0.72
        for fz in floors:
            if fz + 0.9 + b.window_h <= b.height - 0.3:
                for uc in _window_columns(self.width, b.window_spacing):
                    self._window(uc, fz + 0.9)
        if b.shops:
            self._shopfronts()
        else:
            self._entrance()
        self._cornice_and_roof()
        self.img[self.sl(b.height, 0.0, 0.25, 0.35)] = (0.33, 0.34, 0.35)  # downpipe
        self.alpha[self.sl(b.height + b.roof_h, 0.0)] = True
        self._chimneys()
        np.clip(self.img, 0, 1, out=self.img)

    def _wall(self) -> None:
        b, rng, shape = self.b, self.rng, (self.rows, self.cols)
        wall = np.array(b.wall, np.float32)
        if b.material == "brick":
            s = (slice(None), slice(None))
            self.img[:] = _brick(*self.grid(s), wall, int(rng.integers(1 << 30)))
            tone = 1 + 0.05 * self.fine
        else:
            self.img[:] = wall
            coarse = fbm(rng, shape, 2.0 * self.res, octaves=3)
            tone = 1 + 0.045 * coarse + 0.035 * self.fine + 0.012 * rng.standard_normal(shape, np.float32)
        streaks = value_noise(rng, shape, (3.0 * self.res, 0.15 * self.res)) - 0.5
        z = self.z[:, None]
        tone *= 1 - 0.10 * np.clip(streaks * 2, 0, 1) * smoothstep(b.height, 2.0, z) - 0.12 * smoothstep(1.5, 0.0, z)
        self.img *= tone[..., None]

    def _plinth(self) -> None:
        """Rusticated stone blocks along the pavement."""
        s = self.sl(0.6, 0.0)
        z, u = self.grid(s)
        course = np.floor(z / 0.3)
        stone = 0.45 + 0.05 * hash01(np.floor(u / 0.9 + 0.5 * (course % 2)).astype(np.int64), course.astype(np.int64))
        joint = (np.mod(z, 0.3) < 0.02) | (np.mod(u + 0.45 * (course % 2), 0.9) < 0.02)
        stone = np.where(joint, stone * 0.6, stone) * (1 + 0.06 * self.fine[s])
        self.img[s] = stone[..., None] * np.array([1.0, 0.98, 0.95], np.float32)

    def _window(self, uc: float, z0: float) -> None:
        """Framed, mullioned window with sky reflection, maybe curtains, a sill and recess shadow."""
        b, rng = self.b, self.rng
        frame_w = 0.07
        u0, u1, z1 = uc - b.window_w / 2, uc + b.window_w / 2, z0 + b.window_h
        s = self.sl(z1, z0, u0, u1)
        if s[0].stop <= s[0].start or s[1].stop <= s[1].start:
            return
        zz, uu = self.grid(s)
        fine = self.fine[s]
        sub = self.img[s]
        sub[:] = np.array(b.trim, np.float32) * (0.97 + 0.04 * fine[..., None])
        inner = (zz > z0 + frame_w) & (zz < z1 - frame_w) & (uu > u0 + frame_w) & (uu < u1 - frame_w)
        gz = (zz - z0 - frame_w) / max(b.window_h - 2 * frame_w, 0.1)
        refl = (0.25 + 0.5 * smoothstep(0.2, 1.0, gz) * (0.7 + 0.3 * rng.random())) * (1 + 0.25 * fine)
        glass_base = np.array([0.10, 0.12, 0.15], np.float32)
        sky = np.array([0.55, 0.6, 0.66], np.float32)
        glass = glass_base + refl[..., None] * (sky - glass_base) * 0.55
        curtain = rng.random() < 0.55
        if curtain:
            cw = rng.uniform(0.15, 0.32) * b.window_w
            ccol = np.array(rng.choice([[0.85, 0.82, 0.74], [0.7, 0.72, 0.75], [0.75, 0.6, 0.5]]), np.float32)
            folds = 0.85 + 0.15 * np.cos((uu - u0) * 2 * np.pi / 0.09)
            cmask = (uu < u0 + cw) | (uu > u1 - cw)
            glass = np.where(cmask[..., None], ccol * folds[..., None] * 0.8, glass)
        mull = (np.abs(uu - uc) < 0.03) | (np.abs(zz - (z0 + 0.68 * b.window_h)) < 0.03)
        glass = np.where(mull[..., None], np.array(b.trim, np.float32) * 0.9, glass)
        shade = 1 - 0.45 * ((zz > z1 - frame_w - 0.08) | (uu < u0 + frame_w + 0.05))
        np.copyto(sub, glass * shade[..., None], where=inner[..., None])
        if rng.random() < 0.3:
            self.light[s][inner & ~mull] = 0.8 if curtain else 1.0
        self.img[self.sl(z0, z0 - 0.07, u0 - 0.08, u1 + 0.08)] = np.array(b.trim, np.float32) * 1.05
        self.img[self.sl(z0 - 0.07, z0 - 0.2, u0 - 0.08, u1 + 0.08)] *= 0.8

    def _shopfronts(self) -> None:
        """Ground-floor shops: big windows with interiors, a door, and a sign board with 'lettering'."""
        rng, u = self.rng, 0.8
        while u < self.width - 2.0:
            w = min(rng.uniform(2.4, 4.2), self.width - 0.8 - u)
            self._shop(u, w)
            u += w + rng.uniform(0.6, 1.6)

    def _shop(self, u: float, w: float) -> None:
        rng = self.rng
        door_w = 1.1
        s = self.sl(3.0, 0.55, u, u + w)
        zz, uu = self.grid(s)
        sub = self.img[s]
        frame = np.array(rng.choice([[0.15, 0.15, 0.16], [0.35, 0.22, 0.12], [0.2, 0.27, 0.22]]), np.float32)
        sub[:] = frame
        inner = (zz > 0.62) & (zz < 2.93) & (uu > u + 0.08) & (uu < u + w - door_w - 0.1)
        interior = self._shelves(zz, uu)
        refl = 0.14 * smoothstep(1.0, 3.0, zz)[..., None] * (1 + 0.3 * self.fine[s][..., None])
        np.copyto(sub, interior + refl, where=inner[..., None])
        if rng.random() < 0.6:
            self.light[s][inner] = 0.55
        door = (uu > u + w - door_w) & (uu < u + w - 0.08) & (zz < 2.4)
        sub[door] = frame * 0.7 + 0.05
        dglass = door & (uu > u + w - door_w + 0.12) & (uu < u + w - 0.2) & (zz > 0.9) & (zz < 2.25)
        sub[dglass] = 0.12
        self._sign(u, w)

    def _shelves(self, zz: np.ndarray, uu: np.ndarray) -> np.ndarray:
        """Shop interior seen through the glass: shelf boards lined with products of random colours."""
        seed = int(self.rng.integers(1 << 30))
        level = np.floor((zz - 0.6) / 0.42)
        in_level = np.mod(zz - 0.6, 0.42)
        item = np.floor(uu / 0.11)
        tone = hash01(item.astype(np.int64), level.astype(np.int64), seed)
        height = 0.18 + 0.18 * hash01(item.astype(np.int64), level.astype(np.int64), seed + 1)
        palette = np.array([[0.8, 0.2, 0.15], [0.9, 0.8, 0.3], [0.2, 0.4, 0.75], [0.9, 0.9, 0.85],
                            [0.3, 0.6, 0.3], [0.6, 0.35, 0.6]], np.float32)
        colour = palette[(tone * 6).astype(int) % 6] * (0.35 + 0.25 * tone[..., None])
        board = in_level < 0.035
        product = (in_level - 0.035 < height) & (np.mod(uu, 0.11) > 0.012)
        back = np.full(colour.shape, 0.07, np.float32)
        out = np.where(product[..., None], colour, back)
        return np.where(board[..., None], np.float32(0.32), out)

    def _sign(self, u: float, w: float) -> None:
        """Sign board with pale 'letters' (blocks), centred over the shop window."""
        rng = self.rng
        board = np.array(rng.choice([[0.55, 0.1, 0.1], [0.1, 0.2, 0.45], [0.12, 0.12, 0.12],
                                     [0.75, 0.6, 0.2], [0.1, 0.35, 0.2], [0.85, 0.85, 0.8]]), np.float32)
        self.img[self.sl(3.75, 3.12, u, u + w)] = board
        ink = (0.95, 0.93, 0.85) if board.mean() < 0.5 else (0.1, 0.1, 0.1)
        n_chars = int(rng.integers(4, 10))
        cw = min(0.32, (w - 0.6) / n_chars)
        start = u + (w - n_chars * cw) / 2
        for i in range(n_chars):
            if rng.random() < 0.12:
                continue
            x0 = start + i * cw
            for _ in range(3):
                gx0 = x0 + rng.uniform(0, 0.4) * cw
                gx1 = min(x0 + 0.85 * cw, gx0 + rng.uniform(0.12, 0.8) * cw)
                gz0 = 3.22 + rng.uniform(0, 0.25)
                gz1 = min(3.65, gz0 + rng.uniform(0.05, 0.4))
                self.img[self.sl(gz1, gz0, gx0, gx1)] = ink

    def _entrance(self) -> None:
        """Residential ground floor: a panelled wooden front door in a stone surround."""
        uc = self.width * 0.5
        s = self.sl(3.0, 0.0, uc - 1.0, uc + 1.0)
        self.img[s] = np.array([0.6, 0.58, 0.54], np.float32) * (1 + 0.05 * self.fine[s][..., None])
        s = self.sl(2.7, 0.0, uc - 0.75, uc + 0.75)
        zz, uu = self.grid(s)
        self.img[s] = np.array([0.3, 0.18, 0.1], np.float32) * (1 + 0.15 * self.fine[s][..., None])
        panel = (np.abs(np.mod(uu - uc, 0.75) - 0.375) > 0.28) | (np.mod(zz, 0.9) < 0.08)
        self.img[s][np.broadcast_to(panel, self.img[s].shape[:2])] *= 0.75
        for du in (-3.0, 3.0):  # ground-floor windows beside the door
            if 1.0 < uc + du < self.width - 1.0:
                self._window(uc + du, 0.9)

    def _cornice_and_roof(self) -> None:
        """Projecting cornice with a deep shadow, then a standing-seam metal roof above the eaves."""
        b = self.b
        trim = np.array(b.trim, np.float32)
        s = self.sl(b.height, b.height - 0.45)
        self.img[s] = trim * (1 + 0.04 * self.fine[s][..., None])
        s = self.sl(b.height - 0.3, b.height - 0.45)
        dent = np.broadcast_to(np.mod(self.u[None, :], 0.3) < 0.1, self.img[s].shape[:2])
        self.img[s][dent] *= 0.7
        self.img[self.sl(b.height - 0.45, b.height - 0.65)] *= 0.6
        s = self.sl(b.height + b.roof_h, b.height)
        zz, uu = self.grid(s)
        seams = np.abs(np.mod(uu, 0.55) - 0.275) < max(0.02, 0.6 / self.res)
        shade = 0.75 + 0.25 * smoothstep(b.height + b.roof_h, b.height, zz)
        col = np.array(b.roof, np.float32) * ((1 + 0.06 * self.fine[s]) * shade * (1 + 0.25 * seams))[..., None]
        self.img[s] = col

    def _chimneys(self) -> None:
        """Brick chimneys poking above the roofline: they make the skyline irregular."""
        b, rng = self.b, self.rng
        for _ in range(int(rng.integers(0, 3))):
            uc = rng.uniform(1.0, max(1.1, self.width - 1.0))
            top = b.height + b.roof_h + rng.uniform(0.4, 1.2)
            s = self.sl(top, b.height + 0.3, uc - 0.35, uc + 0.35)
            self.alpha[s] = True
            self.img[s] = (0.42, 0.27, 0.22)
            self.img[self.sl(top, top - 0.12, uc - 0.35, uc + 0.35)] = (0.25, 0.25, 0.26)


def _brick(z: np.ndarray, u: np.ndarray, wall: np.ndarray, seed: int) -> np.ndarray:
    """Running-bond brickwork with per-brick tone and light mortar (tones drawn per brick, then indexed)."""
    course, blen = 0.077, 0.25
    zc, uc = z[:, 0], u[0, :]
    row = np.floor(zc / course).astype(np.int64)
    odd = (row % 2).astype(bool)
    col_even = np.floor(uc / blen).astype(np.int64)
    col_odd = np.floor((uc + 0.5 * blen) / blen).astype(np.int64)
    r0, c_max = row.min(), int(max(col_even.max(), col_odd.max())) + 1
    rr, cc = np.mgrid[0 : row.max() - r0 + 1, 0:c_max]
    tones = hash01(rr + r0, cc, seed)
    ri = (row - r0)[:, None]
    tone = np.where(odd[:, None], tones[ri, col_odd[None, :]], tones[ri, col_even[None, :]])
    mortar_row = np.mod(zc, course) < 0.014
    mortar_even = np.mod(uc, blen) < 0.012
    mortar_odd = np.mod(uc + 0.5 * blen, blen) < 0.012
    mortar = mortar_row[:, None] | np.where(odd[:, None], mortar_odd[None, :], mortar_even[None, :])
    brick = (0.82 + 0.34 * tone)[..., None] * wall[None, None, :]
    brick[..., 0] *= 1 + 0.08 * (tone - 0.5)
    brick[mortar] = (0.62, 0.6, 0.56)
    return brick


def _window_columns(width: float, spacing: float, margin: float = 1.2) -> list[float]:
    n = max(1, int((width - 2 * margin) / spacing) + 1)
    span = (n - 1) * spacing
    return [width / 2 - span / 2 + i * spacing for i in range(n)]
