"""S_map reuse inside a video GOP: send a similarity map only when it has changed.

With a video LR the LR of a frame costs a few hundred bytes, and the stored S_map (+ its metadata)
was 20–38 % of RefScale's bits at the low rates where fleets upload (docs/rate-distortion.md,
"Sequences"). Consecutive frames of a camera look at the same place through the same reference,
so their maps barely move. The encoder therefore conditions a frame on the map it used last
(`choose`) while the new map stays within `tolerance` of it, and the bag stores a map once per GOP
and change: a frame whose map is already stored by an earlier frame of its GOP names that frame
(`FrameMeta.smap_from_stamp_ns`, `place` / `stored`). Both sides condition on the same stored
map, so the inverse stays exact; only the conditioning is a few frames old. Still-image codecs
keep one map per frame (every frame decodes on its own).
"""

from __future__ import annotations

import numpy as np

from refscale_model.io.images import stored_smap

DEFAULT_TOLERANCE = 2.0
"""Mean absolute difference in S_map levels (of 16) up to which the held map is reused. The maps of
consecutive frames differ by 1.0–1.3 levels from noise alone (a 1-pixel camera drift on a webcam
revisit, 10 Hz frames of the sample drive), so 1.0 reused nothing; at 2.0 the sample drive's
video curve needs 2.4 points less BD-rate for −0.02 dB (docs/rate-distortion.md)."""


class SmapReuse:
    """Per camera: the map the network conditions on, and which frame of the GOP stores it."""

    def __init__(self, tolerance: float = DEFAULT_TOLERANCE) -> None:
        if not tolerance >= 0.0:
            raise ValueError(f"S_map reuse tolerance must be >= 0 levels, got {tolerance}")
        self.tolerance = float(tolerance)
        self._held: dict[str, np.ndarray] = {}
        self._gop: dict[str, list[tuple[int, np.ndarray]]] = {}

    def choose(self, camera: str, new: np.ndarray) -> np.ndarray:
        """The map to condition this frame on (hs×ws uint8): the held one while `new` stays within the
        tolerance of it, else `new`, which is then held. A gated map (all zero) passes unchanged."""
        if stored_smap(new) is None:
            return new
        held = self._held.get(camera)
        if (held is not None and held.shape == new.shape and self.tolerance > 0
                and float(np.abs(held.astype(np.int16) - new.astype(np.int16)).mean()) <= self.tolerance):
            return held
        self._held[camera] = new
        return new

    def source(self, camera: str, smap: np.ndarray | None, keyframe: bool) -> int:
        """Stamp of the frame of the current GOP that already stores `smap` (0: store it with this one,
        or there is none). Call it for every frame: a keyframe starts a new GOP, also one without a
        map, and maps stored before it are no longer referred to."""
        if keyframe:
            self._gop[camera] = []
        if smap is None:
            return 0
        for stamp, stored in self._gop.get(camera, []):
            if stored.shape == smap.shape and np.array_equal(stored, smap):
                return stamp
        return 0

    def stored(self, camera: str, stamp: int, smap: np.ndarray) -> None:
        """`smap` was written with frame `stamp` (call after the write succeeded)."""
        self._gop.setdefault(camera, []).append((stamp, smap))


__all__ = ["DEFAULT_TOLERANCE", "SmapReuse"]
