"""Average two trained weight files of one architecture (a two-member "model soup").

    python tools/average_weights.py --a runs/pf/x2_lossy_noref/final.safetensors \
        --b refscale_model/weights/refscale_x2_lossy_noref.safetensors --out runs/pf/noref_avg.safetensors

Why: a continuation trained for one codec family (e.g. mostly video) can lose ground on the others.
Averaging it with the weights it started from keeps most of what each is good at, at no cost in
parameters or speed. Both files must hold the same architecture and the same keys; a model with a
no-reference fallback attached is refused (attach the fallback after averaging). The result is
written with `save_weights` (safetensors, sidecar, content hash).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's package

from refscale_model.models.refscale import RefScale
from refscale_model.weights import load_weights, save_weights, sha256_file


def average(a: RefScale, b: RefScale, weight_a: float = 0.5) -> RefScale:
    """`a` with every floating-point tensor replaced by weight_a·a + (1 − weight_a)·b (integer buffers from `a`)."""
    if not 0.0 <= weight_a <= 1.0:
        raise ValueError(f"weight of a must be in [0, 1], got {weight_a}")
    if a.config != b.config:
        raise ValueError("the two files hold different architectures (their configs differ)")
    if a.config.noref_fallback:  # the configs are equal: neither or both carry one
        raise ValueError("average models without a fallback attached; attach it afterwards")
    sa, sb = a.state_dict(), b.state_dict()
    if set(sa) != set(sb):
        raise ValueError(f"the two files hold different tensors: {sorted(set(sa) ^ set(sb))[:4]} …")
    mixed = {k: (weight_a * sa[k].double() + (1 - weight_a) * sb[k].double()).to(sa[k].dtype)
             if sa[k].is_floating_point() else sa[k] for k in sa}
    a.load_state_dict(mixed)
    return a


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--a", type=Path, required=True, help="first .safetensors (its sidecar's config is kept)")
    p.add_argument("--b", type=Path, required=True, help="second .safetensors")
    p.add_argument("--weight-a", type=float, default=0.5, help="weight of --a (default 0.5)")
    p.add_argument("--out", type=Path, required=True, help="averaged .safetensors")
    args = p.parse_args(argv)
    model = average(load_weights(args.a), load_weights(args.b), args.weight_a)
    provenance = {"averaged": {"a": sha256_file(args.a), "b": sha256_file(args.b), "weight_a": args.weight_a}}
    sha = save_weights(model, args.out, extra=provenance)
    print(json.dumps({"out": str(args.out), "sha256": sha, **provenance}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
