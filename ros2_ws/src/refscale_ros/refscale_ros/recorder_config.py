"""The recorder's configuration entries (no rclpy import): cameras and passthrough topics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from refscale_model.bags import msgs
from refscale_ros.messages import message_class

PARAMETERS: list[tuple[str, Any, str]] = [
    ('cameras', None, 'TOPIC[:TYPE[:CACHE_ID]] entries (list, or one comma-separated string)'),
    ('gps_topic', '', 'sensor_msgs/NavSatFix topic ("" = none)'),
    ('odom_topic', '', 'nav_msgs/Odometry topic ("" = none)'),
    ('passthrough', list,
     'other topics copied into the bag as they are: TOPIC:pkg/msg/Type entries'),
    ('cache_dir', '', 'reference cache directory ("" = no-reference mode)'),
    ('weights', 'x2', 'x2, x4, x2-noref, x4-noref or a .safetensors path'),
    ('allow_untrained', False, 'testing only: fresh model when preset weights are missing'),
    ('onnx_model', '', 'ONNX downscaler path ("" = PyTorch)'),
    ('providers', list,
     'ONNX Runtime providers in order ([] = TensorRT fp16, CUDA, CPU)'),
    ('device', 'cpu', 'torch device of the PyTorch downscaler'),
    ('output_dir', 'recordings', 'directory that receives one bag directory per recording'),
    ('bag_prefix', 'refscale', 'bag directory name prefix (<prefix>_<UTC time>)'),
    ('bag_name', '', 'exact bag directory name instead of <prefix>_<time> (suffix _N if taken)'),
    ('split_size_mb', 1024.0, 'new .mcap file after this many MB (0 = never)'),
    ('split_duration_s', 300.0, 'new .mcap file after this many seconds (0 = never)'),
    ('lr_codec', 'png', 'LR codec: png (lossless), jpeg, webp, avif; h264, h265 (video); '
     'h265-ref (each frame intra or predicted from its reference)'),
    ('lr_quality', -1, 'LR quality 0-100, crf 0-51 for h264/h265/h265-ref (-1 = codec default)'),
    ('target_kbps', 0.0, 'per-camera LR + S_map kbit/s budget; quality adapts (0 = fixed)'),
    ('lr_gop', 0, 'h264/h265: keyframe every N frames (0 = default, 10)'),
    ('lr_encoder', 'auto', 'h264/h265 encoder: auto (NVENC if present), cpu, gpu or a name'),
    ('smap_reuse', 2.0, 'h264/h265: reuse the GOP S_map within this mean level change (0 = off)'),
    ('smap_median', 3, 'median window (cells) of the stored S_map: 1 (off), 3 or 5'),
    ('smap_block', 2, 'store the S_map as one value per NxN cells: 1 (off), 2, 3 or 4'),
    ('pipeline_stages', False, 'overlap decode, network, coding on threads (slower on 2 cores)'),
    ('batch_cameras', 'auto',
     'frames of several cameras queued together: one network run for all (ONNX, serial mode); '
     'auto: on GPU providers only, on, off'),
    ('max_queue', 4, 'frames waiting per camera; the oldest is dropped (and counted) when full'),
    ('registration', True, 'homography registration of the reference (false = unwarped)'),
    ('reference_candidates', 4, 'nearest references registered per frame, best used (1: nearest)'),
    ('flush_interval_s', 1.0, 'close the open MCAP chunk at most this often'),
    ('diagnostics_period_s', 1.0, '/diagnostics period'),
    ('publish_lr', False, 'publish LR frames on <camera>/refscale/lr_preview (Image rgb8)'),
    ('start_recording', True, 'false: wait for the ~/start service'),
    ('shutdown_drain_s', 2.0, 'encode queued frames for at most this long when stopping'),
    ('log_level', 'info', 'debug, info, warn, error'),
]

"""(name, default, description); default None: string or string list, `list`: string list."""

_TYPES = {'image': msgs.IMAGE, 'compressedimage': msgs.COMPRESSED_IMAGE}


@dataclass(frozen=True)
class CameraSpec:
    """One camera: topic, message type and the camera id its references carry in the cache."""

    topic: str
    type_name: str
    cache_id: str

    @classmethod
    def parse(cls, spec: str) -> CameraSpec:
        """'TOPIC[:TYPE[:CACHE_ID]]'; TYPE Image, CompressedImage or auto (by '/compressed')."""
        parts = [p.strip() for p in spec.split(':')]
        if not parts[0].startswith('/') or len(parts) > 3:
            raise ValueError(f'camera entry {spec!r}: expected /TOPIC[:TYPE[:CACHE_ID]]')
        topic = parts[0].rstrip('/')
        kind = (parts[1] if len(parts) > 1 else '').lower().replace('sensor_msgs/msg/', '')
        if kind in ('', 'auto'):
            type_name = msgs.COMPRESSED_IMAGE if topic.endswith('/compressed') else msgs.IMAGE
        elif kind in _TYPES:
            type_name = _TYPES[kind]
        else:
            raise ValueError(f'camera entry {spec!r}: type must be Image, CompressedImage or auto')
        cache_id = parts[2] if len(parts) > 2 and parts[2] else topic
        return cls(topic, type_name, cache_id)


def lr_settings(params: dict[str, Any]) -> Any:
    """The validated `LrSettings` of recorder parameters (a `CodecError` says what is wrong)."""
    from refscale_model.pipeline.encoding import LrSettings

    return LrSettings.checked(
        params['lr_codec'], None if params['lr_quality'] < 0 else params['lr_quality'],
        params['target_kbps'] or None, params['lr_gop'] or None, params['lr_encoder'])


def encoder_lr_args(lr: Any) -> dict[str, Any]:
    """`FrameEncoder` keyword arguments of `LrSettings`."""
    args = {'lr_codec': lr.codec, 'lr_quality': lr.quality, 'target_kbps': lr.target_kbps}
    if lr.video:
        args.update(lr_gop=lr.gop, lr_encoder=lr.encoder)
    return args


BATCH_CAMERAS = {'auto': None, 'on': True, 'true': True, 'off': False, 'false': False}
"""`batch_cameras` -> `FrameEncoder(batch_network=...)` (None: where the downscaler says so)."""


def batch_network(params: dict[str, Any]) -> bool | None:
    """The `batch_cameras` parameter as `FrameEncoder(batch_network=...)`; False: the worker also
    takes frames one at a time."""
    batch = str(params.get('batch_cameras', 'auto')).lower()
    if batch not in BATCH_CAMERAS:
        raise ValueError(f'batch_cameras must be one of {sorted(BATCH_CAMERAS)}, got {batch!r}')
    return BATCH_CAMERAS[batch]


def encoder_args(params: dict[str, Any]) -> dict[str, Any]:
    """`FrameEncoder` keyword arguments of the recorder parameters (LR, S_map, references)."""
    if not params['smap_reuse'] >= 0:
        raise ValueError(f'smap_reuse must be >= 0 levels, got {params["smap_reuse"]}')
    if not params['reference_candidates'] >= 1:
        raise ValueError(
            f'reference_candidates must be >= 1, got {params["reference_candidates"]}')
    from refscale_model.pipeline.smap_smoothing import checked_block, checked_median

    return {**encoder_lr_args(lr_settings(params)), 'smap_reuse': float(params['smap_reuse']),
            'batch_network': batch_network(params),
            'smap_median': checked_median(params['smap_median']),
            'smap_block': checked_block(params['smap_block']),
            'reference_candidates': int(params['reference_candidates'])}


def parse_cameras(entries: list[str]) -> list[CameraSpec]:
    """Parse the `cameras` parameter: at least one camera, no topic twice."""
    cameras = [CameraSpec.parse(s) for s in entries]
    if not cameras:
        raise ValueError('no cameras configured (parameter `cameras`)')
    if len({c.topic for c in cameras}) != len(cameras):
        raise ValueError('a camera topic is listed twice in `cameras`')
    return cameras


def passthrough_spec(spec: str) -> tuple[str, str]:
    """Parse 'TOPIC:pkg/msg/Type' (a type the bag writer carries a definition for)."""
    from refscale_model.bags import complete_definition

    topic, _, type_name = spec.partition(':')
    if not topic.startswith('/') or type_name.count('/') != 2:
        raise ValueError(f'passthrough entry {spec!r}: expected /TOPIC:pkg/msg/Type')
    try:
        complete_definition(type_name)
        message_class(type_name)
    except (KeyError, ImportError, AttributeError) as exc:
        raise ValueError(f'passthrough entry {spec!r}: {exc}') from exc
    return topic, type_name
