"""On-disk format of the cache index: the SQLite schema, its version, and the `meta` table."""

from __future__ import annotations

import sqlite3
import time

from refscale_model.refcache.errors import CacheError

SCHEMA_VERSION = "1"
INDEX_NAME = "index.sqlite"
IMAGES_DIR = "images"

SCHEMA = """
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
COLUMNS = "id, sha256, route, drive, camera, stamp_ns, lat, lon, heading_deg, width, height"


def read_meta(conn: sqlite3.Connection, key: str, *, strict: bool = False) -> str | None:
    """A `meta` value; None if absent. Without `strict` also None when the table cannot be read."""
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    except sqlite3.OperationalError as exc:
        if strict and "no such table" not in str(exc):
            raise
        return None
    return None if row is None else str(row[0])


def init_schema(conn: sqlite3.Connection, odom_origin: tuple[float, float] | None) -> None:
    """Create tables on first use (idempotent) and switch to WAL for concurrent readers."""
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise CacheError(f"could not enable WAL journal (got {mode!r}); is the cache on a network filesystem?")
    conn.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: consistent after any crash
    conn.execute("BEGIN IMMEDIATE")
    try:
        for stmt in filter(None, (s.strip() for s in SCHEMA.split(";"))):
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
