"""`TorchDownscaler`: the PyTorch model behind the numpy downscaler contract of `pipeline`.

Its own module so speed benchmarks and the ROS nodes can load it without the bag stack (mcap).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from refscale_model.models.refscale import RefScale


def tensor_smap_choice(choose: Callable[[np.ndarray], np.ndarray] | None) -> Callable[[Any], Any] | None:
    """A per-frame numpy `choose_smap` (hs×ws uint8) as `RefScale.downscale` takes it (a 1×1×hs×ws tensor)."""
    if choose is None:
        return None
    import torch

    def on_tensor(smap: torch.Tensor) -> torch.Tensor:
        picked = choose(smap[0, 0].cpu().numpy())
        return torch.from_numpy(np.ascontiguousarray(picked))[None, None].to(smap.device)

    return on_tensor


class TorchDownscaler:
    """Adapter: `RefScale.downscale` behind the numpy `Downscaler` contract."""

    def __init__(self, model: RefScale, device: str = "cpu") -> None:
        import torch

        self._torch = torch
        self.model = model.to(device).eval()
        self.device = device

    def downscale(
        self, hr: np.ndarray, ref: np.ndarray | None, choose_smap: Callable[[np.ndarray], np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """`choose_smap` (hs×ws uint8 -> the map to use) as `RefScale.downscale`'s, for one frame."""
        torch = self._torch
        x = torch.from_numpy(np.ascontiguousarray(hr)).permute(2, 0, 1)[None].to(self.device)
        r = None if ref is None else torch.from_numpy(np.ascontiguousarray(ref)).permute(2, 0, 1)[None].to(self.device)
        enc = self.model.downscale(x, r, tensor_smap_choice(choose_smap))
        lr = enc.lr[0].permute(1, 2, 0).contiguous().cpu().numpy()
        smap = None if enc.smap is None else enc.smap[0, 0].contiguous().cpu().numpy()
        return lr, smap
