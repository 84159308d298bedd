"""One loader that turns weights, or an ONNX export of them, into the pipeline's `Downscaler`.

The recorder node and `refscale encode-bag` both call `load_downscaler`, so they pick the backend
and name the model the same way. The bag records the model identity (weights sha256) that the
offboard side must load: from the PyTorch weights, or from the ONNX export's own metadata.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from refscale_model.backends.base import Downscaler, ModelInfo


class BackendError(RuntimeError):
    """The requested backend cannot be used (missing extra, or an export of other weights)."""


def model_id_for(weights: str) -> str:
    """The id a bag records for `weights`: the file name of a path, else the packaged name ("x2")."""
    return Path(weights).name if str(weights).endswith(".safetensors") else str(weights)


@dataclass
class Backend:
    """A loaded downscaler, the identity of its model, and how to name it in diagnostics."""

    downscaler: Downscaler
    info: ModelInfo
    provider: str


def load_downscaler(
    weights: str,
    *,
    onnx_model: str | Path | None = None,
    providers: Sequence[str] = (),
    device: str = "cpu",
    allow_untrained: bool = False,
    verify_weights: bool = False,
) -> Backend:
    """PyTorch `TorchDownscaler` for `weights`, or `OnnxDownscaler` when `onnx_model` is given.

    The ONNX path needs no PyTorch (onboard); `verify_weights` loads `weights` as well and refuses
    an export of other weights (`BackendError`), for offline jobs that have PyTorch anyway.
    """
    from refscale_model import load_model

    def torch_model() -> Any:
        return load_model(weights, allow_untrained=allow_untrained)

    if not onnx_model:
        from refscale_model.backends.torch_backend import TorchDownscaler

        model = torch_model()
        return Backend(TorchDownscaler(model, device), ModelInfo.of(model, model_id_for(weights)), f"torch:{device}")
    try:  # ONNX Runtime is optional: the [onnx] extra
        from refscale_model.backends.onnx_runtime import OnnxDownscaler
    except ImportError as exc:
        raise BackendError(
            f"an ONNX model is set but the ONNX runtime is unavailable ({exc}); install the [onnx] extra"
        ) from exc
    ds = OnnxDownscaler(str(onnx_model), providers=list(providers) or None)
    info = ds.model_info()
    if verify_weights and weights:
        want = ModelInfo.of(torch_model(), model_id_for(weights)).weights_sha256
        if info.weights_sha256 and want and info.weights_sha256 != want:
            raise BackendError(f"{onnx_model} was exported from weights {info.weights_sha256}, not {want}")
    provider = getattr(ds, "provider", None) or ",".join(providers)
    return Backend(ds, info, f"onnx:{provider}")
