"""Set a trained RefScale model's `smap_gate` from unrelated training pairs and save a gated copy.

    python tools/calibrate_smap_gate.py --weights runs/x2/final.safetensors --out runs/x2/gated.safetensors

The weights are unchanged; the config gains the gate and the sidecar keeps how it was measured
(`smap_gate_calibration`), which `tools/ship_weights.py` copies into the model card.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from refscale_model.training.data import default_data_root
from refscale_model.training.smap_gate import calibrate_smap_gate
from refscale_model.weights import load_weights, save_weights, sidecar_extra


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="gated copy (.safetensors)")
    p.add_argument("--data", type=Path, default=None, help="data root (default ../shared/data)")
    p.add_argument("--pairs-per-set", type=int, default=64)
    p.add_argument("--quantile", type=float, default=0.95)
    args = p.parse_args()
    model = load_weights(args.weights)
    calibration = calibrate_smap_gate(model, args.data or default_data_root(), args.pairs_per_set, args.quantile)
    model.config = dataclasses.replace(model.config, smap_gate=calibration.gate)
    provenance = {**sidecar_extra(args.weights), "smap_gate_calibration": calibration.describe()}
    save_weights(model, args.out, extra=provenance)
    print(calibration.describe())
    print(json.dumps({"gate": calibration.gate, "out": str(args.out)}))


if __name__ == "__main__":
    main()
