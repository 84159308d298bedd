"""Registration features of a cached reference, stored beside its image at the depot.

On a drive a new reference enters the encoder's candidates every few metres, and each one used to be
read, rehashed, PNG-decoded and given ORB features on the car (~35 ms at 720p), although only the
most confident candidate is then used. `prepare_reference` writes what `registration.register` needs
of a reference (`PreparedReference`: the working-width grey image, ORB keypoints and descriptors) to
`images/<sha256>.<key>.npz` when the cache is built; `load_prepared` reads it back (a few ms), so the
car decodes only the reference it codes against. The file is derived data: content-addressed by the
image hash and a key of the registration settings it was made with, read without pickle, and simply
recomputed from the image when it is missing, stale or unreadable.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from refscale_model.refcache.files import write_atomic

if TYPE_CHECKING:
    from refscale_model.refcache.store import Reference
    from refscale_model.registration import PreparedReference, RegistrationConfig

_FORMAT = 1


def features_key(config: RegistrationConfig) -> str:
    """Short hash of the settings `prepare_features` depends on (another setting: another file)."""
    text = f"v{_FORMAT}:{config.work_width}:{config.orb_features}:{config.fast_threshold}"
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def prepared_path(entry: Reference, config: RegistrationConfig) -> Path:
    return entry.path.with_name(f"{entry.sha256}.{features_key(config)}.npz")


def stored_files(entry: Reference) -> list[Path]:
    """Every stored-features file of the entry's image (any settings): what a cache copy carries along."""
    return sorted(entry.path.parent.glob(f"{entry.sha256}.*.npz"))


def prepare_reference(entry: Reference, config: RegistrationConfig | None = None,
                      rgb: np.ndarray | None = None) -> Path:
    """Compute and store the entry's registration features (once; an existing file is kept). `rgb`:
    the entry's image when the caller has it decoded already (else it is read from the cache)."""
    from refscale_model.registration import RegistrationConfig, prepare_features

    config = config or RegistrationConfig()
    path = prepared_path(entry, config)
    if not path.is_file():
        prepared = prepare_features(entry.load_rgb() if rgb is None else rgb, config)
        buf = io.BytesIO()
        descriptors = prepared.descriptors if prepared.descriptors is not None else np.zeros((0, 32), np.uint8)
        np.savez_compressed(
            buf, image_sha256=np.array(entry.sha256), size_hw=np.array(prepared.size_hw, np.int64),
            work_width=np.array(prepared.work_width, np.int64), scale=np.array(prepared.scale, np.float64),
            grey=prepared.grey, keypoints=prepared.keypoints, descriptors=descriptors,
            has_descriptors=np.array(prepared.descriptors is not None))
        write_atomic(path, buf.getvalue())
    return path


def load_prepared(entry: Reference, config: RegistrationConfig) -> PreparedReference | None:
    """The stored features of `entry` for `config`, or None (missing, unreadable, or not this image's)."""
    from refscale_model.registration import PreparedReference

    path = prepared_path(entry, config)
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["image_sha256"]) != entry.sha256 or int(data["work_width"]) != config.work_width:
                return None
            h, w = (int(v) for v in data["size_hw"])
            return PreparedReference(
                (h, w), int(data["work_width"]), float(data["scale"]), data["grey"], data["keypoints"],
                data["descriptors"] if bool(data["has_descriptors"]) else None)
    except (OSError, KeyError, ValueError):
        return None


__all__ = ["features_key", "load_prepared", "prepare_reference", "prepared_path", "stored_files"]
