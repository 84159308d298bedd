"""The fleet output manifest: one SQLite file the driver alone writes, the record of finished work.

A bag counts as done only when its row is here; the row is committed *after* its output was
renamed into place, together with its per-frame failures (one transaction). A re-run skips every
(input, sha256) it finds, so a changed input is rebuilt and a finished one never twice.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS done (
    input TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    output TEXT NOT NULL,
    frames INTEGER NOT NULL,
    failed INTEGER NOT NULL,
    seconds REAL NOT NULL,
    finished_ns INTEGER NOT NULL,
    PRIMARY KEY (input, sha256)
);
CREATE TABLE IF NOT EXISTS frame_failures (
    input TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    camera TEXT NOT NULL,
    stamp_ns INTEGER NOT NULL,
    kind TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS attempts (
    input TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    error TEXT NOT NULL,
    at_ns INTEGER NOT NULL
);
"""


@dataclass(frozen=True)
class DoneRow:
    input: str
    sha256: str
    output: str
    frames: int
    failed: int
    seconds: float


class Manifest:
    """`Manifest(path)`: open or create; `is_done`, `record_done`, `record_attempt`, `done_rows`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = FULL")
        for stmt in filter(None, (s.strip() for s in SCHEMA.split(";"))):
            self._conn.execute(stmt)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Manifest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def is_done(self, input_uri: str, sha256: str, *, clean_only: bool = False) -> bool:
        q = "SELECT failed FROM done WHERE input = ? AND sha256 = ?"
        row = self._conn.execute(q, (input_uri, sha256)).fetchone()
        return row is not None and (not clean_only or row[0] == 0)

    def record_done(
        self,
        input_uri: str,
        sha256: str,
        output: str,
        frames: int,
        failures: Iterable[tuple[str, int, str, str]],
        seconds: float,
    ) -> None:
        """Record a finished bag and its frame failures `(camera, stamp_ns, kind, message)` atomically."""
        failures = list(failures)
        c = self._conn
        c.execute("BEGIN IMMEDIATE")
        try:
            c.execute("DELETE FROM done WHERE input = ? AND sha256 = ?", (input_uri, sha256))
            c.execute("DELETE FROM frame_failures WHERE input = ? AND sha256 = ?", (input_uri, sha256))
            c.execute(
                "INSERT INTO done VALUES (?, ?, ?, ?, ?, ?, ?)",
                (input_uri, sha256, output, frames, len(failures), seconds, time.time_ns()),
            )
            c.executemany(
                "INSERT INTO frame_failures VALUES (?, ?, ?, ?, ?, ?)",
                [(input_uri, sha256, cam, int(stamp), kind, msg) for cam, stamp, kind, msg in failures],
            )
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise

    def record_attempt(self, input_uri: str, sha256: str, error: str) -> None:
        """A bag that did not finish (worker lost past its retries, or a bag-level error)."""
        self._conn.execute("INSERT INTO attempts VALUES (?, ?, ?, ?)", (input_uri, sha256, error, time.time_ns()))

    def done_rows(self) -> list[DoneRow]:
        rows = self._conn.execute(
            "SELECT input, sha256, output, frames, failed, seconds FROM done ORDER BY input"
        ).fetchall()
        return [DoneRow(*r) for r in rows]

    def failures(self) -> list[tuple[str, str, int, str, str]]:
        """(input, camera, stamp_ns, kind, message) of every recorded frame failure."""
        return self._conn.execute(
            "SELECT input, camera, stamp_ns, kind, message FROM frame_failures ORDER BY input, camera, stamp_ns"
        ).fetchall()

    def attempts(self) -> list[tuple[str, str]]:
        return self._conn.execute("SELECT input, error FROM attempts ORDER BY at_ns").fetchall()
