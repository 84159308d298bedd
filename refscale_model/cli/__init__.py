"""The `refscale` command line: one entry point, one module per group of subcommands.

Each module in COMMAND_MODULES exposes `register(subparsers)`; heavy imports happen inside
the handlers so that `refscale --help` stays fast. Other installed packages add subcommands
through the `refscale.commands` entry point group (each entry a `register(subparsers)`
function): the ROS 2 package `refscale_ros` adds `record`, `reconstruct-node` and `demo` that way,
so this library never imports it.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from importlib.metadata import entry_points

COMMAND_MODULES: tuple[str, ...] = (
    "refscale_model.cli.train",
    "refscale_model.cli.evaluate",
    "refscale_model.cli.rd",
    "refscale_model.cli.cache",
    "refscale_model.cli.bags",
    "refscale_model.cli.sample_drive",
    "refscale_model.cli.onnx",
    "refscale_model.cli.fleet",
)
ENTRY_POINT_GROUP = "refscale.commands"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="refscale", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            register = ep.load()
        except Exception as exc:  # a broken plug-in must not take the library's commands down
            print(f"refscale: commands of {ep.value} unavailable: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; user errors (missing files, bad weights, bad input) end with a message, not a trace."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, IsADirectoryError, ValueError) as exc:
        if os.environ.get("REFSCALE_TRACEBACK"):
            raise
        print(f"refscale {args.command}: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
