"""Inputs and outputs as paths or fsspec URIs: find bags, hash them, stage them locally, publish results."""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

TMP_PREFIX = ".tmp-"
"""Outputs are written under this prefix and renamed when complete; nothing with it is ever finished."""


def is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


def local_path(uri: str) -> Path:
    return Path(uri[len("file://"):] if uri.startswith("file://") else uri)


def _fs(uri: str) -> tuple[Any, str]:
    import fsspec

    return fsspec.core.url_to_fs(uri)


def join(base: str, name: str) -> str:
    return str(local_path(base) / name) if is_local(base) else base.rstrip("/") + "/" + name


def _is_bag(fs: Any, path: str) -> bool:
    if path.endswith(".mcap"):
        return fs.isfile(path)
    return fs.isdir(path) and any(p.endswith(".mcap") for p in fs.ls(path, detail=False))


def expand_inputs(uris: list[str]) -> list[str]:
    """Each argument is a bag (a .mcap file or a folder holding .mcap files) or a folder of bags."""
    found: list[str] = []
    for uri in uris:
        fs, path = _fs(uri)
        if _is_bag(fs, path):
            found.append(uri)
            continue
        if not fs.isdir(path):
            raise FileNotFoundError(f"{uri}: no such bag or folder")
        kids = [p for p in sorted(fs.ls(path, detail=False)) if not Path(p).name.startswith(".")]
        bags = [p for p in kids if _is_bag(fs, p)]
        if not bags:
            raise FileNotFoundError(f"{uri}: holds no RefScale bags (.mcap files or bag folders)")
        prefix = uri.split("://", 1)[0] + "://" if not is_local(uri) else ""
        found += [p if is_local(uri) else prefix + p.split("://", 1)[-1] for p in bags]
    return found


def bag_stem(uri: str) -> str:
    name = uri.rstrip("/").rsplit("/", 1)[-1]
    return name[: -len(".mcap")] if name.endswith(".mcap") else name


def sha256_of(uri: str) -> str:
    """Content hash of a bag: every file under it (relative name and bytes), in name order."""
    fs, path = _fs(uri)
    files = sorted(fs.find(path)) if fs.isdir(path) else [path]
    h = hashlib.sha256()
    for f in files:
        h.update(os.path.relpath(f, path).encode() + b"\0")
        with fs.open(f, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()


def stage_input(uri: str, tmp: Path) -> Path:
    """A local path to read the bag from: the path itself, or a copy of a remote bag under `tmp`."""
    if is_local(uri):
        return local_path(uri)
    fs, path = _fs(uri)
    dest = tmp / "input" / bag_stem(uri)
    if fs.isdir(path):
        fs.get(path.rstrip("/") + "/", str(dest) + "/", recursive=True)
    else:
        dest = dest.with_suffix(".mcap")
        dest.parent.mkdir(parents=True, exist_ok=True)
        fs.get(path, str(dest))
    return dest


def stage_folder(uri: str, tmp: Path) -> Path:
    """A local copy of a remote folder (the reference cache), or the local path itself."""
    if is_local(uri):
        return local_path(uri)
    fs, path = _fs(uri)
    dest = tmp / "folder"
    fs.get(path.rstrip("/") + "/", str(dest) + "/", recursive=True)
    return dest


def temp_output(out: str, name: str, tmp: Path) -> Path:
    """Where to write an output before it is complete (not yet existing; its name says it is unfinished)."""
    unique = f"{TMP_PREFIX}{name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    if is_local(out):
        base = local_path(out)
        base.mkdir(parents=True, exist_ok=True)
        return base / unique
    return tmp / unique


def publish(written: Path, out: str, name: str) -> str:
    """Move a complete output to `out/name` (replacing an unrecorded leftover); returns its URI."""
    final = join(out, name)
    if is_local(out):
        target = local_path(final)
        if target.exists():
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        os.replace(written, target)
        return final
    fs, path = _fs(final)
    staging = path.rsplit("/", 1)[0] + "/" + written.name
    fs.put(str(written), staging, recursive=True)
    if fs.exists(path):
        fs.rm(path, recursive=True)
    fs.mv(staging, path, recursive=True)
    shutil.rmtree(written, ignore_errors=True)
    return final


def remove_stale_temps(out: str) -> list[str]:
    """Delete unfinished outputs a killed run left in a local `out` (never recorded, never renamed)."""
    if not is_local(out) or not local_path(out).is_dir():
        return []
    gone = []
    for p in local_path(out).glob(f"{TMP_PREFIX}*"):
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        gone.append(str(p))
    return gone
