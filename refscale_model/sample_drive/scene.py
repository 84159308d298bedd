"""The world: a straight Stockholm-like street canyon, laid out once from a seed.

Both drives render the same World; only lighting/weather (see weather.py), the parked-car variant
and the camera pose differ. That sameness is what a reference-based codec is meant to exploit.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import cv2
import numpy as np

from .camera import Intrinsics
from .facades import facade_texture
from .sprites import (
    CAR_COLOURS,
    LAMP_HEAD_M,
    LAMP_WIDTH_M,
    car_panels,
    car_shadow,
    lamp_glow_mask,
    lamp_sprite,
    sign_sprite,
    tree_sprite,
)
from .textures import Building, StreetLayout, ground_detail, ground_texture

WALL_COLOURS: tuple[tuple[float, float, float], ...] = (
    (0.80, 0.62, 0.36), (0.86, 0.76, 0.52), (0.80, 0.56, 0.46), (0.86, 0.83, 0.74),
    (0.66, 0.37, 0.27), (0.60, 0.65, 0.58), (0.73, 0.73, 0.71), (0.79, 0.62, 0.60),
)
BRICK_COLOURS: tuple[tuple[float, float, float], ...] = ((0.52, 0.26, 0.18), (0.44, 0.25, 0.2), (0.74, 0.63, 0.44))
ROOF_COLOURS: tuple[tuple[float, float, float], ...] = ((0.16, 0.17, 0.18), (0.3, 0.31, 0.32), (0.33, 0.5, 0.42))
TEX_HEIGHT_M = 25.0
SHADOW_RES = 24.0  # texels per metre of the soft contact shadow under parked cars


class MipTex:
    """A texture with ripmap levels built on first use and shared by every plane that shows it.

    Ripmaps (separate row/column reduction) keep grazing-angle road and facades sharp across the
    street while free of aliasing along it.
    """

    def __init__(self, tex: np.ndarray) -> None:
        self.tex = tex
        self._levels: dict[tuple[int, int], np.ndarray] = {(0, 0): tex}
        self._lock = threading.RLock()

    def level(self, lv: int, lu: int) -> np.ndarray:
        h, w = self.tex.shape[:2]
        key = (min(lv, int(np.log2(max(h, 1)))), min(lu, int(np.log2(max(w, 1)))))
        found = self._levels.get(key)
        if found is not None:
            return found
        with self._lock:  # render threads share textures; build each level once
            if key not in self._levels:
                # A fixed parent per level (diagonal first, then along one axis) makes every level
                # bit-identical whatever order frames asked for them in.
                lv, lu = key
                if lv > 0 and lu > 0:
                    parent = self.level(lv - 1, lu - 1)
                elif lv > 0:
                    parent = self.level(lv - 1, 0)
                else:
                    parent = self.level(0, lu - 1)
                size = (max(1, w >> lu), max(1, h >> lv))
                self._levels[key] = cv2.resize(parent, size, interpolation=cv2.INTER_AREA)
            return self._levels[key]


@dataclass
class PlaneTex:
    """A textured planar rectangle in the world.

    `origin` is the world position of texel (0, 0)'s centre, `du`/`dv` the world step per texel
    along columns/rows.
    """

    mip: MipTex
    origin: np.ndarray
    du: np.ndarray
    dv: np.ndarray

    @property
    def tex(self) -> np.ndarray:
        return self.mip.tex

    def level(self, lv: int, lu: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(texture, origin, du, dv) of ripmap level (rows halved lv times, columns lu times)."""
        h, w = self.mip.tex.shape[:2]
        t = self.mip.level(lv, lu)
        sy, sx = h / t.shape[0], w / t.shape[1]
        origin = self.origin + (sx / 2 - 0.5) * self.du + (sy / 2 - 0.5) * self.dv
        return t, origin, self.du * sx, self.dv * sy

    def with_mip(self, mip: MipTex) -> PlaneTex:
        return PlaneTex(mip, self.origin, self.du, self.dv)


@dataclass
class SceneObject:
    """A drawable planar object (sprite, car side...) and the scene variants it appears in."""

    kind: str
    plane: PlaneTex
    depth_key: float  # world x used for far-to-near ordering
    variants: frozenset[str]
    order: int = 0  # within one depth_key group: lower first
    glow: np.ndarray | None = None  # lamp diffuser mask, lit at dusk
    glow_centre: np.ndarray | None = None  # world position of the diffuser, for the halo
    x_far: float | None = None  # far end of planes that run along the street (car flank, shadow)


@dataclass
class World:
    """Everything needed to render any pose under any conditions."""

    seed: int
    size: tuple[int, int]
    k: Intrinsics
    layout: StreetLayout
    x_start: float
    x_end: float
    ground: PlaneTex
    detail: PlaneTex
    facades: dict[str, PlaneTex]  # "left", "right", "end"
    lit_windows: dict[str, np.ndarray]
    buildings: dict[str, list[Building]]
    objects: list[SceneObject]
    res: dict[str, float]
    _lit_cache: dict = field(default_factory=dict, repr=False)


def texture_resolutions(k: Intrinsics) -> dict[str, float]:
    """Texels per metre, tied to the focal length: just enough for the nearest view of each kind."""
    f = k.fx
    return {"facade": 0.068 * f, "ground": 0.05 * f, "detail": 0.2 * f, "tree": 0.13 * f,
            "pole": 0.13 * f, "car": 0.22 * f}


def build_world(seed: int, k: Intrinsics, x_min: float, x_max: float, view: float = 130.0) -> World:
    """Lay out and paint the street for camera positions in [x_min, x_max] (plus `view` metres ahead)."""
    rng = np.random.default_rng([seed, 0x5D])
    lay = StreetLayout()
    res = texture_resolutions(k)
    x_start = x_min - 12.0
    x_end = x_max + view
    length = x_end - x_start
    crossings = _crossings(rng, x_start, x_end)
    trees = _tree_positions(rng, lay, x_start, x_end, crossings)
    ground_tex = ground_texture(rng, lay, x_start, length, res["ground"], crossings, trees)
    gres = res["ground"]
    ground = PlaneTex(
        MipTex(ground_tex),
        origin=np.array([x_start + 0.5 / gres, lay.facade - 0.5 / gres, 0.0]),
        du=np.array([0.0, -1.0 / gres, 0.0]),
        dv=np.array([1.0 / gres, 0.0, 0.0]),
    )
    dsize = max(64, 1 << int(round(np.log2(res["detail"] * 6.5))))
    detail_tex = ground_detail(rng, dsize)
    dres = res["detail"]
    detail = PlaneTex(MipTex(detail_tex), origin=ground.origin, du=np.array([0.0, -1.0 / dres, 0.0]),
                      dv=np.array([1.0 / dres, 0.0, 0.0]))
    facades, lit, buildings = _facades(rng, lay, res["facade"], x_start, x_end)
    objects = _objects(rng, lay, res, trees, crossings, x_start, x_end)
    return World(seed, (k.width, k.height), k, lay, x_start, x_end, ground, detail, facades, lit,
                 buildings, objects, res)


def _crossings(rng: np.random.Generator, x_start: float, x_end: float) -> list[float]:
    xs, x = [], x_start + rng.uniform(45, 70)
    while x < x_end - 20:
        xs.append(float(x))
        x += rng.uniform(90, 140)
    return xs


def _tree_positions(
    rng: np.random.Generator, lay: StreetLayout, x0: float, x1: float, crossings: list[float]
) -> list[tuple[float, float]]:
    out = []
    y_side = lay.kerb + lay.kerb_width + 1.3
    for side in (1.0, -1.0):
        x = x0 + rng.uniform(0, 8)
        while x < x1 - 4:
            if min((abs(x - c) for c in crossings), default=99) > 6 and rng.random() < 0.85:
                out.append((float(x), side * y_side))
            x += rng.uniform(11, 16)
    return out


def _random_building(rng: np.random.Generator, x0: float, width: float) -> Building:
    brick = rng.random() < 0.3
    return Building(
        x0=x0, x1=x0 + width,
        height=float(rng.uniform(15.5, 21.5)), roof_h=float(rng.uniform(1.2, 2.6)),
        floor0_h=float(rng.uniform(3.9, 4.5)), floor_h=float(rng.uniform(3.0, 3.4)),
        material="brick" if brick else "plaster",
        wall=tuple(BRICK_COLOURS[rng.integers(len(BRICK_COLOURS))] if brick
                   else WALL_COLOURS[rng.integers(len(WALL_COLOURS))]),
        trim=tuple(np.clip(np.array([0.88, 0.86, 0.8]) * rng.uniform(0.85, 1.05), 0, 1)),
        roof=ROOF_COLOURS[rng.integers(len(ROOF_COLOURS))],
        window_w=float(rng.uniform(1.1, 1.35)), window_h=float(rng.uniform(1.5, 1.85)),
        window_spacing=float(rng.uniform(2.5, 3.2)), shops=bool(rng.random() < 0.7),
        seed=int(rng.integers(1 << 31)),
    )


def _facades(
    rng: np.random.Generator, lay: StreetLayout, res: float, x_start: float, x_end: float
) -> tuple[dict[str, PlaneTex], dict[str, np.ndarray], dict[str, list[Building]]]:
    planes: dict[str, PlaneTex] = {}
    lit: dict[str, np.ndarray] = {}
    rows_of: dict[str, list[Building]] = {}
    top = TEX_HEIGHT_M - 0.5 / res
    for side, y in (("left", lay.facade), ("right", -lay.facade)):
        blds, x = [], x_start - 2.0
        while x < x_end + 2.0:
            w = float(rng.uniform(13, 30))
            blds.append(_random_building(rng, x, w))
            x += w
        rgb, lw = facade_texture(blds, x_start, x_end - x_start, TEX_HEIGHT_M, res)
        planes[side] = PlaneTex(MipTex(rgb), origin=np.array([x_start + 0.5 / res, y, top]),
                                du=np.array([1.0 / res, 0.0, 0.0]), dv=np.array([0.0, 0.0, -1.0 / res]))
        lit[side] = lw
        rows_of[side] = blds
    # The street ends at a cross building, so the far view is a facade rather than the void.
    end_w = 2 * lay.facade + 4.0
    blds = [_random_building(rng, 0.0, end_w / 2), _random_building(rng, end_w / 2, end_w / 2)]
    rgb, lw = facade_texture(blds, 0.0, end_w, TEX_HEIGHT_M, res)
    planes["end"] = PlaneTex(MipTex(rgb), origin=np.array([x_end, end_w / 2 - 0.5 / res, top]),
                             du=np.array([0.0, -1.0 / res, 0.0]), dv=np.array([0.0, 0.0, -1.0 / res]))
    lit["end"] = lw
    rows_of["end"] = blds
    return planes, lit, rows_of


def billboard(mip: MipTex, res: float, x: float, y_centre: float) -> PlaneTex:
    """A plane across the street (y-z), bottom row on the ground, columns from +y to -y."""
    h, w = mip.tex.shape[:2]
    return PlaneTex(mip, origin=np.array([x, y_centre + w / 2 / res - 0.5 / res, h / res - 0.5 / res]),
                    du=np.array([0.0, -1.0 / res, 0.0]), dv=np.array([0.0, 0.0, -1.0 / res]))


def _objects(
    rng: np.random.Generator,
    lay: StreetLayout,
    res: dict[str, float],
    trees: list[tuple[float, float]],
    crossings: list[float],
    x_start: float,
    x_end: float,
) -> list[SceneObject]:
    both = frozenset({"a", "b"})
    objs: list[SceneObject] = []
    tree_kinds = [MipTex(tree_sprite(np.random.default_rng([int(rng.integers(1 << 30)), i]), res["tree"]))
                  for i in range(4)]
    for i, (x, y) in enumerate(trees):
        tex = tree_kinds[(i * 7 + int(x)) % len(tree_kinds)]
        objs.append(SceneObject("tree", billboard(tex, res["tree"], x, y), x, both))
    lamps = {True: MipTex(lamp_sprite(res["pole"], True)), False: MipTex(lamp_sprite(res["pole"], False))}
    x, side = x_start + rng.uniform(5, 15), 1.0
    while x < x_end - 5:
        tex = lamps[side > 0]
        ycen = side * (lay.kerb + 0.45) - side * (tex.tex.shape[1] / res["pole"] / 2 - 0.3)
        plane = billboard(tex, res["pole"], x, ycen)
        u_m = LAMP_HEAD_M[0] if side > 0 else LAMP_WIDTH_M - LAMP_HEAD_M[0]
        centre = plane.origin + u_m * res["pole"] * plane.du + LAMP_HEAD_M[1] * res["pole"] * plane.dv
        objs.append(SceneObject("lamp", plane, x, both, glow=lamp_glow_mask(tex.tex), glow_centre=centre))
        x += rng.uniform(24, 32)
        side = -side
    signs = {kind: MipTex(sign_sprite(res["pole"], kind)) for kind in ("P", "no")}
    for xc in crossings:
        objs.append(SceneObject("sign", billboard(signs["P"], res["pole"], xc + 9.0, -(lay.kerb + 0.45)),
                                xc + 9.0, both))
        objs.append(SceneObject("sign", billboard(signs["no"], res["pole"], xc - 7.0, lay.kerb + 0.45),
                                xc - 7.0, both))
    objs += _parked_cars(rng, lay, res["car"], crossings, x_start, x_end)
    return objs


def _parked_cars(
    rng: np.random.Generator, lay: StreetLayout, res: float, crossings: list[float], x_start: float, x_end: float
) -> list[SceneObject]:
    """Cars along both kerbs; some are gone, new or moved in drive B (variant 'b')."""
    models = [_car_model(np.random.default_rng([int(rng.integers(1 << 30)), i]), res, i) for i in range(8)]
    objs: list[SceneObject] = []
    for side in (-1.0, 1.0):
        x = x_start + rng.uniform(2, 8)
        while x < x_end - 10:
            model = models[int(rng.integers(len(models)))]
            length = float(model["dims"][0])
            if min((abs(x + length / 2 - c) for c in crossings), default=99) < 9 or rng.random() < 0.12:
                x += rng.uniform(4, 9)
                continue
            roll = rng.random()
            if roll < 0.12:
                placements = [(x, "a")]
            elif roll < 0.22:
                placements = [(x, "b")]
            elif roll < 0.32:
                placements = [(x, "a"), (x + float(rng.choice([-1, 1]) * rng.uniform(0.8, 2.0)), "b")]
            else:
                placements = [(x, "ab")]
            for xp, var in placements:
                objs += _car_objects(model, res, lay, side, xp, frozenset(var))
            x += length + rng.uniform(0.7, 3.5)
    return objs


def _car_model(rng: np.random.Generator, res: float, i: int) -> dict:
    """Panels of one car model, the flank also mirrored, each wrapped once so mips are shared."""
    p = car_panels(rng, res, CAR_COLOURS[i % len(CAR_COLOURS)], tall=i % 3 == 2)
    length, width, _ = (float(v) for v in p["dims"])
    return {"front": MipTex(p["front"]), "rear": MipTex(p["rear"]), "side": MipTex(p["side"]),
            "side_flipped": MipTex(np.ascontiguousarray(p["side"][:, ::-1])), "dims": p["dims"],
            "shadow": MipTex(car_shadow(SHADOW_RES, length + 0.8, width + 0.7))}


def _car_objects(
    model: dict, res: float, lay: StreetLayout, side: float, x_near: float, variants: frozenset[str]
) -> list[SceneObject]:
    """A parked car as two planes: its street-side flank and its near end (rear on our side)."""
    length, width, _ = (float(v) for v in model["dims"])
    yc = side * (lay.kerb - 0.25 - width / 2)
    y_flank = yc - side * width / 2
    facing_us = side > 0  # left-side cars park against our direction: we see their fronts
    end = model["front"] if facing_us else model["rear"]
    flank = model["side"] if facing_us else model["side_flipped"]
    h = flank.tex.shape[0]
    flank_plane = PlaneTex(flank, origin=np.array([x_near + 0.5 / res, y_flank, h / res - 0.5 / res]),
                           du=np.array([1.0 / res, 0.0, 0.0]), dv=np.array([0.0, 0.0, -1.0 / res]))
    sres = SHADOW_RES
    shadow = model["shadow"]
    sh, sw = shadow.tex.shape[:2]
    shadow_plane = PlaneTex(shadow, origin=np.array([x_near - 0.4 + 0.5 / sres, yc + sw / sres / 2 - 0.5 / sres, 0.01]),
                            du=np.array([0.0, -1.0 / sres, 0.0]), dv=np.array([1.0 / sres, 0.0, 0.0]))
    return [
        SceneObject("car_shadow", shadow_plane, x_near, variants, order=-1, x_far=x_near - 0.4 + sh / sres),
        SceneObject("car_side", flank_plane, x_near, variants, order=0, x_far=x_near + length),
        SceneObject("car_end", billboard(end, res, x_near, yc), x_near, variants, order=1),
    ]
