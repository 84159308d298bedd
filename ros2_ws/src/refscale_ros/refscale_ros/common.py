"""
Shared plumbing of the nodes: ROS arguments, parameters, diagnostics, model loading, spinning.

Kept free of node logic so the recorder, the reconstructor and the player stay short.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
import importlib
from pathlib import Path
import signal
import threading
import time
from typing import Any

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor
import rclpy
from rclpy.context import Context
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.logging import LoggingSeverity
from rclpy.node import Node
from rclpy.parameter import Parameter
import yaml

PACKAGE = 'refscale_ros'
LEVELS = {'OK': DiagnosticStatus.OK, 'WARN': DiagnosticStatus.WARN,
          'ERROR': DiagnosticStatus.ERROR, 'STALE': DiagnosticStatus.STALE}
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
    Declare (name, default, description) parameters and return their values.

    A default of `Parameter.Type.STRING_ARRAY` declares a string list that may be left empty;
    a default of None declares a dynamically typed parameter (string or string list).
    """
    values: dict[str, Any] = {}
    for name, default, text in specs:
        if default is None:
            desc = ParameterDescriptor(description=text, dynamic_typing=True)
            value = node.declare_parameter(name, '', desc).value
        elif default is Parameter.Type.STRING_ARRAY:
            desc = ParameterDescriptor(description=text, type=Parameter.Type.STRING_ARRAY.value)
            # declared by type, without a default: a [] default would be typed BYTE_ARRAY
            value = node.declare_parameter(name, Parameter.Type.STRING_ARRAY, desc).value or []
        else:
            desc = ParameterDescriptor(description=text)
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


# --------------------------------------------------------------------------- messages
def message_class(type_name: str) -> Any:
    """Return the rclpy class of 'pkg/msg/Name' (or 'pkg/Name')."""
    parts = type_name.split('/')
    if len(parts) == 2:
        parts = [parts[0], 'msg', parts[1]]
    if len(parts) != 3:
        raise ValueError(f'not a message type name: {type_name!r}')
    return getattr(importlib.import_module(f'{parts[0]}.{parts[1]}'), parts[2])


def diag_status(name: str, level: str, message: str, values: Mapping[str, Any],
                hardware_id: str = '') -> DiagnosticStatus:
    """Build a DiagnosticStatus; values become strings (floats rounded for humans)."""
    def text(v: Any) -> str:
        if isinstance(v, float):
            return f'{v:.3f}'
        return str(v)

    return DiagnosticStatus(
        level=LEVELS[level], name=name, message=message, hardware_id=hardware_id,
        values=[KeyValue(key=str(k), value=text(v)) for k, v in values.items()])


def stamp_to_ns(stamp: Any) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


# --------------------------------------------------------------------------- model
@dataclass
class Backend:
    """The downscaler the recorder runs and how to name it in diagnostics."""

    downscaler: Any
    info: Any
    provider: str


def load_backend(weights: str, allow_untrained: bool, onnx_model: str,
                 providers: Sequence[str], device: str) -> Backend:
    """
    Load the PyTorch `TorchDownscaler`, or `runtime.OnnxDownscaler` when `onnx_model` is set.

    The bag records the model identity (weights sha256) that the offboard side must load: from
    the PyTorch weights, or from the ONNX export's own metadata (`model_info()`).
    """
    from refscale_model import load_model
    from refscale_model.backends.base import ModelInfo
    from refscale_model.backends.torch_backend import TorchDownscaler

    def torch_info() -> tuple[Any, Any]:
        model = load_model(weights, allow_untrained=allow_untrained)
        model_id = Path(weights).name if weights.endswith('.safetensors') else weights
        return model, ModelInfo.of(model, model_id)

    if not onnx_model:
        model, info = torch_info()
        return Backend(TorchDownscaler(model, device), info, f'torch:{device}')
    try:  # runtime.py (ONNX Runtime) is optional: the [onnx] extra
        from refscale_model.backends.onnx_runtime import OnnxDownscaler
    except ImportError as exc:
        raise RuntimeError(
            f'onnx_model is set but the ONNX runtime is unavailable ({exc}); '
            'install the [onnx] extra or set onnx_model to ""') from exc
    ds = OnnxDownscaler(onnx_model, providers=list(providers) or None)
    info = ds.model_info() if hasattr(ds, 'model_info') else torch_info()[1]
    provider = getattr(ds, 'provider', None) or ','.join(getattr(ds, 'providers', providers))
    return Backend(ds, info, f'onnx:{provider}')


# --------------------------------------------------------------------------- running
def stop_on_signals() -> threading.Event:
    """
    Turn SIGINT/SIGTERM into an event instead of an rclpy context shutdown.

    Why: with rclpy's own handlers the context is already shut down when the node starts to
    destroy its subscriptions and drain its queue; FastDDS then crashed (SIGSEGV) about one
    stop in six. Stopping first and shutting the context down last avoids that.
    """
    event = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: event.set())
    return event


def spin(node: Node, context: Context, *, duration_s: float | None = None,
         stop: threading.Event | None = None,
         done: Callable[[], bool] | None = None,
         signalled: threading.Event | None = None) -> str:
    """
    Spin `node` until a signal (`signalled` or a context shutdown), `duration_s`, `stop`, `done()`.

    Returns why it stopped: 'signal', 'duration', 'stopped' or 'done'.
    """
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    deadline = None if duration_s is None else time.monotonic() + duration_s
    try:
        while context.ok():
            executor.spin_once(timeout_sec=0.05)
            if signalled is not None and signalled.is_set():
                return 'signal'
            if done is not None and done():
                return 'done'
            if stop is not None and stop.is_set():
                return 'stopped'
            if deadline is not None and time.monotonic() >= deadline:
                return 'duration'
        return 'signal'
    except (KeyboardInterrupt, ExternalShutdownException):
        return 'signal'
    finally:
        executor.remove_node(node)
        executor.shutdown(timeout_sec=0.5)


def init_context(args: Sequence[str], *, domain_id: int | None = None) -> Context:
    """
    Create a fresh rclpy context (in-process runs never touch the global one).

    `domain_id=None` takes ROS_DOMAIN_ID from the environment, as rcl always does. rclpy's own
    signal handlers are never installed: a node that should stop on SIGINT/SIGTERM takes
    `stop_on_signals()` and passes it to `spin`, so the context is shut down last.
    """
    from rclpy.signals import SignalHandlerOptions

    ctx = Context()
    rclpy.init(args=list(args), context=ctx, domain_id=domain_id,
               signal_handler_options=SignalHandlerOptions.NO)
    return ctx
