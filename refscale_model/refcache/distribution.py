"""Cache distribution: cut a car-sized cache from the master, fold a car's drives back, check a bag's needs.

* `export_cache` copies the master entries inside a lat/lon box or near a track (a bag's GPS fixes or
  a CSV of lat/lon) into a new cache, **keeping their ids**, so bags encoded on the car name the
  same (id, sha256) the master holds.
* `merge_cache` folds a car cache into the master: an entry whose image hash the master already
  holds is a duplicate (skipped); an entry whose (drive, camera, stamp) the master holds with
  another hash is a conflict (reported, never overwritten); a new entry keeps its id when the
  master's id is free, else it gets a new id (reported: frames naming the car's id resolve it by
  sha256, see `resolve`).
* `check_bag` lists every reference a RefScale bag needs and whether a cache holds it with the
  right hash (file rehashed, so a tampered image is caught before any compute is spent).

Rows are copied with their ids through the cache's own connection (same package, one lock).
"""

from __future__ import annotations

import csv
import hashlib
import math
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from refscale_model.refcache.errors import CacheError, ReferenceMismatchError, ReferenceMissingError
from refscale_model.refcache.files import write_atomic
from refscale_model.refcache.store import Reference, ReferenceCache
from refscale_model.utils import hash_names

EARTH_RADIUS_M = 6_371_008.8


# -- which references a bag needs ---------------------------------------------------------------


@dataclass
class NeededReference:
    id: int
    sha256: str
    frames: int
    status: str = "ok"  # ok | ok_by_sha256 | missing | mismatch | corrupt
    detail: str = ""

    @property
    def usable(self) -> bool:
        return self.status in ("ok", "ok_by_sha256")


@dataclass
class CheckBagReport:
    bag: str
    frames: int = 0
    frames_without_reference: int = 0
    needed: list[NeededReference] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def bad(self) -> list[NeededReference]:
        return [n for n in self.needed if not n.usable]

    @property
    def ok(self) -> bool:
        return not self.bad and not self.problems


def needed_references(bag: str | Path) -> tuple[Counter[tuple[int, str]], int, int, list[str]]:
    """(frames per (id, sha256), frames, frames without reference, read problems) of a RefScale bag."""
    from refscale_model.bags import BagReader, metadata_of
    from refscale_model.bags import refscale_format as fmt

    reader = BagReader(bag)
    context = fmt.frame_contexts(metadata_of(bag))
    counts: Counter[tuple[int, str]] = Counter()
    frames = without = 0
    for raw in reader.raw_messages():
        parts = fmt.split_topic(raw.topic)
        if parts is None or parts[1] != "meta":
            continue
        frames += 1
        try:
            meta = fmt.meta_from_msg(reader.decode(raw), context(parts[0]))
        except (ValueError, KeyError, AttributeError):
            without += 1
            continue
        if not meta.has_smap or not meta.reference_sha256:
            without += 1
            continue
        counts[(int(meta.reference_id), meta.reference_sha256)] += 1
    return counts, frames, without, list(reader.problems)


def resolve(cache: ReferenceCache, id: int, sha256: str) -> Reference:  # noqa: A002 - the wire format calls it id
    """The reference a frame names: by id and hash, else by hash alone (ids diverged after a merge)."""
    try:
        return cache.get(id, sha256)
    except (ReferenceMissingError, ReferenceMismatchError):
        for ref in cache.by_sha256(sha256):
            if ref.path.is_file():
                return ref
        raise


def check_bag(bag: str | Path, cache: ReferenceCache) -> CheckBagReport:
    """Every reference `bag` needs, with whether `cache` holds it with the right (rehashed) content."""
    counts, frames, without, problems = needed_references(bag)
    report = CheckBagReport(str(bag), frames, without, problems=problems)
    for (rid, sha), n in sorted(counts.items()):
        need = NeededReference(rid, sha, n)
        try:
            ref = cache.get(rid, sha)
        except ReferenceMismatchError as exc:
            need.status, need.detail = "mismatch", str(exc)
            ref = None
        except ReferenceMissingError as exc:
            need.status, need.detail = "missing", str(exc)
            ref = None
        if ref is None:
            alt = [r for r in cache.by_sha256(sha) if r.path.is_file()]
            if alt:
                ref = alt[0]
                need.status, need.detail = "ok_by_sha256", f"held as id {ref.id} (ids diverged)"
        if ref is not None:
            actual = _file_sha256(ref.path)
            if actual is None or not hash_names(sha, actual):  # a short frame record names it by a prefix
                need.status, need.detail = "corrupt", f"image file {ref.path} hashes to {actual}"
        report.needed.append(need)
    return report


def _file_sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


# -- export ---------------------------------------------------------------------------------------


@dataclass
class ExportReport:
    selected: int = 0
    copied: int = 0
    images: int = 0
    skipped_bad: list[str] = field(default_factory=list)


def track_from_csv(path: str | Path) -> np.ndarray:
    """N×2 lat/lon of a CSV with `lat` and `lon` columns."""
    with open(path, newline="") as fh:
        rows = [(float(r["lat"]), float(r["lon"])) for r in csv.DictReader(fh)]
    if not rows:
        raise ValueError(f"{path}: no lat/lon rows")
    return np.asarray(rows, dtype=np.float64)


def track_from_bag(path: str | Path) -> np.ndarray:
    """N×2 lat/lon of every NavSatFix with a fix in a bag (raw or RefScale)."""
    from refscale_model.bags import msgs, read_messages, topics_of
    from refscale_model.geo import navsatfix_position

    fix_topics = [t for t, ty in topics_of(path).items() if ty == msgs.NAV_SAT_FIX]
    pts = [p for _t, _lt, m in read_messages(path, fix_topics) if (p := navsatfix_position(m)) is not None]
    if not pts:
        raise ValueError(f"{path}: no NavSatFix positions (topics {fix_topics or 'none'})")
    return np.asarray(pts, dtype=np.float64)


def _near_track(lat: np.ndarray, lon: np.ndarray, track: np.ndarray, radius_m: float) -> np.ndarray:
    """Mask of points within `radius_m` (haversine) of any track point."""
    keep = np.zeros(lat.shape, bool)
    la, lo = np.radians(lat), np.radians(lon)
    for t_lat, t_lon in np.radians(track):
        a = np.sin((la - t_lat) / 2) ** 2 + np.cos(la) * math.cos(t_lat) * np.sin((lo - t_lon) / 2) ** 2
        keep |= 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.minimum(1.0, a))) <= radius_m
    return keep


def select_entries(
    cache: ReferenceCache,
    *,
    bbox: tuple[float, float, float, float] | None = None,
    track: np.ndarray | None = None,
    radius_m: float = 50.0,
) -> list[Reference]:
    """Entries inside `bbox` (min lat, min lon, max lat, max lon) and/or within `radius_m` of `track`."""
    if bbox is None and track is None:
        raise ValueError("give a bounding box or a track")
    refs = list(cache.entries())
    if not refs:
        return []
    lat = np.array([r.lat for r in refs])
    lon = np.array([r.lon for r in refs])
    keep = np.ones(lat.shape, bool)
    if bbox is not None:
        lat0, lon0, lat1, lon1 = bbox
        if lat0 > lat1 or lon0 > lon1:
            raise ValueError(f"bbox {bbox}: need MINLAT,MINLON,MAXLAT,MAXLON")
        keep &= (lat >= lat0) & (lat <= lat1) & (lon >= lon0) & (lon <= lon1)
    if track is not None:
        keep &= _near_track(lat, lon, track, radius_m)
    return [r for r, k in zip(refs, keep, strict=True) if k]


def _insert(dst: ReferenceCache, ref: Reference, rid: int | None) -> int:
    """Insert `ref`'s row into `dst` with id `rid` (None: the next free id); inside `dst.batch()`."""
    heading = None if math.isnan(ref.heading_deg) else ref.heading_deg
    row = (ref.sha256, ref.route, ref.drive, ref.camera, ref.stamp_ns, ref.lat, ref.lon, heading, ref.width,
           ref.height, time.time_ns())
    conn = dst._conn  # noqa: SLF001 - same package: copying rows with their ids needs the raw connection
    cur = conn.execute(
        "INSERT INTO refs (id, sha256, route, drive, camera, stamp_ns, lat, lon, heading_deg, width, height,"
        " added_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (rid, *row),
    )
    new_id = int(cur.lastrowid)
    conn.execute(
        "INSERT INTO refs_pos (id, min_lat, max_lat, min_lon, max_lon) VALUES (?, ?, ?, ?, ?)",
        (new_id, ref.lat, ref.lat, ref.lon, ref.lon),
    )
    return new_id


def _copy_image(src: Reference, dst: ReferenceCache) -> bool:
    """Copy an image file (content-addressed: an existing good copy is kept). False if the source is bad."""
    target = dst.image_path(src.sha256)
    if _file_sha256(target) == src.sha256:
        _copy_stored_features(src, target.parent)
        return True
    try:
        data = src.path.read_bytes()
    except FileNotFoundError:
        return False
    if hashlib.sha256(data).hexdigest() != src.sha256:
        return False
    write_atomic(target, data)
    _copy_stored_features(src, target.parent)
    return True


def _copy_stored_features(src: Reference, folder: Path) -> None:
    """The image's stored registration features (`refcache.prepared`) go along, so the car that gets the
    cache ranks references without decoding them; derived data, checked against the image when read."""
    from refscale_model.refcache.prepared import stored_files

    for path in stored_files(src):
        if not (folder / path.name).is_file():
            write_atomic(folder / path.name, path.read_bytes())


def export_cache(master: ReferenceCache, out: str | Path, refs: Iterable[Reference]) -> ExportReport:
    """Copy `refs` (from `master`) with their ids into the cache at `out` (created; may already hold some)."""
    report = ExportReport()
    refs = list(refs)
    report.selected = len(refs)
    with ReferenceCache.open(out, create=True, odom_origin=master.odom_origin) as dst, dst.batch():
        for ref in refs:
            if not _copy_image(ref, dst):
                report.skipped_bad.append(f"id {ref.id}: image file missing or does not hash to {ref.sha256}")
                continue
            if dst.contains(ref.drive, ref.camera, ref.stamp_ns):
                continue
            _insert(dst, ref, ref.id)
            report.copied += 1
        report.images = len({r.sha256 for r in dst.entries()})
    return report


# -- merge ----------------------------------------------------------------------------------------


@dataclass
class MergeReport:
    seen: int = 0
    added: int = 0
    duplicates: int = 0
    renumbered: list[tuple[int, int]] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    bad_source: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.conflicts and not self.bad_source


def merge_cache(src: ReferenceCache, master: ReferenceCache) -> MergeReport:
    """Fold `src` into `master`: dedupe by content hash, never overwrite a differing entry (see module doc)."""
    if master.readonly:
        raise CacheError("master cache opened read-only")
    report = MergeReport()
    conn = master._conn  # noqa: SLF001
    with master.batch():
        for ref in src.entries():
            report.seen += 1
            have = conn.execute(
                "SELECT id, sha256 FROM refs WHERE drive = ? AND camera = ? AND stamp_ns = ?",
                (ref.drive, ref.camera, ref.stamp_ns),
            ).fetchone()
            if have is not None:
                if have[1] == ref.sha256:
                    report.duplicates += 1
                else:
                    report.conflicts.append(
                        f"{ref.drive}/{ref.camera}@{ref.stamp_ns}: source id {ref.id} sha256 {ref.sha256}, "
                        f"master id {have[0]} holds sha256 {have[1]} (kept)"
                    )
                continue
            if conn.execute("SELECT 1 FROM refs WHERE sha256 = ? LIMIT 1", (ref.sha256,)).fetchone():
                report.duplicates += 1  # same pixels already in the master (content dedupe)
                continue
            if not _copy_image(ref, master):
                report.bad_source.append(f"id {ref.id}: image file missing or does not hash to {ref.sha256}")
                continue
            taken = conn.execute("SELECT 1 FROM refs WHERE id = ?", (ref.id,)).fetchone() is not None
            new_id = _insert(master, ref, None if taken else ref.id)
            if new_id != ref.id:
                report.renumbered.append((ref.id, new_id))
            report.added += 1
    return report
