"""`refscale eval`: the project's yardstick on real revisit pairs (paper Table 1 columns).

Three methods on the same full frames: bicubic down + bicubic up, the no-reference INN (same
architecture, condition zeroed, same training budget) and RefScale. The JSON keys are a contract:
`methods.<bicubic|noref|refscale>.{psnr,ssim,si,bpp_lr,bytes_per_frame}`.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import torch
from torch import nn

from refscale_model.io.images import stored_smap, to_uint8
from refscale_model.metrics import frame_bytes, psnr, spatial_information, ssim
from refscale_model.models.refscale import RefScale
from refscale_model.registration import RegistrationConfig, align_reference
from refscale_model.training.data import place_of, read_rgb, validation_places
from refscale_model.training.losses import bicubic_down
from refscale_model.utils import round_up

ReferenceMode = Literal["aligned", "none", "shuffled"]
METHODS = ("bicubic", "noref", "refscale")
METRIC_KEYS = ("psnr", "ssim", "si", "bpp_lr", "bytes_per_frame")


@dataclass
class EvalPair:
    target: Path
    reference: Path
    note: str = ""
    place: str = ""
    """`set/place` of the target (see `data.place_of`); empty: each reference file is its own place."""

    @property
    def place_key(self) -> str:
        return self.place or str(self.reference)


@dataclass
class MethodResult:
    psnr: float
    ssim: float
    si: float
    bpp_lr: float
    bytes_per_frame: int
    extra: dict[str, float] = field(default_factory=dict)
    lr: np.ndarray | None = None
    hr: np.ndarray | None = None
    smap: np.ndarray | None = None

    def as_dict(self) -> dict[str, float]:
        return {
            "psnr": self.psnr,
            "ssim": self.ssim,
            "si": self.si,
            "bpp_lr": self.bpp_lr,
            "bytes_per_frame": self.bytes_per_frame,
            **self.extra,
        }


def read_eval_pairs(csv_path: Path, split: Literal["all", "val", "train"] = "all") -> list[EvalPair]:
    """Rows of a pairs.csv, optionally restricted to the training split's validation places."""
    set_dir = csv_path.parent
    with open(csv_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if split != "all":
        from refscale_model.training.data import read_pairs

        val = validation_places(read_pairs(set_dir))
        keep = (lambda p: p in val) if split == "val" else (lambda p: p not in val)
        rows = [r for r in rows if keep(place_of(set_dir.name, r["target"]))]
    return [
        EvalPair(set_dir / r["target"], set_dir / r["reference"], r.get("note", ""),
                 f"{set_dir.name}/{place_of(set_dir.name, r['target'])}")
        for r in rows
    ]


def set_dir_of(pair: EvalPair) -> Path:
    """The set folder (the one holding pairs.csv) of a pair read by `read_eval_pairs`."""
    set_name = pair.place.split("/")[0]
    return next((d for d in pair.target.parents if set_name and d.name == set_name), pair.target.parent)


def other_sets_pairs(set_dir: Path) -> list[EvalPair]:
    """Validation pairs of the other sets beside `set_dir`: references of certainly another place
    for `--reference-mode shuffled` when a set's own validation split holds a single place."""
    return [
        pair
        for other in sorted(set_dir.parent.iterdir())
        if other != set_dir and (other / "pairs.csv").is_file()
        for pair in read_eval_pairs(other / "pairs.csv", "val")
    ]


def shuffled_reference(pairs: list[EvalPair], i: int, pool: list[EvalPair]) -> Path:
    """A reference of another place for pair `i`: the pair half the list away (or the next one of
    another place after it); when every pair shows the same place, one from `pool`."""
    here = pairs[i].place_key
    n = len(pairs)
    for k in range(n):
        candidate = pairs[(i + n // 2 + k) % n]
        if candidate.place_key != here:
            return candidate.reference
    others = [p for p in pool if p.place_key != here]
    if not others:
        raise ValueError("--reference-mode shuffled needs a pair of another place (in the pairs or beside their set)")
    return others[i % len(others)].reference


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float().div(255)


def evaluate_bicubic(hr: np.ndarray, scale: int) -> MethodResult:
    x = to_tensor(hr)
    h, w = hr.shape[:2]
    ph, pw = round_up(h, scale), round_up(w, scale)
    xp = nn.functional.pad(x, (0, pw - w, 0, ph - h), mode="replicate")
    lr = torch.round(bicubic_down(xp, scale) * 255) / 255
    up = nn.functional.interpolate(lr, size=(ph, pw), mode="bicubic", align_corners=False)[..., :h, :w]
    lr_u8, hr_u8 = to_uint8(lr, half_up=True), to_uint8(up, half_up=True)
    fb = frame_bytes(lr_u8, None, (h, w))
    return MethodResult(psnr(hr, hr_u8), ssim(hr, hr_u8), spatial_information(lr_u8), fb.bpp_lr,
                        fb.bytes_per_frame, lr=lr_u8, hr=hr_u8)


def evaluate_model(model: RefScale, hr: np.ndarray, ref: np.ndarray | None) -> MethodResult:
    """Downscale, store as PNG (bytes counted), upscale with z = 0, score the rebuilt frame."""
    x = to_tensor(hr)
    r = to_tensor(ref) if ref is not None and model.config.use_reference else None
    enc = model.downscale(x, r)
    smap = stored_smap(None if enc.smap is None else enc.smap[0, 0].numpy())
    lossless = float("inf")  # the PNG LR arrives unchanged (the decoder blend's last knot)
    if smap is None:  # not stored: the far end rebuilds reference-free
        out = model.upscale(enc.lr, None, None, enc.size, lr_psnr=lossless)
    else:
        out = model.upscale(enc.lr, enc.smap, r, enc.size, lr_psnr=lossless)
    lr_u8 = enc.lr[0].permute(1, 2, 0).numpy()
    hr_u8 = to_uint8(out, half_up=True)
    fb = frame_bytes(lr_u8, smap, enc.size)
    extra = {}
    if model.config.use_reference:
        extra["smap_mean"] = 0.0 if smap is None else float(smap.mean() / (model.config.smap_levels - 1))
        extra["smap_bytes"] = fb.smap_bytes  # part of bytes_per_frame: the map's own cost, for the rate budget
    return MethodResult(psnr(hr, hr_u8), ssim(hr, hr_u8), spatial_information(lr_u8), fb.bpp_lr,
                        fb.bytes_per_frame, extra=extra, lr=lr_u8, hr=hr_u8, smap=smap)


def reference_for_frame(
    target: np.ndarray, reference: np.ndarray, register: bool, reg_config: RegistrationConfig
) -> tuple[np.ndarray | None, dict[str, Any]]:
    """Bring the reference to the frame: registration (optional) or a plain resize if sizes differ."""
    if register:
        warped, reg = align_reference(target, reference, reg_config)
        return warped, {"registration": reg.method, "registration_confidence": round(reg.confidence, 3)}
    if reference.shape != target.shape:
        reference = cv2.resize(reference, (target.shape[1], target.shape[0]), interpolation=cv2.INTER_AREA)
    return reference, {}


def evaluate(
    model: RefScale,
    noref_model: RefScale | None,
    pairs: list[EvalPair],
    reference_mode: ReferenceMode = "aligned",
    register: bool = False,
    reg_config: RegistrationConfig | None = None,
    report_dir: Path | None = None,
    figures: int = 3,
    progress: bool = True,
    unrelated: list[EvalPair] | None = None,
) -> dict[str, Any]:
    """Evaluate all pairs; returns the JSON-ready result (means + per-pair rows).

    `unrelated`: references of other places for `shuffled` when all pairs show one place (default:
    the validation pairs of the other sets beside the first pair's set, `other_sets_pairs`).
    """
    from tqdm import tqdm

    reg_config = reg_config or RegistrationConfig(when_unregistered="none")
    if reference_mode == "shuffled" and unrelated is None:
        unrelated = other_sets_pairs(set_dir_of(pairs[0]))
    rows: list[dict[str, Any]] = []
    scale = model.config.scale
    t0 = time.time()
    for i, pair in enumerate(tqdm(pairs, desc="eval", disable=not progress)):
        target = read_rgb(pair.target)
        if reference_mode == "none":
            ref, info = None, {}
        else:
            shuffled = reference_mode == "shuffled"
            ref_path = shuffled_reference(pairs, i, unrelated or []) if shuffled else pair.reference
            ref, info = reference_for_frame(target, read_rgb(ref_path), register, reg_config)
            if shuffled:
                info["shuffled_reference"] = str(ref_path)
        results = {"bicubic": evaluate_bicubic(target, scale)}
        if noref_model is not None:
            results["noref"] = evaluate_model(noref_model, target, None)
        results["refscale"] = evaluate_model(model, target, ref)
        rows.append({
            "target": str(pair.target),
            "reference": str(pair.reference),
            "size": list(target.shape[:2]),
            **info,
            "methods": {k: v.as_dict() for k, v in results.items()},
        })
        if report_dir is not None and i < figures:
            save_figure(report_dir / f"pair_{i:03d}.png", target, ref, results, model.config.smap_levels)
    means = {
        m: {k: float(np.mean([r["methods"][m][k] for r in rows])) for k in rows[0]["methods"][m]}
        for m in rows[0]["methods"]
    } if rows else {}
    return {
        "weights": getattr(model, "weights_sha256", None),
        "noref_weights": getattr(noref_model, "weights_sha256", None) if noref_model else None,
        "scale": scale,
        "reference_mode": reference_mode,
        "register": register,
        "pairs": len(rows),
        "seconds": round(time.time() - t0, 1),
        "methods": means,
        "rows": rows,
    }


def _crop_box(shape: tuple[int, ...], size: int = 192) -> tuple[slice, slice]:
    h, w = shape[:2]
    s = min(size, h, w)
    y, x = (h - s) // 2, (w - s) // 2
    return slice(y, y + s), slice(x, x + s)


def save_figure(
    path: Path, target: np.ndarray, ref: np.ndarray | None, results: dict[str, MethodResult], levels: int
) -> None:
    """Side-by-side centre crops: HR | reference | per method (LR upsampled ×s nearest, rebuilt HR) | S_map."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ys, xs = _crop_box(target.shape)
    tiles = [target[ys, xs], ref[ys, xs] if ref is not None else np.zeros_like(target[ys, xs])]
    size = tiles[0].shape[:2]
    for res in results.values():
        lr_big = cv2.resize(res.lr, (res.hr.shape[1], res.hr.shape[0]), interpolation=cv2.INTER_NEAREST)
        tiles += [lr_big[ys, xs], res.hr[ys, xs]]
    smap = results["refscale"].smap
    if smap is not None:
        heat = cv2.applyColorMap((smap.astype(np.float32) * 255 / (levels - 1)).astype(np.uint8), cv2.COLORMAP_JET)
        heat = cv2.resize(heat, (target.shape[1], target.shape[0]), interpolation=cv2.INTER_NEAREST)
        tiles.append(cv2.cvtColor(heat, cv2.COLOR_BGR2RGB)[ys, xs])
    tiles = [cv2.resize(t, (size[1], size[0])) for t in tiles]
    strip = np.concatenate(tiles, axis=1)
    cv2.imwrite(str(path), cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))


def markdown_table(result: dict[str, Any]) -> str:
    lines = [
        f"Scale {result['scale']}×, {result['pairs']} pairs, reference mode `{result['reference_mode']}`, "
        f"registration {'on' if result['register'] else 'off'}.",
        "",
        "| method | PSNR (dB) | SSIM | SI of LR | bits per LR pixel | bytes per frame | mean S_map |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in METHODS:
        m = result["methods"].get(name)
        if m is None:
            continue
        smap = f"{m['smap_mean']:.3f}" if "smap_mean" in m else "–"
        lines.append(
            f"| {name} | {m['psnr']:.2f} | {m['ssim']:.4f} | {m['si']:.4f} | {m['bpp_lr']:.3f} | "
            f"{m['bytes_per_frame']:.0f} | {smap} |"
        )
    lines += ["", "Figures: HR | reference | (LR, rebuilt HR) per method: bicubic, noref, refscale | S_map.", ""]
    return "\n".join(lines)


def write_report(result: dict[str, Any], report_dir: Path) -> None:
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    per_pair = ["| pair | " + " | ".join(f"{m} PSNR" for m in result["methods"]) + " |",
                "|---|" + "---|" * len(result["methods"])]
    for row in result["rows"]:
        cells = " | ".join(f"{row['methods'][m]['psnr']:.2f}" for m in result["methods"])
        per_pair.append(f"| {Path(row['target']).name} | {cells} |")
    (report_dir / "report.md").write_text(markdown_table(result) + "\n" + "\n".join(per_pair) + "\n")
