"""Before/after table of two `refscale rd` runs on the same frames: RefScale's BD-rates per set and LR codec.

    python tools/rd_compare.py rd-before rd-after --sets spacenet webcam sample_drive robotcar

Each run folder holds one sub-folder per set with its `rd.json`. Bicubic, the full-resolution anchors and
"best full-res" (the anchor with the lowest BD-rate against full-res JPEG) come from the after-run; each
run's RefScale is set against its own no-ref INN when the run has one. Prints Markdown rows.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's package

from refscale_model.evaluation.bdrate import bd_psnr, bd_rate, quality_at_rate

Curves = dict[str, list[tuple[float, float]]]


def curves(rd_json: Path) -> Curves:
    """`method+codec` -> sorted (bpp, PSNR) points of the first set in an rd.json."""
    sets = json.loads(rd_json.read_text())["sets"]
    points = (sets[0] if isinstance(sets, list) else next(iter(sets.values())))["points"]
    out: Curves = {}
    for p in points:
        out.setdefault(f"{p['method']}+{p['codec']}", []).append((p["bpp"], p["psnr"]))
    return {k: sorted(v) for k, v in out.items()}


def _f(x: float | None, fmt: str = "+.1f") -> str:
    return "–" if x is None else format(x, fmt)


def rows(before: Curves, after: Curves, set_name: str, codecs: list[str]) -> list[str]:
    fullres = [k for k in after if k.startswith("fullres+")]
    best = min(fullres, key=lambda k: v if (v := bd_rate(after["fullres+jpeg"], after[k])) is not None else 1e9)
    cap = quality_at_rate(after["fullres+avif"], 0.2)
    out = []
    for codec in codecs:
        cells = [set_name, codec]
        for run in (before, after):
            test = run[f"refscale+{codec}"]
            noref = run.get(f"noref+{codec}")
            bicubic = after[f"bicubic+{codec}"]
            cells += [_f(bd_rate(bicubic, test)), _f(bd_psnr(bicubic, test), "+.2f"),
                      _f(bd_rate(noref, test) if noref else None),
                      _f(bd_rate(after["fullres+avif"], test, max_psnr=cap) if cap else None),
                      _f(bd_rate(after[best], test)), _f(quality_at_rate(test, 0.2), ".2f")]
        out.append("| " + " | ".join(cells) + f" | {best} |")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("before", type=Path)
    p.add_argument("after", type=Path)
    p.add_argument("--sets", nargs="+", required=True)
    p.add_argument("--codecs", nargs="+", default=["webp", "avif"])
    args = p.parse_args()
    head = ["vs bicubic", "BD-PSNR vs bicubic", "vs no-ref", "vs AVIF < 0.2 bpp", "vs best", "PSNR@0.2"]
    print("| set | codec | " + " | ".join(f"before: {h}" for h in head) + " | "
          + " | ".join(f"after: {h}" for h in head) + " | best full-res |")
    print("|" + "---|" * (3 + 2 * len(head)))
    for name in args.sets:
        print("\n".join(rows(curves(args.before / name / "rd.json"), curves(args.after / name / "rd.json"),
                             name, args.codecs)))


if __name__ == "__main__":
    main()
