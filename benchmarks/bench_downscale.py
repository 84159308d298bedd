"""Downscaling-half benchmark: frames/s and peak memory per backend and frame size, side by side.

    python benchmarks/bench_downscale.py [--weights x2] [--sizes 640x480 1280x720 1920x1080]
        [--backends eager compile ort] [--device cpu|cuda] [--threads 2] [--min-time 4]
        [--config '{"blocks": [2], "hidden": 16}' ...] [--variant-sizes 1920x1080]
        [--references pair unrelated none] [--batch N]

Every cell runs in its own worker process so peak memory is that backend's alone: "peak MB" is
the worker's peak RSS over the timed frames (VmHWM reset after two warm-up frames), "+MB" that
peak minus the RSS after loading the model / opening the session, before any frame (activations,
arenas, workspaces, compiled code); with CUDA, "peak MB" is `torch.cuda.max_memory_allocated`
(not available for onnxruntime). Frames are a real 1080p revisit pair from ../shared/data
(rail_nordland_1080p, or the folder $REFSCALE_BENCH_PAIRS) resized to each size; each call is
the full numpy-in/numpy-out `downscale(hr, ref)`, by default with the pair's reference.
`--references` adds the other cases a car meets: `unrelated` (the frame upside down with inverted
colours, which the shipped encoders gate: after the S_map the frame goes to the no-reference fallback)
and `none` (no reference found; eager and ort only); the "gated" column says what the map did. fps is
1 / median latency; "best" is 1 / fastest call (closer to an unloaded core on a shared machine).
Ratios are against PyTorch eager (fp32) of the same model and size, measured in the same run.

`--config JSON` (repeatable) adds architecture variants (fields of RefScaleConfig over the
`--weights` config, randomly initialised: speed only) measured at `--variant-sizes`, to weigh
speed against the quality `refscale eval` gives once such a variant is trained.

Backends: eager (TorchDownscaler), compile (torch.compile of the traceable export wrapper),
ort (OnnxDownscaler, CPU provider); with --device cuda: eager (fp32), fp16 (half wrapper),
compile, ort-cuda and ort-trt when onnxruntime has those providers. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
PAIR_SET = Path(os.environ.get("REFSCALE_BENCH_PAIRS", REPO.parent / "shared" / "data" / "rail_nordland_1080p"))
"""A folder with pairs.csv; the env variable points a lent GPU machine (no ../shared there) at a copy."""


# ----------------------------------------------------------------------------- helpers
def parse_size(text: str) -> tuple[int, int]:
    """'1920x1080' -> (H, W) = (1080, 1920)."""
    w, h = (int(v) for v in text.lower().split("x"))
    return h, w


def load_frames(size_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    with open(PAIR_SET / "pairs.csv", newline="") as fh:
        row = next(iter(csv.DictReader(fh)))
    out = []
    for key in ("target", "reference"):
        bgr = cv2.imread(str(PAIR_SET / row[key]), cv2.IMREAD_COLOR)
        if bgr is None:
            raise FileNotFoundError(PAIR_SET / row[key])
        if bgr.shape[:2] != size_hw:
            bgr = cv2.resize(bgr, (size_hw[1], size_hw[0]), interpolation=cv2.INTER_AREA)
        out.append(np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
    return out[0], out[1]


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _reset_peak_rss() -> None:
    """Linux: writing 5 to clear_refs resets VmHWM, so the peak covers only the timed frames."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


# ----------------------------------------------------------------------------- worker (one cell)
def make_backend(spec: dict[str, Any]) -> Any:
    """A numpy `downscale(hr, ref)` callable for one backend."""
    backend, device = spec["backend"], spec["device"]
    n = int(spec.get("batch", 1))  # frames of that many cameras in one run (the same frame, copied)
    if backend.startswith("ort"):
        from refscale_model.backends.onnx_runtime import CPU, CUDA, TENSORRT, OnnxDownscaler, default_providers

        providers: list[Any] = {
            "ort": [CPU],
            "ort-cuda": [(CUDA, {"device_id": 0}), CPU],
            "ort-trt": default_providers(spec["trt_cache"]),
        }[backend]
        runtime = OnnxDownscaler(spec["onnx"], providers, intra_op_threads=spec["threads"])
        if backend != "ort" and runtime.provider not in (CUDA, TENSORRT):
            raise RuntimeError(f"{backend}: onnxruntime fell back to {runtime.provider}")

        def run_ort(hr: np.ndarray, ref: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
            x = np.ascontiguousarray(np.broadcast_to(hr.transpose(2, 0, 1)[None], (n, 3, *hr.shape[:2])))
            r = None if ref is None else np.ascontiguousarray(
                np.broadcast_to(ref.transpose(2, 0, 1)[None], (n, 3, *ref.shape[:2])))
            lr, smap = runtime.run_nchw(x, r)
            return lr[0].transpose(1, 2, 0), None if smap is None else smap[0, 0]

        return runtime.downscale if n == 1 else run_ort

    import torch
    from torch import nn

    from refscale_model.backends.onnx_export import _Downscale
    from refscale_model.backends.torch_backend import TorchDownscaler
    from refscale_model.weights import load_weights

    model = load_weights(spec["weights"])
    if backend == "eager" and n == 1:
        return TorchDownscaler(model, device).downscale
    if spec["reference"] != "pair" and backend != "eager":  # the bare graphs: no recoding of gated frames
        raise RuntimeError(f"{backend} measures the pair reference only")
    dtype = torch.float16 if backend == "fp16" else torch.float32
    model = model.to(device, dtype).eval()

    class Chain(nn.Module):
        """The exported graphs chained (features -> S_map -> ref flow), as one torch module."""

        def __init__(self) -> None:
            super().__init__()
            self.feat, self.smap, self.ref = (_Downscale(model, g, dtype) for g in ("feat", "smap", "ref"))

        def forward(self, x: torch.Tensor, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            f = self.feat(r)
            s = self.smap(x, f)
            return self.ref(x, f, s), s

    module: Any = Chain() if model.encoder is not None else _Downscale(model, "noref", dtype)
    if backend == "compile":
        module = torch.compile(module, dynamic=False)

    @torch.no_grad()
    def run(hr: np.ndarray, ref: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        x = torch.from_numpy(hr).permute(2, 0, 1)[None].to(device).expand(n, -1, -1, -1).contiguous()
        if backend == "eager":  # batched RefScale.downscale
            r = None if ref is None else torch.from_numpy(ref).permute(2, 0, 1)[None].to(device).expand(
                n, -1, -1, -1).contiguous()
            enc = model.downscale(x, r)
            return enc.lr[0].permute(1, 2, 0).cpu().numpy(), None if enc.smap is None else enc.smap[0, 0].cpu().numpy()
        if model.encoder is None:
            return module(x)[0].permute(1, 2, 0).cpu().numpy(), None
        r = torch.from_numpy(ref).permute(2, 0, 1)[None].to(device).expand(n, -1, -1, -1).contiguous()
        lr, smap = module(x, r)
        return lr[0].permute(1, 2, 0).cpu().numpy(), smap[0, 0].cpu().numpy()

    return run


def reference_for(kind: str, hr: np.ndarray, pair_ref: np.ndarray) -> np.ndarray | None:
    """The reference a cell passes: the pair's, an unrelated image (gated), or none."""
    if kind == "pair":
        return pair_ref
    if kind == "unrelated":
        return np.ascontiguousarray(255 - hr[::-1])
    if kind == "none":
        return None
    raise ValueError(f"unknown reference kind {kind!r}")


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    torch.set_num_threads(spec["threads"])
    cuda = spec["device"] == "cuda"
    hr, pair_ref = load_frames(tuple(spec["size"]))
    ref = reference_for(spec["reference"], hr, pair_ref)
    t0 = time.perf_counter()
    fn = make_backend(spec)
    setup_mb = _status_mb("VmRSS")
    first_t = time.perf_counter()
    _, smap = fn(hr, ref)  # first call: compile / engine build / allocator warm-up, reported apart
    if cuda:
        torch.cuda.synchronize()
    first_s = time.perf_counter() - first_t
    setup_s = first_t - t0
    fn(hr, ref)
    _reset_peak_rss()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times: list[float] = []
    start = time.perf_counter()
    while (time.perf_counter() - start < spec["min_time"] or len(times) < spec["min_iters"]) and len(
        times
    ) < spec["max_iters"]:
        t = time.perf_counter()
        fn(hr, ref)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    peak = _status_mb("VmHWM")
    gpu_mb = torch.cuda.max_memory_allocated() / 2**20 if cuda and not spec["backend"].startswith("ort") else None
    return {
        "median_ms": statistics.median(times) * 1e3,
        "best_ms": min(times) * 1e3,
        "iters": len(times),
        "peak_mb": peak,
        "delta_mb": peak - setup_mb,
        "gpu_mb": gpu_mb,
        "setup_s": setup_s,
        "first_s": first_s,
        "gated": smap is not None and not smap.any(),
    }


# ----------------------------------------------------------------------------- parent
def prepare_variants(weights: str, configs: list[str], out_dir: Path, fp16_onnx: bool) -> list[dict[str, Any]]:
    """Save each variant as safetensors and export its ONNX graphs once (workers only load)."""
    import torch

    from refscale_model import RefScale, load_model, save_weights
    from refscale_model.backends.onnx_export import export_onnx

    base = load_model(weights, allow_untrained=True)
    variants = [("default", {}, base)]
    for text in configs:
        override = json.loads(text)
        if "blocks" in override:
            override["blocks"] = tuple(override["blocks"])
        cfg = dataclasses.replace(base.config, **override)
        variants.append((" ".join(f"{k}={v}" for k, v in json.loads(text).items()), override, RefScale(cfg).eval()))
    prepared = []
    for i, (label, override, model) in enumerate(variants):
        if model.weights_sha256 is None:  # untrained: randomise the zero-initialised parts (speed is the same)
            torch.manual_seed(i)
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(0.05 * torch.randn_like(p))
        path = out_dir / f"v{i}.safetensors"
        save_weights(model, path)
        onnx_path = export_onnx(model, out_dir / f"v{i}.onnx", model_id=label).path
        onnx16 = export_onnx(model, out_dir / f"v{i}_fp16.onnx", fp16=True).path if fp16_onnx else None
        prepared.append({
            "label": label,
            "override": override,
            "weights": str(path),
            "onnx": str(onnx_path),
            "onnx_fp16": str(onnx16) if onnx16 else None,
            "params": model.num_parameters(),
        })
    return prepared


def run_cell(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", json.dumps(spec)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:.0f}s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": tail[:160]}
    return json.loads(lines[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default="x2", help="x2 | x4 | PATH.safetensors (untrained presets are fine)")
    ap.add_argument("--sizes", nargs="+", default=["640x480", "1280x720", "1920x1080"])
    ap.add_argument("--backends", nargs="+", default=None, help="default: eager compile ort (cuda: + fp16 ort-cuda)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--threads", type=int, default=2, help="torch / onnxruntime intra-op threads")
    ap.add_argument("--min-time", type=float, default=4.0, help="seconds of timed frames per cell (at least)")
    ap.add_argument("--min-iters", type=int, default=3)
    ap.add_argument("--max-iters", type=int, default=200)
    ap.add_argument("--config", action="append", default=[], help="JSON RefScaleConfig override (repeatable)")
    ap.add_argument("--variant-sizes", nargs="+", default=["1920x1080"])
    ap.add_argument("--variant-backends", nargs="+", default=["eager", "ort"])
    ap.add_argument("--references", nargs="+", default=["pair"], choices=["pair", "unrelated", "none"],
                    help="reference cases for the default model (variants use the pair's)")
    ap.add_argument("--batch", type=int, default=1,
                    help="frames per run (several cameras batched); fps counts frames, not runs")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per cell")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0

    cuda = args.device == "cuda"
    default = ["eager", "fp16", "compile", "ort-cuda", "ort-trt"] if cuda else ["eager", "compile", "ort"]
    backends = args.backends or default
    if "eager" not in backends:
        backends = ["eager", *backends]  # the ratio baseline
    import onnxruntime as ort
    import torch

    load0 = os.getloadavg()
    print(f"# bench_downscale: weights {args.weights}, device {args.device}, threads {args.threads}, "
          f"cpu affinity {sorted(os.sched_getaffinity(0))} of {os.cpu_count()} cpus, torch {torch.__version__}, "
          f"onnxruntime {ort.__version__} {ort.get_available_providers()}")
    if cuda:
        print(f"# gpu: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'NOT AVAILABLE'}")
    if args.batch > 1:
        print(f"# {args.batch} frames per run (cameras batched): fps and ms/frame count frames")
    print(f"# load average at start: {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench_downscale_") as tmp:
        variants = prepare_variants(args.weights, args.config, Path(tmp), fp16_onnx=cuda)
        plan = [(variants[0], parse_size(s), b, k) for k in args.references for s in args.sizes for b in backends]
        plan += [(v, parse_size(s), b, "pair") for v in variants[1:] for s in args.variant_sizes
                 for b in args.variant_backends]
        for variant, size, backend, reference in plan:
            spec = {
                "backend": backend,
                "device": args.device,
                "size": size,
                "threads": args.threads,
                "weights": variant["weights"],
                "onnx": variant["onnx_fp16"] if backend == "ort-cuda" and variant["onnx_fp16"] else variant["onnx"],
                "trt_cache": str(Path(tmp) / "trt"),
                "min_time": args.min_time,
                "min_iters": args.min_iters,
                "max_iters": args.max_iters,
                "reference": reference,
                "batch": args.batch,
            }
            res = run_cell(spec, args.timeout)
            row = {"variant": variant["label"], "params": variant["params"], "size": f"{size[1]}x{size[0]}",
                   "backend": backend, "reference": reference, **res}
            rows.append(row)
            print("#", json.dumps(row), flush=True)
    load1 = os.getloadavg()

    base = {(r["variant"], r["size"], r["reference"]): r for r in rows if r["backend"] == "eager" and "error" not in r}
    print()
    print("| model | params | size | reference | gated | backend | fps | fps (best) | ms/frame | × eager | peak MB "
          "| +MB | first call s |")
    print("|---|---:|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        gated = "yes" if r.get("gated") else "no"
        head = f"| {r['variant']} | {r['params']} | {r['size']} | {r['reference']} | {gated}"
        if "error" in r:
            print(f"{head} | {r['backend']} | – | – | – | – | – | – | {r['error']} |")
            continue
        b = base.get((r["variant"], r["size"], r["reference"]))
        ratio = f"{b['median_ms'] / r['median_ms']:.2f}" if b else "–"
        mem = f"{r['gpu_mb']:.0f} (GPU)" if r.get("gpu_mb") is not None else f"{r['peak_mb']:.0f}"
        print(f"{head} | {r['backend']} | {args.batch * 1e3 / r['median_ms']:.2f} | "
              f"{args.batch * 1e3 / r['best_ms']:.2f} | {r['median_ms'] / args.batch:.1f} | {ratio} | {mem} | "
              f"{r['delta_mb']:.0f} | {r['first_s']:.1f} |")
    print(f"\nload average at end: {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}")
    if args.json:
        args.json.write_text(json.dumps({"load_start": load0, "load_end": load1, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
