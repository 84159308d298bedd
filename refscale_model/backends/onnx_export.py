"""ONNX export of RefScale's downscaling half, so the onboard node runs without PyTorch.

Four self-contained graphs per export of a referenced model (format `refscale-onnx/3`,
docs/onnx-runtime.md), split where the work can be shared and where the offboard side splits too
(it rebuilds from the stored map, never recomputes it):

* `FILE.feat.onnx` (`feat_path(FILE)`): `ref` (N×3×H×W, dynamic N/H/W, the registered reference) ->
  `fref`, Ref-Net features at HR/2; run once per (reference, registration matrix).
* `FILE.smap.onnx` (`smap_path(FILE)`): `hr`, `fref` -> `smap` (uint8 N×1×hs×ws): padding, Ref-Net
  on the frame, cosine similarity, cell means, the per-frame gate and quantisation: the stored S_map.
* `FILE`: `hr`, `fref`, `smap` -> `lr` (uint8 N×3×h×w): the condition F_ref ⊙ S_map
  (`RefScale.condition_from_features`, as `upscale` builds it) and the forward INN up to the LR.
* `FILE.noref.onnx` (`noref_path(FILE)`): `hr` -> `lr`, the no-reference mode (the attached
  no-reference INN of a `noref_fallback` model).

A frame whose map is all zero (gated) under a `noref_fallback` model goes to the no-reference graph
only. Separate graphs rather than optional inputs, so TensorRT never sees control flow. A model
trained without reference (`use_reference=False`) exports only the `hr -> lr` graph, as `FILE`.
The couplings run their first convolution per input (`ConditionalCoupling.conv_per_input`), which
onnxruntime's CPU kernels run faster than one convolution of the concatenation.

Every graph carries `refscale.*` metadata_props (weights sha256, config JSON, model id, version)
so the offboard side can check that a bag was written by the weights its inverse loads.

Why a wrapper instead of tracing `RefScale.downscale`: `RefScale.pad` computes the padding in
Python ints (frozen into a trace); the wrapper pads with shape arithmetic the exporter keeps
dynamic, and otherwise calls the model's own internals so behaviour cannot drift silently (the
parity tests in tests/test_onnx_runtime.py compare against `RefScale.downscale`).

Exporter: the TorchScript-based `torch.onnx.export(..., dynamo=False)`. The torch.export-based
default needs `onnxscript`, which the `[onnx]` extra does not carry.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from refscale_model.backends.loader import model_id_for
from refscale_model.backends.onnx_runtime import META_PREFIX, ONNX_FORMAT, feat_path, noref_path, smap_path
from refscale_model.layers import similarity_map
from refscale_model.layers.flow import ConditionalCoupling
from refscale_model.models.refscale import LR_CHANNELS, Condition, RefScale
from refscale_model.quantise import lr_to_uint8, quantise_smap, smap_from_levels, smap_to_uint8

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17
"""17: LayerNorm-era opset every TensorRT >= 8.6 and onnxruntime >= 1.14 parse."""
INPUT_DTYPES = {"uint8": torch.uint8, "float32": torch.float32}


Graph = Literal["feat", "smap", "ref", "noref"]
GRAPH_IO: dict[str, tuple[list[str], list[str]]] = {
    "feat": (["ref"], ["fref"]),
    "smap": (["hr", "fref"], ["smap"]),
    "ref": (["hr", "fref", "smap"], ["lr"]),
    "noref": (["hr"], ["lr"]),
}
"""(inputs, outputs) of each graph."""


def _lr_flow(net: RefScale, hr: Tensor, cond: Condition) -> Tensor:
    """`net.forward_flow(hr, cond)[0]` (the LR) without the work that never reaches the LR channels.

    A last flow block whose coupling transforms only z (`transform_first=False`) leaves the LR
    channels as its 1×1 mix made them, so the graph stops after the mix: the same operations on
    the same values for every LR output (exact), one coupling subnet less per frame (a quarter of
    the shipped x2's 4-block flow).
    """
    x = hr
    last = len(net.stages) - 1
    for s, (squeeze, blocks, c) in enumerate(zip(net.squeezes, net.stages, cond.per_stage, strict=True)):
        x = squeeze(x)
        for i, block in enumerate(blocks):
            if s == last and i == len(blocks) - 1 and not block.coupling.transform_first:
                assert block.coupling.split == LR_CHANNELS
                x = block.mix(block.actnorm(x))  # the coupling would change channels LR_CHANNELS: only
            else:
                x = block(x, c)
    return x[:, :LR_CHANNELS]


class _Downscale(nn.Module):
    """One traceable part of `RefScale.downscale`: uint8/float NCHW in, uint8 `smap` or `lr` out."""

    def __init__(self, model: RefScale, graph: Graph, compute_dtype: torch.dtype) -> None:
        super().__init__()
        self.model = model
        self.graph = graph
        self.compute_dtype = compute_dtype

    def _prepare(self, x: Tensor) -> Tensor:
        """To [0, 1] float (uint8 / 255, as `_as_float_image`), then reflect-pad bottom/right.

        `RefScale.pad` picks replicate only when the pad is not smaller than the frame side,
        which cannot happen for frames of at least `pad_multiple` pixels; the runtime rejects
        smaller ones, so the graph needs only the reflect branch.
        """
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        x = x.to(self.compute_dtype)
        m = self.model.config.pad_multiple
        shape = torch._shape_as_tensor(x)
        pad_h = (m - shape[2] % m) % m
        pad_w = (m - shape[3] % m) % m
        return nn.functional.pad(x, [0, pad_w, 0, pad_h], mode="reflect")

    def _smap_levels(self, hr: Tensor, f_ref: Tensor) -> Tensor:
        """`RefScale.smap_levels_from_images` from the reference's features, with the cosine in
        float32 (fp16 norms can overflow)."""
        enc = self.model.encoder
        assert enc is not None
        g_hr = enc.bottleneck(enc.features(hr)).float()
        g_ref = enc.bottleneck(f_ref).float()
        cfg = self.model.config
        return quantise_smap(similarity_map(g_hr, g_ref, cfg.smap_pool, cfg.smap_gate), cfg.smap_levels, training=False)

    def forward(self, *args: Tensor) -> Tensor:
        m = self.model
        if self.graph == "feat":  # Ref-Net features of the (registered) reference: F_ref at HR/2
            enc = m.encoder
            assert enc is not None
            return enc.features(self._prepare(args[0])).float()
        hr_p = self._prepare(args[0])
        if self.graph == "noref":  # `RefScale.noref_lr`
            net = m.fallback or m
            return lr_to_uint8(_lr_flow(net, hr_p, net.condition_from_smap(None, None, hr_p)).float())
        f_ref = args[1].to(self.compute_dtype)
        if self.graph == "smap":
            return smap_to_uint8(self._smap_levels(hr_p, f_ref))
        cond = m.condition_from_features(f_ref, smap_from_levels(args[2], m.config.smap_levels, hr_p.dtype))
        return lr_to_uint8(_lr_flow(m, hr_p, cond).float())


@dataclass(frozen=True)
class ExportResult:
    """Paths written by `export_onnx` and the metadata embedded in them."""

    path: Path
    """The main graph (`hr`, `fref`, `smap` -> `lr`); for a no-reference model the `hr` -> `lr` graph."""
    noref_path: Path | None
    """The no-reference graph of a referenced model (None for a model trained without reference)."""
    smap_path: Path | None
    """The S_map graph (`hr`, `fref` -> `smap`) of a referenced model (None without reference)."""
    feat_path: Path | None
    """The reference-features graph (`ref` -> `fref`) of a referenced model (None without reference)."""
    metadata: dict[str, str]


def export_metadata(
    model: RefScale, model_id: str, *, graph: str, precision: str, input_dtype: str, opset: int
) -> dict[str, str]:
    """The `refscale.*` metadata_props of one graph (all values strings, as ONNX requires)."""
    from refscale_model import __version__

    return {
        f"{META_PREFIX}format": ONNX_FORMAT,
        f"{META_PREFIX}weights_sha256": str(model.weights_sha256 or ""),
        f"{META_PREFIX}config": json.dumps(model.config.to_dict(), sort_keys=True),
        f"{META_PREFIX}model_id": model_id,
        f"{META_PREFIX}version": __version__,
        f"{META_PREFIX}graph": graph,
        f"{META_PREFIX}precision": precision,
        f"{META_PREFIX}input_dtype": input_dtype,
        f"{META_PREFIX}opset": str(opset),
    }


def read_onnx_metadata(path: str | Path) -> dict[str, str]:
    """The `refscale.*` metadata_props of an exported graph, prefix stripped (no weights loaded)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return {
        p.key[len(META_PREFIX) :]: p.value for p in proto.metadata_props if p.key.startswith(META_PREFIX)
    }


def check_pairing(metadata: Mapping[str, str], model: RefScale) -> None:
    """Raise ValueError unless an exported graph came from exactly `model`'s weights and config.

    The offboard side calls this (with `read_onnx_metadata(path)` or `OnnxDownscaler.metadata`) before
    rebuilding frames a car encoded with that graph.
    """
    want = str(model.weights_sha256 or "")
    have = metadata.get("weights_sha256", metadata.get(f"{META_PREFIX}weights_sha256", ""))
    if have != want:
        raise ValueError(
            f"ONNX graph was exported from weights {have or '(untrained)'}, model has {want or '(untrained)'}"
        )
    config = json.loads(metadata.get("config", metadata.get(f"{META_PREFIX}config", "{}")))
    if config != model.config.to_dict():
        raise ValueError(f"ONNX graph config {config} differs from the model's {model.config.to_dict()}")


def _export_one(
    wrapper: _Downscale,
    path: Path,
    opset: int,
    input_dtype: torch.dtype,
    metadata: dict[str, str],
    sample_hw: tuple[int, int],
) -> None:
    import onnx

    h, w = sample_hw
    if input_dtype == torch.uint8:
        gen = torch.Generator().manual_seed(0)
        sample = torch.randint(0, 256, (1, 3, h, w), dtype=torch.uint8, generator=gen)
    else:
        sample = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    sample_ref = sample.flip(-1).contiguous()
    inputs, outputs = GRAPH_IO[wrapper.graph]
    with torch.no_grad():
        feeds: dict[str, Tensor] = {"hr": sample, "ref": sample_ref}
        if "fref" in inputs:
            feeds["fref"] = _Downscale(wrapper.model, "feat", wrapper.compute_dtype)(sample_ref)
        if "smap" in inputs:
            feeds["smap"] = _Downscale(wrapper.model, "smap", wrapper.compute_dtype)(sample, feeds["fref"])
    args = tuple(feeds[name] for name in inputs)
    image_axes = {0: "N", 2: "H", 3: "W"}
    axes = {
        "hr": image_axes,
        "ref": image_axes,
        "fref": {0: "N", 2: "hf", 3: "wf"},
        "smap": {0: "N", 2: "hs", 3: "ws"},
        "lr": {0: "N", 2: "h", 3: "w"},
    }
    axes = {name: axes[name] for name in inputs + outputs}
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # the legacy exporter announces its own deprecation and traces shape arithmetic (intended)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        torch.onnx.export(
            wrapper,
            args,
            str(path),
            dynamo=False,
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=axes,
            opset_version=opset,
            do_constant_folding=True,
        )
    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "refscale"
    proto.doc_string = "RefScale downscaling half (" + metadata[f"{META_PREFIX}graph"] + "); see docs/onnx-runtime.md"
    onnx.save(proto, str(path))
    onnx.checker.check_model(str(path), full_check=True)
    size_mb = path.stat().st_size / 1e6
    log.info("exported %s (%s, opset %d, %.1f MB)", path, metadata[f"{META_PREFIX}graph"], opset, size_mb)


def export_onnx(
    model: RefScale,
    out: str | Path,
    *,
    model_id: str = "",
    fp16: bool = False,
    opset: int = DEFAULT_OPSET,
    input_dtype: str = "uint8",
    sample_hw: tuple[int, int] = (64, 96),
) -> ExportResult:
    """Export `model`'s downscaling half to `out` (+ `smap_path(out)`, `noref_path(out)`), checked by onnx.checker.

    `fp16` computes in half precision (for the CUDA provider; TensorRT gets fp16 from its own
    flag on the fp32 graph) with the similarity map kept in float32. `input_dtype` is the graph's
    `hr`/`ref` type: "uint8" (0..255, what cameras give) or "float32" (0..1).
    """
    if input_dtype not in INPUT_DTYPES:
        raise ValueError(f"input_dtype must be one of {sorted(INPUT_DTYPES)}, got {input_dtype!r}")
    out = Path(out)
    src = model
    model = RefScale(src.config)
    model.load_state_dict(src.state_dict())
    model.weights_sha256 = src.weights_sha256
    model = model.eval().cpu()
    for module in model.modules():
        if isinstance(module, ConditionalCoupling):
            module.conv_per_input = True  # kernels onnxruntime's CPU provider blocks well (layers/flow.py)
    compute = torch.float16 if fp16 else torch.float32
    model.to(compute)  # fp16: everything but the cosine similarity (lifted to float32 in _smap_levels)
    precision = "fp16" if fp16 else "fp32"
    common = {"precision": precision, "input_dtype": input_dtype, "opset": opset}
    use_ref = model.encoder is not None
    dtype = INPUT_DTYPES[input_dtype]
    if not use_ref:
        meta = export_metadata(model, model_id, graph="noref", **common)
        _export_one(_Downscale(model, "noref", compute), out, opset, dtype, meta, sample_hw)
        return ExportResult(path=out, noref_path=None, smap_path=None, feat_path=None, metadata=meta)
    sides = {"noref": noref_path(out), "smap": smap_path(out), "feat": feat_path(out)}
    meta = export_metadata(model, model_id, graph="ref", **common)
    meta.update({f"{META_PREFIX}{graph}_graph": side.name for graph, side in sides.items()})
    _export_one(_Downscale(model, "ref", compute), out, opset, dtype, meta, sample_hw)
    for graph, side in sides.items():
        side_meta = export_metadata(model, model_id, graph=graph, **common)
        _export_one(_Downscale(model, graph, compute), side, opset, dtype, side_meta, sample_hw)
    return ExportResult(
        path=out, noref_path=sides["noref"], smap_path=sides["smap"], feat_path=sides["feat"], metadata=meta
    )


__all__ = [
    "DEFAULT_OPSET",
    "ExportResult",
    "check_pairing",
    "export_metadata",
    "export_onnx",
    "feat_path",
    "model_id_for",
    "noref_path",
    "read_onnx_metadata",
    "smap_path",
]
