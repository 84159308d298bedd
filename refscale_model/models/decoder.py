"""Decoder-side (offboard, PyTorch only) networks of a codec-aware RefScale.

The onboard forward must not grow, so the capacity that undoes a lossy LR codec lives here:
`LRRestorer` cleans the decoded LR before the inverse INN, `HRRefiner` adds detail to the rebuilt
frame, and both see the reference masked by S_map, because the detail a codec throws away is often
still in the earlier drive of the same place. Both end in a zero-initialised convolution, so a freshly
attached decoder leaves the inverse's output unchanged and fine-tuning starts from the shipped net.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional


def bicubic_down_up(x: Tensor, factor: int) -> Tensor:
    """Anti-aliased bicubic down by `factor` and back: the part of `x` a `factor`× downscale keeps."""
    h, w = x.shape[-2:]
    low = functional.interpolate(x, size=(h // factor, w // factor), mode="bicubic", antialias=True,
                                 align_corners=False)
    return functional.interpolate(low, size=(h, w), mode="bicubic", align_corners=False)


def _body(in_ch: int, hidden: int, out_ch: int, layers: int) -> nn.Sequential:
    mods: list[nn.Module] = [nn.Conv2d(in_ch, hidden, 3, padding=1), nn.LeakyReLU(0.1)]
    for _ in range(max(0, layers - 2)):
        mods += [nn.Conv2d(hidden, hidden, 3, padding=1), nn.LeakyReLU(0.1)]
    last = nn.Conv2d(hidden, out_ch, 3, padding=1)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    mods.append(last)
    return nn.Sequential(*mods)


class LRRestorer(nn.Module):
    """Residual CNN on the decoded LR (codec artefacts out) before the inverse INN.

    With a reference it also sees the reference brought to the LR grid, weighted by S_map, and S_map.
    """

    def __init__(self, hidden: int, layers: int, scale: int, use_reference: bool, blocks: int = 1) -> None:
        super().__init__()
        self.scale = scale
        self.use_reference = use_reference
        in_ch = 3 + (4 if use_reference else 0)
        self.body = _body(in_ch, hidden, 3, layers)
        self.more = nn.ModuleList(_body(in_ch, hidden, 3, layers) for _ in range(blocks - 1))
        """Residual stages after `body`, each seeing the current estimate (`RefScaleConfig.decoder_blocks`)."""

    def forward(self, lr: Tensor, ref: Tensor | None, s_lr: Tensor | None) -> Tensor:
        """`ref`: padded HR-size reference; `s_lr`: S_map at the LR grid (both None without reference)."""
        if self.use_reference:
            if ref is None or s_lr is None:  # the S_map = 0 condition: no reference evidence
                extra = lr.new_zeros(lr.shape[0], 4, *lr.shape[-2:])
            else:
                ref_lr = functional.interpolate(ref, size=lr.shape[-2:], mode="area")
                extra = torch.cat((ref_lr * s_lr, s_lr), dim=1)
        else:
            extra = None
        for body in (self.body, *self.more):
            lr = lr + body(lr if extra is None else torch.cat((lr, extra), dim=1))
        return lr


class HRRefiner(nn.Module):
    """Residual CNN on the rebuilt frame, run on its 2×2 space-to-depth (HR/2 grid) to stay cheap.

    With a reference it sees the reference's 2× band (what a 2× downscale and a codec remove) and the
    reference minus the rebuilt frame, both weighted by S_map, so it can copy detail only where S_map
    says the reference matches.
    """

    def __init__(self, hidden: int, layers: int, use_reference: bool, blocks: int = 1) -> None:
        super().__init__()
        self.use_reference = use_reference
        in_ch = 12 + (25 if use_reference else 0)
        self.body = _body(in_ch, hidden, 12, layers)
        self.more = nn.ModuleList(_body(in_ch, hidden, 12, layers) for _ in range(blocks - 1))
        """Residual stages after `body`, each seeing the current estimate (`RefScaleConfig.decoder_blocks`)."""

    def forward(self, hr: Tensor, ref: Tensor | None, s_half: Tensor | None) -> Tensor:
        """`hr`, `ref`: padded HR-size frames (even sizes); `s_half`: S_map at the HR/2 grid."""
        x = functional.pixel_unshuffle(hr, 2)
        extra = None
        if self.use_reference:
            if ref is None or s_half is None:
                extra = x.new_zeros(x.shape[0], 25, *x.shape[-2:])
            else:
                band = ref - bicubic_down_up(ref, 2)
                extra = torch.cat((
                    functional.pixel_unshuffle(band, 2) * s_half,
                    functional.pixel_unshuffle(ref - hr, 2) * s_half,
                    s_half,
                ), dim=1)
        for body in (self.body, *self.more):
            x = x + body(x if extra is None else torch.cat((x, extra), dim=1))
        return functional.pixel_shuffle(x, 2)


__all__ = ["HRRefiner", "LRRestorer", "bicubic_down_up"]
