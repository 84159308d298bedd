"""safetensors + sidecar round trip; tampered, foreign and pickled files are refused."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

from refscale_model import RefScale, RefScaleConfig, WeightsError, load_model, load_weights, save_weights
from refscale_model.weights import sha256_file


def small_model() -> RefScale:
    torch.manual_seed(1)
    model = RefScale(RefScaleConfig(scale=4, blocks=(1, 2), hidden=8, encoder_channels=8)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return model


def test_round_trip_preserves_outputs(tmp_path: Path) -> None:
    model = small_model()
    sha = save_weights(model, tmp_path / "m.safetensors", extra={"note": "test"})
    assert sha == sha256_file(tmp_path / "m.safetensors")
    side = json.loads((tmp_path / "m.json").read_text())
    assert side["sha256"] == sha and side["config"]["scale"] == 4 and side["note"] == "test"
    loaded = load_weights(tmp_path / "m.safetensors")
    assert loaded.weights_sha256 == sha and loaded.config == model.config
    hr = torch.rand(1, 3, 32, 32)
    a, b = model.downscale(hr, hr), loaded.downscale(hr, hr)
    assert torch.equal(a.lr, b.lr) and torch.equal(a.smap, b.smap)
    assert load_model(tmp_path / "m.safetensors").weights_sha256 == sha


def test_tampered_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    save_weights(small_model(), path)
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="sha256"):
        load_weights(path)


def test_other_formats_and_missing_sidecar_are_refused(tmp_path: Path) -> None:
    pickled = tmp_path / "m.pt"
    pickled.write_bytes(pickle.dumps({"weight": [1, 2, 3]}))
    with pytest.raises(WeightsError, match="only .safetensors"):
        load_weights(pickled)
    path = tmp_path / "m.safetensors"
    save_weights(small_model(), path)
    (tmp_path / "m.json").unlink()
    with pytest.raises(WeightsError, match="sidecar"):
        load_weights(path)


def test_unknown_preset_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown model"):
        load_model("x3")
    assert load_model("x2", allow_untrained=True).config.scale == 2


def test_average_weights_tool_mixes_two_files_of_one_architecture(tmp_path: Path) -> None:
    """tools/average_weights.py: the midpoint of two weight files, written as safetensors with provenance;
    files of another architecture are refused."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "average_weights", Path(__file__).resolve().parents[1] / "tools" / "average_weights.py")
    assert spec is not None and spec.loader is not None
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    average_main = tool.main

    a, b = small_model(), small_model()
    with torch.no_grad():
        for p in b.parameters():
            p.add_(0.1)
    save_weights(a, tmp_path / "a.safetensors")
    save_weights(b, tmp_path / "b.safetensors")
    assert average_main(["--a", str(tmp_path / "a.safetensors"), "--b", str(tmp_path / "b.safetensors"),
                         "--out", str(tmp_path / "avg.safetensors")]) == 0
    mixed = load_weights(tmp_path / "avg.safetensors")
    for (name, pa), pb, pm in zip(a.named_parameters(), b.parameters(), mixed.parameters(), strict=True):
        assert torch.allclose(pm, (pa + pb) / 2, atol=1e-6), name
    side = json.loads((tmp_path / "avg.json").read_text())
    assert side["averaged"]["a"] == sha256_file(tmp_path / "a.safetensors") and side["averaged"]["weight_a"] == 0.5
    other = RefScale(RefScaleConfig(scale=4, blocks=(1, 2), hidden=16, encoder_channels=8))
    save_weights(other, tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="different architectures"):
        average_main(["--a", str(tmp_path / "a.safetensors"), "--b", str(tmp_path / "other.safetensors"),
                      "--out", str(tmp_path / "bad.safetensors")])
