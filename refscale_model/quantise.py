"""Quantisation of what is stored: the LR image (8-bit) and the similarity map (few integer levels)."""

from __future__ import annotations

import torch
from torch import Tensor


def quantise_lr(lr: Tensor) -> Tensor:
    """Round to the 8-bit grid in [0, 1]; straight-through gradient so training sees the rounding."""
    lr = lr.clamp(0.0, 1.0)
    rounded = torch.round(lr * 255.0) / 255.0
    return lr + (rounded - lr).detach()


def lr_to_uint8(lr: Tensor) -> Tensor:
    return torch.round(lr.clamp(0.0, 1.0) * 255.0).to(torch.uint8)


def lr_from_uint8(lr: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    return lr.to(dtype) / 255.0


def quantise_smap(smap: Tensor, levels: int, training: bool) -> Tensor:
    """S_map in [0,1] -> integer levels 0..levels-1 (as float).

    Training adds U(-0.5, 0.5) noise instead of rounding (paper §3.3) so gradients flow.
    """
    scaled = smap * (levels - 1)
    if training:
        return scaled + torch.rand_like(scaled) - 0.5
    return torch.round(scaled)


def smap_to_uint8(levels_float: Tensor) -> Tensor:
    return levels_float.round().clamp(0, 255).to(torch.uint8)


def smap_from_levels(levels_tensor: Tensor, levels: int, dtype: torch.dtype = torch.float32) -> Tensor:
    return levels_tensor.to(dtype) / (levels - 1)
