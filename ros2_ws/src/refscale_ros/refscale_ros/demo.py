"""
`make demo` / `refscale demo`: the whole product on the embedded sample route, end to end.

sample route (drive A, drive B) -> reference cache from drive A -> the real recorder node (the
class `ros2 launch refscale_ros record.launch.py` starts) fed by a player publishing drive B over
DDS at its real rate -> offboard reconstruction -> summary table, `summary.md` and figures.
"""

from __future__ import annotations

from dataclasses import dataclass
import os
from pathlib import Path
import shutil
import threading
import time

from refscale_ros.demo_score import CAMERA_TOPIC, DemoSummary, reconstruct_and_score
from refscale_ros.player import play_bag
from refscale_ros.recorder import run_recorder
from refscale_ros.recorder_stats import RecorderReport

GPS_TOPIC = '/gps/fix'
CAMERA_INFO_TOPIC = '/camera/front/camera_info'


@dataclass
class DemoSettings:
    out_dir: Path = Path('demo-output')
    drive_dir: Path = Path('sample-drive')
    frames: int = 200
    size: tuple[int, int] = (1280, 720)
    weights: str = 'x2-lossy'
    backend: str = 'onnx'
    """'onnx' (the car path: exported graph on ONNX Runtime) or 'torch'."""
    rate: float = 1.0
    keyframe_every_m: float = 2.0
    """Reference keyframe spacing (the `refscale cache build` default: denser references pay)."""
    figures: int = 3
    domain_id: int | None = None
    allow_untrained: bool = False
    lr_codec: str = 'h265'
    """LR codec of the recording (png lossless, jpeg, webp, avif, h264, h265)."""
    lr_quality: int = 30
    """Its quality 0-100, or crf 0-51 for h264/h265 (-1: the codec default)."""
    lr_gop: int = 0
    """h264/h265: keyframe every N recorded frames (0: the default, 10)."""
    field_frames: int = 8
    """Frames the field comparison (JPEG, WebP, AVIF, x265 on them) codes; 0 = skip it."""


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob('*') if p.is_file())


def _log(msg: str) -> None:
    print(f'[demo] {msg}', flush=True)


def build_cache(drive_a: Path, cache_dir: Path, every_m: float) -> int:
    from refscale_model.refcache import build_from_bag, ReferenceCache

    if cache_dir.exists():
        shutil.rmtree(cache_dir)
    with ReferenceCache.open(cache_dir, create=True) as cache:
        build_from_bag(
            cache,
            drive_a,
            CAMERA_TOPIC,
            gps_topic=GPS_TOPIC,
            every_m=every_m,
            route='sample-route',
            drive='drive_a',
            camera='front',
        )
        return len(cache)


def export_onnx(weights: str, out: Path, allow_untrained: bool) -> Path:
    from refscale_model.backends.onnx_export import export_onnx as export
    from refscale_model.weights import load_model

    export(load_model(weights, allow_untrained=allow_untrained), out, model_id=weights)
    return out


def record(
    settings: DemoSettings, drive_b: Path, cache_dir: Path, onnx_path: Path | None
) -> tuple[RecorderReport, int]:
    """Run the recorder node while the player publishes drive B; returns (report, messages)."""
    domain = settings.domain_id if settings.domain_id is not None else 100 + os.getpid() % 100
    bags_dir = settings.out_dir / 'bags'
    if bags_dir.exists():
        shutil.rmtree(bags_dir)
    overrides = {
        'cameras': [f'{CAMERA_TOPIC}:Image:front'],
        'gps_topic': GPS_TOPIC,
        'passthrough': [f'{CAMERA_INFO_TOPIC}:sensor_msgs/msg/CameraInfo'],
        'cache_dir': str(cache_dir),
        'weights': settings.weights,
        'allow_untrained': settings.allow_untrained,
        'onnx_model': str(onnx_path) if onnx_path else '',
        'providers': ['CPUExecutionProvider'] if onnx_path else [],
        'output_dir': str(bags_dir),
        'bag_name': 'drive_b_refscale',
        'shutdown_drain_s': 30.0,
        'lr_codec': settings.lr_codec,
        'lr_quality': settings.lr_quality,
        'lr_gop': settings.lr_gop,
    }
    ready, stop = threading.Event(), threading.Event()
    reports: list[RecorderReport] = []
    errors: list[BaseException] = []

    def _recorder() -> None:
        try:
            reports.append(run_recorder(None, overrides, stop=stop, ready=ready, domain_id=domain))
        except BaseException as exc:  # re-raised in the main thread
            errors.append(exc)
            ready.set()

    thread = threading.Thread(target=_recorder, name='recorder', daemon=True)
    thread.start()
    ready.wait(120)
    if errors:
        raise errors[0]
    published = play_bag(
        drive_b,
        rate=settings.rate,
        topics=[CAMERA_TOPIC, GPS_TOPIC, CAMERA_INFO_TOPIC],
        wait_topics=[CAMERA_TOPIC],
        domain_id=domain,
    )
    time.sleep(0.5)
    stop.set()
    thread.join(180)
    if errors:
        raise errors[0]
    if not reports:
        raise RuntimeError('the recorder did not stop within 180 s')
    return reports[0], published


def run_demo(settings: DemoSettings) -> DemoSummary:
    from refscale_model.sample_drive import generate_sample_drive

    out = settings.out_dir
    out.mkdir(parents=True, exist_ok=True)
    summary = DemoSummary()
    t = time.perf_counter()
    _log(
        f'1/5 sample route: {settings.drive_dir} ({settings.frames} frames per drive, '
        f'{settings.size[0]}x{settings.size[1]})'
    )
    drive = generate_sample_drive(settings.drive_dir, frames=settings.frames, size=settings.size)
    summary.seconds['sample_drive'] = time.perf_counter() - t
    how = 'generated' if drive.regenerated else 'reused'
    _log(f'    {how} in {summary.seconds["sample_drive"]:.1f} s')

    t = time.perf_counter()
    cache_dir = out / 'refcache'
    n_refs = build_cache(drive.drive_a, cache_dir, settings.keyframe_every_m)
    summary.seconds['cache'] = time.perf_counter() - t
    _log(
        f'2/5 reference cache from drive A: {n_refs} keyframes '
        f'every {settings.keyframe_every_m:g} m '
        f'({summary.seconds["cache"]:.1f} s)'
    )

    onnx_path = None
    if settings.backend == 'onnx':
        onnx_path = export_onnx(
            settings.weights, out / f'{settings.weights}.onnx', settings.allow_untrained
        )
        _log(f'    exported the downscaling half to {onnx_path}')

    t = time.perf_counter()
    _log(
        f'3/5 recording: recorder node + player publishing drive B at {settings.rate:g}x '
        'real time over DDS'
    )
    report, _messages = record(settings, drive.drive_b, cache_dir, onnx_path)
    summary.seconds['record'] = time.perf_counter() - t
    if not report.ok:
        raise RuntimeError(f'recording failed: {report.write_error}')
    summary.published = settings.frames
    summary.recorded = report.frames
    summary.dropped = report.dropped
    summary.errors = dict(report.errors)
    summary.without_reference = report.frames_without_reference
    summary.provider = report.provider
    encode_ms = report.encode_ms_mean
    summary.encode_fps = 1000.0 / encode_ms if encode_ms else 0.0
    bag = report.bags[0]
    summary.bag_bytes = _dir_bytes(bag)
    summary.raw_bag_bytes = _dir_bytes(drive.drive_b)
    _log(f'    {summary.recorded} frames recorded, {summary.dropped} dropped -> {bag}')

    t = time.perf_counter()
    _log('4/5 offboard reconstruction')
    reconstruct_and_score(settings, bag, cache_dir, drive.drive_b, summary)
    summary.seconds['reconstruct'] = time.perf_counter() - t

    _log('5/5 summary')
    text = summary.table()
    print('\n' + text + '\n', flush=True)
    (out / 'summary.md').write_text(
        '# RefScale demo\n\n'
        + text
        + '\n\nFigures `frame_NN.png`: raw | LR | S_map | rebuilt | |error| x8; `rd.png`: the '
        + 'rate-distortion curves of the full-resolution codecs on the same frames, with the '
        + 'RefScale operating point starred.\n\n'
        + 'Timings (s): '
        + ', '.join(f'{k} {v:.1f}' for k, v in summary.seconds.items())
        + '\n'
    )
    return summary
