"""`refscale cache verify`: every image the index names is there, hashes right and decodes."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from refscale_model.refcache.files import image_hw
from refscale_model.refcache.schema import IMAGES_DIR
from refscale_model.utils import progress_bar

if TYPE_CHECKING:
    from refscale_model.refcache.store import ReferenceCache


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


def verify_cache(cache: ReferenceCache, *, decode: bool = True, progress: bool = False) -> VerifyReport:
    """Rehash every image the index names; report missing, corrupt and orphaned files.

    With `decode`, also check that the PNG decodes to the recorded size.
    """
    report = VerifyReport()
    report.index_errors = _index_errors(cache)
    by_sha: dict[str, list[tuple[int, int, int]]] = {}
    with cache._lock:
        for rid, sha, w, h in cache._conn.execute("SELECT id, sha256, width, height FROM refs ORDER BY id"):
            by_sha.setdefault(sha, []).append((rid, w, h))
            report.entries += 1
    for sha, rows in progress_bar(by_sha.items(), progress, len(by_sha), "verify"):
        _verify_file(cache, sha, rows, decode, report)
    known = {cache.image_path(sha) for sha in by_sha}
    # an image no entry names, or a derived file (`prepared.py`: <sha256>.<key>.npz) of such an image
    report.orphans = sorted(p for p in (cache.root / IMAGES_DIR).glob("*/*")
                            if p.is_file() and p not in known and p.name.split(".")[0] not in by_sha)
    return report

def _verify_file(cache: ReferenceCache, sha: str, rows: list[tuple[int, int, int]], decode: bool,
             report: VerifyReport) -> None:
    path = cache.image_path(sha)
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
        hw = image_hw(data)
        for rid, w, h in rows:
            if hw is None:
                report.bad_image.append((rid, sha, "does not decode"))
            elif hw != (h, w):
                report.bad_image.append((rid, sha, f"size {hw[1]}x{hw[0]}, index says {w}x{h}"))

def _index_errors(cache: ReferenceCache) -> list[str]:
    errors: list[str] = []
    with cache._lock:
        result = [r[0] for r in cache._conn.execute("PRAGMA integrity_check")]
        if result != ["ok"]:
            errors += [f"sqlite integrity_check: {r}" for r in result]
        (no_pos,) = cache._conn.execute(
            "SELECT COUNT(*) FROM refs r LEFT JOIN refs_pos p ON p.id = r.id WHERE p.id IS NULL"
        ).fetchone()
        (no_ref,) = cache._conn.execute(
            "SELECT COUNT(*) FROM refs_pos p LEFT JOIN refs r ON r.id = p.id WHERE r.id IS NULL"
        ).fetchone()
    if no_pos:
        errors.append(f"{no_pos} entries have no spatial index row")
    if no_ref:
        errors.append(f"{no_ref} spatial index rows have no entry")
    return errors
