"""Weights on disk: safetensors + a JSON sidecar with the config and the file's sha256.

Nothing is ever unpickled: only `.safetensors` files load, and only when their hash matches.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from refscale_model.config import RefScaleConfig
from refscale_model.models.decoder_blend import DecoderBlend
from refscale_model.models.refscale import RefScale

WEIGHTS_FORMAT = "refscale-weights/1"
PACKAGED_DIR = Path(__file__).resolve().parent / "weights"
PRESET_FILES = {
    "x2": "refscale_x2",
    "x4": "refscale_x4",
    "x2-noref": "refscale_x2_noref",
    "x4-noref": "refscale_x4_noref",
    "x2-lossy": "refscale_x2_lossy",  # codec-aware (JPEG/WebP LR): refscale_model/weights/refscale_x2_lossy.md
    "x2-lossy-noref": "refscale_x2_lossy_noref",
}


class WeightsError(ValueError):
    """A weights file that is not ours, was altered, or does not match its config."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sidecar_path(path: Path) -> Path:
    return path.with_suffix(".json")


def save_weights(model: RefScale, path: str | Path, extra: dict[str, Any] | None = None) -> str:
    """Write `path` (.safetensors) and its JSON sidecar; return the file's sha256."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise WeightsError(f"weights must be saved as .safetensors, got {path.name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    config_json = json.dumps(model.config.to_dict(), sort_keys=True)
    # one metadata key: safetensors orders several keys differently from run to run, which would
    # change the file's sha256 for identical weights
    save_file(state, str(path), metadata={WEIGHTS_FORMAT: config_json})
    sha = sha256_file(path)
    sidecar = {
        "format": WEIGHTS_FORMAT,
        "file": path.name,
        "sha256": sha,
        "config": model.config.to_dict(),
        "parameters": model.num_parameters(),
        **(extra or {}),
    }
    sidecar_path(path).write_text(json.dumps(sidecar, indent=2, sort_keys=True) + "\n")
    model.weights_sha256 = sha
    return sha


SIDECAR_DERIVED = ("format", "file", "sha256", "config", "parameters")
"""Sidecar keys `save_weights` writes from the model and file themselves; the rest is provenance."""


def sidecar_extra(path: str | Path) -> dict[str, Any]:
    """The provenance in a weights file's sidecar (steps, calibration, ...), to carry into a re-saved copy."""
    return {k: v for k, v in read_sidecar(path).items() if k not in SIDECAR_DERIVED}


def read_sidecar(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    side = sidecar_path(path)
    if not side.is_file():
        raise WeightsError(f"missing config sidecar {side.name} next to {path.name}")
    data = json.loads(side.read_text())
    if data.get("format") != WEIGHTS_FORMAT:
        raise WeightsError(f"{side.name} is not a RefScale weights sidecar")
    return data


def load_weights(path: str | Path, map_location: str = "cpu") -> RefScale:
    """Load a model from `.safetensors` + sidecar after checking the sha256; eval mode."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise WeightsError(f"refusing to load {path.name}: only .safetensors weights are accepted")
    if not path.is_file():
        raise FileNotFoundError(path)
    sidecar = read_sidecar(path)
    actual = sha256_file(path)
    if actual != sidecar["sha256"]:
        raise WeightsError(f"{path.name}: sha256 {actual[:12]}… does not match its sidecar ({sidecar['sha256'][:12]}…)")
    try:
        state = load_file(str(path), device=map_location)
    except Exception as exc:  # safetensors raises several types for malformed headers
        raise WeightsError(f"{path.name} is not a valid safetensors file: {exc}") from exc
    model = RefScale(RefScaleConfig.from_dict(sidecar["config"]))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise WeightsError(f"{path.name} does not fit its config: missing {missing}, unexpected {unexpected}")
    model.weights_sha256 = actual
    attach_decoder_blend(model, sidecar.get(DECODER_BLEND_KEY))
    return model.eval()


DECODER_BLEND_KEY = "decoder_blend"
"""Sidecar key: {"main": knots, "fallback": knots, "calibration": text} (`models.decoder_blend`). A table is
calibration, not weights: it leaves the sha256, the config and the ONNX graphs alone."""


def attach_decoder_blend(model: RefScale, entry: dict[str, Any] | None) -> None:
    """Give `model` (and its fallback) the decoder blend tables of a sidecar entry; None: none."""
    entry = entry or {}
    for net, key in ((model, "main"), (model.fallback, "fallback")):
        if net is not None and net.config.has_decoder:
            knots = entry.get(key)
            net.decoder_blend = DecoderBlend.from_json(knots) if knots else None


def packaged_weights(name: str) -> Path:
    if name not in PRESET_FILES:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(PRESET_FILES)} or a path")
    return PACKAGED_DIR / f"{PRESET_FILES[name]}.safetensors"


def load_model(name_or_path: str | Path = "x2", allow_untrained: bool = False) -> RefScale:
    """A shipped model ('x2', 'x4', 'x2-noref', 'x4-noref') or a `.safetensors` path.

    With `allow_untrained`, a preset whose weights are not shipped yet comes back freshly
    initialised (`weights_sha256` None) instead of raising.
    """
    if str(name_or_path) in PRESET_FILES:
        path = packaged_weights(str(name_or_path))
        if not path.is_file():
            if allow_untrained:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(0)  # the same "untrained" model on every load (encoder and decoder agree)
                    return RefScale(RefScaleConfig.preset(str(name_or_path))).eval()
            raise FileNotFoundError(f"no shipped weights for {name_or_path!r} at {path}")
        return load_weights(path)
    path = Path(name_or_path)
    if path.suffix == "" and not path.exists():
        raise ValueError(f"unknown model {name_or_path!r}; choose one of {sorted(PRESET_FILES)} or a .safetensors path")
    return load_weights(path)
