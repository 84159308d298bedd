"""Copy trained run weights into the package and write their model cards.

    python tools/ship_weights.py --run runs/x2 --name x2 --reports reports/ --hardware "2 CPU cores (shared)"

The card holds the training data and split, steps, batch, crop, wall time, hardware and the
validation table produced by `benchmarks/eval_all.py` (JSON files in --reports).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from refscale_model.training.data import __doc__ as SPLIT_DOC
from refscale_model.weights import load_weights, packaged_weights, save_weights

ROLE = {
    True: "RefScale (reference-conditioned)",
    False: "no-reference INN baseline (same architecture, condition always zero)",
}


def validation_table(reports: Path, scale: int) -> str:
    rows = [
        "| set | reference | pairs | bicubic PSNR | no-ref PSNR | RefScale PSNR | RefScale SSIM | no-ref bytes/frame "
        "| RefScale bytes/frame | RefScale SI of LR | no-ref SI of LR | mean S_map |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for path in sorted(reports.glob(f"x{scale}_*.json")):
        r = json.loads(path.read_text())
        m = r["methods"]
        mode = r["reference_mode"] + (" + registration" if r["register"] else "")
        set_name = path.stem.removeprefix(f"x{scale}_").rsplit("_", 1 + r["register"])[0]
        rows.append(
            f"| {set_name} | {mode} | {r['pairs']} | {m['bicubic']['psnr']:.2f} | {m['noref']['psnr']:.2f} "
            f"| {m['refscale']['psnr']:.2f} | {m['refscale']['ssim']:.4f} | {m['noref']['bytes_per_frame']:.0f} "
            f"| {m['refscale']['bytes_per_frame']:.0f} | {m['refscale']['si']:.3f} | {m['noref']['si']:.3f} "
            f"| {m['refscale']['smap_mean']:.3f} |"
        )
    return "\n".join(rows)


def default_command(name: str, run: Path, train_cfg: dict) -> str:
    command = (f"refscale train --preset {name} --out {run} --steps {train_cfg['steps']} "
               f"--checkpoint-every {train_cfg['checkpoint_every']} --threads {train_cfg['threads'] or 0}")
    if train_cfg.get("max_seconds"):
        command += f" --max-seconds {train_cfg['max_seconds']:g} --workers {train_cfg['workers']}"
    return command


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, required=True)
    p.add_argument("--name", required=True, choices=["x2", "x4", "x2-noref", "x4-noref"])
    p.add_argument("--weights", type=Path, default=None, help="default: RUN/final.safetensors")
    p.add_argument("--reports", type=Path, default=Path("reports"))
    p.add_argument("--hardware", default="2 CPU cores, shared with other jobs (no GPU was available)")
    p.add_argument("--notes", default="")
    p.add_argument("--command", default="", help="the command that trained the run (default: rebuilt from its config)")
    p.add_argument("--continued-from", type=Path, default=None,
                   help="the run RUN was started from with --init: its steps and time are added and named")
    p.add_argument("--smap-pool", type=int, default=None,
                   help="ship with this S_map storage pooling (a storage setting: the weights are unchanged)")
    args = p.parse_args()
    source = args.weights or args.run / "final.safetensors"
    model = load_weights(source)
    trained_pool = model.config.smap_pool
    if args.smap_pool:
        model.config = dataclasses.replace(model.config, smap_pool=args.smap_pool)
    train_cfg = json.loads((args.run / "train_config.json").read_text())
    source_side = json.loads(source.with_suffix(".json").read_text())
    dest = packaged_weights(args.name)
    steps = source_side.get("steps", source_side.get("step"))
    log_lines = (args.run / "log.csv").read_text().splitlines()
    wall = float(log_lines[-1].split(",")[-1]) if len(log_lines) > 1 else None
    stages = []
    if args.continued_from:
        first = json.loads((args.continued_from / "final.json").read_text())
        first_cfg = json.loads((args.continued_from / "train_config.json").read_text())
        stages = [f"{first['steps']} steps at lr {first_cfg['lr']} ({args.continued_from}), then {steps} at lr "
                  f"{train_cfg['lr']} from those weights (`--init`), each halving at "
                  f"{', '.join(f'{m:.0%}' for m in train_cfg['lr_milestones'])}"]
        steps += first["steps"]
        wall = (wall or 0.0) + first["wall_seconds"]
    extra = {"steps": steps, "batch": train_cfg["batch"], "crop": train_cfg["crop"], "wall_seconds": wall,
             "source": source.name}
    for key in ("smap_gate_calibration", "noref_fallback"):  # tools/calibrate_smap_gate.py, attach_noref_fallback.py
        if key in source_side:
            extra[key] = source_side[key]
    sha = save_weights(model, dest, extra=extra)
    card = [
        f"# Model card: `{dest.name}` ({args.name})",
        "",
        f"- sha256 `{sha}`; {model.num_parameters():,} parameters; config in `{dest.with_suffix('.json').name}`.",
        f"- Role: {ROLE[model.config.use_reference]}, {model.config.scale}× rescaling.",
        "- **Research weights**: trained on the images of `../shared/data` (see its README for each set's licence;"
        " several forbid redistribution of the images, which are not shipped).",
        "",
        "## Training",
        f"- Steps {steps}, batch {train_cfg['batch']}, crops {train_cfg['crop']}×{train_cfg['crop']}, Adam "
        + (f"{stages[0]}" if stages else
           f"lr {train_cfg['lr']} halved at {', '.join(f'{m:.0%}' for m in train_cfg['lr_milestones'])} of the "
           f"{'time budget' if train_cfg.get('max_seconds') else 'steps'}")
        + f", seed {train_cfg['seed']}.",
        "- Samples: real pairs (both directions; any two dates of a time series), identical crops/flips/rotations;"
        f" synthetic revisits {train_cfg['synthetic_share']:.0%},"
        f" unrelated references {train_cfg['shuffled_share']:.0%},"
        f" S_map zeroed {train_cfg['noref_share']:.0%}.",
        f"- Wall time {wall / 60:.0f} min on {args.hardware}." if wall else f"- Hardware: {args.hardware}.",
        f"- Command: `{args.command or default_command(args.name, args.run, train_cfg)}`",
        *([f"- Trained with `smap_pool = {trained_pool}`, shipped with `smap_pool = {model.config.smap_pool}`"
           " (S_map stored as cell means; the weights are the trained ones, the Notes give the measured effect)."]
          if model.config.smap_pool != trained_pool else []),
        *([f"- S_map gate: {source_side['smap_gate_calibration']}; set after training by"
           " `tools/calibrate_smap_gate.py` (validation pairs are never read)."]
          if "smap_gate_calibration" in source_side else []),
        *([f"- No-reference fallback: frames without a usable reference (none, or an S_map gated to all zero) are"
           f" coded by the attached no-reference INN (`{source_side['noref_fallback']['file']}`, sha256"
           f" `{source_side['noref_fallback']['sha256'][:12]}…`, {model.fallback.num_parameters():,} of the"
           " parameters), attached after training by `tools/attach_noref_fallback.py`."]
          if model.fallback is not None and "noref_fallback" in source_side else []),
        "",
        "## Data split",
        SPLIT_DOC.strip().split("\n\n", 1)[1] if SPLIT_DOC else "",
        "",
        f"## Validation ({model.config.scale}×, full frames, z = 0)",
        "Measured with `python benchmarks/eval_all.py --scales "
        f"{model.config.scale} --modes aligned shuffled --limit 12` (and `--register` for the misaligned sets);"
        " bytes = LR PNG + S_map PNG (S_map only for RefScale).",
        "",
        validation_table(args.reports, model.config.scale),
        "",
    ]
    if args.notes:
        card += ["## Notes", args.notes, ""]
    dest.with_suffix(".md").write_text("\n".join(card))
    print(f"shipped {dest} ({dest.stat().st_size / 1e6:.2f} MB, sha256 {sha[:12]}…) and {dest.with_suffix('.md').name}")


if __name__ == "__main__":
    main()
