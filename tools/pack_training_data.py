"""Pack the *training* split of `../shared/data` into a git-ignored folder a lent GPU can carry.

A device run takes at most 64 MiB along, and `../shared` does not travel. This writes, per set, the
training images only (validation places are left out, so the split cannot leak), downsized to the
side the training loader uses anyway and re-encoded as JPEG q95 with full-resolution chroma, plus a
`pairs.csv` that names every row (validation rows point at files that are not there and are never
read, because `data.split_pairs` computes the same split from the same rows).

The folder is never committed (licences forbid redistribution); it is deleted by `make clean`.

    python tools/pack_training_data.py --out .train-data
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from refscale_model.data import default_data_root, read_rgb, split_pairs  # noqa: E402

MAX_SIDE = 1280
"""The training loader's own cap (`RevisitDataset(max_side=1280)`): nothing larger is ever used."""


def pack(source: Path, out: Path, quality: int) -> int:
    total = 0
    for set_dir in sorted(p for p in source.iterdir() if (p / "pairs.csv").is_file()):
        train_rows, _ = split_pairs(set_dir)
        needed = {row.target for row in train_rows} | {row.reference for row in train_rows}
        dest = out / set_dir.name
        for path in sorted(needed):
            image = read_rgb(path)
            scale = MAX_SIDE / max(image.shape[:2])
            if scale < 1:
                image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            target = (dest / path.relative_to(set_dir)).with_suffix(".jpg")
            target.parent.mkdir(parents=True, exist_ok=True)
            params = [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
                      cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]
            if not cv2.imwrite(str(target), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), params):
                raise OSError(f"cannot write {target}")
            total += target.stat().st_size
        with open(set_dir / "pairs.csv", newline="") as src, open(dest / "pairs.csv", "w", newline="") as dst:
            rows = list(csv.DictReader(src))
            writer = csv.DictWriter(dst, fieldnames=["target", "reference", "note"])
            writer.writeheader()
            for row in rows:
                writer.writerow({"target": str(Path(row["target"]).with_suffix(".jpg")),
                                 "reference": str(Path(row["reference"]).with_suffix(".jpg")),
                                 "note": row.get("note", "")})
        print(f"{set_dir.name}: {len(needed)} images", flush=True)
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=default_data_root())
    parser.add_argument("--out", type=Path, default=Path(".train-data"))
    parser.add_argument("--quality", type=int, default=95)
    args = parser.parse_args()
    total = pack(args.source, args.out, args.quality)
    print(f"{total / 2**20:.1f} MiB of training images in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
