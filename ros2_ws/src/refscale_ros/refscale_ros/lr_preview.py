"""The live LR preview: keep the last LR frame the downscaler made (no rclpy import)."""

from __future__ import annotations

from typing import Any

import numpy as np


class LrTap:
    """Downscaler wrapper that keeps the last LR frame (for the live preview topic)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.last_lr: np.ndarray | None = None

    def downscale(self, hr: np.ndarray, ref: np.ndarray | None) -> tuple[np.ndarray, Any]:
        lr, smap = self.inner.downscale(hr, ref)
        self.last_lr = lr
        return lr, smap
