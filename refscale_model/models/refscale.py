"""`RefScale`: Ref-Net + conditional INN, with the downscale (onboard) and upscale (offboard) halves."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from refscale_model.config import RefScaleConfig
from refscale_model.layers import FlowBlock, HaarSqueeze, RefEncoder, expand_similarity, similarity_map
from refscale_model.layers.dense_align import align_by_flow
from refscale_model.models.decoder import HRRefiner, LRRestorer
from refscale_model.models.decoder_blend import DecoderBlend, per_sample
from refscale_model.quantise import (
    lr_from_uint8,
    lr_to_uint8,
    quantise_smap,
    smap_from_levels,
    smap_to_uint8,
)

LR_CHANNELS = 3


@dataclass
class Encoded:
    """What the car stores per frame: the 8-bit LR image, the quantised S_map and the original size."""

    lr: Tensor
    """uint8 B×3×h×w (h, w: the padded frame size divided by the scale)."""
    smap: Tensor | None
    """uint8 B×1×hs×ws with values 0..smap_levels-1; None in no-reference mode."""
    size: tuple[int, int]
    """(H, W) of the original frame, to crop the reconstruction back."""


@dataclass
class Condition:
    """The referencing condition per INN stage plus the (dequantised) similarity map behind it."""

    per_stage: list[Tensor | None]
    smap: Tensor | None
    """S_map in [0, 1] at the stored grid (float), or None without reference."""


def _as_float_image(x: Tensor) -> Tensor:
    if x.dtype == torch.uint8:
        return x.float() / 255.0
    if not x.is_floating_point():
        raise TypeError(f"expected a float or uint8 image tensor, got {x.dtype}")
    return x


class RefScale(nn.Module):
    """Reference-based invertible rescaling (paper §3)."""

    def __init__(self, config: RefScaleConfig | None = None) -> None:
        super().__init__()
        self.config = config or RefScaleConfig()
        cfg = self.config
        cond_ch = cfg.encoder_channels if cfg.use_reference else 0
        self.encoder = RefEncoder(cfg.encoder_channels, cfg.smap_factor) if cfg.use_reference else None
        self.squeezes = nn.ModuleList()
        self.stages = nn.ModuleList()
        self.cond_down = nn.ModuleList()
        channels = LR_CHANNELS
        for stage, n_blocks in enumerate(cfg.blocks):
            self.squeezes.append(HaarSqueeze(channels))
            channels *= 4
            self.stages.append(
                nn.ModuleList(
                    FlowBlock(channels, LR_CHANNELS, cond_ch, cfg.hidden, cfg.clamp, transform_first=i % 2 == 0)
                    for i in range(n_blocks)
                )
            )
            if stage > 0 and cfg.use_reference:
                self.cond_down.append(nn.Conv2d(cond_ch, cond_ch, 3, stride=2, padding=1))
        self.z_channels = channels - LR_CHANNELS
        # decoder side (offboard only; absent by default, so lossless models keep their exact state dict)
        self.lr_restore = (
            LRRestorer(cfg.lr_restore_hidden, cfg.decoder_layers, cfg.scale, cfg.use_reference, cfg.decoder_blocks)
            if cfg.lr_restore_hidden else None
        )
        self.hr_refine = (
            HRRefiner(cfg.hr_refine_hidden, cfg.decoder_layers, cfg.use_reference, cfg.decoder_blocks)
            if cfg.hr_refine_hidden else None
        )
        self.fallback: RefScale | None = RefScale(cfg.fallback_config()) if cfg.noref_fallback else None
        """The no-reference INN for frames without a usable reference (`RefScaleConfig.noref_fallback`)."""
        self.weights_sha256: str | None = None
        """sha256 of the safetensors file the weights came from (None: not loaded from a file)."""
        self.decoder_blend: DecoderBlend | None = None
        """How much decoder-side correction a rebuild takes per LR PSNR (`models.decoder_blend`; from the
        weights' sidecar). None: always all of it."""

    # ---------------------------------------------------------------- sizes and padding
    def padded_size(self, size: tuple[int, int]) -> tuple[int, int]:
        m = self.config.pad_multiple
        return (math.ceil(size[0] / m) * m, math.ceil(size[1] / m) * m)

    def pad(self, x: Tensor) -> Tensor:
        """Reflect-pad bottom/right to the network's multiple (crop back after upscaling)."""
        h, w = x.shape[-2:]
        ph, pw = self.padded_size((h, w))
        if (ph, pw) == (h, w):
            return x
        mode = "reflect" if ph - h < h and pw - w < w else "replicate"
        return nn.functional.pad(x, (0, pw - w, 0, ph - h), mode=mode)

    @staticmethod
    def _check_reference(hr: Tensor, ref: Tensor | None) -> None:
        if hr.dim() != 4 or hr.shape[1] != 3:
            raise ValueError(f"frames must be B×3×H×W, got {tuple(hr.shape)}")
        if ref is not None and tuple(ref.shape) != tuple(hr.shape):
            raise ValueError(
                f"reference shape {tuple(ref.shape)} does not match frame shape {tuple(hr.shape)}; "
                "register/resize the reference to the frame first"
            )

    # ---------------------------------------------------------------- condition (Ref-Net)
    def similarity(self, hr: Tensor, ref: Tensor, gate: float | None = None) -> Tensor:
        """S_map before quantisation (pooled cells, gated by `gate`, default the config's) of two
        float images whose sizes are whole S_map cells (padded frames)."""
        assert self.encoder is not None
        g_hr = self.encoder.bottleneck(self.encoder.features(hr))
        g_ref = self.encoder.bottleneck(self.encoder.features(ref))
        return similarity_map(g_hr, g_ref, self.config.smap_pool, self.config.smap_gate if gate is None else gate)

    def smap_levels_from_images(self, hr: Tensor, ref: Tensor) -> Tensor:
        """Quantised S_map levels (float) from padded HR and reference: what the car computes."""
        return quantise_smap(self.similarity(hr, ref), self.config.smap_levels, training=self.training)

    def condition_from_smap(self, ref: Tensor | None, smap: Tensor | None, like: Tensor) -> Condition:
        """F_c = F_ref ⊙ up(S_map) (eq. 4) per stage; zeros when there is no reference.

        Both ends call this with the same (reference, S_map), so the condition is identical.
        """
        if self.encoder is None:
            return Condition([None] * self.config.stages, None)
        b, _, h, w = like.shape
        if ref is None or smap is None:
            feat = like.new_zeros(b, self.config.encoder_channels, h // 2, w // 2)
            smap_out = None
        else:
            return self.condition_from_features(self.encoder.features(ref), smap)
        per_stage: list[Tensor | None] = [feat]
        for down in self.cond_down:
            per_stage.append(down(per_stage[-1]))
        return Condition(per_stage, smap_out)

    def condition_from_features(self, f_ref: Tensor, smap: Tensor) -> Condition:
        """`condition_from_smap` from the reference's Ref-Net features `encoder.features(ref)`
        (at HR/2), so a runtime can compute them once and reuse them (ONNX `feat` graph)."""
        weight = expand_similarity(smap, f_ref.shape[-2:], self.config.smap_upsampling(2))  # F is at HR/2
        per_stage: list[Tensor | None] = [f_ref * weight]
        for down in self.cond_down:
            per_stage.append(down(per_stage[-1]))
        return Condition(per_stage, smap)

    def condition(self, hr: Tensor, ref: Tensor | None, keep: Tensor | None = None) -> Condition:
        """The condition at the downscaling end (HR and reference both known).

        `keep` (B×1×1×1 of 0/1) zeroes S_map per sample: S_map = 0 is exactly the no-reference
        condition, which is how training teaches one network both modes.
        """
        if self.encoder is None or ref is None:
            return self.condition_from_smap(None, None, hr)
        levels = self.smap_levels_from_images(hr, ref)
        if keep is not None:
            levels = levels * keep
        return self.condition_from_smap(ref, smap_from_levels(levels, self.config.smap_levels, hr.dtype), hr)

    # ---------------------------------------------------------------- the invertible flow
    def forward_flow(self, hr: Tensor, cond: Condition) -> tuple[Tensor, Tensor]:
        """Exact float path HR -> (LR, z); no quantisation."""
        x = hr
        for squeeze, blocks, c in zip(self.squeezes, self.stages, cond.per_stage, strict=True):
            x = squeeze(x)
            for block in blocks:
                x = block(x, c)
        return x[:, :LR_CHANNELS], x[:, LR_CHANNELS:]

    def inverse_flow(self, lr: Tensor, z: Tensor, cond: Condition) -> Tensor:
        """Exact float path (LR, z) -> HR."""
        x = torch.cat((lr, z), dim=1)
        for squeeze, blocks, c in reversed(list(zip(self.squeezes, self.stages, cond.per_stage, strict=True))):
            for block in reversed(blocks):
                x = block.inverse(x, c)
            x = squeeze.inverse(x)
        return x

    def decode_padded(self, lr: Tensor, z: Tensor, cond: Condition, ref_p: Tensor | None,
                      alpha: list[float] | None = None) -> Tensor:
        """Decoder side on padded sizes: restore the (lossy-decoded) LR, invert, refine; float HR, unclamped.

        Without decoder networks this is exactly `inverse_flow`. The decoder networks see the reference
        only through S_map (`cond.smap`), so an unmatched region gets no reference detail. `alpha` (one
        per sample, `models.decoder_blend`) mixes the result with the bare inverse: 1 (or None) is the
        full decoder, 0 the inverse alone.
        """
        if alpha is None or min(alpha) >= 1.0:
            return self._decode_full(lr, z, cond, ref_p)
        bare = self.inverse_flow(lr, z, cond)
        if max(alpha) <= 0.0:
            return bare
        weight = torch.tensor(alpha, dtype=bare.dtype, device=bare.device).view(-1, 1, 1, 1)
        return bare + weight * (self._decode_full(lr, z, cond, ref_p) - bare)

    def _decode_full(self, lr: Tensor, z: Tensor, cond: Condition, ref_p: Tensor | None) -> Tensor:
        use_ref = ref_p is not None and cond.smap is not None
        if self.lr_restore is not None:
            s_lr = (expand_similarity(cond.smap, lr.shape[-2:], self.config.smap_upsampling(self.config.scale))
                    if use_ref else None)
            lr = self.lr_restore(lr, ref_p if use_ref else None, s_lr)
        hr = self.inverse_flow(lr, z, cond)
        if self.hr_refine is not None:
            half = (hr.shape[-2] // 2, hr.shape[-1] // 2)
            s_half = expand_similarity(cond.smap, half, self.config.smap_upsampling(2)) if use_ref else None
            ref_refine = ref_p if use_ref else None
            if ref_refine is not None and self.config.refine_flow:
                ref_refine = align_by_flow(ref_refine, hr)
            hr = self.hr_refine(hr, ref_refine, s_half)
        return hr

    def sample_z(self, lr: Tensor, z: str | int) -> Tensor:
        shape = (lr.shape[0], self.z_channels, lr.shape[2], lr.shape[3])
        if z == "zero":
            return lr.new_zeros(shape)
        if isinstance(z, int) and not isinstance(z, bool):
            gen = torch.Generator(device="cpu").manual_seed(z)
            return torch.randn(shape, generator=gen, dtype=lr.dtype).to(lr.device)
        raise ValueError(f"z must be 'zero' or an integer seed, got {z!r}")

    # ---------------------------------------------------------------- public halves
    @torch.no_grad()
    def downscale(
        self, hr: Tensor, ref: Tensor | None = None, choose_smap: Callable[[Tensor], Tensor] | None = None
    ) -> Encoded:
        """HR (B×3×H×W, float [0,1] or uint8) and an optional same-size reference -> `Encoded`.

        A frame whose S_map quantises to all zero is not stored with one (`codec.stored_smap`), so
        its LR comes from the no-reference path, as for a frame without reference. `choose_smap`
        may replace the computed uint8 B×1×hs×ws map by the one to condition on and store (a video
        GOP reusing its last map, `pipeline.smap_reuse`).
        """
        hr = _as_float_image(hr)
        self._check_reference(hr, ref)
        size = (hr.shape[-2], hr.shape[-1])
        hr_p = self.pad(hr)
        if self.encoder is None or ref is None:
            return Encoded(lr=lr_to_uint8(self.noref_lr(hr_p)), smap=None, size=size)
        ref_p = self.pad(_as_float_image(ref).to(hr.dtype))
        smap_u8 = smap_to_uint8(self.smap_levels_from_images(hr_p, ref_p))
        if choose_smap is not None:
            smap_u8 = choose_smap(smap_u8)
        empty = self.empty_smaps(smap_u8) if self.fallback is not None else None
        if empty is not None and bool(empty.all()):  # no referenced flow to run (a gated frame)
            return Encoded(lr=lr_to_uint8(self.noref_lr(hr_p)), smap=smap_u8, size=size)
        cond = self.condition_from_smap(ref_p, smap_from_levels(smap_u8, self.config.smap_levels, hr.dtype), hr_p)
        lr, _ = self.forward_flow(hr_p, cond)
        if empty is not None and bool(empty.any()):
            lr[empty] = self.noref_lr(hr_p[empty])
        return Encoded(lr=lr_to_uint8(lr), smap=smap_u8, size=size)

    @staticmethod
    def empty_smaps(smap: Tensor) -> Tensor:
        """Per sample (bool B): the map is all zero, i.e. stored as no map and rebuilt without reference."""
        return smap.flatten(1).amax(dim=1) == 0

    def noref_lr(self, hr_p: Tensor) -> Tensor:
        """Float LR of padded frames coded without reference (by the fallback INN when there is one)."""
        net = self.fallback or self
        lr, _ = net.forward_flow(hr_p, net.condition_from_smap(None, None, hr_p))
        return lr

    @torch.no_grad()
    def upscale(
        self,
        lr: Tensor,
        smap: Tensor | None,
        ref: Tensor | None,
        size: tuple[int, int],
        z: str | int = "zero",
        lr_psnr: float | Sequence[float | None] | None = None,
    ) -> Tensor:
        """Rebuild HR (float B×3×H×W in [0,1]) from the stored LR + S_map and the same reference.

        `lr_psnr`: the LR's PSNR after its codec (dB, per sample or one for all; +inf for a lossless LR),
        which sets how much decoder-side correction is taken (`decoder_blend`); None: all of it.
        """
        lr_f = lr_from_uint8(lr) if lr.dtype == torch.uint8 else lr
        s = self.config.scale
        padded = (lr_f.shape[-2] * s, lr_f.shape[-1] * s)
        if padded != self.padded_size(size):
            raise ValueError(f"LR {tuple(lr_f.shape[-2:])} does not match original size {size} at scale {s}")
        use_ref = self.encoder is not None and ref is not None and smap is not None
        if self.encoder is not None and (ref is None) != (smap is None):
            raise ValueError("upscale needs both the reference and the S_map, or neither")
        if self.fallback is not None and not use_ref:
            return self.fallback.upscale(lr, None, None, size, z, lr_psnr)
        if use_ref:
            ref_f = _as_float_image(ref).to(lr_f.dtype)
            if tuple(ref_f.shape[-2:]) != tuple(size) or ref_f.shape[0] != lr_f.shape[0]:
                raise ValueError(f"reference shape {tuple(ref_f.shape)} does not match frame size {size}")
            ref_p = self.pad(ref_f)
            expected = self.config.smap_grid(padded)
            if tuple(smap.shape[-2:]) != expected:
                raise ValueError(f"S_map grid {tuple(smap.shape[-2:])} does not match expected {expected}")
            if self.fallback is not None and bool(self.empty_smaps(smap).all()):  # see `downscale`
                return self.fallback.upscale(lr, None, None, size, z, lr_psnr)
            like = ref_p
            cond = self.condition_from_smap(
                ref_p, smap_from_levels(smap, self.config.smap_levels, lr_f.dtype), like
            )
        else:
            ref_p = None
            like = lr_f.new_zeros(lr_f.shape[0], 3, *padded)
            cond = self.condition_from_smap(None, None, like)
        if self.config.has_decoder:
            alpha = None if self.decoder_blend is None else self.decoder_blend.alphas(lr_psnr, lr_f.shape[0])
            hr = self.decode_padded(lr_f, self.sample_z(lr_f, z), cond, ref_p, alpha)
        else:
            hr = self.inverse_flow(lr_f, self.sample_z(lr_f, z), cond)
        hr = hr[..., : size[0], : size[1]].clamp(0.0, 1.0)
        if self.fallback is not None and use_ref:
            empty = self.empty_smaps(smap)  # coded by the fallback (see `downscale`)
            if bool(empty.any()):
                psnrs = per_sample(lr_psnr, lr.shape[0])
                some = [v for v, e in zip(psnrs, empty.tolist(), strict=True) if e]
                hr[empty] = self.fallback.upscale(lr[empty], None, None, size, z, some)
        return hr

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def attach_noref_fallback(model: RefScale, noref: RefScale) -> RefScale:
    """A `noref_fallback` copy of the trained `model` whose fallback holds the trained `noref` INN.

    The two are trained as separate runs (same steps and data); this joins them for shipping.
    """
    if model.encoder is None or model.config.noref_fallback:
        raise ValueError("the model must be a referenced model without a fallback attached")
    config = dataclasses.replace(model.config, noref_fallback=True)
    if noref.config != config.fallback_config():
        raise ValueError(f"the fallback's config {noref.config.to_dict()} is not the no-reference "
                         f"form of the model's {config.fallback_config().to_dict()}")
    combined = RefScale(config)
    missing, unexpected = combined.load_state_dict(model.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("fallback.") for k in missing)
    assert combined.fallback is not None
    combined.fallback.load_state_dict(noref.state_dict())
    return combined.eval()


__all__ = ["Condition", "Encoded", "RefScale", "attach_noref_fallback"]
