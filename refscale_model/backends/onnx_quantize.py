"""int8 (QDQ) static quantisation of an export's per-frame graphs, calibrated on real frames.

Not shipped as a default: on the validation split it lost 1.1–1.8 dB (webcam_tilde) and 1.8–2.7 dB
(satellite_spacenet7_monthly) of rebuilt PSNR against the fp32 graphs (worst pair −3.3 dB), measured
in one run (`benchmarks/bench_onboard.py --quality`; docs/onnx-runtime.md), far over the 0.1 dB allowed, for
about 15-20 % less time per frame on this project's 2 CPU cores. The INN's LR must be exactly what
the float inverse expects; 8-bit activations inside the coupling subnets are not.

`quantize_export(src, dst, calibration)` writes a complete export at `dst` (`feat` and `smap` graphs
copied in fp32, `ref` and `noref` graphs with every Conv quantised: int8 per-channel weights,
uint8 activations, MinMax calibration), `refscale.precision` = "int8", so `OnnxDownscaler(dst)`
runs it like any export.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from refscale_model.backends.onnx_runtime import (
    CPU,
    META_PREFIX,
    OnnxDownscaler,
    feat_path,
    noref_path,
    smap_path,
)


def quantize_export(src: str | Path, dst: str | Path, calibration: Iterable[tuple[np.ndarray, np.ndarray]]) -> Path:
    """Quantise the export at `src` into `dst` with (frame, registered reference) RGB uint8 pairs."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src, dst = Path(src), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    runtime = OnnxDownscaler(src, [CPU])
    if not runtime.uses_reference:
        raise ValueError(f"{src.name}: only exports of referenced models are quantised here")
    feeds: list[dict[str, np.ndarray]] = []
    for hr, ref in calibration:
        x = runtime._to_input(np.ascontiguousarray(hr))
        fref = runtime.reference_features(np.ascontiguousarray(ref))
        _, smap = runtime.run_nchw(x, fref=fref)
        feeds.append({"hr": x, "fref": fref, "smap": smap})
    if not feeds:
        raise ValueError("no calibration frames")

    class Reader(CalibrationDataReader):
        def __init__(self, names: list[str]) -> None:
            self._it = iter([{k: f[k] for k in names} for f in feeds])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    with tempfile.TemporaryDirectory(prefix="refscale_q8_") as tmp:
        for graph, path_of, names in (("ref", lambda p: p, ["hr", "fref", "smap"]), ("noref", noref_path, ["hr"])):
            pre = Path(tmp) / f"{graph}.pre.onnx"
            quant_pre_process(str(path_of(src)), str(pre), skip_symbolic_shape=True)
            quantize_static(str(pre), str(path_of(dst)), Reader(names), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax, op_types_to_quantize=["Conv"])
            source_meta = onnx.load(str(path_of(src)), load_external_data=False).metadata_props
            proto = onnx.load(str(path_of(dst)))
            del proto.metadata_props[:]
            for entry in source_meta:
                new = proto.metadata_props.add()
                new.key = entry.key
                new.value = "int8" if entry.key == f"{META_PREFIX}precision" else entry.value
                if entry.key == f"{META_PREFIX}feat_graph":
                    new.value = feat_path(dst).name
                elif entry.key == f"{META_PREFIX}smap_graph":
                    new.value = smap_path(dst).name
                elif entry.key == f"{META_PREFIX}noref_graph":
                    new.value = noref_path(dst).name
            onnx.save(proto, str(path_of(dst)))
    for path_of in (feat_path, smap_path):
        shutil.copyfile(path_of(src), path_of(dst))
    return dst


__all__ = ["quantize_export"]
