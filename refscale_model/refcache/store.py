"""Route-keyed reference cache: lossless reference images indexed by position, on disk.

Why: RefScale only pays off when the car finds a reference of the same place. The cache is a
directory that the car and the offboard side both hold (the offboard copy is a byte copy)::

    CACHE/index.sqlite          SQLite (WAL): table `refs`, R*Tree `refs_pos`, table `meta`
    CACHE/images/ab/<sha256>.png   every reference image, lossless PNG, named by its file's sha256

Every encoded frame names its reference by id **and** sha256; `get` and `Reference.load_rgb`
refuse a mismatch (`ReferenceMismatchError`) instead of reconstructing against the wrong pixels.

Positions are WGS84 latitude/longitude in degrees; the R*Tree holds a degree box per entry and a
lookup filters its candidates by exact haversine distance and heading. Drives with odometry but
no GPS store their local metric x/y (east/north, metres) as *pseudo* lat/lon around the cache's
odometry origin (default 0°N 0°E, see `pseudo_latlon`): the conversion is locally isometric, so
radius lookups keep working, but such entries only match queries made in the same odometry frame.

Headings are compass degrees (0 = north, clockwise); NaN means unknown and matches any heading.

Crash safety: an image file is written to a temporary name, fsynced and renamed before its row is
committed, so the index never names a missing file; a crash can at most leave an unreferenced
image (reported by `verify` as an orphan, removed by `remove_orphans`).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import math
import os
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

SCHEMA_VERSION = "1"
INDEX_NAME = "index.sqlite"
IMAGES_DIR = "images"
EARTH_RADIUS_M = 6_371_008.8
_M_PER_DEG_LAT = math.pi * EARTH_RADIUS_M / 180.0
_PNG_LEVEL = 3  # lossless either way; 3 is ~3× faster to write than 9 for ~5 % more bytes

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS refs (
    id INTEGER PRIMARY KEY,
    sha256 TEXT NOT NULL,
    route TEXT NOT NULL,
    drive TEXT NOT NULL,
    camera TEXT NOT NULL,
    stamp_ns INTEGER NOT NULL,
    lat REAL NOT NULL,
    lon REAL NOT NULL,
    heading_deg REAL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    added_ns INTEGER NOT NULL,
    UNIQUE (drive, camera, stamp_ns)
);
CREATE INDEX IF NOT EXISTS refs_sha256 ON refs (sha256);
CREATE VIRTUAL TABLE IF NOT EXISTS refs_pos USING rtree (id, min_lat, max_lat, min_lon, max_lon);
"""
_COLUMNS = "id, sha256, route, drive, camera, stamp_ns, lat, lon, heading_deg, width, height"


class CacheError(Exception):
    """Base of every reference-cache error."""


class ReferenceMissingError(CacheError):
    """The named reference (id, or its image file) is not in this cache."""


class CacheNotFoundError(ReferenceMissingError, FileNotFoundError):
    """No cache index at the given directory: a missing file to every caller that reports those."""


class ReferenceMismatchError(CacheError):
    """The reference exists but its content hash differs from what was asked for / recorded."""


@dataclass(frozen=True)
class Reference:
    """One cached reference image and where/when it was taken."""

    id: int
    sha256: str
    route: str
    drive: str
    camera: str
    stamp_ns: int
    lat: float
    lon: float
    heading_deg: float
    width: int
    height: int
    path: Path

    def load_rgb(self) -> np.ndarray:
        """Read the image as RGB uint8 H×W×3, after checking the file still hashes to `sha256`."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError as exc:
            raise ReferenceMissingError(f"reference {self.id}: image file {self.path} is missing") from exc
        actual = hashlib.sha256(data).hexdigest()
        if actual != self.sha256:
            raise ReferenceMismatchError(
                f"reference {self.id}: {self.path.name} hashes to {actual}, expected {self.sha256}"
            )
        return _decode_png(data, self.path)


@dataclass
class VerifyReport:
    """Outcome of `ReferenceCache.verify`: `ok` is False if anything the index names is unusable."""

    entries: int = 0
    files_checked: int = 0
    missing: list[tuple[int, str]] = field(default_factory=list)
    corrupt: list[tuple[int, str, str]] = field(default_factory=list)
    bad_image: list[tuple[int, str, str]] = field(default_factory=list)
    index_errors: list[str] = field(default_factory=list)
    orphans: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.corrupt or self.bad_image or self.index_errors)


@dataclass(frozen=True)
class CacheInfo:
    """Summary printed by `refscale cache info`."""

    path: Path
    schema_version: str
    journal_mode: str
    entries: int
    images: int
    image_bytes: int
    cameras: dict[str, int]
    routes: dict[str, int]
    drives: int
    lat_range: tuple[float, float] | None
    lon_range: tuple[float, float] | None
    stamp_range_ns: tuple[int, int] | None
    odom_origin: tuple[float, float]


# -- geometry ------------------------------------------------------------------------------------


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2.0 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def bearing_deg(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Initial compass bearing (0 = north, clockwise) from point 1 to point 2."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dl = math.radians(lon2 - lon1)
    x = math.sin(dl) * math.cos(p2)
    y = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return math.degrees(math.atan2(x, y)) % 360.0


def heading_diff_deg(a: float, b: float) -> float:
    """Smallest absolute angle between two headings (0..180)."""
    d = abs((a - b) % 360.0)
    return min(d, 360.0 - d)


def pseudo_latlon(x_m: float, y_m: float, origin: tuple[float, float] = (0.0, 0.0)) -> tuple[float, float]:
    """Local east/north metres -> pseudo lat/lon around `origin` (equirectangular, locally isometric)."""
    lat0, lon0 = origin
    lat = lat0 + y_m / _M_PER_DEG_LAT
    lon = lon0 + x_m / (_M_PER_DEG_LAT * max(1e-9, math.cos(math.radians(lat0))))
    return lat, lon


def yaw_to_heading_deg(yaw_rad: float) -> float:
    """ENU yaw (0 = east, counter-clockwise, ROS convention) -> compass heading degrees."""
    return (90.0 - math.degrees(yaw_rad)) % 360.0


def navsatfix_position(msg: Any) -> tuple[float, float] | None:
    """(lat, lon) of a sensor_msgs/NavSatFix, or None when it has no fix or no finite position.

    Works on rclpy, mcap_ros2-decoded and dict messages.
    """
    status = _field(_field(msg, "status"), "status")
    if status is not None and int(status) < 0:  # STATUS_NO_FIX = -1
        return None
    lat, lon = _field(msg, "latitude"), _field(msg, "longitude")
    if lat is None or lon is None:
        return None
    lat, lon = float(lat), float(lon)
    if not (math.isfinite(lat) and math.isfinite(lon)) or abs(lat) > 90.0 or abs(lon) > 180.0:
        return None
    return lat, lon


def _field(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def _degree_boxes(lat: float, lon: float, radius_m: float) -> list[tuple[float, float, float, float]]:
    """(min_lat, max_lat, min_lon, max_lon) boxes covering a circle; split at the antimeridian."""
    dlat = radius_m / _M_PER_DEG_LAT
    lo_lat, hi_lat = lat - dlat, lat + dlat
    cos_lat = math.cos(math.radians(min(89.999, max(abs(lo_lat), abs(hi_lat)))))
    dlon = radius_m / (_M_PER_DEG_LAT * cos_lat)
    if lo_lat <= -90.0 or hi_lat >= 90.0 or dlon >= 180.0:
        return [(lo_lat, hi_lat, -180.0, 180.0)]
    lo_lon, hi_lon = lon - dlon, lon + dlon
    if lo_lon < -180.0:
        return [(lo_lat, hi_lat, lo_lon + 360.0, 180.0), (lo_lat, hi_lat, -180.0, hi_lon)]
    if hi_lon > 180.0:
        return [(lo_lat, hi_lat, lo_lon, 180.0), (lo_lat, hi_lat, -180.0, hi_lon - 360.0)]
    return [(lo_lat, hi_lat, lo_lon, hi_lon)]


# -- images --------------------------------------------------------------------------------------


def _encode_png(image_rgb: np.ndarray) -> bytes:
    if image_rgb.dtype != np.uint8 or image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        raise ValueError(f"reference must be RGB uint8 H×W×3, got {image_rgb.dtype} {image_rgb.shape}")
    ok, buf = cv2.imencode(
        ".png", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, _PNG_LEVEL]
    )
    if not ok:
        raise CacheError("PNG encoding failed")
    return buf.tobytes()


def _decode_png(data: bytes, where: Path) -> np.ndarray:
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ReferenceMismatchError(f"{where} is not a decodable image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _write_atomic(path: Path, data: bytes) -> None:
    """Write, fsync, rename: a reader or a crash never sees a partial image under its final name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".png", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


# -- the cache -----------------------------------------------------------------------------------


class ReferenceCache:
    """A reference cache directory. Use `ReferenceCache.open(dir)`; safe to share between threads.

    Several processes may use one cache: readers never block (WAL), writers wait for each other
    (busy timeout). One connection per instance, serialised by a lock.
    """

    def __init__(self, root: Path, conn: sqlite3.Connection, readonly: bool) -> None:
        self.root = root
        self.readonly = readonly
        self._conn = conn
        self._lock = threading.RLock()
        self._batch_depth = 0
        self.odom_origin = self._read_origin()

    # -- lifecycle
    @classmethod
    def open(
        cls,
        root: str | Path,
        create: bool = False,
        *,
        readonly: bool = False,
        odom_origin: tuple[float, float] | None = None,
        busy_timeout_s: float = 30.0,
    ) -> ReferenceCache:
        """Open (or with `create=True` create) a cache directory.

        `odom_origin` sets the pseudo lat/lon origin of odometry-only drives when creating.
        """
        root = Path(root)
        index = root / INDEX_NAME
        if not index.is_file():
            if not create or readonly:
                raise CacheNotFoundError(f"no reference cache at {root} (missing {INDEX_NAME})")
            (root / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
        if readonly:
            conn = sqlite3.connect(
                f"{index.resolve().as_uri()}?mode=ro",
                uri=True,
                timeout=busy_timeout_s,
                check_same_thread=False,
                isolation_level=None,
            )
        else:
            conn = sqlite3.connect(index, timeout=busy_timeout_s, check_same_thread=False, isolation_level=None)
            _init_schema(conn, odom_origin)
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        version = _meta(conn, "schema_version")
        if version != SCHEMA_VERSION:
            conn.close()
            raise CacheError(f"{index}: unsupported cache schema version {version!r} (expected {SCHEMA_VERSION})")
        return cls(root, conn, readonly)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> ReferenceCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM refs").fetchone()[0])

    # -- writing
    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Group many `add` calls into one transaction (bulk imports; all or nothing on error)."""
        with self._lock:
            outer = self._batch_depth == 0
            if outer:
                self._conn.execute("BEGIN IMMEDIATE")
            self._batch_depth += 1
            try:
                yield
            except BaseException:
                self._batch_depth -= 1
                if outer:
                    self._conn.execute("ROLLBACK")
                raise
            self._batch_depth -= 1
            if outer:
                self._conn.execute("COMMIT")

    def add(
        self,
        image_rgb: np.ndarray,
        camera: str,
        lat: float,
        lon: float,
        heading_deg: float | None,
        stamp_ns: int,
        route: str,
        drive: str,
    ) -> Reference:
        """Store an image and index it; adding the same (drive, camera, stamp_ns) again is a no-op.

        Returns the stored entry (the existing one for a repeated add).
        """
        if self.readonly:
            raise CacheError("cache opened read-only")
        if not (math.isfinite(lat) and math.isfinite(lon)) or abs(lat) > 90.0 or abs(lon) > 180.0:
            raise ValueError(f"invalid position lat={lat} lon={lon}")
        existing = self._find(drive, camera, stamp_ns)
        if existing is not None:
            return existing
        data = _encode_png(image_rgb)
        sha = hashlib.sha256(data).hexdigest()
        path = self.image_path(sha)
        if not path.is_file():
            _write_atomic(path, data)
        heading = None if heading_deg is None or not math.isfinite(heading_deg) else float(heading_deg) % 360.0
        h, w = image_rgb.shape[:2]
        row = (sha, route, drive, camera, int(stamp_ns), float(lat), float(lon), heading, w, h, time.time_ns())
        with self._lock, self._transaction():
            cur = self._conn.execute(
                "INSERT OR IGNORE INTO refs (sha256, route, drive, camera, stamp_ns, lat, lon, heading_deg, width,"
                " height, added_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
            if cur.rowcount == 1:
                self._conn.execute(
                    "INSERT INTO refs_pos (id, min_lat, max_lat, min_lon, max_lon) VALUES (?, ?, ?, ?, ?)",
                    (cur.lastrowid, lat, lat, lon, lon),
                )
        found = self._find(drive, camera, stamp_ns)
        assert found is not None
        return found

    def contains(self, drive: str, camera: str, stamp_ns: int) -> bool:
        """True if this (drive, camera, stamp) is already stored (lets `build` resume cheaply)."""
        return self._find(drive, camera, stamp_ns) is not None

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        if self._batch_depth:
            yield
            return
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    # -- reading
    def image_path(self, sha256: str) -> Path:
        return self.root / IMAGES_DIR / sha256[:2] / f"{sha256}.png"

    def pseudo_latlon(self, x_m: float, y_m: float) -> tuple[float, float]:
        """Odometry x/y (metres, east/north) -> this cache's pseudo lat/lon."""
        return pseudo_latlon(x_m, y_m, self.odom_origin)

    def nearest(
        self,
        camera: str,
        lat: float | None,
        lon: float | None,
        heading_deg: float | None,
        radius_m: float = 15.0,
        heading_tol_deg: float = 30.0,
    ) -> Reference | None:
        """Closest reference of `camera` within `radius_m` whose heading is within `heading_tol_deg`.

        None without a position (no GPS: the encoder runs in no-reference mode) or without a match.
        An unknown heading (None/NaN, on either side) matches any heading. Ties go to the newest.
        """
        if lat is None or lon is None or not (math.isfinite(lat) and math.isfinite(lon)):
            return None
        use_heading = heading_deg is not None and math.isfinite(heading_deg)
        best: tuple[float, int, Reference] | None = None
        for row in self._candidates(camera, lat, lon, radius_m):
            ref = self._reference(row)
            dist = haversine_m(lat, lon, ref.lat, ref.lon)
            if dist > radius_m:
                continue
            if use_heading and math.isfinite(ref.heading_deg):
                if heading_diff_deg(float(heading_deg), ref.heading_deg) > heading_tol_deg:
                    continue
            key = (dist, -ref.stamp_ns)
            if best is None or key < best[:2]:
                best = (dist, -ref.stamp_ns, ref)
        return None if best is None else best[2]

    def _candidates(self, camera: str, lat: float, lon: float, radius_m: float) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = []
        cols = ", ".join(f"r.{c.strip()}" for c in _COLUMNS.split(","))
        with self._lock:
            for lo_lat, hi_lat, lo_lon, hi_lon in _degree_boxes(lat, lon, radius_m):
                rows += self._conn.execute(
                    f"SELECT {cols} FROM refs_pos p JOIN refs r ON r.id = p.id "
                    "WHERE p.max_lat >= ? AND p.min_lat <= ? AND p.max_lon >= ? AND p.min_lon <= ? AND r.camera = ?",
                    (lo_lat, hi_lat, lo_lon, hi_lon, camera),
                ).fetchall()
        return rows

    def get(self, id: int, sha256: str) -> Reference:  # noqa: A002 - the wire format calls it id
        """The reference a frame names. Raises if this cache lacks it or holds other content."""
        with self._lock:
            row = self._conn.execute(f"SELECT {_COLUMNS} FROM refs WHERE id = ?", (int(id),)).fetchone()
        if row is None:
            raise ReferenceMissingError(f"reference id {id} is not in the cache at {self.root}")
        ref = self._reference(row)
        if ref.sha256 != sha256:
            raise ReferenceMismatchError(
                f"reference id {id}: frame expects sha256 {sha256}, cache at {self.root} holds {ref.sha256}"
            )
        if not ref.path.is_file():
            raise ReferenceMissingError(f"reference id {id}: image file {ref.path} is missing")
        return ref

    def by_sha256(self, sha256: str) -> list[Reference]:
        """All entries whose image has this hash (for caches whose ids diverged)."""
        with self._lock:
            rows = self._conn.execute(f"SELECT {_COLUMNS} FROM refs WHERE sha256 = ? ORDER BY id", (sha256,)).fetchall()
        return [self._reference(r) for r in rows]

    def entries(self) -> Iterator[Reference]:
        with self._lock:
            rows = self._conn.execute(f"SELECT {_COLUMNS} FROM refs ORDER BY id").fetchall()
        for r in rows:
            yield self._reference(r)

    # -- maintenance
    def verify(self, *, decode: bool = True, progress: bool = False) -> VerifyReport:
        """Rehash every image the index names; report missing, corrupt and orphaned files.

        With `decode`, also check that the PNG decodes to the recorded size.
        """
        report = VerifyReport()
        report.index_errors = self._index_errors()
        by_sha: dict[str, list[tuple[int, int, int]]] = {}
        with self._lock:
            for rid, sha, w, h in self._conn.execute("SELECT id, sha256, width, height FROM refs ORDER BY id"):
                by_sha.setdefault(sha, []).append((rid, w, h))
                report.entries += 1
        for sha, rows in _progress(by_sha.items(), progress, len(by_sha), "verify"):
            self._verify_file(sha, rows, decode, report)
        known = {self.image_path(sha) for sha in by_sha}
        report.orphans = sorted(p for p in (self.root / IMAGES_DIR).glob("*/*") if p.is_file() and p not in known)
        return report

    def _verify_file(self, sha: str, rows: list[tuple[int, int, int]], decode: bool, report: VerifyReport) -> None:
        path = self.image_path(sha)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            report.missing += [(rid, sha) for rid, _, _ in rows]
            return
        report.files_checked += 1
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha:
            report.corrupt += [(rid, sha, actual) for rid, _, _ in rows]
            return
        if decode:
            img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
            for rid, w, h in rows:
                if img is None:
                    report.bad_image.append((rid, sha, "does not decode"))
                elif img.shape[:2] != (h, w):
                    report.bad_image.append((rid, sha, f"size {img.shape[1]}x{img.shape[0]}, index says {w}x{h}"))

    def _index_errors(self) -> list[str]:
        errors: list[str] = []
        with self._lock:
            result = [r[0] for r in self._conn.execute("PRAGMA integrity_check")]
            if result != ["ok"]:
                errors += [f"sqlite integrity_check: {r}" for r in result]
            (no_pos,) = self._conn.execute(
                "SELECT COUNT(*) FROM refs r LEFT JOIN refs_pos p ON p.id = r.id WHERE p.id IS NULL"
            ).fetchone()
            (no_ref,) = self._conn.execute(
                "SELECT COUNT(*) FROM refs_pos p LEFT JOIN refs r ON r.id = p.id WHERE r.id IS NULL"
            ).fetchone()
        if no_pos:
            errors.append(f"{no_pos} entries have no spatial index row")
        if no_ref:
            errors.append(f"{no_ref} spatial index rows have no entry")
        return errors

    def remove_orphans(self) -> list[Path]:
        """Delete image files no entry names (left by a crash during `add`/`build`)."""
        if self.readonly:
            raise CacheError("cache opened read-only")
        orphans = self.verify(decode=False).orphans
        for p in orphans:
            p.unlink(missing_ok=True)
        return orphans

    def info(self) -> CacheInfo:
        with self._lock:
            c = self._conn
            cameras = dict(c.execute("SELECT camera, COUNT(*) FROM refs GROUP BY camera ORDER BY camera").fetchall())
            routes = dict(c.execute("SELECT route, COUNT(*) FROM refs GROUP BY route ORDER BY route").fetchall())
            drives = int(c.execute("SELECT COUNT(DISTINCT drive) FROM refs").fetchone()[0])
            n, lat0, lat1, lon0, lon1, t0, t1 = c.execute(
                "SELECT COUNT(*), MIN(lat), MAX(lat), MIN(lon), MAX(lon), MIN(stamp_ns), MAX(stamp_ns) FROM refs"
            ).fetchone()
            shas = [r[0] for r in c.execute("SELECT DISTINCT sha256 FROM refs")]
            journal = str(c.execute("PRAGMA journal_mode").fetchone()[0])
        sizes = [self.image_path(s).stat().st_size for s in shas if self.image_path(s).is_file()]
        return CacheInfo(
            path=self.root,
            schema_version=SCHEMA_VERSION,
            journal_mode=journal,
            entries=int(n),
            images=len(sizes),
            image_bytes=int(sum(sizes)),
            cameras=cameras,
            routes=routes,
            drives=drives,
            lat_range=None if n == 0 else (lat0, lat1),
            lon_range=None if n == 0 else (lon0, lon1),
            stamp_range_ns=None if n == 0 else (int(t0), int(t1)),
            odom_origin=self.odom_origin,
        )

    # -- helpers
    def _find(self, drive: str, camera: str, stamp_ns: int) -> Reference | None:
        with self._lock:
            row = self._conn.execute(
                f"SELECT {_COLUMNS} FROM refs WHERE drive = ? AND camera = ? AND stamp_ns = ?",
                (drive, camera, int(stamp_ns)),
            ).fetchone()
        return None if row is None else self._reference(row)

    def _reference(self, row: tuple[Any, ...]) -> Reference:
        rid, sha, route, drive, camera, stamp, lat, lon, heading, w, h = row
        return Reference(
            id=int(rid),
            sha256=sha,
            route=route,
            drive=drive,
            camera=camera,
            stamp_ns=int(stamp),
            lat=float(lat),
            lon=float(lon),
            heading_deg=math.nan if heading is None else float(heading),
            width=int(w),
            height=int(h),
            path=self.image_path(sha),
        )

    def _read_origin(self) -> tuple[float, float]:
        raw = _meta(self._conn, "odom_origin")
        if not raw:
            return (0.0, 0.0)
        lat, lon = (float(v) for v in raw.split(","))
        return lat, lon


def _meta(conn: sqlite3.Connection, key: str) -> str | None:
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    except sqlite3.OperationalError:
        return None
    return None if row is None else str(row[0])


def _init_schema(conn: sqlite3.Connection, odom_origin: tuple[float, float] | None) -> None:
    """Create tables on first use (idempotent) and switch to WAL for concurrent readers."""
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise CacheError(f"could not enable WAL journal (got {mode!r}); is the cache on a network filesystem?")
    conn.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: consistent after any crash
    conn.execute("BEGIN IMMEDIATE")
    try:
        for stmt in filter(None, (s.strip() for s in _SCHEMA.split(";"))):
            conn.execute(stmt)
        conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
        conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('created_ns', ?)", (str(time.time_ns()),))
        if odom_origin is not None:
            conn.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('odom_origin', ?)",
                (f"{float(odom_origin[0])!r},{float(odom_origin[1])!r}",),
            )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _progress(items: Iterable[Any], enabled: bool, total: int | None, desc: str) -> Iterable[Any]:
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, total=total, desc=desc, unit="img")


# -- bulk import ---------------------------------------------------------------------------------


@dataclass
class ImportReport:
    """What `build_from_bag` / `add_images` did."""

    added: int = 0
    skipped_existing: int = 0
    images_seen: int = 0
    no_pose: int = 0
    bad_images: int = 0
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
    for i, row in enumerate(_progress(rows, progress, len(rows), "add-images")):
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
        cache.add(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), cam, lat, lon, heading, stamp, rte, drv)
        report.added += 1
    return report


def _csv_position(cache: ReferenceCache, row: dict[str, str]) -> tuple[float, float]:
    if row.get("lat") not in (None, "") and row.get("lon") not in (None, ""):
        return float(row["lat"]), float(row["lon"])
    if row.get("x") not in (None, "") and row.get("y") not in (None, ""):
        return cache.pseudo_latlon(float(row["x"]), float(row["y"]))
    raise ValueError(f"pose row for {row.get('file')!r} has neither lat/lon nor x/y")


@dataclass
class _Track:
    """A drive's positions over time: stamps (ns), pseudo/real lat/lon, odometer (m), heading (deg)."""

    t_ns: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    odometer_m: np.ndarray
    heading_deg: np.ndarray | None  # from odometry; None: derive course from the GPS track

    def __post_init__(self) -> None:
        # Precomputed once: `at` runs per image, so it must stay O(log n) on hour-long drives.
        self._tx = (self.t_ns - self.t_ns[0]).astype(np.float64) if len(self.t_ns) else np.zeros(0)
        self._heading_unwrapped = None if self.heading_deg is None else np.unwrap(self.heading_deg, period=360.0)

    def at(self, t_ns: int, max_gap_ns: int) -> tuple[float, float, float, float] | None:
        """(lat, lon, odometer, heading) at `t_ns`, interpolated; None outside the track or in a gap."""
        t = self.t_ns
        if len(t) == 0 or t_ns < t[0] - max_gap_ns or t_ns > t[-1] + max_gap_ns:
            return None
        i = int(np.searchsorted(t, t_ns))
        if 0 < i < len(t) and t[i] - t[i - 1] > max_gap_ns:
            return None
        x = float(t_ns - t[0])
        lat = float(np.interp(x, self._tx, self.lat))
        lon = float(np.interp(x, self._tx, self.lon))
        odo = float(np.interp(x, self._tx, self.odometer_m))
        if self._heading_unwrapped is not None:
            heading = float(np.interp(x, self._tx, self._heading_unwrapped)) % 360.0
        else:
            heading = self._course(odo)
        return lat, lon, odo, heading

    def _course(self, odo: float, half_window_m: float = 3.0) -> float:
        """Course over ground at odometer reading `odo`: bearing across ±half_window_m of track."""
        s = self.odometer_m
        if s[-1] - s[0] < 1.0:
            return math.nan
        a = max(s[0], odo - half_window_m)
        b = min(s[-1], odo + half_window_m)
        if b - a < 0.5:
            return math.nan
        lat_a, lon_a = float(np.interp(a, s, self.lat)), float(np.interp(a, s, self.lon))
        lat_b, lon_b = float(np.interp(b, s, self.lat)), float(np.interp(b, s, self.lon))
        return bearing_deg(lat_a, lon_a, lat_b, lon_b)


def _stamp_ns(msg: Any, log_time_ns: int) -> int:
    """Header stamp when the message has a non-zero one, else the bag's log time."""
    stamp = _field(_field(msg, "header"), "stamp")
    if stamp is not None:
        ns = int(_field(stamp, "sec") or 0) * 1_000_000_000 + int(_field(stamp, "nanosec") or 0)
        if ns > 0:
            return ns
    return int(log_time_ns)


def _gps_track(bag: Path, topic: str, report: ImportReport) -> _Track:
    from refscale_model.bags import read_messages

    points: dict[int, tuple[float, float]] = {}
    for _topic, log_ns, msg in read_messages(bag, [topic]):
        pos = navsatfix_position(msg)
        if pos is None:
            report.no_fix += 1
            continue
        points[_stamp_ns(msg, log_ns)] = pos
    t = np.array(sorted(points), dtype=np.int64)
    lat = np.array([points[k][0] for k in t.tolist()], dtype=np.float64)
    lon = np.array([points[k][1] for k in t.tolist()], dtype=np.float64)
    steps = [haversine_m(lat[i - 1], lon[i - 1], lat[i], lon[i]) for i in range(1, len(t))]
    odo = np.concatenate([[0.0], np.cumsum(steps)]) if len(t) else np.zeros(0)
    report.poses = len(t)
    return _Track(t, lat, lon, odo, None)


def _odom_track(bag: Path, topic: str, cache: ReferenceCache, report: ImportReport) -> _Track:
    from refscale_model.bags import read_messages

    points: dict[int, tuple[float, float, float]] = {}
    for _topic, log_ns, msg in read_messages(bag, [topic]):
        pose = _field(_field(msg, "pose"), "pose")
        pos, q = _field(pose, "position"), _field(pose, "orientation")
        x, y = float(_field(pos, "x")), float(_field(pos, "y"))
        qx, qy, qz, qw = (float(_field(q, k)) for k in "xyzw")
        yaw = math.atan2(2.0 * (qw * qz + qx * qy), 1.0 - 2.0 * (qy * qy + qz * qz))
        if math.isfinite(x) and math.isfinite(y):
            points[_stamp_ns(msg, log_ns)] = (x, y, yaw_to_heading_deg(yaw))
    t = np.array(sorted(points), dtype=np.int64)
    xyh = np.array([points[k] for k in t.tolist()], dtype=np.float64).reshape(-1, 3)
    latlon = np.array([cache.pseudo_latlon(x, y) for x, y in xyh[:, :2]], dtype=np.float64).reshape(-1, 2)
    odo = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(xyh[:, :2], axis=0).T))]) if len(t) else np.zeros(0)
    report.poses = len(t)
    return _Track(t, latlon[:, 0], latlon[:, 1], odo, xyh[:, 2])


def _count_topic(bag: Path, topic: str) -> int | None:
    """Messages on `topic` from the MCAP summaries (for the progress bar); None if unknown."""
    from mcap.reader import make_reader

    from refscale_model.bags import bag_files

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


def build_from_bag(
    cache: ReferenceCache,
    bag: str | Path,
    camera_topic: str,
    *,
    gps_topic: str | None = None,
    odom_topic: str | None = None,
    every_m: float = 10.0,
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
    from refscale_model.bags import read_messages
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
    for _topic, log_ns, msg in _progress(messages, progress, _count_topic(bag, camera_topic), "cache build"):
        report.images_seen += 1
        stamp = _stamp_ns(msg, log_ns)
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
            cache.add(rgb, camera, lat, lon, heading, stamp, route, drive)
            report.added += 1
        next_odo = odo + every_m
    return report
