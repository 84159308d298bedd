"""`OnnxDownscaler`: the onboard downscaling half on onnxruntime, behind the pipeline's numpy contract.

Needs numpy, OpenCV (`codec`) and onnxruntime only (no PyTorch): the graphs come from `onnx_export.export_onnx`.
Sessions are opened once; providers are tried in order (default TensorRT fp16 with an engine cache
-> CUDA -> CPU) and a provider that cannot start is skipped with a warning, never a crash. Per
frame, inputs and preallocated outputs are bound with IO binding (one set of buffers per frame
size), so steady-state frames allocate nothing inside onnxruntime.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from refscale_model.backends.base import ChooseSmap
from refscale_model.config import RefScaleConfig
from refscale_model.io.images import stored_smap
from refscale_model.utils import LruCache, round_up

if TYPE_CHECKING:
    import onnxruntime as ort

    from refscale_model.backends.base import ModelInfo

log = logging.getLogger(__name__)

META_PREFIX = "refscale."
"""Prefix of RefScale's keys in an ONNX file's metadata_props (written by `onnx_export`)."""
ONNX_FORMAT = "refscale-onnx/3"
"""Version of the graph layout: 3 = reference-features graph (`ref` -> `fref`, run once per registered
reference) + S_map graph and ref graph taking `fref` + no-ref graph. Older exports are refused
(2 ran Ref-Net on the reference in two graphs per frame; 1 computed the map inside the ref graph):
re-export them."""
TENSORRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
ProviderSpec = str | tuple[str, Mapping[str, Any]]


def default_trt_cache_dir() -> Path:
    """Where TensorRT engines are cached between runs (building one takes minutes on the car)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "refscale" / "trt"


def default_providers(
    trt_cache_dir: str | Path | None = None, fp16: bool = True, device_id: int = 0
) -> list[ProviderSpec]:
    """TensorRT (fp16, engine + timing cache) -> CUDA -> CPU."""
    cache = str(trt_cache_dir or default_trt_cache_dir())
    trt = {
        "device_id": device_id,
        "trt_fp16_enable": fp16,
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": cache,
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": cache,
    }
    return [(TENSORRT, trt), (CUDA, {"device_id": device_id}), CPU]


def noref_path(path: str | Path) -> Path:
    """`x2.onnx` -> `x2.noref.onnx`: where an export puts its no-reference graph."""
    path = Path(path)
    return path.with_name(f"{path.stem}.noref{path.suffix or '.onnx'}")


def smap_path(path: str | Path) -> Path:
    """`x2.onnx` -> `x2.smap.onnx`: where an export puts its S_map graph."""
    path = Path(path)
    return path.with_name(f"{path.stem}.smap{path.suffix or '.onnx'}")


def feat_path(path: str | Path) -> Path:
    """`x2.onnx` -> `x2.feat.onnx`: where an export puts its reference-features graph."""
    path = Path(path)
    return path.with_name(f"{path.stem}.feat{path.suffix or '.onnx'}")


def _name(spec: ProviderSpec) -> str:
    return spec if isinstance(spec, str) else spec[0]


class _Graph:
    """One InferenceSession plus its IO-binding buffers per input size."""

    def __init__(self, path: Path, providers: Sequence[ProviderSpec], options: ort.SessionOptions) -> None:
        import onnxruntime as ort

        self.path = path
        self.session = self._open(ort, path, providers, options)
        self.providers: list[str] = list(self.session.get_providers())
        self.provider = self.providers[0]
        self.device = "cuda" if self.provider in (TENSORRT, CUDA) else "cpu"
        self.device_id = 0
        for spec in providers:
            if _name(spec) == self.provider and not isinstance(spec, str):
                self.device_id = int(spec[1].get("device_id", 0))
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.input_dtype = np.uint8 if self.session.get_inputs()[0].type == "tensor(uint8)" else np.float32
        self.output_dtypes = {
            o.name: np.uint8 if o.type == "tensor(uint8)" else np.float32 for o in self.session.get_outputs()
        }
        self._buffers: LruCache[tuple[tuple[str, tuple[int, ...]], ...], dict[str, Any]] = LruCache(4)
        self._binding_ok = True
        meta = self.session.get_modelmeta().custom_metadata_map
        self.metadata = {k[len(META_PREFIX) :]: v for k, v in meta.items() if k.startswith(META_PREFIX)}

    @staticmethod
    def _open(
        ort: Any, path: Path, providers: Sequence[ProviderSpec], options: ort.SessionOptions
    ) -> ort.InferenceSession:
        """Create the session, dropping providers that are not built in or fail to start."""
        available = set(ort.get_available_providers())
        wanted = [p for p in providers if _name(p) in available]
        for p in providers:
            if _name(p) not in available:
                log.warning("%s: provider %s is not available in this onnxruntime build; skipped", path.name, _name(p))
        if CPU not in [_name(p) for p in wanted]:
            wanted.append(CPU)  # the last resort is always there
        while wanted:
            names = [_name(p) for p in wanted]
            opts = [{} if isinstance(p, str) else {k: str(v) for k, v in p[1].items()} for p in wanted]
            try:
                return ort.InferenceSession(str(path), sess_options=options, providers=names, provider_options=opts)
            except Exception as exc:  # noqa: BLE001 - a provider's start failure must not stop the car
                if type(exc).__name__ in ("InvalidProtobuf", "InvalidGraph", "NoModel"):  # the file, not a provider
                    raise ValueError(f"{path}: not a valid ONNX model: {str(exc).splitlines()[0]}") from exc
                if len(wanted) == 1:
                    raise
                log.warning("%s: could not start %s (%s); falling back to %s", path.name, names[0], exc, names[1])
                wanted = wanted[1:]
        raise RuntimeError("unreachable")

    def _buffers_for(self, feeds: Mapping[str, np.ndarray], out_shapes: Sequence[tuple[int, ...]]) -> dict[str, Any]:
        """Preallocated outputs (and, on a GPU, inputs) for one set of input shapes; a few are kept."""
        import onnxruntime as ort

        key = tuple((name, arr.shape) for name, arr in feeds.items())
        bufs = self._buffers.get(key)
        if bufs is not None:
            return bufs
        binding = self.session.io_binding()
        bufs = {"binding": binding, "out": {}}
        for name, shape in zip(self.outputs, out_shapes, strict=True):
            dtype = self.output_dtypes[name]
            if self.device == "cpu":
                arr = np.empty(shape, dtype)
                bufs["out"][name] = arr
                binding.bind_output(name, "cpu", 0, dtype, list(shape), arr.ctypes.data)
            else:
                val = ort.OrtValue.ortvalue_from_shape_and_type(list(shape), dtype, "cuda", self.device_id)
                bufs["out"][name] = val
                binding.bind_ortvalue_output(name, val)
        if self.device != "cpu":
            for name, arr in feeds.items():
                val = ort.OrtValue.ortvalue_from_shape_and_type(list(arr.shape), arr.dtype.type, "cuda", self.device_id)
                bufs[f"in:{name}"] = val
                binding.bind_ortvalue_input(name, val)
        return self._buffers.put(key, bufs)

    def run(self, feeds: Mapping[str, np.ndarray], out_shapes: Sequence[tuple[int, ...]]) -> list[np.ndarray]:
        """Outputs as fresh numpy arrays (callers may keep them; the buffers are reused next frame)."""
        if self._binding_ok:
            try:
                bufs = self._buffers_for(feeds, out_shapes)
                binding = bufs["binding"]
                for name, arr in feeds.items():
                    if self.device == "cpu":
                        binding.bind_cpu_input(name, arr)
                    else:
                        bufs[f"in:{name}"].update_inplace(arr)
                self.session.run_with_iobinding(binding)
                if self.device == "cpu":
                    return [bufs["out"][n].copy() for n in self.outputs]
                return [bufs["out"][n].numpy() for n in self.outputs]
            except Exception as exc:  # noqa: BLE001 - IO binding is an optimisation, plain run() still works
                log.warning("%s: IO binding failed on %s (%s); using plain run()", self.path.name, self.provider, exc)
                self._binding_ok = False
                self._buffers.clear()
        return [np.asarray(o) for o in self.session.run(self.outputs, dict(feeds))]


class OnnxDownscaler:
    """The `pipeline.Downscaler` contract on onnxruntime: `downscale(hr, ref) -> (lr, smap | None)`.

    `path` is the main graph of an export; a referenced model's S_map and no-reference graphs
    (`smap_path(path)`, `noref_path(path)`) are opened at the same time (no session is ever created
    per frame). `mem_pattern` is onnxruntime's per-shape memory planning (faster allocation, more
    resident memory).
    """

    def __init__(
        self,
        path: str | Path,
        providers: Sequence[ProviderSpec] | None = None,
        *,
        trt_cache_dir: str | Path | None = None,
        trt_fp16: bool = True,
        device_id: int = 0,
        intra_op_threads: int = 0,
        mem_pattern: bool = True,
        expected_sha256: str | None = None,
    ) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(self.path)
        self.requested_providers = list(providers or default_providers(trt_cache_dir, trt_fp16, device_id))
        if any(_name(p) == TENSORRT for p in self.requested_providers):
            for p in self.requested_providers:
                if _name(p) == TENSORRT and not isinstance(p, str) and p[1].get("trt_engine_cache_path"):
                    Path(str(p[1]["trt_engine_cache_path"])).mkdir(parents=True, exist_ok=True)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if intra_op_threads:
            options.intra_op_num_threads = intra_op_threads
        # Up to three sessions run one after another per frame; an idle session's intra-op threads
        # would spin and steal the cores from the next one (measured on 2 CPU cores at 720p: a
        # matched frame 374-408 ms with spinning, 288-325 ms without).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.enable_mem_pattern = mem_pattern  # False: ~300 MB less peak RSS at 1080p on CPU, same speed here
        self._main = _Graph(self.path, self.requested_providers, options)
        self.metadata: dict[str, str] = dict(self._main.metadata)
        if not self.metadata.get("config"):
            raise ValueError(f"{self.path} has no refscale.config metadata: not a refscale export")
        self.config = RefScaleConfig.from_dict(json.loads(self.metadata["config"]))
        self.weights_sha256: str = self.metadata.get("weights_sha256", "")
        """sha256 of the .safetensors the graph was exported from ('' for untrained weights)."""
        self.model_id: str = self.metadata.get("model_id", "")
        if expected_sha256 is not None and expected_sha256 != self.weights_sha256:
            raise ValueError(
                f"{self.path.name} was exported from weights {self.weights_sha256!r}, not {expected_sha256!r}"
            )
        if self.metadata.get("format") != ONNX_FORMAT:
            raise ValueError(
                f"{self.path.name} has graph format {self.metadata.get('format')!r}, this runtime reads "
                f"{ONNX_FORMAT!r}: re-export it with `refscale export-onnx`"
            )
        self.uses_reference = self.metadata.get("graph") == "ref"
        self._noref = self._smap = self._feat = self._main
        if self.uses_reference:
            self._noref = self._side_graph("noref", options)
            self._smap = self._side_graph("smap", options)
            self._feat = self._side_graph("feat", options)
        self.provider: str = self._main.provider
        """The execution provider the graphs actually run on."""
        self.providers: list[str] = self._main.providers
        self._lock = threading.Lock()
        first = _name(self.requested_providers[0])
        if self.provider != first:
            log.warning("%s runs on %s, not the preferred %s", self.path.name, self.provider, first)
        log.info("%s (model %s, weights %s) on %s", self.path.name, self.model_id, self.weights_sha256[:12] or
                 "untrained", self.provider)

    def _side_graph(self, graph: str, options: ort.SessionOptions) -> _Graph:
        """Open the S_map or no-reference graph named in the main graph's metadata, checking its pairing."""
        default = {"noref": noref_path, "smap": smap_path, "feat": feat_path}[graph](self.path).name
        side = self.path.parent / self.metadata.get(f"{graph}_graph", default)
        if not side.is_file():
            raise FileNotFoundError(f"{graph} graph {side} of {self.path.name} is missing")
        opened = _Graph(side, self.requested_providers, options)
        if opened.metadata.get("weights_sha256", "") != self.weights_sha256 or opened.metadata.get("graph") != graph:
            raise ValueError(f"{side.name} is not the {graph} graph of the weights {self.path.name} came from")
        return opened

    # ------------------------------------------------------------------ contract
    def downscale(
        self, hr: np.ndarray, ref: np.ndarray | None, choose_smap: ChooseSmap | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """RGB uint8 H×W×3 (+ same-size reference or None) -> (LR uint8 h×w×3, S_map uint8 hs×ws or None).

        `choose_smap` (hs×ws uint8 -> the map to condition on) as `RefScale.downscale`'s."""
        hr = self._check_image(hr, "frame")
        fref = None
        if ref is not None and self.uses_reference:
            ref = self._check_image(ref, "reference")
            if ref.shape != hr.shape:
                raise ValueError(
                    f"reference shape {ref.shape} does not match frame shape {hr.shape}; "
                    "register/resize the reference to the frame first"
                )
            fref = self.run_features(self._to_input(ref))
        lr, smap = self.run_nchw(self._to_input(hr), fref=fref, choose_smap=_per_frame(choose_smap))
        return np.ascontiguousarray(lr[0].transpose(1, 2, 0)), None if smap is None else smap[0, 0]

    def reference_features(self, ref: np.ndarray) -> np.ndarray:
        """Ref-Net features of a registered reference (RGB uint8 H×W×3, the frame's size): float32
        1×C×Hp/2×Wp/2 for `downscale_with_features`. They depend only on the warped reference, so a
        caller may reuse them for every frame that gets the same reference with the same matrix."""
        if not self.uses_reference:
            raise ValueError(f"{self.path.name} is a model without reference: it has no features graph")
        return self.run_features(self._to_input(self._check_image(ref, "reference")))

    def downscale_with_features(
        self, hr: np.ndarray, fref: np.ndarray | None, choose_smap: ChooseSmap | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """`downscale(hr, ref)` with `fref = reference_features(ref)` computed beforehand (same result):
        `downscale_many` of one frame."""
        return self.downscale_many([hr], None if fref is None else [fref], [choose_smap])[0]

    @property
    def batching_pays(self) -> bool:
        """True on GPU providers, where an N-frame run costs little more than one frame. On the CPU
        provider a batch is no faster per frame (compute-bound; 720p, 3 cameras: 368 against 350 ms
        per frame, `bench_onboard.py --variants serial batched`)."""
        return self.provider in (CUDA, TENSORRT)

    def downscale_many(
        self, hrs: Sequence[np.ndarray], frefs: Sequence[np.ndarray] | None,
        choose_smaps: Sequence[ChooseSmap | None] | None = None,
    ) -> list[tuple[np.ndarray, np.ndarray | None]]:
        """`downscale_with_features` for frames of one size (several cameras that arrived together)
        in one run of each graph: on a GPU a batch costs little more than one frame. `frefs` is one
        feature array per frame, or None for all frames without reference; `choose_smaps` one
        `choose_smap` per frame. Same results as one call per frame."""
        if not hrs:
            return []
        hrs = [self._check_image(hr, "frame") for hr in hrs]
        if any(hr.shape != hrs[0].shape for hr in hrs):
            raise ValueError(f"a batch needs frames of one size, got {sorted({hr.shape for hr in hrs})}")
        if frefs is not None and len(frefs) != len(hrs):
            raise ValueError(f"{len(frefs)} reference features for {len(hrs)} frames")
        fref = None
        if frefs is not None:
            want = self.feature_shape(hrs[0].shape[:2])
            for f in frefs:
                if tuple(f.shape) != want or f.dtype != np.float32:
                    raise ValueError(f"reference features {f.dtype} {f.shape} do not fit a frame {hrs[0].shape}: "
                                     f"expected float32 {want}")
            fref = np.concatenate(frefs) if self.uses_reference else None
        chooses = list(choose_smaps or [None] * len(hrs))
        choose = None
        if any(c is not None for c in chooses):
            def choose(batch: np.ndarray) -> np.ndarray:
                return np.stack([m if c is None else c(m[0])[None] for m, c in zip(batch, chooses, strict=True)])
        lr, smap = self.run_nchw(np.concatenate([self._to_input(hr) for hr in hrs]), fref=fref, choose_smap=choose)
        return [(np.ascontiguousarray(lr[i].transpose(1, 2, 0)), None if smap is None else smap[i, 0])
                for i in range(len(hrs))]

    def feature_shape(self, size_hw: tuple[int, int], n: int = 1) -> tuple[int, int, int, int]:
        """Shape of `fref` for frames of `size_hw`: N×encoder_channels×(padded H / 2)×(padded W / 2)."""
        m = self.config.pad_multiple
        return (n, self.config.encoder_channels, round_up(size_hw[0], m) // 2, round_up(size_hw[1], m) // 2)

    def run_features(self, ref: np.ndarray) -> np.ndarray:
        """The features graph on N×3×H×W references of the graph's input type -> float32 fref."""
        n, _, h, w = ref.shape
        self._check_size(h, w)
        with self._lock:
            (fref,) = self._feat.run({"ref": ref}, [self.feature_shape((h, w), n)])
        return fref

    def run_nchw(
        self, hr: np.ndarray, ref: np.ndarray | None = None, *, fref: np.ndarray | None = None,
        choose_smap: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """The graphs on N×3×H×W arrays of the graph's input type: (lr N×3×h×w, smap N×1×hs×ws | None).

        The reference is given as images (`ref`, its features are computed here) or as features
        (`fref`, from `run_features`); neither: no-reference mode. `choose_smap` (N×1×hs×ws ->
        the same shape) picks the maps the main graph conditions on, after the S_map graph."""
        n, _, h, w = hr.shape
        cfg = self.config
        ph, pw = self._check_size(h, w)
        lr_shape = (n, 3, ph // cfg.scale, pw // cfg.scale)
        if fref is None and ref is not None and self.uses_reference:
            fref = self.run_features(ref)
        with self._lock:
            if fref is None or not self.uses_reference:
                (lr,) = self._noref.run({"hr": hr}, [lr_shape])
                return lr, None
            (smap,) = self._smap.run({"hr": hr, "fref": fref}, [(n, 1, *cfg.smap_grid((ph, pw)))])
            if choose_smap is not None:
                smap = np.ascontiguousarray(choose_smap(smap), dtype=np.uint8)
            # a gated map is stored as no map; a fallback model codes such frames without reference
            gated = np.array([cfg.noref_fallback and stored_smap(s) is None for s in smap])
            if not gated.any():
                (lr,) = self._main.run({"hr": hr, "fref": fref, "smap": smap}, [lr_shape])
                return lr, smap
            lr = np.empty(lr_shape, np.uint8)
            for rows, graph in ((gated, self._noref), (~gated, self._main)):
                if rows.any():
                    feeds = {"hr": hr, "fref": fref, "smap": smap}
                    feeds = {name: np.ascontiguousarray(feeds[name][rows]) for name in graph.inputs}
                    (lr[rows],) = graph.run(feeds, [(int(rows.sum()), *lr_shape[1:])])
            return lr, smap

    def _check_size(self, h: int, w: int) -> tuple[int, int]:
        m = self.config.pad_multiple
        if min(h, w) < m:
            raise ValueError(f"frame {h}×{w} is smaller than the network's padding multiple {m}")
        return round_up(h, m), round_up(w, m)

    # ------------------------------------------------------------------ helpers
    def model_info(self) -> ModelInfo:
        """`pipeline.ModelInfo` of the exported weights, for `FrameEncoder` (no PyTorch model needed)."""
        from refscale_model.backends.base import ModelInfo

        return ModelInfo(
            model_id=self.model_id,
            weights_sha256=self.weights_sha256,
            scale=self.config.scale,
            smap_levels=self.config.smap_levels,
            uses_reference=self.config.use_reference,
            config=self.config.to_dict(),
        )

    @staticmethod
    def _check_image(img: np.ndarray, what: str) -> np.ndarray:
        if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            desc = f"{img.dtype} {img.shape}" if isinstance(img, np.ndarray) else type(img).__name__
            raise ValueError(f"{what} must be an RGB uint8 H×W×3 array, got {desc}")
        return img

    def _to_input(self, img: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(img.transpose(2, 0, 1))[None]
        if self._main.input_dtype == np.float32:
            x = x.astype(np.float32) / np.float32(255.0)
        return x

    def __repr__(self) -> str:
        return f"OnnxDownscaler({str(self.path)!r}, provider={self.provider!r}, model_id={self.model_id!r})"


def _per_frame(choose: ChooseSmap | None) -> Callable[[np.ndarray], np.ndarray] | None:
    """A per-frame (hs×ws) `choose_smap` applied to a batch of one (1×1×hs×ws)."""
    if choose is None:
        return None
    return lambda batch: np.stack([choose(m[0])[None] for m in batch])


__all__ = [
    "CPU",
    "CUDA",
    "ONNX_FORMAT",
    "TENSORRT",
    "OnnxDownscaler",
    "default_providers",
    "default_trt_cache_dir",
    "feat_path",
    "noref_path",
    "smap_path",
]
