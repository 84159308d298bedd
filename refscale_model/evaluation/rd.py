"""`refscale rd`: the rate–distortion scoreboard of LR codecs × rescaling methods vs full-resolution anchors.

Rate is **bits per HR pixel**: 8 × (every byte the far end needs to rebuild the frame) / (H × W).
For a rescaled frame that is the LR bitstream + the S_map PNG when one is stored + a fixed
metadata allowance (`META_BYTES`); for a full-resolution anchor it is its bitstream (headers
included). Distortion is PSNR and SSIM on RGB of the full-resolution frame (`metrics.psnr/ssim`).

Curves, all on the same frames: `fullres` anchors (jpeg, webp, avif, x265-intra, x265-ref),
and per LR codec the rescaling methods `bicubic` (anti-aliased bicubic down as `refscale eval`,
bicubic up), `noref` (the no-reference INN) and `refscale` (reference prepared as `refscale
eval` does, z = 0).

Sequences (`--bag`): the drive's frames in order are also coded as video — the full-resolution
frames with h264/h265 (`fullres+h265`), and each method's LR frames with the same codec, the
same encoder settings (`codecs.video`: zero-latency, no B-frames, IDR every `gop`) and the same
crf sweep (`refscale+h265`, ...). Rate is the mean over the sequence of each frame's bytes
(keyframes included) per HR pixel.
"""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from refscale_model.codecs import get_codec, open_stream_decoder, open_stream_encoder
from refscale_model.evaluation.anchors import AnchorUnavailable, x265_available, x265_given_reference, x265_intra
from refscale_model.evaluation.bdrate import bd_psnr, bd_rate, psnr_overlap, quality_at_rate
from refscale_model.io.images import encode_png, stored_smap
from refscale_model.metrics import psnr, ssim
from refscale_model.models.refscale import RefScale

META_BYTES = {"bicubic": 8, "noref": 8, "refscale": 48, "fullres": 0}
"""Per-frame metadata allowance in bytes: original size + scale (8) for a rescaled frame, plus the
reference's cache id and SHA-256 (40) for RefScale. Full-res anchors carry their sizes in their
own headers. (x265-ref also needs to name its reference: it gets the same 40 bytes.)"""
X265_REF_META_BYTES = 40

RATES_BPP = (0.05, 0.1, 0.2, 0.4, 0.8)
SEQ_RATES_BPP = (0.02, 0.05, 0.1, 0.2)
LOW_RATE_BPP = 0.2
"""The issue's low-rate region: 'at least on par with full-resolution AVIF below 0.2 bpp'."""
"""Rates of the sequence (video) table: where a fleet's video uplink lives."""
VIDEO_CODECS = ("h264", "h265")
RESCALE_METHODS = ("bicubic", "noref", "refscale")
IMAGE_CODECS = ("jpeg", "webp", "avif")
ANCHORS = ("jpeg", "webp", "avif", "x265-intra", "x265-ref")
DEFAULT_QUALITIES: dict[str, list[int]] = {
    "jpeg": [30, 50, 70, 90],
    "webp": [30, 50, 70, 90],
    "avif": [30, 50, 70, 85],
    "x265": [22, 28, 34, 40],
    "h264": [22, 27, 32, 37],
    "h265": [22, 27, 32, 37],
}


@dataclass
class RdFrame:
    """One target frame and its reference prepared onto it (None: coded without reference)."""

    name: str
    target: np.ndarray
    reference: np.ndarray | None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class RdConfig:
    qualities: dict[str, list[int]] = field(default_factory=lambda: {k: list(v) for k, v in DEFAULT_QUALITIES.items()})
    """Quality points per still codec (jpeg, webp, avif) and crf points for x265."""
    lr_codecs: tuple[str, ...] = ("png", *IMAGE_CODECS)
    """LR codecs of the rescaling methods (png: the lossless LR shipped today, one point)."""
    methods: tuple[str, ...] = RESCALE_METHODS
    anchors: tuple[str, ...] = ANCHORS
    video_codecs: tuple[str, ...] = VIDEO_CODECS
    """Sequence curves (bag frames only): full-res and every method's LR coded as this video."""
    gop: int = 10
    video_encoder: str = "cpu"
    """Encoder of the video curves (cpu: libx264/libx265, deterministic; see `codecs.choose_encoder`)."""


def frames_from_pairs(csv_path: Path, split: str = "all", limit: int | None = None) -> list[RdFrame]:
    """Targets of a pairs.csv with references prepared exactly as `refscale eval` (no registration)."""
    from refscale_model.evaluation.pairs import read_eval_pairs, reference_for_frame
    from refscale_model.registration import RegistrationConfig
    from refscale_model.training.data import read_rgb

    pairs = read_eval_pairs(csv_path, split)[:limit]  # type: ignore[arg-type]
    frames = []
    for pair in pairs:
        target = read_rgb(pair.target)
        unregistered = RegistrationConfig(when_unregistered="none")
        ref, info = reference_for_frame(target, read_rgb(pair.reference), False, unregistered)
        rel = pair.target.relative_to(csv_path.parent)
        frames.append(RdFrame(str(rel), target, ref, {"reference": str(pair.reference.relative_to(csv_path.parent)),
                                                      **info}))
    return frames


def frames_from_bag(
    bag: Path, cache_dir: Path, camera: str, every: int = 1, limit: int | None = None, camera_id: str | None = None
) -> tuple[list[RdFrame], list[str]]:
    """Camera frames of a raw bag with the reference the onboard encoder would use: the nearest cache
    entry for the pose so far (NavSatFix / Odometry topics of the bag), registered onto the frame
    (default `RegistrationConfig`, as `FrameEncoder`). Frames without a reference are left out (noted)."""
    from refscale_model.bags import BagReader, msgs
    from refscale_model.bags.reader import topics_of
    from refscale_model.io import rosimg
    from refscale_model.pipeline.pose import PoseTracker
    from refscale_model.refcache.store import ReferenceCache
    from refscale_model.registration import align_reference

    topics = topics_of(bag)
    if camera not in topics:
        raise ValueError(f"camera topic {camera!r} not in {bag} (topics: {', '.join(sorted(topics))})")
    pose_topics = [t for t, ty in topics.items() if ty in (msgs.NAV_SAT_FIX, msgs.ODOMETRY)]
    frames: list[RdFrame] = []
    notes: list[str] = []
    seen = 0
    with ReferenceCache.open(cache_dir) as cache:
        tracker = PoseTracker(pseudo_latlon=cache.pseudo_latlon)
        reader = BagReader(bag)
        refs: dict[int, np.ndarray] = {}
        for raw in reader.raw_messages([camera, *pose_topics]):
            msg = reader.decode(raw)
            if raw.topic != camera:
                tracker.update(raw.type_name, msg, msgs.stamp_or(msg, raw.log_time_ns))
                continue
            seen += 1
            if (seen - 1) % every:
                continue
            stamp = msgs.stamp_or(msg, raw.log_time_ns)
            try:
                rgb = rosimg.image_from_msg(msg)
            except rosimg.ImageDecodeError as exc:
                notes.append(f"frame {seen - 1}: undecodable ({exc})")
                continue
            pose = tracker.pose(stamp)
            entry = None if pose is None else cache.nearest(camera_id or camera, pose.lat, pose.lon, pose.heading_deg)
            if entry is None:
                notes.append(f"frame {seen - 1}: no reference ({'no pose' if pose is None else 'none near'})")
                continue
            if entry.id not in refs:
                refs[entry.id] = entry.load_rgb()
            warped, reg = align_reference(rgb, refs[entry.id])
            if warped is None:
                notes.append(f"frame {seen - 1}: registration failed")
                continue
            frames.append(RdFrame(f"{bag.name}#{seen - 1}", rgb, warped,
                                  {"reference_id": entry.id, "registration": reg.method,
                                   "registration_confidence": round(reg.confidence, 3)}))
            if limit is not None and len(frames) >= limit:
                break
    return frames, notes


# ---------------------------------------------------------------------------------------------- scoring
def _t(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)[None].float().div(255)


def _u8(t: torch.Tensor) -> np.ndarray:
    return (t[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)


@dataclass
class _Lr:
    """A method's LR of one frame and how to rebuild HR from a (decoded) LR."""

    lr: np.ndarray
    side_bytes: int
    down_ms: float
    rebuild: Callable[[np.ndarray], np.ndarray]


def bicubic_lr(hr: np.ndarray, scale: int) -> _Lr:
    """Anti-aliased bicubic down (torch, as `refscale eval`), replicate-padded to a multiple of the scale."""
    from refscale_model.training.losses import bicubic_down

    t0 = time.perf_counter()
    h, w = hr.shape[:2]
    ph, pw = -(-h // scale) * scale, -(-w // scale) * scale
    xp = nn.functional.pad(_t(hr), (0, pw - w, 0, ph - h), mode="replicate")
    lr = _u8(bicubic_down(xp, scale))

    def rebuild(lr_u8: np.ndarray) -> np.ndarray:
        up = nn.functional.interpolate(_t(lr_u8), size=(ph, pw), mode="bicubic", align_corners=False)
        return _u8(up[..., :h, :w])

    return _Lr(lr, 0, (time.perf_counter() - t0) * 1000, rebuild)


def model_lr(model: RefScale, hr: np.ndarray, ref: np.ndarray | None) -> _Lr:
    """The INN's LR (+ stored S_map bytes); rebuild with z = 0, reference-free when no map is stored."""
    t0 = time.perf_counter()
    x = _t(hr)
    r = _t(ref) if ref is not None and model.config.use_reference else None
    enc = model.downscale(x, r)
    smap = stored_smap(None if enc.smap is None else enc.smap[0, 0].numpy())
    side = len(encode_png(smap)) if smap is not None else 0
    down_ms = (time.perf_counter() - t0) * 1000

    def rebuild(lr_u8: np.ndarray) -> np.ndarray:
        lr_t = torch.from_numpy(np.ascontiguousarray(lr_u8)).permute(2, 0, 1)[None]
        if smap is None:
            return _u8(model.upscale(lr_t, None, None, enc.size))
        return _u8(model.upscale(lr_t, enc.smap, r, enc.size))

    return _Lr(enc.lr[0].permute(1, 2, 0).numpy().copy(), side, down_ms, rebuild)


class _Acc:
    """Per-curve-point sums over frames."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str, int | None], list[dict[str, float]]] = defaultdict(list)

    def add(self, method: str, codec: str, quality: int | None, hr: np.ndarray, out: np.ndarray, nbytes: int,
            enc_ms: float, dec_ms: float) -> None:
        h, w = hr.shape[:2]
        self.rows[(method, codec, quality)].append({
            "bytes": nbytes, "bpp": 8.0 * nbytes / (h * w), "psnr": psnr(hr, out), "ssim": ssim(hr, out),
            "enc_ms": enc_ms, "dec_ms": dec_ms,
        })

    def points(self) -> list[dict[str, Any]]:
        out = []
        for (method, codec, quality), rows in self.rows.items():
            mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
            out.append({"method": method, "codec": codec, "quality": quality, "frames": len(rows),
                        "bytes": round(mean["bytes"], 1), "bpp": round(mean["bpp"], 5), "psnr": round(mean["psnr"], 3),
                        "ssim": round(mean["ssim"], 5), "enc_ms": round(mean["enc_ms"], 2),
                        "dec_ms": round(mean["dec_ms"], 2)})
        return out


def _timed(fn: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn(*args)
    return out, (time.perf_counter() - t0) * 1000


def score_frames(
    frames: list[RdFrame],
    model: RefScale | None,
    noref: RefScale | None,
    config: RdConfig | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Every curve point on `frames`: {"points": [...], "skipped": {curve: reason}}."""
    from tqdm import tqdm

    config = config or RdConfig()
    acc, skipped = _Acc(), {}
    x265_reason = x265_available()
    scale = (model or noref).config.scale if (model or noref) else 2
    for frame in tqdm(frames, desc="rd", disable=not progress):
        hr = frame.target
        # full-resolution anchors
        for anchor in config.anchors:
            if anchor in IMAGE_CODECS:
                codec = get_codec(anchor)
                for q in config.qualities[anchor]:
                    data, e = _timed(codec.encode, hr, q)
                    out, d = _timed(codec.decode, data)
                    acc.add("fullres", anchor, q, hr, out, len(data), e, d)
                continue
            if x265_reason:
                skipped[f"fullres+{anchor}"] = x265_reason
                continue
            if anchor == "x265-ref" and frame.reference is None:
                skipped[f"fullres+{anchor}"] = "a frame without reference"
                continue
            for crf in config.qualities["x265"]:
                try:
                    if anchor == "x265-intra":
                        coded, extra = x265_intra(hr, crf), 0
                    else:
                        coded, extra = x265_given_reference(hr, frame.reference, crf), X265_REF_META_BYTES
                except (AnchorUnavailable, RuntimeError) as exc:
                    skipped[f"fullres+{anchor}"] = str(exc)
                    break
                acc.add("fullres", anchor, crf, hr, coded.decoded, coded.nbytes + extra, coded.enc_ms, coded.dec_ms)
        # rescaling methods × LR codecs
        for method in config.methods if config.lr_codecs else ():
            if method == "bicubic":
                lr = bicubic_lr(hr, scale)
            elif method == "noref":
                if noref is None:
                    skipped["noref"] = "no no-reference weights given"
                    continue
                lr = model_lr(noref, hr, None)
            else:
                if model is None:
                    skipped["refscale"] = "no RefScale weights given"
                    continue
                lr = model_lr(model, hr, frame.reference)
            for codec_name in config.lr_codecs:
                codec = get_codec(codec_name)
                for q in [None] if codec.lossless else config.qualities[codec_name]:
                    data, e = _timed(codec.encode, lr.lr, q)
                    dec_lr, d = _timed(codec.decode, data)
                    out, u = _timed(lr.rebuild, dec_lr)
                    nbytes = len(data) + lr.side_bytes + META_BYTES[method]
                    acc.add(method, codec_name, q, hr, out, nbytes, lr.down_ms + e, d + u)
    return {"points": acc.points(), "skipped": skipped}


def _method_lrs(frames: list[RdFrame], method: str, model: RefScale | None, noref: RefScale | None,
                scale: int) -> list[_Lr] | str:
    """Every frame's LR for `method`, or why the method cannot run."""
    if method == "bicubic":
        return [bicubic_lr(f.target, scale) for f in frames]
    if method == "noref":
        return "no no-reference weights given" if noref is None else [model_lr(noref, f.target, None) for f in frames]
    return "no RefScale weights given" if model is None else [model_lr(model, f.target, f.reference) for f in frames]


def _code_sequence(codec: str, crf: int, images: list[np.ndarray], config: RdConfig) -> list[tuple[np.ndarray, int,
                                                                                                   float, float]]:
    """The images in order as one video stream: per frame (decoded, bytes, enc ms, dec ms)."""
    enc = open_stream_encoder(codec, crf=crf, gop=config.gop, encoder=config.video_encoder)
    dec = open_stream_decoder(codec)
    out = []
    for img in images:
        coded, e = _timed(enc.encode, img)
        rgb, d = _timed(dec.decode, coded, img.shape[:2])
        out.append((rgb, len(coded.data), e, d))
    return out


def score_sequences(
    frames: list[RdFrame],
    model: RefScale | None,
    noref: RefScale | None,
    config: RdConfig | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Video curves on `frames` taken as one sequence (in order): {"points": [...], "skipped": {...}}."""
    from tqdm import tqdm

    config = config or RdConfig()
    acc, skipped = _Acc(), {}
    scale = (model or noref).config.scale if (model or noref) else 2
    jobs = [(m, c, q) for m in ("fullres", *config.methods) for c in config.video_codecs for q in config.qualities[c]]
    bar = tqdm(total=len(jobs), desc="rd sequences", disable=not progress)
    lrs: dict[str, list[_Lr] | str] = {}
    for method, codec, crf in jobs:
        bar.update(1)
        if method == "fullres":
            for f, (rgb, n, e, d) in zip(frames, _code_sequence(codec, crf, [f.target for f in frames], config),
                                         strict=True):
                acc.add("fullres", codec, crf, f.target, rgb, n, e, d)
            continue
        if method not in lrs:
            lrs[method] = _method_lrs(frames, method, model, noref, scale)
        lr = lrs[method]
        if isinstance(lr, str):
            skipped[method] = lr
            continue
        coded = _code_sequence(codec, crf, [x.lr for x in lr], config)
        for f, x, (dec_lr, n, e, d) in zip(frames, lr, coded, strict=True):
            out, u = _timed(x.rebuild, dec_lr)
            acc.add(method, codec, crf, f.target, out, n + x.side_bytes + META_BYTES[method], x.down_ms + e, d + u)
    bar.close()
    return {"points": acc.points(), "skipped": skipped}


# ---------------------------------------------------------------------------------------------- report
def curves(points: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Points grouped by curve name `method+codec`, sorted by rate."""
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for p in points:
        out[f"{p['method']}+{p['codec']}"].append(p)
    return {k: sorted(v, key=lambda p: p["bpp"]) for k, v in out.items()}


def summarise(points: list[dict[str, Any]]) -> dict[str, Any]:
    """BD-rates vs full-res JPEG and vs the best full-res anchor, PSNR at `RATES_BPP`, mean timings."""
    cs = curves(points)
    rd = {k: [(p["bpp"], p["psnr"]) for p in v] for k, v in cs.items()}
    jpeg = "fullres+jpeg"
    fullres = [k for k in cs if k.startswith("fullres+")]
    vs_jpeg = {k: (bd_rate(rd[jpeg], rd[k]) if jpeg in rd else None) for k in cs}
    ranked = [k for k in fullres if vs_jpeg.get(k) is not None]
    best = min(ranked, key=lambda k: vs_jpeg[k]) if ranked else None
    table = {}
    for k, v in cs.items():
        table[k] = {
            "points": len(v),
            "bd_rate_vs_jpeg": vs_jpeg[k],
            "bd_rate_vs_best": bd_rate(rd[best], rd[k]) if best else None,
            "overlap_db_vs_jpeg": psnr_overlap(rd[jpeg], rd[k]) if jpeg in rd else None,
            "overlap_db_vs_best": psnr_overlap(rd[best], rd[k]) if best else None,
            "psnr_at_bpp": {str(r): quality_at_rate(rd[k], r) for r in RATES_BPP},
            "bpp_range": [v[0]["bpp"], v[-1]["bpp"]],
            "enc_ms": float(np.mean([p["enc_ms"] for p in v])),
            "dec_ms": float(np.mean([p["dec_ms"] for p in v])),
        }
        if k.split("+", 1)[1] in VIDEO_CODECS:
            table[k]["psnr_at_seq_bpp"] = {str(r): quality_at_rate(rd[k], r) for r in SEQ_RATES_BPP}
            table[k]["vs_video"] = {}
            for codec in VIDEO_CODECS:
                a = f"fullres+{codec}"
                if a not in rd:
                    continue
                cap = quality_at_rate(rd[a], 0.1)
                table[k]["vs_video"][codec] = {
                    "bd_rate": bd_rate(rd[a], rd[k]), "overlap_db": psnr_overlap(rd[a], rd[k]),
                    "bd_rate_below_0.1bpp": bd_rate(rd[a], rd[k], max_psnr=cap) if cap is not None else None,
                    "psnr_at_0.1bpp_of_anchor": cap,
                }
    return {"best_fullres": best, "curves": table, "targets": targets(rd, best)}


def targets(rd: dict[str, list[tuple[float, float]]], best: str | None) -> list[dict[str, Any]]:
    """The issue's yardsticks per LR codec: RefScale against bicubic and the no-ref INN through the same
    codec, and against full-res AVIF and the best full-res anchor below 0.2 bpp (BD-rate; BD-PSNR too,
    which stays defined where one curve lies wholly above the other)."""
    rows = []
    for name in sorted(k for k in rd if k.startswith("refscale+") and len(rd[k]) >= 2):
        codec = name.split("+", 1)[1]
        for other in (f"bicubic+{codec}", f"noref+{codec}", "fullres+avif", best):
            if other is None or other not in rd or len(rd[other]) < 2 or other == name:
                continue
            below = other.startswith("fullres+")
            cap_psnr = quality_at_rate(rd[other], LOW_RATE_BPP) if below else None
            rows.append({
                "curve": name, "against": other, "below_bpp": LOW_RATE_BPP if below else None,
                "bd_rate": bd_rate(rd[other], rd[name]),
                "overlap_db": psnr_overlap(rd[other], rd[name]),
                "bd_psnr": bd_psnr(rd[other], rd[name]),
                "bd_rate_below": bd_rate(rd[other], rd[name], max_psnr=cap_psnr) if cap_psnr is not None else None,
                "bd_psnr_below": bd_psnr(rd[other], rd[name], max_rate=LOW_RATE_BPP) if below else None,
            })
    return rows


def _f(x: float | None, fmt: str) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def _bd(x: float | None, overlap: tuple[float, float] | list[float] | None) -> str:
    """BD-rate with the PSNR range it averages over, e.g. `-41.7 (25.1–26.3)`."""
    return "" if x is None or overlap is None else f"{x:+.1f} ({overlap[0]:.1f}–{overlap[1]:.1f})"


def markdown(result: dict[str, Any]) -> str:
    lines = ["# Rate–distortion scoreboard", "",
             "Rate: bits per HR pixel = 8 × (LR bitstream + stored S_map PNG + metadata allowance) / (H×W); "
             f"allowance {META_BYTES['refscale']} B per RefScale frame, {META_BYTES['noref']} B per bicubic/noref "
             f"frame, 0 B for full-res anchors (+{X265_REF_META_BYTES} B for x265-ref to name its reference). "
             "PSNR/SSIM on RGB of the full-resolution frame. BD-rate: Bjøntegaard (PCHIP of log-rate over PSNR, "
             "overlapping PSNR range, shown in dB after each BD-rate); negative = fewer bits for the same PSNR. "
             "PSNR@x: PSNR interpolated at x bpp (blank outside the curve's rates).", ""]
    for set_name, s in result["sets"].items():
        summ = s["summary"]
        best = summ["best_fullres"]
        lines += [f"## {set_name}", "", f"{s['frames']} frames ({s['source']}); best full-res anchor: `{best}`.", ""]
        head = "| curve | pts | BD-rate vs full-res JPEG | BD-rate vs best full-res | " + " | ".join(
            f"PSNR@{r}" for r in RATES_BPP) + " | bpp range | enc ms | dec ms |"
        lines += [head, "|" + "---|" * (head.count("|") - 1)]
        for k, c in sorted(summ["curves"].items()):
            if c["points"] < 2:
                continue
            lines.append(
                f"| {k} | {c['points']} | {_bd(c['bd_rate_vs_jpeg'], c['overlap_db_vs_jpeg'])} | "
                f"{_bd(c['bd_rate_vs_best'], c['overlap_db_vs_best'])} | "
                + " | ".join(_f(c["psnr_at_bpp"][str(r)], ".2f") for r in RATES_BPP)
                + f" | {c['bpp_range'][0]:.3f}–{c['bpp_range'][1]:.3f} | {c['enc_ms']:.1f} | {c['dec_ms']:.1f} |")
        if summ.get("targets"):
            lines += ["", "Targets: RefScale against bicubic and the no-ref INN through the same LR codec, and "
                      f"against full-resolution codecs, also below {LOW_RATE_BPP} bpp (BD-rate needs a common PSNR "
                      "range, BD-PSNR a common rate range; blank: none).", "",
                      f"| curve | against | BD-rate % | BD-PSNR dB | BD-rate < {LOW_RATE_BPP} bpp | "
                      f"BD-PSNR < {LOW_RATE_BPP} bpp |", "|---|---|---|---|---|---|"]
            for row in summ["targets"]:
                lines.append(f"| {row['curve']} | {row['against']} | {_bd(row['bd_rate'], row['overlap_db'])} | "
                             f"{_f(row['bd_psnr'], '+.2f')} | {_f(row['bd_rate_below'], '+.1f')} | "
                             f"{_f(row['bd_psnr_below'], '+.2f')} |")
        video = {k: c for k, c in summ["curves"].items() if "vs_video" in c and c["points"] >= 2}
        if video:
            lines += ["", f"### Sequences (video, gop {result.get('gop', '')}, crf {result['qualities'].get('h265')})",
                      "", "BD-rate of each video curve against full-resolution video with the same codec settings; "
                      "`<0.1` averages only over the PSNR range the anchor reaches below 0.1 bpp.", ""]
            head = ("| curve | pts | BD vs full-res H.265 | BD vs H.265 <0.1 | BD vs full-res H.264 | "
                    "BD vs H.264 <0.1 | " + " | ".join(f"PSNR@{r}" for r in SEQ_RATES_BPP)
                    + " | bpp range | enc ms | dec ms |")
            lines += [head, "|" + "---|" * (head.count("|") - 1)]
            for k, c in sorted(video.items(), key=lambda kv: (kv[0].split("+")[1], kv[0])):
                cells = []
                for codec in ("h265", "h264"):
                    vs = c["vs_video"].get(codec)
                    cells += ["", ""] if vs is None else [_bd(vs["bd_rate"], vs["overlap_db"]),
                                                          _f(vs["bd_rate_below_0.1bpp"], "+.1f")]
                lines.append(f"| {k} | {c['points']} | " + " | ".join(cells) + " | "
                             + " | ".join(_f(c["psnr_at_seq_bpp"][str(r)], ".2f") for r in SEQ_RATES_BPP)
                             + f" | {c['bpp_range'][0]:.3f}–{c['bpp_range'][1]:.3f} | {c['enc_ms']:.1f} | "
                             f"{c['dec_ms']:.1f} |")
        singles = [p for p in s["points"] if p["codec"] == "png"]
        if singles:
            lines += ["", "Lossless LR (PNG, shipped today):", "", "| method | bpp | PSNR | SSIM |",
                      "|---|---|---|---|"]
            for p in singles:
                lines.append(f"| {p['method']} | {p['bpp']:.3f} | {p['psnr']:.2f} | {p['ssim']:.4f} |")
        if s["skipped"]:
            lines += ["", "Skipped: " + "; ".join(f"`{k}`: {v}" for k, v in s["skipped"].items())]
        if s.get("notes"):
            lines += ["", "Notes: " + "; ".join(s["notes"][:10])]
        lines.append("")
    return "\n".join(lines)


def plot(set_name: str, points: list[dict[str, Any]], path: Path) -> str | None:
    """bpp (log) vs PSNR per curve; returns why not when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        return f"no plot ({exc}); pip install refscale[rd]"
    colours = {"fullres": "black", "bicubic": "tab:green", "noref": "tab:blue", "refscale": "tab:red"}
    styles = {"jpeg": "-o", "webp": "--s", "avif": ":^", "x265-intra": "-.d", "x265-ref": "-x", "png": "*"}
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for name, pts in sorted(curves(points).items()):
        method, codec = name.split("+", 1)
        ax.plot([p["bpp"] for p in pts], [p["psnr"] for p in pts], styles.get(codec, "-"),
                color=colours.get(method, "grey"), label=name, markersize=5, linewidth=1.2)
    ax.set_xscale("log")
    ax.set_xlabel("bits per HR pixel (log)")
    ax.set_ylabel("PSNR RGB (dB)")
    ax.set_title(f"{set_name}: rate–distortion")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def write_outputs(result: dict[str, Any], out: Path) -> None:
    """rd.json, rd.md and rd_<set>.png under `out`."""
    out.mkdir(parents=True, exist_ok=True)
    for set_name, s in result["sets"].items():
        s["summary"] = summarise(s["points"])
        why = plot(set_name, s["points"], out / f"rd_{set_name}.png")
        if why:
            s.setdefault("notes", []).append(why)
    (out / "rd.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "rd.md").write_text(markdown(result))


def run_scoreboard(
    *,
    pairs: list[Path] | None = None,
    split: str = "all",
    limit: int | None = None,
    bag: Path | None = None,
    cache: Path | None = None,
    camera: str | None = None,
    camera_id: str | None = None,
    every: int = 1,
    weights: str = "x2",
    noref_weights: str | None = None,
    config: RdConfig | None = None,
    out: Path,
    progress: bool = True,
) -> dict[str, Any]:
    """Load frames and models, score every set, write the outputs; the library behind `refscale rd`."""
    from refscale_model.codecs import CODEC_NAMES
    from refscale_model.weights import load_model

    config = config or RdConfig()
    _check_config(config, CODEC_NAMES)
    if (pairs is None) == (bag is None):
        raise ValueError("give either --pairs CSV... or --bag BAG --cache DIR --camera TOPIC")
    if bag is not None and (cache is None or camera is None):
        raise ValueError("--bag needs --cache and --camera")
    if every < 1:
        raise ValueError(f"--every must be >= 1, got {every}")
    model = None if weights == "skip" else load_model(weights)
    if noref_weights is None:
        from refscale_model.weights import PRESET_FILES

        if f"{weights}-noref" in PRESET_FILES:  # x2 -> x2-noref, x2-lossy -> x2-lossy-noref
            noref_weights = f"{weights}-noref"
    noref = None if noref_weights in (None, "skip") else load_model(noref_weights)
    sources: list[tuple[str, str, list[RdFrame], list[str]]] = []
    if bag is not None:
        frames, notes = frames_from_bag(bag, cache, camera, every, limit, camera_id)  # type: ignore[arg-type]
        sources.append((bag.name, f"bag {bag}, camera {camera}, every {every}, cache {cache}", frames, notes))
    for csv_path in pairs or []:
        frames = frames_from_pairs(csv_path, split, limit)
        sources.append((csv_path.parent.name, f"{csv_path}, split {split}", frames, []))
    result: dict[str, Any] = {
        "weights": weights, "weights_sha256": getattr(model, "weights_sha256", None),
        "noref_weights": noref_weights, "noref_weights_sha256": getattr(noref, "weights_sha256", None),
        "scale": (model or noref).config.scale if (model or noref) else 2,
        "meta_bytes": META_BYTES, "x265_ref_meta_bytes": X265_REF_META_BYTES,
        "qualities": config.qualities, "gop": config.gop, "sets": {},
    }
    for name, source, frames, notes in sources:
        if not frames:
            raise ValueError(f"no frames selected from {source}")
        t0 = time.time()
        scored = score_frames(frames, model, noref, config, progress)
        if config.video_codecs and name == (bag.name if bag is not None else None):
            seq = score_sequences(frames, model, noref, config, progress)
            scored["points"] += seq["points"]
            scored["skipped"].update({f"{k} (sequences)": v for k, v in seq["skipped"].items()})
        result["sets"][name] = {"source": source, "frames": len(frames), "frame_names": [f.name for f in frames],
                                "seconds": round(time.time() - t0, 1), "notes": notes, **scored}
    write_outputs(result, out)
    return result


def _check_config(config: RdConfig, codec_names: tuple[str, ...]) -> None:
    """Bad names and qualities fail before minutes of scoring, with the valid choices."""
    from refscale_model.codecs import CodecError, check_quality

    for c in config.lr_codecs:
        if c not in codec_names:
            raise CodecError(f"unknown LR codec {c!r}; valid choices: {', '.join(codec_names)}")
    for m in config.methods:
        if m not in RESCALE_METHODS:
            raise ValueError(f"unknown method {m!r}; valid choices: {', '.join(RESCALE_METHODS)}")
    for a in config.anchors:
        if a not in ANCHORS:
            raise ValueError(f"unknown anchor {a!r}; valid choices: {', '.join(ANCHORS)}")
    for c in config.video_codecs:
        if c not in VIDEO_CODECS:
            raise CodecError(f"unknown video codec {c!r}; valid choices: {', '.join(VIDEO_CODECS)}")
    if isinstance(config.gop, bool) or not isinstance(config.gop, int) or config.gop < 1:
        raise ValueError(f"gop must be an int >= 1, got {config.gop!r}")
    for codec, qs in config.qualities.items():
        for q in qs:
            if codec in ("x265", *VIDEO_CODECS):
                if not 0 <= q <= 51:
                    raise ValueError(f"{codec} crf must be 0–51, got {q}")
            else:
                check_quality(codec, q, False)
