"""What the pipeline needs from a downscaling backend, and the identity of the model behind it."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from refscale_model.models.refscale import RefScale

ChooseSmap = Callable[[np.ndarray], np.ndarray]
"""hs×ws uint8 S_map -> the map to condition on (and store)."""


@runtime_checkable
class Downscaler(Protocol):
    """What the encoder needs from a backend (PyTorch adapter below, or runtime.OnnxDownscaler)."""

    def downscale(
        self, hr: np.ndarray, ref: np.ndarray | None, choose_smap: ChooseSmap | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """RGB uint8 H×W×3 (+ same-size reference or None) -> (LR uint8 h×w×3, S_map uint8 hs×ws or None).

        `choose_smap` (hs×ws uint8 -> the map to condition on and return) is how the encoder gives every
        referenced frame its stored map: median-smoothed (`pipeline.smap_smoothing`) and, with a video LR,
        reused within the GOP (`pipeline.smap_reuse`)."""
        ...


@dataclass(frozen=True)
class ModelInfo:
    """Identity of the model a bag was encoded with; the offboard side must load the same weights."""

    model_id: str
    weights_sha256: str
    scale: int
    smap_levels: int
    uses_reference: bool
    config: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, model: RefScale, model_id: str) -> ModelInfo:
        cfg = model.config
        return cls(
            model_id=model_id,
            weights_sha256=str(getattr(model, "weights_sha256", None) or ""),
            scale=int(cfg.scale),
            smap_levels=int(cfg.smap_levels),
            uses_reference=bool(cfg.use_reference),
            config=cfg.to_dict() if hasattr(cfg, "to_dict") else dataclasses.asdict(cfg),
        )

