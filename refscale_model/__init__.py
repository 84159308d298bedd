"""RefScale: reference-based invertible image rescaling (the ML core of the project).

The public names are loaded lazily (PEP 562): the onboard ONNX runtime, the bags and the reference
cache import this package without pulling in PyTorch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "RefScaleConfig": "refscale_model.config",
    "Encoded": "refscale_model.models.refscale",
    "RefScale": "refscale_model.models.refscale",
    "WeightsError": "refscale_model.weights",
    "load_model": "refscale_model.weights",
    "load_weights": "refscale_model.weights",
    "save_weights": "refscale_model.weights",
}

__all__ = [
    "Encoded",
    "RefScale",
    "RefScaleConfig",
    "WeightsError",
    "__version__",
    "load_model",
    "load_weights",
    "save_weights",
]

if TYPE_CHECKING:
    from refscale_model.config import RefScaleConfig
    from refscale_model.models.refscale import Encoded, RefScale
    from refscale_model.weights import WeightsError, load_model, load_weights, save_weights


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'refscale_model' has no attribute {name!r}")
