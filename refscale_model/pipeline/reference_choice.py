"""Which cached reference a frame is coded against: the best-registering of the few nearest.

The cache is keyed by GPS, and a fix is metres off (the sample drive's second drive has σ = 1 m; a
phone-grade receiver is worse). With keyframes a few metres apart, the entry closest by GPS is often
not the one that sees the frame's view best, and a reference that sees another view costs S_map bytes
for little gain or is gated away. Registration already runs for every frame, and its confidence
(inlier count × coverage) says how much of the frame a reference explains. So the encoder registers
the frame against the `candidates` nearest entries and keeps the most confident, preferring the
nearer on a tie. On 8 frames of the sample drive (1 m cache, WebP q35 LR, the shipped x2-lossy) this
chose the reference with the best rebuilt PSNR every time and gained 3.03 dB in sum over the
no-reference coding of those frames, against 1.72 dB for the nearest entry (docs/reference-cache.md,
"Keyframe spacing and choosing among nearby references").

Encoder and scoreboard both call `choose_reference`, so `refscale rd` scores what the car records.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # registration imports OpenCV; the encoder module loads it only when it registers
    from refscale_model.refcache.store import Reference
    from refscale_model.registration import PreparedReference, Registration, RegistrationConfig

DEFAULT_CANDIDATES = 4
"""References registered per frame. Four cover ±4 m around the fix with the default 2 m keyframe
spacing; each costs one ORB match + RANSAC at the 640-pixel working width (the frame's own features
are computed once)."""


class ReferenceLoader:
    """Decoded references and their registration features, kept for the last `size` entries.

    Consecutive frames share most of their candidates, so each entry is prepared once while it stays
    in use. Ranking needs only the features: `prepared(entry)` reads them from the cache's stored
    file (`refcache.prepared`, written by `cache build`) when there is one, so a candidate that loses
    is never decoded; `__call__(entry)` gives (RGB, features) for the one that is used. Call it as
    `choose_reference`'s `load`."""

    def __init__(self, config: RegistrationConfig | None = None, size: int = 8) -> None:
        from refscale_model.registration import RegistrationConfig
        from refscale_model.utils import LruCache

        self.config = config or RegistrationConfig()
        self.loaded = 0
        """Entries read and decoded so far (LRU misses)."""
        self.from_store = 0
        """Entries whose features came from the cache's stored file."""
        self._rgb: LruCache[int, np.ndarray] = LruCache(size)
        self._prepared: LruCache[int, PreparedReference] = LruCache(size)

    def prepared(self, entry: Reference) -> PreparedReference:
        """The entry's registration features: stored, else computed from the decoded image."""
        from refscale_model.refcache.prepared import load_prepared
        from refscale_model.registration import prepare_features

        found = self._prepared.get(entry.id)
        if found is None:
            found = load_prepared(entry, self.config)
            if found is None:
                found = prepare_features(self.rgb(entry), self.config)
            else:
                self.from_store += 1
            self._prepared.put(entry.id, found)
        return found

    def rgb(self, entry: Reference) -> np.ndarray:
        """The entry's image, read, rehashed and decoded once while it stays in use."""
        found = self._rgb.get(entry.id)
        if found is None:
            found = self._rgb.put(entry.id, entry.load_rgb())
            self.loaded += 1
        return found

    def __call__(self, entry: Reference) -> tuple[np.ndarray, PreparedReference]:
        return self.rgb(entry), self.prepared(entry)


@dataclass(frozen=True)
class ReferenceChoice:
    """The chosen cache entry, the reference warped onto the frame (None: code without reference) and
    the registration that warped it."""

    entry: Reference
    warped: np.ndarray | None
    registration: Registration


def choose_reference(
    frame_rgb: np.ndarray,
    entries: Sequence[Reference],
    load: Callable[[Reference], tuple[np.ndarray, PreparedReference]],
    config: RegistrationConfig | None = None,
) -> ReferenceChoice | None:
    """Register `frame_rgb` against each of `entries` (closest first) and keep the most confident.

    `load(entry)` gives (reference RGB, `prepare_features` of it), e.g. a `ReferenceLoader`, whose
    `prepared(entry)` (features only) then ranks the candidates without decoding them. When none
    reaches `config.min_confidence`, the closest entry gets the usual `when_unregistered` policy, as
    with a single candidate. None when `entries` is empty.
    """
    from refscale_model.registration import RegistrationConfig, apply_registration, prepare_features, register

    if not entries:
        return None
    config = config or RegistrationConfig()
    rank = 0
    if len(entries) == 1:
        ref_rgb, prepared = load(entries[0])
        reg = register(frame_rgb, prepared, config)
    else:
        # rank by confidence without the sub-pixel refinement (it moves the matrix, not the confidence),
        # then register the winner in full: one refinement per frame, as with a single candidate
        frame_features = prepare_features(frame_rgb, config)
        probe = dataclasses.replace(config, refine_iterations=0)
        features = getattr(load, "prepared", None) or (lambda entry: load(entry)[1])
        confidence = [register(frame_features, features(entry), probe).confidence for entry in entries]
        # most confident; a tie keeps the closer entry; nothing registered: the closest, as with one candidate
        rank = max(range(len(entries)), key=lambda i: (confidence[i], -i))
        if confidence[rank] < config.min_confidence:
            rank = 0
        ref_rgb, prepared = load(entries[rank])
        reg = register(frame_features, prepared, config)
    warped, applied = apply_registration(ref_rgb, reg, (int(frame_rgb.shape[0]), int(frame_rgb.shape[1])), config)
    return ReferenceChoice(entries[rank], warped, applied)


__all__ = ["DEFAULT_CANDIDATES", "ReferenceChoice", "ReferenceLoader", "choose_reference"]
