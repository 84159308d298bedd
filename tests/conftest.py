"""Shared test fixtures: real revisit pairs from ../shared/data (read-only, never copied)."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO_ROOT / ".." / "shared" / "data").resolve()

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


def read_rgb(path: Path) -> np.ndarray:
    """Read an image file as RGB uint8 H×W×3."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(path)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def load_pair(set_name: str, index: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Return (target, reference) RGB uint8 arrays of row `index` of a set's pairs.csv."""
    set_dir = SHARED_DATA / set_name
    with open(set_dir / "pairs.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    row = rows[index]
    return read_rgb(set_dir / row["target"]), read_rgb(set_dir / row["reference"])


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (expected beside the checkout)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def webcam_pair(shared_data: Path) -> tuple[np.ndarray, np.ndarray]:
    """A real, nearly pixel-aligned revisit pair (static webcam, other season/time)."""
    return load_pair("webcam_tilde", 0)
