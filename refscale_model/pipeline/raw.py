"""Raw camera frames of a recorded bag, decoded to RGB (the reference and scoring side of the jobs)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from refscale_model.bags import BagReader, msgs
from refscale_model.io import rosimg


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

