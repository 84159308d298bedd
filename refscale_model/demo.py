"""`make demo`: the whole product on the embedded sample route, end to end.

sample route (drive A, drive B) -> reference cache from drive A -> the real recorder node (the class
`ros2 launch refscale_ros record.launch.py` starts) fed by a player publishing drive B over DDS at its
real rate -> offboard reconstruction -> summary table, `summary.md` and side-by-side figures.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from refscale_model.io.images import encode_png
from refscale_model.metrics import psnr, ssim

CAMERA_TOPIC = "/camera/front/image_raw"
GPS_TOPIC = "/gps/fix"
CAMERA_INFO_TOPIC = "/camera/front/camera_info"
JPEG_QUALITY = 90


@dataclass
class DemoSettings:
    out_dir: Path = Path("demo-output")
    drive_dir: Path = Path("sample-drive")
    frames: int = 200
    size: tuple[int, int] = (1280, 720)
    weights: str = "x2"
    backend: str = "onnx"
    """'onnx' (the car path: exported graph on ONNX Runtime) or 'torch'."""
    rate: float = 1.0
    keyframe_every_m: float = 5.0
    figures: int = 3
    domain_id: int | None = None
    allow_untrained: bool = False


@dataclass
class DemoSummary:
    published: int = 0
    recorded: int = 0
    dropped: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    without_reference: int = 0
    raw_bytes_per_frame: float = 0.0
    png_bytes_per_frame: float = 0.0
    jpeg_bytes_per_frame: float = 0.0
    refscale_bytes_per_frame: float = 0.0
    bag_bytes: int = 0
    raw_bag_bytes: int = 0
    psnr: float = 0.0
    ssim: float = 0.0
    jpeg_psnr: float = 0.0
    jpeg_ssim: float = 0.0
    encode_fps: float = 0.0
    provider: str = ""
    rebuilt: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def table(self) -> str:
        ratio_raw = self.raw_bytes_per_frame / max(self.refscale_bytes_per_frame, 1)
        ratio_jpeg = self.jpeg_bytes_per_frame / max(self.refscale_bytes_per_frame, 1)
        ratio_png = self.png_bytes_per_frame / max(self.refscale_bytes_per_frame, 1)
        rows = [
            ("frames published (drive B)", f"{self.published}"),
            ("frames recorded / dropped / errors", f"{self.recorded} / {self.dropped} / {sum(self.errors.values())}"),
            ("frames without reference", f"{self.without_reference}"),
            ("encoder backend, encode rate", f"{self.provider}, {self.encode_fps:.2f} frames/s"),
            ("raw rgb8 bytes per frame", f"{self.raw_bytes_per_frame:,.0f}"),
            ("lossless PNG of the raw frame, bytes", f"{self.png_bytes_per_frame:,.0f}"),
            (f"JPEG q{JPEG_QUALITY} bytes per frame", f"{self.jpeg_bytes_per_frame:,.0f}"),
            ("RefScale bytes per frame (LR + S_map PNG)", f"{self.refscale_bytes_per_frame:,.0f}"),
            ("compression vs raw / lossless PNG / JPEG", f"{ratio_raw:.1f}x / {ratio_png:.2f}x / {ratio_jpeg:.2f}x"),
            ("RefScale bag on disk / raw drive B bag", f"{self.bag_bytes:,} / {self.raw_bag_bytes:,} bytes"),
            ("rebuilt frames PSNR / SSIM vs raw", f"{self.psnr:.2f} dB / {self.ssim:.4f} ({self.rebuilt} frames)"),
            (f"JPEG q{JPEG_QUALITY} PSNR / SSIM (same frames)", f"{self.jpeg_psnr:.2f} dB / {self.jpeg_ssim:.4f}"),
        ]
        lines = ["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
        return "\n".join(lines)


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _log(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


def build_cache(drive_a: Path, cache_dir: Path, every_m: float) -> int:
    from refscale_model.refcache.store import ReferenceCache, build_from_bag

    if cache_dir.exists():
        shutil.rmtree(cache_dir)
    with ReferenceCache.open(cache_dir, create=True) as cache:
        build_from_bag(cache, drive_a, CAMERA_TOPIC, gps_topic=GPS_TOPIC, every_m=every_m, route="sample-route",
                       drive="drive_a", camera="front")
        return len(cache)


def export_onnx(weights: str, out: Path, allow_untrained: bool) -> Path:
    from refscale_model.backends.onnx_export import export_onnx as export
    from refscale_model.weights import load_model

    export(load_model(weights, allow_untrained=allow_untrained), out, model_id=weights)
    return out


def record(settings: DemoSettings, drive_b: Path, cache_dir: Path, onnx_path: Path | None) -> tuple[object, int]:
    """Run the recorder node while the player publishes drive B; returns (RecorderReport, messages played)."""
    from refscale_model.cli.ros import play_bag, run_recorder

    domain = settings.domain_id if settings.domain_id is not None else 100 + os.getpid() % 100
    bags_dir = settings.out_dir / "bags"
    if bags_dir.exists():
        shutil.rmtree(bags_dir)
    overrides = {
        "cameras": [f"{CAMERA_TOPIC}:Image:front"],
        "gps_topic": GPS_TOPIC,
        "passthrough": [f"{CAMERA_INFO_TOPIC}:sensor_msgs/msg/CameraInfo"],
        "cache_dir": str(cache_dir),
        "weights": settings.weights,
        "allow_untrained": settings.allow_untrained,
        "onnx_model": str(onnx_path) if onnx_path else "",
        "providers": ["CPUExecutionProvider"] if onnx_path else [],
        "output_dir": str(bags_dir),
        "bag_name": "drive_b_refscale",
        "shutdown_drain_s": 30.0,
    }
    ready, stop = threading.Event(), threading.Event()
    box: dict[str, object] = {}

    def _recorder() -> None:
        try:
            box["report"] = run_recorder(None, overrides, stop=stop, ready=ready, domain_id=domain)
        except BaseException as exc:  # re-raised in the main thread
            box["error"] = exc
            ready.set()

    thread = threading.Thread(target=_recorder, name="recorder", daemon=True)
    thread.start()
    ready.wait(120)
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    published = play_bag(drive_b, rate=settings.rate, topics=[CAMERA_TOPIC, GPS_TOPIC, CAMERA_INFO_TOPIC],
                         wait_topics=[CAMERA_TOPIC], domain_id=domain)
    time.sleep(0.5)
    stop.set()
    thread.join(180)
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["report"], published


def _raw_frames(drive_b: Path) -> dict[int, np.ndarray]:
    from refscale_model.pipeline import iter_camera_frames

    return {stamp: rgb for _, stamp, _, rgb in iter_camera_frames(drive_b, [CAMERA_TOPIC])}


def _figure(path: Path, raw: np.ndarray, lr: np.ndarray, smap: np.ndarray | None, levels: int,
            rebuilt: np.ndarray) -> None:
    """raw | LR (nearest-upscaled) | S_map heat map | rebuilt | |error| ×8."""
    h, w = raw.shape[:2]
    lr_big = cv2.resize(lr, (w, h), interpolation=cv2.INTER_NEAREST)
    if smap is not None:
        heat = cv2.applyColorMap((smap.astype(np.float32) * 255 / (levels - 1)).astype(np.uint8), cv2.COLORMAP_JET)
        heat = cv2.cvtColor(cv2.resize(heat, (w, h), interpolation=cv2.INTER_NEAREST), cv2.COLOR_BGR2RGB)
    else:
        heat = np.zeros_like(raw)
    err = np.clip(np.abs(raw.astype(np.int16) - rebuilt.astype(np.int16)) * 8, 0, 255).astype(np.uint8)
    strip = np.concatenate([raw, lr_big, heat, rebuilt, err], axis=1)
    scale = min(1.0, 3200 / strip.shape[1])
    strip = cv2.resize(strip, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))


def reconstruct_and_score(settings: DemoSettings, bag: Path, cache_dir: Path, drive_b: Path,
                          summary: DemoSummary) -> None:
    from refscale_model.pipeline import FrameFailure, Reconstructor
    from refscale_model.refcache.store import ReferenceCache
    from refscale_model.weights import load_model

    raw = _raw_frames(drive_b)
    model = load_model(settings.weights, allow_untrained=settings.allow_untrained)
    scores, jpeg_scores, refscale_bytes, jpeg_bytes, png_bytes = [], [], [], [], []
    with ReferenceCache.open(cache_dir, readonly=True) as cache:
        recon = Reconstructor(model, cache)
        stored = {(f.stamp_ns): f for f in recon.frames(bag) if not isinstance(f, FrameFailure)}
        for item in recon.run(bag):
            if isinstance(item, FrameFailure):
                summary.failures[item.kind] = summary.failures.get(item.kind, 0) + 1
                continue
            truth = raw.get(item.stamp_ns)
            if truth is None:
                summary.failures["no_raw_frame"] = summary.failures.get("no_raw_frame", 0) + 1
                continue
            enc = stored[item.stamp_ns]
            refscale_bytes.append(len(encode_png(enc.lr)) + (len(encode_png(enc.smap)) if enc.smap is not None else 0))
            bgr = cv2.cvtColor(truth, cv2.COLOR_RGB2BGR)
            ok, jpg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            jpeg_bytes.append(len(jpg))
            png_bytes.append(len(encode_png(truth)))
            jpeg_rgb = cv2.cvtColor(cv2.imdecode(jpg, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            scores.append((psnr(truth, item.rgb), ssim(truth, item.rgb)))
            jpeg_scores.append((psnr(truth, jpeg_rgb), ssim(truth, jpeg_rgb)))
            if len(scores) <= settings.figures:
                _figure(settings.out_dir / f"frame_{len(scores):02d}.png", truth, enc.lr, enc.smap,
                        enc.meta.smap_levels, item.rgb)
    summary.rebuilt = len(scores)
    if scores:
        summary.psnr, summary.ssim = (float(v) for v in np.mean(scores, axis=0))
        summary.jpeg_psnr, summary.jpeg_ssim = (float(v) for v in np.mean(jpeg_scores, axis=0))
        summary.refscale_bytes_per_frame = float(np.mean(refscale_bytes))
        summary.jpeg_bytes_per_frame = float(np.mean(jpeg_bytes))
        summary.png_bytes_per_frame = float(np.mean(png_bytes))
    h, w = settings.size[1], settings.size[0]
    summary.raw_bytes_per_frame = float(h * w * 3)


def run_demo(settings: DemoSettings) -> DemoSummary:
    from refscale_model.sample_drive import generate_sample_drive

    out = settings.out_dir
    out.mkdir(parents=True, exist_ok=True)
    summary = DemoSummary()
    t = time.perf_counter()
    _log(f"1/5 sample route: {settings.drive_dir} ({settings.frames} frames per drive, "
         f"{settings.size[0]}x{settings.size[1]})")
    drive = generate_sample_drive(settings.drive_dir, frames=settings.frames, size=settings.size)
    summary.seconds["sample_drive"] = time.perf_counter() - t
    _log(f"    {'generated' if drive.regenerated else 'reused'} in {summary.seconds['sample_drive']:.1f} s")

    t = time.perf_counter()
    cache_dir = out / "refcache"
    n_refs = build_cache(drive.drive_a, cache_dir, settings.keyframe_every_m)
    summary.seconds["cache"] = time.perf_counter() - t
    _log(f"2/5 reference cache from drive A: {n_refs} keyframes every {settings.keyframe_every_m:g} m "
         f"({summary.seconds['cache']:.1f} s)")

    onnx_path = None
    if settings.backend == "onnx":
        onnx_path = export_onnx(settings.weights, out / f"{settings.weights}.onnx", settings.allow_untrained)
        _log(f"    exported the downscaling half to {onnx_path}")

    t = time.perf_counter()
    _log(f"3/5 recording: recorder node + player publishing drive B at {settings.rate:g}x real time over DDS")
    report, _messages = record(settings, drive.drive_b, cache_dir, onnx_path)
    summary.seconds["record"] = time.perf_counter() - t
    if not report.ok:  # type: ignore[attr-defined]
        raise RuntimeError(f"recording failed: {report.write_error}")  # type: ignore[attr-defined]
    summary.published = settings.frames
    summary.recorded = report.frames  # type: ignore[attr-defined]
    summary.dropped = report.dropped  # type: ignore[attr-defined]
    summary.errors = dict(report.errors)  # type: ignore[attr-defined]
    summary.without_reference = report.frames_without_reference  # type: ignore[attr-defined]
    summary.provider = report.provider  # type: ignore[attr-defined]
    encode_ms = report.encode_ms_mean  # type: ignore[attr-defined]
    summary.encode_fps = 1000.0 / encode_ms if encode_ms else 0.0
    bag = report.bags[0]  # type: ignore[attr-defined]
    summary.bag_bytes = _dir_bytes(bag)
    summary.raw_bag_bytes = _dir_bytes(drive.drive_b)
    _log(f"    {summary.recorded} frames recorded, {summary.dropped} dropped -> {bag}")

    t = time.perf_counter()
    _log("4/5 offboard reconstruction")
    reconstruct_and_score(settings, bag, cache_dir, drive.drive_b, summary)
    summary.seconds["reconstruct"] = time.perf_counter() - t

    _log("5/5 summary")
    text = summary.table()
    print("\n" + text + "\n", flush=True)
    (out / "summary.md").write_text(
        "# RefScale demo\n\n" + text + "\n\nFigures `frame_NN.png`: raw | LR | S_map | rebuilt | |error| x8.\n\n"
        + "Timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in summary.seconds.items()) + "\n"
    )
    return summary
