"""What finding the reference costs per frame on a drive: cache lookup, loading new entries, choosing.

Plays the camera frames of a raw drive bag (every `--every`-th from the first, as a recorder that drops
frames would see them) against one or more reference caches and times, per frame, the lookup and
`choose_reference` with `--candidates` entries through a `ReferenceLoader` as `FrameEncoder`'s (an LRU of
8): that includes reading the registration features of entries new to the loader (from the cache's stored
features when `cache build` wrote them, else read, rehash, PNG decode, ORB) and decoding the chosen one.
Prints one row per (cache, candidates), with how many entries were decoded and how many had stored features.

    python benchmarks/bench_reference_lookup.py --bag /tmp/sd/drive_b --camera /camera/front/image_raw \
        --caches /tmp/sd/cache10:1 /tmp/sd/cache2:1 /tmp/sd/cache2:4 [--every 3] [--frames 25]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2

from refscale_model.io import rosimg
from refscale_model.pipeline.raw import iter_posed_frames
from refscale_model.pipeline.reference_choice import ReferenceLoader, choose_reference
from refscale_model.refcache.store import ReferenceCache


def measure(
    bag: Path, camera: str, cache_dir: Path, candidates: int, every: int, frames: int
) -> tuple[float, int, int, int]:
    """(ms per frame for lookup + loading + choice, entries decoded, entries with stored features, frames)."""
    total = 0.0
    timed = 0
    with ReferenceCache.open(cache_dir, readonly=True) as cache:
        load = ReferenceLoader()
        for _index, _stamp, msg, pose in iter_posed_frames(bag, camera, every, cache.pseudo_latlon):
            if pose is None:
                continue
            rgb = rosimg.image_from_msg(msg)
            t0 = time.perf_counter()
            entries = cache.near(camera, pose.lat, pose.lon, pose.heading_deg, limit=candidates)
            choose_reference(rgb, entries, load)
            total += time.perf_counter() - t0
            timed += 1
            if timed >= frames:
                break
    timed = max(timed, 1)
    return total / timed * 1000, load.loaded, load.from_store, timed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bag", type=Path, required=True)
    p.add_argument("--camera", required=True)
    p.add_argument("--caches", nargs="+", required=True, metavar="CACHE:CANDIDATES")
    p.add_argument("--every", type=int, default=3)
    p.add_argument("--frames", type=int, default=25)
    p.add_argument("--threads", type=int, default=2, help="OpenCV threads (2)")
    args = p.parse_args()
    cv2.setNumThreads(args.threads)
    print("| cache | candidates | ms/frame (lookup + loading + choice) | entries decoded | stored features | frames |")
    print("|---|---|---|---|---|---|")
    for spec in args.caches:
        path, _, k = spec.rpartition(":")
        ms, decoded, stored, timed = measure(args.bag, args.camera, Path(path), int(k), args.every, args.frames)
        print(f"| {path} | {k} | {ms:.1f} | {decoded} | {stored} | {timed} |")


if __name__ == "__main__":
    main()
