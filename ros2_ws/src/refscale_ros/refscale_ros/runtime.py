"""Running a node in this process: its own rclpy context, spinning, clean stops on signals."""

from __future__ import annotations

from collections.abc import Callable, Sequence
import signal
import sys
import threading
import time
from typing import Any, TypeVar

import rclpy
from rclpy.context import Context
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node

N = TypeVar('N', bound=Node)
R = TypeVar('R')


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


def run_node(make: Callable[[Context], N], args: Sequence[str], *,
             finish: Callable[[N, str, Context], R], duration_s: float | None = None,
             stop: threading.Event | None = None, domain_id: int | None = None,
             signals: bool = True, ready: threading.Event | None = None,
             done: Callable[[N], Callable[[], bool] | None] = lambda _node: None) -> R:
    """
    Start `make(context)` in a fresh context, spin it, return `finish(node, why, context)`.

    `ready` is set once the node exists (or failed to start: this call then raises); the node
    is destroyed and the context shut down last, also on errors.
    """
    signalled = stop_on_signals() if signals else None  # stop, drain, then shut down
    ctx = init_context(args, domain_id=domain_id)
    node: N | None = None
    try:
        try:
            node = make(ctx)
        finally:
            if ready is not None:  # also when the node failed to start: callers never hang
                ready.set()
        why = spin(node, ctx, duration_s=duration_s, stop=stop, done=done(node),
                   signalled=signalled)
        return finish(node, why, ctx)
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown(context=ctx)


def exit_with_report(name: str, run: Callable[[], Any], code: Callable[[Any], int]) -> None:
    """Print the report's summary and exit `code(report)`; exit 2 if the node cannot start."""
    try:
        report = run()
    except (ValueError, FileNotFoundError, RuntimeError, OSError) as exc:
        print(f'refscale {name}: cannot start: {exc}', file=sys.stderr)
        sys.exit(2)
    print(report.summary(), flush=True)
    sys.exit(code(report))
