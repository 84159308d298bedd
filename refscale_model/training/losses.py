"""Training objectives (paper eqs. 5, 12–14): HR L1, similarity-weighted LR guidance, z distribution."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from refscale_model.layers import expand_similarity
from refscale_model.models.refscale import RefScale
from refscale_model.quantise import quantise_lr
from refscale_model.training.codec_loop import CodecDraw, codec_straight_through


@dataclass
class LossTerms:
    total: Tensor
    hr: Tensor
    lr: Tensor
    distr: Tensor

    def as_floats(self) -> dict[str, float]:
        return {k: float(getattr(self, k).detach()) for k in ("total", "hr", "lr", "distr")}


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur with reflect padding (kernel radius 3σ)."""
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    c = x.shape[1]
    x = nn.functional.pad(x, (radius, radius, radius, radius), mode="reflect")
    x = nn.functional.conv2d(x, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return nn.functional.conv2d(x, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def bicubic_down(hr: Tensor, scale: int) -> Tensor:
    """Anti-aliased bicubic downscaling, the detail-keeping guide and the bicubic baseline."""
    h, w = hr.shape[-2] // scale, hr.shape[-1] // scale
    return nn.functional.interpolate(hr, size=(h, w), mode="bicubic", antialias=True, align_corners=False).clamp(
        0, 1
    )


def lr_guidance_targets(hr: Tensor, scale: int, blur_sigma: float) -> tuple[Tensor, Tensor]:
    """(bicubic LR, Gaussian-blurred bicubic LR): the guides for dissimilar / similar regions."""
    bic = bicubic_down(hr, scale)
    return bic, gaussian_blur(bic, blur_sigma)


def total_variation(x: Tensor) -> Tensor:
    """Mean absolute difference between vertical and horizontal neighbours."""
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()


def compute_losses(
    model: RefScale,
    hr: Tensor,
    ref: Tensor | None,
    keep: Tensor | None = None,
    sample_z: bool = False,
    codec_draws: Sequence[CodecDraw] | None = None,
) -> LossTerms:
    """All loss terms for one batch of same-size, already padded HR/reference crops.

    The HR term rebuilds from the *quantised* LR (what is stored) with z = 0 or z ~ N(0, 1)
    (`sample_z`). S_map is not detached in the LR guidance (eq. 5 as written): where the INN keeps
    detail in the LR because the reference cannot supply it, the LR is nearer the bicubic target and
    the guidance pulls S down there; the HR term pulls S up where the reference helps.

    `codec_draws` (one per sample): the stored LR goes through that real lossy codec before the decoder
    side (straight-through gradient), so the HR term scores what a fleet's decoder actually rebuilds.
    """
    cfg = model.config
    cond = model.condition(hr, ref, keep)
    lr, z = model.forward_flow(hr, cond)
    bic, blur = lr_guidance_targets(hr, cfg.scale, cfg.blur_sigma)
    # Every term is a sum normalised by the number of HR values (IRN's normalisation, for which the
    # paper's weights 1/4/1 and 1/16/1 were chosen); a per-element mean would over-weight LR and z by s².
    n_hr = hr.numel()
    if cond.smap is None:
        loss_lr = ((bic - lr) ** 2).sum() / n_hr
    else:
        s = expand_similarity(cond.smap, lr.shape[-2:], cfg.smap_upsampling(cfg.scale))
        loss_lr = (((bic - lr) ** 2) * (1 - s) + ((blur - lr) ** 2) * s).sum() / n_hr
    loss_distr = (z**2).sum() / n_hr
    z_in = torch.randn_like(z) if sample_z else torch.zeros_like(z)
    lr_stored = quantise_lr(lr)
    if codec_draws is not None:
        lr_stored = codec_straight_through(lr_stored, codec_draws)
    if cfg.has_decoder:
        hr_hat = model.decode_padded(lr_stored, z_in, cond, ref if cond.smap is not None else None)
    else:
        hr_hat = model.inverse_flow(lr_stored, z_in, cond)
    loss_hr = (hr - hr_hat).abs().sum() / n_hr
    total = cfg.lambda_hr * loss_hr + cfg.lambda_lr * loss_lr + cfg.lambda_distr * loss_distr
    if cond.smap is not None and cfg.lambda_smap_tv > 0:
        total = total + cfg.lambda_smap_tv * total_variation(cond.smap)
    return LossTerms(total=total, hr=loss_hr, lr=loss_lr, distr=loss_distr)
