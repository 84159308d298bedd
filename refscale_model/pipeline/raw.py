"""Raw camera frames of a recorded bag, decoded to RGB (the reference and scoring side of the jobs)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from refscale_model.bags import BagReader, msgs
from refscale_model.io import rosimg
from refscale_model.pipeline.pose import Pose, PoseTracker


def iter_camera_frames(path: str | Path, topics: Iterable[str]) -> Iterator[tuple[str, int, int, np.ndarray]]:
    """(topic, stamp_ns, log_time_ns, RGB) of raw camera topics; undecodable frames are skipped."""
    reader = BagReader(path)
    for raw in reader.raw_messages(list(topics)):
        try:
            msg = reader.decode(raw)
            rgb = rosimg.image_from_msg(msg)
        except Exception:  # noqa: BLE001 - a damaged message or image: skipped, as the docstring says
            continue
        yield raw.topic, msgs.stamp_or(msg, raw.log_time_ns), raw.log_time_ns, rgb


def iter_posed_frames(
    path: str | Path, camera: str, every: int = 1,
    pseudo_latlon: Callable[[float, float], tuple[float, float]] | None = None,
) -> Iterator[tuple[int, int, Any, Pose | None]]:
    """(index, stamp_ns, decoded message, pose so far) of every `every`-th message of `camera` (index 0,
    `every`, ...), the pose tracked from the bag's NavSatFix / Odometry topics as the recorder tracks it.
    The image is left to the caller to decode (and to report if it cannot)."""
    from refscale_model.bags.reader import topics_of

    topics = topics_of(path)
    if camera not in topics:  # raised here, at the call, not at the first frame
        raise ValueError(f"camera topic {camera!r} not in {path} (topics: {', '.join(sorted(topics))})")
    pose_topics = [t for t, ty in topics.items() if ty in (msgs.NAV_SAT_FIX, msgs.ODOMETRY)]

    def frames() -> Iterator[tuple[int, int, Any, Pose | None]]:
        tracker, reader, seen = PoseTracker(pseudo_latlon=pseudo_latlon), BagReader(path), 0
        for raw in reader.raw_messages([camera, *pose_topics]):
            msg = reader.decode(raw)
            stamp = msgs.stamp_or(msg, raw.log_time_ns)
            if raw.topic != camera:
                tracker.update(raw.type_name, msg, stamp)
                continue
            seen += 1
            if (seen - 1) % every == 0:
                yield seen - 1, stamp, msg, tracker.pose(stamp)

    return frames()
