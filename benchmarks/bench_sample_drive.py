"""Where sample-drive generation time goes: world build, lighting bake, per-frame render, bag write.

    python benchmarks/bench_sample_drive.py [--frames 200] [--width 1280 --height 720] [--full OUT]

Prints wall and CPU seconds per stage (CPU time is the honest number on a shared machine);
`--full OUT` also times the complete `generate_sample_drive` into OUT (forced).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2

from refscale_model.bags import BagWriter, msgs
from refscale_model.sample_drive import drive_plan, generate_sample_drive, make_world, render_frame
from refscale_model.sample_drive.weather import lighting


class Clock:
    def __init__(self, label: str) -> None:
        self.label = label

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu
        print(f"{self.label:28s} wall {self.wall:7.2f} s   cpu {self.cpu:7.2f} s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--sample", type=int, default=40, help="frames rendered per drive for the per-frame numbers")
    ap.add_argument("--full", type=Path, default=None)
    args = ap.parse_args()
    cv2.setNumThreads(1)
    size = (args.width, args.height)
    plan = drive_plan(args.frames)
    with Clock("world build"):
        world = make_world(0, size, plan)
    for name, (settings, poses) in plan.items():
        with Clock(f"{name} lighting bake"):
            lighting(world, settings.conditions)
        step = max(1, len(poses) // args.sample)
        picked = poses[::step]
        with Clock(f"{name} render x{len(picked)}") as c:
            frames = [render_frame(world, p, settings.conditions) for p in picked]
        print(f"{'':28s} -> {1000 * c.cpu / len(picked):.1f} ms cpu/frame (incl. first-use mip levels)")
        with tempfile.TemporaryDirectory() as tmp, Clock(f"{name} bag write x{len(frames)}") as c:
            with BagWriter(Path(tmp) / "bag") as bag:
                bag.add_topic("/img", msgs.IMAGE)
                for i, f in enumerate(frames):
                    bag.write("/img", msgs.image_msg(f, i, "cam"), i)
        print(f"{'':28s} -> {1000 * c.cpu / len(frames):.1f} ms cpu/frame")
    if args.full is not None:
        with Clock(f"generate_sample_drive {args.frames}x2"):
            generate_sample_drive(args.full, frames=args.frames, size=size, force=True)


if __name__ == "__main__":
    main()
