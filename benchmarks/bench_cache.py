"""Reference-cache benchmark: lookup latency on a 100 000-entry cache (30 Hz needs < 33 ms per frame).

    python benchmarks/bench_cache.py [--entries 100000] [--queries 20000] [--dir DIR]

Builds a synthetic fleet cache (many drives along random polylines over a 40×40 km area, one
entry per 10 m, all sharing one tiny image so only the index is exercised), then times
`nearest` for queries near the route (hits) and off it (misses), `get`, and, with ../shared/data
present, `add` and `load_rgb` of a real 1080p reference. Not run by the test suite.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from refscale_model.refcache import ReferenceCache  # noqa: E402

LAT0, LON0 = 59.91, 10.75  # Oslo
M_PER_DEG = math.pi * 6_371_008.8 / 180.0
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def route_points(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 3) lat, lon, heading: drives of 2 km along random-walk polylines, a point every 10 m."""
    out = np.zeros((n, 3))
    i = 0
    while i < n:
        x, y = rng.uniform(-20_000, 20_000, 2)
        heading = rng.uniform(0, 360)
        for _ in range(min(200, n - i)):
            heading = (heading + rng.normal(0, 4)) % 360
            x += 10 * math.sin(math.radians(heading))
            y += 10 * math.cos(math.radians(heading))
            out[i] = (LAT0 + y / M_PER_DEG, LON0 + x / (M_PER_DEG * math.cos(math.radians(LAT0))), heading)
            i += 1
    return out


def fill(cache: ReferenceCache, points: np.ndarray, batch: int = 5000) -> float:
    tiny = np.zeros((8, 8, 3), np.uint8)
    t0 = time.perf_counter()
    for start in range(0, len(points), batch):
        with cache.batch():
            for k in range(start, min(len(points), start + batch)):
                lat, lon, heading = points[k]
                cache.add(tiny, "front", lat, lon, heading, k, "bench", f"drive{k // 200}")
    return time.perf_counter() - t0


def stats_ms(samples: list[float]) -> tuple[float, float, float, float]:
    a = np.asarray(samples) * 1e3
    return float(a.mean()), float(np.percentile(a, 50)), float(np.percentile(a, 99)), float(a.max())


def time_queries(cache: ReferenceCache, queries: np.ndarray) -> tuple[list[float], int]:
    times, hits = [], 0
    for lat, lon, heading in queries:
        t0 = time.perf_counter()
        ref = cache.nearest("front", lat, lon, heading)
        times.append(time.perf_counter() - t0)
        hits += ref is not None
    return times, hits


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=20_000)
    ap.add_argument("--dir", type=Path, default=None, help="cache directory (default: a temp dir)")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.dir or Path(tmp) / "cache"
        cache = ReferenceCache.open(root, create=True)
        points = route_points(args.entries, rng)
        fill_s = fill(cache, points) if len(cache) < args.entries else 0.0
        near = points[rng.integers(0, len(points), args.queries)].copy()
        jitter = rng.uniform(-8, 8, (args.queries, 2)) / M_PER_DEG
        near[:, 0] += jitter[:, 0]
        near[:, 1] += jitter[:, 1] / math.cos(math.radians(LAT0))
        near[:, 2] = (near[:, 2] + rng.uniform(-20, 20, args.queries)) % 360
        far = np.column_stack(
            [
                LAT0 + rng.uniform(-0.5, 0.5, args.queries),
                LON0 + rng.uniform(-0.9, 0.9, args.queries),
                rng.uniform(0, 360, args.queries),
            ]
        )
        rows = []
        for name, q in (("nearest, near route", near), ("nearest, random place", far)):
            times, hits = time_queries(cache, q)
            rows.append((name, *stats_ms(times), f"{hits / len(q):.0%} hit"))
        some = list(cache.entries())[:: max(1, len(cache) // 2000)]
        t = []
        for ref in some:
            t0 = time.perf_counter()
            cache.get(ref.id, ref.sha256)
            t.append(time.perf_counter() - t0)
        rows.append(("get(id, sha256)", *stats_ms(t), ""))
        rows += real_image_rows(cache)
        info = cache.info()
        cache.close()
        size_mb = (root / "index.sqlite").stat().st_size / 1e6
    print(
        f"\ncache: {info.entries} entries, index {size_mb:.1f} MB, filled in {fill_s:.1f} s "
        f"({fill_s / max(1, args.entries) * 1e6:.0f} µs/entry, batched)"
    )
    print(f"{'operation':28s} {'mean ms':>9s} {'p50 ms':>9s} {'p99 ms':>9s} {'max ms':>9s}  note")
    for name, mean, p50, p99, mx, note in rows:
        print(f"{name:28s} {mean:9.3f} {p50:9.3f} {p99:9.3f} {mx:9.3f}  {note}")
    print("30 Hz budget: 33.3 ms per frame for everything; lookups need a small share of it.")


def real_image_rows(cache: ReferenceCache) -> list[tuple[str, float, float, float, float, str]]:
    """add / load_rgb of real 1080p frames (PNG encode + fsync / read + sha256 + decode)."""
    frames = sorted((SHARED / "rail_nordland_1080p" / "summer").glob("*.png"))[:5]
    if not frames:
        return []
    import cv2

    imgs = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in frames]
    adds, loads = [], []
    for k, img in enumerate(imgs):
        t0 = time.perf_counter()
        ref = cache.add(img, "front", LAT0, LON0, 0.0, 10**12 + k, "bench", "real")
        adds.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ref.load_rgb()
        loads.append(time.perf_counter() - t0)
    return [
        ("add 1080p (PNG + fsync)", *stats_ms(adds), "once per keyframe, offline"),
        ("load_rgb 1080p (sha+decode)", *stats_ms(loads), "once per reference change"),
    ]


if __name__ == "__main__":
    main()
