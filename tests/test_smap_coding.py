"""The stored S_map's lossless coder (`io.smap_coding`): exact round trips, smaller than PNG on real
maps, PNG kept where it is smaller, and clear errors for bytes that are not a map."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import load_pair

from refscale_model import load_model
from refscale_model.io.images import encode_smap_png
from refscale_model.io.smap_coding import (
    PNG_FORMAT,
    SMAP_FORMAT,
    SmapCodingError,
    decode_coded,
    decode_smap,
    encode_coded,
    encode_smap,
)
from refscale_model.pipeline.smap_smoothing import SmapStorage


def _maps(seed: int = 0):
    """Random, smooth and flat maps of awkward sizes and alphabets (1..16 levels, up to 255)."""
    rng = np.random.default_rng(seed)
    for trial in range(300):
        h, w = (int(v) for v in rng.integers(1, 40, 2))
        k = int(rng.integers(1, 17))
        kind = trial % 4
        if kind == 0:
            m = rng.integers(0, k, (h, w))
        elif kind == 1:
            m = np.cumsum(rng.integers(-1, 2, (h, w)), axis=1) % k
        elif kind == 2:
            m = np.full((h, w), k - 1)
        else:
            m = rng.integers(0, 256, (h, w))
        yield m.astype(np.uint8)


def test_every_map_round_trips_exactly() -> None:
    for levels in _maps():
        data = encode_coded(levels)
        np.testing.assert_array_equal(decode_coded(data), levels)
        fmt_name, stored = encode_smap(levels)
        np.testing.assert_array_equal(decode_smap(stored, fmt_name), levels)
        assert len(stored) == min(len(data), len(encode_smap_png(levels)))


def test_large_map_round_trips() -> None:
    """A 4K frame's stored map (135×240 at 16 px per value)."""
    rng = np.random.default_rng(1)
    base = (np.add.outer(np.arange(135), np.arange(240)) // 20 % 12).astype(np.uint8)
    levels = np.clip(base + (rng.random(base.shape) < 0.1), 0, 15).astype(np.uint8)
    data = encode_coded(levels)
    np.testing.assert_array_equal(decode_coded(data), levels)
    assert len(data) < 0.7 * len(encode_smap_png(levels))


def test_real_map_is_coded_in_fewer_bytes_than_png(shared_data) -> None:
    """A real revisit's stored map (webcam pair, x2, the recorder's median and 2×2 storage)."""
    target, ref = load_pair("webcam_tilde", 0)
    as_tensor = lambda img: torch.from_numpy(img).permute(2, 0, 1)[None]  # noqa: E731
    with torch.no_grad():
        levels = load_model("x2").downscale(as_tensor(target), as_tensor(ref)).smap[0, 0].numpy()
    assert levels.any(), "the revisit must pass the gate for this test to mean anything"
    storage = SmapStorage()
    stored = storage.stored(storage.condition(levels))
    fmt_name, data = encode_smap(stored)
    assert fmt_name == SMAP_FORMAT and len(data) < 0.85 * len(encode_smap_png(stored))
    np.testing.assert_array_equal(decode_smap(data, fmt_name), stored)


def test_tiny_maps_cost_a_few_bytes() -> None:
    """A satellite tile's 4×4 map: PNG spends ~85 B on 16 levels, the coded form ~10."""
    levels = np.array([[9, 10, 12, 13], [10, 11, 12, 13], [11, 12, 12, 13], [12, 12, 13, 14]], np.uint8)
    assert len(encode_smap_png(levels)) > 60
    fmt_name, data = encode_smap(levels)
    assert fmt_name == SMAP_FORMAT and len(data) <= 16


def test_png_maps_of_older_bags_still_decode() -> None:
    levels = np.arange(24, dtype=np.uint8).reshape(4, 6) % 5
    np.testing.assert_array_equal(decode_smap(encode_smap_png(levels), PNG_FORMAT), levels)


def test_bad_input_gets_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unsupported S_map format"):
        decode_smap(b"\x01\x02", "jpeg")
    for bad in (b"", b"\x07\x04\x04\x10", b"\x01", b"\x01\x04", b"\x01\x04\x04", b"\x01\x00\x04\x0f",
                b"\x01\x80\x80\x80\x80\x01"):
        with pytest.raises(SmapCodingError):
            decode_coded(bad)
    with pytest.raises(ValueError, match="grey uint8"):
        encode_coded(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="grey uint8"):
        encode_coded(np.zeros((0, 4), np.uint8))
    huge = bytes([1]) + b"\xff\xff\x03" + b"\xff\xff\x03" + b"\x0f"  # 65535×65535 cells: refused at once
    with pytest.raises(SmapCodingError, match="impossible size"):
        decode_coded(huge)
