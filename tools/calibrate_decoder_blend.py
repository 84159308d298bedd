"""Fit a codec-aware model's decoder blend α(LR PSNR) on training crops and write it into its sidecar.

    python tools/calibrate_decoder_blend.py --weights refscale_model/weights/refscale_x2_lossy.safetensors \\
        --noref-sidecar refscale_model/weights/refscale_x2_lossy_noref.safetensors

The weights file (and so its sha256, config and ONNX export) is unchanged: the sidecar gains
`decoder_blend` = {"main", "fallback", "calibration"} (`models.decoder_blend`,
`training.decoder_blend_fit`). With `--noref-sidecar`, the fallback's table is also written as the
"main" table of that standalone no-reference file, when it holds the same network (same sha256).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from refscale_model.training.data import default_data_root
from refscale_model.training.decoder_blend_fit import blend_samples, fit_decoder_blend, training_crops
from refscale_model.weights import DECODER_BLEND_KEY, load_weights, read_sidecar, sidecar_path


def _write(path: Path, entry: dict) -> None:
    data = read_sidecar(path)
    data[DECODER_BLEND_KEY] = entry
    sidecar_path(path).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", type=Path, required=True, help="codec-aware .safetensors (its sidecar is updated)")
    p.add_argument("--noref-sidecar", type=Path, default=None,
                   help="the standalone .safetensors of the attached fallback: gets the fallback's table")
    p.add_argument("--data", type=Path, default=None, help="data root (default ../shared/data)")
    p.add_argument("--per-set", type=int, default=6, help="training pairs per set")
    p.add_argument("--crop", type=int, default=512)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model = load_weights(args.weights)
    if not model.config.has_decoder:
        raise SystemExit(f"{args.weights.name} has no decoder-side networks: nothing to blend")
    main_samples, fallback_samples, crops, t0 = [], [], 0, time.time()
    for set_name, hr, ref in training_crops(args.data or default_data_root(), args.per_set, args.crop):
        samples, referenced = blend_samples(model, hr, ref)
        if referenced or model.fallback is None:
            main_samples += samples
        if model.fallback is not None:
            fallback_samples += blend_samples(model.fallback, hr, None)[0]
        crops += 1
        print(f"{set_name}: {crops} crops, {time.time() - t0:.0f} s", flush=True)
    entry: dict = {}
    fit = fit_decoder_blend(main_samples)
    entry["main"] = fit.blend.to_json()
    text = [f"main: {fit.describe(len(main_samples))}"]
    if model.fallback is not None:
        fb = fit_decoder_blend(fallback_samples)
        entry["fallback"] = fb.blend.to_json()
        text.append(f"fallback: {fb.describe(len(fallback_samples))}")
    entry["calibration"] = (f"tools/calibrate_decoder_blend.py, {crops} training crops ({args.crop} px, "
                            f"{args.per_set} per set, validation sets excluded); " + "; ".join(text))
    _write(args.weights, entry)
    if args.noref_sidecar is not None and "fallback" in entry:
        noref = read_sidecar(args.noref_sidecar)
        fallback_sha = read_sidecar(args.weights).get("noref_fallback", {}).get("sha256")
        if noref.get("sha256") != fallback_sha:
            raise SystemExit(f"{args.noref_sidecar.name} is not the attached fallback (sha256 differs)")
        _write(args.noref_sidecar, {"main": entry["fallback"], "calibration": entry["calibration"]})
    print(json.dumps(entry, indent=1))


if __name__ == "__main__":
    main()
