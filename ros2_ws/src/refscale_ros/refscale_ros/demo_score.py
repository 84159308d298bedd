"""`make demo`, steps 4-5: rebuild the recorded bag, score it against the raw frames, the table."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
from refscale_model.io.images import encode_png
from refscale_model.metrics import psnr, ssim

if TYPE_CHECKING:
    from refscale_ros.demo import DemoSettings

CAMERA_TOPIC = '/camera/front/image_raw'
JPEG_QUALITY = 90


@dataclass
class DemoSummary:
    published: int = 0
    recorded: int = 0
    dropped: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    without_reference: int = 0
    raw_bytes_per_frame: float = 0.0
    png_bytes_per_frame: float = 0.0
    jpeg_bytes_per_frame: float = 0.0
    refscale_bytes_per_frame: float = 0.0
    """LR + S_map + the frame record's on-disk share: every byte the rebuild reads."""
    record_bytes_per_frame: float = 0.0
    """The frame records' share of the bag's compressed chunks, per recorded frame
    (`bags.accounting`)."""
    bag_bytes: int = 0
    raw_bag_bytes: int = 0
    psnr: float = 0.0
    ssim: float = 0.0
    jpeg_psnr: float = 0.0
    jpeg_ssim: float = 0.0
    encode_fps: float = 0.0
    provider: str = ''
    rebuilt: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    lr_codec: str = 'png'
    field_frames: int = 0
    field_psnr: float = 0.0
    """RefScale's mean PSNR on the frames of the field comparison."""
    field_refscale_bytes: float = 0.0
    field_bytes: dict[str, float | None] = field(default_factory=dict)
    """Per full-resolution codec: bytes per frame for RefScale's PSNR (None: out of its range)."""
    field_ends: dict[str, str] = field(default_factory=dict)
    """For a codec out of range: its closest setting, bytes and PSNR (what the table quotes)."""
    video_codec: str = ''
    """Full-resolution video anchor coded over every rebuilt frame in order ('' = not run)."""
    video_gop: int = 0
    video_bytes: float | None = None
    """Its bytes per frame for RefScale's mean PSNR on those frames (None: out of its range)."""

    def table(self) -> str:
        ratio_raw = self.raw_bytes_per_frame / max(self.refscale_bytes_per_frame, 1)
        ratio_jpeg = self.jpeg_bytes_per_frame / max(self.refscale_bytes_per_frame, 1)
        ratio_png = self.png_bytes_per_frame / max(self.refscale_bytes_per_frame, 1)
        rows = [
            ('frames published (drive B)', f'{self.published}'),
            (
                'frames recorded / dropped / errors',
                f'{self.recorded} / {self.dropped} / {sum(self.errors.values())}',
            ),
            ('frames without reference', f'{self.without_reference}'),
            ('encoder backend, encode rate', f'{self.provider}, {self.encode_fps:.2f} frames/s'),
            ('raw rgb8 bytes per frame', f'{self.raw_bytes_per_frame:,.0f}'),
            ('lossless PNG of the raw frame, bytes', f'{self.png_bytes_per_frame:,.0f}'),
            (f'JPEG q{JPEG_QUALITY} bytes per frame', f'{self.jpeg_bytes_per_frame:,.0f}'),
            (f'RefScale bytes per frame (LR {self.lr_codec} + S_map + frame record)',
             f'{self.refscale_bytes_per_frame:,.0f}'),
            ('of which the frame record (its share of the compressed bag)',
             f'{self.record_bytes_per_frame:,.0f}'),
            (
                'compression vs raw / lossless PNG / JPEG',
                f'{ratio_raw:.1f}x / {ratio_png:.2f}x / {ratio_jpeg:.2f}x',
            ),
            (
                'RefScale bag on disk / raw drive B bag',
                f'{self.bag_bytes:,} / {self.raw_bag_bytes:,} bytes',
            ),
            (
                'rebuilt frames PSNR / SSIM vs raw',
                f'{self.psnr:.2f} dB / {self.ssim:.4f} ({self.rebuilt} frames)',
            ),
            (
                f'JPEG q{JPEG_QUALITY} PSNR / SSIM (same frames)',
                f'{self.jpeg_psnr:.2f} dB / {self.jpeg_ssim:.4f}',
            ),
        ]
        lines = ['| | |', '|---|---|'] + [f'| {k} | {v} |' for k, v in rows]
        return '\n'.join(lines) + self.field_table() + self.video_table()

    def video_table(self) -> str:
        """Bytes full-resolution video needs for RefScale's PSNR on all recorded frames."""
        if not self.video_codec:
            return ''
        codec = self.video_codec.upper()
        head = (f'\n\nAgainst full-resolution {codec} video on all {self.rebuilt} recorded '
                f'frames in order (GOP {self.video_gop}, the recorder\'s encoder settings): '
                f'RefScale {self.refscale_bytes_per_frame:,.0f} bytes per frame at '
                f'{self.psnr:.2f} dB; ')
        if self.video_bytes is None:
            return head + 'RefScale\'s PSNR is outside the anchor\'s measured range.'
        ratio = self.video_bytes / max(self.refscale_bytes_per_frame, 1.0)
        return head + (f'full-resolution {codec} needs {self.video_bytes:,.0f} bytes per frame '
                       f'for the same PSNR ({ratio:.2f}x RefScale).')

    def field_table(self) -> str:
        """Bytes each full-resolution codec needs to reach RefScale's PSNR on the same frames."""
        if not self.field_bytes:
            return ''
        lines = ['', '', f'Against the field on {self.field_frames} of the same frames: RefScale '
                 f'{self.field_refscale_bytes:,.0f} bytes per frame at {self.field_psnr:.2f} dB.',
                 '', '| full-resolution codec | bytes per frame for the same PSNR | vs RefScale |',
                 '|---|---:|---:|']
        for codec, nbytes in self.field_bytes.items():
            if nbytes is None:
                end = self.field_ends.get(codec, '')
                lines.append(f'| {codec} | not reached{": " + end if end else ""} | |')
            else:
                ratio = nbytes / max(self.field_refscale_bytes, 1.0)
                lines.append(f'| {codec} | {nbytes:,.0f} | {ratio:.2f}x |')
        return '\n'.join(lines)


def _raw_frames(drive_b: Path) -> dict[int, np.ndarray]:
    from refscale_model.pipeline import iter_camera_frames

    return {stamp: rgb for _, stamp, _, rgb in iter_camera_frames(drive_b, [CAMERA_TOPIC])}


def _figure(
    path: Path,
    raw: np.ndarray,
    lr: np.ndarray,
    smap: np.ndarray | None,
    levels: int,
    rebuilt: np.ndarray,
) -> None:
    """Write the strip raw | LR (nearest-upscaled) | S_map heat map | rebuilt | |error| x8."""
    h, w = raw.shape[:2]
    lr_big = cv2.resize(lr, (w, h), interpolation=cv2.INTER_NEAREST)
    if smap is not None:
        heat = cv2.applyColorMap(
            (smap.astype(np.float32) * 255 / (levels - 1)).astype(np.uint8), cv2.COLORMAP_JET
        )
        heat = cv2.cvtColor(
            cv2.resize(heat, (w, h), interpolation=cv2.INTER_NEAREST), cv2.COLOR_BGR2RGB
        )
    else:
        heat = np.zeros_like(raw)
    err = np.clip(np.abs(raw.astype(np.int16) - rebuilt.astype(np.int16)) * 8, 0, 255).astype(
        np.uint8
    )
    strip = np.concatenate([raw, lr_big, heat, rebuilt, err], axis=1)
    scale = min(1.0, 3200 / strip.shape[1])
    strip = cv2.resize(strip, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))


def reconstruct_and_score(
    settings: DemoSettings, bag: Path, cache_dir: Path, drive_b: Path, summary: DemoSummary
) -> None:
    from refscale_model.pipeline import FrameFailure, Reconstructor
    from refscale_model.refcache import ReferenceCache
    from refscale_model.weights import load_model

    raw = _raw_frames(drive_b)
    summary.record_bytes_per_frame = _record_bytes_per_frame(bag, summary.recorded)
    field_frames: list[tuple[np.ndarray, np.ndarray, float]] = []
    model = load_model(settings.weights, allow_untrained=settings.allow_untrained)
    scores, jpeg_scores, refscale_bytes, jpeg_bytes, png_bytes = [], [], [], [], []
    with ReferenceCache.open(cache_dir, readonly=True) as cache:
        recon = Reconstructor(model, cache)
        stored = {(f.stamp_ns): f for f in recon.frames(bag) if not isinstance(f, FrameFailure)}
        for item in recon.run(bag):
            if isinstance(item, FrameFailure):
                summary.failures[item.kind] = summary.failures.get(item.kind, 0) + 1
                continue
            truth = raw.get(item.stamp_ns)
            if truth is None:
                summary.failures['no_raw_frame'] = summary.failures.get('no_raw_frame', 0) + 1
                continue
            enc = stored[item.stamp_ns]
            refscale_bytes.append(enc.stored_bytes + summary.record_bytes_per_frame)
            bgr = cv2.cvtColor(truth, cv2.COLOR_RGB2BGR)
            ok, jpg = cv2.imencode('.jpg', bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            jpeg_bytes.append(len(jpg))
            png_bytes.append(len(encode_png(truth)))
            jpeg_rgb = cv2.cvtColor(cv2.imdecode(jpg, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            scores.append((psnr(truth, item.rgb), ssim(truth, item.rgb)))
            field_frames.append((truth, item.rgb, refscale_bytes[-1]))
            jpeg_scores.append((psnr(truth, jpeg_rgb), ssim(truth, jpeg_rgb)))
            if len(scores) <= settings.figures:
                _figure(
                    settings.out_dir / f'frame_{len(scores):02d}.png',
                    truth,
                    enc.lr,
                    enc.smap,
                    enc.meta.smap_levels,
                    item.rgb,
                )
    summary.rebuilt = len(scores)
    if scores:
        summary.psnr, summary.ssim = (float(v) for v in np.mean(scores, axis=0))
        summary.jpeg_psnr, summary.jpeg_ssim = (float(v) for v in np.mean(jpeg_scores, axis=0))
        summary.refscale_bytes_per_frame = float(np.mean(refscale_bytes))
        summary.jpeg_bytes_per_frame = float(np.mean(jpeg_bytes))
        summary.png_bytes_per_frame = float(np.mean(png_bytes))
    h, w = settings.size[1], settings.size[0]
    summary.raw_bytes_per_frame = float(h * w * 3)
    summary.lr_codec = settings.lr_codec
    if settings.field_frames > 0 and field_frames:
        _against_the_field(settings, field_frames, summary)
        _against_video(settings, [t for t, _, _ in field_frames], summary)


def _record_bytes_per_frame(bag: Path, recorded: int) -> float:
    """What the camera's frame records add to the bag on disk, per recorded frame (one each)."""
    from refscale_model.bags import refscale_format as fmt
    from refscale_model.bags.accounting import topic_disk_bytes

    return topic_disk_bytes(bag).get(fmt.meta_topic(CAMERA_TOPIC), 0) / max(recorded, 1)


def _against_the_field(settings: DemoSettings, frames: list[tuple[np.ndarray, np.ndarray, float]],
                       summary: DemoSummary) -> None:
    """JPEG, WebP, AVIF and x265 intra on spaced frames: bytes to match RefScale, and a plot."""
    from refscale_model.evaluation.field import (
        anchor_curves,
        bytes_to_reach,
        nearest_end,
        plot_field,
    )

    pick = np.linspace(0, len(frames) - 1, min(settings.field_frames, len(frames))).round()
    chosen = [frames[int(i)] for i in sorted(set(pick.tolist()))]
    summary.field_frames = len(chosen)
    summary.field_psnr = float(np.mean([psnr(t, r) for t, r, _ in chosen]))
    summary.field_refscale_bytes = float(np.mean([b for _, _, b in chosen]))
    curves = anchor_curves([t for t, _, _ in chosen])
    summary.field_bytes = {c: bytes_to_reach(pts, summary.field_psnr) for c, pts in curves.items()}
    for codec, nbytes in summary.field_bytes.items():
        if nbytes is None:
            end = nearest_end(curves[codec], summary.field_psnr)
            summary.field_ends[codec] = (f'setting {end.setting} gives {end.psnr:.2f} dB at '
                                         f'{end.bytes_per_frame:,.0f} bytes')
    h, w = chosen[0][0].shape[:2]
    bpp = 8 * summary.field_refscale_bytes / (h * w)
    title = 'demo drive B: full-resolution codecs vs RefScale'
    plot_field(curves, {f'RefScale ({settings.lr_codec} LR)': (bpp, summary.field_psnr)},
               str(settings.out_dir / 'rd.png'), title)


def _against_video(settings: DemoSettings, truths: list[np.ndarray], summary: DemoSummary) -> None:
    """Full-resolution H.265 over every recorded frame in order, at the recorder's GOP: the
    anchor a fleet logging video compares with. Plotted to `rd_video.png` with RefScale's point."""
    from refscale_model.codecs.video import DEFAULT_GOP
    from refscale_model.evaluation.field import bytes_to_reach, plot_field, video_anchor_curve

    summary.video_codec, summary.video_gop = 'h265', settings.lr_gop or DEFAULT_GOP
    curve = video_anchor_curve(truths, summary.video_codec, summary.video_gop)
    summary.video_bytes = bytes_to_reach(curve, summary.psnr)
    h, w = truths[0].shape[:2]
    bpp = 8 * summary.refscale_bytes_per_frame / (h * w)
    title = f'demo drive B, {len(truths)} recorded frames as video (GOP {summary.video_gop})'
    mark = {f'RefScale ({settings.lr_codec} LR)': (bpp, summary.psnr)}
    plot_field({curve[0].codec: curve}, mark, str(settings.out_dir / 'rd_video.png'), title)
