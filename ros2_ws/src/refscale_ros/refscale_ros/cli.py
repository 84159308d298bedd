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
    d.add_argument('--weights', default='x2')
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


def run_demo(args: argparse.Namespace) -> int:
    """`refscale demo`: 0 when frames were rebuilt."""
    from refscale_ros.demo import DemoSettings
    from refscale_ros.demo import run_demo as demo

    summary = demo(DemoSettings(
        out_dir=args.out, drive_dir=args.drive_dir, frames=args.frames,
        size=(args.width, args.height), weights=args.weights, backend=args.backend,
        rate=args.rate, figures=args.figures, domain_id=args.domain_id,
        allow_untrained=args.allow_untrained))
    return 0 if summary.rebuilt > 0 else 1
