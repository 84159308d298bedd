"""S_map reuse in a video GOP: the policy, a real bag that stores fewer maps and still rebuilds every
frame, and a frame whose shared map is lost failing visibly.

Real webcam revisit (one scene, the camera drifting a pixel per frame), the shipped x2 weights,
real libx265, real MCAP bags, the real `Reconstructor`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_pipeline import CAM, T0, encode_pan, webcam_pan

from refscale_model import load_model
from refscale_model.backends.torch_backend import TorchDownscaler
from refscale_model.bags import msgs, read_messages
from refscale_model.bags import refscale_format as fmt
from refscale_model.metrics import psnr
from refscale_model.pipeline import (
    FrameAssembler,
    FrameFailure,
    ModelInfo,
    ReconstructedFrame,
    Reconstructor,
)
from refscale_model.pipeline.smap_reuse import SmapReuse
from refscale_model.refcache import ReferenceCache

N, GOP = 6, 3


def test_policy_holds_a_close_map_and_places_it_once_per_gop() -> None:
    reuse = SmapReuse(tolerance=1.0)
    a = np.full((3, 4), 8, np.uint8)
    near = a.copy()
    near[0, 0] = 10  # mean difference 2/12 level
    far = np.full((3, 4), 12, np.uint8)
    gated = np.zeros((3, 4), np.uint8)
    assert reuse.choose("c", a) is a
    assert reuse.choose("c", near) is a  # within tolerance: the held map
    assert reuse.choose("c", gated) is gated  # a gated frame is coded without reference, held map kept
    assert reuse.choose("c", far) is far and reuse.choose("c", a) is a  # beyond: the new map is held
    assert reuse.source("c", a, keyframe=True) == 0
    reuse.stored("c", 100, a)
    assert reuse.source("c", a, keyframe=False) == 100
    assert reuse.source("c", far, keyframe=False) == 0
    assert reuse.source("c", a, keyframe=True) == 0  # a new GOP stores its own map
    reuse.stored("c", 200, a)
    assert reuse.source("c", None, keyframe=True) == 0  # a gated keyframe starts a GOP too:
    assert reuse.source("c", a, keyframe=False) == 0  # frame 200's map belongs to the last one
    assert SmapReuse(0.0).choose("c", near) is near
    with pytest.raises(ValueError):
        SmapReuse(-1.0)


@pytest.fixture(scope="module")
def drift(tmp_path_factory: pytest.TempPathFactory, shared_data: Path):
    """N frames of one webcam scene moving a pixel per frame, its reference in a cache, and x2."""
    root = tmp_path_factory.mktemp("drift")
    return root, webcam_pan(root, N), load_model("x2")


def _encode(root: Path, frames: list[np.ndarray], x2, name: str, tolerance: float) -> Path:
    return encode_pan(root / name, root / "cache", frames, TorchDownscaler(x2), ModelInfo.of(x2, "x2"),
                      lr_codec="h265", lr_quality=24, lr_gop=GOP, smap_reuse=tolerance)


def _rebuild(root: Path, bag: Path, x2) -> list[ReconstructedFrame | FrameFailure]:
    with ReferenceCache.open(root / "cache", readonly=True) as cache:
        return list(Reconstructor(x2, cache, batch_size=2).run(bag))


def test_a_video_bag_stores_a_map_per_gop_and_rebuilds_every_frame(drift) -> None:
    root, frames, x2 = drift
    shared, own = _encode(root, frames, x2, "shared", 2.0), _encode(root, frames, x2, "own", 0.0)
    metas = [fmt.meta_from_msg(m) for t, _, m in read_messages(shared) if t == fmt.meta_topic(CAM)]
    assert all(m.has_smap for m in metas), "the revisit must pass the gate for this test to mean anything"
    sources = [m.smap_from_stamp_ns for m in metas]
    assert sources[0] == 0 and sources[GOP] == 0  # keyframes store their map
    assert any(sources), "consecutive frames of one scene must share maps"
    for i, src in enumerate(sources):
        if src:  # names an earlier frame of its own GOP, which stores a map
            j = (src - T0) // 100_000_000
            assert j // GOP == i // GOP and j < i and sources[j] == 0
            assert metas[i].format == fmt.record_format(metas[i]) in fmt.SHORT_FORMATS
    n_maps = sum(t == fmt.smap_topic(CAM) for t, _, _ in read_messages(shared))
    assert n_maps == sources.count(0) < N
    assert sum(t == fmt.smap_topic(CAM) for t, _, _ in read_messages(own)) == N
    out_shared, out_own = _rebuild(root, shared, x2), _rebuild(root, own, x2)
    assert all(isinstance(f, ReconstructedFrame) for f in out_shared + out_own)
    pairs = enumerate(zip(out_shared, out_own, strict=True))
    gains = [psnr(frames[i], a.rgb) - psnr(frames[i], b.rgb) for i, (a, b) in pairs]
    assert min(gains) > -0.2, gains  # conditioning on a map a few frames old costs next to nothing


def test_frames_whose_shared_map_is_lost_fail_and_other_gops_survive(drift) -> None:
    """No frame is ever rebuilt with a map it was not coded with: losing the S_map message of the
    frame that stores it fails that frame and every frame sharing it (their GOP's chain is broken
    too); the other GOP rebuilds."""
    root, frames, x2 = drift
    bag = _encode(root, frames, x2, "lost", 2.0)
    metas = {msgs.stamp_ns(m): fmt.meta_from_msg(m) for t, _, m in read_messages(bag) if t == fmt.meta_topic(CAM)}
    lost = next(m.smap_from_stamp_ns for m in metas.values() if m.smap_from_stamp_ns)
    assembler = FrameAssembler(meta_closes=True)
    results = []
    for topic, log_time, msg in read_messages(bag):
        parts = fmt.split_topic(topic)
        if parts is None or (parts[1] == "smap" and msgs.stamp_ns(msg) == lost):
            continue
        results += assembler.add(parts[0], parts[1], msg, log_time)
    failed = {f.stamp_ns for f in results if isinstance(f, FrameFailure)}
    sharing = {s for s, m in metas.items() if m.smap_from_stamp_ns == lost}
    assert sharing and lost in failed and sharing <= failed
    gop = (lost - T0) // 100_000_000 // GOP
    survivors = {s for s in metas if (s - T0) // 100_000_000 // GOP != gop}
    assert survivors and not survivors & failed
