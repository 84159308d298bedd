"""`refscale rd`: the rate–distortion scoreboard of LR codecs × rescaling methods vs full-resolution anchors.

Rate is **bits per HR pixel**: 8 × (every byte the far end needs to rebuild the frame) / (H × W).
For a rescaled frame that is the LR bitstream + the stored S_map (`io.smap_coding`) when there is one + a fixed
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

import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from refscale_model.backends.torch_backend import tensor_smap_choice
from refscale_model.codecs import get_codec
from refscale_model.evaluation.anchors import (
    AnchorUnavailable,
    video_sequence,
    x265_available,
    x265_given_reference,
    x265_intra,
)
from refscale_model.evaluation.rd_frames import RdFrame, frames_from_bag, frames_from_pairs
from refscale_model.evaluation.rd_report import curves, markdown, plot, summarise, targets, write_outputs
from refscale_model.evaluation.rd_settings import (
    ANCHORS,
    DEFAULT_QUALITIES,
    IMAGE_CODECS,
    META_BYTES,
    PREDICTED_LR_META_BYTES,
    REFERENCE_CODECS,
    REFERENCE_NAMING_BYTES,
    RESCALE_METHODS,
    VIDEO_CODECS,
    X265_REF_META_BYTES,
)
from refscale_model.io.images import stored_smap
from refscale_model.io.smap_coding import encode_smap
from refscale_model.metrics import psnr, ssim
from refscale_model.models.refscale import RefScale
from refscale_model.pipeline.lr_fidelity import measured_lr_psnr
from refscale_model.pipeline.reference_choice import DEFAULT_CANDIDATES
from refscale_model.pipeline.smap_reuse import DEFAULT_TOLERANCE, SmapReuse
from refscale_model.pipeline.smap_smoothing import DEFAULT_BLOCK, DEFAULT_MEDIAN, SmapStorage, coarsen_smap


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
    smap_median: int = DEFAULT_MEDIAN
    """RefScale's S_map is median-smoothed before it is conditioned on and stored, as the recorder does
    (`pipeline.smap_smoothing`; 1: off)."""
    smap_block: int = DEFAULT_BLOCK
    """... and stored as one value per `smap_block`×`smap_block` cells, as the recorder does (1: off)."""
    smap_reuse: float = DEFAULT_TOLERANCE
    """Sequence curves: RefScale reuses the S_map stored earlier in the GOP within this many levels, as the
    recorder does with a video LR (`pipeline.smap_reuse`; 0: a map with every frame)."""
    video_encoder: str = "cpu"
    """Encoder of the video curves (cpu: libx264/libx265, deterministic; see `codecs.choose_encoder`)."""

    @property
    def smap_storage(self) -> SmapStorage:
        """RefScale's S_map shaping and storage, as the recorder's (`smap_median`, `smap_block`)."""
        return SmapStorage(self.smap_median, self.smap_block)


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
    smap: np.ndarray | None = None
    """The S_map the frame is conditioned on (None: none, the frame is rebuilt reference-free)."""

    def meta_bytes(self, method: str) -> int:
        """The metadata allowance of this frame: a RefScale frame the gate sent reference-free names no
        reference (its bag meta has an empty reference id), so it carries what a no-ref frame does."""
        return META_BYTES["noref" if method == "refscale" and self.smap is None else method]


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


def model_lr(model: RefScale, hr: np.ndarray, ref: np.ndarray | None,
             choose_smap: Callable[[np.ndarray], np.ndarray] | None = None, smap_block: int = 1) -> _Lr:
    """The INN's LR (+ stored S_map bytes); rebuild with z = 0, reference-free when no map is stored.
    `choose_smap` (hs×ws uint8 -> the map to use) as `RefScale.downscale`'s; the map is stored
    (and counted) as one value per `smap_block`×`smap_block` cells."""
    t0 = time.perf_counter()
    x = _t(hr)
    r = _t(ref) if ref is not None and model.config.use_reference else None
    enc = model.downscale(x, r, tensor_smap_choice(choose_smap))
    smap = stored_smap(None if enc.smap is None else enc.smap[0, 0].numpy())
    side = len(encode_smap(coarsen_smap(smap, smap_block))[1]) if smap is not None else 0
    down_ms = (time.perf_counter() - t0) * 1000

    coded = enc.lr[0].permute(1, 2, 0).numpy().copy()

    def rebuild(lr_u8: np.ndarray) -> np.ndarray:
        lr_t = torch.from_numpy(np.ascontiguousarray(lr_u8)).permute(2, 0, 1)[None]
        lr_psnr = measured_lr_psnr(coded, lr_u8)  # what the car measures and records
        if smap is None:
            return _u8(model.upscale(lr_t, None, None, enc.size, lr_psnr=lr_psnr))
        return _u8(model.upscale(lr_t, enc.smap, r, enc.size, lr_psnr=lr_psnr))

    return _Lr(coded, side, down_ms, rebuild, smap)


class _Acc:
    """Per-curve-point sums over frames."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str, int | None], list[dict[str, float]]] = defaultdict(list)

    def add(self, method: str, codec: str, quality: int | None, hr: np.ndarray, out: np.ndarray, nbytes: int,
            enc_ms: float, dec_ms: float, referenced: bool = False) -> None:
        h, w = hr.shape[:2]
        self.rows[(method, codec, quality)].append({
            "bytes": nbytes, "bpp": 8.0 * nbytes / (h * w), "psnr": psnr(hr, out), "ssim": ssim(hr, out),
            "enc_ms": enc_ms, "dec_ms": dec_ms, "referenced": referenced,
        })

    def points(self) -> list[dict[str, Any]]:
        out = []
        for (method, codec, quality), rows in self.rows.items():
            mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k != "referenced"}
            out.append({"method": method, "codec": codec, "quality": quality, "frames": len(rows),
                        "bytes": round(mean["bytes"], 1), "bpp": round(mean["bpp"], 5), "psnr": round(mean["psnr"], 3),
                        "ssim": round(mean["ssim"], 5), "enc_ms": round(mean["enc_ms"], 2),
                        "dec_ms": round(mean["dec_ms"], 2),
                        "referenced": sum(r["referenced"] for r in rows)})  # frames rebuilt with a reference
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
            lr = _method_lr(frame, method, model, noref, scale, config.smap_storage)
            if isinstance(lr, str):
                skipped[method] = lr
                continue
            for codec_name in config.lr_codecs:
                if codec_name in REFERENCE_CODECS:
                    _score_reference_predicted_lr(acc, config, method, frame, lr, scale)
                    continue
                if codec_name in VIDEO_CODECS:
                    reason = _score_intra_lr(acc, config, method, codec_name, hr, lr)
                    if reason:
                        skipped[f"{method}+{codec_name}-intra"] = reason
                    continue
                codec = get_codec(codec_name)
                for q in [None] if codec.lossless else config.qualities[codec_name]:
                    data, e = _timed(codec.encode, lr.lr, q)
                    dec_lr, d = _timed(codec.decode, data)
                    out, u = _timed(lr.rebuild, dec_lr)
                    nbytes = len(data) + lr.side_bytes + lr.meta_bytes(method)
                    acc.add(method, codec_name, q, hr, out, nbytes, lr.down_ms + e, d + u, lr.smap is not None)
    return {"points": acc.points(), "skipped": skipped}


def _score_intra_lr(acc: _Acc, config: RdConfig, method: str, codec: str, hr: np.ndarray, lr: _Lr) -> str | None:
    """A still frame's LR as one IDR access unit with the recorder's video LR settings (`codecs.video`; the
    codec `--gop 1` runs), a stream of its own like the x265-intra anchor (a running stream's later IDRs sit on
    the same curve, up to ~0.3 dB below it at crf 40: docs/rate-distortion.md); crf sweep `qualities[codec]`;
    curve `<method>+<codec>-intra`.
    Returns why it cannot run here (no such encoder), else None."""
    from refscale_model.codecs import CodecError

    for crf in config.qualities[codec]:
        try:
            coded = video_sequence(codec, [lr.lr], crf, gop=1, encoder=config.video_encoder)[0]
        except (CodecError, AnchorUnavailable) as exc:
            return str(exc)
        out, u = _timed(lr.rebuild, coded.decoded)
        nbytes = coded.nbytes + lr.side_bytes + lr.meta_bytes(method)
        acc.add(method, f"{codec}-intra", crf, hr, out, nbytes, lr.down_ms + coded.enc_ms, coded.dec_ms + u,
                lr.smap is not None)
    return None


def _score_reference_predicted_lr(acc: _Acc, config: RdConfig, method: str, frame: RdFrame, lr: _Lr,
                                  scale: int) -> None:
    """The LR through the `h265-ref` codec (`codecs.reference_predicted.code_frame`: intra, or a P-frame after
    the reference's picture where that costs less), crf sweep `qualities["h265"]`; curve `<method>+h265-ref`.
    Every method gets the frame's reference for the codec, as the x265-ref anchor does; a predicted frame pays
    for its CRC and, where its record would name no reference otherwise, for naming it and its warp."""
    from refscale_model.codecs import reference_predicted as rp

    hr = frame.target
    ref_lr = None if frame.reference is None else rp.reference_lr(frame.reference, lr.lr.shape[:2], scale)
    names_reference = method == "refscale" and lr.smap is not None
    for crf in config.qualities["h265"]:
        coded, enc_ms = _timed(rp.code_frame, lr.lr, ref_lr, crf)
        decoded, d = _timed(rp.decode_frame, coded.data, coded.format, lr.lr.shape[:2], crf,
                            ref_lr if coded.predicted else None, coded.digest)  # as the far end does
        if not decoded.digest_matches or not np.array_equal(decoded.rgb, coded.decoded):
            raise RuntimeError(f"{frame.name}: {rp.CODEC_NAME} decodes differently than it coded (crf {crf})")
        out, u = _timed(lr.rebuild, decoded.rgb)
        extra = (PREDICTED_LR_META_BYTES + (0 if names_reference else REFERENCE_NAMING_BYTES)) if coded.predicted else 0
        nbytes = len(coded.data) + lr.side_bytes + lr.meta_bytes(method) + extra
        acc.add(method, rp.CODEC_NAME, crf, hr, out, nbytes, lr.down_ms + enc_ms, d + u, lr.smap is not None)


def lossless_weights_on_lossy_lr(model: RefScale | None, config: RdConfig) -> bool:
    """Whether `model` (trained for a lossless LR: no decoder side) is scored through lossy LR codecs,
    which is what `refscale rd`'s default `--weights x2` does unless told otherwise."""
    lossy = [c for c in (*config.lr_codecs, *config.video_codecs) if c != "png"]
    return model is not None and not model.config.has_decoder and bool(lossy)


def _method_lr(frame: RdFrame, method: str, model: RefScale | None, noref: RefScale | None,
               scale: int, storage: SmapStorage) -> _Lr | str:
    """One frame's LR for `method`, or why the method cannot run (RefScale's S_map shaped and stored as
    the recorder's)."""
    if method == "bicubic":
        return bicubic_lr(frame.target, scale)
    if method == "noref":
        return "no no-reference weights given" if noref is None else model_lr(noref, frame.target, None)
    if model is None:
        return "no RefScale weights given"
    return model_lr(model, frame.target, frame.reference, storage.condition, storage.block)


def _method_lrs(frames: list[RdFrame], method: str, model: RefScale | None, noref: RefScale | None,
                scale: int, storage: SmapStorage) -> list[_Lr] | str:
    """Every frame's LR for `method` (a sequence), or why the method cannot run."""
    lrs = [_method_lr(f, method, model, noref, scale, storage) for f in frames]  # no model: costs nothing
    reasons = [x for x in lrs if isinstance(x, str)]
    return reasons[0] if reasons else lrs  # type: ignore[return-value]


def _refscale_sequence(frames: list[RdFrame], model: RefScale, config: RdConfig) -> list[_Lr]:
    """RefScale's LR of every frame of a sequence with S_map reuse in each GOP, as the recorder codes a
    video LR: a frame whose map an earlier frame of its GOP stores adds no S_map bytes."""
    reuse, storage = SmapReuse(config.smap_reuse), config.smap_storage
    out = []
    for i, f in enumerate(frames):
        x = model_lr(model, f.target, f.reference, lambda m: reuse.choose("sequence", storage.condition(m)),
                     storage.block)
        if reuse.source("sequence", x.smap, keyframe=i % config.gop == 0):
            x.side_bytes = 0
        elif x.smap is not None:
            reuse.stored("sequence", i + 1, x.smap)
        out.append(x)
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
            coded = video_sequence(codec, [f.target for f in frames], crf, config.gop, config.video_encoder)
            for f, c in zip(frames, coded, strict=True):
                acc.add("fullres", codec, crf, f.target, c.decoded, c.nbytes, c.enc_ms, c.dec_ms)
            continue
        if method not in lrs:
            reuse = method == "refscale" and model is not None and config.smap_reuse > 0
            lrs[method] = (_refscale_sequence(frames, model, config) if reuse  # type: ignore[arg-type]
                           else _method_lrs(frames, method, model, noref, scale, config.smap_storage))
        lr = lrs[method]
        if isinstance(lr, str):
            skipped[method] = lr
            continue
        coded = video_sequence(codec, [x.lr for x in lr], crf, config.gop, config.video_encoder)
        for f, x, c in zip(frames, lr, coded, strict=True):
            out, u = _timed(x.rebuild, c.decoded)
            acc.add(method, codec, crf, f.target, out, c.nbytes + x.side_bytes + x.meta_bytes(method),
                    x.down_ms + c.enc_ms, c.dec_ms + u, x.smap is not None)
    bar.close()
    return {"points": acc.points(), "skipped": skipped}


# ---------------------------------------------------------------------------------------------- report


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
    reference_candidates: int = DEFAULT_CANDIDATES,
) -> dict[str, Any]:
    """Load frames and models, score every set, write the outputs; the library behind `refscale rd`.
    `reference_candidates` (bag frames): the recorder's reference choice (`pipeline.reference_choice`)."""
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
    for name, net in ((weights, model), (noref_weights, noref)):
        if lossless_weights_on_lossy_lr(net, config):
            logging.getLogger(__name__).warning(
                "%s has no decoder side: it was trained for a lossless LR, and these curves code the LR lossily "
                "(the codec-aware weights are x2-lossy / x2-lossy-noref)", name)
    sources: list[tuple[str, str, list[RdFrame], list[str]]] = []
    if bag is not None:
        frames, notes = frames_from_bag(bag, cache, camera, every, limit, camera_id,  # type: ignore[arg-type]
                                        reference_candidates)
        sources.append((bag.name, f"bag {bag}, camera {camera}, every {every}, cache {cache}", frames, notes))
    for csv_path in pairs or []:
        frames = frames_from_pairs(csv_path, split, limit)
        sources.append((csv_path.parent.name, f"{csv_path}, split {split}", frames, []))
    result: dict[str, Any] = {
        "weights": weights, "weights_sha256": getattr(model, "weights_sha256", None),
        "noref_weights": noref_weights, "noref_weights_sha256": getattr(noref, "weights_sha256", None),
        "scale": (model or noref).config.scale if (model or noref) else 2,
        "meta_bytes": META_BYTES, "x265_ref_meta_bytes": X265_REF_META_BYTES,
        "qualities": config.qualities, "gop": config.gop, "smap_reuse": config.smap_reuse, "sets": {},
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
        if c not in (*codec_names, *VIDEO_CODECS, *REFERENCE_CODECS):
            raise CodecError(f"unknown LR codec {c!r}; valid choices: "
                             f"{', '.join((*codec_names, *VIDEO_CODECS, *REFERENCE_CODECS))}")
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


__all__ = [
    "RdConfig",
    "RdFrame",
    "curves",
    "frames_from_bag",
    "frames_from_pairs",
    "markdown",
    "plot",
    "run_scoreboard",
    "score_frames",
    "score_sequences",
    "summarise",
    "targets",
    "write_outputs",
]
