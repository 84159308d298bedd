"""Route-keyed reference cache: lossless reference images indexed by position, on disk.

Why: RefScale only pays off when the car finds a reference of the same place. The cache is a
directory that the car and the offboard side both hold (the offboard copy is a byte copy)::

    CACHE/index.sqlite          SQLite (WAL while written, rollback journal at rest): `refs`, R*Tree `refs_pos`, `meta`
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
import hashlib
import math
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from refscale_model.geo import degree_boxes, haversine_m, heading_diff_deg, pseudo_latlon
from refscale_model.refcache.connection import connect_readonly, connect_writable, leave_wal
from refscale_model.refcache.errors import (
    CacheError,
    CacheIndexError,
    CacheNotFoundError,
    DegenerateReferenceError,
    ReferenceMismatchError,
    ReferenceMissingError,
)
from refscale_model.refcache.files import (
    check_reference_size,
    decode_png,
    encode_reference_png,
    write_atomic,
)
from refscale_model.refcache.schema import COLUMNS as _COLUMNS
from refscale_model.refcache.schema import IMAGES_DIR, INDEX_NAME, SCHEMA_VERSION, init_schema, read_meta
from refscale_model.refcache.verify import VerifyReport
from refscale_model.utils import HASH_PREFIX_MIN, hash_names


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
        rgb = decode_png(data)
        if rgb is None:
            raise ReferenceMismatchError(f"{self.path} is not a decodable image")
        return rgb


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


# -- the cache -----------------------------------------------------------------------------------


class ReferenceCache:
    """A reference cache directory. Use `ReferenceCache.open(dir)`; safe to share between threads.

    Several processes may use one cache: readers never block (WAL), writers wait for each other
    (busy timeout). One connection per instance, serialised by a lock. `readonly=True` never writes
    (also not a `-shm` file), so it works on read-only mounts; see docs/reference-cache.md.
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
        try:
            conn = connect_readonly(index, busy_timeout_s) if readonly else connect_writable(index, busy_timeout_s)
        except sqlite3.DatabaseError as exc:
            raise CacheIndexError(f"{index}: cannot use the cache index: {exc}") from exc
        try:
            if not readonly:
                init_schema(conn, odom_origin)
            version = read_meta(conn, "schema_version", strict=True)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise CacheIndexError(f"{index}: cannot use the cache index: {exc}") from exc
        if version != SCHEMA_VERSION:
            conn.close()
            raise CacheIndexError(
                f"{index}: unsupported cache schema version {version!r} (expected {SCHEMA_VERSION})"
            )
        return cls(root, conn, readonly)

    def close(self) -> None:
        """Close; a writer also hands the index back in rollback-journal mode (see `connection.leave_wal`)."""
        with self._lock:
            if not self.readonly:
                leave_wal(self._conn)
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
        if image_rgb.ndim >= 2 and (why := check_reference_size(*image_rgb.shape[:2])) is not None:
            raise DegenerateReferenceError(f"not a usable reference: {why}")
        data = encode_reference_png(image_rgb)
        sha = hashlib.sha256(data).hexdigest()
        path = self.image_path(sha)
        if not path.is_file():
            write_atomic(path, data)
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
        found = self.near(camera, lat, lon, heading_deg, radius_m, heading_tol_deg, limit=1)
        return found[0] if found else None

    def near(
        self,
        camera: str,
        lat: float | None,
        lon: float | None,
        heading_deg: float | None,
        radius_m: float = 15.0,
        heading_tol_deg: float = 30.0,
        limit: int | None = None,
    ) -> list[Reference]:
        """The references `nearest` would consider, closest first (ties: newest first), at most `limit`.

        Why more than one: a GPS fix is metres off, so the closest entry by GPS is often not the one
        that sees the frame's view best (`pipeline.reference_choice` registers a few and keeps the best).
        """
        if lat is None or lon is None or not (math.isfinite(lat) and math.isfinite(lon)):
            return []
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        use_heading = heading_deg is not None and math.isfinite(heading_deg)
        found: list[tuple[float, int, Reference]] = []
        seen: set[int] = set()
        for row in self._candidates(camera, lat, lon, radius_m):
            ref = self._reference(row)
            if ref.id in seen:  # the query boxes of `degree_boxes` may share a row
                continue
            seen.add(ref.id)
            dist = haversine_m(lat, lon, ref.lat, ref.lon)
            if dist > radius_m:
                continue
            if use_heading and math.isfinite(ref.heading_deg):
                if heading_diff_deg(float(heading_deg), ref.heading_deg) > heading_tol_deg:
                    continue
            found.append((dist, -ref.stamp_ns, ref))
        found.sort(key=lambda item: item[:2])
        return [ref for _, _, ref in found[:limit]]

    def _candidates(self, camera: str, lat: float, lon: float, radius_m: float) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = []
        cols = ", ".join(f"r.{c.strip()}" for c in _COLUMNS.split(","))
        with self._lock:
            for lo_lat, hi_lat, lo_lon, hi_lon in degree_boxes(lat, lon, radius_m):
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
        if not hash_names(sha256, ref.sha256):  # a short frame record names it by a prefix
            raise ReferenceMismatchError(
                f"reference id {id}: frame expects sha256 {sha256}, cache at {self.root} holds {ref.sha256}"
            )
        if not ref.path.is_file():
            raise ReferenceMissingError(f"reference id {id}: image file {ref.path} is missing")
        return ref

    def by_sha256(self, sha256: str) -> list[Reference]:
        """All entries whose image has this hash, or a prefix of it a short frame record keeps (for
        caches whose ids diverged)."""
        if len(sha256) < HASH_PREFIX_MIN:
            return []
        with self._lock:
            rows = self._conn.execute(f"SELECT {_COLUMNS} FROM refs WHERE substr(sha256, 1, ?) = ? ORDER BY id",
                                      (len(sha256), sha256)).fetchall()
        return [self._reference(r) for r in rows]

    def entries(self) -> Iterator[Reference]:
        with self._lock:
            rows = self._conn.execute(f"SELECT {_COLUMNS} FROM refs ORDER BY id").fetchall()
        for r in rows:
            yield self._reference(r)

    # -- maintenance
    def verify(self, *, decode: bool = True, progress: bool = False) -> VerifyReport:
        """Rehash every image the index names; report missing, corrupt and orphaned files (`verify.py`)."""
        from refscale_model.refcache.verify import verify_cache

        return verify_cache(self, decode=decode, progress=progress)

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
        raw = read_meta(self._conn, "odom_origin")
        if not raw:
            return (0.0, 0.0)
        lat, lon = (float(v) for v in raw.split(","))
        return lat, lon
