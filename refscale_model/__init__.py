"""RefScale: reference-based invertible image rescaling (the ML core of the project)."""

from refscale_model.config import RefScaleConfig
from refscale_model.model import Encoded, RefScale
from refscale_model.weights import WeightsError, load_model, load_weights, save_weights

__version__ = "0.1.0"

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
