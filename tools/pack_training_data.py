"""Pack the *training* split of `../shared/data` into a git-ignored folder a lent GPU can carry.

A device run takes at most 64 MiB along, and `../shared` does not travel. This writes, per set, the
training images only (validation places are left out, so the split cannot leak), downsized to the
side the training loader uses anyway and re-encoded as JPEG q95 with full-resolution chroma, plus a
`pairs.csv` that names every row (validation rows point at files that are not there and are never
read, because `data.split_pairs` computes the same split from the same rows).

It also copies one 1080p revisit pair (as published) into `.bench-data/nordland_1080p` for the GPU
speed benchmark that `tools/device_train.sh` runs after training. Neither folder is ever committed
(licences forbid redistribution); `make clean` deletes both.

    python tools/pack_training_data.py --out .train-data --bench-out .bench-data
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from refscale_model.training.data import default_data_root, read_training_image, split_pairs  # noqa: E402


def pack(source: Path, out: Path, quality: int) -> int:
    total = 0
    for set_dir in sorted(p for p in source.iterdir() if (p / "pairs.csv").is_file()):
        train_rows, _ = split_pairs(set_dir)
        needed = {row.target for row in train_rows} | {row.reference for row in train_rows}
        dest = out / set_dir.name
        for path in sorted(needed):
            image = read_training_image(path)  # the loader's own cap: nothing larger is ever used
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


def pack_bench_pair(source: Path, out: Path) -> Path:
    """The first row of rail_nordland_1080p, unchanged, with a one-row pairs.csv."""
    set_dir = source / "rail_nordland_1080p"
    with open(set_dir / "pairs.csv", newline="") as fh:
        row = next(iter(csv.DictReader(fh)))
    dest = out / "nordland_1080p"
    for key in ("target", "reference"):
        (dest / row[key]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(set_dir / row[key], dest / row[key])
    with open(dest / "pairs.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["target", "reference", "note"])
        writer.writeheader()
        writer.writerow({"target": row["target"], "reference": row["reference"], "note": row.get("note", "")})
    return dest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=default_data_root())
    parser.add_argument("--out", type=Path, default=Path(".train-data"))
    parser.add_argument("--quality", type=int, default=95)
    parser.add_argument("--bench-out", type=Path, default=Path(".bench-data"))
    args = parser.parse_args()
    total = pack(args.source, args.out, args.quality)
    print(f"{total / 2**20:.1f} MiB of training images in {args.out}")
    print(f"benchmark pair in {pack_bench_pair(args.source, args.bench_out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
