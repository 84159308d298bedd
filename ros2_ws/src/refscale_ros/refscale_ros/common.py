"""
Shared plumbing of the nodes: ROS arguments, parameter declaration.

Every parameter is declared read-only: the nodes read them once at start, so a `ros2 param set`
at run time would change nothing (rclpy refuses it instead). Spinning lives in `runtime`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.logging import LoggingSeverity
from rclpy.node import Node
from rclpy.parameter import Parameter
import yaml

PACKAGE = 'refscale_ros'
_SEVERITY = {'debug': LoggingSeverity.DEBUG, 'info': LoggingSeverity.INFO,
             'warn': LoggingSeverity.WARN, 'warning': LoggingSeverity.WARN,
             'error': LoggingSeverity.ERROR, 'fatal': LoggingSeverity.FATAL}


# --------------------------------------------------------------------------- arguments
def override_args(overrides: Mapping[str, Any] | Iterable[str] = ()) -> list[str]:
    """Return `-p name:=value` pairs for rcl; mapping values are written as YAML (lists too)."""
    args: list[str] = []
    if isinstance(overrides, Mapping):
        items = [f'{k}:={_yaml_value(v)}' for k, v in overrides.items()]
    else:
        items = list(overrides)
    for item in items:
        if ':=' not in item:
            raise ValueError(f'parameter override {item!r} is not NAME:=VALUE')
        args += ['-p', item]
    return args


def _yaml_value(value: Any) -> str:
    if isinstance(value, Path):
        value = str(value)
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 20).strip()
    return text[:-4].rstrip() if text.endswith('\n...') or text.endswith(' ...') else text


def ros_args(params_file: str | Path | None = None,
             overrides: Mapping[str, Any] | Iterable[str] = ()) -> list[str]:
    """Build the argv that rcl parses as `ros2 run ... --ros-args --params-file F -p k:=v`."""
    args = ['--ros-args']
    if params_file is not None and str(params_file):
        path = Path(params_file)
        if not path.is_file():
            raise FileNotFoundError(f'params file {path} not found')
        args += ['--params-file', str(path)]
    return args + override_args(overrides)


def default_params_file(name: str) -> Path:
    """Find `config/<name>` of the installed package (ament index), else of this source tree."""
    try:
        from ament_index_python.packages import get_package_share_directory

        path = Path(get_package_share_directory(PACKAGE)) / 'config' / name
        if path.is_file():
            return path
    except (ImportError, LookupError, ValueError, OSError):  # not installed / no AMENT_PREFIX_PATH
        pass
    return Path(__file__).resolve().parent.parent / 'config' / name


# --------------------------------------------------------------------------- parameters
def declare(node: Node, specs: Sequence[tuple[str, Any, str]]) -> dict[str, Any]:
    """
    Declare (name, default, description) parameters, read-only, and return their values.

    A default of `list` (or `Parameter.Type.STRING_ARRAY`) declares a string list that may be
    left empty; a default of None declares a dynamically typed parameter (string or list).
    """
    values: dict[str, Any] = {}
    for name, default, text in specs:
        if default is None:
            desc = ParameterDescriptor(description=text, dynamic_typing=True,
                                       read_only=True)
            value = node.declare_parameter(name, '', desc).value
        elif default is Parameter.Type.STRING_ARRAY or default is list:
            desc = ParameterDescriptor(description=text, read_only=True,
                                       type=Parameter.Type.STRING_ARRAY.value)
            # declared by type, without a default: a [] default would be typed BYTE_ARRAY
            value = node.declare_parameter(name, Parameter.Type.STRING_ARRAY, desc).value or []
        else:
            desc = ParameterDescriptor(description=text, read_only=True)
            value = node.declare_parameter(name, default, desc).value
        values[name] = list(value) if isinstance(value, (list, tuple)) else value
    return values


def string_list(value: Any) -> list[str]:
    """Normalise a string-list parameter also given as one 'a,b c' string (launch arguments)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [p for p in value.replace(',', ' ').split() if p]
    return [str(v).strip() for v in value if str(v).strip()]


def set_log_level(node: Node, level: str) -> None:
    try:
        node.get_logger().set_level(_SEVERITY[level.strip().lower()])
    except KeyError:
        node.get_logger().warning(f'unknown log_level {level!r}; keeping the default')
