"""The whole onboard path, old against new, side by side: frames/s on this machine.

    python benchmarks/bench_onboard.py [--size 1280x720] [--frames 14] [--reps 3] [--codecs png jpeg]
        [--weights x2] [--cameras 1] [--threads 2] [--old-rev REV] [--variants old new serial batched]
        [--pair-set SET] [--pair I]

Path per frame (`refscale_model.backends.onboard_bench`): sensor_msgs/Image decode -> reference
lookup in a real ReferenceCache (`--references` entries 2 m apart: this tree registers the frame
against the 4 nearest and keeps the best, an older tree takes the nearest) -> registration (a new
homography every frame: the synthetic drive moves) -> downscaler (ONNX Runtime, CPU provider, the
shipped `--weights`, x2 by default, with its fallback) -> LR coding (`--codecs`: png, jpeg, webp,
avif) + the stored S_map -> a real bag write. Frames are offered back to back (capacity, nothing dropped);
fps = timed frames / wall time, after 2 warm-up frames.

* `old`: today's main behaviour, measured on a `git archive` of `--old-rev` (default: the merge-base of
  `main` and HEAD, the main this branch started from) extracted to a temporary folder: its own ONNX
  export (format 2: S_map graph and ref graph, Ref-Net on the reference twice per frame) and its
  `FrameEncoder.encode`, one stage after another.
* `serial`: this checkout's graphs and encoder, stages one after another (no EncoderPipeline).
* `batched`: `serial`, with the `--cameras` frames of each instant through one `FrameEncoder.encode_frames`
  (the recorder's `batch_cameras`: one network run for all of them).
* `new`: this checkout: format 3 (features graph once per registered reference, reused while the
  reference and matrix stay) and `EncoderPipeline` (decode/registration, network, coding/write
  overlapped on threads).

`--quality [--pairs N]` instead measures what the speed-ups cost in rebuilt PSNR (x2, PyTorch inverse,
z = 0) on the validation split of webcam_tilde and satellite_spacenet7_monthly, each pair as-is and
moved (a random ±3° rotation, ±5 % scale, ±3 % shift, then registered), in one run: the fp32
format-3 graphs, their int8 QDQ quantisation (`onnx_quantize`, calibrated on training pairs), and
reference features of the *unwarped* reference warped per frame at the feature grid (the rejected
per-reference cache) against PyTorch's exact path.

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
    import numpy as np

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
            for j in range(spec.get("references", 1)):  # every 2 m north, each a few pixels shifted
                lat = 45.0 + j * 2.0 / 111_195.0
                cache.add(np.roll(ref, 3 * j, axis=1) if j else ref, CAM.format(k), lat, 7.0, 0.0, 1 + j, "route",
                          "drive0")
    ds = OnnxDownscaler(spec["onnx"], [CPU], intra_op_threads=spec["threads"])
    cache = ReferenceCache.open(tmp / "cache", readonly=True)
    enc = FrameEncoder(BagWriter(tmp / "bag"), ds, ds.model_info(), cache=cache, lr_codec=spec["codec"],
                       **({"batch_network": True} if spec.get("batched") else {}))
    t0 = 1_700_000_000_000_000_000
    messages = []
    for i, rgb in enumerate(frames):
        for k in range(cams):
            s = t0 + i * 100_000_000 + k
            messages.append((CAM.format(k), msgs.image_msg(rgb, s, f"cam{k}"), s, Pose(45.0, 7.0, 0.0)))
    pipeline_cls = None
    if spec["pipeline"]:
        from refscale_model.pipeline.stages import EncoderPipeline

        pipeline_cls = EncoderPipeline
    m = ob.measure(enc, messages, pipeline_cls, warmup=2 * cams, together=cams if spec.get("batched") else 1)
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


# ----------------------------------------------------------------------------- quality
def quality(n_pairs: int) -> int:
    import cv2
    import numpy as np
    import torch

    sys.path.insert(0, str(REPO))
    from refscale_model.backends.onnx_export import export_onnx
    from refscale_model.backends.onnx_quantize import quantize_export
    from refscale_model.backends.onnx_runtime import CPU, OnnxDownscaler
    from refscale_model.evaluation.pairs import read_eval_pairs, to_tensor
    from refscale_model.io.images import stored_smap, to_uint8
    from refscale_model.layers import similarity_map
    from refscale_model.metrics import psnr
    from refscale_model.quantise import lr_to_uint8, quantise_smap, smap_from_levels, smap_to_uint8
    from refscale_model.registration import align_reference
    from refscale_model.training.data import read_rgb, split_pairs
    from refscale_model.weights import load_model

    torch.set_num_threads(2)
    model = load_model("x2").eval()
    cfg = model.config
    tmp = Path(tempfile.mkdtemp(prefix="bench_onboard_q_"))
    fp32 = OnnxDownscaler(export_onnx(model, tmp / "x2.onnx", model_id="x2").path, [CPU], intra_op_threads=2)
    calib = []
    for name in ("webcam_tilde", "satellite_spacenet7_monthly", "rail_nordland_640"):
        for r in split_pairs(DATA / name)[0][:4]:
            hr, ref = read_rgb(DATA / name / r.target), read_rgb(DATA / name / r.reference)
            ref = ref if ref.shape == hr.shape else cv2.resize(ref, (hr.shape[1], hr.shape[0]))
            calib.append((hr[:256, :320], ref[:256, :320]))
    int8 = OnnxDownscaler(quantize_export(tmp / "x2.onnx", tmp / "q8" / "x2.onnx", calib), [CPU], intra_op_threads=2)

    def warp_features(f: torch.Tensor, matrix: np.ndarray) -> torch.Tensor:
        scale = np.diag([2.0, 2.0, 1.0])
        hf = np.linalg.inv(scale) @ matrix @ scale  # HR pixel 2i is feature pixel i
        a = f[0].numpy().transpose(1, 2, 0)
        h, w = a.shape[:2]
        parts = [cv2.warpPerspective(np.ascontiguousarray(a[..., i:i + 4]), hf, (w, h), flags=cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_CONSTANT, borderValue=0) for i in range(0, a.shape[2], 4)]
        return torch.from_numpy(np.concatenate(parts, 2).transpose(2, 0, 1).copy())[None]

    @torch.no_grad()
    def feature_warp(hr: np.ndarray, ref_unwarped: np.ndarray, matrix: np.ndarray) -> tuple:
        x, r = model.pad(to_tensor(hr)), model.pad(to_tensor(ref_unwarped))
        enc = model.encoder
        f_ref = warp_features(enc.features(r), matrix)[..., : x.shape[2] // 2, : x.shape[3] // 2]
        sim = similarity_map(enc.bottleneck(enc.features(x)), enc.bottleneck(f_ref), cfg.smap_pool, cfg.smap_gate)
        s8 = smap_to_uint8(quantise_smap(sim, cfg.smap_levels, training=False))
        if cfg.noref_fallback and bool(model.empty_smaps(s8).all()):
            return lr_to_uint8(model.noref_lr(x))[0].permute(1, 2, 0).numpy(), s8[0, 0].numpy()
        cond = model.condition_from_features(f_ref, smap_from_levels(s8, cfg.smap_levels, x.dtype))
        return lr_to_uint8(model.forward_flow(x, cond)[0])[0].permute(1, 2, 0).numpy(), s8[0, 0].numpy()

    def rebuilt(hr: np.ndarray, lr: np.ndarray, smap: np.ndarray | None, warped: np.ndarray) -> float:
        lr_t = torch.from_numpy(lr).permute(2, 0, 1)[None]
        with torch.no_grad():
            if smap is None or stored_smap(smap) is None:
                out = model.upscale(lr_t, None, None, hr.shape[:2])
            else:
                out = model.upscale(lr_t, torch.from_numpy(smap)[None, None], to_tensor(warped), hr.shape[:2])
        return psnr(hr, to_uint8(out, half_up=True))

    rng = np.random.default_rng(1)
    rows = []
    for name in ("webcam_tilde", "satellite_spacenet7_monthly"):
        for pair in read_eval_pairs(DATA / name / "pairs.csv", "val")[:n_pairs]:
            hr, ref = read_rgb(pair.target), read_rgb(pair.reference)
            ref = ref if ref.shape == hr.shape else cv2.resize(ref, (hr.shape[1], hr.shape[0]),
                                                               interpolation=cv2.INTER_AREA)
            for case in ("as-is", "moved"):
                refu = ref
                if case == "moved":
                    h, w = hr.shape[:2]
                    m = cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(-3, 3), rng.uniform(0.95, 1.05))
                    m[:, 2] += rng.uniform(-0.03, 0.03, 2) * (w, h)
                    refu = cv2.warpAffine(ref, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
                warped, reg = align_reference(hr, refu)
                if warped is None:
                    continue
                with torch.no_grad():
                    enc = model.downscale(to_tensor(hr), to_tensor(warped))
                exact = (enc.lr[0].permute(1, 2, 0).numpy(), enc.smap[0, 0].numpy())
                psnrs = {"pytorch": rebuilt(hr, *exact, warped),
                         "onnx fp32": rebuilt(hr, *fp32.downscale(hr, warped), warped),
                         "onnx int8": rebuilt(hr, *int8.downscale(hr, warped), warped),
                         "feature warp": rebuilt(hr, *feature_warp(hr, refu, reg.matrix), warped)}
                rows.append((name, case, reg.method, psnrs))
                print(f"{name} {case} ({reg.method}): " + ", ".join(f"{k} {v:.3f}" for k, v in psnrs.items()),
                      flush=True)
    print(f"\nRebuilt PSNR (dB), x2, validation pairs (first {n_pairs} per set), one run; Δ against the exact path")
    print("| set | reference | pairs | PyTorch | ONNX fp32 (format 3) | int8 QDQ Δ (worst) | feature warp Δ (worst) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name in ("webcam_tilde", "satellite_spacenet7_monthly"):
        for case in ("as-is", "moved"):
            sel = [r[3] for r in rows if r[0] == name and r[1] == case]
            if not sel:
                continue
            mean = {k: float(np.mean([p[k] for p in sel])) for k in sel[0]}
            d8 = [p["onnx int8"] - p["onnx fp32"] for p in sel]
            dw = [p["feature warp"] - p["pytorch"] for p in sel]
            print(f"| {name} | {case} | {len(sel)} | {mean['pytorch']:.3f} | {mean['onnx fp32']:.3f} | "
                  f"{np.mean(d8):+.3f} ({min(d8):+.3f}) | {np.mean(dw):+.3f} ({min(dw):+.3f}) |")
    return 0


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


def export(tree: Path, out: Path, weights: str) -> None:
    code = ("import sys; from refscale_model.weights import load_model; "
            "from refscale_model.backends.onnx_export import export_onnx; "
            "export_onnx(load_model(sys.argv[2]), sys.argv[1], model_id=sys.argv[2])")
    subprocess.run([sys.executable, "-c", code, str(out), weights], env=_env(tree), cwd=tree, check=True,
                   capture_output=True)


def _env(tree: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(tree), "PYTHONWARNINGS": "ignore"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--frames", type=int, default=14, help="timed frames per camera and cell")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--codecs", nargs="+", default=["png", "jpeg"], help="LR codecs (png jpeg webp avif)")
    ap.add_argument("--weights", default="x2", help="shipped weights both trees export (x2, x2-lossy, ...)")
    ap.add_argument("--cameras", type=int, default=1)
    ap.add_argument("--references", type=int, default=4,
                    help="cache entries per camera, 2 m apart (a tree that chooses among them registers them all)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--old-rev", default=None)
    ap.add_argument("--pair-set", default="walk_gardenspoint_sfu",
                    help="data set (under ../shared/data or $REFSCALE_DATA) of the revisit pair the drive is made of; "
                    "the default pair registers by ORB every frame (a new matrix per frame: no feature reuse); "
                    "rail_nordland_1080p's does not register (identity fallback: features reused)")
    ap.add_argument("--pair", type=int, default=0)
    ap.add_argument("--variants", nargs="+", default=["old", "new"], choices=["old", "new", "serial", "batched"],
                    help="serial: this checkout without EncoderPipeline (one stage after another); batched: "
                    "serial, with the --cameras frames of each instant through one encode_frames (one network run)")
    ap.add_argument("--quality", action="store_true", help="rebuilt-PSNR cost of the speed-ups instead of speed")
    ap.add_argument("--pairs", type=int, default=5, help="--quality: validation pairs per set")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.quality:
        return quality(args.pairs)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    size = parse_size(args.size)
    with tempfile.TemporaryDirectory(prefix="bench_onboard_") as tmp:
        root = Path(tmp)
        trees = {"new": REPO, "serial": REPO, "batched": REPO}
        rev = ""
        if "old" in args.variants:
            trees["old"], rev = old_tree(args.old_rev, root)
        onnx = {}
        for name in args.variants:
            onnx[name] = root / ("new" if name in ("serial", "batched") else name) / "x2.onnx"
            if not onnx[name].exists():
                export(trees[name], onnx[name], args.weights)
        cells = [(v, c) for c in args.codecs for v in args.variants]
        runs: dict[tuple[str, str], list[dict]] = {cell: [] for cell in cells}
        for rep in range(args.reps):
            for v, c in cells:
                spec = {"size": size, "frames": args.frames, "cameras": args.cameras, "threads": args.threads,
                        "codec": c, "onnx": str(onnx[v]), "pipeline": v == "new", "batched": v == "batched",
                        "pair_set": args.pair_set, "pair": args.pair, "references": args.references}
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
          f"camera, {args.reps} interleaved reps, weights {args.weights}, drive from {args.pair_set}[{args.pair}]; "
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
