"""Bulk imports into a reference cache: a folder of images with a pose CSV, or a raw ROS 2 bag.

A bag's keyframes are taken every N metres along the drive's track (NavSatFix or Odometry,
interpolated at each image's stamp by `refscale_model.geo.Track`); see docs/reference-cache.md.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from refscale_model.bags import bag_files, msgs, read_messages
from refscale_model.geo import Track, haversine_m, navsatfix_position, yaw_to_heading_deg
from refscale_model.refcache.files import check_reference_size
from refscale_model.refcache.prepared import prepare_reference
from refscale_model.refcache.store import ReferenceCache
from refscale_model.utils import progress_bar


@dataclass
class ImportReport:
    """What `build_from_bag` / `add_images` did."""

    added: int = 0
    skipped_existing: int = 0
    images_seen: int = 0
    no_pose: int = 0
    bad_images: int = 0
    degenerate: int = 0
    """Images refused as references (too small or too elongated; see `files.check_reference_size`)."""
    poses: int = 0
    no_fix: int = 0
    distance_m: float = 0.0
    notes: list[str] = field(default_factory=list)


def add_images(
    cache: ReferenceCache,
    images_dir: str | Path,
    poses_csv: str | Path,
    *,
    camera: str = "camera",
    route: str = "default",
    drive: str | None = None,
    progress: bool = False,
) -> ImportReport:
    """Import a folder of images with a pose CSV.

    CSV columns: `file` (relative to `images_dir`), then either `lat,lon` or `x,y` (metres, stored as
    pseudo lat/lon), optional `heading_deg`, `stamp_ns`, `camera`, `route`, `drive`. Rows without a
    stamp get their row number, so re-importing the same CSV adds nothing new.
    """
    images_dir = Path(images_dir)
    with open(poses_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    report = ImportReport()
    default_drive = drive or Path(poses_csv).stem
    for i, row in enumerate(progress_bar(rows, progress, len(rows), "add-images")):
        report.images_seen += 1
        lat, lon = _csv_position(cache, row)
        heading = float(row["heading_deg"]) if row.get("heading_deg") not in (None, "") else None
        stamp = int(row["stamp_ns"]) if row.get("stamp_ns") not in (None, "") else i
        cam, rte, drv = row.get("camera") or camera, row.get("route") or route, row.get("drive") or default_drive
        if cache.contains(drv, cam, stamp):
            report.skipped_existing += 1
            continue
        bgr = cv2.imread(str(images_dir / row["file"]), cv2.IMREAD_COLOR)
        if bgr is None:
            report.bad_images += 1
            report.notes.append(f"cannot read {images_dir / row['file']}")
            continue
        if (why := check_reference_size(*bgr.shape[:2])) is not None:
            report.degenerate += 1
            report.notes.append(f"not a usable reference: {images_dir / row['file']}: {why}")
            continue
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        prepare_reference(cache.add(rgb, cam, lat, lon, heading, stamp, rte, drv), rgb=rgb)
        report.added += 1
    return report


def _csv_position(cache: ReferenceCache, row: dict[str, str]) -> tuple[float, float]:
    if row.get("lat") not in (None, "") and row.get("lon") not in (None, ""):
        return float(row["lat"]), float(row["lon"])
    if row.get("x") not in (None, "") and row.get("y") not in (None, ""):
        return cache.pseudo_latlon(float(row["x"]), float(row["y"]))
    raise ValueError(f"pose row for {row.get('file')!r} has neither lat/lon nor x/y")


def _gps_track(bag: Path, topic: str, report: ImportReport) -> Track:
    points: dict[int, tuple[float, float]] = {}
    for _topic, log_ns, msg in read_messages(bag, [topic]):
        pos = navsatfix_position(msg)
        if pos is None:
            report.no_fix += 1
            continue
        points[msgs.stamp_or(msg, log_ns)] = pos
    t = np.array(sorted(points), dtype=np.int64)
    lat = np.array([points[k][0] for k in t.tolist()], dtype=np.float64)
    lon = np.array([points[k][1] for k in t.tolist()], dtype=np.float64)
    steps = [haversine_m(lat[i - 1], lon[i - 1], lat[i], lon[i]) for i in range(1, len(t))]
    odo = np.concatenate([[0.0], np.cumsum(steps)]) if len(t) else np.zeros(0)
    report.poses = len(t)
    return Track(t, lat, lon, odo, None)


def _odom_track(bag: Path, topic: str, cache: ReferenceCache, report: ImportReport) -> Track:
    points: dict[int, tuple[float, float, float]] = {}
    for _topic, log_ns, msg in read_messages(bag, [topic]):
        pos = msgs.field(msgs.field(msgs.field(msg, "pose"), "pose"), "position")
        x, y = float(msgs.field(pos, "x")), float(msgs.field(pos, "y"))
        yaw = msgs.yaw_from_odometry(msg)
        if math.isfinite(x) and math.isfinite(y):
            points[msgs.stamp_or(msg, log_ns)] = (x, y, yaw_to_heading_deg(yaw))
    t = np.array(sorted(points), dtype=np.int64)
    xyh = np.array([points[k] for k in t.tolist()], dtype=np.float64).reshape(-1, 3)
    latlon = np.array([cache.pseudo_latlon(x, y) for x, y in xyh[:, :2]], dtype=np.float64).reshape(-1, 2)
    odo = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(xyh[:, :2], axis=0).T))]) if len(t) else np.zeros(0)
    report.poses = len(t)
    return Track(t, latlon[:, 0], latlon[:, 1], odo, xyh[:, 2])


def _count_topic(bag: Path, topic: str) -> int | None:
    """Messages on `topic` from the MCAP summaries (for the progress bar); None if unknown."""
    from mcap.reader import make_reader

    total = 0
    try:
        for f in bag_files(bag):
            with open(f, "rb") as fh:
                summary = make_reader(fh).get_summary()
            if summary is None or summary.statistics is None:
                return None
            ids = [cid for cid, ch in summary.channels.items() if ch.topic == topic]
            total += sum(summary.statistics.channel_message_counts.get(c, 0) for c in ids)
    except Exception:  # noqa: BLE001 - a truncated bag has no summary; the bar then just counts
        return None
    return total


DEFAULT_EVERY_M = 2.0
"""Keyframe spacing of `build_from_bag` and `refscale cache build`. A reference a few metres from the
frame sees the same view at nearly the same scale; at 10 m the view has moved on and the reference pays
little. With the recorder choosing among the nearest entries by registration (`pipeline.reference_choice`),
denser caches kept paying on the sample drive (RefScale + WebP against the no-ref INN, 6 frames:
10 m −0.8 %, 2 m −12.0 %, 1 m −14.5 % BD-rate; docs/reference-cache.md, "Keyframe spacing"). 2 m
keeps the storage at ~0.7 GB per km per 720p camera (lossless PNG)."""


def build_from_bag(
    cache: ReferenceCache,
    bag: str | Path,
    camera_topic: str,
    *,
    gps_topic: str | None = None,
    odom_topic: str | None = None,
    every_m: float = DEFAULT_EVERY_M,
    route: str = "default",
    drive: str | None = None,
    camera: str | None = None,
    max_pose_gap_s: float = 2.5,
    progress: bool = False,
) -> ImportReport:
    """Take a keyframe every `every_m` metres of travel from a raw ROS 2 bag (.mcap file or bag dir).

    Positions come from NavSatFix (`gps_topic`; messages without a fix are ignored, heading is the
    course over ground) or Odometry (`odom_topic`; x/y stored as pseudo lat/lon, heading from yaw),
    interpolated at each image's header stamp. Images further than `max_pose_gap_s` from a pose
    are skipped. Every keyframe is committed on its own, so an interrupted build leaves a
    consistent cache and re-running it resumes (entries already present are skipped).
    """
    from refscale_model.io.rosimg import ImageDecodeError, image_from_msg

    if (gps_topic is None) == (odom_topic is None):
        raise ValueError("give exactly one of gps_topic or odom_topic")
    if every_m <= 0:
        raise ValueError("every_m must be > 0")
    bag = Path(bag)
    report = ImportReport()
    track = _gps_track(bag, gps_topic, report) if gps_topic else _odom_track(bag, str(odom_topic), cache, report)
    if len(track.t_ns) == 0:
        report.notes.append("no usable position in the bag; nothing added")
        return report
    report.distance_m = float(track.odometer_m[-1])
    drive = drive or (bag.stem if bag.is_file() else bag.name)
    camera = camera or camera_topic
    max_gap = int(max_pose_gap_s * 1e9)
    next_odo: float | None = None
    messages = read_messages(bag, [camera_topic])
    for _topic, log_ns, msg in progress_bar(messages, progress, _count_topic(bag, camera_topic), "cache build"):
        report.images_seen += 1
        stamp = msgs.stamp_or(msg, log_ns)
        pose = track.at(stamp, max_gap)
        if pose is None:
            report.no_pose += 1
            continue
        lat, lon, odo, heading = pose
        if next_odo is not None and odo < next_odo - 1e-3:  # mm tolerance: float sums of exact steps
            continue
        if cache.contains(drive, camera, stamp):
            report.skipped_existing += 1
        else:
            try:
                rgb = image_from_msg(msg)
            except ImageDecodeError as exc:
                report.bad_images += 1
                report.notes.append(f"frame at {stamp}: {exc}")
                continue
            if (why := check_reference_size(*rgb.shape[:2])) is not None:
                report.degenerate += 1
                report.notes.append(f"frame at {stamp}: not a usable reference: {why}")
                continue
            entry = cache.add(rgb, camera, lat, lon, heading, stamp, route, drive)
            prepare_reference(entry, rgb=rgb)  # the car then decodes only the reference it uses
            report.added += 1
        next_odo = odo + every_m
    return report
