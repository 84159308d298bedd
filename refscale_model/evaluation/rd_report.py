"""The scoreboard's summary and outputs: BD-rates, the Targets table, Markdown, plots, JSON."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from refscale_model.evaluation.bdrate import bd_psnr, bd_rate, psnr_overlap, quality_at_rate
from refscale_model.evaluation.rd_settings import (
    LOW_RATE_BPP,
    META_BYTES,
    RATES_BPP,
    SEQ_RATES_BPP,
    VIDEO_CODECS,
    X265_REF_META_BYTES,
)


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
             "Rate: bits per HR pixel = 8 × (LR bitstream + stored S_map + frame metadata) / (H×W); "
             f"metadata: the recorder's frame record as measured on disk, {META_BYTES['refscale']} B per RefScale "
             f"frame with a reference, {META_BYTES['noref']} B per noref frame (and a gated RefScale frame); "
             f"{META_BYTES['bicubic']} B per bicubic frame, 0 B for full-res anchors "
             f"(+{X265_REF_META_BYTES} B for x265-ref to name its reference). "
             "PSNR/SSIM on RGB of the full-resolution frame. BD-rate: Bjøntegaard (PCHIP of log-rate over PSNR, "
             "overlapping PSNR range, shown in dB after each BD-rate); negative = fewer bits for the same PSNR. "
             "PSNR@x: PSNR interpolated at x bpp (blank outside the curve's rates).", ""]
    for set_name, s in result["sets"].items():
        summ = s["summary"]
        best = summ["best_fullres"]
        referenced = sorted({p.get("referenced") for p in s["points"] if p["method"] == "refscale"} - {None})
        used = (f" RefScale rebuilt {'/'.join(map(str, referenced))} of them with their reference (the gate sent the "
                "rest reference-free)." if referenced else "")
        lines += [f"## {set_name}", "",
                  f"{s['frames']} frames ({s['source']}); best full-res anchor: `{best}`.{used}", ""]
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
