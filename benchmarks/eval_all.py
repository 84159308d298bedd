"""Evaluate shipped (or given) weights on the validation split of every set in ../shared/data.

Prints one Markdown table per scale (mean per set: bicubic / no-ref INN / RefScale) and writes the
JSON of every run. Slow on a CPU (full frames): run it by hand, not in CI.

    python benchmarks/eval_all.py --scales 2 --modes aligned shuffled --out reports/
    python benchmarks/eval_all.py --scales 2 --register --sets rail_nordland_1080p road_robotcar_seasons ...
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from refscale_model.evaluation.pairs import evaluate, read_eval_pairs
from refscale_model.training.data import default_data_root
from refscale_model.weights import load_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scales", type=int, nargs="+", default=[2, 4])
    p.add_argument("--weights", default=None, help="RefScale weights path (default: shipped x<scale>)")
    p.add_argument("--noref-weights", default=None, help="no-ref weights path (default: shipped x<scale>-noref)")
    p.add_argument("--sets", nargs="*", default=None)
    p.add_argument("--split", default="val", choices=["val", "all", "train"])
    p.add_argument("--modes", nargs="+", default=["aligned"], choices=["aligned", "shuffled", "none"])
    p.add_argument("--register", action="store_true")
    p.add_argument("--limit", type=int, default=None, help="pairs per set")
    p.add_argument("--out", type=Path, default=Path("reports"))
    args = p.parse_args()
    root = default_data_root()
    sets = args.sets or sorted(d.name for d in root.iterdir() if (d / "pairs.csv").is_file())
    for scale in args.scales:
        model = load_model(args.weights or f"x{scale}")
        noref = load_model(args.noref_weights or f"x{scale}-noref")
        print(f"\n### {scale}× — split `{args.split}`, registration {'on' if args.register else 'off'}\n")
        print("| set | mode | pairs | bicubic PSNR | no-ref PSNR | RefScale PSNR | no-ref bytes | RefScale bytes "
              "| bytes saved | RefScale SSIM | mean S_map |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for set_name in sets:
            pairs = read_eval_pairs(root / set_name / "pairs.csv", args.split)[: args.limit]
            if not pairs:
                continue
            for mode in args.modes:
                if mode == "shuffled" and len(pairs) < 2:
                    continue
                res = evaluate(model, noref, pairs, mode, args.register, progress=False)
                tag = f"x{scale}_{set_name}_{mode}{'_reg' if args.register else ''}"
                args.out.mkdir(parents=True, exist_ok=True)
                (args.out / f"{tag}.json").write_text(json.dumps(res, indent=2) + "\n")
                m = res["methods"]
                saved = 1 - m["refscale"]["bytes_per_frame"] / m["noref"]["bytes_per_frame"]
                print(f"| {set_name} | {mode} | {res['pairs']} | {m['bicubic']['psnr']:.2f} | {m['noref']['psnr']:.2f} "
                      f"| {m['refscale']['psnr']:.2f} | {m['noref']['bytes_per_frame']:.0f} "
                      f"| {m['refscale']['bytes_per_frame']:.0f} | {saved:+.1%} | {m['refscale']['ssim']:.4f} "
                      f"| {m['refscale']['smap_mean']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
