"""Choosing the frame's reference among the nearest cache entries (`pipeline.reference_choice`).

Real revisit images (walk_gardenspoint_sfu) in a real SQLite reference cache: the entry closest by
GPS is an unrelated place, the true revisit lies 3 m further. The nearest-only policy takes the
unrelated one; registering both takes the revisit, in the library and in a real `FrameEncoder`.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import load_pair

from refscale_model import RefScale, RefScaleConfig, save_weights
from refscale_model.backends.torch_backend import TorchDownscaler
from refscale_model.bags import BagWriter, msgs
from refscale_model.geo import M_PER_DEG_LAT
from refscale_model.pipeline import FrameEncoder, ModelInfo
from refscale_model.pipeline.reference_choice import ReferenceLoader, choose_reference
from refscale_model.refcache import ReferenceCache
from refscale_model.refcache.prepared import load_prepared, prepare_reference, prepared_path
from refscale_model.registration import RegistrationConfig, prepare_features

CAM = "/cam/front/image_raw"
LAT, LON = 47.0, 8.0
FURTHER_LAT = LAT + 3.0 / M_PER_DEG_LAT  # 3 m north


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> tuple[np.ndarray, Path]:
    """(frame, cache): the unrelated place at the frame's fix (id 1), its true revisit 3 m on (id 2)."""
    frame, revisit = load_pair("walk_gardenspoint_sfu", 0)
    other = load_pair("satellite_spacenet7_monthly", 0)[1]
    other = cv2.resize(other, (revisit.shape[1], revisit.shape[0]), interpolation=cv2.INTER_AREA)
    root = tmp_path_factory.mktemp("choice")
    with ReferenceCache.open(root / "cache", create=True) as cache:
        cache.add(other, CAM, LAT, LON, 0.0, 1, "route", "earlier")
        cache.add(revisit, CAM, FURTHER_LAT, LON, 0.0, 2, "route", "earlier")
    return frame, root / "cache"


def _loader(config: RegistrationConfig):
    def load(entry):
        rgb = entry.load_rgb()
        return rgb, prepare_features(rgb, config)
    return load


def test_near_lists_entries_closest_first(scene: tuple[np.ndarray, Path]) -> None:
    _, cache_dir = scene
    with ReferenceCache.open(cache_dir, readonly=True) as cache:
        assert [e.id for e in cache.near(CAM, LAT, LON, 0.0)] == [1, 2]
        assert [e.id for e in cache.near(CAM, LAT, LON, 0.0, limit=1)] == [1]
        assert cache.nearest(CAM, LAT, LON, 0.0).id == 1
        assert [e.id for e in cache.near(CAM, FURTHER_LAT, LON, 0.0)] == [2, 1]
        assert cache.near(CAM, None, LON, 0.0) == []
        with pytest.raises(ValueError, match="limit"):
            cache.near(CAM, LAT, LON, 0.0, limit=0)


def test_the_best_registering_candidate_wins_over_the_closest(scene: tuple[np.ndarray, Path]) -> None:
    frame, cache_dir = scene
    config = RegistrationConfig()
    with ReferenceCache.open(cache_dir, readonly=True) as cache:
        entries = cache.near(CAM, LAT, LON, 0.0)
        both = choose_reference(frame, entries, _loader(config), config)
        closest = choose_reference(frame, entries[:1], _loader(config), config)
    assert both is not None and closest is not None
    assert both.entry.id == 2 and both.registration.confidence >= config.min_confidence
    assert both.warped is not None and both.warped.shape == frame.shape
    # nearest only: the unrelated place does not register; the usual policy keeps it unwarped
    assert closest.entry.id == 1 and closest.registration.method == "identity"
    assert choose_reference(frame, [], _loader(config), config) is None


def test_nothing_registers_falls_back_to_the_closest(scene: tuple[np.ndarray, Path]) -> None:
    frame, cache_dir = scene
    flat = np.full_like(frame, 128)  # no features, no texture: no registration can succeed
    config = RegistrationConfig(when_unregistered="none")
    with ReferenceCache.open(cache_dir, readonly=True) as cache:
        entries = cache.near(CAM, LAT, LON, 0.0)
        choice = choose_reference(flat, entries, _loader(config), config)
        off = RegistrationConfig(estimators=(), fallback="identity")
        unregistered = choose_reference(frame, entries, _loader(off), off)
    assert choice is not None and choice.entry.id == 1 and choice.warped is None
    assert unregistered is not None and unregistered.entry.id == 1  # registration off: the closest


def _copy_with_features(source: Path, dest: Path) -> Path:
    """A copy of the scene's cache with every entry's registration features stored, as `cache build` does."""
    import shutil

    shutil.copytree(source, dest)
    with ReferenceCache.open(dest) as cache:
        for entry in cache.entries():
            prepare_reference(entry, RegistrationConfig())
    return dest


@pytest.mark.parametrize(("candidates", "expected", "stored"), [(1, "1", False), (2, "2", False), (2, "2", True)])
def test_encoder_records_the_chosen_reference(tmp_path: Path, scene: tuple[np.ndarray, Path],
                                              candidates: int, expected: str, stored: bool) -> None:
    """... and with features stored in the cache (`cache build`) it decodes only the reference it uses."""

    frame, cache_dir = scene
    if stored:
        cache_dir = _copy_with_features(cache_dir, tmp_path / "cache")
    torch.manual_seed(0)
    model = RefScale(RefScaleConfig(scale=2, blocks=(1,), hidden=8, encoder_channels=8))
    save_weights(model, tmp_path / "tiny.safetensors")
    with ReferenceCache.open(cache_dir, readonly=True) as cache:
        enc = FrameEncoder(BagWriter(tmp_path / "bag"), TorchDownscaler(model), ModelInfo.of(model, "tiny"),
                           cache=cache, reference_candidates=candidates)
        s = 1_700_000_000_000_000_000
        enc.passthrough("/gps/fix", msgs.NAV_SAT_FIX, msgs.navsatfix_msg(LAT, LON, 500.0, s), s)
        res = enc.encode(CAM, msgs.image_msg(frame, s, "cam_front"), s)
        enc.close()
    assert res.has_reference and res.reference_id == expected
    loader = enc._load_reference  # noqa: SLF001 - how many references the encoder decoded
    assert loader.loaded == (1 if stored else candidates) and loader.from_store == (candidates if stored else 0)


def test_encoder_refuses_no_candidates(tmp_path: Path) -> None:
    model = RefScale(RefScaleConfig(scale=2, blocks=(1,), hidden=8, encoder_channels=8))
    with pytest.raises(ValueError, match="reference_candidates"):
        FrameEncoder(BagWriter(tmp_path / "bag"), TorchDownscaler(model), ModelInfo.of(model, "tiny"),
                     reference_candidates=0)


def test_stored_features_rank_without_decoding_and_choose_the_same(tmp_path: Path,
                                                                   scene: tuple[np.ndarray, Path]) -> None:
    """Features written beside the images (as `cache build` does) replace decoding every candidate: the
    loser is never decoded, and the choice and its matrix are exactly those of computing them on the car."""
    import shutil

    frame, source = scene
    config = RegistrationConfig()
    _copy_with_features(source, tmp_path / "cache")
    with ReferenceCache.open(tmp_path / "cache") as cache:
        assert cache.verify(decode=False).orphans == []  # the feature files belong to their images
    with ReferenceCache.open(source, readonly=True) as plain, ReferenceCache.open(tmp_path / "cache",
                                                                                   readonly=True) as stored:
        computed_loader, stored_loader = ReferenceLoader(config), ReferenceLoader(config)
        computed = choose_reference(frame, plain.near(CAM, LAT, LON, 0.0), computed_loader, config)
        entries = stored.near(CAM, LAT, LON, 0.0)
        chosen = choose_reference(frame, entries, stored_loader, config)
        for entry in entries:  # stored = computed, array for array
            again = prepare_features(entry.load_rgb(), config)
            kept = load_prepared(entry, config)
            assert kept is not None
            np.testing.assert_array_equal(kept.grey, again.grey)
            np.testing.assert_array_equal(kept.keypoints, again.keypoints)
            np.testing.assert_array_equal(kept.descriptors, again.descriptors)
    assert computed is not None and chosen is not None and chosen.entry.id == computed.entry.id == 2
    np.testing.assert_array_equal(chosen.registration.matrix, computed.registration.matrix)
    np.testing.assert_array_equal(chosen.warped, computed.warped)
    assert (stored_loader.from_store, stored_loader.loaded) == (2, 1)  # only the winner was decoded
    assert (computed_loader.from_store, computed_loader.loaded) == (0, 2)
    # a damaged or foreign feature file is ignored (recomputed from the image), never trusted
    with ReferenceCache.open(tmp_path / "cache", readonly=True) as stored:
        entry = stored.near(CAM, LAT, LON, 0.0)[1]
        path = prepared_path(entry, config)
        path.write_bytes(b"not an npz")
        assert load_prepared(entry, config) is None
        other = stored.near(CAM, LAT, LON, 0.0)[0]
        shutil.copy(prepared_path(other, config), path)  # another image's features under this name
        assert load_prepared(entry, config) is None
        again = choose_reference(frame, stored.near(CAM, LAT, LON, 0.0), ReferenceLoader(config), config)
    assert again is not None and again.entry.id == 2
    np.testing.assert_array_equal(again.registration.matrix, computed.registration.matrix)
    # a feature file whose image no entry names is an orphan like the image itself
    stray = path.with_name("ab" * 32 + ".x.npz")
    stray.write_bytes(b"x")
    with ReferenceCache.open(tmp_path / "cache") as cache:
        assert cache.verify(decode=False).orphans == [stray]


def test_a_cache_copy_carries_the_stored_features(tmp_path: Path, scene: tuple[np.ndarray, Path]) -> None:
    """`cache export` (depot -> car) takes the feature files along, so the car ranks without decoding."""

    from refscale_model.refcache.distribution import export_cache

    _, source = scene
    config = RegistrationConfig()
    _copy_with_features(source, tmp_path / "master")
    with ReferenceCache.open(tmp_path / "master") as master:
        export_cache(master, tmp_path / "car", list(master.entries()))
    with ReferenceCache.open(tmp_path / "car", readonly=True) as car:
        assert all(load_prepared(e, config) is not None for e in car.entries())
        assert car.verify(decode=False).ok and car.verify(decode=False).orphans == []


def test_cache_prepare_adds_features_to_an_older_cache(tmp_path: Path, scene: tuple[np.ndarray, Path],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """`refscale cache prepare` stores the features of a cache built before `build` wrote them; a
    missing image is reported (exit 1) and the others still get theirs."""
    import shutil

    from refscale_model.cli import main

    _, source = scene
    shutil.copytree(source, tmp_path / "cache")
    config = RegistrationConfig()
    with ReferenceCache.open(tmp_path / "cache", readonly=True) as cache:
        entries = list(cache.entries())
    assert all(load_prepared(e, config) is None for e in entries)
    assert main(["cache", "prepare", str(tmp_path / "cache")]) == 0
    assert all(load_prepared(e, config) is not None for e in entries)
    assert "entries with stored features: 2, skipped: 0" in capsys.readouterr().out
    prepared_path(entries[0], config).unlink()
    entries[0].path.unlink()  # the image is gone: reported, not fatal for the rest
    assert main(["cache", "prepare", str(tmp_path / "cache")]) == 1
    assert "SKIPPED" in capsys.readouterr().out and load_prepared(entries[1], config) is not None
