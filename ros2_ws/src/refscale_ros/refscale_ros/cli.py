"""
`refscale record`, `refscale reconstruct-node`, `refscale demo`: the ROS 2 side of the CLI.

The `refscale` command (refscale_model/cli) finds these through the `refscale.commands` entry
point group that this package's setup.py declares, so they exist once refscale_ros is installed
(`make setup` pip-installs it into the venv; colcon installs it in a ROS 2 workspace). They start
exactly the node classes that `ros2 launch refscale_ros record.launch.py` starts, with the same
params files (`--params`, `-p name:=value` like `--ros-args -p`). Why a CLI at all: `launch` /
`launch_ros` have no PyPI wheels, so in a dev venv this is how the nodes run on a DDS graph.
Nothing heavy (rclpy, torch) is imported until a command runs.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
import json
from pathlib import Path
import sys
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ROS 2 subcommands to the `refscale` parser."""
    r = sub.add_parser('record', help='run the onboard ROS 2 recorder node (same class and YAML '
                       'as `ros2 launch refscale_ros record.launch.py`)')
    _common(r, 'config/record.yaml')
    r.add_argument('--duration', type=float, default=None, metavar='S',
                   help='stop after S seconds (default: SIGINT)')
    r.add_argument('--dry-run', action='store_true',
                   help='record nothing: run a few synthetic frames through the configured '
                        'onboard path (model, providers, cache, registration, LR codec, a bag '
                        'write) and print the frames/s and drop rate to expect for --size, --rate')
    r.add_argument('--size', default='1280x720', metavar='WxH',
                   help='camera frame size for --dry-run (default 1280x720)')
    r.add_argument('--rate', type=float, default=10.0, metavar='HZ',
                   help='frame rate of each camera for --dry-run (default 10)')
    r.add_argument('--frames', type=int, default=6, metavar='N',
                   help='timed frames per camera for --dry-run (default 6)')
    r.set_defaults(func=run_record)

    n = sub.add_parser('reconstruct-node', help='run the offboard ROS 2 reconstructor node '
                       '(bag -> HR Image topics / bag, or live topics)')
    _common(n, 'config/reconstruct.yaml')
    n.add_argument('--duration', type=float, default=None, metavar='S',
                   help='stop after S seconds (batch mode stops when done)')
    n.set_defaults(func=run_reconstruct_node)

    d = sub.add_parser('demo', help='run the whole product on the generated sample route '
                       '(what `make demo` runs)')
    d.add_argument('--out', type=Path, default=Path('demo-output'))
    d.add_argument('--drive-dir', type=Path, default=Path('sample-drive'))
    d.add_argument('--frames', type=int, default=200, help='frames per drive (10 Hz)')
    d.add_argument('--width', type=int, default=1280)
    d.add_argument('--height', type=int, default=720)
    d.add_argument('--weights', default=DEMO_WEIGHTS,
                   help=f'default {DEMO_WEIGHTS} (the best measured setting, README); x2 with png')
    d.add_argument('--lr-codec', default=DEMO_LR_CODEC,
                   help='png (lossless), jpeg, webp, avif, h264, h265')
    d.add_argument('--lr-quality', type=int, default=None,
                   help='codec quality 0-100 (h264/h265: crf 0-51); -1 = the codec default; '
                        'default: the measured demo setting of the codec, else the codec default')
    d.add_argument('--lr-gop', type=int, default=0,
                   help='h264/h265: keyframe every N recorded frames (0 = the default, 10)')
    d.add_argument('--field-frames', type=int, default=8,
                   help='frames coded by JPEG/WebP/AVIF/x265 for the comparison (0 = skip)')
    d.add_argument('--backend', choices=['onnx', 'torch'], default='onnx')
    d.add_argument('--rate', type=float, default=1.0,
                   help='playback speed of drive B (1 = real time)')
    d.add_argument('--figures', type=int, default=3)
    d.add_argument('--domain-id', type=int, default=None)
    d.add_argument('--allow-untrained', action='store_true', help=argparse.SUPPRESS)
    d.set_defaults(func=run_demo)


def _common(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument('--params', type=Path, default=None,
                   help=f"ROS 2 params file (default: the package's {default})")
    p.add_argument('-p', '--param', action='append', default=[], metavar='NAME:=VALUE',
                   help='parameter override, as `--ros-args -p` (repeatable; lists as YAML: '
                        '-p "cameras:=[\'/a\', \'/b\']")')
    p.add_argument('--domain-id', type=int, default=None,
                   help='ROS_DOMAIN_ID (default: from the environment)')
    p.add_argument('--report', type=Path, default=None, metavar='JSON',
                   help='also write the final report as JSON')


def _run_node(args: argparse.Namespace, module: str, what: str) -> Any:
    """Start one node through its `run_*` API (SIGINT/SIGTERM stop it); None if it cannot."""
    try:
        if module == 'recorder':
            from refscale_ros.recorder import run_recorder as run
        else:
            from refscale_ros.reconstructor import run_reconstructor as run
    except ModuleNotFoundError as exc:
        print(f"error: cannot import the ROS 2 node: {exc} (pip install -e '.[ros]')",
              file=sys.stderr)
        return None
    try:
        report = run(args.params, args.param, duration_s=args.duration,
                     domain_id=args.domain_id, signals=True)
    except (ValueError, FileNotFoundError, RuntimeError, OSError) as exc:
        print(f'error: {what} cannot start: {exc}', file=sys.stderr)
        return None
    print(report.summary(), flush=True)
    if args.report is not None:
        args.report.write_text(json.dumps(asdict(report), indent=2, default=str) + '\n')
    return report


def run_record(args: argparse.Namespace) -> int:
    """`refscale record`: 0 after a clean stop, 1 on a write error, 2 if it cannot start."""
    if args.dry_run:
        return dry_run(args)
    report = _run_node(args, 'recorder', 'recorder')
    if report is None:
        return 2
    return 0 if report.ok else 1


def run_reconstruct_node(args: argparse.Namespace) -> int:
    """`refscale reconstruct-node`: 0 when every frame was rebuilt, 1 if some failed, 2."""
    report = _run_node(args, 'reconstructor', 'reconstructor')
    if report is None:
        return 2
    ok = report.ok or (report.stopped_by != 'done' and not any(report.failed.values()))
    return 0 if ok else 1


DEMO_WEIGHTS, DEMO_LR_CODEC = 'x2-lossy', 'h265'
"""`make demo`'s setting: the codec-aware weights with an H.265 LR stream. On the demo's recorded
frames it needs fewer bytes than full-resolution H.265 at the same GOP (and than JPEG, WebP, AVIF
and x265 intra) at about 0.07 bits per HR pixel; WebP q70 (0.2 bpp) does not beat full-resolution
H.265 (docs/rate-distortion.md, README)."""
DEMO_LR_QUALITIES = {'h265': 30, 'webp': 70}
"""The measured demo operating point per LR codec (h265: crf); other codecs: their default."""


def demo_lr_quality(codec: str, asked: int | None) -> int:
    """The demo's LR quality: as asked, else the measured setting of `codec`, else -1 (default)."""
    if codec == 'png':
        return -1  # lossless: no quality
    if asked is not None:
        return asked
    return DEMO_LR_QUALITIES.get(codec, -1)


def run_demo(args: argparse.Namespace) -> int:
    """`refscale demo`: 0 when frames were rebuilt."""
    from refscale_ros.demo import DemoSettings
    from refscale_ros.demo import run_demo as demo

    summary = demo(DemoSettings(
        out_dir=args.out, drive_dir=args.drive_dir, frames=args.frames,
        size=(args.width, args.height), weights=args.weights, backend=args.backend,
        rate=args.rate, figures=args.figures, domain_id=args.domain_id,
        allow_untrained=args.allow_untrained, lr_codec=args.lr_codec,
        lr_quality=demo_lr_quality(args.lr_codec, args.lr_quality), lr_gop=args.lr_gop,
        field_frames=args.field_frames))
    return 0 if summary.rebuilt > 0 else 1


def read_params(params_file: Path | None, overrides: list[str], node: str) -> dict[str, Any]:
    """The node's parameters without rclpy: declared defaults <- YAML file <- `-p` overrides."""
    from refscale_ros.common import default_params_file
    from refscale_ros.recorder_config import PARAMETERS
    import yaml

    params = {name: default for name, default, _ in PARAMETERS}
    path = params_file or default_params_file('record.yaml')
    doc = yaml.safe_load(Path(path).read_text()) or {}
    for key in ('/**', node):
        params.update((doc.get(key) or {}).get('ros__parameters') or {})
    for item in overrides:
        name, sep, value = item.partition(':=')
        if not sep:
            raise ValueError(f'parameter override {item!r}: expected NAME:=VALUE')
        params[name] = yaml.safe_load(value)
    return params


def dry_run(args: argparse.Namespace) -> int:
    """`refscale record --dry-run`: measure the configured onboard path on synthetic frames and
    print the frames/s and drop rate to expect; 0 if every frame can be kept, 1 if frames will
    be dropped, 2 if the configuration cannot start."""
    import tempfile

    import cv2
    import numpy as np
    from refscale_model.backends.loader import load_downscaler
    from refscale_model.backends.onboard_bench import expected_rate, measure, synthetic_drive
    from refscale_model.bags import BagWriter, msgs
    from refscale_model.pipeline import FrameEncoder, Pose
    from refscale_model.pipeline.stages import EncoderPipeline
    from refscale_model.refcache import ReferenceCache
    from refscale_model.registration import RegistrationConfig
    from refscale_ros.common import string_list
    from refscale_ros.recorder_config import (
        batch_network,
        encoder_args,
        lr_settings,
        parse_cameras,
    )

    try:
        p = read_params(args.params, args.param, 'refscale_recorder')
        w, h = (int(v) for v in str(args.size).lower().split('x'))
        cameras = parse_cameras(string_list(p['cameras']))
        lr = lr_settings(p)
        backend = load_downscaler(p['weights'], onnx_model=p['onnx_model'] or None,
                                  providers=p['providers'], device=p['device'],
                                  allow_untrained=p['allow_untrained'])
    except (ValueError, FileNotFoundError, RuntimeError, OSError) as exc:
        print(f'error: recorder cannot start: {exc}', file=sys.stderr)
        return 2
    # a textured scene that registers (the reference is the frame seen slightly earlier)
    rng = np.random.default_rng(0)
    scene = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
    scene = cv2.GaussianBlur(cv2.resize(scene, (w, h), interpolation=cv2.INTER_CUBIC), (5, 5), 1.0)
    frames, ref = synthetic_drive(scene, scene, (h, w), args.frames + 1)
    reg = (RegistrationConfig() if p['registration']
           else RegistrationConfig(estimators=(), fallback='identity'))
    with tempfile.TemporaryDirectory(prefix='refscale_dry_run_') as tmp:
        use_ref = backend.info.uses_reference and bool(p['cache_dir'])
        cache = None
        if use_ref:  # the configured cache is not touched: a one-entry cache of the same kind
            with ReferenceCache.open(Path(tmp) / 'cache', create=True) as c:
                for cam in cameras:
                    c.add(ref, cam.cache_id, 45.0, 7.0, 0.0, 1, 'dry-run', 'dry-run')
            cache = ReferenceCache.open(Path(tmp) / 'cache', readonly=True)
        enc = FrameEncoder(BagWriter(Path(tmp) / 'bag'), backend.downscaler, backend.info,
                           cache=cache, registration=reg,
                           camera_names={c.topic: c.cache_id for c in cameras},
                           **encoder_args(p))
        messages = []
        for i, rgb in enumerate(frames):
            for k, cam in enumerate(cameras):
                stamp = 1_700_000_000_000_000_000 + i * int(1e9 / args.rate) + k
                messages.append((cam.topic, msgs.image_msg(rgb, stamp, f'cam{k}'), stamp,
                                 Pose(45.0, 7.0, 0.0)))
        pipeline = EncoderPipeline if p.get('pipeline_stages') else None  # as the recorder runs
        together = len(cameras) if pipeline is None and batch_network(p) is not False else 1
        m = measure(enc, messages, pipeline, warmup=len(cameras), together=together)
        enc.close()
        if cache is not None:
            cache.close()
    encoded, drop = expected_rate(m.fps, len(cameras), args.rate)
    per_cam = encoded / len(cameras)
    video = f' via {lr.encoder}, gop {lr.gop}' if lr.video else ''
    print(f'dry run: {len(cameras)} camera(s) at {w}x{h}, {args.rate:g} Hz each, '
          f'{backend.provider}, LR {lr.codec}{video}, reference {"yes" if use_ref else "no"}')
    print(f'  measured: {m.fps:.2f} frames/s over all cameras ({1e3 / m.fps:.0f} ms/frame; '
          f'{m.with_reference}/{m.frames} with reference, {m.errors} errors)')
    print(f'  expected: {per_cam:.2f} frames/s per camera encoded, {100 * drop:.0f} % of frames '
          f'dropped')
    return 0 if drop == 0 else 1
