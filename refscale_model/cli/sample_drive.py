"""`refscale sample-drive`: generate the embedded two-drive sample route as raw ROS 2 bags."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sample-drive",
        help="render the procedural sample route (drive A: reference, drive B: revisit) into raw bags",
    )
    p.add_argument("--out", type=Path, required=True, help="output directory (drive_a/, drive_b/, manifest.json)")
    p.add_argument("--frames", type=int, default=200, help="frames per drive (default 200 = 20 s at 10 Hz)")
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--rate", type=float, default=10.0, help="frame rate in Hz (default 10)")
    p.add_argument("--seed", type=int, default=0, help="world seed (same seed: identical bags)")
    p.add_argument("--force", action="store_true", help="regenerate even if a matching output exists")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run_sample_drive)


def run_sample_drive(args: argparse.Namespace) -> int:
    from refscale_model.sample_drive import generate_sample_drive

    def progress(drive: str, done: int, total: int) -> None:
        if done == total or done % 50 == 0:
            print(f"{drive}: {done}/{total} frames", file=sys.stderr, flush=True)

    try:
        drive = generate_sample_drive(
            args.out,
            frames=args.frames,
            size=(args.width, args.height),
            rate_hz=args.rate,
            seed=args.seed,
            force=args.force,
            progress=None if args.no_progress else progress,
        )
    except ValueError as exc:
        print(f"refscale sample-drive: {exc}", file=sys.stderr)
        return 2
    if drive.regenerated:
        print(f"wrote {drive.drive_a} and {drive.drive_b} in {drive.seconds:.1f} s")
    else:
        print(f"up to date: {drive.root} (use --force to regenerate)")
    return 0
