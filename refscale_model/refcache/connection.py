"""Opening the SQLite index: writers in WAL, readers read-only even on read-only mounts.

Why its own module: which journal mode a writer leaves and how a reader opens the file decide
whether a cache works from a `:ro` Docker volume (docs/reference-cache.md).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from refscale_model.refcache.errors import CacheIndexError


def connect_writable(index: Path, busy_timeout_s: float) -> sqlite3.Connection:
    conn = sqlite3.connect(index, timeout=busy_timeout_s, check_same_thread=False, isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
    return conn


def connect_readonly(index: Path, busy_timeout_s: float) -> sqlite3.Connection:
    """`mode=ro`, or `immutable=1` for a WAL-mode index in a directory this process cannot write.

    A WAL reader needs the `-shm` file; on a read-only mount it cannot create one and every read
    fails. `immutable=1` reads the main file alone, which is only right when it holds every
    commit, i.e. when no `-wal` file lies beside it (a writer that closed cleanly checkpointed
    and removed it). With a `-wal` left behind (a writer crashed) we refuse rather than silently
    drop its commits.
    """

    def connect(params: str) -> sqlite3.Connection:
        conn = sqlite3.connect(
            f"{index.resolve().as_uri()}?{params}",
            uri=True,
            timeout=busy_timeout_s,
            check_same_thread=False,
            isolation_level=None,
        )
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        return conn

    conn = connect("mode=ro")
    try:
        conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.OperationalError:
        conn.close()
        if not is_wal(index) or dir_writable(index.parent):
            raise
    wal = index.with_name(index.name + "-wal")
    if wal.exists() and wal.stat().st_size > 0:
        raise CacheIndexError(
            f"{index}: a crashed writer left {wal.name} with commits not yet in the index, and the directory is "
            "read-only here; open the cache once from a writable mount (e.g. `refscale cache verify`) to apply them"
        )
    return connect("mode=ro&immutable=1")


def is_wal(index: Path) -> bool:
    """True if the index file's header says WAL (file format bytes 18/19 = 2)."""
    try:
        with open(index, "rb") as fh:
            header = fh.read(20)
    except OSError:
        return False
    return len(header) == 20 and header[18] == 2 and header[19] == 2


def dir_writable(path: Path) -> bool:
    try:
        return os.access(path, os.W_OK) and not os.statvfs(path).f_flag & os.ST_RDONLY
    except OSError:
        return False


def leave_wal(conn: sqlite3.Connection) -> None:
    """Checkpoint and switch the index back to a rollback journal, if no other connection has it open.

    A rollback-journal index opens read-only anywhere (also where no `-shm` can be created, e.g. a
    `:ro` Docker volume). The next writer switches it to WAL again. Best effort: while other
    processes hold the index it stays in WAL, which is consistent too.
    """
    try:
        conn.execute("PRAGMA busy_timeout = 0")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("PRAGMA journal_mode = DELETE")
    except sqlite3.DatabaseError:
        pass
