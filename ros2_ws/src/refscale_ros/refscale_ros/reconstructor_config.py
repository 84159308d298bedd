"""The reconstructor's parameters, its model / cache / cameras and its report (no rclpy import)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

PARAMETERS: list[tuple[str, Any, str]] = [
    ('bag_path', '', 'RefScale bag to rebuild (batch mode); "" = live mode'),
    ('cameras', None, 'live mode: camera topics whose <topic>/refscale/* parts to subscribe'),
    ('cache_dir', '', 'reference cache directory (same content as onboard)'),
    ('weights', '', 'weights ("" = the model named in the bag, or x2 in live mode)'),
    ('allow_untrained', False, 'testing only: fresh model when preset weights are missing'),
    ('device', 'cpu', 'torch device of the inverse'),
    ('batch_size', 4, 'frames per inverse pass (batch mode)'),
    ('topic_prefix', '/refscale/hr', 'HR frames go to <prefix><camera topic>'),
    ('publish', True, 'publish HR frames'),
    ('output_bag', '', 'also write HR frames to this bag directory ("" = no)'),
    ('pace', 0.0, 'batch mode: 0 = as fast as possible, 1 = recorded rate'),
    ('wait_for_subscribers', 0, 'batch mode: wait (10 s at most) for this many subscribers'),
    ('exit_when_done', True, 'batch mode: end the node when the bag is done'),
    ('force', False, 'go on although the bag names other weights'),
    ('reliable', True, 'live mode: reliable subscriptions'),
    ('max_pending', 64, 'live mode: incomplete frames kept before the oldest is given up'),
    ('diagnostics_period_s', 1.0, '/diagnostics period'),
    ('log_level', 'info', 'debug, info, warn, error'),
]


def open_reconstructor(p: dict[str, Any]) -> tuple[Any, Any, str, list[str]]:
    """
    Return (Reconstructor, cache or None, weights, camera topics) for the node's parameters `p`.

    Batch mode takes the model named in the bag unless `weights` is set, and refuses a bag of
    other weights unless `force`; live mode needs `cameras`.
    """
    from refscale_model import load_model
    from refscale_model.bags import camera_topics, metadata_of
    from refscale_model.bags import refscale_format as fmt
    from refscale_model.pipeline import Reconstructor
    from refscale_model.refcache import ReferenceCache
    from refscale_ros.common import string_list  # imports rclpy: only when a node starts

    batch = bool(p['bag_path'])
    weights = p['weights']
    if batch and not weights:
        weights = metadata_of(p['bag_path']).get(fmt.METADATA_NAME, {}).get('model_id', '')
        if not weights:
            raise ValueError(f"{p['bag_path']} names no model; set the `weights` parameter")
    model = load_model(weights or 'x2', allow_untrained=p['allow_untrained'])
    cache = ReferenceCache.open(p['cache_dir'], readonly=True) if p['cache_dir'] else None
    rec = Reconstructor(model, cache, device=p['device'],
                        batch_size=p['batch_size'] if batch else 1)
    if batch:
        problem = rec.check_bag(p['bag_path'])
        if problem and not p['force']:
            if cache is not None:
                cache.close()
            raise ValueError(f'{problem} (set force:=true to try anyway)')
        cameras = sorted(camera_topics(p['bag_path']))
    else:
        cameras = [c.rstrip('/') for c in string_list(p['cameras'])]
        if not cameras:
            raise ValueError('live mode needs `cameras` (or set `bag_path`)')
    return rec, cache, weights, cameras


@dataclass
class ReconstructReport:
    """What the reconstructor did (returned by `run_reconstructor`, printed by the CLI)."""

    rebuilt: Counter[str] = field(default_factory=Counter)
    failed: dict[str, Counter[str]] = field(default_factory=dict)
    output_bag: str = ''
    stopped_by: str = ''

    @property
    def ok(self) -> bool:
        return bool(self.rebuilt) and not any(self.failed.values())

    def summary(self) -> str:
        lines = []
        for topic in sorted(set(self.rebuilt) | set(self.failed)):
            line = f'{topic}: {self.rebuilt[topic]} frames rebuilt'
            bad = self.failed.get(topic)
            if bad:
                line += f', failed {sum(bad.values())} {dict(bad)}'
            lines.append(line)
        if self.output_bag:
            lines.append(f'wrote {self.output_bag}')
        return '\n'.join(lines) or 'no frames'
