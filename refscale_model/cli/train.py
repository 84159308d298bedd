"""`refscale train`: train one RefScale (or no-reference) model on the real revisit pairs."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model on ../shared/data revisit pairs")
    p.add_argument("--preset", default="x2", choices=["x2", "x4", "x2-noref", "x4-noref"])
    p.add_argument("--out", type=Path, required=True, help="run directory")
    p.add_argument("--steps", type=int, default=10000)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--synthetic-share", type=float, default=0.3, help="share of synthetic revisits (0 = off)")
    p.add_argument("--shuffled-share", type=float, default=0.1, help="share of unrelated references")
    p.add_argument("--capture-share", type=float, default=0.0,
                   help="share of samples under a night/glare/saturated capture condition")
    p.add_argument("--noref-share", type=float, default=0.1, help="share of samples with S_map = 0")
    p.add_argument("--z-sample-share", type=float, default=0.0, help="share of steps rebuilding with z ~ N(0,1)")
    p.add_argument("--sets", nargs="*", default=[], help="restrict to these sets of the data root")
    p.add_argument("--data", default="", help="data root (default ../shared/data)")
    p.add_argument("--checkpoint-every", type=int, default=1000)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    p.add_argument("--max-seconds", type=float, default=0.0, help="wall-time budget (0 = run all --steps)")
    p.add_argument("--workers", type=int, default=0, help="crop-cutting loader processes (0 = deterministic)")
    p.add_argument("--tf32", action="store_true", help="allow TF32 convolutions on CUDA (faster, less precise)")
    p.add_argument("--smap-tv", type=float, default=None, help="override the S_map total-variation weight")
    p.add_argument("--init", type=Path, default=None,
                   help="start from these trained weights (their architecture; fresh optimizer and schedule)")
    p.add_argument("--resume", type=Path, default=None, help="checkpoint .safetensors to resume from")
    p.add_argument("--blocks", type=int, nargs="*", default=None, help="override flow blocks per stage")
    p.add_argument("--hidden", type=int, default=None, help="override coupling hidden channels")
    p.add_argument("--blur-sigma", type=float, default=None, help="override the blurred LR guide's Gaussian σ")
    p.add_argument("--smap-factor", type=int, default=None, help="override the S_map grid (1/factor of the features)")
    p.add_argument("--smap-pool", type=int, default=None, help="override the S_map storage pooling (cells per side)")
    p.add_argument("--smap-levels", type=int, default=None, help="override the S_map quantisation levels")
    p.add_argument("--codecs", nargs="*", default=[], choices=["jpeg", "webp", "avif", "h264", "h265"],
                   help="lossy LR codecs in the training forward pass, one drawn per sample (default: none, PNG; "
                   "repeat a name to draw it more often); h264/h265: the batch's samples of that codec tiled into "
                   "one picture, 9 in 10 coded as a predicted frame, CRF 43-22 for quality 20-95")
    p.add_argument("--codec-quality", type=int, nargs=2, default=[20, 95], metavar=("LO", "HI"),
                   help="closed range of the per-sample codec quality")
    p.add_argument("--lr-restore-hidden", type=int, default=None, help="decoder-side LR restorer channels (0 = none)")
    p.add_argument("--hr-refine-hidden", type=int, default=None, help="decoder-side HR refiner channels (0 = none)")
    p.add_argument("--decoder-layers", type=int, default=None, help="convolutions per decoder-side network")
    p.add_argument("--decoder-blocks", type=int, default=None,
                   help="residual stages per decoder-side network (added stages start as the identity)")
    p.add_argument("--refine-flow", action="store_true",
                   help="the HR refiner sees the reference aligned to the rebuild by optical flow (offboard only)")
    p.add_argument("--decoder-lr-mult", type=float, default=1.0, help="learning-rate multiplier of the decoder side")
    p.add_argument("--lambda-lr", type=float, default=None, help="override the LR guidance weight")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from refscale_model.config import RefScaleConfig
    from refscale_model.training.loop import TrainConfig, train
    from refscale_model.weights import read_sidecar

    if args.init:
        model_cfg = RefScaleConfig.from_dict(read_sidecar(args.init)["config"])
        model_cfg = dataclasses.replace(model_cfg, noref_fallback=False)  # a shipped model's attached INN stays out
    else:
        model_cfg = RefScaleConfig.preset(args.preset)
    overrides = {  # RefScaleConfig field -> command-line value (None: keep the preset's / init's)
        "blocks": tuple(args.blocks) if args.blocks else None,
        "hidden": args.hidden,
        "blur_sigma": args.blur_sigma,
        "lambda_smap_tv": args.smap_tv,
        "smap_factor": args.smap_factor,
        "smap_pool": args.smap_pool,
        "smap_levels": args.smap_levels,
        "lr_restore_hidden": args.lr_restore_hidden,
        "hr_refine_hidden": args.hr_refine_hidden,
        "decoder_layers": args.decoder_layers,
        "decoder_blocks": args.decoder_blocks,
        "refine_flow": True if args.refine_flow else None,
        "lambda_lr": args.lambda_lr,
    }
    model_cfg = dataclasses.replace(model_cfg, **{k: v for k, v in overrides.items() if v is not None})
    cfg = TrainConfig(
        model=model_cfg.to_dict(),
        steps=args.steps,
        batch=args.batch,
        crop=args.crop,
        lr=args.lr,
        seed=args.seed,
        synthetic_share=args.synthetic_share,
        shuffled_share=args.shuffled_share,
        capture_share=args.capture_share,
        noref_share=args.noref_share if model_cfg.use_reference else 0.0,
        z_sample_share=args.z_sample_share,
        sets=list(args.sets),
        data_root=args.data,
        checkpoint_every=args.checkpoint_every,
        device=args.device,
        threads=args.threads,
        max_seconds=args.max_seconds,
        workers=args.workers,
        tf32=args.tf32,
        codecs=list(args.codecs),
        codec_quality=(int(args.codec_quality[0]), int(args.codec_quality[1])),
        decoder_lr_mult=args.decoder_lr_mult,
    )
    final = train(cfg, args.out, resume=args.resume, init=args.init)
    print(f"final weights: {final}")
    return 0
