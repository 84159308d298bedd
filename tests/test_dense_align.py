"""Decoder-side dense alignment of the reference (`refine_flow`): it aligns, it stays offboard."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
import torch

from refscale_model.config import RefScaleConfig
from refscale_model.layers.dense_align import align_by_flow
from refscale_model.models.refscale import RefScale


def _texture(seed: int, size: tuple[int, int] = (96, 128)) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.random((*size, 3)).astype(np.float32), (0, 0), 2)
    img = (img - img.min()) / (img.max() - img.min())
    return torch.from_numpy(img).permute(2, 0, 1)[None].contiguous()


def test_flow_undoes_a_local_shift_a_homography_would_miss() -> None:
    """Two halves moved in opposite directions (parallax): the aligned reference matches the frame."""
    frame = _texture(0)
    ref = frame.clone()
    ref[..., :, :64] = torch.roll(frame[..., :, :64], shifts=(2, 3), dims=(2, 3))
    ref[..., :, 64:] = torch.roll(frame[..., :, 64:], shifts=(-2, -2), dims=(2, 3))
    aligned = align_by_flow(ref, frame)
    inner = (slice(None), slice(None), slice(10, -10), slice(10, -10))
    before = (ref - frame)[inner].abs().mean().item()
    after = (aligned - frame)[inner].abs().mean().item()
    assert aligned.shape == ref.shape and aligned.dtype == ref.dtype
    assert after < 0.3 * before


def test_align_by_flow_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        align_by_flow(_texture(0), _texture(1, (64, 64)))


def test_refine_flow_needs_an_hr_refiner() -> None:
    with pytest.raises(ValueError, match="refine_flow"):
        dataclasses.replace(RefScaleConfig.preset("x2"), refine_flow=True)
    assert not dataclasses.replace(RefScaleConfig.preset("x2-lossy"), refine_flow=True).fallback_config().refine_flow


def test_refine_flow_changes_only_the_offboard_rebuild() -> None:
    """Same weights with and without the flag: identical LR and S_map; the rebuild sees the aligned reference."""
    torch.manual_seed(3)
    cfg = dataclasses.replace(RefScaleConfig.preset("x2-lossy"), refine_flow=False)
    plain = RefScale(cfg).eval()
    with torch.no_grad():
        for p in plain.hr_refine.parameters():
            p.add_(0.05 * torch.randn_like(p))
    flowed = RefScale(dataclasses.replace(cfg, refine_flow=True)).eval()
    flowed.load_state_dict(plain.state_dict())
    hr = _texture(4, (64, 64))
    ref = torch.roll(hr, shifts=(1, 2), dims=(2, 3))
    a, b = plain.downscale(hr, ref), flowed.downscale(hr, ref)
    assert torch.equal(a.lr, b.lr) and torch.equal(a.smap, b.smap)
    assert not torch.equal(plain.upscale(a.lr, a.smap, ref, a.size), flowed.upscale(b.lr, b.smap, ref, b.size))
    assert torch.equal(plain.upscale(a.lr, None, None, a.size), flowed.upscale(b.lr, None, None, b.size))
