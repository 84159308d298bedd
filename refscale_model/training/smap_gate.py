"""Calibrate `RefScaleConfig.smap_gate` for a trained encoder from *unrelated* training pairs.

The gate answers "is this reference recognisably the same place?" with a false-match rate
rather than a tuned number: pair each training target with a training image of another set
(certainly a different place), take the frame's mean pooled similarity, and set the gate at a
high percentile of those means. A reference whose map is no more similar than that is treated
as unrelated: its map is zeroed, costs no bytes, and the frame is rebuilt reference-free.
Validation pairs are never read, so the gate cannot be tuned to the validation split.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from refscale_model.evaluation.pairs import to_tensor
from refscale_model.models.refscale import RefScale
from refscale_model.training.data import read_training_image, split_pairs


@dataclass(frozen=True)
class GateCalibration:
    gate: float
    """The `quantile` of unrelated frames' mean similarity, rounded up to 3 decimals."""
    quantile: float
    unrelated_means: list[float]
    """Mean pooled similarity of each unrelated (target, other-set image) pair."""

    def describe(self) -> str:
        m = np.asarray(self.unrelated_means)
        return (
            f"smap_gate {self.gate:.3f} = {self.quantile:.0%} quantile of the mean S_map of {len(m)} unrelated "
            f"training pairs (each target with an image of another set; their means {m.min():.3f}–{m.max():.3f}, "
            f"median {np.median(m):.3f})"
        )


@torch.no_grad()
def mean_similarity(model: RefScale, target: np.ndarray, reference: np.ndarray) -> float:
    """Mean of the pooled, ungated S_map for two RGB images cropped to a common whole-cell size."""
    assert model.encoder is not None, "a no-reference model has no similarity map"
    cell = model.config.smap_cell
    h = min(target.shape[0], reference.shape[0]) // cell * cell
    w = min(target.shape[1], reference.shape[1]) // cell * cell
    if h == 0 or w == 0:
        raise ValueError(f"images smaller than one S_map cell ({cell} px)")
    crop = (slice(0, h), slice(0, w))
    return float(model.similarity(to_tensor(target[crop]), to_tensor(reference[crop]), gate=0.0).mean())


def calibrate_smap_gate(
    model: RefScale,
    data_root: Path,
    pairs_per_set: int = 64,
    quantile: float = 0.95,
    max_side: int = 640,
    seed: int = 0,
) -> GateCalibration:
    """Gate for `model` from up to `pairs_per_set` unrelated pairs per set of `data_root` (training split)."""
    model = model.eval()
    rng = random.Random(seed)
    sets = sorted(d.name for d in data_root.iterdir() if (d / "pairs.csv").is_file())
    targets = {s: sorted({r.target for r in split_pairs(data_root / s)[0]}) for s in sets}
    sets = [s for s in sets if targets[s]]
    if len(sets) < 2:
        raise ValueError(f"calibration needs training images of at least two sets under {data_root}")
    means: list[float] = []
    for set_name in sets:
        others = [p for s in sets if s != set_name for p in targets[s]]
        for target in rng.sample(targets[set_name], min(pairs_per_set, len(targets[set_name]))):
            other = rng.choice(others)
            means.append(
                mean_similarity(model, read_training_image(target, max_side), read_training_image(other, max_side))
            )
    gate = float(np.ceil(np.quantile(means, quantile) * 1000) / 1000)
    return GateCalibration(gate=gate, quantile=quantile, unrelated_means=means)


__all__ = ["GateCalibration", "calibrate_smap_gate", "mean_similarity"]
