"""Procedural two-drive sample route: the demo's embedded data, since real footage can't be shipped.

One deterministic street (a Stockholm-like canyon placed near 59.334 N, 18.058 E) is driven twice:
drive A, the reference (overcast noon), and drive B, the revisit (dusk, drizzle, some parked cars
gone/new/moved, another lane offset, speed and heading). Both are written as raw rosbag2 bags the
way a car records them, so the rest of the pipeline sees nothing special::

    from refscale_model.sample_drive import generate_sample_drive
    drive = generate_sample_drive("sample-drive")      # DIR/drive_a, DIR/drive_b, DIR/manifest.json
    drive.drive_a, drive.drive_b, drive.manifest

For tests without bags: `render_frame(world, pose, conditions)` (see `make_world`, `drive_plan`).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import shutil
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .camera import DriveProfile, GeoFrame, Intrinsics, Pose, drive_poses, intrinsics_for
from .render import render_frame
from .scene import World, build_world
from .weather import DUSK_DRIZZLE, OVERCAST_NOON, Conditions, lighting
from .writer import TOPIC_FIX, TOPIC_IMAGE, TOPIC_INFO, TOPIC_ODOM, fixes_for, write_drive

GENERATOR_VERSION = "1"
RENDER_THREADS = 2
DRIVE_NAMES = ("drive_a", "drive_b")

__all__ = [
    "DRIVE_NAMES",
    "GENERATOR_VERSION",
    "Conditions",
    "DriveProfile",
    "DriveSettings",
    "GeoFrame",
    "Intrinsics",
    "Pose",
    "SampleDrive",
    "World",
    "drive_plan",
    "generate_sample_drive",
    "intrinsics_for",
    "make_world",
    "render_frame",
]


@dataclass(frozen=True)
class DriveSettings:
    """Everything that makes one drive differ from the other."""

    name: str
    profile: DriveProfile
    conditions: Conditions
    start_utc: str  # ISO 8601, the first frame's stamp
    gps_sigma_m: float

    @property
    def start_ns(self) -> int:
        stamp = dt.datetime.fromisoformat(self.start_utc.replace("Z", "+00:00"))
        return int(stamp.timestamp()) * 1_000_000_000

    def describe(self) -> dict:
        return {
            "conditions": self.conditions.name,
            "scene_variant": self.conditions.variant,
            "start_utc": self.start_utc,
            "gps_sigma_m": self.gps_sigma_m,
            "profile": asdict(self.profile),
        }


DRIVE_A = DriveSettings(
    name="drive_a",
    profile=DriveProfile(speed_mps=10.0, speed_wobble=0.03, lateral=-1.65, lateral_wobble=0.12, phase=0.0),
    conditions=OVERCAST_NOON,
    start_utc="2024-05-14T10:12:00Z",
    gps_sigma_m=0.25,
)
DRIVE_B = DriveSettings(
    name="drive_b",
    profile=DriveProfile(speed_mps=9.0, speed_wobble=0.06, start_x=1.5, lateral=-1.35, lateral_wobble=0.25,
                         yaw_bias_deg=0.6, pitch_deg=1.3, phase=1.3),
    conditions=DUSK_DRIZZLE,
    start_utc="2024-10-08T16:05:00Z",
    gps_sigma_m=1.0,
)
GEO = GeoFrame()


@dataclass
class SampleDrive:
    """Where a generated sample drive lives, and its manifest."""

    root: Path
    manifest: dict
    regenerated: bool
    seconds: float = 0.0  # generation wall time (0 when reused)
    bags: dict[str, Path] = field(default_factory=dict)

    @property
    def drive_a(self) -> Path:
        return self.bags["drive_a"]

    @property
    def drive_b(self) -> Path:
        return self.bags["drive_b"]


def drive_plan(frames: int, rate_hz: float = 10.0) -> dict[str, tuple[DriveSettings, list[Pose]]]:
    """Settings and camera poses of both drives."""
    return {s.name: (s, drive_poses(s.profile, frames, rate_hz)) for s in (DRIVE_A, DRIVE_B)}


def make_world(seed: int, size: tuple[int, int], plan: dict[str, tuple[DriveSettings, list[Pose]]]) -> World:
    """The one world both drives of `plan` see (textures sized for `size`)."""
    xs = [p.x for _, poses in plan.values() for p in poses]
    return build_world(seed, intrinsics_for(size), min(xs), max(xs))


def _manifest(seed: int, frames: int, size: tuple[int, int], rate_hz: float) -> dict:
    plan_settings = {s.name: s.describe() for s in (DRIVE_A, DRIVE_B)}
    return {
        "generator": "refscale_model.sample_drive",
        "version": GENERATOR_VERSION,
        "seed": seed,
        "frames": frames,
        "size": [int(size[0]), int(size[1])],
        "rate_hz": rate_hz,
        "geo": asdict(GEO),
        "topics": {"image": TOPIC_IMAGE, "camera_info": TOPIC_INFO, "fix": TOPIC_FIX, "odometry": TOPIC_ODOM},
        "drives": {name: {"bag": name, **desc} for name, desc in plan_settings.items()},
    }


def _existing(out: Path, expected: dict) -> dict | None:
    """The manifest of a complete earlier run with the same parameters, else None."""
    try:
        found = json.loads((out / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if {k: v for k, v in found.items() if k != "outputs"} != expected:
        return None
    if not all((out / name / "metadata.yaml").is_file() for name in DRIVE_NAMES):
        return None
    return found


def _own_output(bag: Path) -> bool:
    """True for a bag directory this generator wrote: only its metadata.yaml and .mcap files.

    Anything else in DIR/drive_a (a user's file, a folder, another tool's bag) makes `generate_sample_drive`
    refuse to replace it without `force`.
    """
    if bag.is_symlink() or not bag.is_dir():
        return False
    entries = list(bag.iterdir())
    return any(p.name == "metadata.yaml" for p in entries) and all(
        p.is_file() and not p.is_symlink()
        and (p.name == "metadata.yaml" or (p.name.startswith(f"{bag.name}_") and p.name.endswith(".mcap")))
        for p in entries
    )


def generate_sample_drive(
    out_dir: str | Path,
    frames: int = 200,
    size: tuple[int, int] = (1280, 720),
    rate_hz: float = 10.0,
    seed: int = 0,
    force: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
) -> SampleDrive:
    """Generate (or reuse) DIR/drive_a, DIR/drive_b (rosbag2 bags) and DIR/manifest.json.

    A rerun with the same arguments and generator version reuses the output unless `force`.
    `progress(drive, done, total)` is called after each frame.
    """
    if frames < 1 or size[0] < 16 or size[1] < 16 or rate_hz <= 0 or seed < 0:
        raise ValueError(f"bad sample-drive parameters: frames={frames} size={size} rate_hz={rate_hz} seed={seed}")
    out = Path(out_dir)
    expected = _manifest(seed, frames, size, rate_hz)
    bags = {name: out / name for name in DRIVE_NAMES}
    if not force and (found := _existing(out, expected)) is not None:
        return SampleDrive(out, found, regenerated=False, bags=bags)
    if not force:
        for path in bags.values():
            if (path.exists() or path.is_symlink()) and not _own_output(path):
                raise ValueError(
                    f"{path} exists and is not an earlier sample-drive bag; not replacing it (use --force)"
                )
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    (out / "manifest.json").unlink(missing_ok=True)  # invalid until every bag is complete
    plan = drive_plan(frames, rate_hz)
    world = make_world(seed, size, plan)
    outputs = {}
    for name, (settings, poses) in plan.items():
        outputs[name] = _write_one(out, world, settings, poses, seed, rate_hz, progress)
    manifest = {**expected, "outputs": outputs}
    tmp = out / ".manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    tmp.replace(out / "manifest.json")
    return SampleDrive(out, manifest, regenerated=True, seconds=time.perf_counter() - t0, bags=bags)


def _rendered(world: World, poses: list[Pose], cond: Conditions, workers: int = RENDER_THREADS) -> Iterator[np.ndarray]:
    """Frames in order, rendered a few ahead on worker threads (OpenCV releases the GIL).

    A small window bounds memory; results do not depend on scheduling.
    """
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque[Future[np.ndarray]] = deque()
        for pose in poses:
            pending.append(pool.submit(render_frame, world, pose, cond))
            if len(pending) > workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _write_one(
    out: Path,
    world: World,
    settings: DriveSettings,
    poses: list[Pose],
    seed: int,
    rate_hz: float,
    progress: Callable[[str, int, int], None] | None,
) -> dict:
    """Render and write one drive into a temporary directory, then move it into place."""
    rng = np.random.default_rng([seed, DRIVE_NAMES.index(settings.name), 0x6E55])
    fixes = fixes_for(poses, GEO, settings.start_ns, rate_hz, settings.gps_sigma_m, rng)
    # Written under a hidden parent with its final name (the .mcap files are named after the bag).
    final, tmp = out / settings.name, out / ".partial" / settings.name
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)

    def frames() -> Iterator[np.ndarray]:
        lighting(world, settings.conditions)  # bake once, before the render threads share it
        yield from _rendered(world, poses, settings.conditions)

    meta = {"drive": settings.name, "conditions": settings.conditions.name, "seed": str(seed),
            "generator_version": GENERATOR_VERSION}
    report = None if progress is None else (lambda n: progress(settings.name, n, len(poses)))
    count = write_drive(tmp, world.k, fixes, frames(), meta, report)
    shutil.rmtree(final, ignore_errors=True)
    tmp.replace(final)
    shutil.rmtree(tmp.parent, ignore_errors=True)
    length = math.hypot(poses[-1].x - poses[0].x, poses[-1].y - poses[0].y)
    return {"frames": count, "route_length_m": round(length, 3),
            "first_fix": [round(fixes[0].lat, 7), round(fixes[0].lon, 7)],
            "last_fix": [round(fixes[-1].lat, 7), round(fixes[-1].lon, 7)]}
