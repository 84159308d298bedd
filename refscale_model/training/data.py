"""Real revisit pairs from `../shared/data`, the train/validation split, and training crops.

Split (stated in every model card): pairs are grouped by *place* (webcam camera, SpaceNet tile,
Nordland frame block of 10, satellite tile, walking place, RobotCar query); the sorted places of
each set are numbered and every 5th (index % 5 == 4) is validation — for sets with fewer than 5
places, the last place. Validation places never appear in training, in either direction.
"""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from refscale_model.training.capture import capture_jitter
from refscale_model.training.synthetic import SyntheticRevisit

TIME_SERIES_SETS = ("webcam_tilde", "satellite_spacenet7_monthly")


@dataclass(frozen=True)
class PairRow:
    set_name: str
    target: Path
    reference: Path
    place: str


def default_data_root() -> Path:
    """`../shared/data` beside the checkout (the only place real images are read from)."""
    return (Path(__file__).resolve().parents[2] / ".." / "shared" / "data").resolve()


def place_of(set_name: str, target: str) -> str:
    parts = Path(target).parts
    if set_name in ("webcam_tilde", "satellite_spacenet7_monthly"):
        return parts[0]
    if set_name == "rail_nordland_640":
        number = int(re.findall(r"\d+", Path(target).stem)[-1])
        return f"block{number // 10:04d}"
    if set_name == "walk_gardenspoint_sfu":
        return Path(target).stem.split("_")[0]
    return Path(target).stem


def read_pairs(set_dir: Path) -> list[PairRow]:
    with open(set_dir / "pairs.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [
        PairRow(set_dir.name, set_dir / r["target"], set_dir / r["reference"], place_of(set_dir.name, r["target"]))
        for r in rows
    ]


def validation_places(rows: list[PairRow]) -> set[str]:
    places = sorted({r.place for r in rows})
    if len(places) < 5:
        return {places[-1]}
    return {p for i, p in enumerate(places) if i % 5 == 4}


def split_pairs(set_dir: Path) -> tuple[list[PairRow], list[PairRow]]:
    """(train, validation) rows of one set, split by place."""
    rows = read_pairs(set_dir)
    val = validation_places(rows)
    return [r for r in rows if r.place not in val], [r for r in rows if r.place in val]


def write_split_csv(rows: list[PairRow], set_dir: Path, out: Path) -> Path:
    """A pairs.csv (paths relative to the set) for `refscale eval --pairs`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["target", "reference", "note"])
        for r in rows:
            writer.writerow([r.target.relative_to(set_dir), r.reference.relative_to(set_dir), f"place {r.place}"])
    return out


def read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f"cannot read image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


TRAIN_MAX_SIDE = 1280
"""Training never sees more than this many pixels on an image's long side (crops stay varied, memory small)."""


def read_training_image(path: Path, max_side: int = TRAIN_MAX_SIDE) -> np.ndarray:
    """RGB image area-downsized so its long side is at most `max_side` (never upsized)."""
    image = read_rgb(path)
    scale = max_side / max(image.shape[:2])
    if scale < 1:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return image


class RevisitDataset:
    """In-memory training pairs: real revisits (both directions, any two dates of a time series).

    `sample(rng, crop)` draws one (target, reference, kind) crop pair, kind ∈ {"real",
    "synthetic", "shuffled"}; identical crop window, flips and rotations for both images.
    """

    def __init__(
        self,
        root: Path,
        sets: list[str] | None = None,
        synthetic_share: float = 0.3,
        shuffled_share: float = 0.1,
        max_side: int = TRAIN_MAX_SIDE,
        capture_share: float = 0.0,
    ) -> None:
        self.images: list[np.ndarray] = []
        self.pairs: list[tuple[int, int]] = []
        index: dict[Path, int] = {}
        set_dirs = sorted(p for p in root.iterdir() if (p / "pairs.csv").is_file())
        if sets:
            set_dirs = [p for p in set_dirs if p.name in sets]
        by_place: dict[tuple[str, str], set[int]] = defaultdict(set)
        for set_dir in set_dirs:
            train_rows, _ = split_pairs(set_dir)
            for row in train_rows:
                a = self._load(row.target, index, max_side)
                b = self._load(row.reference, index, max_side)
                if set_dir.name in TIME_SERIES_SETS:
                    by_place[(set_dir.name, row.place)].update((a, b))
                else:
                    self.pairs += [(a, b), (b, a)]
        for members in by_place.values():
            ids = sorted(members)
            self.pairs += [(i, j) for i in ids for j in ids if i != j]
        if not self.pairs:
            raise ValueError(f"no training pairs found under {root}")
        self.synthetic = SyntheticRevisit()
        self.synthetic_share = synthetic_share
        self.shuffled_share = shuffled_share
        self.capture_share = capture_share
        """Share of samples whose target and reference get one capture condition (`capture.py`)."""

    def _load(self, path: Path, index: dict[Path, int], max_side: int) -> int:
        if path not in index:
            index[path] = len(self.images)
            self.images.append(read_training_image(path, max_side))
        return index[path]

    def sample(self, rng: np.random.Generator, crop: int) -> tuple[np.ndarray, np.ndarray, str]:
        u = rng.random()
        i, j = self.pairs[rng.integers(len(self.pairs))]
        target = self.images[i]
        if u < self.synthetic_share:
            margin = crop // 4
            big = random_crop(target, crop + 2 * margin, rng)
            ref = self.synthetic(big, rng)
            t, r = big[margin:-margin, margin:-margin], ref[margin:-margin, margin:-margin]
            kind = "synthetic"
        else:
            if u < self.synthetic_share + self.shuffled_share:
                reference = self.images[rng.integers(len(self.images))]
                kind = "shuffled"
            else:
                reference = self.images[j]
                kind = "real"
            if reference.shape != target.shape:
                reference = cv2.resize(reference, (target.shape[1], target.shape[0]), interpolation=cv2.INTER_AREA)
            t, r = random_crop_pair(target, reference, crop, rng)
        t, r = same_flip_rotate(t, r, rng)
        if self.capture_share and rng.random() < self.capture_share:
            t, r = capture_jitter((t, r), rng)
        return np.ascontiguousarray(t), np.ascontiguousarray(r), kind


def _pad_to(image: np.ndarray, size: int) -> np.ndarray:
    h, w = image.shape[:2]
    if h >= size and w >= size:
        return image
    return cv2.copyMakeBorder(image, 0, max(0, size - h), 0, max(0, size - w), cv2.BORDER_REFLECT_101)


def random_crop(image: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    image = _pad_to(image, size)
    y = rng.integers(image.shape[0] - size + 1)
    x = rng.integers(image.shape[1] - size + 1)
    return image[y : y + size, x : x + size]


def random_crop_pair(
    a: np.ndarray, b: np.ndarray, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    a, b = _pad_to(a, size), _pad_to(b, size)
    y = rng.integers(a.shape[0] - size + 1)
    x = rng.integers(a.shape[1] - size + 1)
    return a[y : y + size, x : x + size], b[y : y + size, x : x + size]


def same_flip_rotate(a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    k = int(rng.integers(4))
    flip = bool(rng.integers(2))
    a, b = np.rot90(a, k), np.rot90(b, k)
    if flip:
        a, b = a[:, ::-1], b[:, ::-1]
    return a, b
