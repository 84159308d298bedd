"""`RefScaleConfig`: every architecture and loss setting of one RefScale network, serialisable to JSON."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RefScaleConfig:
    """Architecture and training-loss settings.

    The defaults are the onboard "fast kind": plain 3×3-conv coupling subnets, few blocks, so a
    1080p frame fits the car's budget; `blocks` and `hidden` are where parameters buy quality.
    """

    scale: int = 2
    """Downscaling factor: 2 (one squeeze stage) or 4 (two stages)."""
    blocks: tuple[int, ...] = (4,)
    """Conditional flow blocks per 2× stage (len == log2(scale))."""
    hidden: int = 32
    """Hidden channels of the coupling subnets ψ, φ."""
    clamp: float = 1.0
    """Bound of the coupling's log-scale (tanh-clamped) for numerical stability."""
    encoder_channels: int = 16
    """Channels of the shared Ref-Net encoder features F."""
    smap_factor: int = 2
    """S_map is computed at 1/smap_factor of the feature resolution (paper Table 2, Case 5: 2)."""
    smap_pool: int = 1
    """S_map is average-pooled by this factor before it is quantised and stored: a coarser stored grid
    costs fewer bytes per frame (a per-pixel map of cosine similarities is close to noise to PNG)."""
    smap_levels: int = 16
    """Number of integer levels S_map is quantised to for storage."""
    smap_gate: float = 0.0
    """A frame whose mean similarity is below this gets an all-zero S_map, which is not stored:
    a reference no more similar than unrelated images commonly are carries no evidence of a match,
    and its map would cost bytes for a condition the coupling cannot use. S_map = 0 is exactly the
    no-reference condition, so such frames are rebuilt reference-free. Set per trained encoder
    (`refscale_model.training.smap_gate`: a high percentile of unrelated training pairs' means); 0 = off."""
    use_reference: bool = True
    """False: the no-reference baseline (condition always zero, "our IRN")."""
    noref_fallback: bool = False
    """The model carries a separately trained no-reference INN (`fallback_config()`, weights under
    `fallback.*`) for frames without a usable reference: no reference, or an S_map that quantises to
    all zero (gated). One network's S_map = 0 mode was measured below a network trained only for
    that case, so a frame with nothing to gain from a reference is never coded worse than by the
    no-reference INN. Set when shipping (`tools/attach_noref_fallback.py`), never in training."""
    lr_restore_hidden: int = 0
    """Hidden channels of the decoder-side `LRRestorer` that cleans a lossy-coded LR before the inverse
    (offboard only: the onboard forward does not change); 0 = none, the lossless-PNG model."""
    hr_refine_hidden: int = 0
    """Hidden channels of the decoder-side `HRRefiner` that adds (reference) detail to the rebuilt frame; 0 = none."""
    decoder_layers: int = 4
    """3×3 convolutions in each decoder-side network."""
    decoder_blocks: int = 1
    """Residual stages of `decoder_layers` convolutions in each decoder-side network. Offboard capacity:
    it costs no onboard time or bytes, and a stage added to trained weights starts as the identity."""
    refine_flow: bool = False
    """True: the HR refiner sees the reference aligned to the INN's rebuild by dense optical flow
    (`layers.dense_align`), not only by the stored homography. Decoder side only: no bytes, nothing
    onboard changes; revisits 2–10 m apart have parallax that one homography cannot align."""
    lambda_hr: float = 1.0
    lambda_lr: float = 4.0
    lambda_distr: float = 1.0
    blur_sigma: float = 1.2
    """Gaussian σ (LR pixels) of the blurred LR guidance target used where S_map says 'similar'."""
    lambda_smap_tv: float = 0.0
    """Weight of S_map's total variation: a rate proxy, since a piecewise-flat map costs few PNG bytes."""

    def __post_init__(self) -> None:
        if self.scale not in (2, 4):
            raise ValueError(f"scale must be 2 or 4, got {self.scale}")
        if len(self.blocks) != self.stages:
            raise ValueError(f"blocks needs one entry per 2x stage ({self.stages}), got {self.blocks}")
        if self.smap_factor < 1 or self.smap_factor & (self.smap_factor - 1):
            raise ValueError("smap_factor must be a power of two >= 1")
        if self.smap_pool < 1:
            raise ValueError("smap_pool must be >= 1")
        if 2 * self.smap_factor < self.scale:
            raise ValueError("smap_factor must put S_map on a grid no finer than the LR image's")
        if self.blur_sigma <= 0 or self.hidden < 1:
            raise ValueError("blur_sigma must be > 0 and hidden >= 1")
        if not 2 <= self.smap_levels <= 256:
            raise ValueError("smap_levels must be in [2, 256]")
        if not 0.0 <= self.smap_gate < 1.0:
            raise ValueError("smap_gate must be in [0, 1)")
        if self.lr_restore_hidden < 0 or self.hr_refine_hidden < 0 or self.decoder_layers < 2:
            raise ValueError("decoder hidden channels must be >= 0 and decoder_layers >= 2")
        if self.decoder_blocks < 1:
            raise ValueError("decoder_blocks must be >= 1")
        if self.refine_flow and not (self.use_reference and self.hr_refine_hidden):
            raise ValueError("refine_flow needs a referenced model with an HR refiner (hr_refine_hidden > 0)")
        if self.noref_fallback and not self.use_reference:
            raise ValueError("noref_fallback needs a referenced model (use_reference=True)")

    def fallback_config(self) -> RefScaleConfig:
        """The architecture of the no-reference INN a `noref_fallback` model carries."""
        return dataclasses.replace(self, use_reference=False, smap_gate=0.0, noref_fallback=False, refine_flow=False)

    @property
    def has_decoder(self) -> bool:
        """Whether decoder-side networks run after the inverse (a codec-aware model)."""
        return self.lr_restore_hidden > 0 or self.hr_refine_hidden > 0

    @property
    def stages(self) -> int:
        return {2: 1, 4: 2}[self.scale]

    @property
    def smap_cell(self) -> int:
        """HR pixels per side of one stored S_map value (features are at HR/2)."""
        return 2 * self.smap_factor * self.smap_pool

    @property
    def pad_multiple(self) -> int:
        """Frame sizes are padded to a multiple of this (the LR grid and the unpooled S_map grid must be whole;
        the pooled grid's last cells may be partial, so pooling adds no padding, whose LR bytes are real)."""
        return max(self.scale, 2 * self.smap_factor)

    def smap_upsampling(self, hr_stride: int) -> int:
        """Integer factor from the stored S_map grid to a grid of one value per `hr_stride` HR pixels."""
        return self.smap_cell // hr_stride

    def smap_grid(self, padded_size: tuple[int, int]) -> tuple[int, int]:
        """(rows, columns) of the stored S_map for a padded frame size."""
        cell = self.smap_cell
        return (-(-padded_size[0] // cell), -(-padded_size[1] // cell))

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["blocks"] = list(self.blocks)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RefScaleConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown RefScaleConfig fields: {sorted(unknown)}")
        values = dict(data)
        if "blocks" in values:
            values["blocks"] = tuple(int(b) for b in values["blocks"])
        return cls(**values)

    @classmethod
    def preset(cls, name: str) -> RefScaleConfig:
        """The shipped configurations: 'x2', 'x4', 'x2-lossy' and each one's '-noref' form."""
        presets = {
            # σ 0.7 at 2×: with 1.2 the similar-region guide threw away more than a 2× reference gives back
            # (measured: the reference model lost ~1.3 dB to the no-reference one at equal steps)
            # S_map stored as 4×4 cell means (one value per 16×16 HR pixels): the per-pixel map cost 5–6 % of
            # the frame and made RefScale larger than the no-reference INN; pooled it costs ~0.5 % (measured)
            "x2": cls(scale=2, blocks=(4,), blur_sigma=0.7, smap_pool=4),
            # S_map at half the LR grid at 4× (HR/8): at HR/4 it cost as many bytes as it saved (measured);
            # stored as 2×2 cell means (HR/16, as at 2×): 4–5 % fewer bytes for ≤ 0.09 dB (measured)
            "x4": cls(scale=4, blocks=(2, 4), lambda_lr=16.0, smap_factor=4, smap_pool=2),
        }
        # the codec-aware x2 (a JPEG/WebP LR): the x2 INN plus the decoder-side LR restorer and HR refiner;
        # LR guidance 16 instead of 4: a codec charges for the detail the INN hides in the LR (the INN's LR
        # cost up to ~50 % more bytes than bicubic's at equal quality), so the LR is pulled nearer the guide
        # the HR refiner sees the reference aligned to the rebuild by optical flow (decoder side only; measured
        # at equal steps: -2.4 % BD-rate on the sample drive, -12.4 % on the webcams, docs/method.md)
        # three residual decoder stages: offboard capacity, no onboard cost (measured: the grown no-ref INN matched
        # 70 % more steps of the one-stage one in equal wall time, weights/refscale_x2_lossy.md)
        presets["x2-lossy"] = dataclasses.replace(presets["x2"], lr_restore_hidden=32, hr_refine_hidden=32,
                                                  lambda_lr=16.0, refine_flow=True, decoder_blocks=3)
        base, suffix = (name[: -len("-noref")], "noref") if name.endswith("-noref") else (name, "")
        if base not in presets:
            raise ValueError(f"unknown preset {name!r}; choose x2, x4, x2-lossy or one of them with -noref")
        config = presets[base]
        return config.fallback_config() if suffix == "noref" else config


