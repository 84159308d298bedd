"""The shipped default weights: present, intact, small, and better than bicubic on a real revisit."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from refscale_model.config import RefScaleConfig
from refscale_model.evaluation.pairs import EvalPair, evaluate
from refscale_model.training.smap_gate import calibrate_smap_gate
from refscale_model.weights import PRESET_FILES, load_model, packaged_weights, read_sidecar


@pytest.mark.parametrize("name", sorted(PRESET_FILES))
def test_shipped_weights_load_and_match_their_hash(name: str) -> None:
    path = packaged_weights(name)
    assert path.stat().st_size <= 25 * 1024 * 1024
    model = load_model(name)  # verifies the sha256 against the sidecar
    assert model.weights_sha256 == read_sidecar(path)["sha256"]
    assert model.config.use_reference == (not name.endswith("noref"))
    assert (path.parent / f"{path.stem}.md").is_file(), "every shipped file has a model card"
    if model.config.use_reference:  # the preset is what ships (a retrain starts from it), plus gate and fallback
        assert dataclasses.replace(model.config, smap_gate=0.0, noref_fallback=False) == RefScaleConfig.preset(name)
        assert 0 < model.config.smap_gate < 1 and "unrelated" in read_sidecar(path)["smap_gate_calibration"]


@pytest.mark.parametrize("name", ["x2", "x4"])
def test_shipped_fallback_is_the_shipped_noref_inn(name: str) -> None:
    """Frames without a usable reference are coded by the very no-ref INN the evaluation compares with."""
    model, noref = load_model(name), load_model(f"{name}-noref")
    assert model.config.noref_fallback and model.fallback is not None
    assert read_sidecar(packaged_weights(name))["noref_fallback"]["sha256"] == noref.weights_sha256
    fallback_state, noref_state = model.fallback.state_dict(), noref.state_dict()
    assert fallback_state.keys() == noref_state.keys()
    assert all(torch.equal(fallback_state[k], noref_state[k]) for k in noref_state)


@pytest.mark.parametrize("name", ["x2", "x4"])
def test_shipped_gate_is_reproduced_from_training_pairs(shared_data: Path, name: str) -> None:
    """The gate is a measurement on training data (never validation), so anyone can recompute it."""
    model = load_model(name)
    calibration = calibrate_smap_gate(model, shared_data)
    assert calibration.gate == model.config.smap_gate
    assert sorted(calibration.unrelated_means)[len(calibration.unrelated_means) // 2] < calibration.gate


@pytest.mark.parametrize("name", ["x2", "x4"])
def test_refscale_beats_bicubic_on_a_real_aligned_pair(shared_data: Path, name: str) -> None:
    set_dir = shared_data / "satellite_spacenet7_monthly"
    place = set_dir / "L15-0487E-1246N_1950_3207_13"  # a validation place: never trained on
    pair = EvalPair(place / "2018_03.png", place / "2018_02.png")
    result = evaluate(load_model(name), None, [pair], progress=False)
    assert result["methods"]["refscale"]["psnr"] > result["methods"]["bicubic"]["psnr"]
