"""Where a new recording goes: one bag directory per recording, never an existing one."""

from __future__ import annotations

from datetime import datetime, UTC
import itertools
from pathlib import Path


def new_bag_path(output_dir: str | Path, bag_name: str, bag_prefix: str) -> Path:
    """`output_dir/<bag_name or prefix_UTC time>`, with `_2`, `_3`, ... when that exists."""
    out = Path(output_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    name = bag_name or '{}_{}'.format(bag_prefix, datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ'))
    path = out / name
    for i in itertools.count(2):
        if not path.exists():
            return path
        path = out / f'{name}_{i}'
    raise AssertionError('unreachable')
