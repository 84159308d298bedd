"""Ref-Net's shared encoder and the per-pixel cosine similarity of eq. 3."""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional


def conv(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1)


class RefEncoder(nn.Module):
    """Light encoder trained from scratch (no pre-trained RRDB can be downloaded; it runs per frame).

    `features(x)` gives F at half the HR resolution (the first INN stage's grid); `bottleneck(F)`
    reduces it by `smap_factor` to the grid the similarity map is computed and stored on.
    """

    def __init__(self, channels: int, smap_factor: int) -> None:
        super().__init__()
        act = nn.LeakyReLU(0.2)
        self.features = nn.Sequential(
            conv(3, channels), act, conv(channels, channels, stride=2), act, conv(channels, channels)
        )
        layers: list[nn.Module] = []
        factor = smap_factor
        while factor > 1:
            layers += [act, conv(channels, channels, stride=2)]
            factor //= 2
        layers += [act, conv(channels, channels)]
        self.bottleneck = nn.Sequential(*layers)


def cosine_similarity_map(a: Tensor, b: Tensor, eps: float = 1e-6) -> Tensor:
    """S^{i,j} = <a/|a|, b/|b|> per pixel (eq. 3), clipped to [0, 1] so it can weight and be quantised."""
    a_n = a / (a.norm(dim=1, keepdim=True) + eps)
    b_n = b / (b.norm(dim=1, keepdim=True) + eps)
    return (a_n * b_n).sum(dim=1, keepdim=True).clamp(0.0, 1.0)


def similarity_map(a: Tensor, b: Tensor, pool: int = 1, gate: float = 0.0) -> Tensor:
    """The stored S_map before quantisation: eq. 3's cosine map, averaged over `pool`×`pool` cells,
    all zero for a sample whose mean similarity is below `gate`.

    Averaging keeps what the map is for (which regions the reference can supply) while the
    cell-to-cell noise of a per-pixel cosine, which PNG cannot compress, averages out.
    Cells past the bottom/right edge are partial (ceil mode) and average only what they cover,
    so pooling never forces extra frame padding. The gate is one decision per sample (a frame
    whose reference is no more similar than an unrelated image's gets no map), not per cell: a
    per-cell dead zone leaves scattered cells that still cost PNG most of a map's bytes.
    """
    s = cosine_similarity_map(a, b)
    if pool > 1:
        s = functional.avg_pool2d(s, pool, ceil_mode=True)
    if gate > 0:
        s = s * (s.mean(dim=(1, 2, 3), keepdim=True) >= gate).to(s.dtype)
    return s


def expand_similarity(smap: Tensor, size: tuple[int, int], factor: int) -> Tensor:
    """S_map cells -> a grid `factor` times finer (bilinear), cropped to `size` (partial edge cells)."""
    if factor > 1:
        smap = functional.interpolate(smap, scale_factor=factor, mode="bilinear", align_corners=False)
    return smap[..., : size[0], : size[1]]
