"""Attach a trained no-reference INN to a trained RefScale model as its fallback, in one weights file.

    python tools/attach_noref_fallback.py --weights runs/x2/gated.safetensors \
        --fallback runs/x2-noref/final.safetensors --out runs/x2/shipped.safetensors

Frames without a usable reference (none found, or an S_map that is gated to all zero) are then
coded by the no-reference INN instead of RefScale's own S_map = 0 mode (`RefScaleConfig.noref_fallback`).
Both networks keep their trained weights; the sidecar names the fallback's file and sha256.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from refscale_model.models.refscale import attach_noref_fallback
from refscale_model.weights import load_weights, save_weights, sidecar_extra


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", type=Path, required=True, help="trained RefScale (.safetensors)")
    p.add_argument("--fallback", type=Path, required=True, help="its trained no-reference INN (.safetensors)")
    p.add_argument("--out", type=Path, required=True, help="combined copy (.safetensors)")
    args = p.parse_args()
    noref = load_weights(args.fallback)
    combined = attach_noref_fallback(load_weights(args.weights), noref)
    sha = save_weights(combined, args.out, extra={
        **sidecar_extra(args.weights), "noref_fallback": {"file": args.fallback.name, "sha256": noref.weights_sha256}})
    print(json.dumps({"out": str(args.out), "sha256": sha, "fallback_sha256": noref.weights_sha256}))


if __name__ == "__main__":
    main()
