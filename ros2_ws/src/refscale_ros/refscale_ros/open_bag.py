"""The bag a recording writes: a new directory per recording, its writer and its encoder."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, UTC
import itertools
from pathlib import Path
import time
from typing import Any


@dataclass
class OpenBag:
    """The bag being recorded."""

    path: Path
    writer: Any
    encoder: Any
    pipeline: Any = None
    started: float = field(default_factory=time.monotonic)
    failed: str = ''


def open_bag(params: dict[str, Any], encoder_args: dict[str, Any]) -> OpenBag:
    """Create the next bag directory and its `BagWriter` + `FrameEncoder` (+ `EncoderPipeline`)."""
    from refscale_model.bags import BagWriter
    from refscale_model.pipeline import FrameEncoder
    from refscale_model.pipeline.stages import EncoderPipeline

    p = params
    path = new_bag_path(p['output_dir'], p['bag_name'], p['bag_prefix'])
    writer = BagWriter(
        path,
        split_max_bytes=int(p['split_size_mb'] * 1e6) if p['split_size_mb'] > 0 else None,
        split_max_duration_s=p['split_duration_s'] if p['split_duration_s'] > 0 else None)
    args = dict(encoder_args)
    provider = args.pop('provider')
    encoder = FrameEncoder(
        writer, args.pop('downscaler'), args.pop('info'), **args,
        flush_interval_s=p['flush_interval_s'] if p['flush_interval_s'] > 0 else None)
    writer.set_custom_data('refscale.recorder.provider', provider)
    pipeline = EncoderPipeline(encoder, depth=1) if p.get('pipeline_stages') else None
    return OpenBag(path, writer, encoder, pipeline)


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
