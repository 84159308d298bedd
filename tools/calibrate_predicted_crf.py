"""How many crf steps coarser x265 codes a P-frame after the reference's picture than an IDR, on training pairs.

`codecs.reference_predicted` codes a predicted LR at `crf - PREDICTED_CRF_OFFSET` so that one crf setting means
about the same LR quality whether a frame is coded intra or predicted. This prints, per crf and offset, how far the
P-frame's LR PSNR lies from the IDR's (mean and median over the pairs); the shipped offset is where that crosses 0.
Training pairs only (the `split` column), a bicubic-like LR (area average), the LR at most 640×360.

    python tools/calibrate_predicted_crf.py [--data ../shared/data] [--per-set 4]
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from refscale_model.codecs import reference_predicted as rp  # noqa: E402
from refscale_model.metrics import uint8_psnr  # noqa: E402
from refscale_model.training.data import read_rgb  # noqa: E402

SETS = ("webcam_tilde", "walk_gardenspoint_sfu", "rail_nordland_1080p", "satellite_levir_cd")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--per-set", type=int, default=4)
    ap.add_argument("--crf", type=int, nargs="+", default=[28, 36])
    ap.add_argument("--offsets", type=int, nargs="+", default=[4, 6, 8, 9, 10])
    args = ap.parse_args()
    gaps: dict[tuple[int, int], list[float]] = defaultdict(list)
    for name in SETS:
        pairs = args.data / name / "pairs.csv"
        if not pairs.exists():
            continue
        with open(pairs, newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if r.get("split", "train") == "train"][: args.per_set]
        for row in rows:
            target, ref = read_rgb(args.data / name / row["target"]), read_rgb(args.data / name / row["reference"])
            if ref.shape != target.shape:
                ref = cv2.resize(ref, (target.shape[1], target.shape[0]), interpolation=cv2.INTER_AREA)
            h, w = min(target.shape[0], 720) // 2 * 2, min(target.shape[1], 1280) // 2 * 2
            lr = cv2.resize(target[:h, :w], (w // 2, h // 2), interpolation=cv2.INTER_AREA)
            picture = rp.reference_lr(ref[:h, :w], lr.shape[:2], 2)
            for crf in args.crf:
                intra = rp.code_frame(lr, None, crf)
                for offset in args.offsets:
                    hidden, p_frame = rp._code([picture, lr], max(0, crf - offset), hidden_first=True)
                    decoded = rp._decode_units([hidden, p_frame], lr.shape[:2])
                    gaps[(crf, offset)].append(uint8_psnr(lr, decoded) - uint8_psnr(lr, intra.decoded))
            print(f"{name}/{row['target']}", flush=True)
    print("| crf | offset | P-frame minus IDR LR PSNR, mean (dB) | median (dB) | pairs |")
    print("|---|---|---|---|---|")
    for (crf, offset), v in sorted(gaps.items()):
        print(f"| {crf} | {offset} | {np.mean(v):+.2f} | {np.median(v):+.2f} | {len(v)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
