"""What the field's codecs need on the same frames: full-resolution R–D curves and "bytes to match".

The demo (and anyone with a handful of frames) asks one question: how many bytes would JPEG, WebP,
AVIF or x265 need to reach the PSNR RefScale delivered? `anchor_curves` codes the frames at a sweep
of settings; `bytes_to_reach` reads a curve at a PSNR (monotone cubic in log-bytes, as BD-rate
does), and says None outside the range the sweep covered rather than extrapolate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from refscale_model.evaluation.bdrate import pchip_eval, rd_hull
from refscale_model.metrics import psnr

ANCHOR_SWEEPS: dict[str, tuple[int, ...]] = {
    "jpeg": (10, 20, 35, 50, 65, 80, 90, 95),
    "webp": (5, 10, 20, 35, 50, 65, 80, 90, 95),
    "avif": (5, 10, 20, 35, 50, 65, 80),
    "x265-intra": (46, 40, 35, 30, 26, 22, 18),
}
"""Quality settings per full-resolution anchor (x265: crf, lower is better)."""
VIDEO_CRF_SWEEP: tuple[int, ...] = (44, 40, 36, 32, 29, 26, 22, 18)
"""crf sweep of the full-resolution video anchor (x264/x265 scale, lower is better)."""


@dataclass(frozen=True)
class AnchorPoint:
    codec: str
    setting: int
    bytes_per_frame: float
    bpp: float
    psnr: float


def anchor_curves(
    frames: Sequence[np.ndarray], sweeps: Mapping[str, Sequence[int]] = ANCHOR_SWEEPS
) -> dict[str, list[AnchorPoint]]:
    """Code every frame with every anchor setting; mean bytes and PSNR per setting (skips missing codecs)."""
    from refscale_model.codecs import CodecError, get_codec
    from refscale_model.evaluation.anchors import AnchorUnavailable, x265_intra

    out: dict[str, list[AnchorPoint]] = {}
    pixels = float(np.mean([f.shape[0] * f.shape[1] for f in frames]))
    for codec, settings in sweeps.items():
        points: list[AnchorPoint] = []
        for setting in settings:
            sizes, scores = [], []
            try:
                for rgb in frames:
                    if codec == "x265-intra":
                        coded = x265_intra(rgb, setting)
                        nbytes, decoded = coded.nbytes, coded.decoded
                    else:
                        c = get_codec(codec)
                        data = c.encode(rgb, setting)
                        nbytes, decoded = len(data), c.decode(data)
                    sizes.append(nbytes)
                    scores.append(psnr(decoded, rgb))
            except (AnchorUnavailable, CodecError):
                break
            mean_bytes = float(np.mean(sizes))
            points.append(AnchorPoint(codec, setting, mean_bytes, 8 * mean_bytes / pixels, float(np.mean(scores))))
        if points:
            out[codec] = points
    return out


def video_anchor_curve(
    frames: Sequence[np.ndarray], codec: str = "h265", gop: int | None = None,
    crfs: Sequence[int] = VIDEO_CRF_SWEEP,
) -> list[AnchorPoint]:
    """The frames in order as one full-resolution video stream (the recorder's encoder settings and
    GOP, `anchors.video_sequence`) at every crf: mean bytes and PSNR per crf. The anchor a fleet
    logging video would use."""
    from refscale_model.evaluation.anchors import video_sequence

    pixels = float(np.mean([f.shape[0] * f.shape[1] for f in frames]))
    points = []
    for crf in crfs:
        coded = video_sequence(codec, list(frames), crf, gop)
        mean_bytes = float(np.mean([c.nbytes for c in coded]))
        scores = [psnr(c.decoded, rgb) for c, rgb in zip(coded, frames, strict=True)]
        points.append(AnchorPoint(f"{codec} video", crf, mean_bytes, 8 * mean_bytes / pixels, float(np.mean(scores))))
    return points


def bytes_to_reach(points: Sequence[AnchorPoint], target_psnr: float) -> float | None:
    """Bytes per frame the curve needs for `target_psnr`; None outside the PSNR range it covers."""
    hull = rd_hull([(p.bytes_per_frame, p.psnr) for p in points])
    if len(hull) < 2 or not hull[0][1] <= target_psnr <= hull[-1][1]:
        return None
    q = np.array([p[1] for p in hull])
    log_b = np.log(np.array([p[0] for p in hull]))
    return float(math.exp(pchip_eval(q, log_b, np.array([target_psnr]))[0]))


def nearest_end(points: Sequence[AnchorPoint], target_psnr: float) -> AnchorPoint:
    """The curve's end closest to `target_psnr`: what to quote when `bytes_to_reach` says None
    (e.g. WebP's lowest quality still lands above a low target PSNR)."""
    ordered = sorted(points, key=lambda p: p.psnr)
    return ordered[0] if target_psnr < ordered[0].psnr else ordered[-1]


def plot_field(
    curves: Mapping[str, Sequence[AnchorPoint]],
    marks: Mapping[str, tuple[float, float]],
    path: str,
    title: str,
) -> str | None:
    """Anchor curves (bpp, log x) with operating points `marks` {label: (bpp, psnr)}; why not, if no matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        return f"no plot ({exc})"
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for codec, pts in curves.items():
        xs, ys = [p.bpp for p in pts], [p.psnr for p in pts]
        ax.plot(xs, ys, "-o", markersize=4, linewidth=1.2, label=f"full-res {codec}")
    for label, (bpp, db) in marks.items():
        ax.plot([bpp], [db], "*", markersize=14, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("bits per HR pixel (log)")
    ax.set_ylabel("PSNR RGB (dB)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None
