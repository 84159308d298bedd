"""The frames a scoreboard scores: revisit pairs from a pairs.csv, or a raw drive bag with its cache."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from refscale_model.pipeline.reference_choice import DEFAULT_CANDIDATES, choose_reference

if TYPE_CHECKING:
    from refscale_model.refcache.store import Reference
    from refscale_model.registration import PreparedReference


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
    from refscale_model.bags import BagReader, msgs
    from refscale_model.bags.reader import topics_of
    from refscale_model.io import rosimg
    from refscale_model.pipeline.pose import PoseTracker
    from refscale_model.refcache.store import ReferenceCache
    from refscale_model.registration import prepare_features

    if reference_candidates < 1:
        raise ValueError(f"reference_candidates must be >= 1, got {reference_candidates}")

    topics = topics_of(bag)
    if camera not in topics:
        raise ValueError(f"camera topic {camera!r} not in {bag} (topics: {', '.join(sorted(topics))})")
    pose_topics = [t for t, ty in topics.items() if ty in (msgs.NAV_SAT_FIX, msgs.ODOMETRY)]
    frames: list[RdFrame] = []
    notes: list[str] = []
    seen = 0
    with ReferenceCache.open(cache_dir) as cache:
        tracker = PoseTracker(pseudo_latlon=cache.pseudo_latlon)
        reader = BagReader(bag)
        refs: dict[int, tuple[np.ndarray, PreparedReference]] = {}

        def load(entry: Reference) -> tuple[np.ndarray, PreparedReference]:
            if entry.id not in refs:
                rgb = entry.load_rgb()
                refs[entry.id] = (rgb, prepare_features(rgb))
            return refs[entry.id]

        for raw in reader.raw_messages([camera, *pose_topics]):
            msg = reader.decode(raw)
            if raw.topic != camera:
                tracker.update(raw.type_name, msg, msgs.stamp_or(msg, raw.log_time_ns))
                continue
            seen += 1
            if (seen - 1) % every:
                continue
            stamp = msgs.stamp_or(msg, raw.log_time_ns)
            try:
                rgb = rosimg.image_from_msg(msg)
            except rosimg.ImageDecodeError as exc:
                notes.append(f"frame {seen - 1}: undecodable ({exc})")
                continue
            pose = tracker.pose(stamp)
            entries = [] if pose is None else cache.near(camera_id or camera, pose.lat, pose.lon, pose.heading_deg,
                                                         limit=reference_candidates)
            if not entries:
                notes.append(f"frame {seen - 1}: no reference ({'no pose' if pose is None else 'none near'})")
                continue
            choice = choose_reference(rgb, entries, load)
            if choice is None or choice.warped is None:
                notes.append(f"frame {seen - 1}: registration failed")
                continue
            reg = choice.registration
            frames.append(RdFrame(f"{bag.name}#{seen - 1}", rgb, choice.warped,
                                  {"reference_id": choice.entry.id, "registration": reg.method,
                                   "registration_confidence": round(reg.confidence, 3)}))
            if limit is not None and len(frames) >= limit:
                break
    return frames, notes


# ---------------------------------------------------------------------------------------------- scoring
