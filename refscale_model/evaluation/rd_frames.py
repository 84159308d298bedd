"""The frames a scoreboard scores: revisit pairs from a pairs.csv, or a raw drive bag with its cache."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from refscale_model.pipeline.reference_choice import DEFAULT_CANDIDATES, ReferenceLoader, choose_reference


@dataclass
class RdFrame:
    """One target frame and its reference prepared onto it (None: coded without reference)."""

    name: str
    target: np.ndarray
    reference: np.ndarray | None
    info: dict[str, Any] = field(default_factory=dict)



def frames_from_pairs(csv_path: Path, split: str = "all", limit: int | None = None) -> list[RdFrame]:
    """Targets of a pairs.csv with references prepared exactly as `refscale eval` (no registration)."""
    from refscale_model.evaluation.pairs import read_eval_pairs, reference_for_frame
    from refscale_model.registration import RegistrationConfig
    from refscale_model.training.data import read_rgb

    pairs = read_eval_pairs(csv_path, split)[:limit]  # type: ignore[arg-type]
    frames = []
    for pair in pairs:
        target = read_rgb(pair.target)
        unregistered = RegistrationConfig(when_unregistered="none")
        ref, info = reference_for_frame(target, read_rgb(pair.reference), False, unregistered)
        rel = pair.target.relative_to(csv_path.parent)
        frames.append(RdFrame(str(rel), target, ref, {"reference": str(pair.reference.relative_to(csv_path.parent)),
                                                      **info}))
    return frames


def frames_from_bag(
    bag: Path, cache_dir: Path, camera: str, every: int = 1, limit: int | None = None, camera_id: str | None = None,
    reference_candidates: int = DEFAULT_CANDIDATES,
) -> tuple[list[RdFrame], list[str]]:
    """Camera frames of a raw bag with the reference the onboard encoder would use: the best-registering
    of the `reference_candidates` cache entries nearest the pose so far (NavSatFix / Odometry topics of
    the bag; `pipeline.reference_choice`, default `RegistrationConfig`, as `FrameEncoder`), registered
    onto the frame. Frames without a reference are left out (noted)."""
    from refscale_model.io import rosimg
    from refscale_model.pipeline.raw import iter_posed_frames
    from refscale_model.refcache.store import ReferenceCache

    if reference_candidates < 1:
        raise ValueError(f"reference_candidates must be >= 1, got {reference_candidates}")
    frames: list[RdFrame] = []
    notes: list[str] = []
    with ReferenceCache.open(cache_dir) as cache:
        load = ReferenceLoader()
        for index, _stamp, msg, pose in iter_posed_frames(bag, camera, every, cache.pseudo_latlon):
            try:
                rgb = rosimg.image_from_msg(msg)
            except rosimg.ImageDecodeError as exc:
                notes.append(f"frame {index}: undecodable ({exc})")
                continue
            entries = [] if pose is None else cache.near(camera_id or camera, pose.lat, pose.lon, pose.heading_deg,
                                                         limit=reference_candidates)
            if not entries:
                notes.append(f"frame {index}: no reference ({'no pose' if pose is None else 'none near'})")
                continue
            choice = choose_reference(rgb, entries, load)
            if choice is None or choice.warped is None:
                notes.append(f"frame {index}: registration failed")
                continue
            reg = choice.registration
            frames.append(RdFrame(f"{bag.name}#{index}", rgb, choice.warped,
                                  {"reference_id": choice.entry.id, "registration": reg.method,
                                   "registration_confidence": round(reg.confidence, 3)}))
            if limit is not None and len(frames) >= limit:
                break
    return frames, notes


# ---------------------------------------------------------------------------------------------- scoring
