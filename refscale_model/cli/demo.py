"""`refscale demo`: the main job on the embedded default (generated sample route, shipped weights)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the whole product on the generated sample route (what `make demo` runs)")
    p.add_argument("--out", type=Path, default=Path("demo-output"))
    p.add_argument("--drive-dir", type=Path, default=Path("sample-drive"))
    p.add_argument("--frames", type=int, default=200, help="frames per drive (10 Hz)")
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--weights", default="x2")
    p.add_argument("--backend", choices=["onnx", "torch"], default="onnx")
    p.add_argument("--rate", type=float, default=1.0, help="playback speed of drive B (1 = real time)")
    p.add_argument("--figures", type=int, default=3)
    p.add_argument("--domain-id", type=int, default=None)
    p.add_argument("--allow-untrained", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from refscale_model.demo import DemoSettings, run_demo

    summary = run_demo(DemoSettings(
        out_dir=args.out, drive_dir=args.drive_dir, frames=args.frames, size=(args.width, args.height),
        weights=args.weights, backend=args.backend, rate=args.rate, figures=args.figures,
        domain_id=args.domain_id, allow_untrained=args.allow_untrained,
    ))
    return 0 if summary.rebuilt > 0 else 1
