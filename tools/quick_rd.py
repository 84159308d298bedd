"""Quick rate–distortion check of RefScale with a lossy LR codec against bicubic + the same codec.

Rate: bits per HR pixel = 8 × (LR bytes through the codec + stored S_map bytes when there is one) / (H × W);
distortion: RGB PSNR of the rebuilt frame, both averaged over the pairs of a set per (method, codec,
quality). BD-rate and BD-PSNR of every method against bicubic + codec, computed as the scoreboard does
(`evaluation.bdrate`: PCHIP; model-card tables made before December 2026 used a cubic polynomial fit).
Validation pairs only (the training split is never scored here, and nothing here is tuned).

    python tools/quick_rd.py --sets webcam_tilde:8 satellite_spacenet7_monthly:12 \
        --models x2-noref x2 x2-lossy-noref x2-lossy --out reports/quick_rd.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's package, not an installed one
from torch import nn

from refscale_model.evaluation import bdrate
from refscale_model.evaluation.pairs import read_eval_pairs, reference_for_frame, to_tensor, to_uint8
from refscale_model.io.images import stored_smap
from refscale_model.io.smap_coding import encode_smap
from refscale_model.metrics import psnr
from refscale_model.models.refscale import RefScale
from refscale_model.registration import RegistrationConfig
from refscale_model.training.codec_loop import roundtrip_rgb
from refscale_model.training.data import default_data_root, read_rgb
from refscale_model.training.losses import bicubic_down
from refscale_model.weights import load_model


def _points(curve: list[list[float]]) -> list[tuple[float, float]]:
    return [(float(pt[0]), float(pt[1])) for pt in curve]


def bd_rate(anchor: list[list[float]], test: list[list[float]]) -> float:
    """The scoreboard's BD-rate (%) of `test` against `anchor` (`evaluation.bdrate`); NaN without overlap."""
    value = bdrate.bd_rate(_points(anchor), _points(test))
    return float("nan") if value is None else value


def bd_psnr(anchor: list[list[float]], test: list[list[float]]) -> float:
    """The scoreboard's BD-PSNR (dB) over the common log-rate range; NaN without overlap."""
    value = bdrate.bd_psnr(_points(anchor), _points(test))
    return float("nan") if value is None else value


def summarise(curves: dict[str, dict[str, list[list[float]]]], codecs: list[str]) -> dict[str, object]:
    """BD-rate (%) and BD-PSNR (dB) of every method against every other, per codec."""
    out: dict[str, object] = {}
    for key, fn in (("bd_rate_percent", bd_rate), ("bd_psnr_db", bd_psnr)):
        out[key] = {
            codec: {
                name: {o: round(fn(curves[o][codec], curves[name][codec]), 2) for o in curves if o != name}
                for name in curves if name != "bicubic"
            }
            for codec in codecs
        }
    return out


def print_set(curves: dict[str, dict[str, list[list[float]]]], summary: dict, codecs: list[str]) -> None:
    for codec in codecs:
        for name in curves:
            pts = "  ".join(f"q{int(q)}:{b:.3f}bpp/{p:.2f}dB" for b, p, q in curves[name][codec])
            print(f"  {codec:4s} {name:28s} {pts}")
        for name, row in summary["bd_rate_percent"][codec].items():
            print(f"  {codec:4s} BD-rate {name:24s} " + "  ".join(f"vs {k}: {v:+.1f}%" for k, v in row.items()))
        for name, row in summary["bd_psnr_db"][codec].items():
            print(f"  {codec:4s} BD-PSNR {name:24s} " + "  ".join(f"vs {k}: {v:+.2f}dB" for k, v in row.items()))


def bicubic_lr(hr: np.ndarray, scale: int) -> np.ndarray:
    """The bicubic baseline's LR (anti-aliased bicubic of the replicate-padded frame), uint8."""
    x = to_tensor(hr)
    h, w = hr.shape[:2]
    ph, pw = -(-h // scale) * scale, -(-w // scale) * scale
    xp = nn.functional.pad(x, (0, pw - w, 0, ph - h), mode="replicate")
    return to_uint8(bicubic_down(xp, scale))


def bicubic_up(lr: np.ndarray, size: tuple[int, int], scale: int) -> np.ndarray:
    up = nn.functional.interpolate(to_tensor(lr), scale_factor=scale, mode="bicubic", align_corners=False)
    return to_uint8(up[..., : size[0], : size[1]])


def measure_set(
    set_dir: Path, limit: int, models: dict[str, RefScale], codecs: list[str], qualities: list[int],
    split: str = "val",
) -> dict[str, dict[str, list[list[float]]]]:
    """{method: {codec: [[mean bpp, mean PSNR, quality] per quality]}} over `limit` pairs of the split
    (validation: its first pairs; training: evenly spaced ones, to pick between variants without validation)."""
    pairs = read_eval_pairs(set_dir / "pairs.csv", "val" if split == "val" else "train")
    pairs = pairs[:limit] if split == "val" else pairs[:: max(1, len(pairs) // limit)][:limit]
    sums: dict[tuple[str, str, int], list[float]] = {}

    def add(method: str, codec: str, q: int, bits: float, db: float) -> None:
        entry = sums.setdefault((method, codec, q), [0.0, 0.0, 0])
        entry[0] += bits
        entry[1] += db
        entry[2] += 1

    for pair in pairs:
        target = read_rgb(pair.target)
        unregistered = RegistrationConfig(when_unregistered="none")
        ref, _ = reference_for_frame(target, read_rgb(pair.reference), False, unregistered)
        h, w = target.shape[:2]
        stored: dict[str, tuple[np.ndarray, np.ndarray | None]] = {"bicubic": (bicubic_lr(target, 2), None)}
        for name, model in models.items():
            r = to_tensor(ref) if model.config.use_reference else None
            enc = model.downscale(to_tensor(target), r)
            smap = stored_smap(None if enc.smap is None else enc.smap[0, 0].numpy())
            stored[name] = (enc.lr[0].permute(1, 2, 0).numpy(), smap)
        for codec in codecs:
            for q in qualities:
                for name, (lr, smap) in stored.items():
                    dec, nbytes = roundtrip_rgb(lr, codec, q)
                    smap_bytes = len(encode_smap(smap)[1]) if smap is not None else 0
                    if name == "bicubic":
                        out = bicubic_up(dec, (h, w), 2)
                    else:
                        model = models[name]
                        lr_t = torch.from_numpy(dec).permute(2, 0, 1)[None].contiguous()
                        if smap is None:
                            hr = model.upscale(lr_t, None, None, (h, w))
                        else:
                            hr = model.upscale(lr_t, torch.from_numpy(smap)[None, None], to_tensor(ref), (h, w))
                        out = to_uint8(hr)
                    add(name, codec, q, 8.0 * (nbytes + smap_bytes) / (h * w), psnr(target, out))
    result: dict[str, dict[str, list[list[float]]]] = {}
    for (name, codec, q), (bits, db, n) in sums.items():
        result.setdefault(name, {}).setdefault(codec, []).append([bits / n, db / n, q])
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", nargs="+", default=["webcam_tilde:8", "satellite_spacenet7_monthly:12"],
                    help="SET:LIMIT (first LIMIT validation pairs)")
    ap.add_argument("--models", nargs="+", default=["x2-noref", "x2"], help="model ids or .safetensors paths")
    ap.add_argument("--codecs", nargs="+", default=["jpeg", "webp"])
    ap.add_argument("--qualities", type=int, nargs="+", default=[20, 35, 50, 70, 90])
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--split", choices=["val", "train"], default="val",
                    help="train: evenly spaced training pairs, for choosing between trained variants")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--recompute", type=Path, nargs="*", default=[],
                    help="only print the BD tables of earlier --out JSON files (no images are coded)")
    ap.add_argument("--out", type=Path, default=None, help="write the curves and BD-rates as JSON")
    args = ap.parse_args()
    if args.recompute:
        for path in args.recompute:
            for set_name, entry in json.loads(path.read_text()).items():
                if isinstance(entry, dict) and "curves" in entry:
                    codecs = list(next(iter(entry["curves"].values())))
                    print(f"== {set_name} ({path})")
                    print_set(entry["curves"], summarise(entry["curves"], codecs), codecs)
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    root = args.data or default_data_root()
    models = {str(m): load_model(m) for m in args.models}
    shas = {k: m.weights_sha256 for k, m in models.items()}
    report: dict[str, object] = {"qualities": args.qualities, "split": args.split, "models": shas}
    for spec in args.sets:
        set_name, _, limit = spec.partition(":")
        curves = measure_set(root / set_name, int(limit or 8), models, args.codecs, args.qualities, args.split)
        summary = summarise(curves, args.codecs)
        report[set_name] = {"curves": curves, **summary}
        print(f"== {set_name} ({limit} {args.split} pairs)")
        print_set(curves, summary, args.codecs)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
