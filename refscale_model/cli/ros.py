"""`refscale record` / `refscale reconstruct-node`: the ROS 2 nodes of `refscale_ros`, without ros2 launch.

They start exactly the node classes that `ros2 launch refscale_ros record.launch.py` starts, with
the same ROS 2 params file (`--params`, `-p name:=value` overrides as `--ros-args -p`). Why a
CLI at all: `launch` / `launch_ros` / `ros2cli` have no PyPI wheels, so outside a ROS 2 install
(dev venvs, CI, `make demo`) this is how the recorder runs on a real DDS graph.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from types import ModuleType
from typing import Any

PACKAGE_SRC_ENV = "REFSCALE_ROS_SRC"
"""Environment variable naming the `refscale_ros` source package directory (overrides the search)."""


def register(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser(
        "record",
        help="run the onboard ROS 2 recorder node (same class and YAML as `ros2 launch refscale_ros record.launch.py`)",
    )
    _common(r, "config/record.yaml")
    r.add_argument("--duration", type=float, default=None, metavar="S", help="stop after S seconds (default: SIGINT)")
    r.set_defaults(func=run_record)

    n = sub.add_parser(
        "reconstruct-node",
        help="run the offboard ROS 2 reconstructor node (bag -> HR Image topics / bag, or live topics)",
    )
    _common(n, "config/reconstruct.yaml")
    n.add_argument(
        "--duration", type=float, default=None, metavar="S", help="stop after S seconds (batch mode stops when done)"
    )
    n.set_defaults(func=run_reconstruct_node)


def _common(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--params", type=Path, default=None, help=f"ROS 2 params file (default: the package's {default})")
    p.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="NAME:=VALUE",
        help="parameter override, as `--ros-args -p` (repeatable; lists as YAML: -p \"cameras:=['/a', '/b']\")",
    )
    p.add_argument("--domain-id", type=int, default=None, help="ROS_DOMAIN_ID (default: from the environment)")
    p.add_argument("--report", type=Path, default=None, metavar="JSON", help="also write the final report as JSON")


def load_refscale_ros(module: str = "refscale_ros") -> ModuleType:
    """Import `refscale_ros` (or one of its modules), wherever it lives.

    In a ROS 2 install (the Docker image) colcon installed it and it simply imports. In a dev
    venv it is not pip-installed (it is an ament_python package, built by colcon), so we fall
    back to its source directory: $REFSCALE_ROS_SRC, else `ros2_ws/src/refscale_ros` of the
    checkout this refscale_model comes from. The directory is *appended* to sys.path, so an
    installed package always wins over the source tree.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != "refscale_ros":
            raise
    candidates = [Path(os.environ[PACKAGE_SRC_ENV])] if os.environ.get(PACKAGE_SRC_ENV) else []
    candidates.append(Path(__file__).resolve().parents[2] / "ros2_ws" / "src" / "refscale_ros")
    for src in candidates:
        if (src / "refscale_ros" / "__init__.py").is_file():
            if str(src) not in sys.path:
                sys.path.append(str(src))
            return importlib.import_module(module)
    raise ModuleNotFoundError(
        "refscale_ros is neither installed (colcon build; source install/setup.bash) nor found at "
        + ", ".join(str(c) for c in candidates)
        + f"; set {PACKAGE_SRC_ENV} to the package directory",
        name="refscale_ros",
    )


def run_recorder(params_file: str | Path | None = None, overrides: Any = (), **kwargs: Any) -> Any:
    """Run the recorder node in this process; returns its `RecorderReport` once the bag is final.

    A small API for scripts (`make demo`): `params_file` defaults to the package's record.yaml;
    `overrides` is a mapping or 'name:=value' strings; keyword arguments go to
    `refscale_ros.recorder.run_recorder` (`duration_s`, `stop`, `ready`, `domain_id`).
    """
    mod = load_refscale_ros("refscale_ros.recorder")
    if params_file is None:
        params_file = load_refscale_ros("refscale_ros.common").default_params_file("record.yaml")
    return mod.run_recorder(params_file, overrides, **kwargs)


def play_bag(bag: str | Path, **kwargs: Any) -> int:
    """Publish a bag's messages at the recorded rate (refscale_ros.player.play_bag); returns the count."""
    return load_refscale_ros("refscale_ros.player").play_bag(bag, **kwargs)


def _load(module: str) -> ModuleType | None:
    try:
        return load_refscale_ros(module)
    except ModuleNotFoundError as exc:
        hint = " (pip install -e '.[ros]')" if exc.name and exc.name != "refscale_ros" else ""
        print(f"error: cannot import the ROS 2 node: {exc}{hint}", file=sys.stderr)
        return None


def _params_file(args: argparse.Namespace, name: str) -> Path:
    if args.params is not None:
        return args.params
    common = load_refscale_ros("refscale_ros.common")
    return common.default_params_file(name)


def _write_report(path: Path | None, report: object) -> None:
    if path is not None:
        data = asdict(report)  # type: ignore[call-overload]
        path.write_text(json.dumps(data, indent=2, default=str) + "\n")


def _run_node(args: argparse.Namespace, module: str, runner: str, params_name: str, what: str) -> Any:
    """Start one node through its `run_*` API (SIGINT/SIGTERM stop it cleanly); None if it cannot start."""
    mod = _load(module)
    if mod is None:
        return None
    try:
        report = getattr(mod, runner)(
            _params_file(args, params_name),
            args.param,
            duration_s=args.duration,
            domain_id=args.domain_id,
            signals=True,
        )
    except (ValueError, FileNotFoundError, RuntimeError, OSError) as exc:
        print(f"error: {what} cannot start: {exc}", file=sys.stderr)
        return None
    print(report.summary(), flush=True)
    _write_report(args.report, report)
    return report


def run_record(args: argparse.Namespace) -> int:
    report = _run_node(args, "refscale_ros.recorder", "run_recorder", "record.yaml", "recorder")
    if report is None:
        return 2
    return 0 if report.ok else 1


def run_reconstruct_node(args: argparse.Namespace) -> int:
    report = _run_node(args, "refscale_ros.reconstructor", "run_reconstructor", "reconstruct.yaml", "reconstructor")
    if report is None:
        return 2
    return 0 if report.ok or (report.stopped_by != "done" and not any(report.failed.values())) else 1
