"""The whole onboard path, old against new, side by side: frames/s on this machine.

    python benchmarks/bench_onboard.py [--size 1280x720] [--frames 14] [--reps 3] [--codecs png jpeg]
        [--cameras 1] [--threads 2] [--old-rev REV] [--variants old new] [--pair-set SET] [--pair I]

Path per frame (`refscale_model.backends.onboard_bench`): sensor_msgs/Image decode -> reference
lookup in a real ReferenceCache -> registration (a new homography every frame: the synthetic drive
moves) -> downscaler (ONNX Runtime, CPU provider, the shipped x2 with its fallback) -> LR coding
(png or jpeg) + S_map PNG -> a real bag write. Frames are offered back to back (capacity, nothing
dropped); fps = timed frames / wall time, after 2 warm-up frames.

* `old`: today's main behaviour, measured on a `git archive` of `--old-rev` (default: the merge-base of
  `main` and HEAD, the main this branch started from) extracted to a temporary folder: its own ONNX
  export (format 2: S_map graph and ref graph, Ref-Net on the reference twice per frame) and its
  `FrameEncoder.encode`, one stage after another.
* `serial`: this checkout's graphs and encoder, stages one after another (no EncoderPipeline).
* `new`: this checkout: format 3 (features graph once per registered reference, reused while the
  reference and matrix stay) and `EncoderPipeline` (decode/registration, network, coding/write
  overlapped on threads).

Every (variant, codec) cell runs in its own worker process, in interleaved order, `--reps` times;
the table gives median fps and the range, and new/old ratios of the medians. The machine is
shared: only ratios from one run mean anything. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("REFSCALE_DATA", REPO.parent / "shared" / "data"))
CAM = "/cam{}/image_raw"


def parse_size(text: str) -> tuple[int, int]:
    w, h = (int(v) for v in text.lower().split("x"))
    return h, w


# ----------------------------------------------------------------------------- worker (one cell)
def worker(spec: dict) -> dict:
    """Runs with PYTHONPATH = the tree under test (its refscale_model); prints one JSON line."""
    import cv2

    from refscale_model.backends.onnx_runtime import CPU, OnnxDownscaler
    from refscale_model.bags import BagWriter, msgs
    from refscale_model.pipeline import FrameEncoder, Pose
    from refscale_model.refcache import ReferenceCache

    ob = _load_onboard_bench()
    pair_set = DATA / spec["pair_set"]
    with open(pair_set / "pairs.csv", newline="") as fh:
        row = list(csv.DictReader(fh))[spec["pair"]]
    read = lambda p: cv2.cvtColor(cv2.imread(str(pair_set / p)), cv2.COLOR_BGR2RGB)  # noqa: E731
    size = tuple(spec["size"])
    cams = spec["cameras"]
    frames, ref = ob.synthetic_drive(read(row["target"]), read(row["reference"]), size, spec["frames"] + 2)
    tmp = Path(tempfile.mkdtemp(prefix="bench_onboard_"))
    with ReferenceCache.open(tmp / "cache", create=True) as cache:
        for k in range(cams):
            cache.add(ref, CAM.format(k), 45.0, 7.0, 0.0, 1, "route", "drive0")
    ds = OnnxDownscaler(spec["onnx"], [CPU], intra_op_threads=spec["threads"])
    cache = ReferenceCache.open(tmp / "cache", readonly=True)
    enc = FrameEncoder(BagWriter(tmp / "bag"), ds, ds.model_info(), cache=cache, lr_codec=spec["codec"])
    t0 = 1_700_000_000_000_000_000
    messages = []
    for i, rgb in enumerate(frames):
        for k in range(cams):
            s = t0 + i * 100_000_000 + k
            messages.append((CAM.format(k), msgs.image_msg(rgb, s, f"cam{k}"), s, Pose(45.0, 7.0, 0.0)))
    pipeline_cls = None
    if spec["pipeline"]:
        from refscale_model.pipeline.encoder import EncoderPipeline

        pipeline_cls = EncoderPipeline
    m = ob.measure(enc, messages, pipeline_cls, warmup=2 * cams)
    enc.close()
    cache.close()
    return {"fps": m.fps, "frames": m.frames, "with_reference": m.with_reference, "errors": m.errors,
            "feature_reuse": getattr(enc.stats, "feature_reuse", 0)}


def _load_onboard_bench():
    """This checkout's onboard_bench module, by file (the old tree has none; it needs only numpy/cv2)."""
    path = REPO / "refscale_model" / "backends" / "onboard_bench.py"
    spec = importlib.util.spec_from_file_location("_onboard_bench", path)
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    sys.modules["_onboard_bench"] = mod
    spec.loader.exec_module(mod)
    return mod


# ----------------------------------------------------------------------------- driver
def old_tree(rev: str | None, root: Path) -> tuple[Path, str]:
    if rev is None:
        rev = subprocess.run(["git", "merge-base", "main", "HEAD"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.strip()
    out = root / "old_tree"
    out.mkdir()
    archive = subprocess.run(["git", "archive", rev], cwd=REPO, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(out)], input=archive, check=True)
    return out, rev


def export(tree: Path, out: Path) -> None:
    code = ("import sys; from refscale_model.weights import load_model; "
            "from refscale_model.backends.onnx_export import export_onnx; "
            "export_onnx(load_model('x2'), sys.argv[1], model_id='x2')")
    subprocess.run([sys.executable, "-c", code, str(out)], env=_env(tree), cwd=tree, check=True, capture_output=True)


def _env(tree: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(tree), "PYTHONWARNINGS": "ignore"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--frames", type=int, default=14, help="timed frames per camera and cell")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--codecs", nargs="+", default=["png", "jpeg"])
    ap.add_argument("--cameras", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--old-rev", default=None)
    ap.add_argument("--pair-set", default="walk_gardenspoint_sfu",
                    help="data set (under ../shared/data or $REFSCALE_DATA) of the revisit pair the drive is made of; "
                    "the default pair registers by ORB every frame (a new matrix per frame: no feature reuse); "
                    "rail_nordland_1080p's does not register (identity fallback: features reused)")
    ap.add_argument("--pair", type=int, default=0)
    ap.add_argument("--variants", nargs="+", default=["old", "new"], choices=["old", "new", "serial"],
                    help="serial: this checkout without EncoderPipeline (one stage after another)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    size = parse_size(args.size)
    with tempfile.TemporaryDirectory(prefix="bench_onboard_") as tmp:
        root = Path(tmp)
        trees = {"new": REPO, "serial": REPO}
        rev = ""
        if "old" in args.variants:
            trees["old"], rev = old_tree(args.old_rev, root)
        onnx = {}
        for name in args.variants:
            onnx[name] = root / ("new" if name == "serial" else name) / "x2.onnx"
            if not onnx[name].exists():
                export(trees[name], onnx[name])
        cells = [(v, c) for c in args.codecs for v in args.variants]
        runs: dict[tuple[str, str], list[dict]] = {cell: [] for cell in cells}
        for rep in range(args.reps):
            for v, c in cells:
                spec = {"size": size, "frames": args.frames, "cameras": args.cameras, "threads": args.threads,
                        "codec": c, "onnx": str(onnx[v]), "pipeline": v == "new",
                        "pair_set": args.pair_set, "pair": args.pair}
                proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], env=_env(trees[v]),
                                      capture_output=True, text=True)
                if proc.returncode != 0:
                    print(proc.stderr[-3000:], file=sys.stderr)
                    return 1
                res = json.loads(proc.stdout.strip().splitlines()[-1])
                runs[(v, c)].append(res)
                print(f"rep {rep + 1}/{args.reps} {v:3s} {c:4s}: {res['fps']:.2f} frames/s "
                      f"({res['with_reference']}/{res['frames']} with reference, {res['errors']} errors, "
                      f"{res['feature_reuse']} feature reuses)", flush=True)
    print(f"\n{args.size}, {args.cameras} camera(s), {args.threads} ORT threads, {args.frames} timed frames per "
          f"camera, {args.reps} interleaved reps, drive from {args.pair_set}[{args.pair}]; "
          f"old = {rev[:12] or '-'} (git archive), new = this checkout")
    print("| LR codec | variant | frames/s median | range | ms/frame | / old |")
    print("|---|---|---:|---:|---:|---:|")
    for c in args.codecs:
        med = {v: statistics.median(r["fps"] for r in runs[(v, c)]) for v in args.variants}
        for v in args.variants:
            fps = [r["fps"] for r in runs[(v, c)]]
            ratio = f"{med[v] / med['old']:.2f}×" if v != "old" and "old" in med else ""
            print(f"| {c} | {v} | {med[v]:.2f} | {min(fps):.2f}–{max(fps):.2f} | {1e3 / med[v]:.0f} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
