"""Metrics against known values and real encoded byte counts."""

from __future__ import annotations

import math

import numpy as np

from refscale_model.io.images import decode_png, encode_png, encode_smap_png
from refscale_model.io.smap_coding import encode_smap
from refscale_model.metrics import frame_bytes, psnr, psnr_y, spatial_information, ssim


def test_psnr_of_known_mse() -> None:
    a = np.full((8, 8, 3), 0.5)
    b = a + 0.01  # MSE 1e-4 -> 40 dB
    assert math.isclose(psnr(a, b), 40.0, abs_tol=1e-9)
    assert psnr(a, a) == float("inf")
    u8 = np.full((4, 4, 3), 100, np.uint8)
    assert math.isclose(psnr(u8, u8 + 1), 20 * math.log10(255), abs_tol=1e-9)
    assert psnr_y(a, b) > 40.0  # luma scale 219/255 < 1


def test_ssim_identical_and_degraded() -> None:
    rng = np.random.default_rng(0)
    img = rng.random((64, 64, 3))
    assert math.isclose(ssim(img, img), 1.0, abs_tol=1e-9)
    noisy = np.clip(img + rng.normal(0, 0.3, img.shape), 0, 1)
    assert ssim(img, noisy) < 0.9


def test_spatial_information_flat_is_zero_and_edges_are_not() -> None:
    assert spatial_information(np.full((16, 16, 3), 0.4)) == 0.0
    step = np.zeros((16, 16, 3))
    step[:, 8:] = 1.0
    # Sobel of a unit step is 4 on the two columns beside the edge, 0 elsewhere: mean = 2*16*4/256
    assert math.isclose(spatial_information(step), 0.5, abs_tol=1e-9)


def test_bytes_come_from_real_bitstreams() -> None:
    """LR bytes are its PNG's, S_map bytes those of the form the bag stores (`io.smap_coding`)."""
    rng = np.random.default_rng(0)
    lr = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
    smap = np.zeros((16, 24), np.uint8)
    fb = frame_bytes(lr, smap, (64, 96))
    assert fb.lr_bytes == len(encode_png(lr)) and fb.smap_bytes == len(encode_smap(smap)[1])
    assert fb.smap_bytes < len(encode_smap_png(smap))
    assert fb.bytes_per_frame == fb.lr_bytes + fb.smap_bytes
    assert math.isclose(fb.bpp_lr, 8 * fb.bytes_per_frame / (32 * 48))
    assert math.isclose(fb.bpp_hr, 8 * fb.bytes_per_frame / (64 * 96))
    assert fb.bpp_lr > 8  # random noise does not compress
    assert np.array_equal(decode_png(encode_png(lr)), lr)
    assert np.array_equal(decode_png(encode_png(smap)), smap)
    levels = rng.integers(0, 16, (45, 80), dtype=np.uint8)
    assert np.array_equal(decode_png(encode_smap_png(levels)), levels)  # an ordinary grey PNG
    assert len(encode_smap_png(levels)) < len(encode_png(levels))  # Huffman-only pays on few levels
