"""How much each set's references have in common with their targets, measured two independent ways.

A reference can only lower the cost of a frame if it shows matchable content. This prints, per set
and split, (a) what classical registration (ORB + RANSAC, phase correlation; no learning) finds
between target and reference, and (b) the shipped encoder's mean S_map for the pair against that
for an unrelated image of another set, with the share of pairs that pass the shipped gate.
A set where both say "unrelated" cannot gain from its references: RefScale codes its frames
with the no-reference fallback and ties the no-reference INN there.

    python benchmarks/reference_matchability.py [--weights x2] [--limit 20] [--splits train val]
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import numpy as np
import torch

from refscale_model.evaluation.pairs import reference_for_frame
from refscale_model.registration import RegistrationConfig, prepare_features, register
from refscale_model.training.data import default_data_root, read_training_image, split_pairs
from refscale_model.training.smap_gate import mean_similarity
from refscale_model.weights import load_model

MAX_SIDE = 640
"""Images are compared at this long side, as the gate was calibrated (`calibrate_smap_gate`)."""


def read_for(target: np.ndarray, path: Path, reg_config: RegistrationConfig) -> np.ndarray:
    """An image brought to the target's size as `refscale eval` brings a reference (no registration)."""
    image, _ = reference_for_frame(target, read_training_image(path, MAX_SIDE), False, reg_config)
    assert image is not None
    return image


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", default="x2")
    p.add_argument("--sets", nargs="*", default=None)
    p.add_argument("--splits", nargs="+", default=["train", "val"], choices=["train", "val"])
    p.add_argument("--limit", type=int, default=20, help="pairs per set and split (evenly spaced)")
    p.add_argument("--seed", type=int, default=0, help="picks the unrelated images")
    args = p.parse_args()
    torch.set_grad_enabled(False)
    model = load_model(args.weights).eval()
    gate = model.config.smap_gate
    reg_config = RegistrationConfig()
    root = default_data_root()
    sets = args.sets or sorted(d.name for d in root.iterdir() if (d / "pairs.csv").is_file())
    splits = {s: split_pairs(root / s) for s in sets}
    rng = random.Random(args.seed)
    print(
        f"weights {args.weights} (sha256 {str(model.weights_sha256)[:12]}), gate {gate:.3f}, "
        f"registration min confidence {reg_config.min_confidence}\n"
    )
    print(
        "| set | split | pairs | registered (conf ≥ min) | median confidence | mean S_map aligned "
        "| mean S_map unrelated | aligned above gate |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for set_name in sets:
        others = [r.target for s in sets if s != set_name for r in splits[s][0]]
        for split in args.splits:
            rows = splits[set_name][0 if split == "train" else 1]
            if not rows:
                continue
            rows = [rows[i] for i in np.linspace(0, len(rows) - 1, min(args.limit, len(rows))).astype(int)]
            conf, aligned, unrelated = [], [], []
            for row in rows:
                target = read_training_image(row.target, MAX_SIDE)
                reference = read_for(target, row.reference, reg_config)
                conf.append(register(target, prepare_features(reference), reg_config).confidence)
                aligned.append(mean_similarity(model, target, reference))
                unrelated.append(mean_similarity(model, target, read_for(target, rng.choice(others), reg_config)))
            c, a = np.array(conf), np.array(aligned)
            above = np.mean(a >= gate) if gate > 0 else float("nan")
            print(
                f"| {set_name} | {split} | {len(rows)} | {np.mean(c >= reg_config.min_confidence):.0%} "
                f"| {np.median(c):.2f} | {a.mean():.3f} | {np.mean(unrelated):.3f} | {above:.0%} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
