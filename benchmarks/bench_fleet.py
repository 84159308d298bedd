"""Fleet reconstruction scaling: N generated RefScale bags rebuilt on a local Ray with 1, 2, ... workers.

    python benchmarks/bench_fleet.py [--bags 4] [--frames 8] [--size 192x256] [--workers 1,2] [--weights x2]

Generates a synthetic drive (textured frames, each a shifted and noisy revisit of a cached
reference), encodes N bags with the project's own `encode_bag`, then for each worker count
starts a fresh local Ray (`num_cpus` = workers) and times `fleet_reconstruct` (actor start and
model load included, as a fleet job pays them). Prints a table of frames/s and speed-up.
Needs the `[fleet]` extra. Not run by the test suite.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from refscale_model.bags import BagWriter, msgs  # noqa: E402
from refscale_model.refcache import ReferenceCache  # noqa: E402

CAM = "/cam/front/image_raw"
LAT0, LON0 = 45.92, 6.87


def texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth random colour texture with edges (something registration and the model can work on)."""
    img = np.zeros((h, w, 3), np.float32)
    for scale in (4, 16, 64):
        small = rng.uniform(0, 255, (max(2, h // scale), max(2, w // scale), 3)).astype(np.float32)
        img += cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC) / 3
    for _ in range(12):
        p = rng.integers(0, [w, h]); q = p + rng.integers(10, 60, 2)  # noqa: E702
        cv2.rectangle(img, tuple(int(v) for v in p), tuple(int(v) for v in q), rng.uniform(0, 255, 3).tolist(), -1)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_drive(root: Path, bags: int, frames: int, h: int, w: int, weights: str) -> tuple[Path, Path]:
    from refscale_model.backends.loader import load_downscaler
    from refscale_model.pipeline.jobs import encode_bag

    rng = np.random.default_rng(0)
    places = [texture(rng, h + 16, w + 16) for _ in range(4)]
    cache_dir = root / "cache"
    with ReferenceCache.open(cache_dir, create=True) as cache:
        for k, img in enumerate(places):
            cache.add(np.ascontiguousarray(img[8 : 8 + h, 8 : 8 + w]), CAM, LAT0 + k * 0.01, LON0, 0.0, k, "r", "ref")
    backend = load_downscaler(weights, device="cpu")
    for b in range(bags):
        raw = root / "raw" / f"drive{b:03d}"
        with BagWriter(raw) as bag:
            bag.add_topic(CAM, msgs.IMAGE)
            for i in range(frames):
                k = (b + i) % len(places)
                dy, dx = rng.integers(0, 16, 2)
                frame = places[k][dy : dy + h, dx : dx + w].astype(np.int16) + rng.integers(-6, 7, (h, w, 3))
                s = 1_700_000_000_000_000_000 + b * 10**10 + i * 10**8
                bag.write("/gps/fix", msgs.navsatfix_msg(LAT0 + k * 0.01, LON0, 1000.0, s), s,
                          type_name=msgs.NAV_SAT_FIX)
                bag.write(CAM, msgs.image_msg(np.clip(frame, 0, 255).astype(np.uint8), s, "cam"), s)
        with ReferenceCache.open(cache_dir, readonly=True) as cache:
            encode_bag(raw, root / "bags" / raw.name, backend, [CAM], cache=cache)
    return root / "bags", cache_dir


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bags", type=int, default=4)
    ap.add_argument("--frames", type=int, default=8, help="frames per bag")
    ap.add_argument("--size", default="192x256", help="HxW of the full-resolution frames")
    ap.add_argument("--workers", default="1,2", help="worker counts to compare")
    ap.add_argument("--weights", default="x2")
    ap.add_argument("--dir", type=Path, default=None, help="work folder (default: a temporary one)")
    args = ap.parse_args()
    import ray

    from refscale_model.fleet import fleet_reconstruct

    h, w = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        root = args.dir or Path(tmp)
        t = time.perf_counter()
        if (root / "bags").is_dir():  # --dir of an earlier run: reuse its bags
            bags, cache = root / "bags", root / "cache"
            print(f"reusing the bags in {bags}")
        else:
            bags, cache = make_drive(root, args.bags, args.frames, h, w, args.weights)
        print(f"bags ready: {args.bags} x {args.frames} frames ({h}x{w}) in "
              f"{time.perf_counter() - t:.1f} s", flush=True)
        rows = []
        for n in (int(v) for v in args.workers.split(",")):
            shutil.rmtree(root / f"out{n}", ignore_errors=True)
            ray.init(num_cpus=n, include_dashboard=False, log_to_driver=False)
            try:
                rep = fleet_reconstruct([str(bags)], str(root / f"out{n}"), str(cache), workers=n, progress=False,
                                        log=lambda _s: None)
            finally:
                ray.shutdown()
            assert rep.ok and len(rep.done) == args.bags, rep
            rows.append((n, rep.frames, rep.seconds, rep.startup_s, rep.frames_per_s, rep.steady_frames_per_s))
    base, base_steady = rows[0][4], rows[0][5]
    print("\n| workers | bags | frames | seconds | of which start-up | frames/s | speed-up | frames/s after start-up "
          "| speed-up |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, frames, secs, start, fps, steady in rows:
        print(f"| {n} | {args.bags} | {frames} | {secs:.1f} | {start:.1f} | {fps:.2f} | {fps / base:.2f}x "
              f"| {steady:.2f} | {steady / base_steady:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
